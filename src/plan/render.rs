//! Renders a plan for humans (text with diffs, markdown for pull-request comments) and machines
//! (JSON). Text carries ANSI styles; the printer strips them when colour is off.

use std::fmt::Write as _;

use owo_colors::OwoColorize;
use similar::TextDiff;

use super::model::{ActionKind, Change, Plan, ServerPlan};
use super::yaml_style;
use crate::output::escape_control;

/// Wave members listed by name before the rest are only counted.
const WAVE_NAMES_SHOWN: usize = 50;

/// Text from the manifest or a provider, safe to print.
fn e(text: &str) -> std::borrow::Cow<'_, str> {
    escape_control(text)
}

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
        server.provider_type,
        e(&server.provider),
        e(&server.cloud_id)
    );
    let name = e(&server.name);
    let name = name.as_ref();
    match server.action {
        ActionKind::Reinstall => format!(
            "# {} will be {} {target}",
            name.bold(),
            "reinstalled".red().bold()
        ),
        ActionKind::StopAndReinstall => format!(
            "# {} will be {} {target}",
            name.bold(),
            "stopped and reinstalled".red().bold()
        ),
        ActionKind::Adopt => format!(
            "# {} will be {}: recorded in state, no change to the machine {target}",
            name.bold(),
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
            name.bold(),
            "blocked".yellow().bold()
        ),
        ActionKind::NoOp => format!("# {} is unchanged {target}", name.bold()),
    }
}

fn quoted(value: &Option<String>) -> String {
    match value {
        Some(text) => e(&format!("{text:?}")).into_owned(),
        None => "(unknown)".to_string(),
    }
}

/// An image id, with the name the provider gave it when the provider reports one.
fn image_text(image: &Option<String>, server: &ServerPlan) -> String {
    let Some(id) = image else {
        return "(unknown)".to_string();
    };
    let name = server
        .observed
        .as_ref()
        .filter(|observed| observed.image.as_deref() == Some(id.as_str()))
        .and_then(|observed| observed.image_name.as_deref())
        .filter(|name| *name != id);
    match name {
        Some(name) => format!("{} ({})", quoted(image), e(name)),
        None => quoted(image),
    }
}

/// The options as YAML lines: a change's `after` holds them as canonical JSON.
fn option_lines(change: &Change) -> Vec<String> {
    let Some(text) = &change.after else {
        return Vec::new();
    };
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(value) => yaml_style::lines(&value),
        Err(_) => vec![quoted(&change.after)],
    }
}

fn render_change(out: &mut String, change: &Change, server: &ServerPlan) {
    // A hostname the manifest does not set is left as it is: no change to show.
    let unmanaged_hostname = change.field == "hostname" && change.after.is_none();
    let marker = if change.changed && !unmanaged_hostname {
        format!("{}", "~".yellow())
    } else {
        " ".to_string()
    };
    let field = e(&change.field);
    if change.sensitive {
        let text = if change.changed {
            "(sensitive value changed)"
        } else {
            "(sensitive value)"
        };
        let _ = writeln!(out, "    {marker} {field}: {text}");
        return;
    }
    if unmanaged_hostname {
        let _ = writeln!(
            out,
            "    {marker} {field}: {} (not managed: the manifest sets no hostname)",
            quoted(&change.before)
        );
        return;
    }
    if change.field == "options" {
        let note = if change.changed {
            " (changed since the last apply)"
        } else {
            ""
        };
        let _ = writeln!(out, "    {marker} {field}:{note}");
        for line in option_lines(change) {
            let _ = writeln!(out, "        {line}");
        }
        return;
    }
    let multiline = |value: &Option<String>| value.as_deref().is_some_and(|v| v.contains('\n'));
    if change.field == "user_data" && (multiline(&change.before) || multiline(&change.after)) {
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
            let line = e(line);
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
    let show = |value: &Option<String>| {
        if change.field == "image" {
            image_text(value, server)
        } else {
            quoted(value)
        }
    };
    if change.changed && change.before != change.after {
        let after = match &change.after {
            Some(_) => show(&change.after),
            None => "(not set)".to_string(),
        };
        let _ = writeln!(
            out,
            "    {marker} {field}: {} -> {after}",
            show(&change.before),
        );
    } else {
        let _ = writeln!(out, "    {marker} {field}: {}", show(&change.after));
    }
}

/// Human text: one block per server that changes or is blocked, then the summary line.
pub fn text(plan: &Plan) -> String {
    let mut all = String::new();
    text_to(plan, &mut |chunk| all.push_str(chunk));
    all
}

/// [`text`], handed to `sink` a server block at a time: a plan of many servers is never held
/// as one string.
pub fn text_to(plan: &Plan, sink: &mut dyn FnMut(&str)) {
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
        sink(&out);
        return;
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
                format!("wipes: {}", e(&server.wipes.join(", "))).red()
            );
        }
        for note in &server.notes {
            let _ = writeln!(out, "    note: {}", e(note));
        }
        if let Some(gate) = &server.health {
            let _ = writeln!(
                out,
                "    health gate: {} (from {})",
                e(&gate.describe()),
                e(&gate.source)
            );
        }
        for change in &server.changes {
            render_change(&mut out, change, server);
        }
        if !server.reasons.is_empty() {
            let _ = writeln!(out, "    reasons:");
            for reason in &server.reasons {
                let _ = writeln!(out, "      - {}", e(&reason.describe()));
            }
        }
        let _ = writeln!(out);
        sink(&out);
        out.clear();
    }
    render_waves(&mut out, plan);
    let _ = writeln!(out, "{}", summary_line(plan).bold());
    sink(&out);
}

