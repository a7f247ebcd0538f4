//! The `plan` command's sequence: a session (manifest, providers, state, lock), what an
//! interrupted apply left settled, the plan made, a new state written only once the plan exists;
//! then, once the command has shown it, the plan saved. And `plan --drift`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::drift::{self, DriftReport};
use super::plan::{PlanOptions, blocked_error, make_plan};
use super::session::{ManifestSource, Session};
use super::waits::WaitLines;
use crate::error::Result;
use crate::manifest::model::RolloutSpec;
use crate::output::Printer;
use crate::plan::signature::PlanKey;
use crate::plan::{Plan, file};

/// What `plan` was asked for.
#[derive(Debug, Clone)]
pub struct PlanRequest {
    pub manifest: ManifestSource,
    /// `--state PATH`: a local state file instead of the manifest's backend.
    pub state: Option<PathBuf>,
    pub lock_timeout: Duration,
    pub targets: Vec<String>,
    pub replace: Vec<String>,
    pub rollout: RolloutSpec,
    pub ttl: jiff::SignedDuration,
}

impl PlanRequest {
    fn options(&self) -> PlanOptions {
        PlanOptions {
            targets: self.targets.clone(),
            replace: self.replace.clone(),
            rollout: self.rollout,
            ttl: self.ttl,
        }
    }
}

/// Makes the plan under the state lock (released before it returns).
pub async fn make(request: &PlanRequest, printer: &Printer) -> Result<Plan> {
    // Providers are built first: a manifest they refuse leaves no state behind.
    let mut session =
        Session::for_manifest(&request.manifest, request.state.as_ref(), true, printer).await?;
    session.lock("reimage plan", request.lock_timeout).await?;
    let (mut state, created) = session.read_or_init_state()?;
    session.reconcile_without_waiting(&mut state).await?;
    let (manifest, fleet) = (required(session.manifest())?, session.fleet()?);
    let waiting = WaitLines::start(printer, fleet.waits());
    let mut plan = make_plan(manifest, &state, session.store(), fleet, &request.options()).await?;
    drop(waiting);
    // `--state PATH` overrides the manifest's backend: the plan names the one it was made with.
    plan.backend = session.backend().remote();
    if created {
        // Only now: a plan that could not be made leaves no state behind.
        let store = session.store();
        store.write(session.held_lock()?, &mut state)?;
        plan.state.serial = state.serial;
        printer.status(&format!(
            "Initialized a new state at `{}`.",
            store.location()
        ));
    }
    session.unlock();
    Ok(plan)
}

/// After the plan was shown: refuses a plan with blocked servers (saying it was not saved when
/// `out` asked for it), else saves it to `out` (signed with `key`). Returns the signature's path
/// when one was written.
pub fn finish(
    plan: &Plan,
    out: Option<&Path>,
    key: Option<&PlanKey>,
    printer: &Printer,
) -> Result<Option<PathBuf>> {
    if let Some(error) = blocked_error(plan) {
        if out.is_some() {
            printer
                .status("The plan was not saved: a plan with blocked servers cannot be applied.");
        }
        return Err(error);
    }
    match out {
        Some(path) => Ok(file::save(plan, path, key)?),
        None => Ok(None),
    }
}

/// `plan --drift`: reads the fleet once and compares it with the state (read without the lock;
/// nothing is written).
pub async fn drift(request: &PlanRequest, printer: &Printer) -> Result<DriftReport> {
    let session =
        Session::for_manifest(&request.manifest, request.state.as_ref(), true, printer).await?;
    let (state, _) = session.read_or_init_state()?;
    let (manifest, fleet) = (required(session.manifest())?, session.fleet()?);
    let options = PlanOptions {
        replace: Vec::new(),
        ..request.options()
    };
    let waiting = WaitLines::start(printer, fleet.waits());
    let plan = make_plan(manifest, &state, session.store(), fleet, &options).await?;
    let report = drift::check(manifest, &state, session.store(), fleet, &plan).await?;
    drop(waiting);
    Ok(report)
}

fn required(manifest: Option<&crate::manifest::Manifest>) -> Result<&crate::manifest::Manifest> {
    manifest.ok_or_else(|| crate::error::Error::Io {
        message: "internal: the plan needs the manifest".to_string(),
    })
}
