//! The typed manifest, as deserialized after the JSON Schema has accepted the document.
//!
//! These structs mirror `schemas/manifest.schema.json`; `deny_unknown_fields` is a second guard
//! behind the schema. Secrets are [`SecretRef`]s: never values.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One manifest file, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestFile {
    pub version: u32,
    #[serde(default)]
    pub providers: BTreeMap<String, ProviderConfig>,
    #[serde(default)]
    pub defaults: Option<Defaults>,
    #[serde(default)]
    pub servers: Vec<ServerSpec>,
    #[serde(default)]
    pub state: Option<StateConfig>,
    #[serde(default)]
    pub backend: Option<BackendConfig>,
    #[serde(default)]
    pub emulator: Option<EmbeddedEmulatorConfig>,
    #[serde(default)]
    pub policy: Option<PolicySpec>,
}

/// How applies roll out: the default rollout and overrides per server group.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PolicySpec {
    #[serde(default)]
    pub rollout: Option<RolloutSpec>,
    /// Rollout overrides per group (servers name their group with `group:`).
    #[serde(default)]
    pub groups: BTreeMap<String, GroupPolicySpec>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GroupPolicySpec {
    #[serde(default)]
    pub rollout: Option<RolloutSpec>,
    /// The health gate of the group's servers (unless a server sets its own).
    #[serde(default)]
    pub health: Option<super::health::HealthSetting>,
}

/// Rollout settings; anything unset falls back to the next level (group → policy → built-in).
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RolloutSpec {
    /// Reinstalls in the first wave, which must all succeed before anything else starts.
    #[serde(default)]
    pub canary: Option<usize>,
    /// Reinstalls in flight at once.
    #[serde(default)]
    pub max_parallel: Option<usize>,
    /// Stop starting new reinstalls after this many failures.
    #[serde(default)]
    pub max_failures: Option<usize>,
    /// Refuse an apply that would reinstall more servers than this.
    #[serde(default)]
    pub max_reinstalls: Option<usize>,
}

/// Where reimage keeps its state as a local file (`backend: {type: local}` says the same).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    /// Path of the local state file, relative to the manifest file that names it.
    pub path: String,
}

/// Where reimage keeps its state, journal, lock and history. Which keys go with which `type`
/// is checked after the schema, with errors naming the key.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BackendConfig {
    #[serde(rename = "type")]
    pub backend_type: BackendType,
    /// `local`: the state file, relative to the manifest file that names it.
    #[serde(default)]
    pub path: Option<String>,
    /// `postgres`: the connection URL, a secret (it holds a password).
    #[serde(default)]
    pub url: Option<SecretRef>,
    /// `postgres`: the state's name in the database (default `default`).
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BackendType {
    Local,
    Postgres,
}

/// Settings for the emulator that `endpoint: emulator` starts inside the reimage process.
/// Meant for demos, tests and users' CI; never for production fleets.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EmbeddedEmulatorConfig {
    /// Inventory file (relative to the manifest).
    pub inventory: String,
    /// Where the emulated world is persisted between runs (relative to the manifest).
    #[serde(default)]
    pub data_dir: Option<String>,
    /// How long an emulated install takes, in seconds.
    #[serde(default)]
    pub install_seconds: Option<f64>,
}

