//! `reimage plan`: show what would change, optionally save it for `apply`.

use std::process::ExitCode;

use super::{PlanArgs, state_store};
use crate::error::Result;
use crate::manifest::SecretCheck;
use crate::ops::fleet::Fleet;
use crate::ops::plan::{PlanOptions, blocked_error, make_plan, read_or_init_state};
use crate::output::Printer;
use crate::plan::{file, render};
use crate::state::StateStore;

pub async fn run(args: PlanArgs, printer: &Printer) -> Result<ExitCode> {
    let loaded = args.manifest.load(SecretCheck::Required, printer)?;
    let manifest = loaded.manifest;
    let fleet = Fleet::connect(&manifest.providers, manifest.emulator.as_ref()).await?;
    let store = state_store(&manifest.state_path, args.state.as_ref());
    let lock = store.lock("reimage plan")?;
    let (mut state, created) = read_or_init_state(&store)?;
    super::apply::reconcile_for_plan(&fleet, &store, lock.as_ref(), &mut state, printer).await?;
    let options = PlanOptions {
        targets: args.target.clone(),
        replace: args.replace.clone(),
        rollout: args.rollout.spec(),
    };
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
    drop(lock);

    let rendered = if args.json {
        format!("{}\n", render::json(&plan))
    } else if args.markdown {
        render::markdown(&plan)
    } else {
        render::text(&plan)
    };
    printer.out(&rendered);
    if let Some(error) = blocked_error(&plan) {
        if args.out.is_some() {
            printer
                .status("The plan was not saved: a plan with blocked servers cannot be applied.");
        }
        return Err(error);
    }
    if let Some(path) = &args.out {
        file::save(&plan, path)?;
        if !args.json {
            printer.status(&format!(
                "\nSaved the plan to: {}\n\nTo perform exactly these actions, run:\n  reimage apply {}",
                path.display(),
                path.display()
            ));
        }
    }
    if args.detailed_exitcode && plan.has_changes() {
        return Ok(ExitCode::from(2));
    }
    Ok(ExitCode::SUCCESS)
}
