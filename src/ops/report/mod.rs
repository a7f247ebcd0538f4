//! The rollout report: one apply from the state's history, as data (`report --json`) and as
//! one self-contained HTML page ([`html`]): a timeline of waves, a bar per server (queued,
//! stopping, installing, health gate), failures with the provider's error and request id, and
//! the summary figures.

pub mod html;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::state::StateStore;
use crate::state::history::{HistoryEntry, ServerOutcome, ServerTimings};

/// One apply, laid out in seconds from its start.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub apply_id: Option<String>,
    pub plan_id: Option<String>,
    pub outcome: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    pub who: String,
    pub command: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub git_commit: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ci_job_url: Option<String>,
    pub started_at: String,
    pub finished_at: String,
    pub state_serial: u64,
    pub figures: Figures,
    pub waves: Vec<WaveSpan>,
    pub servers: Vec<ServerRow>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Figures {
    pub servers: usize,
    pub reinstalled: usize,
    pub adopted: usize,
    pub failed: usize,
    pub gate_failed: usize,
    pub unknown: usize,
    pub refused: usize,
    pub skipped: usize,
    pub not_started: usize,
    /// The whole apply, in seconds.
    pub duration_s: f64,
    /// Median and longest time from the reinstall call to the end of the install.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub install_median_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub install_max_s: Option<f64>,
    /// Median time a server waited in its wave before work on it began.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queued_median_s: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct WaveSpan {
    pub index: usize,
    pub canary: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    pub servers: usize,
    pub start_s: f64,
    pub end_s: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ServerRow {
    pub server: String,
    pub outcome: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wave: Option<usize>,
    /// The parts of its work, in order; empty for servers no work was done on.
    pub segments: Vec<Segment>,
}

impl ServerRow {
    /// Whether it ended without its new OS or without passing its gate.
    pub fn is_failure(&self) -> bool {
        matches!(
            self.outcome.as_str(),
            "failed" | "gate_failed" | "unknown" | "refused"
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TimelinePhase {
    Queued,
    Stopping,
    Installing,
    Gate,
}

impl TimelinePhase {
    pub fn label(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Stopping => "stopping",
            Self::Installing => "installing",
            Self::Gate => "health gate",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Segment {
    pub phase: TimelinePhase,
    pub start_s: f64,
    pub end_s: f64,
}

/// Picks the apply: the newest, or the newest whose apply id or plan id is (or starts with,
/// 8 characters at least) `wanted`.
pub fn select(
    entries: &[HistoryEntry],
    wanted: Option<&str>,
    location: &str,
) -> Result<HistoryEntry> {
    let Some(wanted) = wanted else {
        return entries.last().cloned().ok_or_else(|| {
            Error::usage(
                format!("the history of state `{location}` has no apply yet"),
                "run `reimage apply` first; every apply appends one entry",
            )
        });
    };
    let matches = |id: Option<&String>| {
        id.is_some_and(|id| id == wanted || (wanted.len() >= 8 && id.starts_with(wanted)))
    };
    entries
        .iter()
        .rev()
        .find(|entry| matches(entry.apply_id.as_ref()) || matches(entry.plan_id.as_ref()))
        .cloned()
        .ok_or_else(|| {
            let recent: Vec<String> = entries
                .iter()
                .rev()
                .take(5)
                .map(|entry| {
                    format!(
                        "{} (plan {}, {}, {})",
                        entry.apply_id.as_deref().unwrap_or("no apply id"),
                        entry.plan_id.as_deref().unwrap_or("none"),
                        entry.outcome,
                        entry.finished_at
                    )
                })
                .collect();
            Error::usage(
                format!("no apply `{wanted}` in the history of state `{location}`"),
                if recent.is_empty() {
                    "the history is empty: run `reimage apply` first".to_string()
                } else {
                    format!(
                        "give an apply id or a plan id (8 characters or more); the newest: {}",
                        recent.join("; ")
                    )
                },
            )
        })
}

/// Reads the history of `store` and lays out the chosen apply.
pub fn load(store: &dyn StateStore, wanted: Option<&str>) -> Result<Report> {
    let entries = store
        .history()
        .list(None)
        .map_err(|error| Error::State(error.into()))?;
    Ok(build(&select(&entries, wanted, &store.location())?))
}

fn millis(text: &str) -> Option<i64> {
    text.parse::<jiff::Timestamp>()
        .ok()
        .map(|time| time.as_millisecond())
}

/// Lays out one history entry (pure).
pub fn build(entry: &HistoryEntry) -> Report {
    let origin = millis(&entry.started_at).unwrap_or(0);
    let at = |text: Option<&String>| {
        text.and_then(|text| millis(text))
            .map(|ms| (ms - origin).max(0) as f64 / 1000.0)
    };
    let duration_s = at(Some(&entry.finished_at)).unwrap_or(0.0);
    let mut figures = Figures {
        servers: entry.servers.len(),
        duration_s,
        ..Figures::default()
    };
    let mut installs = Vec::new();
    let mut queues = Vec::new();
    let mut servers: Vec<ServerRow> = entry
        .servers
        .iter()
        .map(|(name, outcome)| {
            count(&mut figures, outcome);
            let segments = outcome
                .timings
                .as_ref()
                .map(|timings| segments(timings, &at))
                .unwrap_or_default();
            for segment in &segments {
                let length = segment.end_s - segment.start_s;
                match segment.phase {
                    TimelinePhase::Installing => installs.push(length),
                    TimelinePhase::Queued => queues.push(length),
                    _ => {}
                }
            }
            ServerRow {
                server: name.clone(),
                outcome: outcome.outcome.clone(),
                message: outcome.message.clone(),
                request_id: outcome.request_id.clone(),
                wave: outcome.timings.as_ref().and_then(|timings| timings.wave),
                segments,
            }
        })
        .collect();
    // Servers in the order they began, those without work last.
    servers.sort_by(|a, b| {
        let start = |row: &ServerRow| row.segments.first().map_or(f64::MAX, |s| s.start_s);
        start(a)
            .total_cmp(&start(b))
            .then_with(|| a.server.cmp(&b.server))
    });
    figures.install_median_s = median(&mut installs);
    figures.install_max_s = installs.iter().copied().reduce(f64::max);
    figures.queued_median_s = median(&mut queues);
    let waves = entry
        .waves
        .iter()
        .map(|wave| WaveSpan {
            index: wave.index,
            canary: wave.canary,
            group: wave.group.clone(),
            servers: wave.servers.len(),
            start_s: at(Some(&wave.started_at)).unwrap_or(0.0),
            end_s: at(Some(&wave.finished_at)).unwrap_or(duration_s),
        })
        .collect();
    Report {
        apply_id: entry.apply_id.clone(),
        plan_id: entry.plan_id.clone(),
        outcome: entry.outcome.clone(),
        message: entry.message.clone(),
        who: format!("{}@{} (pid {})", entry.user, entry.host, entry.pid),
        command: entry.command.clone(),
        git_commit: entry.git_commit.clone(),
        ci_job_url: entry.ci_job_url.clone(),
        started_at: entry.started_at.clone(),
        finished_at: entry.finished_at.clone(),
        state_serial: entry.serial,
        figures,
        waves,
        servers,
    }
}

fn count(figures: &mut Figures, outcome: &ServerOutcome) {
    match outcome.outcome.as_str() {
        "reinstalled" => figures.reinstalled += 1,
        "adopted" => figures.adopted += 1,
        "failed" => figures.failed += 1,
        "gate_failed" => figures.gate_failed += 1,
        "unknown" => figures.unknown += 1,
        "refused" => figures.refused += 1,
        "skipped" => figures.skipped += 1,
        "not_started" => figures.not_started += 1,
        _ => {}
    }
}

fn segments(timings: &ServerTimings, at: &dyn Fn(Option<&String>) -> Option<f64>) -> Vec<Segment> {
    let work_began = timings
        .stop_started_at
        .as_ref()
        .or(timings.install_started_at.as_ref())
        .or(timings.gate_started_at.as_ref())
        .or(timings.finished_at.as_ref());
    let end = at(timings.finished_at.as_ref());
    let mut found = Vec::new();
    let mut push = |phase, start: Option<f64>, stop: Option<f64>| {
        if let Some(start) = start {
            let stop = stop.or(end).unwrap_or(start).max(start);
            found.push(Segment {
                phase,
                start_s: start,
                end_s: stop,
            });
        }
    };
    push(
        TimelinePhase::Queued,
        at(timings.queued_at.as_ref()),
        at(work_began),
    );
    push(
        TimelinePhase::Stopping,
        at(timings.stop_started_at.as_ref()),
        at(timings.stop_ended_at.as_ref()),
    );
    push(
        TimelinePhase::Installing,
        at(timings.install_started_at.as_ref()),
        at(timings.install_ended_at.as_ref()),
    );
    push(
        TimelinePhase::Gate,
        at(timings.gate_started_at.as_ref()),
        at(timings.gate_ended_at.as_ref()),
    );
    found
}

fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    Some(values[values.len() / 2])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::history::{WaveRecord, sample};

    fn entry() -> HistoryEntry {
        let mut entry = sample("p-1");
        entry.apply_id = Some("0190aaaa-bbbb".into());
        entry.started_at = "2026-01-01T00:00:00Z".into();
        entry.finished_at = "2026-01-01T00:01:40Z".into();
        let web = entry.servers.get_mut("web-1").unwrap();
        web.timings = Some(ServerTimings {
            wave: Some(1),
            queued_at: Some("2026-01-01T00:00:01Z".into()),
            started_at: Some("2026-01-01T00:00:01Z".into()),
            install_started_at: Some("2026-01-01T00:00:02Z".into()),
            install_ended_at: Some("2026-01-01T00:00:32Z".into()),
            gate_started_at: Some("2026-01-01T00:00:32Z".into()),
            gate_ended_at: Some("2026-01-01T00:00:40Z".into()),
            finished_at: Some("2026-01-01T00:00:40Z".into()),
            ..ServerTimings::default()
        });
        entry.servers.insert(
            "db-1".into(),
            ServerOutcome {
                outcome: "failed".into(),
                message: Some("INSTALL_FAILED".into()),
                request_id: Some("req-9".into()),
                timings: None,
            },
        );
        entry.waves.push(WaveRecord {
            index: 1,
            canary: true,
            group: None,
            servers: vec!["web-1".into()],
            started_at: "2026-01-01T00:00:01Z".into(),
            finished_at: "2026-01-01T00:00:40Z".into(),
        });
        entry
    }

    #[test]
    fn an_entry_is_laid_out_in_seconds_from_the_start() {
        let report = build(&entry());
        assert_eq!(report.figures.duration_s, 100.0);
        assert_eq!((report.figures.reinstalled, report.figures.failed), (1, 1));
        assert_eq!(report.figures.install_median_s, Some(30.0));
        let web = &report.servers[0];
        assert_eq!(web.server, "web-1");
        let phases: Vec<(TimelinePhase, f64, f64)> = web
            .segments
            .iter()
            .map(|s| (s.phase, s.start_s, s.end_s))
            .collect();
        assert_eq!(
            phases,
            [
                (TimelinePhase::Queued, 1.0, 2.0),
                (TimelinePhase::Installing, 2.0, 32.0),
                (TimelinePhase::Gate, 32.0, 40.0)
            ]
        );
        let db = &report.servers[1];
        assert!(db.is_failure() && db.segments.is_empty());
        assert_eq!(report.waves[0].end_s, 40.0);
    }

    #[test]
    fn an_apply_is_chosen_by_apply_id_plan_id_or_a_long_prefix() {
        let mut older = entry();
        older.apply_id = Some("0190zzzz".into());
        older.plan_id = Some("plan-old".into());
        let entries = vec![older, entry()];
        assert_eq!(
            select(&entries, None, "s").unwrap().apply_id.as_deref(),
            Some("0190aaaa-bbbb")
        );
        assert_eq!(
            select(&entries, Some("plan-old"), "s")
                .unwrap()
                .apply_id
                .as_deref(),
            Some("0190zzzz")
        );
        assert!(select(&entries, Some("0190aaaa"), "s").is_ok());
        let error = select(&entries, Some("0190"), "s").unwrap_err().to_string();
        assert!(error.contains("no apply `0190`"), "{error}");
        assert!(select(&[], None, "s").is_err());
    }
}
