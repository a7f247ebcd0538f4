//! The journal: a durable record of every provider-side step of an apply, written *before*
//! the call (intent), after it (called, with the operation), and when it ends (outcome).
//!
//! After a crash, the entries of a step with an intent but no outcome say exactly which
//! servers may have an install running that nobody is watching; reconciliation checks them
//! with the provider. A call is sent again only under the same step, after a `resend` entry,
//! and only once it is known not to have acted. The order of writes is kept by
//! the apply engine's step protocol, the only writer. The local backend appends JSON lines and
//! fsyncs each one before returning; a torn last line (a crash mid-append) is ignored, which
//! is safe because a step's call is only made after its intent line was synced.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::model::{Operation, ServerStatus};
use crate::state::ServerRecord;

/// Which call a step makes (one of the three axes of a step; the others are its
/// [`JournalPhase`] and, while the engine watches it, its watch stage).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepCall {
    Stop,
    Reinstall,
}

impl StepCall {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stop => "stop",
            Self::Reinstall => "reinstall",
        }
    }
}

/// Which journal entry of a step this is: intent, resend, called, outcome (in that order only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum JournalPhase {
    /// About to call the provider. Written and synced before the call.
    Intent {
        token: String,
        /// The image the step installs (reinstall steps).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        image: Option<String>,
        /// The image seen at plan time, to tell a finished install from one never started.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        previous_image: Option<String>,
        /// What the state records if the step succeeds, prepared before the call.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        success_record: Option<Box<ServerRecord>>,
        /// The server as read right before the first call: an unchanged server after the
        /// provider's grace proves a lost call did not act, even across a crash.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        baseline: Option<Baseline>,
    },
    /// The same call is about to be sent again (it was shown not to have acted, or its token
    /// makes a repeat harmless). Written and synced before the call.
    Resend { attempt: u32, reason: String },
    /// The provider accepted the call.
    Called { operation: Operation },
    /// The step ended.
    Outcome {
        outcome: StepOutcome,
        message: Option<String>,
        /// The record written into the state for this outcome.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        record: Option<Box<ServerRecord>>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepOutcome {
    Succeeded,
    Failed,
    /// Whether the call reached the provider could not be established; never retried blindly.
    Unknown,
    /// Shown not to have acted (never sent, or sent and found without effect): nothing
    /// happened to the server.
    NotSent,
    /// The provider refused the call before acting (a documented business error): nothing
    /// happened to the server.
    Refused,
}

/// What a server looked like right before a step's first call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Baseline {
    pub status: ServerStatus,
    pub raw_status: String,
    pub image: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JournalEntry {
    pub plan_id: String,
    pub server: String,
    pub provider: String,
    pub cloud_id: String,
    pub step: StepCall,
    /// RFC 3339.
    pub at: String,
    #[serde(flatten)]
    pub phase: JournalPhase,
}

/// Where one step stands after folding every entry of the journal.
#[derive(Debug, Clone, PartialEq)]
pub struct StepState {
    pub plan_id: String,
    pub server: String,
    pub provider: String,
    pub cloud_id: String,
    pub step: StepCall,
    pub token: Option<String>,
    pub image: Option<String>,
    pub previous_image: Option<String>,
    pub success_record: Option<ServerRecord>,
    /// When the intent was written (RFC 3339).
    pub intent_at: Option<String>,
    pub baseline: Option<Baseline>,
    /// Calls made under this step so far (1 after the intent, +1 per resend).
    pub sends: u32,
    /// When the last call was about to be made (RFC 3339).
    pub last_send_at: Option<String>,
    pub operation: Option<Operation>,
    pub outcome: Option<(StepOutcome, Option<String>)>,
    pub outcome_record: Option<ServerRecord>,
}

impl StepState {
    /// An intent with no outcome: an install may be running that nobody watches.
    pub fn in_flight(&self) -> bool {
        self.outcome.is_none()
    }
}