/// A configured account/region of one provider type.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    #[serde(rename = "type")]
    pub provider_type: ProviderType,
    /// API endpoint override. `emulator` means the embedded emulator.
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub zone: Option<String>,
    /// Credential references by field name (provider-specific names, e.g. `access_key_id`).
    #[serde(default)]
    pub credentials: BTreeMap<String, SecretRef>,
    /// How often to poll an install, in seconds.
    #[serde(default)]
    pub poll_interval: Option<f64>,
    /// Give up waiting for one install after this many seconds.
    #[serde(default)]
    pub install_timeout: Option<f64>,
    /// How long one install usually takes, in seconds: the plan's estimate of the rollout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub install_estimate: Option<f64>,
    /// Seconds a reinstall or stop may take to show after its call; see
    /// the provider capability `start_grace`.
    #[serde(default)]
    pub start_grace: Option<f64>,
    /// Give up waiting for a requested stop after this many seconds.
    #[serde(default)]
    pub stop_timeout: Option<f64>,
    /// Longest time one API request may take, in seconds.
    #[serde(default)]
    pub request_timeout: Option<f64>,
    /// Provider-specific settings (e.g. Zenlayer `api_version`).
    #[serde(default)]
    pub options: serde_json::Map<String, serde_json::Value>,
    /// Overrides of the provider's default rate limits, per API family.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rate_limits: BTreeMap<crate::model::limits::ApiFamily, crate::model::limits::RateLimit>,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProviderType {
    #[serde(rename = "zenlayer-bmc")]
    ZenlayerBmc,
    #[serde(rename = "huaweicloud-ecs")]
    HuaweicloudEcs,
    #[serde(rename = "huaweicloud-clouddc")]
    HuaweicloudClouddc,
    #[serde(rename = "jdcloud-cps")]
    JdcloudCps,
    #[serde(rename = "edis-kvm")]
    EdisKvm,
}

impl ProviderType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ZenlayerBmc => "zenlayer-bmc",
            Self::HuaweicloudEcs => "huaweicloud-ecs",
            Self::HuaweicloudClouddc => "huaweicloud-clouddc",
            Self::JdcloudCps => "jdcloud-cps",
            Self::EdisKvm => "edis-kvm",
        }
    }
}

impl std::fmt::Display for ProviderType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// A reference to a secret: the value lives in the environment or in a file, never in YAML.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
pub enum SecretRef {
    /// Name of an environment variable.
    Env(String),
    /// Path of a file (relative paths are made absolute against the manifest's folder at load
    /// time); one trailing newline is stripped from its content.
    File(String),
}

impl std::fmt::Display for SecretRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Env(name) => write!(f, "env:{name}"),
            Self::File(path) => write!(f, "file:{path}"),
        }
    }
}

/// Values applied to every server that does not set them itself.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    #[serde(default)]
    pub provider: Option<String>,
    #[serde(default)]
    pub os: Option<OsSpec>,
    #[serde(default)]
    pub access: Option<AccessSpec>,
    #[serde(default)]
    pub user_data: Option<UserDataSpec>,
    #[serde(default)]
    pub protect: Option<bool>,
    #[serde(default)]
    pub options: Option<serde_json::Map<String, serde_json::Value>>,
    /// The health gate of every server that has none from itself or its group.
    #[serde(default)]
    pub health: Option<super::health::HealthSetting>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServerSpec {
    pub name: String,
    #[serde(default)]
    pub provider: Option<String>,
    /// The server's id at its cloud.
    pub id: String,
    #[serde(default)]
    pub os: Option<OsSpec>,
    #[serde(default)]
    pub access: Option<AccessSpec>,
    #[serde(default)]
    pub hostname: Option<String>,
    #[serde(default)]
    pub user_data: Option<UserDataSpec>,
    #[serde(default)]
    pub protect: Option<bool>,
    #[serde(default)]
    pub options: Option<serde_json::Map<String, serde_json::Value>>,
    /// Rollout group (see `policy.groups`).
    #[serde(default)]
    pub group: Option<String>,
    /// The host health checks reach (`{address}`); else what the provider reports.
    #[serde(default)]
    pub address: Option<String>,
    /// The health gate after this server's install.
    #[serde(default)]
    pub health: Option<super::health::HealthSetting>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OsSpec {
    #[serde(default)]
    pub image: Option<String>,
    /// Raise to reinstall the same image again.
    #[serde(default)]
    pub revision: Option<u64>,
}

/// How to log in after the install: an SSH key pair id at the cloud, or a password reference.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AccessSpec {
    #[serde(default)]
    pub ssh_key_id: Option<String>,
    #[serde(default)]
    pub password: Option<SecretRef>,
}

/// User data: inline text or `{file: PATH}`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(untagged)]
pub enum UserDataSpec {
    Inline(String),
    File { file: String },
}
