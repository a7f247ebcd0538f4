//! JD Cloud access keys: from the manifest, else from the environment.

use std::collections::BTreeMap;

use secrecy::{ExposeSecret, SecretString};

use super::wire::Credentials;
use super::{ENV_ACCESS_KEY, ENV_SECRET_KEY};
use crate::manifest::SecretRef;
use crate::provider::{ProviderError, config};

/// Credentials from the manifest, else from `JDCLOUD_ACCESS_KEY` / `JDCLOUD_SECRET_KEY`.
pub(super) fn resolve_credentials(
    provider: &str,
    references: &BTreeMap<String, SecretRef>,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<Credentials, ProviderError> {
    let resolve = |key: &str, reference: &SecretRef| {
        config::resolve_credential(provider, "JD Cloud", key, reference)
    };
    match (references.get("access_key"), references.get("secret_key")) {
        (Some(access_key), Some(secret_key)) => Ok(Credentials {
            access_key: resolve("access_key", access_key)?
                .expose_secret()
                .trim()
                .to_string(),
            secret_key: resolve("secret_key", secret_key)?,
        }),
        (Some(_), None) | (None, Some(_)) => {
            Err(config::half_pair(provider, "access_key", "secret_key"))
        }
        (None, None) => match config::env_pair(provider, env, ENV_ACCESS_KEY, ENV_SECRET_KEY)? {
            Some((access_key, secret_key)) => Ok(Credentials {
                access_key: access_key.trim().to_string(),
                secret_key: SecretString::from(secret_key),
            }),
            None => Err(config::config_error(
                provider,
                "no JD Cloud credentials found",
                format!(
                    "set `credentials.access_key` and `credentials.secret_key` in the manifest \
                     (as {{env: NAME}} or {{file: PATH}}), or export {ENV_ACCESS_KEY} and \
                     {ENV_SECRET_KEY}"
                ),
            )),
        },
    }
}