/// Folds entries into one state per (plan, server, step), in first-seen order.
pub fn fold(entries: &[JournalEntry]) -> Vec<StepState> {
    let mut order: Vec<(String, String, StepCall)> = Vec::new();
    let mut states: BTreeMap<(String, String, StepCall), StepState> = BTreeMap::new();
    for entry in entries {
        let key = (entry.plan_id.clone(), entry.server.clone(), entry.step);
        let state = states.entry(key.clone()).or_insert_with(|| {
            order.push(key.clone());
            StepState {
                plan_id: entry.plan_id.clone(),
                server: entry.server.clone(),
                provider: entry.provider.clone(),
                cloud_id: entry.cloud_id.clone(),
                step: entry.step,
                token: None,
                image: None,
                previous_image: None,
                success_record: None,
                intent_at: None,
                baseline: None,
                sends: 0,
                last_send_at: None,
                operation: None,
                outcome: None,
                outcome_record: None,
            }
        });
        match &entry.phase {
            JournalPhase::Intent {
                token,
                image,
                previous_image,
                success_record,
                baseline,
            } => {
                state.token = Some(token.clone());
                state.image = image.clone();
                state.previous_image = previous_image.clone();
                state.success_record = success_record.as_deref().cloned();
                state.intent_at = Some(entry.at.clone());
                state.baseline = baseline.clone();
                state.sends = 1;
                state.last_send_at = Some(entry.at.clone());
            }
            JournalPhase::Resend { attempt, .. } => {
                state.sends = state.sends.max(*attempt);
                state.last_send_at = Some(entry.at.clone());
            }
            JournalPhase::Called { operation } => state.operation = Some(operation.clone()),
            JournalPhase::Outcome {
                outcome,
                message,
                record,
            } => {
                state.outcome = Some((*outcome, message.clone()));
                state.outcome_record = record.as_deref().cloned();
            }
        }
    }
    order
        .into_iter()
        .filter_map(|key| states.remove(&key))
        .collect()
}

/// The servers with a step in flight (an intent and no outcome): their records must not be
/// forgotten, since an install may be running that nobody watches.
pub fn servers_in_flight(entries: &[JournalEntry]) -> BTreeMap<String, StepCall> {
    fold(entries)
        .into_iter()
        .filter(StepState::in_flight)
        .map(|state| (state.server, state.step))
        .collect()
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("journal `{path}`: {message}")]
#[diagnostic(code(reimage::state::journal))]
pub struct JournalError {
    pub path: String,
    pub message: String,
}

/// Durable storage of journal entries; every state backend provides one.
pub trait Journal: Send + Sync {
    /// Appends entries; returns only once they are durable.
    fn append(&self, entries: &[JournalEntry]) -> Result<(), JournalError>;
    /// Every complete entry, in order.
    fn read(&self) -> Result<Vec<JournalEntry>, JournalError>;
    /// Drops the entries of finished steps (after their outcomes are in the state).
    fn compact(&self) -> Result<(), JournalError>;
}

/// Append-only JSON-lines journal beside the local state file.
pub struct LocalJournal {
    path: PathBuf,
    file: Mutex<Option<File>>,
}

