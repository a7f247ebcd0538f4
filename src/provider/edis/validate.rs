//! EDIS input rules for `set/reinstall`, checked without network. Pointers are relative to the
//! server entry in the manifest.
//!
//! The brief marks the password policy and the user-data limit **unconfirmed**; the rules here
//! are reimage's conservative choice, so that a bad value fails at `validate` rather than
//! after a disk was wiped.

use secrecy::{ExposeSecret, SecretString};

use crate::manifest::diagnostics::did_you_mean;
use crate::manifest::{DesiredAccess, DesiredServer};
use crate::provider::FieldIssue;
use crate::provider::rules::{ClassRule, PasswordPolicy, escape_pointer, issue};

/// Password length reimage accepts (EDIS's own policy is unconfirmed).
pub const PASSWORD_LENGTH: std::ops::RangeInclusive<usize> = 8..=64;
/// Characters left out of passwords: space and quoting characters, which installer scripts
/// commonly mishandle. Everything else printable in ASCII is allowed, `+ & =` included (the
/// form encoding carries them intact).
pub const PASSWORD_FORBIDDEN: &str = " '\"\\`";
/// The user-data limit is unconfirmed; 64 KiB keeps a request well inside usual form limits.
pub const USER_DATA_MAX_BYTES: usize = 64 * 1024;
/// Brief §4: `cloudinit_user_data` is "raw `#cloud-config` YAML text".
pub const CLOUD_CONFIG_HEADER: &str = "#cloud-config";
/// Provider-level option keys (`providers.<name>.options`), named in did-you-mean hints for
/// server options written in the wrong place.
pub const PROVIDER_OPTION_KEYS: [&str; 5] = [
    "completion_grace_seconds",
    "ssh_probe",
    "ssh_probe_timeout_seconds",
    "ssh_probe_connect_timeout_seconds",
    "images",
];

/// Every problem with one server's inputs. `password` is the resolved value when it could be
/// read; its text never appears in an issue.
pub fn validate_server(server: &DesiredServer, password: Option<&SecretString>) -> Vec<FieldIssue> {
    let mut issues = Vec::new();
    let image = server.image.trim();
    if image.is_empty() || image != server.image || image.contains(char::is_whitespace) {
        issues.push(issue(
            "/os/image",
            "EDIS needs an image name without spaces",
            Some(
                "an autoinstall image name such as `debian-bookworm`, or a turnkey name from \
                   `get/turnkey_images`",
            ),
        ));
    }
    match &server.access {
        DesiredAccess::Password { .. } => {
            if let Some(password) = password
                && let Some(problem) = password_problem(password.expose_secret())
            {
                issues.push(issue(
                    "/access/password",
                    &format!("the password does not meet reimage's rules for EDIS: {problem}"),
                    Some(&format!(
                        "{}–{} characters with an upper-case letter, a lower-case letter and a \
                         digit; printable ASCII without spaces, quotes, backslashes or backticks \
                         (EDIS's own policy is undocumented, so reimage stays conservative)",
                        PASSWORD_LENGTH.start(),
                        PASSWORD_LENGTH.end()
                    )),
                ));
            }
        }
        DesiredAccess::None => issues.push(issue(
            "/access",
            "EDIS needs a root password for a reinstall",
            Some(
                "set `access.password: {env: NAME}` or `{file: PATH}`; add SSH keys with \
                  `ssh_authorized_keys` in `#cloud-config` user data",
            ),
        )),
        DesiredAccess::SshKeyId { .. } => issues.push(issue(
            "/access/ssh_key_id",
            "EDIS has no SSH key pairs to refer to",
            Some(
                "use `access.password` (required by EDIS's reinstall) and put public keys in \
                  `#cloud-config` user data under `ssh_authorized_keys`",
            ),
        )),
    }
    if server.hostname.is_some() {
        issues.push(issue(
            "/hostname",
            "EDIS's reinstall has no hostname field",
            Some(
                "remove `hostname` and set it in `#cloud-config` user data (`hostname:` / \
                  `fqdn:`), which EDIS passes to the image",
            ),
        ));
    }
    if let Some(user_data) = &server.user_data {
        if !user_data
            .trim_start_matches('\u{feff}')
            .starts_with(CLOUD_CONFIG_HEADER)
        {
            issues.push(issue(
                "/user_data",
                "EDIS takes cloud-init user data as `#cloud-config` YAML only",
                Some(
                    "start the user data with the line `#cloud-config`; shell scripts go under \
                      `runcmd`",
                ),
            ));
        }
        if user_data.len() > USER_DATA_MAX_BYTES {
            issues.push(issue(
                "/user_data",
                &format!(
                    "user data is {} bytes; reimage sends at most {USER_DATA_MAX_BYTES} (64 KiB) \
                     to EDIS",
                    user_data.len()
                ),
                Some("EDIS documents no limit; shrink the cloud-config or have it fetch the rest"),
            ));
        }
    }
    for key in server.options.keys() {
        let pointer = format!("/options/{}", escape_pointer(key));
        let help = match did_you_mean(key, PROVIDER_OPTION_KEYS) {
            Some(provider_key) => format!(
                "`{provider_key}` is a provider option: set it under `providers.<name>.options` \
                 (server options are install inputs, and changing one would plan a reinstall)"
            ),
            None => "edis-kvm servers take no options; provider options go under \
                     `providers.<name>.options`"
                .to_string(),
        };
        issues.push(issue(
            &pointer,
            &format!("unknown EDIS server option `{key}`"),
            Some(&help),
        ));
    }
    issues
}

