//! JD Cloud CPS input rules, checked without network, and the server options reimage reads.
//! Pointers are relative to the server entry in the manifest.

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};

use crate::manifest::{DesiredAccess, DesiredServer};
use crate::provider::FieldIssue;
use crate::provider::rules::{
    self, ClassRule, PasswordPolicy, allowed_keys_help, escape_pointer, issue,
};

/// Server options (`servers[].options`) of a `jdcloud-cps` server.
pub const OPTION_KEYS: [&str; 8] = [
    "allow_stop",
    "keep_data",
    "os_name",
    "az",
    "image_type",
    "sys_raid_type_id",
    "data_raid_type_id",
    "keypair_id",
];
pub const IMAGE_TYPES: [&str; 2] = ["standard", "standard_app"];
/// JD's common password rule as the brief reports it (8–30 characters with upper case, lower
/// case and digits); **unconfirmed** for CPS. Checked anyway: the API would refuse a bad
/// password before touching the disk, but reimage reports it at plan time instead.
pub const PASSWORD_LENGTH: std::ops::RangeInclusive<usize> = 8..=30;
/// Hostname rules are unconfirmed (brief §6): reimage allows the DNS label characters.
pub const HOSTNAME_MAX: usize = 64;

/// The options of one server, as the provider uses them. Values that fail validation read as
/// absent here; `validate_server` has already reported them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerOptions {
    pub allow_stop: bool,
    /// `keepData`; `true` unless the manifest says `keep_data: false`.
    pub keep_data: bool,
    pub os_name: Option<String>,
    pub az: Option<String>,
    pub image_type: Option<String>,
    pub sys_raid_type_id: Option<String>,
    pub data_raid_type_id: Option<String>,
    pub keypair_id: Option<String>,
}

impl ServerOptions {
    pub fn read(options: &Map<String, Value>) -> ServerOptions {
        let text = |key: &str| {
            options
                .get(key)
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|value| !value.is_empty())
                .map(str::to_string)
        };
        ServerOptions {
            allow_stop: options.get("allow_stop").and_then(Value::as_bool) == Some(true),
            // Anything but an explicit `false` keeps the data disks.
            keep_data: options.get("keep_data").and_then(Value::as_bool) != Some(false),
            os_name: text("os_name"),
            az: text("az"),
            image_type: text("image_type").map(|value| value.to_ascii_lowercase()),
            sys_raid_type_id: text("sys_raid_type_id"),
            data_raid_type_id: text("data_raid_type_id"),
            keypair_id: text("keypair_id"),
        }
    }
}

/// Every problem with one server's inputs. `password` is the resolved value when it could be
/// read; its text never appears in an issue.
pub fn validate_server(server: &DesiredServer, password: Option<&SecretString>) -> Vec<FieldIssue> {
    let mut issues = Vec::new();
    if server.image.trim().is_empty() {
        issues.push(issue(
            "/os/image",
            "JD Cloud needs the desired OS as an `osTypeId`",
            Some(
                "set `os.image` to an osTypeId from describeOS; `options.os_name` may name it too",
            ),
        ));
    }
    if !server
        .cloud_id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        || server.cloud_id.is_empty()
    {
        issues.push(issue(
            "/id",
            "a JD Cloud instance id holds only letters, digits, `-` and `_`",
            Some("use the instance id shown in the console, e.g. `cps-abcdef0001`"),
        ));
    }
    let password_help = "reinstallInstance requires `instanceSpec.password`: set \
                         `access.password: {env: NAME}` or `{file: PATH}`, and name a key pair \
                         with `options.keypair_id` if you also want one";
    match &server.access {
        DesiredAccess::None => issues.push(issue(
            "/access",
            "JD Cloud needs a password for every reinstall",
            Some(password_help),
        )),
        DesiredAccess::SshKeyId { .. } => issues.push(issue(
            "/access/ssh_key_id",
            "JD Cloud needs a password for every reinstall; a key pair goes in `options.keypair_id`",
            Some(password_help),
        )),
        DesiredAccess::Password { .. } => {
            if let Some(password) = password
                && let Some(problem) = password_problem(password.expose_secret())
            {
                issues.push(issue(
                    "/access/password",
                    &format!("the password does not meet JD Cloud's rule: {problem}"),
                    Some(
                        "8–30 printable ASCII characters with at least one upper-case letter, \
                         one lower-case letter and one digit (JD's common rule; unconfirmed for CPS)",
                    ),
                ));
            }
        }
    }
    if let Some(hostname) = &server.hostname
        && let Some(problem) = hostname_problem(hostname)
    {
        issues.push(issue(
            "/hostname",
            &problem,
            Some("at most 64 letters, digits, `-` and `.`"),
        ));
    }
    issues.extend(option_issues(&server.options));
    issues
}

