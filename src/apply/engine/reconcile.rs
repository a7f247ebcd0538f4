//! Reconciliation: the steps an interrupted apply (crash, `kill -9`, a second Ctrl-C) left
//! open in the journal are taken over and settled with the provider before anything new
//! starts. An accepted install is polled; a call whose answer never came is judged from the
//! server as any lost answer is (see [`super::evidence`]), by the time since its last call.

use std::time::Instant;

use super::{Engine, Item, WatchStage, age_of};
use crate::apply::events::Event;
use crate::apply::protocol::OpenStep;
use crate::error::{Error, Result};
use crate::state::journal::{StepCall, StepState};

impl Engine<'_> {
    /// Takes over the steps an earlier, interrupted apply left in flight. With `wait`, watches
    /// them to the end (apply: every wait has its deadline); without, looks once (plan) and
    /// leaves the rest in flight. Returns a line per step it could not settle.
    pub async fn reconcile(&mut self, steps: Vec<StepState>, wait: bool) -> Result<Vec<String>> {
        let mut unresolved = Vec::new();
        for step in steps.into_iter().filter(StepState::in_flight) {
            let provider = match self.fleet.provider(&step.provider) {
                Ok(provider) => provider,
                Err(_) => {
                    unresolved.push(format!(
                        "{} ({} of plan {}): provider `{}` is not configured here",
                        step.server,
                        step.step.as_str(),
                        step.plan_id,
                        step.provider
                    ));
                    continue;
                }
            };
            let since = |at: Option<&str>| {
                Instant::now()
                    .checked_sub(age_of(at))
                    .unwrap_or_else(Instant::now)
            };
            let sent_at = since(step.last_send_at.as_deref().or(step.intent_at.as_deref()));
            let stage = match (step.step, &step.operation) {
                (StepCall::Reinstall, Some(operation)) => WatchStage::Installing(operation.clone()),
                _ => WatchStage::Verifying,
            };
            self.reporter.report(Event::Reconciled {
                server: step.server.clone(),
                plan_id: step.plan_id.clone(),
                step: step.step.as_str().to_string(),
                outcome: "in_flight".to_string(),
                message: Some("checking with the provider".to_string()),
            });
            self.items.insert(
                step.server.clone(),
                Item {
                    plan_id: step.plan_id.clone(),
                    server: step.server.clone(),
                    provider_type: provider.provider_type(),
                    provider,
                    provider_name: step.provider.clone(),
                    cloud_id: step.cloud_id.clone(),
                    image: step.image.clone().unwrap_or_default(),
                    previous_image: step.previous_image.clone(),
                    planned_observed: None,
                    success_record: step.success_record.clone(),
                    canary: false,
                    planned: None,
                    stop_first: false,
                    step: Some(OpenStep::from_journal(&step)),
                    stage,
                    stage_since: sent_at,
                    sent_at,
                    // The process that sent it is gone: when the call ended is not known, and
                    // the time since then is what the grace is measured against.
                    answer_lost_at: sent_at,
                    // The time since the last call counts as a gap: nobody read the server
                    // while the earlier process was gone.
                    last_read: sent_at,
                    longest_gap: std::time::Duration::ZERO,
                    started: since(step.intent_at.as_deref()),
                    queued: std::time::Duration::ZERO,
                    install_began: None,
                    install_took: None,
                    baseline: step.baseline.clone(),
                    request: None,
                    last_detail: String::new(),
                    reconciled: true,
                    checks: 0,
                    // The plan is not here: a gate is not run for a step taken over (its
                    // record says the gate is pending, where the plan gave one).
                    gate: None,
                    gate_target: crate::apply::gate::GateTarget {
                        name: step.server.clone(),
                        cloud_id: step.cloud_id.clone(),
                        address: None,
                    },
                    gate_attempts: 0,
                    install_note: None,
                    timings: Default::default(),
                },
            );
        }
        if wait {
            while !self.items.is_empty() && !self.interrupt.abandoned() {
                self.step().await?;
            }
        } else if !self.items.is_empty() {
            self.schedule_polls(true);
            while let Some(done) = self.polls.join_next().await {
                let done = done.map_err(|error| Error::Io {
                    message: format!("a poll task failed: {error}"),
                })?;
                self.handle_poll(done)?;
            }
            // A resend a judgement asked for is not made by `plan`: the step stays open.
            for item in std::mem::take(&mut self.items).into_values() {
                unresolved.push(format!(
                    "{} (plan {}): still in flight at the provider{}",
                    item.server,
                    item.plan_id,
                    if item.last_detail.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", item.last_detail)
                    }
                ));
            }
        }
        self.flush(true)?;
        Ok(unresolved)
    }

    /// Records outcomes an earlier run wrote to the journal but not yet to the state.
    pub fn replay_finished(&mut self, steps: &[StepState]) -> Result<()> {
        for step in steps.iter().filter(|step| step.step == StepCall::Reinstall) {
            let (Some(_), Some(record)) = (&step.outcome, &step.outcome_record) else {
                continue;
            };
            let already = self
                .state
                .servers
                .get(&step.server)
                .and_then(|current| current.last_operation.as_ref())
                .is_some_and(|last| last.plan_id == step.plan_id);
            if !already {
                self.state
                    .servers
                    .insert(step.server.clone(), record.clone());
                self.dirty = true;
            }
        }
        self.flush(true)
    }
}
