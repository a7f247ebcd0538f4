//! The history of applies: one entry at the end of every apply (a failed or interrupted one
//! too), append-only. Who ran it, where, when, which plan from which commit, and how each
//! server ended. The local backend keeps it as JSON lines beside the state
//! (`state.json.history`, mode 0600); PostgreSQL as the `reimage_history` table.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// One apply, as it ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// The plan applied; `None` when the apply stopped before it had one.
    #[serde(default)]
    pub plan_id: Option<String>,
    /// `succeeded`, `failed` (some server failed or was not started), `interrupted` (Ctrl-C),
    /// `no_changes`, `cancelled` (not confirmed) or `error` (the apply stopped on an error;
    /// `message` says which).
    pub outcome: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    pub user: String,
    pub host: String,
    pub pid: u32,
    pub command: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ci_job_url: Option<String>,
    /// The commit of the git repository holding the manifest (or the plan), when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_commit: Option<String>,
    /// RFC 3339.
    pub started_at: String,
    /// RFC 3339.
    pub finished_at: String,
    /// The state serial once the apply ended.
    pub serial: u64,
    /// How each server of the plan's changes ended, by name.
    pub servers: BTreeMap<String, ServerOutcome>,
    /// This apply's own id (`reimage report --apply ID`); entries before it have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apply_id: Option<String>,
    /// The waves as they ran.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waves: Vec<WaveRecord>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerOutcome {
    /// `reinstalled`, `adopted`, `failed`, `gate_failed`, `unknown`, `refused`, `skipped` or
    /// `not_started`.
    pub outcome: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The provider's request id of the call that failed, when it gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// When each part of the server's work began and ended (servers the apply worked on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timings: Option<ServerTimings>,
}

/// When the parts of one server's work began and ended (RFC 3339): queued in its wave,
/// stopping, installing, the health gate. Absent parts did not happen.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerTimings {
    /// The wave it ran in (1-based, as the plan numbers them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wave: Option<usize>,
    /// Its wave began (it waited for a free slot from here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queued_at: Option<String>,
    /// Work on it began (the re-read before its first call).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_ended_at: Option<String>,
    /// The reinstall call was sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub install_started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub install_ended_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate_started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate_ended_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
}

/// One wave as it ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WaveRecord {
    /// 1-based, as the plan numbers waves.
    pub index: usize,
    pub canary: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// The servers started in it.
    pub servers: Vec<String>,
    pub started_at: String,
    pub finished_at: String,
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("history `{location}`: {message}")]
#[diagnostic(code(reimage::state::history))]
pub struct HistoryError {
    pub location: String,
    pub message: String,
}

/// Append-only storage of [`HistoryEntry`]s; every state backend provides one.
pub trait History: Send + Sync {
    /// Appends one entry; returns once it is durable.
    fn append(&self, entry: &HistoryEntry) -> Result<(), HistoryError>;
    /// The last `limit` entries (all with `None`), oldest first.
    fn list(&self, limit: Option<usize>) -> Result<Vec<HistoryEntry>, HistoryError>;
    /// The newest entry.
    fn last(&self) -> Result<Option<HistoryEntry>, HistoryError> {
        Ok(self.list(Some(1))?.pop())
    }
}

/// JSON lines beside the local state file, readable by its owner only.
pub struct LocalHistory {
    path: PathBuf,
    file: Mutex<Option<File>>,
}

impl LocalHistory {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        LocalHistory {
            path: path.into(),
            file: Mutex::new(None),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn error(&self, message: impl std::fmt::Display) -> HistoryError {
        HistoryError {
            location: self.path.display().to_string(),
            message: message.to_string(),
        }
    }
}

fn open_private_append(path: &Path) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

impl History for LocalHistory {
    fn append(&self, entry: &HistoryEntry) -> Result<(), HistoryError> {
        let mut line = serde_json::to_string(entry).map_err(|error| self.error(error))?;
        line.push('\n');
        let mut guard = self
            .file
            .lock()
            .map_err(|_| self.error("the history lock was poisoned"))?;
        if guard.is_none() {
            if let Some(parent) = self.path.parent() {
                fs_err::create_dir_all(parent).map_err(|error| self.error(error))?;
            }
            *guard = Some(open_private_append(&self.path).map_err(|error| self.error(error))?);
        }
        let Some(file) = guard.as_mut() else {
            return Err(self.error("the history file is not open"));
        };
        file.write_all(line.as_bytes())
            .and_then(|()| file.sync_data())
            .map_err(|error| self.error(error))
    }

    /// Every complete entry; a torn last line (a crash mid-append) is skipped.
    fn list(&self, limit: Option<usize>) -> Result<Vec<HistoryEntry>, HistoryError> {
        let mut entries: Vec<HistoryEntry> =
            crate::files::read_json_lines(&self.path, crate::files::JOURNAL_MAX_BYTES)
                .map_err(|error| self.error(error.reason()))?;
        if let Some(limit) = limit {
            let skip = entries.len().saturating_sub(limit);
            entries.drain(..skip);
        }
        Ok(entries)
    }
}

#[cfg(test)]
pub(crate) fn sample(plan_id: &str) -> HistoryEntry {
    HistoryEntry {
        plan_id: Some(plan_id.to_string()),
        outcome: "succeeded".into(),
        message: None,
        user: "alice".into(),
        host: "laptop".into(),
        pid: 7,
        command: "reimage apply".into(),
        ci_job_url: None,
        git_commit: Some("0123abcd".into()),
        started_at: "2026-01-01T00:00:00Z".into(),
        finished_at: "2026-01-01T00:05:00Z".into(),
        serial: 3,
        servers: BTreeMap::from([(
            "web-1".to_string(),
            ServerOutcome {
                outcome: "reinstalled".into(),
                message: None,
                request_id: None,
                timings: None,
            },
        )]),
        apply_id: None,
        waves: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_append_in_order_and_the_file_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let history = LocalHistory::new(dir.path().join("state.json.history"));
        assert!(history.last().unwrap().is_none());
        history.append(&sample("p1")).unwrap();
        history.append(&sample("p2")).unwrap();
        history.append(&sample("p3")).unwrap();
        let all = history.list(None).unwrap();
        assert_eq!(
            all.iter()
                .map(|e| e.plan_id.as_deref().unwrap_or_default())
                .collect::<Vec<_>>(),
            ["p1", "p2", "p3"]
        );
        let last_two = history.list(Some(2)).unwrap();
        assert_eq!(last_two[0].plan_id.as_deref(), Some("p2"));
        assert_eq!(history.last().unwrap().unwrap(), sample("p3"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(history.path())
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_torn_last_line_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let history = LocalHistory::new(dir.path().join("h"));
        history.append(&sample("p1")).unwrap();
        let mut raw = OpenOptions::new()
            .append(true)
            .open(history.path())
            .unwrap();
        raw.write_all(b"{\"plan_id\":\"p2\",\"outc").unwrap();
        assert_eq!(history.list(None).unwrap().len(), 1);
    }
}
