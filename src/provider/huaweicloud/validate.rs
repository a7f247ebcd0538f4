//! Huawei Cloud's documented input rules, checked without network. Pointers are relative to the
//! server entry in the manifest.

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};

use super::wire::{Cloud, USER_DATA_MAX_BYTES};
use crate::manifest::{DesiredAccess, DesiredServer, ProviderType};
use crate::provider::FieldIssue;
use crate::provider::rules::{
    ClassRule, PasswordPolicy, allowed_keys_help, escape_pointer, issue, join_problems,
};

/// Server options of a `huaweicloud-ecs` server.
pub const ECS_OPTION_KEYS: [&str; 4] = ["cloud_init", "cloud", "user_id", "with_stop_server"];
/// Special characters a password may hold (brief §4.1 and §7.3).
pub const PASSWORD_SPECIALS: &str = "!@$%^-_=+[{}]:,./?";
pub const PASSWORD_LENGTH: std::ops::RangeInclusive<usize> = 8..=26;
/// The administrator accounts a password must not contain (forwards or reversed).
const ACCOUNT_NAMES: [&str; 2] = ["root", "administrator"];

/// ECS server settings read from `options`, with their defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EcsOptions {
    /// The target image has Cloud-Init: the v2 calls are used and user data is allowed.
    pub cloud_init: bool,
    pub cloud: Cloud,
    pub user_id: Option<String>,
    /// Send `mode: withStopServer` (default): the platform stops a running server itself.
    pub with_stop_server: bool,
}

impl EcsOptions {
    /// Reads the options, collecting a problem per bad key (pointer, message, help).
    pub fn read(options: &Map<String, Value>) -> (EcsOptions, Vec<FieldIssue>) {
        let mut settings = EcsOptions {
            cloud_init: false,
            cloud: Cloud::Huawei,
            user_id: None,
            with_stop_server: true,
        };
        let mut issues = Vec::new();
        for (key, value) in options {
            let pointer = format!("/options/{}", escape_pointer(key));
            match key.as_str() {
                "cloud_init" | "with_stop_server" => match value.as_bool() {
                    Some(flag) if key == "cloud_init" => settings.cloud_init = flag,
                    Some(flag) => settings.with_stop_server = flag,
                    None => issues.push(issue(
                        &pointer,
                        &format!("`{key}` must be true or false, not {value}"),
                        Some(if key == "cloud_init" {
                            "true when the target image has Cloud-Init (the v2 calls are used \
                             and user data is allowed); default false"
                        } else {
                            "true (default) lets the platform stop a running server before the \
                             reinstall"
                        }),
                    )),
                },
                "cloud" => match value.as_str().and_then(Cloud::parse) {
                    Some(cloud) => settings.cloud = cloud,
                    None => issues.push(issue(
                        &pointer,
                        &format!("`cloud` must be `huaweicloud` or `otc`, not {value}"),
                        Some("`otc` (Open Telekom Cloud) applies its own rules to the same calls"),
                    )),
                },
                "user_id" => match value.as_str().filter(|text| !text.trim().is_empty()) {
                    Some(text) => settings.user_id = Some(text.trim().to_string()),
                    None => issues.push(issue(
                        &pointer,
                        "`user_id` must be a non-empty string",
                        Some("the IAM user id that owns the key pair"),
                    )),
                },
                _ => issues.push(issue(
                    &pointer,
                    &format!("unknown huaweicloud-ecs option `{key}`"),
                    Some(&allowed_keys_help(key, &ECS_OPTION_KEYS)),
                )),
            }
        }
        (settings, issues)
    }
}

/// Every problem with one server's inputs. `password` is the resolved value when it could be
/// read; its text never appears in an issue.
pub fn validate_server(server: &DesiredServer, password: Option<&SecretString>) -> Vec<FieldIssue> {
    match server.provider_type {
        ProviderType::HuaweicloudEcs => validate_ecs(server, password),
        ProviderType::HuaweicloudClouddc => validate_clouddc(server, password),
        _ => Vec::new(),
    }
}

fn common_issues(server: &DesiredServer, what: &str, issues: &mut Vec<FieldIssue>) {
    if server.image.trim().is_empty() {
        issues.push(issue(
            "/os/image",
            &format!("{what} needs an explicit image id"),
            Some("set `os.image` to the image id (a UUID from IMS)"),
        ));
    }
    if server.hostname.is_some() {
        issues.push(issue(
            "/hostname",
            &format!("{what} cannot set a hostname during a reinstall"),
            Some("remove `hostname`; set it with user data (Cloud-Init) or after the install"),
        ));
    }
}

