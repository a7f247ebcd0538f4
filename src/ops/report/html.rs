//! The report as one self-contained HTML page: inline CSS and SVG, no external resource (the
//! page's Content-Security-Policy forbids any fetch). A few lines of inline script measure the
//! drawn timeline into `data-drawn` on `<body>`, so that a test (or a person) can see that it
//! was drawn; the page shows everything without it.

use std::fmt::Write;

use super::{Report, ServerRow, TimelinePhase};

/// Left column (names) and chart width of the timeline, in SVG units.
const LABEL_WIDTH: f64 = 180.0;
const CHART_WIDTH: f64 = 820.0;
const ROW_HEIGHT: f64 = 22.0;
const BAR_HEIGHT: f64 = 14.0;
const AXIS_HEIGHT: f64 = 48.0;

/// Text safe in HTML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

fn seconds(value: f64) -> String {
    if value >= 120.0 {
        format!(
            "{}m{:02}s",
            (value / 60.0).floor(),
            (value % 60.0).round() as u64 % 60
        )
    } else {
        format!("{value:.1}s")
    }
}

const STYLE: &str = r#"
:root { --queued: #b8c0cc; --stopping: #e0a030; --installing: #3a7bd5; --gate: #2e9e5b; --fail: #d32f2f; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px; color: #1d2330; background: #fff; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 17px; margin: 28px 0 10px; }
.meta { color: #4a5263; margin: 0; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-weight: 600; color: #fff; background: #2e9e5b; }
.badge.bad { background: var(--fail); }
.figures { display: flex; flex-wrap: wrap; gap: 10px; margin-top: 16px; }
.figure { border: 1px solid #dde2ea; border-radius: 6px; padding: 8px 14px; min-width: 110px; }
.figure b { display: block; font-size: 20px; }
.figure.bad b { color: var(--fail); }
svg { display: block; max-width: 100%; height: auto; }
svg text { font: 11px system-ui, sans-serif; fill: #1d2330; }
svg text.failed { fill: var(--fail); font-weight: 600; }
.wave { fill: #f2f5f9; }
.wave.odd { fill: #e8edf4; }
.wave-label { fill: #4a5263; font-weight: 600; }
.tick { stroke: #c9d0da; stroke-width: 1; }
.bar.queued { fill: var(--queued); }
.bar.stopping { fill: var(--stopping); }
.bar.installing { fill: var(--installing); }
.bar.gate { fill: var(--gate); }
.bar.failed { fill: var(--fail); }
.legend span { display: inline-block; margin-right: 14px; }
.legend i { display: inline-block; width: 12px; height: 12px; border-radius: 2px; margin-right: 4px; vertical-align: -1px; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid #e4e8ee; vertical-align: top; }
th { background: #f6f8fb; }
tr.failure td { color: var(--fail); }
code { font: 12px ui-monospace, monospace; }
"#;

const MEASURE: &str = r#"
(function () {
  var svg = document.getElementById('timeline');
  var bars = svg.querySelectorAll('.bar');
  var sized = 0;
  for (var i = 0; i < bars.length; i++) {
    var box = bars[i].getBoundingClientRect();
    if (box.width > 0 && box.height > 0) { sized++; }
  }
  var whole = svg.getBoundingClientRect();
  document.body.setAttribute('data-drawn', 'bars=' + bars.length + ';sized=' + sized +
    ';waves=' + svg.querySelectorAll('.wave').length + ';timeline=' +
    Math.round(whole.width) + 'x' + Math.round(whole.height));
})();
"#;

pub fn render(report: &Report) -> String {
    let mut out = String::new();
    let title = format!(
        "reimage apply {} ({})",
        report.apply_id.as_deref().unwrap_or("without id"),
        report.outcome
    );
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; \
         style-src 'unsafe-inline'; script-src 'unsafe-inline'\">\n<title>{}</title>\n\
         <style>{STYLE}</style>\n</head>\n<body>\n",
        escape(&title)
    );
    header(&mut out, report);
    figures(&mut out, report);
    let _ = writeln!(out, "<h2>Timeline</h2>");
    timeline(&mut out, report);
    let _ = writeln!(
        out,
        "<p class=\"legend\"><span><i style=\"background:var(--queued)\"></i>queued</span>\
         <span><i style=\"background:var(--stopping)\"></i>stopping</span>\
         <span><i style=\"background:var(--installing)\"></i>installing</span>\
         <span><i style=\"background:var(--gate)\"></i>health gate</span>\
         <span><i style=\"background:var(--fail)\"></i>where it failed</span></p>"
    );
    failures(&mut out, report);
    servers(&mut out, report);
    let _ = write!(out, "<script>{MEASURE}</script>\n</body>\n</html>\n");
    out
}

fn header(out: &mut String, report: &Report) {
    let bad = report.outcome != "succeeded" && report.outcome != "no_changes";
    let _ = writeln!(
        out,
        "<h1>reimage rollout report</h1>\n<p class=\"meta\">Apply <code>{}</code> of plan \
         <code>{}</code> <span class=\"badge{}\" id=\"outcome\">{}</span></p>\n\
         <p class=\"meta\">{} · <code>{}</code> · {} → {} · state serial {}{}{}</p>",
        escape(report.apply_id.as_deref().unwrap_or("(none recorded)")),
        escape(report.plan_id.as_deref().unwrap_or("(none)")),
        if bad { " bad" } else { "" },
        escape(&report.outcome),
        escape(&report.who),
        escape(&report.command),
        escape(&report.started_at),
        escape(&report.finished_at),
        report.state_serial,
        report
            .git_commit
            .as_deref()
            .map(|commit| format!(" · commit <code>{}</code>", escape(commit)))
            .unwrap_or_default(),
        report
            .ci_job_url
            .as_deref()
            .map(|url| format!(" · CI job {}", escape(url)))
            .unwrap_or_default(),
    );
    if let Some(message) = &report.message {
        let _ = writeln!(out, "<p class=\"meta\">{}</p>", escape(message));
    }
}

fn figures(out: &mut String, report: &Report) {
    let f = &report.figures;
    let mut cards: Vec<(String, String, bool)> = vec![
        ("servers".into(), f.servers.to_string(), false),
        ("reinstalled".into(), f.reinstalled.to_string(), false),
        ("adopted".into(), f.adopted.to_string(), false),
        ("failed".into(), f.failed.to_string(), f.failed > 0),
        (
            "health gate failed".into(),
            f.gate_failed.to_string(),
            f.gate_failed > 0,
        ),
        ("unknown".into(), f.unknown.to_string(), f.unknown > 0),
        ("refused".into(), f.refused.to_string(), f.refused > 0),
        ("skipped".into(), f.skipped.to_string(), false),
        (
            "not started".into(),
            f.not_started.to_string(),
            f.not_started > 0,
        ),
        ("duration".into(), seconds(f.duration_s), false),
    ];
    for (label, value) in [
        ("median install", f.install_median_s),
        ("longest install", f.install_max_s),
        ("median wait in wave", f.queued_median_s),
    ] {
        if let Some(value) = value {
            cards.push((label.into(), seconds(value), false));
        }
    }
    let _ = writeln!(out, "<section class=\"figures\" id=\"figures\">");
    for (label, value, bad) in cards {
        let _ = writeln!(
            out,
            "<div class=\"figure{}\"><b>{}</b>{}</div>",
            if bad { " bad" } else { "" },
            escape(&value),
            escape(&label)
        );
    }
    let _ = writeln!(out, "</section>");
}

fn class_of(phase: TimelinePhase) -> &'static str {
    match phase {
        TimelinePhase::Queued => "queued",
        TimelinePhase::Stopping => "stopping",
        TimelinePhase::Installing => "installing",
        TimelinePhase::Gate => "gate",
    }
}

fn timeline(out: &mut String, report: &Report) {
    let span = report
        .servers
        .iter()
        .flat_map(|row| row.segments.iter().map(|segment| segment.end_s))
        .chain(report.waves.iter().map(|wave| wave.end_s))
        .fold(report.figures.duration_s, f64::max)
        .max(1.0);
    let x = |t: f64| LABEL_WIDTH + (t / span) * CHART_WIDTH;
    let rows = report.servers.len().max(1) as f64;
    let height = AXIS_HEIGHT + rows * ROW_HEIGHT + 8.0;
    let width = LABEL_WIDTH + CHART_WIDTH + 20.0;
    let _ = writeln!(
        out,
        "<svg id=\"timeline\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" \
         height=\"{height}\" viewBox=\"0 0 {width} {height}\" role=\"img\" \
         aria-label=\"timeline of waves and servers\">"
    );
    let mut labels = String::new();
    for (position, wave) in report.waves.iter().enumerate() {
        let left = x(wave.start_s);
        let right = x(wave.end_s).max(left + 2.0);
        let label = format!(
            "wave {}{}{}",
            wave.index,
            if wave.canary { " (canary)" } else { "" },
            wave.group
                .as_deref()
                .map(|group| format!(" · {group}"))
                .unwrap_or_default()
        );
        let _ = writeln!(
            out,
            "<rect class=\"wave{}\" x=\"{left:.1}\" y=\"0\" width=\"{:.1}\" height=\"{height}\">\
             <title>{}: {} server(s), {} → {}</title></rect>",
            if position % 2 == 1 { " odd" } else { "" },
            right - left,
            escape(&label),
            wave.servers,
            seconds(wave.start_s),
            seconds(wave.end_s),
        );
        // Labels on two lines, drawn over every band, so a short wave's label stays readable.
        let _ = writeln!(
            labels,
            "<text class=\"wave-label\" x=\"{:.1}\" y=\"{}\">{}</text>",
            left + 3.0,
            if position % 2 == 1 { 24 } else { 11 },
            escape(&label)
        );
    }
    out.push_str(&labels);
    for tick in 0..=5 {
        let t = span * tick as f64 / 5.0;
        let (anchor, offset) = if tick == 5 {
            ("end", -2.0)
        } else {
            ("start", 2.0)
        };
        let _ = writeln!(
            out,
            "<line class=\"tick\" x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"30\" y2=\"{height}\"/>\
             <text x=\"{1:.1}\" y=\"42\" text-anchor=\"{anchor}\">{2}</text>",
            x(t),
            x(t) + offset,
            seconds(t)
        );
    }
    for (position, row) in report.servers.iter().enumerate() {
        server_row(out, row, AXIS_HEIGHT + position as f64 * ROW_HEIGHT, &x);
    }
    let _ = writeln!(out, "</svg>");
}

fn server_row(out: &mut String, row: &ServerRow, top: f64, x: &dyn Fn(f64) -> f64) {
    let failed = row.is_failure();
    let _ = writeln!(
        out,
        "<text{} x=\"4\" y=\"{:.1}\">{}</text>",
        if failed { " class=\"failed\"" } else { "" },
        top + BAR_HEIGHT - 2.0,
        escape(&shorten(&row.server, 26))
    );
    if row.segments.is_empty() {
        let _ = writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            LABEL_WIDTH + 4.0,
            top + BAR_HEIGHT - 2.0,
            escape(&row.outcome.replace('_', " "))
        );
        return;
    }
    let last = row.segments.len() - 1;
    for (position, segment) in row.segments.iter().enumerate() {
        let left = x(segment.start_s);
        // At least 2 units, so a short phase stays visible.
        let width = (x(segment.end_s) - left).max(2.0);
        let red = failed && position == last;
        let _ = writeln!(
            out,
            "<rect class=\"bar {}{}\" data-server=\"{}\" x=\"{left:.1}\" y=\"{top:.1}\" \
             width=\"{width:.1}\" height=\"{BAR_HEIGHT}\" rx=\"2\"><title>{}: {} {} → {}{}</title></rect>",
            class_of(segment.phase),
            if red { " failed" } else { "" },
            escape(&row.server),
            escape(&row.server),
            segment.phase.label(),
            seconds(segment.start_s),
            seconds(segment.end_s),
            if red {
                format!(" ({})", escape(&row.outcome.replace('_', " ")))
            } else {
                String::new()
            }
        );
    }
}

fn shorten(text: &str, limit: usize) -> String {
    if text.chars().count() <= limit {
        text.to_string()
    } else {
        let mut short: String = text.chars().take(limit - 1).collect();
        short.push('…');
        short
    }
}

fn failures(out: &mut String, report: &Report) {
    let failed: Vec<&ServerRow> = report
        .servers
        .iter()
        .filter(|row| row.is_failure())
        .collect();
    let _ = writeln!(out, "<h2>Failures ({})</h2>", failed.len());
    if failed.is_empty() {
        let _ = writeln!(out, "<p>None.</p>");
        return;
    }
    let _ = writeln!(
        out,
        "<table id=\"failures\"><tr><th>server</th><th>outcome</th><th>provider error</th>\
         <th>request id</th></tr>"
    );
    for row in failed {
        let _ = writeln!(
            out,
            "<tr class=\"failure\"><td><code>{}</code></td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            escape(&row.server),
            escape(&row.outcome.replace('_', " ")),
            escape(row.message.as_deref().unwrap_or("")),
            escape(row.request_id.as_deref().unwrap_or("—"))
        );
    }
    let _ = writeln!(out, "</table>");
}

fn servers(out: &mut String, report: &Report) {
    let _ = writeln!(out, "<h2>Servers</h2>");
    let _ = writeln!(
        out,
        "<table id=\"servers\"><tr><th>server</th><th>wave</th><th>outcome</th><th>queued</th>\
         <th>stopping</th><th>installing</th><th>health gate</th><th>note</th></tr>"
    );
    for row in &report.servers {
        let length = |phase: TimelinePhase| {
            row.segments
                .iter()
                .find(|segment| segment.phase == phase)
                .map(|segment| seconds(segment.end_s - segment.start_s))
                .unwrap_or_else(|| "—".to_string())
        };
        let _ = writeln!(
            out,
            "<tr{}><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            if row.is_failure() {
                " class=\"failure\""
            } else {
                ""
            },
            escape(&row.server),
            row.wave
                .map(|wave| wave.to_string())
                .unwrap_or_else(|| "—".into()),
            escape(&row.outcome.replace('_', " ")),
            length(TimelinePhase::Queued),
            length(TimelinePhase::Stopping),
            length(TimelinePhase::Installing),
            length(TimelinePhase::Gate),
            escape(row.message.as_deref().unwrap_or(""))
        );
    }
    let _ = writeln!(out, "</table>");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::history::{HistoryEntry, ServerOutcome, ServerTimings, sample};

    fn report_with_hostile_names() -> Report {
        let mut entry: HistoryEntry = sample("p");
        entry.servers.insert(
            "<script>x</script>".into(),
            ServerOutcome {
                outcome: "failed".into(),
                message: Some("bad \"thing\" & <b>".into()),
                request_id: Some("req-1".into()),
                timings: Some(ServerTimings {
                    install_started_at: Some("2026-01-01T00:00:10Z".into()),
                    finished_at: Some("2026-01-01T00:00:20Z".into()),
                    ..ServerTimings::default()
                }),
            },
        );
        super::super::build(&entry)
    }

    #[test]
    fn the_page_is_self_contained_and_escapes_what_it_shows() {
        let page = render(&report_with_hostile_names());
        assert!(!page.contains("<script>x</script>"));
        assert!(page.contains("&lt;script&gt;x&lt;/script&gt;"));
        assert!(page.contains("bad &quot;thing&quot; &amp; &lt;b&gt;"));
        // Nothing is fetched: no URL in a src/href, and the policy forbids it anyway.
        assert!(!page.contains("src=") && !page.contains("href="));
        assert!(page.contains("default-src 'none'"));
        // The failed server's bar is red, and the failures table names the request id.
        assert!(page.contains("class=\"bar installing failed\""));
        assert!(page.contains("<code>req-1</code>"));
    }
}
