//! `reimage apply [PLANFILE]`: carry out a saved plan, or plan, confirm and carry out.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;

use super::{ApplyArgs, lock_state, open_state};
use crate::apply::artifact::{self, Requirements, SignatureCheck};
use crate::apply::progress::{JsonReporter, LineReporter, TerminalReporter};
use crate::apply::{
    self, ApplyReport, ApplySummary, Context, Interrupt, Reporter, ResumeScope, Settings,
    check_not_stale, confirm,
};
use crate::error::{Error, Result};
use crate::manifest::SecretCheck;
use crate::ops::backend::Backend;
use crate::ops::fleet::Fleet;
use crate::ops::history::{self, ApplyRun, Ending};
use crate::ops::plan::{PlanOptions, blocked_error, make_plan, read_or_init_state};
use crate::output::Printer;
use crate::plan::signature::{PLAN_KEY_ENV, PlanKey, signature_path};
use crate::plan::{Plan, file, render};
use crate::provider::limits::WaitSink;
use crate::state::history::ServerOutcome;
use crate::state::journal::fold;
use crate::state::{Outcome, State, StateStore};

/// Exit code of an apply stopped with Ctrl-C (128 + SIGINT), as shells expect.
const EXIT_INTERRUPTED: u8 = 130;

pub async fn run(args: ApplyArgs, printer: &Printer) -> Result<ExitCode> {
    match args.plan_file.clone() {
        Some(path) => apply_saved_plan(args, &path, printer).await,
        None => plan_and_apply(args, printer).await,
    }
}

/// Ctrl-C once: stop starting; twice: stop watching.
fn watch_interrupts() -> Arc<Interrupt> {
    let interrupt = Interrupt::new();
    let watcher = interrupt.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            watcher.stop_starting();
            if tokio::signal::ctrl_c().await.is_ok() {
                watcher.abandon();
            }
        }
    });
    interrupt
}

fn reporter(args: &ApplyArgs, printer: &Printer, total: u64) -> Box<dyn Reporter> {
    if args.json {
        Box::new(JsonReporter::new(printer.clone()))
    } else if std::io::stderr().is_terminal() && std::env::var_os("REIMAGE_NO_PROGRESS").is_none() {
        Box::new(TerminalReporter::new(total, printer.stderr_has_color()))
    } else {
        Box::new(LineReporter::new(printer.clone()))
    }
}

async fn apply_saved_plan(
    args: ApplyArgs,
    path: &std::path::Path,
    printer: &Printer,
) -> Result<ExitCode> {
    if !args.target.is_empty() || !args.replace.is_empty() || !args.rollout.is_empty() {
        return Err(Error::usage(
            "`--target`, `--replace` and rollout flags cannot be used with a saved plan",
            "a saved plan is applied exactly as reviewed; make a new plan with those flags instead",
        ));
    }
    let requirements = Requirements {
        signed: args.require_signed,
        commit: args.require_commit.clone(),
    };
    let key = PlanKey::from_env()?;
    // The signature is checked over the bytes read here, and the plan parsed from the same bytes.
    let bytes = file::read_bytes(path)?;
    let (plan, signature) = artifact::check(
        path,
        &bytes,
        file::read_signature(path),
        key.as_ref(),
        &requirements,
        jiff::Timestamp::now(),
    )?;
    let signature_file = signature_path(path);
    match signature {
        SignatureCheck::Verified => printer.status(&format!(
            "Verified the plan's signature (`{}`).",
            signature_file.display()
        )),
        SignatureCheck::Unsigned if key.is_some() => printer.status(&format!(
            "warning: the plan is not signed (no `{}`); `--require-signed` refuses unsigned plans",
            signature_file.display()
        )),
        SignatureCheck::Unsigned => {}
        SignatureCheck::NotChecked => printer.status(&format!(
            "warning: the plan has a signature (`{}`), but `{PLAN_KEY_ENV}` is not set: it was \
             not checked",
            signature_file.display()
        )),
    }
    let manifest = if args.manifest.files.is_empty() {
        None
    } else {
        Some(args.manifest.load(SecretCheck::Required, printer)?.manifest)
    };
    let manifest_digest = manifest.as_ref().map(|manifest| manifest.digest.clone());
    // The history names the commit of the manifest's repository, else the plan file's.
    let folder = match &manifest {
        Some(manifest) => first_folder(&manifest.files),
        None => first_folder(std::slice::from_ref(&path.to_path_buf())),
    };
    let backend = Backend::choose(
        plan.backend.as_ref(),
        std::path::Path::new(&plan.state_path),
        args.state.as_ref(),
    );
    let store = open_state(&backend).await?;
    let store = store.as_ref();
    let lock = lock_state(store, "reimage apply", args.lock.lock_timeout, printer).await?;
    let mut progress = Progress::new(&folder);
    progress.plan = Some(plan.clone());
    let result = apply_saved_plan_locked(
        &args,
        &plan,
        manifest_digest.as_deref(),
        store,
        lock.as_ref(),
        printer,
        &mut progress,
    )
    .await;
    progress.record(store, &result, printer);
    result
}

