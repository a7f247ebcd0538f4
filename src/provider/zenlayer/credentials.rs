//! Zenlayer credentials: an access key or a token, from the manifest, else from the
//! environment variables the official tools read.

use std::collections::BTreeMap;

use secrecy::{ExposeSecret, SecretString};

use super::wire::Credentials;
use super::{ENV_ACCESS_KEY_PAIRS, ENV_TOKEN};
use crate::manifest::SecretRef;
use crate::provider::{ProviderError, config};

/// Credentials from the manifest, else from the usual environment variables.
pub(super) fn resolve_credentials(
    provider: &str,
    references: &BTreeMap<String, SecretRef>,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<Credentials, ProviderError> {
    let resolve = |key: &str, reference: &SecretRef| {
        config::resolve_credential(provider, "Zenlayer", key, reference)
    };
    let key_id = references.get("access_key_id");
    let key_password = references.get("access_key_password");
    let token = references.get("token");
    match (key_id, key_password, token) {
        (Some(id), Some(password), None) => Ok(Credentials::AccessKey {
            id: resolve("access_key_id", id)?.expose_secret().to_string(),
            password: resolve("access_key_password", password)?,
        }),
        (None, None, Some(token)) => Ok(Credentials::Token(resolve("token", token)?)),
        (Some(_), _, Some(_)) | (_, Some(_), Some(_)) => Err(config::config_error(
            provider,
            "both an access key and a token are configured",
            "keep either `access_key_id` + `access_key_password` or `token`",
        )),
        (Some(_), None, None) | (None, Some(_), None) => Err(config::half_pair(
            provider,
            "access_key_id",
            "access_key_password",
        )),
        (None, None, None) => credentials_from_env(provider, env),
    }
}

fn credentials_from_env(
    provider: &str,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<Credentials, ProviderError> {
    for (id_var, password_var) in ENV_ACCESS_KEY_PAIRS {
        if let Some((id, password)) = config::env_pair(provider, env, id_var, password_var)? {
            return Ok(Credentials::AccessKey {
                id: id.trim().to_string(),
                password: SecretString::from(password),
            });
        }
    }
    if let Some(token) = env(ENV_TOKEN) {
        return Ok(Credentials::Token(SecretString::from(token)));
    }
    Err(ProviderError::Config {
        provider: provider.to_string(),
        message: "no Zenlayer credentials found".to_string(),
        help: format!(
            "set `credentials.access_key_id` and `credentials.access_key_password` (or \
             `credentials.token`) in the manifest, or export {} and {}, or {} and {}, or {}",
            ENV_ACCESS_KEY_PAIRS[0].0,
            ENV_ACCESS_KEY_PAIRS[0].1,
            ENV_ACCESS_KEY_PAIRS[1].0,
            ENV_ACCESS_KEY_PAIRS[1].1,
            ENV_TOKEN
        ),
    })
}
