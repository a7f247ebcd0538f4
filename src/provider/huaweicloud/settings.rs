//! The rules of a `huaweicloud-ecs` / `huaweicloud-clouddc` provider entry: credential keys
//! and pairs, the options both types share (`project_id`, `iam_endpoint`, `base_domain`) and
//! CloudDC's own (`reinstall_batch`, `running_grace_seconds`), region and endpoint forms.
//! [`check_config`] is what `validate` reports and what construction refuses; the option
//! readers here are the ones construction uses.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Map, Value};

use super::wire::{CLOUDDC_DOCUMENTED_BATCH, CLOUDDC_SAFE_BATCH};
use crate::manifest::model::ProviderConfig;
use crate::manifest::{ProviderType, SecretRef};
use crate::provider::FieldIssue;
use crate::provider::config;
use crate::provider::rules::{escape_pointer, issue};

/// Manifest credential keys.
pub const CREDENTIAL_KEYS: [&str; 4] = ["access_key", "secret_key", "security_token", "auth_token"];
/// Provider options both types accept.
pub const COMMON_OPTION_KEYS: [&str; 3] = ["project_id", "iam_endpoint", "base_domain"];
/// Provider options only CloudDC accepts.
pub const CLOUDDC_OPTION_KEYS: [&str; 2] = ["reinstall_batch", "running_grace_seconds"];
/// Right after the call an instance may still show the previous `reinstall-succeed`; before
/// this much time has passed that only counts once `reinstall-processing` was seen.
pub const DEFAULT_RUNNING_GRACE: Duration = Duration::from_secs(120);
pub const URL_HELP: &str = "write it as https://HOST[:PORT]";
pub const PLAIN_HTTP_HELP: &str = "use https; plain http is only accepted for loopback \
                                   addresses (a local emulator), since requests carry \
                                   credentials and passwords";

/// The options both types share, as given (trimmed); absent when not set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommonOptions {
    pub project_id: Option<String>,
    pub iam_endpoint: Option<String>,
    pub base_domain: Option<String>,
}

impl CommonOptions {
    /// Reads the shared options and refuses keys neither they nor `type_keys` name.
    pub fn read(
        options: &Map<String, Value>,
        type_keys: &[&str],
        provider_type: &str,
    ) -> (Self, Vec<FieldIssue>) {
        let mut read = CommonOptions::default();
        let mut issues = Vec::new();
        for (key, value) in options {
            let slot = match key.as_str() {
                "project_id" => &mut read.project_id,
                "iam_endpoint" => &mut read.iam_endpoint,
                "base_domain" => &mut read.base_domain,
                _ if type_keys.contains(&key.as_str()) => continue,
                _ => {
                    let allowed: Vec<&str> = COMMON_OPTION_KEYS
                        .iter()
                        .chain(type_keys)
                        .copied()
                        .collect();
                    issues.push(config::unknown_option_issue(key, &allowed, provider_type));
                    continue;
                }
            };
            match value {
                Value::String(text) if !text.trim().is_empty() => {
                    *slot = Some(text.trim().to_string());
                }
                other => issues.push(issue(
                    &format!("/options/{}", escape_pointer(key)),
                    &format!("option `{key}` is {other}; it must be a non-empty string"),
                    Some(option_help(key)),
                )),
            }
        }
        if let Some(project) = &read.project_id
            && let Some(problem) = project_id_problem(project)
        {
            issues.push(issue(
                "/options/project_id",
                &problem,
                Some(option_help("project_id")),
            ));
        }
        if let Some(url) = &read.iam_endpoint
            && let Err((message, help)) = config::check_endpoint(url, URL_HELP, PLAIN_HTTP_HELP)
        {
            issues.push(issue(
                "/options/iam_endpoint",
                &format!("IAM endpoint `{url}` {message}"),
                Some(help),
            ));
        }
        (read, issues)
    }
}

fn option_help(key: &str) -> &'static str {
    match key {
        "project_id" => {
            "a Huawei project id is 32 hexadecimal characters, shown under My Credentials in the \
             console; leave it out to look it up through IAM by the region's name"
        }
        "iam_endpoint" => "the IAM API's base URL, e.g. https://iam.eu-de.otc.t-systems.com",
        _ => "the domain of the cloud's hosts, e.g. `myhuaweicloud.eu`",
    }
}

