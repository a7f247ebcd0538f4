//! The history entry of an apply: written when the apply command finishes, whatever the
//! outcome (the apply engine itself knows nothing of it).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::apply::ApplySummary;
use crate::error::Error;
use crate::plan::Plan;
use crate::state::history::{HistoryEntry, ServerOutcome};
use crate::state::{OperationKind, Outcome, State};

/// What is known before the apply starts.
#[derive(Debug, Clone)]
pub struct ApplyRun {
    pub command: String,
    /// RFC 3339.
    pub started_at: String,
    pub git_commit: Option<String>,
}

impl ApplyRun {
    /// Starts the record of an apply whose manifest (or plan) lives in `folder`.
    pub fn start(command: &str, folder: &Path) -> ApplyRun {
        ApplyRun {
            command: command.to_string(),
            started_at: jiff::Timestamp::now().to_string(),
            git_commit: git_commit(folder),
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

/// The entry for an apply of `plan` that ended with `result`; `state` is the state as it
/// ended (what was recorded for the plan's servers, even when the apply stopped on an error).
pub fn entry(
    run: &ApplyRun,
    plan: &Plan,
    result: &Result<ApplySummary, Error>,
    state: &State,
) -> HistoryEntry {
    let who = crate::state::lock::holder(&run.command);
    let outcome = |text: &str, message: Option<String>| ServerOutcome {
        outcome: text.to_string(),
        message,
    };
    let mut servers = BTreeMap::new();
    let (overall, message) = match result {
        Ok(summary) => {
            for name in &summary.reinstalled {
                servers.insert(name.clone(), outcome("reinstalled", None));
            }
            for name in &summary.adopted {
                servers.insert(name.clone(), outcome("adopted", None));
            }
            for failed in &summary.failed {
                servers.insert(
                    failed.server.clone(),
                    outcome("failed", Some(failed.message.clone())),
                );
            }
            for skipped in &summary.not_started {
                servers.insert(
                    skipped.server.clone(),
                    outcome("not_started", Some(skipped.reason.clone())),
                );
            }
            let overall = if summary.interrupted {
                "interrupted"
            } else if summary.succeeded() {
                "succeeded"
            } else {
                "failed"
            };
            (overall, None)
        }
        Err(error) => {
            // What the state recorded for this plan is what happened; the rest is unknown.
            for server in plan
                .servers
                .iter()
                .filter(|server| server.action.is_change())
            {
                let recorded = state
                    .servers
                    .get(&server.name)
                    .and_then(|record| record.last_operation.as_ref())
                    .filter(|operation| operation.plan_id == plan.plan_id);
                let result = match recorded {
                    Some(operation) => match (operation.kind, operation.outcome) {
                        (OperationKind::Adopt, _) => outcome("adopted", None),
                        (OperationKind::Reinstall, Outcome::Succeeded) => {
                            outcome("reinstalled", None)
                        }
                        (OperationKind::Reinstall, Outcome::Failed) => {
                            outcome("failed", operation.message.clone())
                        }
                    },
                    None => outcome("unknown", None),
                };
                servers.insert(server.name.clone(), result);
            }
            ("error", Some(error.to_string()))
        }
    };
    HistoryEntry {
        plan_id: plan.plan_id.clone(),
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
        serial: state.serial,
        servers,
    }
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
        }
    }

    fn plan() -> Plan {
        serde_json::from_value(serde_json::json!({
            "format_version": 1, "tool_version": "0", "plan_id": "p-1",
            "created_at": "2026-01-01T00:00:00Z", "manifest_digest": "0".repeat(64),
            "state": {"lineage": "l", "serial": 1}, "providers": {}, "state_path": "s",
            "servers": [], "summary": {"unchanged": 0, "adopt": 0, "reinstall": 0, "blocked": 0},
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
        };
        let state = State::new();
        let entry = entry(&run(), &plan(), &Ok(summary), &state);
        assert_eq!(entry.outcome, "failed");
        assert_eq!(entry.plan_id, "p-1");
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
        assert_eq!(
            super::entry(&run(), &plan(), &Ok(interrupted), &state).outcome,
            "interrupted"
        );
        let error = Error::usage("the state write failed", "x");
        let errored = super::entry(&run(), &plan(), &Err(error), &state);
        assert_eq!(errored.outcome, "error");
        assert_eq!(errored.message.as_deref(), Some("the state write failed"));
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
