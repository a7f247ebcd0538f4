//! State: what reimage last applied to each server. The only module that touches state storage.
//!
//! The state is data (`State`); a [`StateStore`] reads and writes it and guards it with a lock.
//! `serial` goes up on every write; `lineage` is fixed when the state is created, so that two
//! serials can be compared only within one lineage.

pub mod history;
pub mod journal;
pub mod local;
pub mod lock;
#[cfg(feature = "postgres")]
pub mod postgres;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::manifest::ProviderType;

pub const STATE_FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct State {
    pub format_version: u32,
    pub lineage: String,
    pub serial: u64,
    /// Base64 of the random key for keyed digests of install inputs. Kept only here: a plan file
    /// carries digests made with it, never the key.
    pub digest_key: String,
    #[serde(default)]
    pub servers: BTreeMap<String, ServerRecord>,
    /// Set while a saved plan is being applied and cleared when its apply ends; an apply cut
    /// short (crash, Ctrl-C) leaves it, so `apply --resume PLANFILE` can continue that plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applying: Option<ApplyingPlan>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ApplyingPlan {
    pub plan_id: String,
    /// The state serial the plan was made against.
    pub base_serial: u64,
    /// RFC 3339.
    pub since: String,
}

impl State {
    /// A fresh state with a new lineage and digest key.
    pub fn new() -> Self {
        // Two v4 UUIDs: 244 random bits from the OS generator, without another dependency.
        let mut key = [0u8; 32];
        key[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        key[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        use base64::Engine;
        State {
            format_version: STATE_FORMAT_VERSION,
            lineage: uuid::Uuid::now_v7().to_string(),
            serial: 0,
            digest_key: base64::engine::general_purpose::STANDARD.encode(key),
            servers: BTreeMap::new(),
            applying: None,
        }
    }

    pub fn digest_key_bytes(&self) -> Vec<u8> {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode(&self.digest_key)
            .unwrap_or_default()
    }
}

impl Default for State {
    fn default() -> Self {
        Self::new()
    }
}

/// Refuses a state written in a format this reimage does not read.
pub(crate) fn check_format_version(state: &State, location: &str) -> Result<(), StateError> {
    if state.format_version == STATE_FORMAT_VERSION {
        return Ok(());
    }
    Err(StateError::Read {
        path: location.to_string(),
        message: format!(
            "state format version {} is not supported by this reimage (supports {})",
            state.format_version, STATE_FORMAT_VERSION
        ),
    })
}

/// What reimage last applied to one server (keyed by the server's manifest name).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ServerRecord {
    pub provider: String,
    pub provider_type: ProviderType,
    pub cloud_id: String,
    /// The image the server was last installed with (or found with, when adopted).
    pub image: String,
    pub revision: u64,
    /// Keyed digests of install inputs by field (`access`, `hostname`, `user_data`, `options`).
    /// `None` for a field means unknown (an adopted server): unknown never triggers a reinstall.
    pub input_digests: BTreeMap<String, Option<String>>,
    /// Non-secret inputs as applied, shown as "before" in plans.
    #[serde(default)]
    pub hostname: Option<String>,
    #[serde(default)]
    pub user_data: Option<String>,
    #[serde(default)]
    pub ssh_key_id: Option<String>,
    /// Applied (or adopted) with `protect: true`. A plan that removes `protect` in the same
    /// change that reinstalls the server is blocked while this is set; a change that only
    /// removes `protect` updates this flag without touching the machine.
    #[serde(default)]
    pub protected: bool,
    pub last_operation: Option<OperationRecord>,
    /// RFC 3339.
    pub updated_at: String,
    /// True when reimage never applied or adopted this machine and the record only keeps its
    /// last attempt (an install that failed, was refused or has an unknown outcome): image and
    /// inputs say nothing about the machine, and the plan treats it as never recorded.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub attempt_only: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OperationRecord {
    pub kind: OperationKind,
    pub plan_id: String,
    pub outcome: Outcome,
    pub message: Option<String>,
    pub request_id: Option<String>,
    pub job_id: Option<String>,
    pub started_at: String,
    pub finished_at: String,
    /// The health gate after the install, when the plan gave the server one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthRecord>,
}

/// How a server's health gate went. Written `pending` with the install's success (in the
/// journal's outcome entry, so a crash while gating keeps the install), then `passed` or
/// `failed` in the state.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HealthRecord {
    pub status: GateStatus,
    /// The check, as the plan showed it (`tcp 10.0.0.5:22`).
    pub check: String,
    /// Attempts made.
    #[serde(default)]
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// RFC 3339, once the gate ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum GateStatus {
    /// The install succeeded; the gate has not passed (yet, or ever: the apply was cut short).
    Pending,
    Passed,
    Failed,
}

