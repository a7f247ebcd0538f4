//! Zenlayer's documented input rules for `ReinstallInstance`, checked without network.
//! Pointers are relative to the server entry in the manifest.

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};

use crate::manifest::{DesiredAccess, DesiredServer};
use crate::provider::FieldIssue;
use crate::provider::rules::{
    self, ClassRule, PasswordPolicy, allowed_keys_help, escape_pointer, issue,
};

/// Provider options a Zenlayer server may set.
pub const OPTION_KEYS: [&str; 3] = ["raid_type", "partitions", "nic"];
/// Special characters a password may contain (the docs list `1~!@$^*-_=+`; the leading `1` is
/// taken for a typo, since digits are a class of their own).
pub const PASSWORD_SPECIALS: &str = "~!@$^*-_=+";
pub const PASSWORD_LENGTH: std::ops::RangeInclusive<usize> = 8..=16;
pub const HOSTNAME_MAX: usize = 64;
/// 32 KB, counted in bytes of the text as sent.
pub const USER_DATA_MAX_BYTES: usize = 32 * 1024;
const RAID_TYPES: [u64; 4] = [0, 1, 5, 10];
const PARTITION_KEYS: [&str; 3] = ["fs_path", "fs_type", "size"];
const NIC_KEYS: [&str; 2] = ["wan_name", "lan_name"];
const NIC_NAME_LENGTH: std::ops::RangeInclusive<usize> = 4..=10;