/// JD's common password rule (see [`PASSWORD_LENGTH`]).
const PASSWORD_POLICY: PasswordPolicy = PasswordPolicy {
    length: PASSWORD_LENGTH,
    specials: None,
    classes: ClassRule::Every,
    allowed: |c| c.is_ascii_graphic(),
    refused: "character(s) that are not printable ASCII",
};

fn password_problem(password: &str) -> Option<String> {
    PASSWORD_POLICY.problem(password)
}

fn hostname_problem(hostname: &str) -> Option<String> {
    rules::hostname_problem(
        hostname,
        HOSTNAME_MAX,
        &format!("at most {HOSTNAME_MAX} are allowed"),
    )
}

/// Problems with JD Cloud server options, at `/options/...`.
pub fn option_issues(options: &Map<String, Value>) -> Vec<FieldIssue> {
    let mut issues = Vec::new();
    for (key, value) in options {
        let pointer = format!("/options/{}", escape_pointer(key));
        match key.as_str() {
            "allow_stop" => {
                if !value.is_boolean() {
                    issues.push(issue(
                        &pointer,
                        &format!("`allow_stop` must be true or false, not {value}"),
                        Some("JD Cloud reinstalls only stopped servers; `allow_stop: true` lets reimage stop a running one first"),
                    ));
                }
            }
            "keep_data" => {
                if !value.is_boolean() {
                    issues.push(issue(
                        &pointer,
                        &format!("`keep_data` must be true or false, not {value}"),
                        Some("`keep_data: false` WIPES THE DATA DISKS; leave it out to keep them"),
                    ));
                }
            }
            "image_type" => {
                let known = value.as_str().is_some_and(|text| {
                    IMAGE_TYPES.contains(&text.trim().to_ascii_lowercase().as_str())
                });
                if !known {
                    issues.push(issue(
                        &pointer,
                        &format!("`image_type` must be `standard` or `standard_app`, not {value}"),
                        Some("leave it out to keep the server's current image type"),
                    ));
                }
            }
            "os_name" | "az" | "sys_raid_type_id" | "data_raid_type_id" | "keypair_id" => {
                if value.as_str().is_none_or(|text| text.trim().is_empty()) {
                    issues.push(issue(
                        &pointer,
                        &format!("`{key}` must be a non-empty string, not {value}"),
                        Some(option_help(key)),
                    ));
                }
            }
            _ => issues.push(issue(
                &pointer,
                &format!("unknown JD Cloud option `{key}`"),
                Some(&allowed_keys_help(key, &OPTION_KEYS)),
            )),
        }
    }
    issues
}

