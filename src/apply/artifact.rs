//! Is this saved plan the artifact that was approved? Before anything else, `apply PLANFILE`
//! checks its signature (over the exact bytes read), then parses those same bytes, then checks
//! the plan's expiry and, with `--require-commit`, its commit. Every refusal names what differs.
//!
//! The world-moved checks (state serial, servers, inputs) come after, in [`super::stale`].

use std::path::Path;

use crate::error::{Error, Result};
use crate::plan::file::{self, PlanFileError};
use crate::plan::model::Plan;
use crate::plan::signature::{PLAN_KEY_ENV, PlanKey, PlanSignature, signature_path, verify};

/// What apply demands of a saved plan.
#[derive(Debug, Clone, Default)]
pub struct Requirements {
    /// `--require-signed`: refuse an unsigned plan, and refuse without a key to check with.
    pub signed: bool,
    /// `--require-commit SHA`: the plan must have been made at this commit (a prefix of at
    /// least 7 hex digits, or the full id).
    pub commit: Option<String>,
}

/// How the signature check went, for the status line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureCheck {
    Verified,
    /// No signature beside the plan (allowed without `--require-signed`).
    Unsigned,
    /// A signature, but no key to check it with (allowed without `--require-signed`).
    NotChecked,
}

/// The plan as read from `bytes`, once it passed every artifact check.
pub fn check(
    path: &Path,
    bytes: &[u8],
    signature: std::result::Result<Option<PlanSignature>, PlanFileError>,
    key: Option<&PlanKey>,
    requirements: &Requirements,
    now: jiff::Timestamp,
) -> Result<(Plan, SignatureCheck)> {
    let shown_signature = signature_path(path).display().to_string();
    let refuse = |problem: String| Error::PlanRefused {
        problems: vec![problem],
    };
    if requirements.signed && key.is_none() {
        return Err(refuse(format!(
            "`--require-signed` needs `{PLAN_KEY_ENV}` to check the plan's signature, and it is \
             not set"
        )));
    }
    let verdict = match (key, signature) {
        (Some(key), Ok(Some(signature))) => {
            verify(key, bytes, &signature)
                .map_err(|problem| refuse(format!("{problem} (signature `{shown_signature}`)")))?;
            SignatureCheck::Verified
        }
        (Some(_), Err(error)) => return Err(error.into()),
        (_, Ok(None)) if requirements.signed => {
            return Err(refuse(format!(
                "the plan is not signed: there is no `{shown_signature}` beside it (make it with \
                 `{PLAN_KEY_ENV}` set)"
            )));
        }
        (_, Ok(None)) => SignatureCheck::Unsigned,
        (None, _) => SignatureCheck::NotChecked,
    };

    let plan = file::parse(bytes, path)?;
    let mut problems = Vec::new();
    match plan.expires_at.parse::<jiff::Timestamp>() {
        Ok(expires) if now >= expires => problems.push(format!(
            "the plan expired at {expires} (it was made at {}; `plan --plan-ttl` sets how long a \
             plan stays valid)",
            plan.created_at
        )),
        Ok(_) => {}
        Err(error) => problems.push(format!(
            "the plan's expiry `{}` is not a time: {error}",
            plan.expires_at
        )),
    }
    if let Some(wanted) = &requirements.commit {
        let wanted = wanted.to_ascii_lowercase();
        match &plan.commit {
            Some(commit) if commit.starts_with(&wanted) => {}
            Some(commit) => problems.push(format!(
                "the plan was made at commit {commit}, this is {wanted} (`--require-commit`)"
            )),
            None => problems.push(format!(
                "the plan was made outside a git repository (it names no commit), and \
                 `--require-commit` wants {wanted}"
            )),
        }
    }
    if problems.is_empty() {
        Ok((plan, verdict))
    } else {
        Err(Error::PlanRefused { problems })
    }
}

