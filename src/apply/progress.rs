//! Renders apply events: bars on a terminal, timestamped lines in CI, JSON lines for machines.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::events::{Event, Reporter};
use crate::output::Printer;

/// Newline-delimited JSON events on stdout (`schemas/apply-events.schema.json`).
pub struct JsonReporter {
    printer: Printer,
}

impl JsonReporter {
    pub fn new(printer: Printer) -> Self {
        JsonReporter { printer }
    }
}

impl Reporter for JsonReporter {
    fn report(&self, event: Event) {
        let mut value = match serde_json::to_value(&event) {
            Ok(value) => value,
            Err(_) => return,
        };
        if let Some(object) = value.as_object_mut() {
            object.insert(
                "at".to_string(),
                serde_json::Value::String(jiff::Timestamp::now().to_string()),
            );
        }
        self.printer.out(&format!("{value}\n"));
    }
}

/// One timestamped line per state change on stderr (CI logs).
pub struct LineReporter {
    printer: Printer,
}

impl LineReporter {
    pub fn new(printer: Printer) -> Self {
        LineReporter { printer }
    }
}

fn clock() -> String {
    jiff::Zoned::now().strftime("%H:%M:%S").to_string()
}

/// A sentence for an event, or `None` for events with nothing to say in a log. Names and
/// provider messages can hold anything: control and bidirectional characters are escaped.
pub fn describe(event: &Event) -> Option<String> {
    sentence(event).map(|line| crate::output::escape_control(&line).into_owned())
}

fn sentence(event: &Event) -> Option<String> {
    Some(match event {
        Event::Plan {
            reinstall,
            adopt,
            update_record,
            forget,
            waves,
            ..
        } => {
            let mut line =
                format!("applying: {reinstall} to reinstall in {waves} wave(s), {adopt} to adopt");
            if *update_record > 0 {
                line.push_str(&format!(", {update_record} record(s) to update"));
            }
            if *forget > 0 {
                line.push_str(&format!(", {forget} to forget"));
            }
            line
        }
        Event::Reconciled {
            server,
            plan_id,
            step,
            outcome,
            message,
        } => format!(
            "{server}: {step} of interrupted plan {plan_id}: {outcome}{}",
            message.as_ref().map(|m| format!(" ({m})")).unwrap_or_default()
        ),
        Event::WaveStarted {
            wave,
            canary,
            group,
            servers,
            max_parallel,
        } => format!(
            "wave {wave}{}{}: {servers} server(s), at most {max_parallel} at a time",
            if *canary { " (canary)" } else { "" },
            group.as_ref().map(|g| format!(" [group {g}]")).unwrap_or_default()
        ),
        Event::Adopted { server } => format!("{server}: adopted (recorded in state)"),
        Event::RecordUpdated { server, protected } => format!(
            "{server}: record updated (protect: {protected}); the machine was not touched"
        ),
        Event::Forgotten { server } => {
            format!("{server}: forgotten (removed from the state); the machine was not touched")
        }
        Event::StopStarted { server } => format!("{server}: stopping before the reinstall"),
        Event::Stopped { server } => format!("{server}: stopped"),
        Event::ReinstallStarted {
            server,
            request_id,
            job_id,
        } => {
            let mut ids = Vec::new();
            if let Some(id) = job_id {
                ids.push(format!("job {id}"));
            }
            if let Some(id) = request_id {
                ids.push(format!("request id {id}"));
            }
            if ids.is_empty() {
                format!("{server}: reinstall started")
            } else {
                format!("{server}: reinstall started ({})", ids.join(", "))
            }
        }
        Event::Status {
            server,
            detail,
            elapsed_s,
        } => format!("{server}: {detail} [{elapsed_s}s]"),
        Event::Waiting {
            provider,
            family,
            cause,
            wait_ms,
            slowed_to_per_minute,
        } => format!(
            "provider {provider}: {family} calls wait {:.1}s ({}{})",
            *wait_ms as f64 / 1000.0,
            match cause.as_str() {
                "rate_limit" => "rate limit",
                "throttled" => "throttled by the provider",
                _ => "retrying after an error",
            },
            slowed_to_per_minute
                .map(|rate| format!("; slowing down to {rate:.0} calls a minute"))
                .unwrap_or_default()
        ),
        Event::GateStarted {
            server,
            check,
            attempts,
            source,
        } => format!(
            "{server}: installed; health gate: {check} (up to {attempts} attempt(s), from {source})"
        ),
        Event::GateAttempt {
            server,
            attempt,
            attempts,
            passed,
            detail,
        } => format!(
            "{server}: health gate attempt {attempt}/{attempts} {}: {detail}",
            if *passed { "passed" } else { "failed" }
        ),
        Event::Done {
            server,
            queued_s,
            installing_s,
            note,
            ..
        } => format!(
            "{server}: reinstalled: installing {installing_s}s{}{}",
            if *queued_s > 0 {
                format!(", after {queued_s}s queued (rate limits, re-read, calls)")
            } else {
                String::new()
            },
            note.as_ref().map(|n| format!(" — {n}")).unwrap_or_default()
        ),
        Event::Failed {
            server,
            outcome,
            message,
            request_id,
        } => format!(
            "{server}: {}: {message}{}",
            match outcome.as_str() {
                "unknown" => "OUTCOME UNKNOWN",
                "refused" => "REFUSED (nothing happened)",
                "not_sent" => "NOT DONE (nothing happened)",
                "gate_failed" => "HEALTH GATE FAILED",
                _ => "FAILED",
            },
            match request_id {
                Some(id) if !message.contains(id.as_str()) => format!(" (request id {id})"),
                _ => String::new(),
            }
        ),
        Event::NotStarted { server, reason } => format!("{server}: not started: {reason}"),
        Event::Skipped { server, reason } => format!("{server}: {reason}"),
        Event::Interrupted { abandon: false } => {
            "interrupted: no new reinstall starts; waiting for those in flight (Ctrl-C again to stop watching)"
                .to_string()
        }
        Event::Interrupted { abandon: true } => {
            "interrupted again: no longer watching; the journal keeps what is in flight".to_string()
        }
        Event::Heartbeat {
            in_flight,
            done,
            failed,
            pending,
        } => format!(
            "still working: {in_flight} in flight, {done} done, {failed} failed, {pending} waiting to start"
        ),
        Event::Summary { .. } => return None,
    })
}

