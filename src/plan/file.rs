//! Saved plan files: JSON in the format of `schemas/plan.schema.json`, written atomically, with
//! an optional detached signature `PLANFILE.sig` (see [`super::signature`]).
//! A plan file never holds a secret value: secrets appear only as references and keyed digests.

use std::path::{Path, PathBuf};

use super::model::{PLAN_FORMAT_VERSION, Plan};
use std::io::Write;

use super::signature::{PlanKey, PlanSignature, Signer, signature_path};

/// The published schema of the plan JSON (also the `--json` output of `plan` and `show`).
pub const PLAN_SCHEMA: &str = include_str!("../../schemas/plan.schema.json");

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum PlanFileError {
    #[error("cannot read plan file `{path}`: {message}")]
    #[diagnostic(code(reimage::plan_file::read))]
    Read { path: String, message: String },
    #[error("`{path}` is not a reimage plan file: {message}")]
    #[diagnostic(
        code(reimage::plan_file::format),
        help("create one with `reimage plan -out FILE`")
    )]
    Format { path: String, message: String },
    #[error(
        "plan file `{path}` has format version {found}; this reimage reads version {PLAN_FORMAT_VERSION}"
    )]
    #[diagnostic(code(reimage::plan_file::version))]
    Version { path: String, found: u32 },
    #[error("cannot write plan file `{path}`: {message}")]
    #[diagnostic(code(reimage::plan_file::write))]
    Write { path: String, message: String },
    #[error("`{path}` is not a reimage plan signature: {message}")]
    #[diagnostic(
        code(reimage::plan_file::signature),
        help("sign the plan again with `reimage plan -out PLANFILE` and `REIMAGE_PLAN_KEY` set")
    )]
    Signature { path: String, message: String },
}

/// The exact bytes a plan file holds (and a signature covers): the JSON on one line.
pub fn to_bytes(plan: &Plan) -> Vec<u8> {
    let mut text = super::render::json(plan);
    text.push('\n');
    text.into_bytes()
}

/// Writes to `inner` and feeds every byte written to the signer, if any.
struct Signing<'a, W> {
    inner: W,
    signer: Option<&'a mut Signer>,
}

impl<W: Write> Write for Signing<'_, W> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let written = self.inner.write(bytes)?;
        if let Some(signer) = self.signer.as_mut() {
            signer.update(&bytes[..written]);
        }
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Writes the plan file; with a key, also `PLANFILE.sig` over its exact bytes. Without a key,
/// a signature left beside the path by an earlier plan is removed, so it can never be taken
/// for this plan's. Returns the signature path when one was written.
pub fn save(
    plan: &Plan,
    path: &Path,
    key: Option<&PlanKey>,
) -> Result<Option<PathBuf>, PlanFileError> {
    let write_error = |path: &Path, error: std::io::Error| PlanFileError::Write {
        path: path.display().to_string(),
        message: error.to_string(),
    };
    let signature_path = signature_path(path);
    match std::fs::remove_file(&signature_path) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(write_error(&signature_path, error)),
    }
    // Written (and signed) as it is made: the bytes of the whole plan are never held at once.
    let mut signer = key.map(PlanKey::signer);
    crate::files::write_atomically_with(path, |file| {
        let mut writer = std::io::BufWriter::with_capacity(
            64 * 1024,
            Signing {
                inner: file,
                signer: signer.as_mut(),
            },
        );
        super::render::json_to(plan, &mut writer)?;
        writer.write_all(b"\n")?;
        writer.flush()
    })
    .map_err(|error| write_error(path, error))?;
    let Some(signer) = signer else {
        return Ok(None);
    };
    let signature = signer.finish(&plan.plan_id);
    let mut text =
        serde_json::to_string_pretty(&signature).map_err(|error| PlanFileError::Write {
            path: signature_path.display().to_string(),
            message: error.to_string(),
        })?;
    text.push('\n');
    crate::files::write_atomically(&signature_path, text.as_bytes())
        .map_err(|error| write_error(&signature_path, error))?;
    Ok(Some(signature_path))
}