impl HealthRecord {
    /// A line for plans when the gate never ended (a failed gate is the outcome's to tell).
    pub fn attention(&self) -> Option<String> {
        (self.status == GateStatus::Pending).then(|| {
            format!(
                "the last install succeeded, but its health gate ({}) never finished (the apply \
                 was interrupted): check the server",
                self.check
            )
        })
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OperationKind {
    Adopt,
    Reinstall,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Succeeded,
    /// The install ran and failed.
    Failed,
    /// Whether anything happened could not be established; the message says what to check.
    Unknown,
    /// The provider refused the call before acting, or it was shown not to have acted:
    /// nothing happened to the machine.
    Refused,
    /// The install succeeded (the image is on the machine) but its health gate did not pass.
    GateFailed,
}

/// Who holds a lock: written beside the lock (the local sidecar file, the PostgreSQL holder row)
/// so that whoever waits for it can name the holder.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LockInfo {
    /// The lock's id, for `reimage force-unlock ID`.
    pub id: String,
    /// The login of the user who runs the holder (empty when unknown).
    #[serde(default)]
    pub user: String,
    pub pid: u32,
    pub host: String,
    pub command: String,
    /// The CI job that runs the holder (GitHub Actions run, GitLab job), when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ci_job_url: Option<String>,
    /// RFC 3339.
    pub since: String,
}

impl LockInfo {
    /// The holder in one line: `alice@build-7 pid 4242 (`reimage apply`) since …`.
    pub fn describe(&self) -> String {
        let who = if self.user.is_empty() || self.user == "unknown" {
            self.host.clone()
        } else {
            format!("{}@{}", self.user, self.host)
        };
        let mut text = format!(
            "{who} pid {} (`{}`) since {}",
            self.pid, self.command, self.since
        );
        if let Some(url) = &self.ci_job_url {
            text.push_str(&format!(", CI job {url}"));
        }
        text.push_str(&format!("; lock ID {}", self.id));
        text
    }
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum StateError {
    #[error("state `{location}` is locked by {}{}", .holder.describe(), .waited.as_ref().map(|waited| format!(" (waited {waited})")).unwrap_or_default())]
    #[diagnostic(code(reimage::state::locked), help("{hint}"))]
    Locked {
        holder: Box<LockInfo>,
        location: String,
        /// How long this command waited (`-lock-timeout`), when it waited.
        waited: Option<String>,
        hint: String,
    },
    #[error("refusing to force-unlock `{location}`: {reason}")]
    #[diagnostic(code(reimage::state::unlock), help("{hint}"))]
    Unlock {
        location: String,
        reason: String,
        hint: String,
    },
    #[error("cannot read state `{path}`: {message}")]
    #[diagnostic(code(reimage::state::read))]
    Read { path: String, message: String },
    #[error("cannot write state `{path}`: {message}")]
    #[diagnostic(code(reimage::state::write))]
    Write { path: String, message: String },
    #[error(transparent)]
    #[diagnostic(transparent)]
    Journal(#[from] journal::JournalError),
    #[error(transparent)]
    #[diagnostic(transparent)]
    History(#[from] history::HistoryError),
    #[error(
        "state `{path}` changed while this command held it (serial {expected} expected, {found} found)"
    )]
    #[diagnostic(
        code(reimage::state::conflict),
        help(
            "another writer got there first; nothing of this write was stored. Run the command again"
        )
    )]
    Conflict {
        path: String,
        expected: u64,
        found: u64,
    },
}

/// The name of a state when the backend does not name it: a saved plan records the name of the
/// state it was made against, and apply refuses it against another.
pub const DEFAULT_STATE_NAME: &str = "default";

/// What `force-unlock` found and did.
#[derive(Debug, Clone, PartialEq)]
pub enum Unlocked {
    /// The description a dead holder left behind was removed.
    Removed(Box<LockInfo>),
    /// Nobody held the lock and no description was left: nothing to do.
    NotLocked,
}

/// Storage for [`State`] with a lock. A held [`StateLock`] releases on drop.
pub trait StateStore: Send + Sync {
    /// Describes where the state lives, for messages. Never holds a secret.
    fn location(&self) -> String;
    /// The state's name within its backend (one backend may hold several fleets' states).
    fn name(&self) -> String {
        DEFAULT_STATE_NAME.to_string()
    }
    /// Takes the lock or fails at once naming the holder (see [`lock::acquire`] to wait).
    fn lock(&self, command: &str) -> Result<Box<dyn StateLock>, StateError>;
    /// Reads the state; a missing state reads as `None`.
    fn read(&self) -> Result<Option<State>, StateError>;
    /// Writes the state, raising its serial by one, if the stored state is still the one
    /// `state` was read as (same lineage and serial; none for serial 0): compare-and-set, so no
    /// update is ever lost between two writers. Otherwise [`StateError::Conflict`]. Requires
    /// the lock.
    fn write(&self, lock: &dyn StateLock, state: &mut State) -> Result<(), StateError>;
    /// Stores `state` exactly as given (serial included) if the stored state is `expected`
    /// (lineage and serial; `None`: no state). For `state push`. Requires the lock.
    fn replace(
        &self,
        lock: &dyn StateLock,
        state: &State,
        expected: Option<(&str, u64)>,
    ) -> Result<(), StateError>;
    /// The journal of apply steps that belongs to this state.
    fn journal(&self) -> &dyn journal::Journal;
    /// The append-only history of applies of this state.
    fn history(&self) -> &dyn history::History;
    /// Removes the description of the lock `id` that a dead holder left behind; refuses while
    /// a live holder has the lock.
    fn force_unlock(&self, id: &str) -> Result<Unlocked, StateError>;
}

/// Proof of a held lock.
pub trait StateLock: Send + Sync {
    fn info(&self) -> &LockInfo;
}
