//! Install inputs as canonical strings, and their keyed digests.
//!
//! A server's install inputs are compared with what reimage last applied only through keyed
//! digests (HMAC with the state's random key), so that neither a plan file nor the state ever
//! holds a secret, and a digest cannot be brute-forced without the state.

use std::collections::BTreeMap;

use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use crate::digest::keyed_input;
use crate::manifest::{DesiredAccess, DesiredServer};

pub const FIELD_ACCESS: &str = "access";
pub const FIELD_HOSTNAME: &str = "hostname";
pub const FIELD_USER_DATA: &str = "user_data";
pub const FIELD_OPTIONS: &str = "options";

/// The install input fields, in display order.
pub const INPUT_FIELDS: [&str; 4] = [FIELD_ACCESS, FIELD_HOSTNAME, FIELD_USER_DATA, FIELD_OPTIONS];

/// Keyed digests of every install input of `server`. `password` is the resolved value of its
/// password reference (required when the server's access is a password).
pub fn input_digests(
    key: &[u8],
    server: &DesiredServer,
    password: Option<&SecretString>,
) -> BTreeMap<String, String> {
    let access = match &server.access {
        DesiredAccess::None => "none".to_string(),
        DesiredAccess::SshKeyId { id } => format!("ssh_key_id:{id}"),
        DesiredAccess::Password { .. } => format!(
            "password:{}",
            password.map(|value| value.expose_secret()).unwrap_or("")
        ),
    };
    let optional = |value: &Option<String>| match value {
        Some(text) => format!("some:{text}"),
        None => "none".to_string(),
    };
    let options = canonical_json(&Value::Object(server.options.clone()));
    [
        (FIELD_ACCESS, access),
        (FIELD_HOSTNAME, optional(&server.hostname)),
        (FIELD_USER_DATA, optional(&server.user_data)),
        (FIELD_OPTIONS, options),
    ]
    .into_iter()
    .map(|(field, value)| (field.to_string(), keyed_input(key, field, &value)))
    .collect()
}

/// JSON with object keys sorted at every level, so equal values give equal text.
pub fn canonical_json(value: &Value) -> String {
    fn sorted(value: &Value) -> Value {
        match value {
            Value::Object(map) => {
                let ordered: BTreeMap<&String, Value> = map
                    .iter()
                    .map(|(key, value)| (key, sorted(value)))
                    .collect();
                Value::Object(
                    ordered
                        .into_iter()
                        .map(|(key, value)| (key.clone(), value))
                        .collect(),
                )
            }
            Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    sorted(value).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{ProviderType, SecretRef};

    fn server() -> DesiredServer {
        DesiredServer {
            group: None,
            address: None,
            health: Default::default(),
            name: "web-01".into(),
            provider: "zl".into(),
            provider_type: ProviderType::ZenlayerBmc,
            cloud_id: "1001".into(),
            image: "img-a".into(),
            revision: 0,
            access: DesiredAccess::Password {
                secret: SecretRef::Env("PW".into()),
            },
            hostname: Some("web-01".into()),
            user_data: None,
            protect: false,
            options: serde_json::Map::new(),
        }
    }

    #[test]
    fn password_changes_change_only_the_access_digest_and_never_appear() {
        let key = b"key";
        let first = input_digests(key, &server(), Some(&SecretString::from("Aa1!aaaa")));
        let second = input_digests(key, &server(), Some(&SecretString::from("Bb2!bbbb")));
        assert_ne!(first[FIELD_ACCESS], second[FIELD_ACCESS]);
        assert_eq!(first[FIELD_HOSTNAME], second[FIELD_HOSTNAME]);
        assert!(!format!("{first:?}").contains("Aa1!aaaa"));
    }

    #[test]
    fn options_digest_ignores_key_order() {
        let mut a = server();
        let mut b = server();
        a.options.insert("x".into(), 1.into());
        a.options.insert("y".into(), 2.into());
        b.options.insert("y".into(), 2.into());
        b.options.insert("x".into(), 1.into());
        assert_eq!(
            input_digests(b"k", &a, None)[FIELD_OPTIONS],
            input_digests(b"k", &b, None)[FIELD_OPTIONS]
        );
    }
}
