//! Signed plans. With `REIMAGE_PLAN_KEY` set, `plan -out PLANFILE` also writes `PLANFILE.sig`:
//! HMAC-SHA256 with that key over every byte of PLANFILE, exactly as written. `apply PLANFILE`
//! verifies it over the bytes it read, before it parses them, and applies the plan parsed from
//! those same bytes; so what runs is byte for byte what was signed (and reviewed).
//!
//! The signature is detached so that the plan file stays the plain JSON that reviewers, `jq`
//! and `schemas/plan.schema.json` read. `PLANFILE.sig` is one JSON object:
//!
//! ```json
//! {"format": "reimage-plan-signature", "version": 1, "algorithm": "hmac-sha256",
//!  "plan_id": "…", "plan_sha256": "<hex SHA-256 of PLANFILE>",
//!  "key_id": "<16 hex: HMAC(key, \"reimage plan key id\")>", "signature": "<hex HMAC(key, PLANFILE)>"}
//! ```
//!
//! Only `signature` decides (compared in constant time). `plan_sha256`, `plan_id` and `key_id`
//! only let a refusal say what differs: the plan file changed, or another key signed it. The key
//! itself is never written anywhere and never printed; it is unrelated to the state's digest
//! key, which never leaves the state.

use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use crate::digest::signatures_match;
use crate::digest::{hmac_sha256, sha256_hex};

/// The environment variable holding the signing key.
pub const PLAN_KEY_ENV: &str = "REIMAGE_PLAN_KEY";
/// Shorter keys are refused: an HMAC is only as strong as its key.
pub const MIN_KEY_BYTES: usize = 16;
const FORMAT: &str = "reimage-plan-signature";
const VERSION: u32 = 1;
const ALGORITHM: &str = "hmac-sha256";

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum KeyError {
    #[error("`{PLAN_KEY_ENV}` is shorter than {MIN_KEY_BYTES} bytes: too weak to sign plans")]
    #[diagnostic(
        code(reimage::plan::signing_key),
        help(
            "use at least 32 random bytes, e.g. the output of `openssl rand -hex 32`, kept in the \
             CI's secret store; nothing was planned or applied"
        )
    )]
    TooShort,
    #[error("`{PLAN_KEY_ENV}` is not valid UTF-8 text")]
    #[diagnostic(
        code(reimage::plan::signing_key),
        help("use a hex or base64 key, e.g. the output of `openssl rand -hex 32`")
    )]
    NotText,
}

/// The plan signing key; it never prints (`Debug` shows nothing of it).
pub struct PlanKey(SecretString);

impl std::fmt::Debug for PlanKey {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("PlanKey(…)")
    }
}

impl PlanKey {
    /// The key from `REIMAGE_PLAN_KEY`; unset or empty is `None` (CI systems pass an empty
    /// value where a secret is not available, e.g. to pull requests from forks).
    pub fn from_env() -> Result<Option<PlanKey>, KeyError> {
        match std::env::var(PLAN_KEY_ENV) {
            Ok(text) if text.is_empty() => Ok(None),
            Ok(text) => Self::new(text).map(Some),
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => Err(KeyError::NotText),
        }
    }

    pub fn new(text: String) -> Result<PlanKey, KeyError> {
        if text.len() < MIN_KEY_BYTES {
            return Err(KeyError::TooShort);
        }
        Ok(PlanKey(SecretString::from(text)))
    }

    fn mac_hex(&self, message: &[u8]) -> String {
        hex::encode(hmac_sha256(self.0.expose_secret().as_bytes(), message))
    }

    /// Signs bytes as they come (a plan file as it is written).
    pub fn signer(&self) -> Signer {
        Signer {
            sha: Sha256::new(),
            // HMAC accepts keys of any length, so this cannot fail.
            mac: <Hmac<Sha256> as KeyInit>::new_from_slice(self.0.expose_secret().as_bytes())
                .unwrap_or_else(|_| unreachable!("HMAC takes any key length")),
            key_id: self.key_id(),
        }
    }

    /// A short public name of the key, so a refusal can tell "another key" from "changed".
    pub fn key_id(&self) -> String {
        self.mac_hex(b"reimage plan key id")[..16].to_string()
    }
}

/// The content of `PLANFILE.sig`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PlanSignature {
    pub format: String,
    pub version: u32,
    pub algorithm: String,
    pub plan_id: String,
    pub plan_sha256: String,
    pub key_id: String,
    pub signature: String,
}

/// Where the signature of `plan_path` is kept: `PLANFILE.sig` beside it.
pub fn signature_path(plan_path: &Path) -> PathBuf {
    let mut name = plan_path.as_os_str().to_os_string();
    name.push(".sig");
    PathBuf::from(name)
}

/// Signs the exact bytes of a plan file.
pub fn sign(key: &PlanKey, plan_id: &str, plan_bytes: &[u8]) -> PlanSignature {
    let mut signer = key.signer();
    signer.update(plan_bytes);
    signer.finish(plan_id)
}

/// The signature of bytes given a piece at a time: the same as [`sign`] over all of them.
pub struct Signer {
    sha: Sha256,
    mac: Hmac<Sha256>,
    key_id: String,
}

