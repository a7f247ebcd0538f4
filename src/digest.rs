//! Digests: plain SHA-256 for files and fingerprints, keyed HMAC-SHA256 for install inputs.
//! Inputs may be secrets, so they are only ever digested with the state's random key: a plan file
//! holding the digest cannot be brute-forced without the state.

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

pub fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

/// Keyed digest of one install input: `hex(HMAC(key, field \0 value))`.
pub fn keyed_input(key: &[u8], field: &str, value: &str) -> String {
    hex::encode(keyed_input_bytes(key, field, value))
}

/// [`keyed_input`] as bytes: `HMAC(key, field \0 value)`.
pub fn keyed_input_bytes(key: &[u8], field: &str, value: &str) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(field.as_bytes());
    mac.update(&[0]);
    mac.update(value.as_bytes());
    mac.finalize().into_bytes().into()
}

/// Constant-time comparison of two signatures.
pub fn signatures_match(expected: &str, received: &str) -> bool {
    let (expected, received) = (expected.as_bytes(), received.as_bytes());
    expected.len() == received.len()
        && expected
            .iter()
            .zip(received)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_digest_depends_on_key_field_and_value() {
        let a = keyed_input(b"k1", "hostname", "web");
        assert_eq!(a.len(), 64);
        assert_ne!(a, keyed_input(b"k2", "hostname", "web"));
        assert_ne!(a, keyed_input(b"k1", "user_data", "web"));
        assert_ne!(a, keyed_input(b"k1", "hostname", "web2"));
        assert_eq!(a, keyed_input(b"k1", "hostname", "web"));
    }

    #[test]
    fn sha256_of_empty_is_the_known_value() {
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn signatures_match_only_when_equal() {
        assert!(signatures_match("abc", "abc"));
        assert!(!signatures_match("abc", "abd"));
        assert!(!signatures_match("abc", "ab"));
    }
}
