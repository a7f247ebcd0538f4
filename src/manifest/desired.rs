//! The desired fleet: the manifest after defaults are merged and paths resolved.
//! Secrets are still references here; values are read only when digests are computed or a
//! provider call is made.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::health::DesiredHealth;
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
    /// Local state file path (absolute): the state itself with the local backend; with a
    /// remote backend, where `state push` takes a local state from by default.
    pub state_path: PathBuf,
    /// The shared backend holding the state, when not the local file.
    pub backend: Option<RemoteBackend>,
    pub emulator: Option<EmbeddedEmulator>,
    /// The rollout policy (built-in defaults where the manifest says nothing).
    pub policy: RolloutPolicy,
}

/// A shared state backend. Its connection URL stays a reference: it holds a password, and it
/// is saved in plan files so that a plan applies on another machine.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum RemoteBackend {
    Postgres {
        url: SecretRef,
        /// The state's name in the database.
        name: String,
    },
}

/// The state's name when `backend.name` is not given.
pub const DEFAULT_STATE_NAME: &str = "default";

/// Rollout limits, all resolved.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct Rollout {
    /// Reinstalls in the first wave, which must all succeed before anything else starts.
    pub canary: usize,
    /// Reinstalls in flight at once (≥ 1).
    pub max_parallel: usize,
    /// Stop starting new reinstalls after this many failures (`None`: never stop).
    pub max_failures: Option<usize>,
    /// Refuse an apply that would reinstall more than this (`None`: no cap).
    pub max_reinstalls: Option<usize>,
}

impl Default for Rollout {
    /// Safe by default: one canary first, ten at a time after it, stop at the first failure.
    fn default() -> Self {
        Rollout {
            canary: 1,
            max_parallel: 10,
            max_failures: Some(1),
            max_reinstalls: None,
        }
    }
}

impl Rollout {
    /// This rollout with the given settings laid over it.
    pub fn overlaid(self, spec: &super::model::RolloutSpec) -> Rollout {
        Rollout {
            canary: spec.canary.unwrap_or(self.canary),
            max_parallel: spec.max_parallel.unwrap_or(self.max_parallel).max(1),
            max_failures: spec.max_failures.or(self.max_failures),
            max_reinstalls: spec.max_reinstalls.or(self.max_reinstalls),
        }
    }
}

/// The default rollout and the rollout of each named group.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct RolloutPolicy {
    pub default: Rollout,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub groups: BTreeMap<String, Rollout>,
}

impl RolloutPolicy {
    pub fn for_group(&self, group: Option<&str>) -> Rollout {
        group
            .and_then(|name| self.groups.get(name))
            .copied()
            .unwrap_or(self.default)
    }
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
    /// Rollout group, when the server names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// The host health checks reach, when the manifest gives it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// The health gate the manifest gives (server, group or defaults).
    #[serde(default, skip_serializing_if = "DesiredHealth::is_unset")]
    pub health: DesiredHealth,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum DesiredAccess {
    /// Nothing given: the provider's own default applies (e.g. a mailed random password).
    #[default]
    None,
    SshKeyId {
        id: String,
    },
    Password {
        secret: SecretRef,
    },
}