impl LocalJournal {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        LocalJournal {
            path: path.into(),
            file: Mutex::new(None),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn error(&self, message: impl std::fmt::Display) -> JournalError {
        JournalError {
            path: self.path.display().to_string(),
            message: message.to_string(),
        }
    }
}

impl Journal for LocalJournal {
    /// Appends entries and syncs them to disk before returning.
    fn append(&self, entries: &[JournalEntry]) -> Result<(), JournalError> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut text = String::new();
        for entry in entries {
            let line = serde_json::to_string(entry).map_err(|error| self.error(error))?;
            text.push_str(&line);
            text.push('\n');
        }
        let mut guard = self
            .file
            .lock()
            .map_err(|_| self.error("the journal lock was poisoned"))?;
        if guard.is_none() {
            if let Some(parent) = self.path.parent() {
                super::local::create_private_dir_all(parent).map_err(|error| self.error(error))?;
            }
            let file = super::local::private_open_options()
                .create(true)
                .append(true)
                .open(&self.path)
                .map_err(|error| self.error(error))?;
            *guard = Some(file);
        }
        let Some(file) = guard.as_mut() else {
            return Err(self.error("the journal is not open"));
        };
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_data())
            .map_err(|error| self.error(error))
    }

    /// Every complete entry; a torn or unreadable line is skipped (it was never synced whole).
    fn read(&self) -> Result<Vec<JournalEntry>, JournalError> {
        crate::files::read_json_lines(&self.path, crate::files::JOURNAL_MAX_BYTES)
            .map_err(|error| self.error(error.reason()))
    }

    /// Keeps only the steps still in flight (rewritten atomically), once finished steps have
    /// been recorded in the state.
    fn compact(&self) -> Result<(), JournalError> {
        let entries = self.read()?;
        let open: std::collections::HashSet<(String, String, StepCall)> = fold(&entries)
            .into_iter()
            .filter(StepState::in_flight)
            .map(|state| (state.plan_id, state.server, state.step))
            .collect();
        let kept: Vec<&JournalEntry> = entries
            .iter()
            .filter(|entry| {
                open.contains(&(entry.plan_id.clone(), entry.server.clone(), entry.step))
            })
            .collect();
        let mut text = String::new();
        for entry in kept {
            text.push_str(&serde_json::to_string(entry).map_err(|error| self.error(error))?);
            text.push('\n');
        }
        let mut guard = self
            .file
            .lock()
            .map_err(|_| self.error("the journal lock was poisoned"))?;
        *guard = None;
        super::local::write_atomically(&self.path, text.as_bytes())
            .map_err(|error| self.error(error))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn intent(token: &str) -> JournalPhase {
        JournalPhase::Intent {
            token: token.into(),
            image: None,
            previous_image: None,
            success_record: None,
            baseline: None,
        }
    }

    fn entry(server: &str, step: StepCall, phase: JournalPhase) -> JournalEntry {
        JournalEntry {
            plan_id: "p1".into(),
            server: server.into(),
            provider: "zl".into(),
            cloud_id: format!("id-{server}"),
            step,
            at: "2026-01-01T00:00:00Z".into(),
            phase,
        }
    }

    #[test]
    fn entries_fold_into_steps_and_torn_lines_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let journal = LocalJournal::new(dir.path().join("journal.jsonl"));
        journal
            .append(&[
                entry("a", StepCall::Reinstall, intent("t-a")),
                entry("b", StepCall::Reinstall, intent("t-b")),
                entry(
                    "a",
                    StepCall::Reinstall,
                    JournalPhase::Outcome {
                        outcome: StepOutcome::Succeeded,
                        message: None,
                        record: None,
                    },
                ),
            ])
            .unwrap();
        // A crash in the middle of an append leaves half a line.
        let mut raw = std::fs::OpenOptions::new()
            .append(true)
            .open(journal.path())
            .unwrap();
        raw.write_all(b"{\"plan_id\":\"p1\",\"ser").unwrap();
        let steps = fold(&journal.read().unwrap());
        assert_eq!(steps.len(), 2);
        assert!(!steps[0].in_flight());
        assert!(steps[1].in_flight());
        assert_eq!(steps[1].token.as_deref(), Some("t-b"));
        let in_flight = servers_in_flight(&journal.read().unwrap());
        assert_eq!(
            in_flight.into_iter().collect::<Vec<_>>(),
            vec![("b".to_string(), StepCall::Reinstall)]
        );
    }

    #[test]
    fn compaction_keeps_only_steps_in_flight() {
        let dir = tempfile::tempdir().unwrap();
        let journal = LocalJournal::new(dir.path().join("journal.jsonl"));
        journal
            .append(&[
                entry("a", StepCall::Reinstall, intent("t")),
                entry(
                    "a",
                    StepCall::Reinstall,
                    JournalPhase::Outcome {
                        outcome: StepOutcome::Failed,
                        message: Some("x".into()),
                        record: None,
                    },
                ),
                entry("b", StepCall::Stop, intent("s")),
            ])
            .unwrap();
        journal.compact().unwrap();
        let left = journal.read().unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].server, "b");
        // Appending after compaction still works.
        journal
            .append(&[entry("c", StepCall::Reinstall, intent("u"))])
            .unwrap();
        assert_eq!(journal.read().unwrap().len(), 2);
    }

    /// Something else at the journal's path (here a FIFO, which a plain open would wait on
    /// forever) is an error naming the file, never a hang; damaged lines are skipped.
    #[test]
    fn a_journal_that_is_not_a_regular_file_is_refused_and_damaged_lines_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("journal.jsonl");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.is_ok_and(|status| status.success()), "mkfifo failed");
        let error = LocalJournal::new(fifo.clone()).read().unwrap_err();
        assert!(error.to_string().contains("journal.jsonl"), "{error}");
        assert!(error.to_string().contains("not a regular file"), "{error}");

        let damaged = dir.path().join("damaged.jsonl");
        let journal = LocalJournal::new(damaged.clone());
        journal
            .append(&[entry("a", StepCall::Reinstall, intent("t"))])
            .unwrap();
        let mut bytes = std::fs::read(&damaged).unwrap();
        bytes.extend_from_slice(b"\xff\xfe not json\n");
        std::fs::write(&damaged, &bytes).unwrap();
        journal
            .append(&[entry("b", StepCall::Reinstall, intent("u"))])
            .unwrap();
        let servers: Vec<String> = journal
            .read()
            .unwrap()
            .into_iter()
            .map(|entry| entry.server)
            .collect();
        assert_eq!(servers, ["a", "b"]);
    }
}
