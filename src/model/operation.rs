//! A reinstall under way at a provider, where it stands, and a provider's review of a planned one.

use serde::{Deserialize, Serialize};

/// One provider-side reinstall, tracked until it ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation {
    pub server: String,
    pub cloud_id: String,
    /// The image the install must end with.
    pub image: String,
    /// The provider's job/task id, where it gives one.
    pub job_id: Option<String>,
    /// The provider's request id of the reinstall call, for support tickets.
    pub request_id: Option<String>,
    /// Unix milliseconds when the call was accepted.
    pub started_at_ms: i64,
    /// The image before the reinstall (from the plan), so completion can tell a finished
    /// install from one that has not started yet.
    #[serde(default)]
    pub previous_image: Option<String>,
}

/// Where an operation stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum OperationStatus {
    InProgress {
        detail: String,
    },
    Succeeded {
        image: String,
        /// Set where success cannot be confirmed by the provider (e.g. "not verifiable").
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    Failed {
        message: String,
        request_id: Option<String>,
    },
}

/// A provider's judgement of a reinstall the diff wants, from what was observed (no I/O).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReinstallReview {
    /// The server must be stopped first, and the manifest allows it: `stop-and-reinstall`.
    pub stop_first: bool,
    /// The reinstall cannot be done now, and why (e.g. locked, must be stopped, not allowed).
    pub blocked: Option<String>,
    /// Wiped besides the system disk (e.g. "DATA DISKS").
    pub extra_wipes: Vec<String>,
    /// Lines the plan shows, e.g. "the server is stopped before its OS is changed".
    pub notes: Vec<String>,
}