/// Reads a plan file's bytes (verify a signature over these, then [`parse`] these same bytes).
/// Regular files only, and never more than [`crate::files::PLAN_MAX_BYTES`]: a FIFO or a device
/// given as the plan file is refused at once.
pub fn read_bytes(path: &Path) -> Result<Vec<u8>, PlanFileError> {
    crate::files::read_limited(path, crate::files::PLAN_MAX_BYTES).map_err(|error| {
        PlanFileError::Read {
            path: path.display().to_string(),
            message: error.reason(),
        }
    })
}

/// The signature beside a plan file, if there is one.
pub fn read_signature(plan_path: &Path) -> Result<Option<PlanSignature>, PlanFileError> {
    let path = signature_path(plan_path);
    let shown = path.display().to_string();
    let text = match crate::files::read_limited_to_string(&path, crate::files::SIGNATURE_MAX_BYTES)
    {
        Ok(text) => text,
        Err(error) if error.is_not_found() => return Ok(None),
        Err(error) => {
            return Err(PlanFileError::Read {
                path: shown,
                message: error.reason(),
            });
        }
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|error| PlanFileError::Signature {
            path: shown,
            message: error.to_string(),
        })
}

pub fn load(path: &Path) -> Result<Plan, PlanFileError> {
    parse(&read_bytes(path)?, path)
}

/// Parses the bytes of a plan file read from `path` (named in errors).
pub fn parse(bytes: &[u8], path: &Path) -> Result<Plan, PlanFileError> {
    let shown = path.display().to_string();
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|error| PlanFileError::Format {
            path: shown.clone(),
            message: error.to_string(),
        })?;
    let version = value
        .get("format_version")
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| PlanFileError::Format {
            path: shown.clone(),
            message: "no `format_version`".to_string(),
        })?;
    if version != u64::from(PLAN_FORMAT_VERSION) {
        return Err(PlanFileError::Version {
            path: shown,
            found: u32::try_from(version).unwrap_or(u32::MAX),
        });
    }
    serde_json::from_value(value).map_err(|error| PlanFileError::Format {
        path: shown,
        message: error.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> Plan {
        Plan {
            format_version: PLAN_FORMAT_VERSION,
            tool_version: "0.1.0".into(),
            plan_id: "p-1".into(),
            created_at: "2026-01-01T00:00:00Z".into(),
            expires_at: "2026-01-02T00:00:00Z".into(),
            commit: Some("ab".repeat(20)),
            manifest_digest: "0".repeat(64),
            state: crate::plan::model::StateRef {
                name: "default".into(),
                lineage: Some("l".into()),
                serial: 3,
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
        }
    }

    #[test]
    fn a_saved_plan_reads_back_and_its_signature_covers_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plan.json");
        let key = PlanKey::new("0123456789abcdef0123456789abcdef".into()).unwrap();
        let written = save(&plan(), &path, Some(&key)).unwrap();
        assert_eq!(written, Some(dir.path().join("plan.json.sig")));
        let bytes = read_bytes(&path).unwrap();
        assert_eq!(bytes, to_bytes(&plan()));
        let signature = read_signature(&path).unwrap().unwrap();
        assert_eq!(
            super::super::signature::verify(&key, &bytes, &signature),
            Ok(())
        );
        assert_eq!(parse(&bytes, &path).unwrap(), plan());

        // Saving again without a key removes the old signature: it would not be this plan's.
        assert_eq!(save(&plan(), &path, None).unwrap(), None);
        assert!(read_signature(&path).unwrap().is_none());
    }

    #[test]
    fn an_older_format_or_a_garbled_signature_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plan.json");
        std::fs::write(&path, "{\"format_version\": 1}").unwrap();
        let error = load(&path).unwrap_err().to_string();
        assert!(error.contains("format version 1"), "{error}");
        std::fs::write(dir.path().join("plan.json.sig"), "not json").unwrap();
        let error = read_signature(&path).unwrap_err().to_string();
        assert!(error.contains("plan.json.sig"), "{error}");
    }

    #[test]
    fn a_plan_file_that_is_a_fifo_is_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("plan.json");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.is_ok_and(|status| status.success()), "mkfifo failed");
        // Nothing writes to the pipe: reading it would wait forever.
        let error = load(&fifo).unwrap_err().to_string();
        assert!(error.contains("not a regular file"), "{error}");
    }
}