fn password_issue(password: Option<&SecretString>, issues: &mut Vec<FieldIssue>) {
    if let Some(password) = password
        && let Some(problem) = password_problem(password.expose_secret())
    {
        issues.push(issue(
            "/access/password",
            &format!("the password does not meet Huawei Cloud's policy: {problem}"),
            Some(&format!(
                "8–26 characters with at least three of: upper-case letters, lower-case letters, \
                 digits, and `{PASSWORD_SPECIALS}`; nothing else; and not containing `root` or \
                 `Administrator` (or either reversed)"
            )),
        ));
    }
}

fn validate_ecs(server: &DesiredServer, password: Option<&SecretString>) -> Vec<FieldIssue> {
    let mut issues = Vec::new();
    common_issues(server, "ECS", &mut issues);
    let (options, option_issues) = EcsOptions::read(&server.options);
    issues.extend(option_issues);
    if let Some(user_data) = &server.user_data {
        if !options.cloud_init {
            issues.push(issue(
                "/user_data",
                "user data needs an image with Cloud-Init",
                Some(
                    "ECS only takes user data in the Cloud-Init (v2) calls: set \
                     `options.cloud_init: true` if the image has Cloud-Init, or remove `user_data`",
                ),
            ));
        }
        if user_data.len() > USER_DATA_MAX_BYTES {
            issues.push(issue(
                "/user_data",
                &format!(
                    "user data is {} bytes; ECS accepts at most {USER_DATA_MAX_BYTES} (32 KB)",
                    user_data.len()
                ),
                Some("shrink the script, or have it download the rest on first boot"),
            ));
        }
    }
    let otc_v1 = options.cloud == Cloud::OpenTelekom && !options.cloud_init;
    match &server.access {
        DesiredAccess::None if options.cloud_init && server.user_data.is_some() => {}
        DesiredAccess::None => issues.push(issue(
            "/access",
            "ECS needs a password or a key pair",
            Some(if otc_v1 {
                "Open Telekom Cloud needs `ssh_key_id` and `options.user_id` for images without \
                 Cloud-Init"
            } else {
                "set `access.password` or `access.ssh_key_id` (a Cloud-Init image may go without \
                 when `user_data` is set)"
            }),
        )),
        DesiredAccess::Password { .. } if otc_v1 => issues.push(issue(
            "/access/password",
            "Open Telekom Cloud takes no password for images without Cloud-Init",
            Some("use `access.ssh_key_id` with `options.user_id`, or a Cloud-Init image"),
        )),
        DesiredAccess::Password { .. } => password_issue(password, &mut issues),
        DesiredAccess::SshKeyId { id } if id.trim().is_empty() => issues.push(issue(
            "/access/ssh_key_id",
            "the key pair name is empty",
            Some("use the key pair name shown in the ECS console"),
        )),
        DesiredAccess::SshKeyId { .. } => {
            // Brief §4.1: `userid` is required with `keyname`; without it every key-pair
            // reinstall is refused by the API.
            // A `user_id` that is there but wrong was reported with the options already.
            if options.user_id.is_none() && !server.options.contains_key("user_id") {
                issues.push(issue(
                    "/access/ssh_key_id",
                    "ECS needs `options.user_id` with a key pair (`ssh_key_id`)",
                    Some(
                        "set `options.user_id` to the IAM user id that owns the key pair (shown \
                         under My Credentials in the console); the API refuses `keyname` \
                         without `userid`",
                    ),
                ));
            }
        }
    }
    issues
}

fn validate_clouddc(server: &DesiredServer, password: Option<&SecretString>) -> Vec<FieldIssue> {
    let mut issues = Vec::new();
    common_issues(server, "CloudDC", &mut issues);
    match &server.access {
        DesiredAccess::Password { .. } => password_issue(password, &mut issues),
        _ => issues.push(issue(
            "/access",
            "CloudDC needs a password",
            Some(
                "the batch reinstall call requires `password` and takes no key pair: set \
                 `access.password: {env: …}` or `{file: …}`",
            ),
        )),
    }
    if server.user_data.is_some() {
        issues.push(issue(
            "/user_data",
            "CloudDC's reinstall takes no user data",
            Some("remove `user_data` for CloudDC servers"),
        ));
    }
    for key in server.options.keys() {
        issues.push(issue(
            &format!("/options/{}", escape_pointer(key)),
            &format!("unknown huaweicloud-clouddc option `{key}`"),
            Some("CloudDC servers take no options"),
        ));
    }
    issues
}

