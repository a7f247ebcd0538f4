//! Saved plan files: JSON in the format of `schemas/plan.schema.json`, written atomically.
//! A plan file never holds a secret value: secrets appear only as references and keyed digests.

use std::path::Path;

use super::model::{PLAN_FORMAT_VERSION, Plan};

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
}

pub fn save(plan: &Plan, path: &Path) -> Result<(), PlanFileError> {
    let mut text = super::render::json(plan);
    text.push('\n');
    crate::state::local::write_atomically(path, text.as_bytes()).map_err(|error| {
        PlanFileError::Write {
            path: path.display().to_string(),
            message: error.to_string(),
        }
    })
}

pub fn load(path: &Path) -> Result<Plan, PlanFileError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|error| PlanFileError::Read {
        path: shown.clone(),
        message: error.to_string(),
    })?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|error| PlanFileError::Format {
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
