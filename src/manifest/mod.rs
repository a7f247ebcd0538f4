//! Manifests: YAML files → spans → JSON Schema → typed model → [`Manifest`] (desired state).
//!
//! Errors point at file, line and column through miette; several are reported in one run.

pub mod desired;
pub mod model;
pub mod secrets;
pub mod yaml;

pub use desired::{DesiredAccess, DesiredProvider, DesiredServer, EmbeddedEmulator, Manifest};
pub use model::{ProviderType, SecretRef};
pub mod load;
pub use load::{LoadOptions, Loaded, ManifestDiagnostic, ManifestErrors, SecretCheck, load};