/// What is wrong with a project id, if anything.
pub fn project_id_problem(project: &str) -> Option<String> {
    (!project
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-'))
    .then(|| format!("project id `{project}` is not a project id"))
}

/// What is wrong with a region name, if anything.
pub fn region_problem(region: &str) -> Option<String> {
    (!region
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
    .then(|| format!("region `{region}` is not a region name"))
}

/// CloudDC's own options, with their defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClouddcOptions {
    pub reinstall_batch: usize,
    pub running_grace: Duration,
}

impl ClouddcOptions {
    /// Reads CloudDC's options (other keys are [`CommonOptions::read`]'s).
    pub fn read(options: &Map<String, Value>) -> (Self, Vec<FieldIssue>) {
        let mut read = ClouddcOptions {
            reinstall_batch: CLOUDDC_SAFE_BATCH,
            running_grace: DEFAULT_RUNNING_GRACE,
        };
        let mut issues = Vec::new();
        if let Some(value) = options.get("reinstall_batch") {
            match value
                .as_u64()
                .and_then(|size| usize::try_from(size).ok())
                .filter(|size| (1..=CLOUDDC_DOCUMENTED_BATCH).contains(size))
            {
                Some(size) => read.reinstall_batch = size,
                None => issues.push(issue(
                    "/options/reinstall_batch",
                    &format!(
                        "option `reinstall_batch` is {value}; it must be a whole number from 1 \
                         to {CLOUDDC_DOCUMENTED_BATCH}"
                    ),
                    Some("allowed: 1 to 50; the SDK allows 10 ids per call (the default), the API page 50"),
                )),
            }
        }
        if let Some(value) = options.get("running_grace_seconds") {
            match config::seconds_option(
                "running_grace_seconds",
                value,
                true,
                "how long a `reinstall-succeed` right after the call is taken for the previous \
                 reinstall's; default 120",
            ) {
                Ok(grace) => read.running_grace = grace,
                Err(problem) => issues.push(problem),
            }
        }
        (read, issues)
    }
}

/// Every problem with the provider entry that needs neither network nor environment.
pub fn check_config(config: &ProviderConfig) -> Vec<FieldIssue> {
    let (type_keys, type_name): (&[&str], &str) = match config.provider_type {
        ProviderType::HuaweicloudClouddc => (&CLOUDDC_OPTION_KEYS, "huaweicloud-clouddc"),
        _ => (&[], "huaweicloud-ecs"),
    };
    let mut issues = credential_issues(&config.credentials);
    issues.extend(CommonOptions::read(&config.options, type_keys, type_name).1);
    if config.provider_type == ProviderType::HuaweicloudClouddc {
        issues.extend(ClouddcOptions::read(&config.options).1);
    }
    if let Some(region) = config.region.as_deref().map(str::trim)
        && let Some(problem) = region_problem(region)
    {
        issues.push(issue(
            "/region",
            &problem,
            Some("use a region id such as `cn-north-4` or `eu-de`"),
        ));
    }
    issues.extend(config::endpoint_issue(
        config.endpoint.as_deref(),
        URL_HELP,
        PLAIN_HTTP_HELP,
    ));
    issues
}

fn credential_issues(references: &BTreeMap<String, SecretRef>) -> Vec<FieldIssue> {
    let mut issues = config::credential_key_issues(references, &CREDENTIAL_KEYS, "a Huawei Cloud");
    let has = |key: &str| references.contains_key(key);
    let has_key = has("access_key") || has("secret_key");
    if has_key && has("auth_token") {
        issues.push(issue(
            "/credentials/auth_token",
            "both an access key and an auth token are configured",
            Some("keep either `access_key` + `secret_key` (signing) or `auth_token`"),
        ));
    } else if has("auth_token") && has("security_token") {
        issues.push(issue(
            "/credentials/security_token",
            "`security_token` goes with an access key, not with `auth_token`",
            Some("remove `security_token`, or use `access_key` + `secret_key`"),
        ));
    } else if !has_key && has("security_token") {
        issues.push(issue(
            "/credentials/security_token",
            "`security_token` alone is not a credential",
            Some("add `access_key` and `secret_key` (temporary ones, from STS)"),
        ));
    } else {
        issues.extend(config::half_pair_issue(
            references,
            "access_key",
            "secret_key",
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

    fn options(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap()
    }

    #[test]
    fn shared_options_are_strings_and_type_keys_pass_through() {
        let (read, issues) = CommonOptions::read(
            &options(serde_json::json!({"project_id": " 0a1b ", "reinstall_batch": 5})),
            &CLOUDDC_OPTION_KEYS,
            "huaweicloud-clouddc",
        );
        assert!(issues.is_empty(), "{issues:?}");
        assert_eq!(read.project_id.as_deref(), Some("0a1b"));
        let (_, issues) = CommonOptions::read(
            &options(serde_json::json!({
                "project_id": "a b", "base_domain": "", "iam_endpoint": "http://iam.example.com",
                "reinstall_batch": 5
            })),
            &[],
            "huaweicloud-ecs",
        );
        assert_eq!(
            pointers(&issues),
            [
                "/options/base_domain",
                "/options/reinstall_batch",
                "/options/project_id",
                "/options/iam_endpoint"
            ]
        );
    }

    #[test]
    fn clouddc_batch_is_one_to_fifty() {
        for good in [1, 10, 50] {
            let (read, issues) =
                ClouddcOptions::read(&options(serde_json::json!({"reinstall_batch": good})));
            assert!(issues.is_empty());
            assert_eq!(read.reinstall_batch, good);
        }
        for bad in [
            serde_json::json!(0),
            serde_json::json!(51),
            serde_json::json!("10"),
        ] {
            let (_, issues) =
                ClouddcOptions::read(&options(serde_json::json!({"reinstall_batch": bad})));
            assert_eq!(pointers(&issues), ["/options/reinstall_batch"]);
        }
    }

    #[test]
    fn credentials_pairs_and_tokens() {
        let refs = |keys: &[&str]| -> BTreeMap<String, SecretRef> {
            keys.iter()
                .map(|key| (key.to_string(), SecretRef::Env("X".into())))
                .collect()
        };
        assert!(
            credential_issues(&refs(&["access_key", "secret_key", "security_token"])).is_empty()
        );
        assert!(credential_issues(&refs(&["auth_token"])).is_empty());
        for (keys, pointer) in [
            (&["acess_key", "secret_key"][..], "/credentials/acess_key"),
            (&["access_key", "auth_token"][..], "/credentials/auth_token"),
            (
                &["auth_token", "security_token"][..],
                "/credentials/security_token",
            ),
            (&["security_token"][..], "/credentials/security_token"),
            (&["secret_key"][..], "/credentials/secret_key"),
        ] {
            assert_eq!(
                pointers(&credential_issues(&refs(keys)))[0],
                pointer,
                "{keys:?}"
            );
        }
    }
}