impl Reporter for LineReporter {
    fn report(&self, event: Event) {
        if let Some(line) = describe(&event) {
            self.printer.status(&format!("[{}] {line}", clock()));
        }
    }
}

/// Bars on a terminal: one overall bar and one line per server in flight.
pub struct TerminalReporter {
    bars: MultiProgress,
    overall: ProgressBar,
    servers: Mutex<HashMap<String, ProgressBar>>,
    provider_wait: Mutex<Option<String>>,
}

impl TerminalReporter {
    /// `color`: whether the bar may be coloured (off with `--no-color` or `NO_COLOR`).
    pub fn new(total: u64, color: bool) -> Self {
        let bars = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let overall = bars.add(ProgressBar::new(total));
        let template = if color {
            "{bar:30.cyan/blue} {pos}/{len} reinstalls  {msg}"
        } else {
            "{bar:30} {pos}/{len} reinstalls  {msg}"
        };
        overall.set_style(
            ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        overall.enable_steady_tick(Duration::from_millis(250));
        TerminalReporter {
            bars,
            overall,
            servers: Mutex::new(HashMap::new()),
            provider_wait: Mutex::new(None),
        }
    }

    fn server_bar(&self, server: &str) -> Option<ProgressBar> {
        let mut servers = self.servers.lock().ok()?;
        Some(
            servers
                .entry(server.to_string())
                .or_insert_with(|| {
                    let bar = self.bars.add(ProgressBar::new_spinner());
                    bar.set_style(
                        ProgressStyle::with_template("  {spinner} {prefix:20} {elapsed:>4} {msg}")
                            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                    );
                    bar.set_prefix(server.to_string());
                    bar.enable_steady_tick(Duration::from_millis(200));
                    bar
                })
                .clone(),
        )
    }

    fn finish_server(&self, server: &str) {
        if let Ok(mut servers) = self.servers.lock()
            && let Some(bar) = servers.remove(server)
        {
            bar.finish_and_clear();
            self.bars.remove(&bar);
        }
    }
}

impl Reporter for TerminalReporter {
    fn report(&self, event: Event) {
        match &event {
            Event::StopStarted { server }
            | Event::Stopped { server }
            | Event::ReinstallStarted { server, .. }
            | Event::GateStarted { server, .. }
            | Event::GateAttempt { server, .. } => {
                if let Some(bar) = self.server_bar(server)
                    && let Some(line) = describe(&event)
                {
                    bar.set_message(line.trim_start_matches(&format!("{server}: ")).to_string());
                }
            }
            Event::Status { server, detail, .. } => {
                if let Some(bar) = self.server_bar(server) {
                    bar.set_message(detail.clone());
                }
            }
            Event::Done { server, .. }
            | Event::Failed { server, .. }
            | Event::Skipped { server, .. } => {
                self.finish_server(server);
                self.overall.inc(1);
                if let Some(line) = describe(&event) {
                    let _ = self.bars.println(line);
                }
            }
            Event::Waiting { .. } => {
                if let (Some(line), Ok(mut wait)) = (describe(&event), self.provider_wait.lock()) {
                    self.overall.set_message(line.clone());
                    *wait = Some(line);
                }
            }
            Event::Heartbeat { .. } => {}
            Event::Summary { .. } => {
                self.overall.finish_and_clear();
            }
            _ => {
                if let Some(line) = describe(&event) {
                    let _ = self.bars.println(line);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_in_names_and_messages_are_escaped() {
        let line = describe(&Event::Failed {
            server: "web\u{1b}[2J".into(),
            outcome: "failed".into(),
            message: "bad\u{202e}txt".into(),
            request_id: None,
        })
        .unwrap();
        assert!(
            !line.contains('\u{1b}') && !line.contains('\u{202e}'),
            "{line:?}"
        );
        assert!(line.contains("web"), "{line}");
    }
}
