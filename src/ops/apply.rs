//! `apply`: a saved plan checked and carried out, or a fresh plan made, confirmed and carried
//! out; either way under the state lock, after what an interrupted apply left in flight is
//! settled, and recorded in the history.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::history::{self, ApplyRun, Ending};
use super::plan::{PlanOptions, blocked_error, make_plan};
use super::session::{ManifestSource, Session, first_folder, load_manifest};
use crate::apply::artifact::{self, Requirements, SignatureCheck};
use crate::apply::{
    self, ApplyReport, ApplySummary, Interrupt, Reporter, ResumeScope, check_not_stale, confirm,
};
use crate::error::{Error, Result};
use crate::manifest::model::RolloutSpec;
use crate::output::Printer;
use crate::plan::signature::{PLAN_KEY_ENV, PlanKey, signature_path};
use crate::plan::{Plan, file, render};
use crate::state::State;
use crate::state::history::ServerOutcome;
use crate::state::journal::fold;

/// What `apply` was asked to do.
#[derive(Debug, Clone)]
pub struct ApplyRequest {
    /// The saved plan to carry out; none: plan afresh from the manifest.
    pub plan_file: Option<PathBuf>,
    /// The manifest: required without a plan file; with one, only its digest and folder are used.
    pub manifest: Option<ManifestSource>,
    /// `--state PATH`: a local state file instead of the backend named.
    pub state: Option<PathBuf>,
    pub lock_timeout: Duration,
    pub targets: Vec<String>,
    pub replace: Vec<String>,
    pub rollout: RolloutSpec,
    /// Whether any rollout flag was given (refused with a saved plan).
    pub rollout_given: bool,
    pub resume: bool,
    pub require_signed: bool,
    pub require_commit: Option<String>,
    pub auto_approve: bool,
    /// `-input`: whether a terminal may be asked for confirmation.
    pub ask: bool,
    /// Machine-readable events: the plan's text is not printed.
    pub json: bool,
}

/// How an apply shows itself: the command's choice of progress display and summary.
pub trait ApplyDisplay {
    /// The progress display: for `Some(total)` reinstalls once the plan is known; plain lines
    /// (`None`) before that, so that no bar draws over the plan about to be printed.
    fn reporter(&self, total: Option<u64>) -> Box<dyn Reporter>;
    /// Called once the apply ran, before its history entry is written.
    fn summary(&self, report: &ApplyReport);
}

/// How an apply ended, for the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyEnding {
    /// The plan has no changes: nothing ran.
    NoChanges,
    /// The operator said no.
    Cancelled,
    /// It ran: every server ended well.
    Succeeded,
    /// It ran: some server failed.
    Failed,
    /// Ctrl-C stopped it.
    Interrupted,
}

