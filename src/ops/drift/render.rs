//! `plan --drift` output: text for a terminal or a CI log, Markdown for an issue or a chat
//! message, JSON (`schemas/drift.schema.json`) for machines. Names and values from the state
//! and the providers are escaped (control and bidi characters).

use std::fmt::Write;

use super::DriftReport;
use crate::output::escape_control;

fn e(text: &str) -> String {
    escape_control(text).into_owned()
}

pub fn json(report: &DriftReport) -> String {
    serde_json::to_string_pretty(report).unwrap_or_else(|_| "{}".to_string())
}

fn headline(report: &DriftReport) -> String {
    if report.has_drift() {
        let servers: std::collections::BTreeSet<&str> =
            report.drift.iter().map(|d| d.server.as_str()).collect();
        format!(
            "Drift: {} server(s) differ from what reimage recorded ({} finding(s)).",
            servers.len(),
            report.drift.len()
        )
    } else {
        "No drift: every recorded server is as reimage left it.".to_string()
    }
}

fn checked_line(report: &DriftReport) -> String {
    let mut line = format!(
        "Checked {} recorded server(s) at {} (state serial {}).",
        report.checked, report.checked_at, report.state_serial
    );
    if !report.in_flight.is_empty() {
        line.push_str(&format!(
            " Not judged, an apply step is in flight: {}.",
            e(&report.in_flight.join(", "))
        ));
    }
    line
}

pub fn text(report: &DriftReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}", headline(report));
    for drift in &report.drift {
        let _ = writeln!(
            out,
            "  - {} ({} `{}`): {}",
            e(&drift.server),
            e(&drift.provider),
            e(&drift.cloud_id),
            e(&drift.message)
        );
    }
    for unchecked in &report.unchecked {
        let _ = writeln!(
            out,
            "  ? {}: not checked: {}",
            e(&unchecked.server),
            e(&unchecked.reason)
        );
    }
    let _ = writeln!(out, "{}", checked_line(report));
    if report.manifest_changes.is_empty() {
        let _ = writeln!(out, "\nManifest changes: none.");
    } else {
        let _ = writeln!(
            out,
            "\nManifest changes (not drift; `reimage plan` shows them in full): {}",
            report.manifest_changes.len()
        );
        for change in &report.manifest_changes {
            let _ = writeln!(
                out,
                "  - {}: {} ({})",
                e(&change.server),
                change.action,
                e(&change.reasons.join("; "))
            );
        }
    }
    out
}

pub fn markdown(report: &DriftReport) -> String {
    let cell = |text: &str| e(&text.replace('|', "\\|").replace('\n', " "));
    let mut out = String::new();
    let _ = writeln!(out, "### reimage drift check\n");
    let _ = writeln!(out, "**{}**\n", headline(report));
    if report.has_drift() {
        let _ = writeln!(
            out,
            "| server | provider | id | drift | recorded | observed | details |"
        );
        let _ = writeln!(out, "| --- | --- | --- | --- | --- | --- | --- |");
        for drift in &report.drift {
            let kind = serde_json::to_value(drift.kind)
                .ok()
                .and_then(|value| value.as_str().map(str::to_string))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "| `{}` | {} | `{}` | **{}** | {} | {} | {} |",
                cell(&drift.server),
                cell(&drift.provider),
                cell(&drift.cloud_id),
                kind,
                cell(drift.recorded.as_deref().unwrap_or("")),
                cell(drift.observed.as_deref().unwrap_or("")),
                cell(&drift.message)
            );
        }
        let _ = writeln!(out);
    }
    for unchecked in &report.unchecked {
        let _ = writeln!(
            out,
            "- `{}`: not checked: {}",
            cell(&unchecked.server),
            cell(&unchecked.reason)
        );
    }
    let _ = writeln!(out, "{}\n", checked_line(report));
    if report.manifest_changes.is_empty() {
        let _ = writeln!(out, "Manifest changes: none.");
    } else {
        let _ = writeln!(
            out,
            "<details><summary>Manifest changes (not drift): {}</summary>\n",
            report.manifest_changes.len()
        );
        for change in &report.manifest_changes {
            let _ = writeln!(
                out,
                "- `{}`: **{}** — {}",
                cell(&change.server),
                change.action,
                cell(&change.reasons.join("; "))
            );
        }
        let _ = writeln!(out, "\n</details>");
    }
    out
}