/// Names, at most `limit` of them, then how many more.
fn name_list(names: &[String], limit: usize) -> String {
    let mut text = names
        .iter()
        .take(limit)
        .map(|name| e(name).into_owned())
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > limit {
        text.push_str(&format!(" … and {} more", names.len() - limit));
    }
    text
}

/// A comma-separated list broken after commas into lines of about `width` characters.
fn wrapped(list: &str, width: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    for word in list.split_inclusive(' ') {
        let line = lines.last_mut().map_or(0, |line| line.chars().count());
        if line > 0 && line + word.trim_end().chars().count() > width {
            lines.push(String::new());
        }
        if let Some(line) = lines.last_mut() {
            line.push_str(word);
        }
    }
    lines
        .into_iter()
        .map(|line| line.trim_end().to_string())
        .collect()
}

fn wave_title(wave: &super::rollout::Wave) -> String {
    let mut title = format!("wave {}", wave.index);
    if wave.canary {
        title.push_str(" (canary: must all succeed before anything else starts)");
    }
    if let Some(group) = &wave.group {
        title.push_str(&format!(" [group {}]", e(group)));
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
        for line in wrapped(&name_list(&wave.servers, WAVE_NAMES_SHOWN), 96) {
            let _ = writeln!(out, "    {line}");
        }
    }
    if let Some(cap) = plan.rollout.default.max_reinstalls {
        let _ = writeln!(out, "  at most {cap} reinstalls per apply (max_reinstalls)");
    }
    let _ = writeln!(out);
    if let Some(pace) = &plan.pace {
        for line in super::pace::describe(pace) {
            let _ = writeln!(out, "{line}");
        }
        let _ = writeln!(out);
    }
}

/// Markdown for a pull-request comment.
pub fn markdown(plan: &Plan) -> String {
    let mut all = String::new();
    markdown_to(plan, &mut |chunk| all.push_str(chunk));
    all
}

/// [`markdown`], handed to `sink` a piece at a time.
pub fn markdown_to(plan: &Plan, sink: &mut dyn FnMut(&str)) {
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
        sink(&out);
        return;
    }
    let _ = writeln!(out, "| server | action | provider | id | wipes | reasons |");
    let _ = writeln!(out, "| --- | --- | --- | --- | --- | --- |");
    let cell = |text: &str| e(&text.replace('|', "\\|").replace('\n', " ")).into_owned();
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
        sink(&out);
        out.clear();
    }
    let gated: Vec<&&ServerPlan> = shown
        .iter()
        .filter(|server| server.health.is_some())
        .collect();
    if !gated.is_empty() {
        let _ = writeln!(
            out,
            "\n**Health gates** (must pass before a server counts as done):\n"
        );
        for server in gated {
            if let Some(gate) = &server.health {
                let _ = writeln!(
                    out,
                    "- `{}`: {} (from `{}`)",
                    cell(&server.name),
                    cell(&gate.describe()),
                    cell(&gate.source)
                );
            }
        }
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
                name_list(&wave.servers, WAVE_NAMES_SHOWN)
            );
        }
    }
    if let Some(pace) = &plan.pace {
        let mut lines = super::pace::describe(pace).into_iter();
        if let Some(title) = lines.next() {
            let _ = writeln!(out, "\n**{}**\n", title.trim_end_matches(':'));
        }
        for line in lines {
            let _ = writeln!(out, "- {}", line.trim_start());
        }
    }
    for server in shown.iter().filter(|server| server.action.is_destructive()) {
        let _ = writeln!(
            out,
            "\n<details><summary><code>{}</code> inputs</summary>\n\n```diff",
            e(&server.name)
        );
        for change in &server.changes {
            markdown_change(&mut out, change, server);
        }
        let _ = writeln!(out, "```\n</details>");
        sink(&out);
        out.clear();
    }
    sink(&out);
}

