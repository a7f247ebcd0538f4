//! The desired fleet: the manifest after defaults are merged and paths resolved.
//! Secrets are still references here; values are read only when digests are computed or a
//! provider call is made.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::model::{ProviderConfig, ProviderType, SecretRef};

/// The whole desired state, from one or more manifest files.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// The files it came from, in the order given.
    pub files: Vec<PathBuf>,
    /// Hex SHA-256 over every file's bytes and the user-data files (not paths: plan and apply may
    /// run from different folders), for stale-plan checks.
    pub digest: String,
    pub providers: BTreeMap<String, DesiredProvider>,
    /// In manifest order.
    pub servers: Vec<DesiredServer>,
    /// Local state file path (absolute).
    pub state_path: PathBuf,
    pub emulator: Option<EmbeddedEmulator>,
}

/// A provider as configured, with credential file paths made absolute.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DesiredProvider {
    pub name: String,
    #[serde(flatten)]
    pub config: ProviderConfig,
}

/// The embedded emulator's settings with paths made absolute.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EmbeddedEmulator {
    pub inventory: PathBuf,
    pub data_dir: PathBuf,
    pub install_seconds: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DesiredServer {
    pub name: String,
    /// Name of the provider (key of `providers`).
    pub provider: String,
    pub provider_type: ProviderType,
    /// The server's id at its cloud.
    pub cloud_id: String,
    pub image: String,
    /// Raising it asks for a reinstall of the same image. 0 when unset.
    pub revision: u64,
    pub access: DesiredAccess,
    pub hostname: Option<String>,
    /// User data text (read from its file at load time when given as `{file: …}`).
    pub user_data: Option<String>,
    pub protect: bool,
    /// Provider-specific install options, merged over `defaults.options`.
    pub options: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum DesiredAccess {
    /// Nothing given: the provider's own default applies (e.g. a mailed random password).
    #[default]
    None,
    SshKeyId { id: String },
    Password { secret: SecretRef },
}