/// The saved plan's apply once the state is locked; `progress` says how far it got.
async fn apply_saved_plan_locked(
    args: &ApplyArgs,
    plan: &Plan,
    manifest_digest: Option<&str>,
    store: &dyn StateStore,
    lock: &dyn crate::state::StateLock,
    printer: &Printer,
    progress: &mut Progress,
) -> Result<ExitCode> {
    let Some(state) = store.read()? else {
        return Err(Error::StalePlan {
            differences: vec![format!(
                "no state exists at `{}`, but the plan was made against one",
                store.location()
            )],
        });
    };
    let state = progress.state.insert(state);
    let fleet =
        crate::ops::fleet::connect(&plan.providers, plan.emulator.as_ref(), &WaitSink::new())
            .await?;
    let reporter = reporter(args, printer, plan.summary.reinstall as u64);
    let context = Context {
        fleet: &fleet,
        store,
        lock,
        reporter: reporter.as_ref(),
        interrupt: watch_interrupts(),
        settings: Settings::default(),
    };
    let mut resume = ResumeScope::default();
    if args.resume {
        let steps = fold(
            &store
                .journal()
                .read()
                .map_err(|error| Error::State(error.into()))?,
        );
        resume.stopped = apply::stopped_by(plan, &steps);
    }
    progress.settled = reconcile(&context, state, printer).await?;
    if args.resume {
        resume.finished = apply::finished_in(plan, state);
        resume.gate_pending = apply::gates_pending_in(plan, state);
        resume
            .stopped
            .retain(|server| !resume.finished.contains(server));
    }
    check_not_stale(
        plan,
        manifest_digest,
        &store.name(),
        state,
        &fleet,
        args.resume.then_some(&resume),
    )
    .await?;
    if let Some(error) = blocked_error(plan) {
        return Err(error);
    }
    if !plan.has_changes() {
        printer.out(&render::text(plan));
        return Ok(ExitCode::SUCCESS);
    }
    if args.resume && !resume.finished.is_empty() {
        printer.status(&format!(
            "Resuming plan {}: {} server(s) already finished are skipped.",
            plan.plan_id,
            resume.finished.len()
        ));
    }
    execute(
        &context,
        plan,
        state,
        &resume,
        args,
        printer,
        &mut progress.summary,
    )
    .await
}

/// The folder of the first of `files` (the current folder for a bare file name).
fn first_folder(files: &[std::path::PathBuf]) -> std::path::PathBuf {
    files
        .first()
        .and_then(|file| file.parent())
        .filter(|parent| !parent.as_os_str().is_empty())
        .map_or_else(
            || std::path::PathBuf::from("."),
            std::path::Path::to_path_buf,
        )
}

