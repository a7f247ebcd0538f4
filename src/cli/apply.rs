//! `reimage apply [PLANFILE]`: carry out a saved plan, or plan, confirm and carry out.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;

use super::{ApplyArgs, state_store};
use crate::apply::progress::{JsonReporter, LineReporter, TerminalReporter};
use crate::apply::{
    self, ApplySummary, Context, Interrupt, Reporter, ResumeScope, Settings, check_not_stale,
    confirm,
};
use crate::error::{Error, Result};
use crate::manifest::SecretCheck;
use crate::ops::fleet::Fleet;
use crate::ops::plan::{PlanOptions, blocked_error, make_plan, read_or_init_state};
use crate::output::Printer;
use crate::plan::{Plan, file, render};
use crate::state::journal::fold;
use crate::state::local::LocalStateStore;
use crate::state::{State, StateStore};

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
    let plan = file::load(path)?;
    let manifest_digest = if args.manifest.files.is_empty() {
        None
    } else {
        Some(
            args.manifest
                .load(SecretCheck::Required, printer)?
                .manifest
                .digest,
        )
    };
    let store_path = std::path::PathBuf::from(&plan.state_path);
    let store = state_store(&store_path, args.state.as_ref());
    let lock = store.lock("reimage apply")?;
    let Some(mut state) = store.read()? else {
        return Err(Error::StalePlan {
            differences: vec![format!(
                "no state exists at `{}`, but the plan was made against one",
                store.location()
            )],
        });
    };
    let fleet = Fleet::connect(&plan.providers, plan.emulator.as_ref()).await?;
    let reporter = reporter(&args, printer, plan.summary.reinstall as u64);
    let context = Context {
        fleet: &fleet,
        store: &store,
        lock: lock.as_ref(),
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
        resume.stopped = apply::stopped_by(&plan, &steps);
    }
    reconcile(&context, &mut state, printer).await?;
    if args.resume {
        resume.finished = apply::finished_in(&plan, &state);
        resume
            .stopped
            .retain(|server| !resume.finished.contains(server));
    }
    check_not_stale(
        &plan,
        manifest_digest.as_deref(),
        &state,
        &fleet,
        args.resume.then_some(&resume),
    )
    .await?;
    if let Some(error) = blocked_error(&plan) {
        return Err(error);
    }
    if !plan.has_changes() {
        printer.out(&render::text(&plan));
        return Ok(ExitCode::SUCCESS);
    }
    if args.resume && !resume.finished.is_empty() {
        printer.status(&format!(
            "Resuming plan {}: {} server(s) already finished are skipped.",
            plan.plan_id,
            resume.finished.len()
        ));
    }
    execute(&context, &plan, &mut state, &resume, &args, printer).await
}

async fn plan_and_apply(args: ApplyArgs, printer: &Printer) -> Result<ExitCode> {
    let manifest = args.manifest.load(SecretCheck::Required, printer)?.manifest;
    let fleet = Fleet::connect(&manifest.providers, manifest.emulator.as_ref()).await?;
    let store = state_store(&manifest.state_path, args.state.as_ref());
    let lock = store.lock("reimage apply")?;
    let (mut state, created) = read_or_init_state(&store)?;
    let options = PlanOptions {
        targets: args.target.clone(),
        replace: args.replace.clone(),
        rollout: args.rollout.spec(),
    };
    // Before the plan exists (reconciling an interrupted apply), events are plain lines: bars
    // would draw over the plan about to be printed.
    let reporter: Box<dyn Reporter> = if args.json {
        Box::new(JsonReporter::new(printer.clone()))
    } else {
        Box::new(LineReporter::new(printer.clone()))
    };
    let context = Context {
        fleet: &fleet,
        store: &store,
        lock: lock.as_ref(),
        reporter: reporter.as_ref(),
        interrupt: watch_interrupts(),
        settings: Settings::default(),
    };
    reconcile(&context, &mut state, printer).await?;
    let waiting = super::waits::WaitLines::start(printer);
    let mut plan = make_plan(&manifest, &state, &fleet, &options).await?;
    drop(waiting);
    if created {
        // Only now: a plan that could not be made leaves no state behind.
        store.write(lock.as_ref(), &mut state)?;
        plan.state.serial = state.serial;
        printer.status(&format!(
            "Initialized a new state at `{}`.",
            store.location()
        ));
    }
    plan.state_path = store.location();
    if !args.json {
        printer.out(&render::text(&plan));
    }
    if let Some(error) = blocked_error(&plan) {
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
        let approved = confirm::ask(&confirm::prompt(plan.summary.reinstall, plan.summary.adopt))
            .map_err(super::io_error)?;
        if !approved {
            printer.status("\nApply cancelled: nothing was changed.");
            return Ok(ExitCode::FAILURE);
        }
    }
    // The progress display, now that the plan's size is known.
    let reporter = self::reporter(&args, printer, plan.summary.reinstall as u64);
    let context = Context {
        reporter: reporter.as_ref(),
        ..context
    };
    execute(
        &context,
        &plan,
        &mut state,
        &ResumeScope::default(),
        &args,
        printer,
    )
    .await
}

/// Takes over what an interrupted apply left in flight, before anything new starts.
async fn reconcile(context: &Context<'_>, state: &mut State, printer: &Printer) -> Result<()> {
    let unresolved = apply::reconcile_journal(context, state, true).await?;
    for line in &unresolved {
        printer.status(&format!(
            "warning: could not settle an interrupted step: {line}"
        ));
    }
    Ok(())
}

async fn execute(
    context: &Context<'_>,
    plan: &Plan,
    state: &mut State,
    resume: &ResumeScope,
    args: &ApplyArgs,
    printer: &Printer,
) -> Result<ExitCode> {
    let summary = apply::run(context, plan, state, resume).await?;
    if !args.json {
        print_summary(&summary, printer);
    }
    Ok(if summary.interrupted {
        ExitCode::from(EXIT_INTERRUPTED)
    } else if summary.succeeded() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_summary(summary: &ApplySummary, printer: &Printer) {
    let headline = if summary.interrupted {
        "Apply interrupted."
    } else if summary.succeeded() {
        "Apply complete!"
    } else {
        "Apply finished with errors."
    };
    printer.out(&format!(
        "\n{headline} {} reinstalled, {} adopted, {} failed, {} not started.\n",
        summary.reinstalled.len(),
        summary.adopted.len(),
        summary.failed.len(),
        summary.not_started.len()
    ));
    for failed in &summary.failed {
        let request = match &failed.request_id {
            Some(id) if !failed.message.contains(id.as_str()) => format!(" (request id {id})"),
            _ => String::new(),
        };
        printer.status(&format!(
            "  failed: {}: {}{request}",
            failed.server, failed.message
        ));
    }
    for skipped in &summary.not_started {
        printer.status(&format!(
            "  not started: {}: {}",
            skipped.server, skipped.reason
        ));
    }
}

/// Used by `plan`: settles what it can of an interrupted apply without waiting.
pub async fn reconcile_for_plan(
    fleet: &Fleet,
    store: &LocalStateStore,
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
