//! `reimage plan`: show what would change, optionally save it for `apply`.

use std::process::ExitCode;

use super::{PlanArgs, lock_state, open_state};
use crate::error::Result;
use crate::manifest::SecretCheck;
use crate::ops::backend::Backend;
use crate::ops::plan::{PlanOptions, blocked_error, make_plan, read_or_init_state};
use crate::output::Printer;
use crate::plan::signature::{PLAN_KEY_ENV, PlanKey};
use crate::plan::{Plan, file, render};
use crate::provider::limits::WaitSink;

pub async fn run(args: PlanArgs, printer: &Printer) -> Result<ExitCode> {
    if args.drift {
        return drift(args, printer).await;
    }
    // A bad signing key is refused before anything is planned.
    let key = match &args.out {
        Some(_) => PlanKey::from_env()?,
        None => None,
    };
    let loaded = args.manifest.load(SecretCheck::Required, printer)?;
    let manifest = loaded.manifest;
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
    let lock = lock_state(
        store.as_ref(),
        "reimage plan",
        args.lock.lock_timeout,
        printer,
    )
    .await?;
    let (mut state, created) = read_or_init_state(store.as_ref())?;
    super::apply::reconcile_for_plan(&fleet, store.as_ref(), lock.as_ref(), &mut state, printer)
        .await?;
    let options = PlanOptions {
        targets: args.target.clone(),
        replace: args.replace.clone(),
        rollout: args.rollout.spec(),
        ttl: args.plan_ttl,
    };
    let waiting = super::waits::WaitLines::start(printer, fleet.waits());
    let mut plan = make_plan(&manifest, &state, store.as_ref(), &fleet, &options).await?;
    drop(waiting);
    // `--state PATH` overrides the manifest's backend: the plan names the one it was made with.
    plan.backend = backend.remote();
    if created {
        // Only now: a plan that could not be made leaves no state behind.
        store.write(lock.as_ref(), &mut state)?;
        plan.state.serial = state.serial;
        printer.status(&format!(
            "Initialized a new state at `{}`.",
            store.location()
        ));
    }
    drop(lock);

    print_plan(&plan, args.json, args.markdown, printer);
    append_step_summary(&plan, printer);
    if let Some(error) = blocked_error(&plan) {
        if args.out.is_some() {
            printer
                .status("The plan was not saved: a plan with blocked servers cannot be applied.");
        }
        return Err(error);
    }
    if let Some(path) = &args.out {
        let signature = file::save(&plan, path, key.as_ref())?;
        if !args.json {
            let signed = match &signature {
                Some(signature) => format!(
                    "\nSigned it (HMAC-SHA256 with `{PLAN_KEY_ENV}`): {}",
                    signature.display()
                ),
                None => String::new(),
            };
            printer.status(&format!(
                "\nSaved the plan to: {}{signed}\nPlan {}{}, valid until {}.\n\nTo perform \
                 exactly these actions, run:\n  reimage apply {}",
                path.display(),
                plan.plan_id,
                match &plan.commit {
                    Some(commit) => format!(" made at commit {commit}"),
                    None => String::new(),
                },
                plan.expires_at,
                path.display()
            ));
        }
    }
    if args.detailed_exitcode && plan.has_changes() {
        return Ok(ExitCode::from(2));
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints the plan as JSON, markdown or text, a piece at a time (a plan of many servers is never
/// held as one string).
pub(crate) fn print_plan(plan: &Plan, json: bool, markdown: bool, printer: &Printer) {
    if json {
        use std::io::Write;
        let mut out = printer.out_writer();
        // A closed pipe is not an error worth reporting (as with `Printer::out`).
        let _ = render::json_to(plan, &mut out).and_then(|()| out.write_all(b"\n"));
        let _ = out.flush();
    } else if markdown {
        render::markdown_to(plan, &mut |chunk| printer.out(chunk));
    } else {
        render::text_to(plan, &mut |chunk| printer.out(chunk));
    }
}

/// `plan --drift`: reads the fleet once and compares it with the state (read without the lock;
/// nothing is written). Exit 2 on drift.
async fn drift(args: PlanArgs, printer: &Printer) -> Result<ExitCode> {
    let loaded = args.manifest.load(SecretCheck::Required, printer)?;
    let manifest = loaded.manifest;
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
    let (state, _) = read_or_init_state(store.as_ref())?;
    let options = PlanOptions {
        targets: args.target.clone(),
        replace: Vec::new(),
        rollout: args.rollout.spec(),
        ttl: args.plan_ttl,
    };
    let waiting = super::waits::WaitLines::start(printer, fleet.waits());
    let plan = make_plan(&manifest, &state, store.as_ref(), &fleet, &options).await?;
    let report = crate::ops::drift::check(&manifest, &state, store.as_ref(), &fleet, &plan).await?;
    drop(waiting);
    let rendered = if args.json {
        format!("{}\n", crate::ops::drift::render::json(&report))
    } else if args.markdown {
        crate::ops::drift::render::markdown(&report)
    } else {
        crate::ops::drift::render::text(&report)
    };
    printer.out(&rendered);
    if let Some(path) = std::env::var_os("GITHUB_STEP_SUMMARY").filter(|path| !path.is_empty()) {
        let written = fs_err::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut summary| {
                use std::io::Write;
                summary.write_all(crate::ops::drift::render::markdown(&report).as_bytes())
            });
        if let Err(error) = written {
            printer.status(&format!(
                "warning: could not append the drift report to `$GITHUB_STEP_SUMMARY`: {error}"
            ));
        }
    }
    Ok(if report.has_drift() {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

/// In GitHub Actions, the markdown plan also goes to the job's summary page. A failure to write
/// it is a warning: the plan itself is complete.
fn append_step_summary(plan: &Plan, printer: &Printer) {
    let Some(path) = std::env::var_os("GITHUB_STEP_SUMMARY").filter(|path| !path.is_empty()) else {
        return;
    };
    let written = fs_err::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut summary| {
            use std::io::Write;
            summary.write_all(format!("{}\n", render::markdown(plan)).as_bytes())
        });
    if let Err(error) = written {
        printer.status(&format!(
            "warning: could not append the plan to `$GITHUB_STEP_SUMMARY`: {error}"
        ));
    }
}
