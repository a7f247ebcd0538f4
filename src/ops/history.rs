//! The history entry of an apply: written when the apply command finishes, whatever the
//! outcome (the apply engine itself knows nothing of it).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::apply::ApplySummary;
use crate::plan::Plan;
use crate::state::history::{HistoryEntry, ServerOutcome};
use crate::state::{OperationKind, OperationRecord, Outcome, ServerRecord, State};

/// What is known before the apply starts.
#[derive(Debug, Clone)]
pub struct ApplyRun {
    pub command: String,
    /// RFC 3339.
    pub started_at: String,
    pub git_commit: Option<String>,
    /// This apply's id in the history (`reimage report --apply ID`).
    pub apply_id: String,
}

impl ApplyRun {
    /// Starts the record of an apply whose manifest (or plan) lives in `folder`.
    pub fn start(command: &str, folder: &Path) -> ApplyRun {
        ApplyRun {
            command: command.to_string(),
            started_at: jiff::Timestamp::now().to_string(),
            git_commit: git_commit(folder),
            apply_id: uuid::Uuid::now_v7().to_string(),
        }
    }
}

/// The commit checked out in the git repository holding `folder`, if it is in one; in CI
/// without a git binary, the commit the CI says it builds.
pub fn git_commit(folder: &Path) -> Option<String> {
    let from_git = Command::new("git")
        .arg("-C")
        .arg(folder)
        .args(["rev-parse", "--verify", "--quiet", "HEAD"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_string())
        .filter(|commit| !commit.is_empty() && commit.chars().all(|c| c.is_ascii_hexdigit()));
    from_git.or_else(|| {
        ["GITHUB_SHA", "CI_COMMIT_SHA"]
            .iter()
            .find_map(|name| std::env::var(name).ok().filter(|value| !value.is_empty()))
    })
}

/// How an apply that held the lock ended.
pub enum Ending<'a> {
    /// The plan ran (to the end, with failures, or interrupted).
    Applied(&'a ApplySummary),
    /// There was nothing to do.
    NoChanges,
    /// The operator did not confirm.
    Cancelled,
    /// The apply stopped on this error (stale or blocked plan, provider or state trouble…).
    Error(String),
}

/// The history entry of an apply: `plan` when it got that far, `state` as it ended (what it
/// recorded for the plan's servers, even when it stopped on an error), and the servers whose
/// interrupted steps it settled first.
pub fn entry(
    run: &ApplyRun,
    plan: Option<&Plan>,
    ending: Ending<'_>,
    state: Option<&State>,
    settled: &BTreeMap<String, ServerOutcome>,
) -> HistoryEntry {
    let who = crate::state::lock::holder(&run.command);
    let outcome = |text: &str, message: Option<String>| ServerOutcome {
        outcome: text.to_string(),
        message,
        request_id: None,
        timings: None,
    };
    let mut waves = Vec::new();
    let mut servers = settled.clone();
    let (overall, message) = match ending {
        Ending::Applied(summary) => {
            for name in &summary.reinstalled {
                servers.insert(name.clone(), outcome("reinstalled", None));
            }
            for name in &summary.adopted {
                servers.insert(name.clone(), outcome("adopted", None));
            }
            for (word, list) in [
                ("failed", &summary.failed),
                ("gate_failed", &summary.gate_failed),
                ("unknown", &summary.unknown),
                ("refused", &summary.refused),
            ] {
                for failed in list {
                    servers.insert(
                        failed.server.clone(),
                        ServerOutcome {
                            request_id: failed.request_id.clone(),
                            ..outcome(word, Some(failed.message.clone()))
                        },
                    );
                }
            }
            for skipped in &summary.skipped {
                servers.insert(
                    skipped.server.clone(),
                    outcome("skipped", Some(skipped.reason.clone())),
                );
            }
            for skipped in &summary.not_started {
                servers.insert(
                    skipped.server.clone(),
                    outcome("not_started", Some(skipped.reason.clone())),
                );
            }
            for (name, timings) in &summary.timings {
                if let Some(server) = servers.get_mut(name) {
                    server.timings = Some(timings.clone());
                }
            }
            waves = summary.waves.clone();
            let overall = if summary.interrupted {
                "interrupted"
            } else if summary.succeeded() {
                "succeeded"
            } else {
                "failed"
            };
            (overall, None)
        }
        Ending::NoChanges => ("no_changes", None),
        Ending::Cancelled => ("cancelled", None),
        Ending::Error(message) => {
            // What the state recorded for this plan is what happened; the rest is unknown.
            let changes = plan
                .map(|plan| {
                    plan.servers
                        .iter()
                        .filter(|server| server.action.is_change())
                })
                .into_iter()
                .flatten();
            for server in changes {
                let recorded = state
                    .and_then(|state| state.servers.get(&server.name))
                    .and_then(|record| record.last_operation.as_ref())
                    .filter(|operation| plan.is_some_and(|plan| operation.plan_id == plan.plan_id));
                let result = match recorded {
                    Some(operation) => operation_outcome(operation),
                    None => outcome("unknown", None),
                };
                servers.insert(server.name.clone(), result);
            }
            ("error", Some(message))
        }
    };
    HistoryEntry {
        plan_id: plan.map(|plan| plan.plan_id.clone()),
        outcome: overall.to_string(),
        message,
        user: who.user,
        host: who.host,
        pid: who.pid,
        command: run.command.clone(),
        ci_job_url: who.ci_job_url,
        git_commit: run.git_commit.clone(),
        started_at: run.started_at.clone(),
        finished_at: jiff::Timestamp::now().to_string(),
        serial: state.map_or(0, |state| state.serial),
        servers,
        apply_id: Some(run.apply_id.clone()),
        waves,
    }
}

fn operation_outcome(operation: &OperationRecord) -> ServerOutcome {
    let (text, message) = match (operation.kind, operation.outcome) {
        (OperationKind::Adopt, _) => ("adopted", None),
        (OperationKind::Reinstall, Outcome::Succeeded) => ("reinstalled", None),
        (OperationKind::Reinstall, Outcome::Failed) => ("failed", operation.message.clone()),
        (OperationKind::Reinstall, Outcome::Unknown) => ("unknown", operation.message.clone()),
        (OperationKind::Reinstall, Outcome::Refused) => ("refused", operation.message.clone()),
        (OperationKind::Reinstall, Outcome::GateFailed) => {
            ("gate_failed", operation.message.clone())
        }
    };
    let message = match operation
        .health
        .as_ref()
        .and_then(|health| health.attention())
    {
        Some(note) if operation.outcome == Outcome::Succeeded => Some(note),
        _ => message,
    };
    ServerOutcome {
        outcome: text.to_string(),
        message,
        request_id: operation.request_id.clone(),
        timings: None,
    }
}

/// Servers whose record changed between `before` and `after` reconciling an interrupted apply:
/// the outcome of the step that apply left in flight.
pub fn settled(
    before: &BTreeMap<String, ServerRecord>,
    after: &State,
) -> BTreeMap<String, ServerOutcome> {
    after
        .servers
        .iter()
        .filter(|(name, record)| before.get(*name) != Some(*record))
        .filter_map(|(name, record)| {
            let operation = record.last_operation.as_ref()?;
            let mut outcome = operation_outcome(operation);
            let note = format!(
                "settled from the interrupted apply of plan {}",
                operation.plan_id
            );
            outcome.message = Some(match outcome.message {
                Some(message) => format!("{message} ({note})"),
                None => note,
            });
            Some((name.clone(), outcome))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::events::{FailedServer, NotStartedServer};

    fn run() -> ApplyRun {
        ApplyRun {
            command: "reimage apply".into(),
            started_at: "2026-01-01T00:00:00Z".into(),
            git_commit: Some("abc123".into()),
            apply_id: "a-1".into(),
        }
    }

    fn plan() -> Plan {
        serde_json::from_value(serde_json::json!({
            "format_version": 2, "tool_version": "0", "plan_id": "p-1",
            "created_at": "2026-01-01T00:00:00Z", "expires_at": "2026-01-02T00:00:00Z",
            "manifest_digest": "0".repeat(64),
            "state": {"name": "default", "lineage": "l", "serial": 1}, "providers": {},
            "state_path": "s", "servers": [],
            "summary": {"unchanged": 0, "adopt": 0, "reinstall": 0, "blocked": 0,
                        "update_record": 0, "forget": 0},
            "rollout": {"default": {"canary": 1, "max_parallel": 1, "max_failures": 1,
                                    "max_reinstalls": null}},
            "waves": []
        }))
        .unwrap()
    }

    #[test]
    fn a_finished_apply_records_each_server_and_the_overall_outcome() {
        let summary = ApplySummary {
            reinstalled: vec!["web-1".into()],
            adopted: vec!["web-2".into()],
            failed: vec![FailedServer {
                server: "db-1".into(),
                message: "install failed".into(),
                request_id: None,
            }],
            not_started: vec![NotStartedServer {
                server: "db-2".into(),
                reason: "max_failures reached".into(),
            }],
            interrupted: false,
            ..ApplySummary::default()
        };
        let state = State::new();
        let none = BTreeMap::new();
        let plan = plan();
        let entry = entry(
            &run(),
            Some(&plan),
            Ending::Applied(&summary),
            Some(&state),
            &none,
        );
        assert_eq!(entry.outcome, "failed");
        assert_eq!(entry.plan_id.as_deref(), Some("p-1"));
        assert_eq!(entry.git_commit.as_deref(), Some("abc123"));
        assert_eq!(entry.servers["web-1"].outcome, "reinstalled");
        assert_eq!(entry.servers["web-2"].outcome, "adopted");
        assert_eq!(
            entry.servers["db-1"].message.as_deref(),
            Some("install failed")
        );
        assert_eq!(entry.servers["db-2"].outcome, "not_started");
        assert_eq!(entry.command, "reimage apply");

        let interrupted = ApplySummary {
            interrupted: true,
            ..ApplySummary::default()
        };
        let ended = |ending| super::entry(&run(), Some(&plan), ending, Some(&state), &none);
        assert_eq!(ended(Ending::Applied(&interrupted)).outcome, "interrupted");
        assert_eq!(ended(Ending::NoChanges).outcome, "no_changes");
        assert_eq!(ended(Ending::Cancelled).outcome, "cancelled");
        let errored = ended(Ending::Error("the state write failed".into()));
        assert_eq!(errored.outcome, "error");
        assert_eq!(errored.message.as_deref(), Some("the state write failed"));
        // Before any plan or state: still an entry, saying what is known.
        let early = super::entry(&run(), None, Ending::Error("x".into()), None, &none);
        assert_eq!((early.plan_id, early.serial), (None, 0));
    }

    #[test]
    fn the_git_commit_is_found_in_a_repository_and_not_outside() {
        let dir = tempfile::tempdir().unwrap();
        let git = |args: &[&str]| {
            Command::new("git")
                .arg("-C")
                .arg(dir.path())
                .args(args)
                .env("GIT_AUTHOR_NAME", "t")
                .env("GIT_AUTHOR_EMAIL", "t@example.invalid")
                .env("GIT_COMMITTER_NAME", "t")
                .env("GIT_COMMITTER_EMAIL", "t@example.invalid")
                .output()
        };
        let Ok(init) = git(&["init", "-q"]) else {
            eprintln!("SKIPPED: no git binary on this machine");
            return;
        };
        assert!(init.status.success());
        std::fs::write(dir.path().join("reimage.yaml"), "version: 1\n").unwrap();
        assert!(git(&["add", "."]).unwrap().status.success());
        assert!(git(&["commit", "-qm", "m"]).unwrap().status.success());
        let head = git(&["rev-parse", "HEAD"]).unwrap();
        let head = String::from_utf8_lossy(&head.stdout).trim().to_string();
        assert_eq!(git_commit(dir.path()).as_deref(), Some(head.as_str()));
    }
}