fn option_help(key: &str) -> &'static str {
    match key {
        "os_name" => {
            "the OS's name as describeOS lists it, e.g. `CentOS 7.9 64位`; checked against `os.image` at plan time"
        }
        "az" => "leave it out to keep the server's current availability zone",
        "sys_raid_type_id" => {
            "leave it out to keep the current system RAID; a change rebuilds the system RAID"
        }
        "data_raid_type_id" => {
            "leave it out to keep the current data RAID; a change WIPES THE DATA DISKS and needs `keep_data: false`"
        }
        _ => "the key pair id from the JD Cloud console",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::manifest::{ProviderType, SecretRef};

    pub(crate) fn server() -> DesiredServer {
        DesiredServer {
            name: "web-1".into(),
            provider: "jd".into(),
            provider_type: ProviderType::JdcloudCps,
            cloud_id: "cps-abcdef0001".into(),
            image: "os-ubuntu-2204".into(),
            revision: 0,
            access: DesiredAccess::Password {
                secret: SecretRef::Env("JD_PW".into()),
            },
            hostname: Some("web-1".into()),
            user_data: None,
            protect: false,
            group: None,
            address: None,
            health: Default::default(),
            options: Map::new(),
        }
    }

    fn pointers(issues: &[FieldIssue]) -> Vec<&str> {
        issues.iter().map(|issue| issue.pointer.as_str()).collect()
    }

    #[test]
    fn a_valid_server_has_no_issues() {
        let mut server = server();
        server.options = json!({
            "allow_stop": true, "keep_data": false, "os_name": "Ubuntu 22.04",
            "az": "cn-east-1a", "image_type": "Standard", "sys_raid_type_id": "r-1",
            "data_raid_type_id": "r-2", "keypair_id": "kp-1"
        })
        .as_object()
        .cloned()
        .unwrap();
        let password = SecretString::from("Abcdefg1".to_string());
        assert_eq!(validate_server(&server, Some(&password)), vec![]);
        let read = ServerOptions::read(&server.options);
        assert!(read.allow_stop && !read.keep_data);
        assert_eq!(read.image_type.as_deref(), Some("standard"));
    }

    #[test]
    fn keep_data_defaults_to_yes_and_only_false_wipes() {
        assert!(ServerOptions::read(&Map::new()).keep_data);
        for value in [json!(true), json!("no"), json!(0)] {
            let options = json!({ "keep_data": value }).as_object().cloned().unwrap();
            assert!(ServerOptions::read(&options).keep_data, "{value}");
        }
        let options = json!({"keep_data": false}).as_object().cloned().unwrap();
        assert!(!ServerOptions::read(&options).keep_data);
        // A non-boolean is a validation error, not a silent default.
        let options = json!({"keep_data": "no"}).as_object().cloned().unwrap();
        assert_eq!(pointers(&option_issues(&options)), ["/options/keep_data"]);
    }

    #[test]
    fn access_must_be_a_password() {
        let mut server = server();
        server.access = DesiredAccess::SshKeyId { id: "kp-1".into() };
        let issues = validate_server(&server, None);
        assert_eq!(pointers(&issues), ["/access/ssh_key_id"]);
        assert!(issues[0].message.contains("options.keypair_id"));
        server.access = DesiredAccess::None;
        assert_eq!(pointers(&validate_server(&server, None)), ["/access"]);
    }

    #[test]
    fn passwords_follow_the_rule_and_are_never_quoted() {
        for (password, expected) in [
            ("Ab1", "3 characters"),
            ("abcdefg1", "no upper-case"),
            ("ABCDEFG1", "no lower-case"),
            ("Abcdefgh", "no digit"),
            ("Abcdefg1 ", "not printable ASCII"),
            ("Abcdéfg1", "not printable ASCII"),
        ] {
            let secret = SecretString::from(password.to_string());
            let issues = validate_server(&server(), Some(&secret));
            assert_eq!(pointers(&issues), ["/access/password"], "{password}");
            let text = format!("{} {:?}", issues[0].message, issues[0].help);
            assert!(text.contains(expected), "{password}: {text}");
            assert!(!text.contains(password), "{password} leaked: {text}");
        }
    }

    #[test]
    fn ids_hostnames_and_images_are_checked() {
        let mut bad = server();
        bad.cloud_id = "cps-1/../x".into();
        bad.hostname = Some("web_1".into());
        bad.image = " ".into();
        assert_eq!(
            pointers(&validate_server(&bad, None)),
            ["/os/image", "/id", "/hostname"]
        );
    }

    #[test]
    fn option_values_and_unknown_keys() {
        let options = json!({
            "allow_stop": "yes", "image_type": "fancy", "az": "", "keepdata": false, "zzz": 1
        })
        .as_object()
        .cloned()
        .unwrap();
        let issues = option_issues(&options);
        assert_eq!(
            pointers(&issues),
            [
                "/options/allow_stop",
                "/options/image_type",
                "/options/az",
                "/options/keepdata",
                "/options/zzz"
            ]
        );
        let help = issues[3].help.as_deref().unwrap();
        assert!(help.starts_with("did you mean `keep_data`?"), "{help}");
        assert!(!issues[4].help.as_deref().unwrap().contains("did you mean"));
    }
}
