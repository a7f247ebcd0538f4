//! Install inputs as canonical strings, and their keyed digests.
//!
//! A server's install inputs are compared with what reimage last applied only through keyed
//! digests (HMAC with the state's random key), so that neither a plan file nor the state ever
//! holds a secret, and a digest cannot be brute-forced without the state.

use std::collections::BTreeMap;

use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use crate::digest::keyed_input_bytes;
use crate::error::Result;
use crate::manifest::{DesiredAccess, DesiredServer, secrets};
use crate::state::State;

pub const FIELD_ACCESS: &str = "access";
pub const FIELD_HOSTNAME: &str = "hostname";
pub const FIELD_USER_DATA: &str = "user_data";
pub const FIELD_OPTIONS: &str = "options";

/// The install input fields, in display order.
pub const INPUT_FIELDS: [&str; 4] = [FIELD_ACCESS, FIELD_HOSTNAME, FIELD_USER_DATA, FIELD_OPTIONS];

/// The fields in the order their digests are written (by name, as a JSON map's keys sort).
const FIELDS_BY_NAME: [&str; 4] = [FIELD_ACCESS, FIELD_HOSTNAME, FIELD_OPTIONS, FIELD_USER_DATA];

/// Keyed digests of a server's install inputs, one per input field. Kept as bytes: a map of
/// hex strings costs about a kilobyte per server, which a plan of 50,000 servers cannot
/// afford. Written as a JSON map of field to hex digest.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct InputDigests([Option<[u8; 32]>; 4]);

impl std::fmt::Debug for InputDigests {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_map().entries(self.iter()).finish()
    }
}

impl InputDigests {
    fn slot(field: &str) -> Option<usize> {
        FIELDS_BY_NAME.iter().position(|known| *known == field)
    }

    /// The hex digest of `field`, if it has one.
    pub fn get(&self, field: &str) -> Option<String> {
        Self::slot(field)
            .and_then(|slot| self.0[slot])
            .map(hex::encode)
    }

    /// Sets `field` to a hex digest; an unknown field or a digest that is not 32 bytes of hex
    /// is refused (with why).
    pub fn insert(&mut self, field: &str, digest: &str) -> Result<(), String> {
        let slot = Self::slot(field).ok_or_else(|| {
            format!(
                "unknown install input `{field}` (known: {})",
                FIELDS_BY_NAME.join(", ")
            )
        })?;
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(digest, &mut bytes)
            .map_err(|_| format!("the digest of `{field}` is not 64 hex digits"))?;
        self.0[slot] = Some(bytes);
        Ok(())
    }

    /// (field, hex digest) for each field with a digest, by field name.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, String)> + '_ {
        FIELDS_BY_NAME
            .iter()
            .zip(self.0.iter())
            .filter_map(|(field, digest)| digest.map(|bytes| (*field, hex::encode(bytes))))
    }

    pub fn is_empty(&self) -> bool {
        self.0.iter().all(Option::is_none)
    }
}

impl IntoIterator for InputDigests {
    type Item = (String, String);
    type IntoIter = std::vec::IntoIter<(String, String)>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
            .map(|(field, digest)| (field.to_string(), digest))
            .collect::<Vec<_>>()
            .into_iter()
    }
}

impl serde::Serialize for InputDigests {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}

impl<'de> serde::Deserialize<'de> for InputDigests {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let map = BTreeMap::<String, String>::deserialize(deserializer)?;
        let mut digests = InputDigests::default();
        for (field, digest) in &map {
            digests
                .insert(field, digest)
                .map_err(serde::de::Error::custom)?;
        }
        Ok(digests)
    }
}

/// Keyed digests of every install input of `server`. `password` is the resolved value of its
/// password reference (required when the server's access is a password).
pub fn input_digests(
    key: &[u8],
    server: &DesiredServer,
    password: Option<&SecretString>,
) -> InputDigests {
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
    let mut digests = InputDigests::default();
    for (field, value) in [
        (FIELD_ACCESS, access),
        (FIELD_HOSTNAME, optional(&server.hostname)),
        (FIELD_USER_DATA, optional(&server.user_data)),
        (FIELD_OPTIONS, options),
    ] {
        if let Some(slot) = InputDigests::slot(field) {
            digests.0[slot] = Some(keyed_input_bytes(key, field, &value));
        }
    }
    digests
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

/// Reads the password of a server whose access is a password reference.
pub fn password_of(server: &DesiredServer) -> Result<Option<SecretString>> {
    match &server.access {
        DesiredAccess::Password { secret } => Ok(Some(secrets::resolve(secret)?)),
        _ => Ok(None),
    }
}

/// Keyed digests of one server's install inputs with the state's key.
pub fn digests_of(state: &State, server: &DesiredServer) -> Result<InputDigests> {
    let password = password_of(server)?;
    Ok(input_digests(
        &state.digest_key_bytes(),
        server,
        password.as_ref(),
    ))
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
        assert_ne!(first.get(FIELD_ACCESS), second.get(FIELD_ACCESS));
        assert_eq!(first.get(FIELD_HOSTNAME), second.get(FIELD_HOSTNAME));
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
            input_digests(b"k", &a, None).get(FIELD_OPTIONS),
            input_digests(b"k", &b, None).get(FIELD_OPTIONS)
        );
    }

    #[test]
    fn digests_read_and_write_as_a_map_of_hex_and_refuse_what_is_not_one() {
        let digests = input_digests(b"k", &server(), None);
        let json = serde_json::to_value(digests).unwrap();
        let fields: Vec<&String> = json.as_object().unwrap().keys().collect();
        assert_eq!(fields, ["access", "hostname", "options", "user_data"]);
        assert_eq!(json["hostname"].as_str().map(str::len), Some(64));
        let back: InputDigests = serde_json::from_value(json).unwrap();
        assert_eq!(back, digests);
        assert_eq!(
            back.get(FIELD_HOSTNAME).as_deref(),
            Some(crate::digest::keyed_input(b"k", FIELD_HOSTNAME, "some:web-01").as_str())
        );
        for bad in [
            serde_json::json!({"hostnme": "00"}),
            serde_json::json!({"hostname": "xyz"}),
            serde_json::json!({"hostname": "ab".repeat(31)}),
        ] {
            assert!(serde_json::from_value::<InputDigests>(bad).is_err());
        }
    }
}