async fn plan_and_apply(args: ApplyArgs, printer: &Printer) -> Result<ExitCode> {
    let manifest = args.manifest.load(SecretCheck::Required, printer)?.manifest;
    // Providers are built first: a manifest they refuse leaves no state behind.
    let fleet = crate::ops::fleet::connect(
        &manifest.providers,
        manifest.emulator.as_ref(),
        &WaitSink::new(),
    )
    .await?;
    let backend = Backend::choose(
        manifest.backend.as_ref(),
        &manifest.state_path,
        args.state.as_ref(),
    );
    let store = open_state(&backend).await?;
    let store = store.as_ref();
    let lock = lock_state(store, "reimage apply", args.lock.lock_timeout, printer).await?;
    let mut progress = Progress::new(&first_folder(&manifest.files));
    let source = Source {
        manifest: &manifest,
        fleet: &fleet,
        backend: &backend,
    };
    let result =
        plan_and_apply_locked(&args, &source, store, lock.as_ref(), printer, &mut progress).await;
    progress.record(store, &result, printer);
    result
}

/// What a fresh plan is made from.
struct Source<'a> {
    manifest: &'a crate::manifest::Manifest,
    fleet: &'a Fleet,
    backend: &'a Backend,
}

/// Plan, confirm and apply once the state is locked; `progress` says how far it got.
async fn plan_and_apply_locked(
    args: &ApplyArgs,
    source: &Source<'_>,
    store: &dyn StateStore,
    lock: &dyn crate::state::StateLock,
    printer: &Printer,
    progress: &mut Progress,
) -> Result<ExitCode> {
    let Source {
        manifest,
        fleet,
        backend,
    } = *source;
    let (state, created) = read_or_init_state(store)?;
    let state = progress.state.insert(state);
    let options = PlanOptions {
        targets: args.target.clone(),
        replace: args.replace.clone(),
        rollout: args.rollout.spec(),
        ..PlanOptions::default()
    };
    // Before the plan exists (reconciling an interrupted apply), events are plain lines: bars
    // would draw over the plan about to be printed.
    let reporter: Box<dyn Reporter> = if args.json {
        Box::new(JsonReporter::new(printer.clone()))
    } else {
        Box::new(LineReporter::new(printer.clone()))
    };
    let context = Context {
        fleet,
        store,
        lock,
        reporter: reporter.as_ref(),
        interrupt: watch_interrupts(),
        settings: Settings::default(),
    };
    progress.settled = reconcile(&context, state, printer).await?;
    let waiting = super::waits::WaitLines::start(printer, fleet.waits());
    let mut plan = make_plan(manifest, state, store, fleet, &options).await?;
    drop(waiting);
    // `--state PATH` overrides the manifest's backend: the plan names the one it was made with.
    plan.backend = backend.remote();
    if created {
        // Only now: a plan that could not be made leaves no state behind.
        store.write(lock, state)?;
        plan.state.serial = state.serial;
        printer.status(&format!(
            "Initialized a new state at `{}`.",
            store.location()
        ));
    }
    let plan = progress.plan.insert(plan);
    if !args.json {
        printer.out(&render::text(plan));
    }
    if let Some(error) = blocked_error(plan) {
        return Err(error);
    }
    if !plan.has_changes() {
        return Ok(ExitCode::SUCCESS);
    }
    if !args.auto_approve {
        if !args.input.input {
            return Err(Error::usage(
                "refusing to apply without confirmation: `-input=false` was given",
                "nothing was changed. Save and review a plan with `reimage plan -out PLANFILE`, then run \
                 `reimage apply PLANFILE`; or pass `--auto-approve`",
            ));
        }
        if !confirm::can_ask() {
            return Err(Error::usage(
                "refusing to apply without confirmation: standard input is not a terminal",
                "nothing was changed. Save and review a plan with `reimage plan -out PLANFILE`, then run \
                 `reimage apply PLANFILE`; or pass `--auto-approve`",
            ));
        }
        let approved = confirm::ask(&confirm::prompt(&plan.summary)).map_err(super::io_error)?;
        if !approved {
            printer.status("\nApply cancelled: nothing was changed.");
            progress.cancelled = true;
            return Ok(ExitCode::FAILURE);
        }
    }
    // The progress display, now that the plan's size is known.
    let reporter = self::reporter(args, printer, plan.summary.reinstall as u64);
    let context = Context {
        reporter: reporter.as_ref(),
        ..context
    };
    execute(
        &context,
        plan,
        state,
        &ResumeScope::default(),
        args,
        printer,
        &mut progress.summary,
    )
    .await
}

