//! `reimage apply [PLANFILE]`: carry out a saved plan, or plan, confirm and carry out.

use std::process::ExitCode;

use super::{ApplyArgs, state_store};
use crate::apply::{self, ApplySummary, Event, check_not_stale, confirm};
use crate::error::{Error, Result};
use crate::manifest::SecretCheck;
use crate::ops::fleet::Fleet;
use crate::ops::plan::{PlanOptions, blocked_error, make_plan, read_or_init_state};
use crate::output::Printer;
use crate::plan::{Plan, file, render};
use crate::state::StateStore;

pub async fn run(args: ApplyArgs, printer: &Printer) -> Result<ExitCode> {
    match args.plan_file.clone() {
        Some(path) => apply_saved_plan(args, &path, printer).await,
        None => plan_and_apply(args, printer).await,
    }
}

async fn apply_saved_plan(
    args: ApplyArgs,
    path: &std::path::Path,
    printer: &Printer,
) -> Result<ExitCode> {
    if !args.target.is_empty() || !args.replace.is_empty() {
        return Err(Error::usage(
            "`--target` and `--replace` cannot be used with a saved plan",
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
    check_not_stale(&plan, manifest_digest.as_deref(), &state, &fleet).await?;
    if let Some(error) = blocked_error(&plan) {
        return Err(error);
    }
    if !plan.has_changes() {
        printer.out(&render::text(&plan));
        return Ok(ExitCode::SUCCESS);
    }
    execute(&plan, &fleet, &store, lock.as_ref(), &mut state, args.max_parallel, printer).await
}

async fn plan_and_apply(args: ApplyArgs, printer: &Printer) -> Result<ExitCode> {
    let manifest = args.manifest.load(SecretCheck::Required, printer)?.manifest;
    let store = state_store(&manifest.state_path, args.state.as_ref());
    let lock = store.lock("reimage apply")?;
    let (mut state, created) = read_or_init_state(&store, lock.as_ref())?;
    if created {
        printer.status(&format!("Initialized a new state at `{}`.", store.location()));
    }
    let fleet = Fleet::connect(&manifest.providers, manifest.emulator.as_ref()).await?;
    let options = PlanOptions {
        targets: args.target.clone(),
        replace: args.replace.clone(),
    };
    let mut plan = make_plan(&manifest, &state, &fleet, &options).await?;
    plan.state_path = store.location();
    printer.out(&render::text(&plan));
    if let Some(error) = blocked_error(&plan) {
        return Err(error);
    }
    if !plan.has_changes() {
        return Ok(ExitCode::SUCCESS);
    }
    if !args.auto_approve {
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
    execute(&plan, &fleet, &store, lock.as_ref(), &mut state, args.max_parallel, printer).await
}

async fn execute(
    plan: &Plan,
    fleet: &Fleet,
    store: &dyn StateStore,
    lock: &dyn crate::state::StateLock,
    state: &mut crate::state::State,
    max_parallel: usize,
    printer: &Printer,
) -> Result<ExitCode> {
    let report = |event: Event| printer.status(&describe(&event));
    let summary = apply::execute(plan, fleet, store, lock, state, max_parallel, &report).await?;
    print_summary(&summary, printer);
    Ok(if summary.succeeded() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn clock() -> String {
    jiff::Zoned::now().strftime("%H:%M:%S").to_string()
}

fn describe(event: &Event) -> String {
    let line = match event {
        Event::Adopted { server } => format!("{server}: adopted (recorded in state)"),
        Event::ReinstallStarted { server, request_id } => match request_id {
            Some(id) => format!("{server}: reinstall started (request id {id})"),
            None => format!("{server}: reinstall started"),
        },
        Event::Waiting {
            server,
            detail,
            elapsed,
        } => format!("{server}: {detail} [{}s elapsed]", elapsed.as_secs()),
        Event::Reinstalled { server, elapsed } => {
            format!("{server}: reinstalled in {}s", elapsed.as_secs())
        }
        Event::Failed { server, message } => format!("{server}: FAILED: {message}"),
    };
    format!("[{}] {line}", clock())
}

fn print_summary(summary: &ApplySummary, printer: &Printer) {
    let headline = if summary.succeeded() {
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
    for (server, message) in &summary.failed {
        printer.status(&format!("  failed: {server}: {message}"));
    }
    for server in &summary.not_started {
        printer.status(&format!("  not started: {server}"));
    }
}
