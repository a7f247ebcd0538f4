//! The rules of a `zenlayer-bmc` provider entry (`providers.<name>`): credential keys and
//! pairs, provider options, endpoint. [`check_config`] is what `validate` reports and what
//! construction refuses, so the two cannot disagree; [`ProviderOptions::read`] is the one
//! reader of the options.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Map, Value};

use super::wire::ApiVersion;
use crate::manifest::SecretRef;
use crate::manifest::model::ProviderConfig;
use crate::provider::FieldIssue;
use crate::provider::config;
use crate::provider::rules::{escape_pointer, issue};

/// Manifest credential keys.
pub const CREDENTIAL_KEYS: [&str; 3] = ["access_key_id", "access_key_password", "token"];
/// Provider-level option keys (`providers.<name>.options`).
pub const PROVIDER_OPTION_KEYS: [&str; 2] = ["api_version", "running_grace_seconds"];
/// Right after the call the status may still read `RUNNING`; before this much time has passed,
/// `RUNNING` only counts as done once `INSTALLING` was seen.
pub const DEFAULT_RUNNING_GRACE: Duration = Duration::from_secs(120);
pub const URL_HELP: &str = "write it as https://HOST[:PORT]/api/v2/bmc";

/// The provider options, with their defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProviderOptions {
    pub api_version: ApiVersion,
    pub running_grace: Duration,
}

impl ProviderOptions {
    /// Reads the options; every bad key or value is an issue (and its default is kept).
    pub fn read(options: &Map<String, Value>) -> (ProviderOptions, Vec<FieldIssue>) {
        let mut read = ProviderOptions {
            api_version: ApiVersion::V20221120,
            running_grace: DEFAULT_RUNNING_GRACE,
        };
        let mut issues = Vec::new();
        for (key, value) in options {
            match key.as_str() {
                "api_version" => match value.as_str().and_then(ApiVersion::parse) {
                    Some(version) => read.api_version = version,
                    None => issues.push(issue(
                        &format!("/options/{}", escape_pointer(key)),
                        &format!("option `api_version` is {value}, which is not a bmc API version"),
                        Some(
                            "allowed: \"2022-11-20\" (the default, used by the Terraform \
                             provider) or \"2026-02-01\" (the current SDKs')",
                        ),
                    )),
                },
                "running_grace_seconds" => match config::seconds_option(
                    key,
                    value,
                    true,
                    "how long `RUNNING` right after a reinstall is taken for the old state \
                     rather than success; default 120",
                ) {
                    Ok(grace) => read.running_grace = grace,
                    Err(problem) => issues.push(problem),
                },
                _ => issues.push(config::unknown_option_issue(
                    key,
                    &PROVIDER_OPTION_KEYS,
                    "zenlayer-bmc",
                )),
            }
        }
        (read, issues)
    }
}

/// Every problem with the provider entry that needs neither network nor environment.
pub fn check_config(config: &ProviderConfig) -> Vec<FieldIssue> {
    let mut issues = credential_issues(&config.credentials);
    issues.extend(ProviderOptions::read(&config.options).1);
    issues.extend(config::endpoint_issue(
        config.endpoint.as_deref(),
        URL_HELP,
        config::PLAIN_HTTP_HELP,
    ));
    issues
}

fn credential_issues(references: &BTreeMap<String, SecretRef>) -> Vec<FieldIssue> {
    let mut issues = config::credential_key_issues(references, &CREDENTIAL_KEYS, "a zenlayer-bmc");
    let has_key =
        references.contains_key("access_key_id") || references.contains_key("access_key_password");
    if has_key && references.contains_key("token") {
        issues.push(issue(
            "/credentials/token",
            "both an access key and a token are configured",
            Some("keep either `access_key_id` + `access_key_password` or `token`"),
        ));
    } else {
        issues.extend(config::half_pair_issue(
            references,
            "access_key_id",
            "access_key_password",
        ));
    }
    issues
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pointers(issues: &[FieldIssue]) -> Vec<&str> {
        issues.iter().map(|issue| issue.pointer.as_str()).collect()
    }

    #[test]
    fn options_are_read_with_every_problem_reported() {
        let options = serde_json::json!({
            "api_version": "2026-02-01", "running_grace_seconds": 5
        });
        let (read, issues) = ProviderOptions::read(options.as_object().unwrap());
        assert!(issues.is_empty(), "{issues:?}");
        assert_eq!(read.api_version, ApiVersion::V20260201);
        assert_eq!(read.running_grace, Duration::from_secs(5));

        let options = serde_json::json!({
            "api_version": "2023-01-01", "running_grace_seconds": -1, "api_verison": 1
        });
        let (_, issues) = ProviderOptions::read(options.as_object().unwrap());
        assert_eq!(
            pointers(&issues),
            [
                "/options/api_version",
                "/options/running_grace_seconds",
                "/options/api_verison"
            ]
        );
        assert!(
            issues[2]
                .help
                .as_deref()
                .unwrap()
                .contains("did you mean `api_version`?")
        );
    }

    #[test]
    fn credentials_need_a_known_key_and_a_whole_pair() {
        let refs = |keys: &[&str]| -> BTreeMap<String, SecretRef> {
            keys.iter()
                .map(|key| (key.to_string(), SecretRef::Env("X".into())))
                .collect()
        };
        assert!(credential_issues(&refs(&["access_key_id", "access_key_password"])).is_empty());
        assert!(credential_issues(&refs(&["token"])).is_empty());
        let typo = credential_issues(&refs(&["acess_key_id", "access_key_password"]));
        assert_eq!(
            pointers(&typo),
            [
                "/credentials/acess_key_id",
                "/credentials/access_key_password"
            ]
        );
        assert!(
            typo[0]
                .help
                .as_deref()
                .unwrap()
                .contains("did you mean `access_key_id`?")
        );
        assert_eq!(
            pointers(&credential_issues(&refs(&["access_key_id", "token"]))),
            ["/credentials/token"]
        );
    }
}
