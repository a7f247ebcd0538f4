//! Huawei credentials: an access key (signing) or an IAM token, from the manifest, else from
//! the environment variable families the official tools read.

use std::collections::BTreeMap;

use secrecy::{ExposeSecret, SecretString};

use super::ENV_FAMILIES;
use crate::manifest::SecretRef;
use crate::provider::{ProviderError, config};

/// How requests are authenticated. Secrets stay wrapped; `Debug` prints them redacted.
#[derive(Debug, Clone)]
pub enum Credentials {
    /// SDK-HMAC-SHA256 with an access key; `security_token` for temporary (STS) keys.
    AccessKey {
        access_key: String,
        secret_key: SecretString,
        security_token: Option<SecretString>,
    },
    /// An IAM token sent as `X-Auth-Token`, unsigned.
    Token(SecretString),
}

impl Credentials {
    /// What identifies the caller in the project-id cache (never the secret itself).
    pub(super) fn cache_identity(&self) -> String {
        match self {
            Self::AccessKey { access_key, .. } => format!("ak:{access_key}"),
            Self::Token(token) => format!(
                "token:{}",
                crate::digest::sha256_hex(token.expose_secret().as_bytes())
            ),
        }
    }
}

/// Credentials from the manifest, else from the environment (`HW_*`, `HUAWEICLOUD_SDK_*`,
/// `OS_*`, in that order; in each family an access key pair before a token).
pub(super) fn resolve_credentials(
    provider: &str,
    references: &BTreeMap<String, SecretRef>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Credentials, ProviderError> {
    let resolve = |key: &str, reference: &SecretRef| {
        config::resolve_credential(provider, "Huawei Cloud", key, reference)
    };
    let access_key = references.get("access_key");
    let secret_key = references.get("secret_key");
    let security_token = references.get("security_token");
    let auth_token = references.get("auth_token");
    match (access_key, secret_key, auth_token) {
        (Some(access), Some(secret), None) => Ok(Credentials::AccessKey {
            access_key: resolve("access_key", access)?
                .expose_secret()
                .trim()
                .to_string(),
            secret_key: resolve("secret_key", secret)?,
            security_token: security_token
                .map(|reference| resolve("security_token", reference))
                .transpose()?,
        }),
        (None, None, Some(token)) if security_token.is_none() => {
            Ok(Credentials::Token(resolve("auth_token", token)?))
        }
        (None, None, Some(_)) => Err(config::config_error(
            provider,
            "`security_token` goes with an access key, not with `auth_token`".to_string(),
            "remove `security_token`, or use `access_key` + `secret_key`".to_string(),
        )),
        (Some(_), _, Some(_)) | (_, Some(_), Some(_)) => Err(config::config_error(
            provider,
            "both an access key and an auth token are configured".to_string(),
            "keep either `access_key` + `secret_key` (signing) or `auth_token`".to_string(),
        )),
        (Some(_), None, None) | (None, Some(_), None) => {
            Err(config::half_pair(provider, "access_key", "secret_key"))
        }
        (None, None, None) if security_token.is_some() => Err(config::config_error(
            provider,
            "`security_token` alone is not a credential".to_string(),
            "add `access_key` and `secret_key` (temporary ones, from STS)".to_string(),
        )),
        (None, None, None) => credentials_from_env(provider, env),
    }
}

fn credentials_from_env(
    provider: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Credentials, ProviderError> {
    for family in &ENV_FAMILIES {
        if let Some((access_key, secret_key)) =
            config::env_pair(provider, env, family.access_key, family.secret_key)?
        {
            return Ok(Credentials::AccessKey {
                access_key: access_key.trim().to_string(),
                secret_key: SecretString::from(secret_key),
                security_token: env(family.security_token).map(SecretString::from),
            });
        }
        if let Some(token) = family.auth_token.and_then(env) {
            return Ok(Credentials::Token(SecretString::from(token)));
        }
    }
    Err(ProviderError::Config {
        provider: provider.to_string(),
        message: "no Huawei Cloud credentials found".to_string(),
        help: "set `credentials.access_key` and `credentials.secret_key` (or \
               `credentials.auth_token`) in the manifest, or export HW_ACCESS_KEY and \
               HW_SECRET_KEY (or HUAWEICLOUD_SDK_AK/HUAWEICLOUD_SDK_SK, OS_ACCESS_KEY/\
               OS_SECRET_KEY, HW_AUTH_TOKEN)"
            .to_string(),
    })
}