/// Every problem with one server's inputs. `password` is the resolved value when it could be
/// read; its text never appears in an issue.
pub fn validate_server(server: &DesiredServer, password: Option<&SecretString>) -> Vec<FieldIssue> {
    let mut issues = Vec::new();
    if server.image.trim().is_empty() {
        issues.push(issue(
            "/os/image",
            "Zenlayer needs an explicit image id",
            Some("without `imageId` Zenlayer reinstalls whatever image is installed now; set `os.image`"),
        ));
    }
    match &server.access {
        DesiredAccess::None => issues.push(issue(
            "/access",
            "Zenlayer needs exactly one of `ssh_key_id` and `password`",
            Some(
                "ReinstallInstance takes either `password` or `keyId`, never both; without \
                 either Zenlayer mails a random password, which reimage cannot manage",
            ),
        )),
        DesiredAccess::SshKeyId { id } if id.trim().is_empty() => issues.push(issue(
            "/access/ssh_key_id",
            "the SSH key pair id is empty",
            Some("use the key pair id shown in the Zenlayer console, e.g. `key-YWD2QFOl`"),
        )),
        DesiredAccess::SshKeyId { .. } => {}
        DesiredAccess::Password { .. } => {
            if let Some(password) = password
                && let Some(problem) = password_problem(password.expose_secret())
            {
                issues.push(issue(
                    "/access/password",
                    &format!("the password does not meet Zenlayer's policy: {problem}"),
                    Some(&format!(
                        "8–16 characters with at least one upper-case letter, one lower-case \
                         letter, one digit and one of `{PASSWORD_SPECIALS}`, and nothing else; \
                         Zenlayer also makes it the machine's IPMI password"
                    )),
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
            Some("Zenlayer hostnames are at most 64 characters of letters, digits, `-` and `.`"),
        ));
    }
    if let Some(user_data) = &server.user_data
        && user_data.len() > USER_DATA_MAX_BYTES
    {
        issues.push(issue(
            "/user_data",
            &format!(
                "user data is {} bytes; Zenlayer accepts at most {USER_DATA_MAX_BYTES} (32 KB)",
                user_data.len()
            ),
            Some("shrink the script, or have it download the rest on first boot"),
        ));
    }
    issues.extend(option_issues(&server.options));
    issues
}

/// Zenlayer's password policy.
const PASSWORD_POLICY: PasswordPolicy = PasswordPolicy {
    length: PASSWORD_LENGTH,
    specials: Some(PASSWORD_SPECIALS),
    classes: ClassRule::Every,
    allowed: |c| c.is_ascii_alphanumeric() || PASSWORD_SPECIALS.contains(c),
    refused: "character(s) outside the allowed set",
};

/// What is wrong with a password, in words that never quote it.
fn password_problem(password: &str) -> Option<String> {
    PASSWORD_POLICY.problem(password)
}

fn hostname_problem(hostname: &str) -> Option<String> {
    rules::hostname_problem(
        hostname,
        HOSTNAME_MAX,
        &format!("Zenlayer accepts at most {HOSTNAME_MAX}"),
    )
}

/// Problems with Zenlayer provider options, at `/options/...`.
pub fn option_issues(options: &Map<String, Value>) -> Vec<FieldIssue> {
    let mut issues = Vec::new();
    for (key, value) in options {
        let pointer = format!("/options/{}", escape_pointer(key));
        match key.as_str() {
            "raid_type" => {
                if !value
                    .as_u64()
                    .is_some_and(|raid| RAID_TYPES.contains(&raid))
                {
                    issues.push(issue(
                        &pointer,
                        &format!("`raid_type` must be 0, 1, 5 or 10, not {value}"),
                        Some("Zenlayer's fast RAID setup: 0, 1, 5 or 10; omit it to keep the default"),
                    ));
                }
            }
            "partitions" => partition_issues(&pointer, value, &mut issues),
            "nic" => nic_issues(&pointer, value, &mut issues),
            _ => issues.push(issue(
                &pointer,
                &format!("unknown Zenlayer option `{key}`"),
                Some(&allowed_keys_help(key, &OPTION_KEYS)),
            )),
        }
    }
    issues
}

fn partition_issues(pointer: &str, value: &Value, issues: &mut Vec<FieldIssue>) {
    let help = "a list of `{fs_path, fs_type, size}` with sizes in GB; the first is `/`, \
                every path starts with `/`";
    let Some(list) = value.as_array() else {
        issues.push(issue(pointer, "`partitions` must be a list", Some(help)));
        return;
    };
    if list.is_empty() {
        issues.push(issue(
            pointer,
            "`partitions` is empty",
            Some("omit `partitions` to keep the image's default layout"),
        ));
        return;
    }
    let mut seen_paths: std::collections::HashSet<&str> = std::collections::HashSet::new();
    for (index, partition) in list.iter().enumerate() {
        let entry = format!("{pointer}/{index}");
        let Some(fields) = partition.as_object() else {
            issues.push(issue(&entry, "a partition must be an object", Some(help)));
            continue;
        };
        for key in fields.keys() {
            if !PARTITION_KEYS.contains(&key.as_str()) {
                issues.push(issue(
                    &format!("{entry}/{}", escape_pointer(key)),
                    &format!("unknown partition field `{key}`"),
                    Some(&allowed_keys_help(key, &PARTITION_KEYS)),
                ));
            }
        }
        match fields.get("fs_path").and_then(Value::as_str) {
            None => issues.push(issue(
                &format!("{entry}/fs_path"),
                "`fs_path` (a string) is required",
                Some(help),
            )),
            Some(path) if !path.starts_with('/') => issues.push(issue(
                &format!("{entry}/fs_path"),
                &format!("`fs_path` must start with `/`, not `{path}`"),
                Some(help),
            )),
            Some(path) if index == 0 && path != "/" => issues.push(issue(
                &format!("{entry}/fs_path"),
                &format!("the first partition must be `/`, not `{path}`"),
                Some(help),
            )),
            Some(path) if seen_paths.contains(&path) => issues.push(issue(
                &format!("{entry}/fs_path"),
                &format!("`{path}` appears twice"),
                Some(help),
            )),
            Some(path) => {
                seen_paths.insert(path);
            }
        }
        if fields
            .get("fs_type")
            .and_then(Value::as_str)
            .is_none_or(|fs_type| fs_type.trim().is_empty())
        {
            issues.push(issue(
                &format!("{entry}/fs_type"),
                "`fs_type` (a non-empty string) is required",
                Some("e.g. `ext4`; Zenlayer documents ext2, ext3 and ext4 for Linux"),
            ));
        }
        if fields
            .get("size")
            .and_then(Value::as_u64)
            .is_none_or(|size| size == 0)
        {
            issues.push(issue(
                &format!("{entry}/size"),
                "`size` must be a whole number of GB greater than 0",
                Some(help),
            ));
        }
    }
}

fn nic_issues(pointer: &str, value: &Value, issues: &mut Vec<FieldIssue>) {
    let help = "NIC names are 4–10 letters or digits starting with a letter; the WAN and LAN \
                names differ, the WAN name must not start with `lan` nor the LAN name with `wan`";
    let Some(fields) = value.as_object() else {
        issues.push(issue(
            pointer,
            "`nic` must be an object `{wan_name, lan_name}`",
            Some(help),
        ));
        return;
    };
    for key in fields.keys() {
        if !NIC_KEYS.contains(&key.as_str()) {
            issues.push(issue(
                &format!("{pointer}/{}", escape_pointer(key)),
                &format!("unknown nic field `{key}`"),
                Some(&allowed_keys_help(key, &NIC_KEYS)),
            ));
        }
    }
    let mut name = |key: &str, forbidden_prefix: &str| -> Option<String> {
        let field_pointer = format!("{pointer}/{key}");
        let Some(text) = fields.get(key).and_then(Value::as_str) else {
            issues.push(issue(
                &field_pointer,
                &format!("`{key}` (a string) is required"),
                Some(help),
            ));
            return None;
        };
        let length = text.chars().count();
        let problem = if !NIC_NAME_LENGTH.contains(&length) {
            Some(format!("`{key}` is {length} characters long"))
        } else if !text.chars().all(|c| c.is_ascii_alphanumeric()) {
            Some(format!("`{key}` may hold only letters and digits"))
        } else if !text.starts_with(|c: char| c.is_ascii_alphabetic()) {
            Some(format!("`{key}` must start with a letter"))
        } else if text.to_ascii_lowercase().starts_with(forbidden_prefix) {
            Some(format!("`{key}` must not start with `{forbidden_prefix}`"))
        } else {
            None
        };
        match problem {
            Some(problem) => {
                issues.push(issue(&field_pointer, &problem, Some(help)));
                None
            }
            None => Some(text.to_string()),
        }
    };
    let wan = name("wan_name", "lan");
    let lan = name("lan_name", "wan");
    if let (Some(wan), Some(lan)) = (wan, lan)
        && wan.eq_ignore_ascii_case(&lan)
    {
        issues.push(issue(
            &format!("{pointer}/lan_name"),
            "`wan_name` and `lan_name` must differ",
            Some(help),
        ));
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::manifest::{ProviderType, SecretRef};

    fn server() -> DesiredServer {
        DesiredServer {
            group: None,
            address: None,
            health: Default::default(),
            name: "web-1".into(),
            provider: "zl".into(),
            provider_type: ProviderType::ZenlayerBmc,
            cloud_id: "i-1".into(),
            image: "img-ubuntu".into(),
            revision: 0,
            access: DesiredAccess::SshKeyId {
                id: "key-YWD2QFOl".into(),
            },
            hostname: Some("web-1.example".into()),
            user_data: Some("#!/bin/sh\necho hi\n".into()),
            protect: false,
            options: Map::new(),
        }
    }

    fn with_options(value: Value) -> DesiredServer {
        let mut server = server();
        server.options = value.as_object().cloned().unwrap();
        server
    }

    fn pointers(issues: &[FieldIssue]) -> Vec<&str> {
        issues.iter().map(|issue| issue.pointer.as_str()).collect()
    }

    fn password_server() -> DesiredServer {
        let mut server = server();
        server.access = DesiredAccess::Password {
            secret: SecretRef::Env("ZL_PW".into()),
        };
        server
    }

    #[test]
    fn a_valid_server_has_no_issues() {
        let server = with_options(json!({
            "raid_type": 10,
            "partitions": [
                {"fs_path": "/", "fs_type": "ext4", "size": 100},
                {"fs_path": "/data", "fs_type": "ext4", "size": 500}
            ],
            "nic": {"wan_name": "wan0", "lan_name": "lan0"}
        }));
        assert_eq!(validate_server(&server, None), vec![]);
        let good = SecretString::from("Abcdef1~".to_string());
        assert_eq!(validate_server(&password_server(), Some(&good)), vec![]);
    }

    #[test]
    fn access_must_be_given() {
        let mut server = server();
        server.access = DesiredAccess::None;
        let issues = validate_server(&server, None);
        assert_eq!(pointers(&issues), ["/access"]);
        assert!(issues[0].help.as_deref().unwrap().contains("never both"));
    }

    #[test]
    fn passwords_follow_the_policy_and_are_never_quoted() {
        let cases = [
            ("Ab1~", "4 characters"),
            ("Abcdefgh1~Abcdefgh", "18 characters"),
            ("abcdefg1~", "no upper-case"),
            ("ABCDEFG1~", "no lower-case"),
            ("Abcdefgh~", "no digit"),
            ("Abcdefgh1", "no special"),
            ("Abcdef1~#", "outside the allowed set"),
            ("Abcdéf1~", "outside the allowed set"),
        ];
        for (password, expected) in cases {
            let secret = SecretString::from(password.to_string());
            let issues = validate_server(&password_server(), Some(&secret));
            assert_eq!(pointers(&issues), ["/access/password"], "{password}");
            let text = format!("{} {:?}", issues[0].message, issues[0].help);
            assert!(text.contains(expected), "{password}: {text}");
            assert!(!text.contains(password), "{password} leaked: {text}");
        }
        // Without the value, policy cannot be checked and nothing is reported.
        assert_eq!(validate_server(&password_server(), None), vec![]);
    }

    #[test]
    fn hostnames_are_limited() {
        for (hostname, ok) in [
            ("a".repeat(64), true),
            ("a".repeat(65), false),
            ("web_1".to_string(), false),
            ("web 1".to_string(), false),
            (String::new(), false),
            ("web-1.example.com".to_string(), true),
        ] {
            let mut server = server();
            server.hostname = Some(hostname.clone());
            let issues = validate_server(&server, None);
            assert_eq!(issues.is_empty(), ok, "{hostname}: {issues:?}");
            if !ok {
                assert_eq!(pointers(&issues), ["/hostname"]);
            }
        }
    }

    #[test]
    fn user_data_is_at_most_32_kib() {
        let mut server = server();
        server.user_data = Some("x".repeat(USER_DATA_MAX_BYTES));
        assert!(validate_server(&server, None).is_empty());
        server.user_data = Some("x".repeat(USER_DATA_MAX_BYTES + 1));
        assert_eq!(pointers(&validate_server(&server, None)), ["/user_data"]);
    }

    #[test]
    fn an_empty_image_is_an_issue() {
        let mut server = server();
        server.image = String::new();
        assert_eq!(pointers(&validate_server(&server, None)), ["/os/image"]);
    }

    #[test]
    fn raid_types_are_checked() {
        for (value, ok) in [
            (json!(0), true),
            (json!(5), true),
            (json!(2), false),
            (json!("1"), false),
        ] {
            let issues = validate_server(&with_options(json!({ "raid_type": value })), None);
            assert_eq!(issues.is_empty(), ok, "{value}");
        }
    }

    #[test]
    fn partitions_are_checked() {
        let issues = validate_server(
            &with_options(json!({"partitions": [
                {"fs_path": "/data", "fs_type": "ext4", "size": 10},
                {"fs_path": "home", "fs_type": "", "size": 0, "mount": true},
                {"fs_path": "/data", "fs_type": "ext4", "size": 1.5},
                "swap"
            ]})),
            None,
        );
        assert_eq!(
            pointers(&issues),
            [
                "/options/partitions/0/fs_path",
                "/options/partitions/1/mount",
                "/options/partitions/1/fs_path",
                "/options/partitions/1/fs_type",
                "/options/partitions/1/size",
                "/options/partitions/2/size",
                "/options/partitions/3",
            ]
        );
        assert!(issues[0].message.contains("first partition must be `/`"));
        let issues = validate_server(&with_options(json!({"partitions": []})), None);
        assert_eq!(pointers(&issues), ["/options/partitions"]);
        let issues = validate_server(
            &with_options(json!({"partitions": [
                {"fs_path": "/", "fs_type": "ext4", "size": 10},
                {"fs_path": "/", "fs_type": "ext4", "size": 10}
            ]})),
            None,
        );
        assert_eq!(pointers(&issues), ["/options/partitions/1/fs_path"]);
    }

    #[test]
    fn nic_names_are_checked() {
        let cases = [
            (json!({"wan_name": "wan0", "lan_name": "lan0"}), vec![]),
            (json!({"wan_name": "bond0", "lan_name": "bond1"}), vec![]),
            (
                json!({"wan_name": "wan", "lan_name": "lan0"}),
                vec!["/options/nic/wan_name"],
            ),
            (
                json!({"wan_name": "0wan", "lan_name": "lan0"}),
                vec!["/options/nic/wan_name"],
            ),
            (
                json!({"wan_name": "wan-0", "lan_name": "lan0"}),
                vec!["/options/nic/wan_name"],
            ),
            (
                json!({"wan_name": "lanx", "lan_name": "lan0"}),
                vec!["/options/nic/wan_name"],
            ),
            (
                json!({"wan_name": "wan0", "lan_name": "wan1"}),
                vec!["/options/nic/lan_name"],
            ),
            (
                json!({"wan_name": "eth00", "lan_name": "ETH00"}),
                vec!["/options/nic/lan_name"],
            ),
            (json!({"wan_name": "wan0"}), vec!["/options/nic/lan_name"]),
            (
                json!({"wan_name": "wan0", "lan_name": "lan0", "mtu": 9000}),
                vec!["/options/nic/mtu"],
            ),
            (json!("wan0"), vec!["/options/nic"]),
        ];
        for (nic, expected) in cases {
            let issues = validate_server(&with_options(json!({ "nic": nic })), None);
            assert_eq!(pointers(&issues), expected, "{nic}");
        }
    }

    #[test]
    fn unknown_options_suggest_the_allowed_keys() {
        let issues = validate_server(&with_options(json!({"raidtype": 1, "a/b": 2})), None);
        // Manifest order is kept (serde_json's `preserve_order`).
        assert_eq!(pointers(&issues), ["/options/raidtype", "/options/a~1b"]);
        let help = issues[0].help.as_deref().unwrap();
        assert!(help.starts_with("did you mean `raid_type`?"), "{help}");
        assert!(
            help.contains("`partitions`") && help.contains("`nic`"),
            "{help}"
        );
        assert!(!issues[1].help.as_deref().unwrap().contains("did you mean"));
    }
}
