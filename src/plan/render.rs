//! Renders a plan for humans (text with diffs, markdown for pull-request comments) and machines
//! (JSON). Text carries ANSI styles; the printer strips them when colour is off.

use std::fmt::Write as _;

use owo_colors::OwoColorize;
use similar::TextDiff;

use super::model::{ActionKind, Change, Plan, ServerPlan};

/// `Plan: 1 to reinstall, 1 to adopt, 3 unchanged, 0 blocked.` (record updates and forgets
/// are named when there are any).
pub fn summary_line(plan: &Plan) -> String {
    let summary = &plan.summary;
    let mut record_only = String::new();
    if summary.update_record > 0 {
        record_only.push_str(&format!(
            "{} record{} to update, ",
            summary.update_record,
            if summary.update_record == 1 { "" } else { "s" }
        ));
    }
    if summary.forget > 0 {
        record_only.push_str(&format!("{} to forget, ", summary.forget));
    }
    format!(
        "Plan: {} to reinstall, {} to adopt, {record_only}{} unchanged, {} blocked.",
        summary.reinstall, summary.adopt, summary.unchanged, summary.blocked
    )
}

/// What names the artifact: plan id, commit, state and expiry, so that an approval of the
/// rendered plan names the plan file that will run.
pub fn artifact_line(plan: &Plan) -> String {
    format!(
        "Plan {} made at {}, against state `{}` (serial {}); expires {}.",
        plan.plan_id,
        match &plan.commit {
            Some(commit) => format!("commit {commit}"),
            None => "no git commit".to_string(),
        },
        plan.state.name,
        plan.state.serial,
        plan.expires_at
    )
}

fn headline(server: &ServerPlan) -> String {
    let target = format!(
        "({} `{}`, id {})",
        server.provider_type, server.provider, server.cloud_id
    );
    match server.action {
        ActionKind::Reinstall => format!(
            "# {} will be {} {target}",
            server.name.bold(),
            "reinstalled".red().bold()
        ),
        ActionKind::StopAndReinstall => format!(
            "# {} will be {} {target}",
            server.name.bold(),
            "stopped and reinstalled".red().bold()
        ),
        ActionKind::Adopt => format!(
            "# {} will be {}: recorded in state, no change to the machine {target}",
            server.name.bold(),
            "adopted".cyan().bold()
        ),
        ActionKind::UpdateRecord => format!(
            "# {} will have its {}: no change to the machine {target}",
            server.name.bold(),
            "record updated".cyan().bold()
        ),
        ActionKind::Forget => format!(
            "# {} will be {}: removed from the state, the machine is not touched {target}",
            server.name.bold(),
            "forgotten".cyan().bold()
        ),
        ActionKind::Blocked => format!(
            "# {} is {} {target}",
            server.name.bold(),
            "blocked".yellow().bold()
        ),
        ActionKind::NoOp => format!("# {} is unchanged {target}", server.name.bold()),
    }
}

fn quoted(value: &Option<String>) -> String {
    match value {
        Some(text) => format!("{text:?}"),
        None => "(unknown)".to_string(),
    }
}

fn render_change(out: &mut String, change: &Change) {
    let marker = if change.changed {
        format!("{}", "~".yellow())
    } else {
        " ".to_string()
    };
    let field = &change.field;
    if change.sensitive {
        let text = if change.changed {
            "(sensitive value changed)"
        } else {
            "(sensitive value)"
        };
        let _ = writeln!(out, "    {marker} {field}: {text}");
        return;
    }
    let multiline = |value: &Option<String>| value.as_deref().is_some_and(|v| v.contains('\n'));
    if field == "user_data" && (multiline(&change.before) || multiline(&change.after)) {
        if !change.changed {
            let _ = writeln!(out, "    {marker} {field}: (unchanged)");
            return;
        }
        let _ = writeln!(out, "    {marker} {field}:");
        let before = change.before.clone().unwrap_or_default();
        let after = change.after.clone().unwrap_or_default();
        let diff = TextDiff::from_lines(&before, &after);
        let unified = diff
            .unified_diff()
            .context_radius(3)
            .header("recorded", "desired")
            .to_string();
        for line in unified.lines() {
            let styled = if line.starts_with("+++") || line.starts_with("---") {
                line.bold().to_string()
            } else if line.starts_with('+') {
                line.green().to_string()
            } else if line.starts_with('-') {
                line.red().to_string()
            } else if line.starts_with("@@") {
                line.cyan().to_string()
            } else {
                line.to_string()
            };
            let _ = writeln!(out, "        {styled}");
        }
        return;
    }
    if change.changed && change.before != change.after {
        let after = match &change.after {
            Some(text) => format!("{text:?}"),
            None => "(not set)".to_string(),
        };
        let _ = writeln!(
            out,
            "    {marker} {field}: {} -> {after}",
            quoted(&change.before),
        );
    } else {
        let _ = writeln!(out, "    {marker} {field}: {}", quoted(&change.after));
    }
}