/// One input in a ```diff block: `-`/`+` lines for what changes, two spaces for the rest.
fn markdown_change(out: &mut String, change: &Change, server: &ServerPlan) {
    let field = e(&change.field);
    if change.sensitive {
        if change.changed {
            // The value is never known, but the change is: a change line, like any other.
            let _ = writeln!(out, "- {field}: (sensitive value)");
            let _ = writeln!(out, "+ {field}: (sensitive value, changed)");
        } else {
            let _ = writeln!(out, "  {field}: (sensitive value)");
        }
        return;
    }
    if change.field == "hostname" && change.after.is_none() {
        let _ = writeln!(
            out,
            "  {field}: {} (not managed: the manifest sets no hostname)",
            quoted(&change.before)
        );
        return;
    }
    if change.field == "options" {
        let sign = if change.changed { "+" } else { " " };
        let note = if change.changed {
            " (changed since the last apply)"
        } else {
            ""
        };
        let _ = writeln!(out, "{sign} {field}:{note}");
        for line in option_lines(change) {
            let _ = writeln!(out, "{sign}   {line}");
        }
        return;
    }
    let show = |value: &Option<String>, line: &str| {
        if change.field == "image" {
            image_text(value, server)
        } else {
            e(line).into_owned()
        }
    };
    if change.changed {
        for (sign, value) in [("-", &change.before), ("+", &change.after)] {
            if let Some(text) = value {
                for line in text.lines() {
                    let _ = writeln!(out, "{sign} {field}: {}", show(value, line));
                }
            }
        }
    } else {
        let _ = writeln!(
            out,
            "  {field}: {}",
            show(&change.after, &quoted(&change.after))
        );
    }
}

/// The plan as JSON on one line (the same document a saved plan file holds).
pub fn json(plan: &Plan) -> String {
    serde_json::to_string(plan).unwrap_or_else(|error| format!("{{\"error\": \"{error}\"}}"))
}

