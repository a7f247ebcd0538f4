//! Apply: refuse a stale plan, then carry out exactly the plan's actions, wave by wave, and
//! record each outcome.
//!
//! - [`stale`]: what a saved plan was made against is checked again;
//! - [`engine`]: the engine (waves, calls, watching, reconciliation);
//! - [`protocol`]: the journal protocol of a step, in the only order it may have;
//! - [`records`]: what the state records per outcome;
//! - [`events`] and [`progress`]: what the operator sees;
//! - [`confirm`]: the interactive question.

pub mod confirm;
pub mod engine;
pub mod events;
pub mod progress;
pub mod protocol;
pub mod records;
pub mod stale;

use std::collections::BTreeSet;
use std::sync::Arc;

pub use engine::{ApplySummary, EarlierServer, Engine, Interrupt, ResumeScope, Settings};
pub use events::{Event, Reporter};
pub use stale::check_not_stale;

use crate::digest::sha256_hex;
use crate::error::{Error, Result};
use crate::ops::fleet::Fleet;
use crate::plan::model::Plan;
use crate::state::journal::{Step, StepOutcome, StepState, fold};
use crate::state::{State, StateLock, StateStore};

/// Deterministic per (plan, server, step), so a retried or resumed step reuses its token.
pub fn step_token(plan_id: &str, server: &str, step: &str) -> String {
    sha256_hex(format!("{plan_id}/{server}/{step}").as_bytes())[..32].to_string()
}

/// Everything an apply shares.
pub struct Context<'a> {
    pub fleet: &'a Fleet,
    pub store: &'a dyn StateStore,
    pub lock: &'a dyn StateLock,
    pub reporter: &'a dyn Reporter,
    pub interrupt: Arc<Interrupt>,
    pub settings: Settings,
}

/// Carries out a plan (approved, and checked not to be stale).
pub async fn run(
    context: &Context<'_>,
    plan: &Plan,
    state: &mut State,
    resume: &ResumeScope,
) -> Result<ApplySummary> {
    let problems = crate::plan::rollout::over_cap(&plan.servers, &plan.rollout);
    if !problems.is_empty() {
        return Err(Error::usage(
            format!("refusing to apply: {}", problems.join("; ")),
            "nothing was changed. Raise `max_reinstalls` (policy or `--max-reinstalls`) if this is \
             intended, or apply in smaller parts with `--target`",
        ));
    }
    context.reporter.report(Event::Plan {
        plan_id: plan.plan_id.clone(),
        reinstall: plan.summary.reinstall,
        adopt: plan.summary.adopt,
        waves: plan.waves.len(),
    });
    let earlier = earlier_outcomes(plan, state, &resume.finished);
    let mut engine = Engine::new(Some(plan), context, state);
    engine.summary_mut().earlier = earlier;
    engine.mark_applying(plan)?;
    engine.adopt_all(plan, &resume.finished)?;
    engine.run_waves(plan, resume).await?;
    engine.finish(true)?;
    let summary = engine.summary().clone();
    context.reporter.report(Event::Summary {
        reinstalled: summary.reinstalled.clone(),
        adopted: summary.adopted.clone(),
        failed: summary.failed.clone(),
        unknown: summary.unknown.clone(),
        refused: summary.refused.clone(),
        skipped: summary.skipped.clone(),
        not_started: summary.not_started.clone(),
        earlier: summary.earlier.clone(),
    });
    Ok(summary)
}

/// How an earlier run of `plan` ended each planned reinstall it finished (`--resume`), so the
/// summary counts every step of the plan.
fn earlier_outcomes(plan: &Plan, state: &State, finished: &BTreeSet<String>) -> Vec<EarlierServer> {
    plan.servers
        .iter()
        .filter(|server| server.action.is_destructive() && finished.contains(&server.name))
        .filter_map(|server| {
            let operation = state.servers.get(&server.name)?.last_operation.as_ref()?;
            (operation.plan_id == plan.plan_id).then(|| EarlierServer {
                server: server.name.clone(),
                outcome: operation.outcome,
                message: operation.message.clone(),
            })
        })
        .collect()
}

/// Takes over what an earlier, interrupted apply left in the journal: finished outcomes are
/// recorded, in-flight steps checked with the provider (and, with `wait`, watched to the end).
/// Returns a line per step it could not settle.
pub async fn reconcile_journal(
    context: &Context<'_>,
    state: &mut State,
    wait: bool,
) -> Result<Vec<String>> {
    let entries = context
        .store
        .journal()
        .read()
        .map_err(|error| Error::State(error.into()))?;
    if entries.is_empty() {
        return Ok(Vec::new());
    }
    let steps = fold(&entries);
    let mut engine = Engine::new(None, context, state);
    engine.replay_finished(&steps)?;
    let unresolved = engine.reconcile(steps, wait).await?;
    engine.finish(false)?;
    Ok(unresolved)
}

/// The servers of `plan` an interrupted apply already handled, read before reconciliation
/// (stops) and after it (outcomes in the state).
pub fn stopped_by(plan: &Plan, steps: &[StepState]) -> BTreeSet<String> {
    steps
        .iter()
        .filter(|step| step.plan_id == plan.plan_id && step.step == Step::Stop)
        .filter(|step| {
            step.in_flight() || matches!(step.outcome, Some((StepOutcome::Succeeded, _)))
        })
        .map(|step| step.server.clone())
        .filter(|server| {
            !steps.iter().any(|other| {
                other.plan_id == plan.plan_id
                    && other.step == Step::Reinstall
                    && &other.server == server
            })
        })
        .collect()
}

/// Servers whose outcome for `plan` is already in the state.
pub fn finished_in(plan: &Plan, state: &State) -> BTreeSet<String> {
    state
        .servers
        .iter()
        .filter(|(_, record)| {
            record
                .last_operation
                .as_ref()
                .is_some_and(|operation| operation.plan_id == plan.plan_id)
        })
        .map(|(name, _)| name.clone())
        .collect()
}
