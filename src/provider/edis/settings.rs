//! The rules of an `edis-kvm` provider entry: credential keys and pair, the completion and
//! probe options, the image list, the auth URL. [`check_config`] is what `validate` reports and
//! what construction refuses; [`ProviderOptions::read`] is the one reader of the options.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Map, Value};

use super::completion::{self, Heuristic};
use super::validate::PROVIDER_OPTION_KEYS;
use crate::manifest::model::ProviderConfig;
use crate::provider::FieldIssue;
use crate::provider::config;
use crate::provider::rules::{escape_pointer, issue};

pub const CREDENTIAL_KEYS: [&str; 2] = ["email", "password"];
pub const DEFAULT_GRACE: Duration = Duration::from_secs(60);
pub const DEFAULT_PROBE_DEADLINE: Duration = Duration::from_secs(30 * 60);
pub const DEFAULT_PROBE_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub const URL_HELP: &str = "write it as https://HOST[:PORT][/kvm/v2/get/auth]";
pub const PLAIN_HTTP_HELP: &str = "use https; plain http is only accepted for 127.0.0.0/8, ::1 \
                                   and localhost (a local emulator), since the login carries \
                                   the client-area password";
const PROBE_HELP: &str = "a map from server name to `HOST:PORT`, e.g. `ssh_probe: {web-1: \
                          \"203.0.113.10:22\"}`; reimage connects to exactly that address after \
                          the install";
const IMAGES_HELP: &str = "a list of image names reinstalls may use, e.g. `[debian-bookworm, \
                           ubuntu-24.04]`";

/// Provider options (`providers.<name>.options`), with their defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderOptions {
    pub heuristic: Heuristic,
    pub ssh_probes: BTreeMap<String, String>,
    pub images: Option<Vec<String>>,
}

impl ProviderOptions {
    /// Reads the options; every bad key or value is an issue (and its default is kept).
    pub fn read(options: &Map<String, Value>) -> (Self, Vec<FieldIssue>) {
        let mut read = ProviderOptions {
            heuristic: Heuristic {
                grace: DEFAULT_GRACE,
                probe_deadline: DEFAULT_PROBE_DEADLINE,
                probe_connect_timeout: DEFAULT_PROBE_CONNECT_TIMEOUT,
            },
            ssh_probes: BTreeMap::new(),
            images: None,
        };
        let mut issues = Vec::new();
        let seconds = |key: &str,
                       value: &Value,
                       allow_zero: bool,
                       slot: &mut Duration,
                       issues: &mut Vec<FieldIssue>| {
            match config::seconds_option(key, value, allow_zero, "a number of seconds") {
                Ok(duration) => *slot = duration,
                Err(problem) => issues.push(problem),
            }
        };
        for (key, value) in options {
            let pointer = format!("/options/{}", escape_pointer(key));
            match key.as_str() {
                "completion_grace_seconds" => {
                    seconds(key, value, true, &mut read.heuristic.grace, &mut issues);
                }
                "ssh_probe_timeout_seconds" => {
                    seconds(
                        key,
                        value,
                        false,
                        &mut read.heuristic.probe_deadline,
                        &mut issues,
                    );
                }
                "ssh_probe_connect_timeout_seconds" => {
                    seconds(
                        key,
                        value,
                        false,
                        &mut read.heuristic.probe_connect_timeout,
                        &mut issues,
                    );
                }
                "ssh_probe" => read.ssh_probes = probes(&pointer, value, &mut issues),
                "images" => {
                    let list: Option<Vec<String>> = value.as_array().and_then(|items| {
                        items
                            .iter()
                            .map(|item| {
                                item.as_str()
                                    .filter(|name| !name.trim().is_empty())
                                    .map(str::to_string)
                            })
                            .collect()
                    });
                    match list {
                        Some(list) if !list.is_empty() => read.images = Some(list),
                        _ => issues.push(issue(
                            &pointer,
                            "option `images` must be a non-empty list of names",
                            Some(IMAGES_HELP),
                        )),
                    }
                }
                _ => issues.push(config::unknown_option_issue(
                    key,
                    &PROVIDER_OPTION_KEYS,
                    "edis-kvm",
                )),
            }
        }
        (read, issues)
    }
}

fn probes(pointer: &str, value: &Value, issues: &mut Vec<FieldIssue>) -> BTreeMap<String, String> {
    let mut probes = BTreeMap::new();
    let Some(map) = value.as_object() else {
        issues.push(issue(
            pointer,
            "option `ssh_probe` must be a map",
            Some(PROBE_HELP),
        ));
        return probes;
    };
    for (server, address) in map {
        let entry = format!("{pointer}/{}", escape_pointer(server));
        match address.as_str().map(completion::parse_probe_address) {
            Some(Ok(address)) => {
                probes.insert(server.clone(), address);
            }
            Some(Err(problem)) => issues.push(issue(
                &entry,
                &format!("`ssh_probe.{server}`: {problem}"),
                Some(PROBE_HELP),
            )),
            None => issues.push(issue(
                &entry,
                &format!("`ssh_probe.{server}` must be a string"),
                Some(PROBE_HELP),
            )),
        }
    }
    probes
}

/// Every problem with the provider entry that needs neither network nor environment.
pub fn check_config(config: &ProviderConfig) -> Vec<FieldIssue> {
    let mut issues =
        config::credential_key_issues(&config.credentials, &CREDENTIAL_KEYS, "an edis-kvm");
    issues.extend(config::half_pair_issue(
        &config.credentials,
        "email",
        "password",
    ));
    issues.extend(ProviderOptions::read(&config.options).1);
    issues.extend(config::endpoint_issue(
        config.endpoint.as_deref(),
        URL_HELP,
        PLAIN_HTTP_HELP,
    ));
    issues
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bad_option_is_reported_at_its_place() {
        let options = serde_json::json!({
            "completion_grace_seconds": 5,
            "ssh_probe": {"web-1": "10.0.0.1:22", "web-2": "nowhere", "web-3": 22},
            "images": [],
            "ssh_probe_timeout_seconds": 0,
            "imagez": ["x"]
        });
        let (read, issues) = ProviderOptions::read(options.as_object().unwrap());
        assert_eq!(read.heuristic.grace, Duration::from_secs(5));
        assert_eq!(read.ssh_probes.len(), 1);
        let pointers: Vec<&str> = issues.iter().map(|issue| issue.pointer.as_str()).collect();
        assert_eq!(
            pointers,
            [
                "/options/ssh_probe/web-2",
                "/options/ssh_probe/web-3",
                "/options/images",
                "/options/ssh_probe_timeout_seconds",
                "/options/imagez"
            ]
        );
        assert!(
            issues[4]
                .help
                .as_deref()
                .unwrap()
                .contains("did you mean `images`?")
        );
    }
}
