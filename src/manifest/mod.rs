//! Manifests: YAML files → spans → JSON Schema → typed model → [`Manifest`] (desired state).
//!
//! Errors point at file, line and column through miette; several are reported in one run.

pub mod desired;
pub mod diagnostics;
pub mod health;
pub mod load;
pub mod model;
pub mod provider_checks;
pub mod schema;
pub mod secrets;
mod semantic;
mod source_text;
pub mod yaml;

pub use desired::{
    DEFAULT_STATE_NAME, DesiredAccess, DesiredProvider, DesiredServer, EmbeddedEmulator, Manifest,
    RemoteBackend, Rollout, RolloutPolicy,
};
pub use diagnostics::{ManifestDiagnostic, ManifestErrors, Severity};
pub use load::{LoadOptions, Loaded, SecretCheck, load};
pub use model::{ProviderType, SecretRef};
pub use provider_checks::{ProviderRules, SetupRefusal};
