//! State: what reimage last applied to each server. The only module that touches state storage.
//!
//! The state is data (`State`); a [`StateStore`] reads and writes it and guards it with a lock.
//! `serial` goes up on every write; `lineage` is fixed when the state is created, so that two
//! serials can be compared only within one lineage.

pub mod journal;
pub mod local;

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
}

/// Who holds a lock, written into the lock file so a second process can name the holder.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LockInfo {
    pub id: String,
    pub pid: u32,
    pub host: String,
    pub command: String,
    /// RFC 3339.
    pub since: String,
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum StateError {
    #[error("state is locked by pid {} on {} (`{}`) since {}", .0.pid, .0.host, .0.command, .0.since)]
    #[diagnostic(
        code(reimage::state::locked),
        help("wait for that command to finish; if it died, remove the lock file `{1}`")
    )]
    Locked(Box<LockInfo>, String),
    #[error("cannot read state `{path}`: {message}")]
    #[diagnostic(code(reimage::state::read))]
    Read { path: String, message: String },
    #[error("cannot write state `{path}`: {message}")]
    #[diagnostic(code(reimage::state::write))]
    Write { path: String, message: String },
    #[error(transparent)]
    #[diagnostic(transparent)]
    Journal(#[from] journal::JournalError),
    #[error(
        "state `{path}` changed while this command held it (serial {expected} expected, {found} found)"
    )]
    #[diagnostic(code(reimage::state::conflict))]
    Conflict {
        path: String,
        expected: u64,
        found: u64,
    },
}

/// The name of a state when the backend does not name it: a saved plan records the name of the
/// state it was made against, and apply refuses it against another.
pub const DEFAULT_STATE_NAME: &str = "default";

/// Storage for [`State`] with a lock. A held [`StateLock`] releases on drop.
pub trait StateStore: Send + Sync {
    /// Describes where the state lives, for messages.
    fn location(&self) -> String;
    /// The state's name within its backend (one backend may hold several fleets' states).
    fn name(&self) -> String {
        DEFAULT_STATE_NAME.to_string()
    }
    /// Takes the lock or fails at once naming the holder.
    fn lock(&self, command: &str) -> Result<Box<dyn StateLock>, StateError>;
    /// Reads the state; a missing state reads as `None`.
    fn read(&self) -> Result<Option<State>, StateError>;
    /// Writes the state atomically, raising its serial by one. Requires the lock.
    fn write(&self, lock: &dyn StateLock, state: &mut State) -> Result<(), StateError>;
    /// The journal of apply steps that belongs to this state.
    fn journal(&self) -> &dyn journal::Journal;
}

/// Proof of a held lock.
pub trait StateLock: Send + Sync {
    fn info(&self) -> &LockInfo;
}