/// [`json`] written to `writer` as it is made (one line, no string of the whole plan).
pub fn json_to(plan: &Plan, writer: impl std::io::Write) -> std::io::Result<()> {
    serde_json::to_writer(writer, plan).map_err(std::io::Error::other)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::manifest::{DesiredAccess, DesiredServer, ProviderType, RolloutPolicy, SecretRef};
    use crate::model::{Observed, ServerStatus};
    use crate::plan::model::{Reason, StateRef, Summary};
    use crate::plan::rollout::Wave;

    fn change(field: &str, before: Option<&str>, after: Option<&str>, changed: bool) -> Change {
        Change {
            field: field.into(),
            before: before.map(str::to_string),
            after: after.map(str::to_string),
            sensitive: false,
            changed,
        }
    }

    fn server(name: &str, action: ActionKind, changes: Vec<Change>) -> ServerPlan {
        ServerPlan {
            name: name.into(),
            provider: "zl".into(),
            provider_type: ProviderType::ZenlayerBmc,
            cloud_id: format!("id-{name}"),
            action,
            reasons: vec![Reason::ImageDiffers {
                observed: "img-old".into(),
                desired: "img-new".into(),
            }],
            wipes: vec!["system disk".into()],
            changes,
            notes: vec![],
            desired: DesiredServer {
                group: None,
                address: None,
                health: Default::default(),
                name: name.into(),
                provider: "zl".into(),
                provider_type: ProviderType::ZenlayerBmc,
                cloud_id: format!("id-{name}"),
                image: "img-new".into(),
                revision: 0,
                access: DesiredAccess::Password {
                    secret: SecretRef::Env("PW".into()),
                },
                hostname: None,
                user_data: None,
                protect: false,
                options: serde_json::Map::new(),
            },
            observed: Some(Observed {
                cloud_id: format!("id-{name}"),
                status: ServerStatus::Running,
                raw_status: "RUNNING".into(),
                image: Some("img-old".into()),
                image_name: Some("Ubuntu 22.04".into()),
                hostname: Some("web-1.old".into()),
                address: None,
                extra: BTreeMap::new(),
            }),
            observed_fingerprint: String::new(),
            input_digests: Default::default(),
            health: None,
        }
    }

    /// A plan that shows every kind of line: an image change with the image's name, options,
    /// an unmanaged hostname, a changed secret, a long wave, and a name with terminal controls.
    fn sample_plan() -> Plan {
        let mut password = change("password", None, None, true);
        password.sensitive = true;
        let web = server(
            "web-1",
            ActionKind::Reinstall,
            vec![
                change("image", Some("img-old"), Some("img-new"), true),
                change("hostname", Some("web-1.old"), None, false),
                password,
                change(
                    "options",
                    None,
                    Some(
                        r#"{"partitions":[{"fs_path":"/","fs_type":"ext4","size":100}],"raid_type":1}"#,
                    ),
                    true,
                ),
            ],
        );
        let mut evil = server(
            "db\u{1b}[2J\u{202e}",
            ActionKind::Blocked,
            vec![change("image", Some("img-old"), Some("img-new"), true)],
        );
        evil.reasons = vec![Reason::StatusForbids {
            status: "BUSY\u{1b}]0;owned\u{7}".into(),
        }];
        let members: Vec<String> = (1..=60).map(|n| format!("s{n:02}")).collect();
        let servers = vec![web, evil];
        Plan {
            format_version: crate::plan::model::PLAN_FORMAT_VERSION,
            tool_version: "0.0.0".into(),
            plan_id: "plan-1".into(),
            created_at: "2026-01-01T00:00:00Z".into(),
            expires_at: "2026-01-02T00:00:00Z".into(),
            commit: None,
            manifest_digest: String::new(),
            state: StateRef {
                name: "default".into(),
                lineage: None,
                serial: 0,
            },
            providers: BTreeMap::new(),
            emulator: None,
            state_path: String::new(),
            backend: None,
            summary: Summary::count(&servers),
            servers,
            rollout: RolloutPolicy::default(),
            waves: vec![Wave {
                index: 1,
                group: None,
                canary: false,
                servers: members,
                max_parallel: 10,
                max_failures: Some(1),
            }],
            pace: Some(crate::plan::pace::Pace {
                providers: BTreeMap::from([(
                    "zl\u{1b}[2J".to_string(),
                    crate::plan::pace::ProviderPace {
                        reinstalls: 60,
                        reinstall_per_minute: Some(60.0),
                        reinstall_batch: 1,
                        install_estimate_s: 600.0,
                        rate_allows_in_flight: Some(10),
                    },
                )]),
                waves: vec![crate::plan::pace::WavePace {
                    wave: 1,
                    servers: 60,
                    max_parallel: 10,
                    in_flight: 10,
                    estimated_s: 3600.0,
                    bound: crate::plan::pace::Bound::MaxParallel,
                }],
                estimated_s: 3600.0,
                notes: Vec::new(),
            }),
        }
    }

    /// The controls a name or a provider's answer carried reach the terminal only as
    /// visible escapes; the renderer's own styles are the only escape sequences left.
    fn assert_no_injected_controls(text: &str) {
        for injected in ["\u{1b}[2J", "\u{1b}]0;", "\u{202e}", "\u{7}"] {
            assert!(
                !text.contains(injected),
                "{injected:?} reached the output:\n{text}"
            );
        }
        assert!(text.contains(r"db\u{1b}[2J\u{202e}"), "{text}");
    }

    #[test]
    fn snapshot_plan_text() {
        let text = text(&sample_plan());
        assert_no_injected_controls(&text);
        insta::assert_snapshot!(anstream::adapter::strip_str(&text).to_string());
    }

    #[test]
    fn snapshot_plan_markdown() {
        let markdown = markdown(&sample_plan());
        assert_no_injected_controls(&markdown);
        insta::assert_snapshot!(markdown);
    }

    #[test]
    fn waves_list_every_member_up_to_fifty() {
        let text = text(&sample_plan());
        assert!(text.contains("s01, s02,"), "{text}");
        assert!(text.contains("s50 … and 10 more"), "{text}");
    }
}
