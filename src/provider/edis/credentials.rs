//! The EDIS account's e-mail and password: from the manifest, else the environment.

use std::collections::BTreeMap;

use secrecy::SecretString;

use super::{ENV_EMAIL, ENV_PASSWORD};
use crate::manifest::SecretRef;
use crate::provider::{ProviderError, config};

/// The e-mail and password: from the manifest's references, else `EDIS_EMAIL`/`EDIS_PASSWORD`.
pub(super) fn resolve_credentials(
    provider: &str,
    references: &BTreeMap<String, SecretRef>,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<(SecretString, SecretString), ProviderError> {
    let resolve = |key: &str, reference: &SecretRef| {
        config::resolve_credential(provider, "EDIS client-area", key, reference)
    };
    match (references.get("email"), references.get("password")) {
        (Some(email), Some(password)) => {
            Ok((resolve("email", email)?, resolve("password", password)?))
        }
        (Some(_), None) | (None, Some(_)) => Err(config::config_error(
            provider,
            "`credentials.email` and `credentials.password` must be given together".to_string(),
            format!("add the missing one, or remove both to use {ENV_EMAIL} and {ENV_PASSWORD}"),
        )),
        (None, None) => {
            let env = config::non_empty_env(env);
            match (env(ENV_EMAIL), env(ENV_PASSWORD)) {
                (Some(email), Some(password)) => Ok((
                    SecretString::from(email.trim().to_string()),
                    SecretString::from(password),
                )),
                _ => Err(config::config_error(
                    provider,
                    "no EDIS credentials found".to_string(),
                    format!(
                        "set `credentials.email` and `credentials.password` (e.g. `{{env: \
                         NAME}}` or `{{file: PATH}}`) in the manifest, or export {ENV_EMAIL} and \
                         {ENV_PASSWORD}"
                    ),
                )),
            }
        }
    }
}