/// Human text: one block per server that changes or is blocked, then the summary line.
pub fn text(plan: &Plan) -> String {
    let mut out = String::new();
    let shown: Vec<&ServerPlan> = plan
        .servers
        .iter()
        .filter(|server| server.action != ActionKind::NoOp)
        .collect();
    if shown.is_empty() {
        let _ = writeln!(
            out,
            "{} The fleet matches the manifest: nothing to reinstall or record.",
            "No changes.".green().bold()
        );
        return out;
    }
    if plan.has_changes() {
        let _ = writeln!(out, "reimage will perform the following actions:\n");
    }
    for server in shown {
        let _ = writeln!(out, "  {}", headline(server));
        if !server.wipes.is_empty() {
            let _ = writeln!(
                out,
                "    {} {}",
                "!!".red().bold(),
                format!("wipes: {}", server.wipes.join(", ")).red()
            );
        }
        for note in &server.notes {
            let _ = writeln!(out, "    note: {note}");
        }
        for change in &server.changes {
            render_change(&mut out, change);
        }
        if !server.reasons.is_empty() {
            let _ = writeln!(out, "    reasons:");
            for reason in &server.reasons {
                let _ = writeln!(out, "      - {}", reason.describe());
            }
        }
        let _ = writeln!(out);
    }
    render_waves(&mut out, plan);
    let _ = writeln!(out, "{}", summary_line(plan).bold());
    out
}

/// Names, at most `limit` of them, then how many more.
fn name_list(names: &[String], limit: usize) -> String {
    let mut text = names
        .iter()
        .take(limit)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > limit {
        text.push_str(&format!(" … and {} more", names.len() - limit));
    }
    text
}

fn wave_title(wave: &super::rollout::Wave) -> String {
    let mut title = format!("wave {}", wave.index);
    if wave.canary {
        title.push_str(" (canary: must all succeed before anything else starts)");
    }
    if let Some(group) = &wave.group {
        title.push_str(&format!(" [group {group}]"));
    }
    title
}

fn failure_rule(wave: &super::rollout::Wave) -> String {
    match wave.max_failures {
        Some(limit) => format!("stop starting after {limit} failure(s)"),
        None => "failures do not stop the rollout".to_string(),
    }
}

fn render_waves(out: &mut String, plan: &Plan) {
    if plan.waves.is_empty() {
        return;
    }
    let _ = writeln!(out, "Rollout in {} wave(s):", plan.waves.len());
    for wave in &plan.waves {
        let _ = writeln!(
            out,
            "  {}: {} server(s), at most {} at a time, {}",
            wave_title(wave),
            wave.servers.len(),
            wave.max_parallel,
            failure_rule(wave)
        );
        let _ = writeln!(out, "    {}", name_list(&wave.servers, 8));
    }
    if let Some(cap) = plan.rollout.default.max_reinstalls {
        let _ = writeln!(out, "  at most {cap} reinstalls per apply (max_reinstalls)");
    }
    let _ = writeln!(out);
}

/// Markdown for a pull-request comment.
pub fn markdown(plan: &Plan) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "### reimage plan\n");
    let _ = writeln!(
        out,
        "Plan `{}` · commit {} · state `{}` (serial {}) · expires {}\n",
        plan.plan_id,
        match &plan.commit {
            Some(commit) => format!("`{commit}`"),
            None => "(none: not made in a git repository)".to_string(),
        },
        plan.state.name,
        plan.state.serial,
        plan.expires_at
    );
    let _ = writeln!(out, "**{}**\n", summary_line(plan));
    let shown: Vec<&ServerPlan> = plan
        .servers
        .iter()
        .filter(|server| server.action != ActionKind::NoOp)
        .collect();
    if shown.is_empty() {
        let _ = writeln!(out, "No changes. The fleet matches the manifest.");
        return out;
    }
    let _ = writeln!(out, "| server | action | provider | id | wipes | reasons |");
    let _ = writeln!(out, "| --- | --- | --- | --- | --- | --- |");
    let cell = |text: &str| text.replace('|', "\\|").replace('\n', " ");
    for server in &shown {
        let reasons: Vec<String> = server.reasons.iter().map(|r| r.describe()).collect();
        let _ = writeln!(
            out,
            "| `{}` | **{}** | {} `{}` | `{}` | {} | {} |",
            cell(&server.name),
            server.action.as_str(),
            server.provider_type,
            cell(&server.provider),
            cell(&server.cloud_id),
            cell(&server.wipes.join(", ")),
            cell(&reasons.join("; "))
        );
    }
    if !plan.waves.is_empty() {
        let _ = writeln!(out, "\n**Rollout** ({} waves):\n", plan.waves.len());
        for wave in &plan.waves {
            let _ = writeln!(
                out,
                "- {}: {} server(s), at most {} at a time, {} — {}",
                wave_title(wave),
                wave.servers.len(),
                wave.max_parallel,
                failure_rule(wave),
                name_list(&wave.servers, 8)
            );
        }
    }
    for server in shown.iter().filter(|server| server.action.is_destructive()) {
        let _ = writeln!(
            out,
            "\n<details><summary><code>{}</code> inputs</summary>\n\n```diff",
            server.name
        );
        for change in &server.changes {
            if change.sensitive {
                let text = if change.changed {
                    "(sensitive value changed)"
                } else {
                    "(sensitive value)"
                };
                let _ = writeln!(out, "  {}: {text}", change.field);
            } else if change.changed {
                if let Some(before) = &change.before {
                    for line in before.lines() {
                        let _ = writeln!(out, "- {}: {line}", change.field);
                    }
                }
                if let Some(after) = &change.after {
                    for line in after.lines() {
                        let _ = writeln!(out, "+ {}: {line}", change.field);
                    }
                }
            } else {
                let _ = writeln!(out, "  {}: {}", change.field, quoted(&change.after));
            }
        }
        let _ = writeln!(out, "```\n</details>");
    }
    out
}

/// The plan as pretty JSON (the same document a saved plan file holds).
pub fn json(plan: &Plan) -> String {
    serde_json::to_string_pretty(plan).unwrap_or_else(|error| format!("{{\"error\": \"{error}\"}}"))
}