/// reimage's password rule for EDIS (see [`PASSWORD_LENGTH`] and [`PASSWORD_FORBIDDEN`]).
const PASSWORD_POLICY: PasswordPolicy = PasswordPolicy {
    length: PASSWORD_LENGTH,
    specials: None,
    classes: ClassRule::Every,
    allowed: |c| c.is_ascii_graphic() && !PASSWORD_FORBIDDEN.contains(c),
    refused: "character(s) reimage does not send to EDIS",
};

/// What is wrong with a password, in words that never quote it.
pub fn password_problem(password: &str) -> Option<String> {
    PASSWORD_POLICY.problem(password)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::manifest::{ProviderType, SecretRef};

    fn server() -> DesiredServer {
        DesiredServer {
            name: "vps-1".into(),
            provider: "edis".into(),
            provider_type: ProviderType::EdisKvm,
            cloud_id: "kvm_1".into(),
            image: "debian-bookworm".into(),
            revision: 0,
            access: DesiredAccess::Password {
                secret: SecretRef::Env("EDIS_ROOT_PW".into()),
            },
            hostname: None,
            user_data: Some("#cloud-config\nhostname: vps-1\n".into()),
            protect: false,
            group: None,
            address: None,
            health: Default::default(),
            options: serde_json::Map::new(),
        }
    }

    fn pointers(issues: &[FieldIssue]) -> Vec<&str> {
        issues.iter().map(|issue| issue.pointer.as_str()).collect()
    }

    #[test]
    fn a_valid_server_has_no_issues_even_with_awkward_passwords() {
        for password in ["Abcdefg1", "P+ss&w=rd9", "Zz9!#$%()*,-./:;<=>?@[]^_{|}~"] {
            let secret = SecretString::from(password.to_string());
            assert_eq!(
                validate_server(&server(), Some(&secret)),
                vec![],
                "{password}"
            );
        }
        assert_eq!(validate_server(&server(), None), vec![]);
    }

    #[test]
    fn passwords_are_checked_and_never_quoted() {
        let cases = [
            ("Ab1defg", "7 characters"),
            ("abcdefg1", "no upper-case"),
            ("ABCDEFG1", "no lower-case"),
            ("Abcdefgh", "no digit"),
            ("Abc defg1", "1 character(s)"),
            ("Abc'de\"fg1", "2 character(s)"),
            ("Abcdéfg1", "1 character(s)"),
            ("Abc\ndefg1", "1 character(s)"),
        ];
        for (password, expected) in cases {
            let secret = SecretString::from(password.to_string());
            let issues = validate_server(&server(), Some(&secret));
            assert_eq!(pointers(&issues), ["/access/password"], "{password:?}");
            let text = format!("{} {:?}", issues[0].message, issues[0].help);
            assert!(text.contains(expected), "{password:?}: {text}");
            assert!(!text.contains(password), "{password:?} leaked: {text}");
        }
        let long = format!("Aa1{}", "x".repeat(62));
        let issues = validate_server(&server(), Some(&SecretString::from(long)));
        assert!(issues[0].message.contains("65 characters"));
    }

    #[test]
    fn access_must_be_a_password() {
        let mut keyed = server();
        keyed.access = DesiredAccess::SshKeyId { id: "key-1".into() };
        assert_eq!(
            pointers(&validate_server(&keyed, None)),
            ["/access/ssh_key_id"]
        );
        let mut none = server();
        none.access = DesiredAccess::None;
        assert_eq!(pointers(&validate_server(&none, None)), ["/access"]);
    }

    #[test]
    fn hostname_user_data_and_image_rules() {
        let mut named = server();
        named.hostname = Some("vps-1".into());
        assert_eq!(pointers(&validate_server(&named, None)), ["/hostname"]);

        let mut script = server();
        script.user_data = Some("#!/bin/sh\necho hi\n".into());
        assert_eq!(pointers(&validate_server(&script, None)), ["/user_data"]);
        let mut big = server();
        big.user_data = Some(format!(
            "#cloud-config\n{}",
            "#".repeat(USER_DATA_MAX_BYTES)
        ));
        assert_eq!(pointers(&validate_server(&big, None)), ["/user_data"]);

        for image in ["", " debian", "debian bookworm"] {
            let mut bad = server();
            bad.image = image.into();
            assert_eq!(
                pointers(&validate_server(&bad, None)),
                ["/os/image"],
                "{image:?}"
            );
        }
    }

    #[test]
    fn server_options_are_refused_pointing_provider_options_out() {
        let mut server = server();
        server.options = json!({"ssh_probe": "127.0.0.1:22", "colour": "red"})
            .as_object()
            .cloned()
            .unwrap();
        let issues = validate_server(&server, None);
        assert_eq!(pointers(&issues), ["/options/ssh_probe", "/options/colour"]);
        let help = issues[0].help.as_deref().unwrap();
        assert!(help.contains("`ssh_probe` is a provider option"), "{help}");
        assert!(
            !issues[1]
                .help
                .as_deref()
                .unwrap()
                .contains("is a provider option")
        );
    }
}
