//! The rules of a `jdcloud-cps` provider entry: credential keys and pair, region form,
//! provider options, endpoint. [`check_config`] is what `validate` reports and what
//! construction refuses; [`ProviderOptions::read`] is the one reader of the options.

use std::time::Duration;

use serde_json::{Map, Value};

use crate::manifest::model::ProviderConfig;
use crate::provider::FieldIssue;
use crate::provider::config;
use crate::provider::rules::issue;

pub const CREDENTIAL_KEYS: [&str; 2] = ["access_key", "secret_key"];
pub const PROVIDER_OPTION_KEYS: [&str; 1] = ["running_grace_seconds"];
/// Right after the call the server may still read `stopped` with its old OS; before this much
/// time has passed, a stable status only counts as done once an install was seen.
pub const DEFAULT_RUNNING_GRACE: Duration = Duration::from_secs(120);
pub const URL_HELP: &str = "write it as https://HOST[:PORT], e.g. https://cps.jdcloud-api.com";
pub const REGION_HELP: &str = "region ids look like cn-north-1, cn-east-1, cn-east-2, cn-south-1";

/// The provider options, with their defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProviderOptions {
    pub running_grace: Duration,
}

impl ProviderOptions {
    pub fn read(options: &Map<String, Value>) -> (Self, Vec<FieldIssue>) {
        let mut read = ProviderOptions {
            running_grace: DEFAULT_RUNNING_GRACE,
        };
        let mut issues = Vec::new();
        for (key, value) in options {
            match key.as_str() {
                "running_grace_seconds" => match config::seconds_option(
                    key,
                    value,
                    true,
                    "how long a stable status right after a reinstall is taken for the old state \
                     rather than success; default 120",
                ) {
                    Ok(grace) => read.running_grace = grace,
                    Err(problem) => issues.push(problem),
                },
                _ => issues.push(config::unknown_option_issue(
                    key,
                    &PROVIDER_OPTION_KEYS,
                    "jdcloud-cps",
                )),
            }
        }
        (read, issues)
    }
}

/// What is wrong with a region id, if anything.
pub fn region_problem(region: &str) -> Option<String> {
    let valid = !region.is_empty()
        && region
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    (!valid).then(|| format!("region `{region}` is not a JD Cloud region id"))
}

/// Every problem with the provider entry that needs neither network nor environment.
pub fn check_config(config: &ProviderConfig) -> Vec<FieldIssue> {
    let mut issues =
        config::credential_key_issues(&config.credentials, &CREDENTIAL_KEYS, "a jdcloud-cps");
    issues.extend(config::half_pair_issue(
        &config.credentials,
        "access_key",
        "secret_key",
    ));
    issues.extend(ProviderOptions::read(&config.options).1);
    if let Some(region) = &config.region
        && let Some(problem) = region_problem(region.trim())
    {
        issues.push(issue("/region", &problem, Some(REGION_HELP)));
    }
    issues.extend(config::endpoint_issue(
        config.endpoint.as_deref(),
        URL_HELP,
        config::PLAIN_HTTP_HELP,
    ));
    issues
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_are_lower_case_ids() {
        assert_eq!(region_problem("cn-east-1"), None);
        assert!(region_problem("CN_EAST").is_some());
        assert!(region_problem("").is_some());
    }

    #[test]
    fn options_know_only_the_grace() {
        let options = serde_json::json!({"running_grace_seconds": 1, "runing_grace_seconds": 2});
        let (read, issues) = ProviderOptions::read(options.as_object().unwrap());
        assert_eq!(read.running_grace, Duration::from_secs(1));
        assert_eq!(issues.len(), 1);
        assert_eq!(issues[0].pointer, "/options/runing_grace_seconds");
        assert!(
            issues[0]
                .help
                .as_deref()
                .unwrap()
                .contains("did you mean `running_grace_seconds`?")
        );
    }
}