/// How far an apply got once it held the lock: what its history entry says.
struct Progress {
    run: ApplyRun,
    plan: Option<Plan>,
    state: Option<State>,
    /// Servers whose interrupted steps this apply settled first.
    settled: BTreeMap<String, ServerOutcome>,
    summary: Option<ApplySummary>,
    cancelled: bool,
}

impl Progress {
    fn new(folder: &std::path::Path) -> Progress {
        Progress {
            run: ApplyRun::start("reimage apply", folder),
            plan: None,
            state: None,
            settled: BTreeMap::new(),
            summary: None,
            cancelled: false,
        }
    }

    /// Appends the history entry; a failure to do so is reported, never fatal: the apply
    /// itself has happened and the state records it.
    fn record(&self, store: &dyn StateStore, result: &Result<ExitCode>, printer: &Printer) {
        let ending = match (result, &self.summary) {
            (Err(error), _) => Ending::Error(error.to_string()),
            (Ok(_), Some(summary)) => Ending::Applied(summary),
            (Ok(_), None) if self.cancelled => Ending::Cancelled,
            (Ok(_), None) => Ending::NoChanges,
        };
        let entry = history::entry(
            &self.run,
            self.plan.as_ref(),
            ending,
            self.state.as_ref(),
            &self.settled,
        );
        if let Err(error) = store.history().append(&entry) {
            printer.status(&format!(
                "warning: this apply was not recorded in the history: {error}"
            ));
        }
    }
}

/// Takes over what an interrupted apply left in flight, before anything new starts; returns
/// the servers it settled.
async fn reconcile(
    context: &Context<'_>,
    state: &mut State,
    printer: &Printer,
) -> Result<BTreeMap<String, ServerOutcome>> {
    let before = state.servers.clone();
    let unresolved = apply::reconcile_journal(context, state, true).await?;
    for line in &unresolved {
        printer.status(&format!(
            "warning: could not settle an interrupted step: {line}"
        ));
    }
    Ok(history::settled(&before, state))
}

/// Runs the plan; `summary` receives how it ended.
async fn execute(
    context: &Context<'_>,
    plan: &Plan,
    state: &mut State,
    resume: &ResumeScope,
    args: &ApplyArgs,
    printer: &Printer,
    summary_out: &mut Option<ApplySummary>,
) -> Result<ExitCode> {
    let report = apply::run(context, plan, state, resume).await?;
    *summary_out = Some(report.summary.clone());
    if !args.json {
        print_summary(&report, printer);
    }
    Ok(if report.summary.interrupted {
        ExitCode::from(EXIT_INTERRUPTED)
    } else if report.succeeded() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
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

/// Used by `plan`: settles what it can of an interrupted apply without waiting.
pub async fn reconcile_for_plan(
    fleet: &Fleet,
    store: &dyn StateStore,
    lock: &dyn crate::state::StateLock,
    state: &mut State,
    printer: &Printer,
) -> Result<()> {
    let reporter = LineReporter::new(printer.clone());
    let context = Context {
        fleet,
        store,
        lock,
        reporter: &reporter,
        interrupt: Interrupt::new(),
        settings: Settings::default(),
    };
    let unresolved = apply::reconcile_journal(&context, state, false).await?;
    for line in &unresolved {
        printer.status(&format!(
            "warning: an interrupted apply is still in flight: {line}"
        ));
    }
    Ok(())
}