impl Signer {
    pub fn update(&mut self, bytes: &[u8]) {
        self.sha.update(bytes);
        self.mac.update(bytes);
    }

    pub fn finish(self, plan_id: &str) -> PlanSignature {
        PlanSignature {
            format: FORMAT.to_string(),
            version: VERSION,
            algorithm: ALGORITHM.to_string(),
            plan_id: plan_id.to_string(),
            plan_sha256: hex::encode(self.sha.finalize()),
            key_id: self.key_id,
            signature: hex::encode(self.mac.finalize().into_bytes()),
        }
    }
}

/// Checks `signature` over `plan_bytes`; on a mismatch, says what differs.
pub fn verify(key: &PlanKey, plan_bytes: &[u8], signature: &PlanSignature) -> Result<(), String> {
    if signature.format != FORMAT || signature.version != VERSION {
        return Err(format!(
            "the signature file is `{}` version {}, this reimage reads `{FORMAT}` version {VERSION}",
            signature.format, signature.version
        ));
    }
    if signature.algorithm != ALGORITHM {
        return Err(format!(
            "the signature uses `{}`, this reimage only accepts `{ALGORITHM}`",
            signature.algorithm
        ));
    }
    let expected = key.mac_hex(plan_bytes);
    if signatures_match(&expected, &signature.signature.to_ascii_lowercase()) {
        return Ok(());
    }
    let now = sha256_hex(plan_bytes);
    Err(if now != signature.plan_sha256 {
        format!(
            "the plan's signature does not match: the plan file changed since it was signed \
             (its SHA-256 is {now}; plan {} was signed with SHA-256 {})",
            signature.plan_id, signature.plan_sha256
        )
    } else if signature.key_id != key.key_id() {
        format!(
            "the plan's signature does not match: it was signed with another key (key id {}; \
             `{PLAN_KEY_ENV}` here has key id {})",
            signature.key_id,
            key.key_id()
        )
    } else {
        "the plan's signature does not match: the signature itself was altered".to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(text: &str) -> PlanKey {
        PlanKey::new(text.to_string()).unwrap()
    }

    const PLAN: &[u8] = b"{\"plan_id\": \"p-1\", \"servers\": []}\n";

    #[test]
    fn a_signature_verifies_over_the_same_bytes_and_key() {
        let key = key("0123456789abcdef0123456789abcdef");
        let signature = sign(&key, "p-1", PLAN);
        assert_eq!(signature.signature.len(), 64);
        assert_eq!(signature.plan_sha256, sha256_hex(PLAN));
        assert_eq!(verify(&key, PLAN, &signature), Ok(()));
        // It round-trips through its file format.
        let text = serde_json::to_string(&signature).unwrap();
        let read: PlanSignature = serde_json::from_str(&text).unwrap();
        assert_eq!(verify(&key, PLAN, &read), Ok(()));
    }

    #[test]
    fn every_single_flipped_byte_is_refused_naming_the_change() {
        let key = key("0123456789abcdef0123456789abcdef");
        let signature = sign(&key, "p-1", PLAN);
        for index in 0..PLAN.len() {
            let mut tampered = PLAN.to_vec();
            tampered[index] ^= 0x01;
            let error = verify(&key, &tampered, &signature).unwrap_err();
            assert!(
                error.contains("the plan file changed since it was signed"),
                "{error}"
            );
        }
        // A byte added at the end counts too.
        let mut longer = PLAN.to_vec();
        longer.push(b' ');
        assert!(verify(&key, &longer, &signature).is_err());
    }

    #[test]
    fn another_key_or_an_altered_signature_is_refused() {
        let signer = key("0123456789abcdef0123456789abcdef");
        let other = key("fedcba9876543210fedcba9876543210");
        let signature = sign(&signer, "p-1", PLAN);
        let error = verify(&other, PLAN, &signature).unwrap_err();
        assert!(error.contains("signed with another key"), "{error}");
        assert!(error.contains(&signer.key_id()), "{error}");

        let mut altered = signature.clone();
        altered.signature.replace_range(0..1, "0");
        altered.signature.replace_range(1..2, "0");
        if altered.signature == signature.signature {
            altered.signature.replace_range(0..2, "11");
        }
        let error = verify(&signer, PLAN, &altered).unwrap_err();
        assert!(
            error.contains("the signature itself was altered"),
            "{error}"
        );

        let mut weaker = signature;
        weaker.algorithm = "none".into();
        assert!(
            verify(&signer, PLAN, &weaker)
                .unwrap_err()
                .contains("only accepts")
        );
    }

    #[test]
    fn short_keys_are_refused_and_keys_never_print() {
        assert!(matches!(
            PlanKey::new("short".into()),
            Err(KeyError::TooShort)
        ));
        let key = key("a-very-secret-plan-key-value");
        assert_eq!(format!("{key:?}"), "PlanKey(…)");
        let signature = sign(&key, "p", PLAN);
        let text = serde_json::to_string(&signature).unwrap();
        assert!(!text.contains("a-very-secret-plan-key-value"));
    }

    #[test]
    fn the_signature_sits_beside_the_plan() {
        assert_eq!(
            signature_path(Path::new("out/plan.json")),
            PathBuf::from("out/plan.json.sig")
        );
    }
}
