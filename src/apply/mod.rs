//! Apply: refuse a stale plan, then carry out exactly the plan's actions, wave by wave, and
//! record each outcome.
//!
//! - [`artifact`]: a saved plan is the approved one (signature, expiry, commit);
//! - [`stale`]: what a saved plan was made against is checked again;
//! - [`engine`]: the engine (waves, calls, watching, reconciliation);
//! - [`protocol`]: the journal protocol of a step, in the only order it may have;
//! - [`records`]: what the state records per outcome;
//! - [`events`] and [`progress`]: what the operator sees;
//! - [`confirm`]: the interactive question.

pub mod artifact;
pub mod confirm;
pub mod engine;
pub mod events;
pub mod gate;
pub mod progress;
pub mod protocol;
pub mod records;
pub mod stale;

use std::collections::BTreeSet;
use std::sync::Arc;

pub use engine::{ApplySummary, EarlierServer, Engine, Interrupt, ResumeScope, Settings};
pub use events::{Event, NotStartedServer, Reporter};
pub use stale::check_not_stale;

use crate::digest::sha256_hex;
use crate::error::{Error, Result};
use crate::plan::model::{ActionKind, Plan};
use crate::provider::fleet::Fleet;
use crate::state::journal::{StepCall, StepOutcome, StepState, fold, servers_in_flight};
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

/// What an apply did: the engine's summary (reinstalls, adoptions, failures) and the
/// record-only changes made beside it.
#[derive(Debug, Default, Clone)]
pub struct ApplyReport {
    pub summary: ApplySummary,
    /// Records whose `protect` flag was updated.
    pub records_updated: Vec<String>,
    /// Records removed (servers no longer in the manifest).
    pub forgotten: Vec<String>,
}

impl ApplyReport {
    pub fn succeeded(&self) -> bool {
        self.summary.succeeded()
    }
}

/// Carries out a plan (approved, and checked not to be stale).
pub async fn run(
    context: &Context<'_>,
    plan: &Plan,
    state: &mut State,
    resume: &ResumeScope,
) -> Result<ApplyReport> {
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
        update_record: plan.summary.update_record,
        forget: plan.summary.forget,
        waves: plan.waves.len(),
    });
    let records = change_records(context, plan, state)?;
    // A server whose gate is run again is counted by this run, not as an earlier one.
    let finished_earlier: BTreeSet<String> = resume
        .finished
        .difference(&resume.gate_pending)
        .cloned()
        .collect();
    let earlier = earlier_outcomes(plan, state, &finished_earlier);
    let mut engine = Engine::new(Some(plan), context, state);
    engine.summary_mut().earlier = earlier;
    engine.mark_applying(plan)?;
    engine.adopt_all(plan, &resume.finished)?;
    engine.run_waves(plan, resume).await?;
    engine.finish(true)?;
    let mut summary = engine.summary().clone();
    summary.not_started.extend(records.not_done);
    context.reporter.report(Event::Summary {
        reinstalled: summary.reinstalled.clone(),
        adopted: summary.adopted.clone(),
        records_updated: records.updated.clone(),
        forgotten: records.forgotten.clone(),
        failed: summary.failed.clone(),
        gate_failed: summary.gate_failed.clone(),
        unknown: summary.unknown.clone(),
        refused: summary.refused.clone(),
        skipped: summary.skipped.clone(),
        not_started: summary.not_started.clone(),
        earlier: summary.earlier.clone(),
    });
    Ok(ApplyReport {
        summary,
        records_updated: records.updated,
        forgotten: records.forgotten,
    })
}

/// The record-only changes of one apply.
#[derive(Debug, Default)]
struct RecordChanges {
    updated: Vec<String>,
    forgotten: Vec<String>,
    not_done: Vec<NotStartedServer>,
}

/// Carries out the plan's changes that touch only the state, in one atomic write, before any
/// machine is touched: `update-record` (the `protect` flag) and `forget` (the record removed).
/// A server with a journaled step still in flight is never forgotten. Running this again (a
/// resumed apply) changes nothing more.
fn change_records(context: &Context<'_>, plan: &Plan, state: &mut State) -> Result<RecordChanges> {
    let mut changes = RecordChanges::default();
    if !plan
        .servers
        .iter()
        .any(|server| matches!(server.action, ActionKind::UpdateRecord | ActionKind::Forget))
    {
        return Ok(changes);
    }
    let in_flight = servers_in_flight(
        &context
            .store
            .journal()
            .read()
            .map_err(|error| Error::State(error.into()))?,
    );
    let now = records::now_text();
    for server in &plan.servers {
        match server.action {
            ActionKind::UpdateRecord => match state.servers.get_mut(&server.name) {
                Some(record) if record.cloud_id == server.cloud_id => {
                    if record.protected != server.desired.protect {
                        record.protected = server.desired.protect;
                        record.updated_at = now.clone();
                        changes.updated.push(server.name.clone());
                        context.reporter.report(Event::RecordUpdated {
                            server: server.name.clone(),
                            protected: server.desired.protect,
                        });
                    }
                }
                _ => changes.not_done.push(NotStartedServer {
                    server: server.name.clone(),
                    reason: "its record is no longer in the state".to_string(),
                }),
            },
            ActionKind::Forget => {
                if let Some(step) = in_flight.get(&server.name) {
                    changes.not_done.push(NotStartedServer {
                        server: server.name.clone(),
                        reason: format!(
                            "not forgotten: a `{}` step for it is still in flight",
                            step.as_str()
                        ),
                    });
                } else if state.servers.remove(&server.name).is_some() {
                    changes.forgotten.push(server.name.clone());
                    context.reporter.report(Event::Forgotten {
                        server: server.name.clone(),
                    });
                }
            }
            _ => {}
        }
    }
    for not_done in &changes.not_done {
        context.reporter.report(Event::NotStarted {
            server: not_done.server.clone(),
            reason: not_done.reason.clone(),
        });
    }
    if !changes.updated.is_empty() || !changes.forgotten.is_empty() {
        context.store.write(context.lock, state)?;
    }
    Ok(changes)
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
    let reinstalling: BTreeSet<&str> = steps
        .iter()
        .filter(|step| step.plan_id == plan.plan_id && step.step == StepCall::Reinstall)
        .map(|step| step.server.as_str())
        .collect();
    steps
        .iter()
        .filter(|step| step.plan_id == plan.plan_id && step.step == StepCall::Stop)
        .filter(|step| {
            step.in_flight() || matches!(step.outcome, Some((StepOutcome::Succeeded, _)))
        })
        .filter(|step| !reinstalling.contains(step.server.as_str()))
        .map(|step| step.server.clone())
        .collect()
}

/// Servers `plan` installed whose health gate never ended (a crash or the second Ctrl-C while
/// gating): `--resume` runs their gates again.
pub fn gates_pending_in(plan: &Plan, state: &State) -> BTreeSet<String> {
    state
        .servers
        .iter()
        .filter(|(_, record)| {
            record.last_operation.as_ref().is_some_and(|operation| {
                operation.plan_id == plan.plan_id
                    && operation
                        .health
                        .as_ref()
                        .is_some_and(|health| health.status == crate::state::GateStatus::Pending)
            })
        })
        .map(|(name, _)| name.clone())
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