/// Huawei Cloud's password policy, but for the account names (brief §4.1 and §7.3).
const PASSWORD_POLICY: PasswordPolicy = PasswordPolicy {
    length: PASSWORD_LENGTH,
    specials: Some(PASSWORD_SPECIALS),
    classes: ClassRule::AtLeast(3),
    allowed: |c| c.is_ascii_alphanumeric() || PASSWORD_SPECIALS.contains(c),
    refused: "character(s) outside the allowed set",
};

/// What is wrong with a password, in words that never quote it.
pub fn password_problem(password: &str) -> Option<String> {
    let mut problems = PASSWORD_POLICY.problems(password);
    let lower = password.to_ascii_lowercase();
    for name in ACCOUNT_NAMES {
        let reversed: String = name.chars().rev().collect();
        if lower.contains(name) || lower.contains(&reversed) {
            problems.push(format!(
                "it contains the account name `{name}` or its reverse"
            ));
        }
    }
    join_problems(problems)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::manifest::SecretRef;

    fn ecs_server() -> DesiredServer {
        DesiredServer {
            name: "web-1".into(),
            provider: "hw".into(),
            provider_type: ProviderType::HuaweicloudEcs,
            cloud_id: "6ef9c3a2-1111-4e6b-9b5a-0c1f0a2b3c4d".into(),
            image: "67f433d8-ed0e-4321-a8a2-a71838539e09".into(),
            revision: 0,
            access: DesiredAccess::SshKeyId {
                id: "kp-ops".into(),
            },
            hostname: None,
            user_data: None,
            protect: false,
            group: None,
            address: None,
            health: Default::default(),
            options: json!({"user_id": "u-ops"}).as_object().cloned().unwrap(),
        }
    }

    fn clouddc_server() -> DesiredServer {
        DesiredServer {
            provider_type: ProviderType::HuaweicloudClouddc,
            options: Map::new(),
            access: DesiredAccess::Password {
                secret: SecretRef::Env("HW_PW".into()),
            },
            ..ecs_server()
        }
    }

    /// The server with these options laid over its own.
    fn with_options(mut server: DesiredServer, options: Value) -> DesiredServer {
        server.options.extend(options.as_object().cloned().unwrap());
        server
    }

    fn pointers(issues: &[FieldIssue]) -> Vec<&str> {
        issues.iter().map(|issue| issue.pointer.as_str()).collect()
    }

    fn password(text: &str) -> SecretString {
        SecretString::from(text.to_string())
    }

    #[test]
    fn valid_servers_have_no_issues() {
        assert_eq!(validate_server(&ecs_server(), None), vec![]);
        let mut v2 = with_options(
            ecs_server(),
            json!({"cloud_init": true, "with_stop_server": false}),
        );
        v2.user_data = Some("#cloud-config\n".into());
        v2.access = DesiredAccess::None;
        assert_eq!(validate_server(&v2, None), vec![]);
        let good = password("Reimage!2025x");
        assert_eq!(validate_server(&clouddc_server(), Some(&good)), vec![]);
        let otc = with_options(ecs_server(), json!({"cloud": "otc", "user_id": "u-1"}));
        assert_eq!(validate_server(&otc, None), vec![]);
    }

    #[test]
    fn user_data_without_cloud_init_points_at_user_data() {
        let mut server = ecs_server();
        server.user_data = Some("#!/bin/sh\n".into());
        let issues = validate_server(&server, None);
        assert_eq!(pointers(&issues), ["/user_data"]);
        assert!(
            issues[0]
                .help
                .as_deref()
                .unwrap()
                .contains("cloud_init: true")
        );
        let mut server = with_options(ecs_server(), json!({"cloud_init": true}));
        server.user_data = Some("x".repeat(USER_DATA_MAX_BYTES + 1));
        assert_eq!(pointers(&validate_server(&server, None)), ["/user_data"]);
    }

    #[test]
    fn ecs_access_rules_per_cloud() {
        let mut none = ecs_server();
        none.access = DesiredAccess::None;
        assert_eq!(pointers(&validate_server(&none, None)), ["/access"]);
        // Cloud-Init without user data still needs a credential.
        let mut v2_none = with_options(ecs_server(), json!({"cloud_init": true}));
        v2_none.access = DesiredAccess::None;
        assert_eq!(pointers(&validate_server(&v2_none, None)), ["/access"]);
        // A key pair needs the user id (on every cloud).
        for options in [json!({}), json!({"cloud": "otc"})] {
            let mut server = with_options(ecs_server(), options);
            server.options.remove("user_id");
            let issues = validate_server(&server, None);
            assert_eq!(pointers(&issues), ["/access/ssh_key_id"]);
            assert!(issues[0].message.contains("`options.user_id`"));
        }
        let mut otc_password = with_options(ecs_server(), json!({"cloud": "otc"}));
        otc_password.access = DesiredAccess::Password {
            secret: SecretRef::Env("X".into()),
        };
        assert_eq!(
            pointers(&validate_server(
                &otc_password,
                Some(&password("Reimage!2025x"))
            )),
            ["/access/password"]
        );
        // OTC v2 takes a password (and needs no user id).
        let mut otc_v2 = with_options(ecs_server(), json!({"cloud": "otc", "cloud_init": true}));
        otc_v2.access = otc_password.access.clone();
        assert_eq!(
            validate_server(&otc_v2, Some(&password("Reimage!2025x"))),
            vec![]
        );
    }

    #[test]
    fn passwords_follow_the_policy_and_are_never_quoted() {
        let cases = [
            ("Ab1!xyz", "7 characters"),
            ("Abcdefgh1!Abcdefgh1!Abcdefgh", "28 characters"),
            ("abcdefgh1", "only 2 of the 4"),
            ("Abcdef1#x", "outside the allowed set"),
            ("Abcdéfg1!", "outside the allowed set"),
            ("Root1234!x", "`root`"),
            ("xTOOR1234!", "`root`"),
            ("rotartsinimdA1!", "`administrator`"),
        ];
        for server in [clouddc_server(), {
            let mut ecs = ecs_server();
            ecs.access = DesiredAccess::Password {
                secret: SecretRef::Env("X".into()),
            };
            ecs
        }] {
            for (text, expected) in cases {
                let issues = validate_server(&server, Some(&password(text)));
                assert_eq!(pointers(&issues), ["/access/password"], "{text}");
                let shown = format!("{} {:?}", issues[0].message, issues[0].help);
                assert!(shown.contains(expected), "{text}: {shown}");
                assert!(!shown.contains(text), "{text} leaked: {shown}");
            }
        }
        // Three classes are enough.
        assert_eq!(password_problem("abcdefg1!"), None);
        assert_eq!(password_problem("ABCDEFG1a"), None);
    }

    #[test]
    fn clouddc_needs_a_password_and_takes_no_user_data_hostname_or_options() {
        let mut server = clouddc_server();
        server.access = DesiredAccess::SshKeyId { id: "kp".into() };
        server.user_data = Some("x".into());
        server.hostname = Some("h".into());
        server.options = json!({"cloud_init": true}).as_object().cloned().unwrap();
        assert_eq!(
            pointers(&validate_server(&server, None)),
            ["/hostname", "/access", "/user_data", "/options/cloud_init"]
        );
    }

    #[test]
    fn options_are_checked_with_suggestions() {
        let server = with_options(
            ecs_server(),
            json!({"cloudinit": true, "cloud": "aws", "with_stop_server": "yes", "user_id": ""}),
        );
        let issues = validate_server(&server, None);
        assert_eq!(
            pointers(&issues),
            [
                "/options/user_id",
                "/options/cloudinit",
                "/options/cloud",
                "/options/with_stop_server",
            ]
        );
        assert!(
            issues[1]
                .help
                .as_deref()
                .unwrap()
                .starts_with("did you mean `cloud_init`?")
        );
    }

    #[test]
    fn empty_image_and_hostname_are_issues() {
        let mut server = ecs_server();
        server.image = " ".into();
        server.hostname = Some("web".into());
        assert_eq!(
            pointers(&validate_server(&server, None)),
            ["/os/image", "/hostname"]
        );
    }
}
