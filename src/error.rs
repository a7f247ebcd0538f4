//! The library's error at the command boundary. Every variant says what, where and what to do;
//! all map to exit code 1 (Terraform's habit), the CLI adds 2 for `--detailed-exitcode`.

use crate::emulator::EmulatorError;
use crate::manifest::secrets::SecretError;
use crate::plan::file::PlanFileError;
use crate::provider::ProviderError;
use crate::state::StateError;

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum Error {
    #[error(transparent)]
    #[diagnostic(transparent)]
    Manifest(#[from] crate::manifest::ManifestErrors),
    #[error(transparent)]
    #[diagnostic(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Provider(#[from] ProviderError),
    #[error(transparent)]
    #[diagnostic(transparent)]
    PlanFile(#[from] PlanFileError),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Secret(#[from] SecretError),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Emulator(#[from] EmulatorError),
    #[error(transparent)]
    #[diagnostic(transparent)]
    PlanKey(#[from] crate::plan::signature::KeyError),
    /// A saved plan no longer matches the world; each difference is named.
    #[error("the saved plan is stale and was not applied:\n{}", .differences.iter().map(|d| format!("  - {d}")).collect::<Vec<_>>().join("\n"))]
    #[diagnostic(
        code(reimage::plan::stale),
        help(
            "nothing was changed; run `reimage plan -out PLANFILE` again, review it, and apply the new plan"
        )
    )]
    StalePlan { differences: Vec<String> },
    /// A saved plan is not the approved artifact (signature, expiry, commit); each problem named.
    #[error("the saved plan was refused and not applied:\n{}", .problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    #[diagnostic(
        code(reimage::plan::refused),
        help(
            "nothing was changed; apply the plan file exactly as it was made and reviewed, or make, \
             review and apply a new one (`reimage plan -out PLANFILE`)"
        )
    )]
    PlanRefused { problems: Vec<String> },
    /// The plan has blocked servers.
    #[error("{count} server(s) are blocked:\n{}", .details.join("\n"))]
    #[diagnostic(
        code(reimage::plan::blocked),
        help(
            "fix the cause, or leave those servers out with `--target NAME`; nothing was changed"
        )
    )]
    Blocked { count: usize, details: Vec<String> },
    /// Anything else the user can fix.
    #[error("{message}")]
    #[diagnostic(code(reimage::usage), help("{help}"))]
    Usage { message: String, help: String },
    #[error("{message}")]
    #[diagnostic(code(reimage::io))]
    Io { message: String },
}

impl Error {
    pub fn usage(message: impl Into<String>, help: impl Into<String>) -> Self {
        Error::Usage {
            message: message.into(),
            help: help.into(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
