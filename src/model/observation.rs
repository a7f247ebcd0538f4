//! What a provider reports about a server, normalised across provider types.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A server's status, normalised across providers. The provider's own word is kept in
/// [`Observed::raw_status`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerStatus {
    Running,
    Stopped,
    /// An install is under way.
    Installing,
    /// The last install failed; the provider needs manual action.
    InstallFailed,
    /// Busy with something else (creating, stopping, recycling, locked…): no reinstall now.
    Busy,
    /// Gone or being deleted.
    Gone,
    Unknown,
}

impl ServerStatus {
    /// Whether a reinstall may be started from this status.
    pub fn allows_reinstall(self) -> bool {
        matches!(self, Self::Running | Self::Stopped)
    }
}

/// What the provider reports about one server now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observed {
    pub cloud_id: String,
    pub status: ServerStatus,
    /// The provider's own status word, e.g. `RUNNING`.
    pub raw_status: String,
    /// The installed image id; `None` when the provider cannot tell.
    pub image: Option<String>,
    /// A human name for the image, when the provider gives one.
    pub image_name: Option<String>,
    pub hostname: Option<String>,
    /// The address health checks reach (`{address}`), where the provider reports one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Provider-specific facts the plan depends on (e.g. `locked`, `task_state`, `raid_type_id`).
    /// Part of the fingerprint: a saved plan is refused when any of them moved.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, String>,
}

/// The result of observing one id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Observation {
    Found(Observed),
    /// The provider does not know this id (for this account and region).
    NotFound,
}