/// Carries out the request.
pub async fn run(
    request: &ApplyRequest,
    display: &dyn ApplyDisplay,
    printer: &Printer,
) -> Result<ApplyEnding> {
    match &request.plan_file {
        Some(path) => apply_saved_plan(request, path, display, printer).await,
        None => plan_and_apply(request, display, printer).await,
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

async fn apply_saved_plan(
    request: &ApplyRequest,
    path: &Path,
    display: &dyn ApplyDisplay,
    printer: &Printer,
) -> Result<ApplyEnding> {
    if !request.targets.is_empty() || !request.replace.is_empty() || request.rollout_given {
        return Err(Error::usage(
            "`--target`, `--replace` and rollout flags cannot be used with a saved plan",
            "a saved plan is applied exactly as reviewed; make a new plan with those flags instead",
        ));
    }
    let plan = checked_plan(request, path, printer)?;
    let manifest = match &request.manifest {
        Some(source) => Some(load_manifest(source, printer)?),
        None => None,
    };
    let manifest_digest = manifest.as_ref().map(|manifest| manifest.digest.clone());
    // The history names the commit of the manifest's repository, else the plan file's.
    let folder = match &manifest {
        Some(manifest) => first_folder(&manifest.files),
        None => first_folder(std::slice::from_ref(&path.to_path_buf())),
    };
    let backend = super::backend::Backend::choose(
        plan.backend.as_ref(),
        Path::new(&plan.state_path),
        request.state.as_ref(),
    );
    let mut session = Session::open(backend, manifest, printer).await?;
    session.lock("reimage apply", request.lock_timeout).await?;
    let mut progress = Progress::new(&folder);
    progress.plan = Some(plan.clone());
    let result = apply_saved_plan_locked(
        request,
        &plan,
        manifest_digest.as_deref(),
        &mut session,
        display,
        &mut progress,
    )
    .await;
    progress.record(&session, &result);
    result
}

/// The saved plan, its signature and its requirements checked over the bytes read.
fn checked_plan(request: &ApplyRequest, path: &Path, printer: &Printer) -> Result<Plan> {
    let requirements = Requirements {
        signed: request.require_signed,
        commit: request.require_commit.clone(),
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
    Ok(plan)
}

/// The saved plan's apply once the state is locked; `progress` says how far it got.
async fn apply_saved_plan_locked(
    request: &ApplyRequest,
    plan: &Plan,
    manifest_digest: Option<&str>,
    session: &mut Session,
    display: &dyn ApplyDisplay,
    progress: &mut Progress,
) -> Result<ApplyEnding> {
    let Some(state) = session.store().read()? else {
        return Err(Error::StalePlan {
            differences: vec![format!(
                "no state exists at `{}`, but the plan was made against one",
                session.store().location()
            )],
        });
    };
    let state = progress.state.insert(state);
    session
        .connect(&plan.providers, plan.emulator.as_ref())
        .await?;
    let reporter = display.reporter(Some(plan.summary.reinstall as u64));
    let context = apply::Context {
        interrupt: watch_interrupts(),
        ..session.context(reporter.as_ref())?
    };
    let store = session.store();
    let mut resume = ResumeScope::default();
    if request.resume {
        let steps = fold(
            &store
                .journal()
                .read()
                .map_err(|error| Error::State(error.into()))?,
        );
        resume.stopped = apply::stopped_by(plan, &steps);
    }
    progress.settled = Session::reconcile_and_wait(&context, state, session.printer()).await?;
    if request.resume {
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
        context.fleet,
        request.resume.then_some(&resume),
    )
    .await?;
    if let Some(error) = blocked_error(plan) {
        return Err(error);
    }
    let printer = session.printer();
    if !plan.has_changes() {
        printer.out(&render::text(plan));
        return Ok(ApplyEnding::NoChanges);
    }
    if request.resume && !resume.finished.is_empty() {
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
        display,
        &mut progress.summary,
    )
    .await
}

async fn plan_and_apply(
    request: &ApplyRequest,
    display: &dyn ApplyDisplay,
    printer: &Printer,
) -> Result<ApplyEnding> {
    let source = request.manifest.as_ref().ok_or_else(|| Error::Io {
        message: "internal: a fresh apply needs the manifest".to_string(),
    })?;
    // Providers are built first: a manifest they refuse leaves no state behind.
    let mut session = Session::for_manifest(source, request.state.as_ref(), true, printer).await?;
    session.lock("reimage apply", request.lock_timeout).await?;
    let folder = first_folder(
        session
            .manifest()
            .map_or(&[][..], |manifest| manifest.files.as_slice()),
    );
    let mut progress = Progress::new(&folder);
    let result = plan_and_apply_locked(request, &session, display, &mut progress).await;
    progress.record(&session, &result);
    result
}

/// Plan, confirm and apply once the state is locked; `progress` says how far it got.
async fn plan_and_apply_locked(
    request: &ApplyRequest,
    session: &Session,
    display: &dyn ApplyDisplay,
    progress: &mut Progress,
) -> Result<ApplyEnding> {
    let manifest = session.manifest().ok_or_else(|| Error::Io {
        message: "internal: a fresh apply needs the manifest".to_string(),
    })?;
    let (store, printer) = (session.store(), session.printer());
    let (state, created) = session.read_or_init_state()?;
    let state = progress.state.insert(state);
    let options = PlanOptions {
        targets: request.targets.clone(),
        replace: request.replace.clone(),
        rollout: request.rollout,
        ..PlanOptions::default()
    };
    // Before the plan exists (reconciling an interrupted apply), events are plain lines: bars
    // would draw over the plan about to be printed.
    let reporter = display.reporter(None);
    let context = apply::Context {
        interrupt: watch_interrupts(),
        ..session.context(reporter.as_ref())?
    };
    progress.settled = Session::reconcile_and_wait(&context, state, printer).await?;
    let waiting = super::waits::WaitLines::start(printer, context.fleet.waits());
    let mut plan = make_plan(manifest, state, store, context.fleet, &options).await?;
    drop(waiting);
    // `--state PATH` overrides the manifest's backend: the plan names the one it was made with.
    plan.backend = session.backend().remote();
    if created {
        // Only now: a plan that could not be made leaves no state behind.
        store.write(context.lock, state)?;
        plan.state.serial = state.serial;
        printer.status(&format!(
            "Initialized a new state at `{}`.",
            store.location()
        ));
    }
    let plan = progress.plan.insert(plan);
    if !request.json {
        printer.out(&render::text(plan));
    }
    if let Some(error) = blocked_error(plan) {
        return Err(error);
    }
    if !plan.has_changes() {
        return Ok(ApplyEnding::NoChanges);
    }
    if !request.auto_approve {
        if !request.ask {
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
        let approved =
            confirm::ask(&confirm::prompt(&plan.summary)).map_err(|error| Error::Io {
                message: error.to_string(),
            })?;
        if !approved {
            printer.status("\nApply cancelled: nothing was changed.");
            progress.cancelled = true;
            return Ok(ApplyEnding::Cancelled);
        }
    }
    // The progress display, now that the plan's size is known.
    let reporter = display.reporter(Some(plan.summary.reinstall as u64));
    let context = apply::Context {
        reporter: reporter.as_ref(),
        ..context
    };
    execute(
        &context,
        plan,
        state,
        &ResumeScope::default(),
        display,
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
    fn new(folder: &Path) -> Progress {
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
    fn record(&self, session: &Session, result: &Result<ApplyEnding>) {
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
        if let Err(error) = session.store().history().append(&entry) {
            session.printer().status(&format!(
                "warning: this apply was not recorded in the history: {error}"
            ));
        }
    }
}

/// Runs the plan; `summary_out` receives how it ended.
async fn execute(
    context: &apply::Context<'_>,
    plan: &Plan,
    state: &mut State,
    resume: &ResumeScope,
    display: &dyn ApplyDisplay,
    summary_out: &mut Option<ApplySummary>,
) -> Result<ApplyEnding> {
    let report = apply::run(context, plan, state, resume).await?;
    *summary_out = Some(report.summary.clone());
    display.summary(&report);
    Ok(if report.summary.interrupted {
        ApplyEnding::Interrupted
    } else if report.succeeded() {
        ApplyEnding::Succeeded
    } else {
        ApplyEnding::Failed
    })
}
