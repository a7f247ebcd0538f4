//! `reimage apply [PLANFILE]`: the arguments become an [`ApplyRequest`] for
//! [`crate::ops::apply::run`]; the progress display and the closing summary are chosen here.

use std::io::IsTerminal;
use std::process::ExitCode;

use super::ApplyArgs;
use crate::apply::progress::{JsonReporter, LineReporter, TerminalReporter};
use crate::apply::{ApplyReport, Reporter};
use crate::error::Result;
use crate::manifest::SecretCheck;
use crate::ops::apply::{ApplyDisplay, ApplyEnding, ApplyRequest};
use crate::ops::session::ManifestSource;
use crate::output::Printer;
use crate::state::Outcome;

/// Exit code of an apply stopped with Ctrl-C (128 + SIGINT), as shells expect.
const EXIT_INTERRUPTED: u8 = 130;

pub async fn run(args: ApplyArgs, printer: &Printer) -> Result<ExitCode> {
    // With a saved plan the manifest is optional (only `-f` names one); without, it is needed.
    let manifest = if args.plan_file.is_some() && args.manifest.files.is_empty() {
        None
    } else {
        Some(ManifestSource {
            paths: args.manifest.paths()?,
            secrets: SecretCheck::Required,
            provider_setup: true,
        })
    };
    let request = ApplyRequest {
        plan_file: args.plan_file.clone(),
        manifest,
        state: args.state.clone(),
        lock_timeout: args.lock.lock_timeout,
        targets: args.target.clone(),
        replace: args.replace.clone(),
        rollout: args.rollout.spec(),
        rollout_given: !args.rollout.is_empty(),
        resume: args.resume,
        require_signed: args.require_signed,
        require_commit: args.require_commit.clone(),
        auto_approve: args.auto_approve,
        ask: args.input.input,
        json: args.json,
    };
    let display = Display {
        json: args.json,
        printer,
    };
    Ok(
        match crate::ops::apply::run(&request, &display, printer).await? {
            ApplyEnding::NoChanges | ApplyEnding::Succeeded => ExitCode::SUCCESS,
            ApplyEnding::Cancelled | ApplyEnding::Failed => ExitCode::FAILURE,
            ApplyEnding::Interrupted => ExitCode::from(EXIT_INTERRUPTED),
        },
    )
}

/// JSON events, bars on a terminal, or lines; the summary unless `--json`.
struct Display<'a> {
    json: bool,
    printer: &'a Printer,
}

impl ApplyDisplay for Display<'_> {
    fn reporter(&self, total: Option<u64>) -> Box<dyn Reporter> {
        let printer = self.printer;
        match total {
            _ if self.json => Box::new(JsonReporter::new(printer.clone())),
            Some(total)
                if std::io::stderr().is_terminal()
                    && std::env::var_os("REIMAGE_NO_PROGRESS").is_none() =>
            {
                Box::new(TerminalReporter::new(total, printer.stderr_has_color()))
            }
            _ => Box::new(LineReporter::new(printer.clone())),
        }
    }

    fn summary(&self, report: &ApplyReport) {
        if !self.json {
            print_summary(report, self.printer);
        }
    }
}

fn print_summary(report: &ApplyReport, printer: &Printer) {
    let summary = &report.summary;
    let headline = if summary.interrupted {
        "Apply interrupted."
    } else if summary.succeeded() {
        "Apply complete!"
    } else {
        "Apply finished with errors."
    };
    let mut counts = format!(
        "{} reinstalled, {} adopted",
        summary.reinstalled.len(),
        summary.adopted.len(),
    );
    if !report.records_updated.is_empty() {
        counts.push_str(&format!(
            ", {} record(s) updated",
            report.records_updated.len()
        ));
    }
    if !report.forgotten.is_empty() {
        counts.push_str(&format!(", {} forgotten", report.forgotten.len()));
    }
    counts.push_str(&format!(", {} failed", summary.failed.len()));
    for (count, what) in [
        (summary.gate_failed.len(), "failed their health gate"),
        (summary.unknown.len(), "unknown"),
        (summary.refused.len(), "refused"),
        (summary.skipped.len(), "skipped (moved since the plan)"),
    ] {
        if count > 0 {
            counts.push_str(&format!(", {count} {what}"));
        }
    }
    counts.push_str(&format!(", {} not started", summary.not_started.len()));
    if !summary.earlier.is_empty() {
        let done = summary
            .earlier
            .iter()
            .filter(|earlier| earlier.outcome == Outcome::Succeeded)
            .count();
        counts.push_str(&format!(
            "; earlier runs of this plan: {done} done, {} not",
            summary.earlier.len() - done
        ));
    }
    printer.out(&format!("\n{headline} {counts}.\n"));
    let lines = [
        ("failed", &summary.failed),
        ("health gate failed", &summary.gate_failed),
        ("outcome unknown", &summary.unknown),
        ("refused (nothing happened)", &summary.refused),
    ];
    for (label, servers) in lines {
        for failed in servers {
            let request = match &failed.request_id {
                Some(id) if !failed.message.contains(id.as_str()) => {
                    format!(" (request id {id})")
                }
                _ => String::new(),
            };
            printer.status(&format!(
                "  {label}: {}: {}{request}",
                failed.server, failed.message
            ));
        }
    }
    for skipped in &summary.skipped {
        printer.status(&format!(
            "  skipped: {}: {}",
            skipped.server, skipped.reason
        ));
    }
    for skipped in &summary.not_started {
        printer.status(&format!(
            "  not started: {}: {}",
            skipped.server, skipped.reason
        ));
    }
    for earlier in summary
        .earlier
        .iter()
        .filter(|earlier| earlier.outcome != Outcome::Succeeded)
    {
        printer.status(&format!(
            "  {} in an earlier run of this plan: {}: {}",
            match earlier.outcome {
                Outcome::Failed => "failed",
                Outcome::Unknown => "outcome unknown",
                Outcome::GateFailed => "health gate failed",
                _ => "refused",
            },
            earlier.server,
            earlier.message.as_deref().unwrap_or("no details recorded")
        ));
    }
    if !summary.skipped.is_empty() || !summary.refused.is_empty() {
        printer.status("  Run `reimage plan` again: it shows what is left to do.");
    }
}