/// Checks a `--require-commit` value: hex, at least 7 digits (an abbreviation git would print),
/// at most a full SHA-256 object id.
pub fn parse_commit(text: &str) -> std::result::Result<String, String> {
    let text = text.trim();
    if (7..=64).contains(&text.len()) && text.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        Ok(text.to_ascii_lowercase())
    } else {
        Err(format!(
            "`{text}` is not a commit id: give 7 to 64 hex digits, e.g. the output of `git \
             rev-parse HEAD`"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::model::{PLAN_FORMAT_VERSION, StateRef};
    use crate::plan::signature::sign;

    const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

    fn plan_bytes(commit: Option<&str>, expires_at: &str) -> Vec<u8> {
        file::to_bytes(&Plan {
            format_version: PLAN_FORMAT_VERSION,
            tool_version: "0.1.0".into(),
            plan_id: "p-1".into(),
            created_at: "2026-01-01T00:00:00Z".into(),
            expires_at: expires_at.into(),
            commit: commit.map(str::to_string),
            manifest_digest: "0".repeat(64),
            state: StateRef {
                name: "default".into(),
                lineage: Some("l".into()),
                serial: 1,
            },
            providers: Default::default(),
            emulator: None,
            state_path: "state.json".into(),
            backend: None,
            servers: Vec::new(),
            rollout: Default::default(),
            waves: Vec::new(),
            pace: None,
            summary: Default::default(),
        })
    }

    fn key() -> PlanKey {
        PlanKey::new("0123456789abcdef0123456789abcdef".into()).unwrap()
    }

    fn at(text: &str) -> jiff::Timestamp {
        text.parse().unwrap()
    }

    fn refusal(result: Result<(Plan, SignatureCheck)>) -> String {
        match result {
            Err(Error::PlanRefused { problems }) => problems.join("\n"),
            Err(other) => panic!("expected a refusal, got {other}"),
            Ok(_) => panic!("expected a refusal, got a plan"),
        }
    }

    #[test]
    fn a_signed_current_plan_at_the_wanted_commit_passes() {
        let bytes = plan_bytes(Some(COMMIT), "2026-01-02T00:00:00Z");
        let signature = sign(&key(), "p-1", &bytes);
        let requirements = Requirements {
            signed: true,
            commit: Some("0123456".into()),
        };
        let (plan, verdict) = check(
            Path::new("plan.json"),
            &bytes,
            Ok(Some(signature)),
            Some(&key()),
            &requirements,
            at("2026-01-01T12:00:00Z"),
        )
        .unwrap();
        assert_eq!(verdict, SignatureCheck::Verified);
        assert_eq!(plan.plan_id, "p-1");
    }

    #[test]
    fn a_tampered_byte_or_another_key_is_refused_naming_the_signature() {
        let bytes = plan_bytes(Some(COMMIT), "2026-01-02T00:00:00Z");
        let signature = sign(&key(), "p-1", &bytes);
        let mut tampered = bytes.clone();
        let index = tampered.iter().position(|byte| *byte == b'3').unwrap();
        tampered[index] = b'4';
        let now = at("2026-01-01T12:00:00Z");
        let message = refusal(check(
            Path::new("plan.json"),
            &tampered,
            Ok(Some(signature.clone())),
            Some(&key()),
            &Requirements::default(),
            now,
        ));
        assert!(
            message.contains("the plan's signature does not match"),
            "{message}"
        );
        assert!(message.contains("the plan file changed"), "{message}");
        assert!(message.contains("plan.json.sig"), "{message}");

        let other = PlanKey::new("another-key-another-key-another".into()).unwrap();
        let message = refusal(check(
            Path::new("plan.json"),
            &bytes,
            Ok(Some(signature)),
            Some(&other),
            &Requirements::default(),
            now,
        ));
        assert!(message.contains("signed with another key"), "{message}");
    }

    #[test]
    fn require_signed_refuses_unsigned_plans_and_a_missing_key() {
        let bytes = plan_bytes(None, "2026-01-02T00:00:00Z");
        let now = at("2026-01-01T12:00:00Z");
        let signed = Requirements {
            signed: true,
            commit: None,
        };
        let message = refusal(check(
            Path::new("p.json"),
            &bytes,
            Ok(None),
            Some(&key()),
            &signed,
            now,
        ));
        assert!(message.contains("the plan is not signed"), "{message}");
        let signature = sign(&key(), "p-1", &bytes);
        let message = refusal(check(
            Path::new("p.json"),
            &bytes,
            Ok(Some(signature.clone())),
            None,
            &signed,
            now,
        ));
        assert!(
            message.contains("`--require-signed` needs `REIMAGE_PLAN_KEY`"),
            "{message}"
        );
        // Without the flag, unsigned and unverifiable plans pass (and say so).
        let lax = Requirements::default();
        let (_, verdict) = check(
            Path::new("p.json"),
            &bytes,
            Ok(None),
            Some(&key()),
            &lax,
            now,
        )
        .unwrap();
        assert_eq!(verdict, SignatureCheck::Unsigned);
        let (_, verdict) = check(
            Path::new("p.json"),
            &bytes,
            Ok(Some(signature)),
            None,
            &lax,
            now,
        )
        .unwrap();
        assert_eq!(verdict, SignatureCheck::NotChecked);
    }

    #[test]
    fn an_expired_plan_is_refused_with_its_expiry() {
        let bytes = plan_bytes(None, "2026-01-02T00:00:00Z");
        let message = refusal(check(
            Path::new("p.json"),
            &bytes,
            Ok(None),
            None,
            &Requirements::default(),
            at("2026-01-02T00:00:00Z"),
        ));
        assert!(
            message.contains("the plan expired at 2026-01-02T00:00:00Z"),
            "{message}"
        );
    }

    #[test]
    fn another_commit_or_no_commit_is_refused_naming_both() {
        let now = at("2026-01-01T12:00:00Z");
        let wanted = Requirements {
            signed: false,
            commit: Some("def5678".into()),
        };
        let bytes = plan_bytes(Some(COMMIT), "2026-01-02T00:00:00Z");
        let message = refusal(check(
            Path::new("p.json"),
            &bytes,
            Ok(None),
            None,
            &wanted,
            now,
        ));
        assert!(
            message.contains(&format!(
                "the plan was made at commit {COMMIT}, this is def5678"
            )),
            "{message}"
        );
        let bytes = plan_bytes(None, "2026-01-02T00:00:00Z");
        let message = refusal(check(
            Path::new("p.json"),
            &bytes,
            Ok(None),
            None,
            &wanted,
            now,
        ));
        assert!(message.contains("outside a git repository"), "{message}");
    }

    #[test]
    fn commit_arguments_are_hex_ids() {
        assert_eq!(parse_commit("ABCDEF0").unwrap(), "abcdef0");
        assert!(parse_commit("abc").is_err());
        assert!(parse_commit("main").is_err());
        assert!(parse_commit(&"a".repeat(65)).is_err());
    }
}
