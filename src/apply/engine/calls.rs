//! Calls: opening a server's journaled step, the stop and reinstall calls, and what each
//! result leads to. The re-read right before the first call is in [`super::check`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use super::evidence::moved_since_plan;
use super::{Engine, Item, MAX_SENDS, WatchStage, backoff};
use crate::apply::events::Event;
use crate::apply::protocol::{Intent, SendPermit, StepKey};
use crate::apply::{records, step_token};
use crate::error::Result;
use crate::provider::{
    CallFate, Observation, Observed, Operation, Provider, ProviderError, ReinstallRequest,
};
use crate::state::journal::{Baseline, StepCall, StepOutcome};

/// Results of provider calls made in tasks.
pub(super) enum CallDone {
    Stop {
        server: String,
        result: std::result::Result<(), ProviderError>,
    },
    Reinstall {
        results: Vec<(String, std::result::Result<Operation, ProviderError>)>,
    },
}

fn baseline_of(observed: &Observed) -> Baseline {
    Baseline {
        status: observed.status,
        raw_status: observed.raw_status.clone(),
        image: observed.image.clone(),
    }
}

impl Engine<'_> {
    fn key(item: &Item, step: StepCall) -> StepKey {
        StepKey {
            plan_id: item.plan_id.clone(),
            server: item.server.clone(),
            provider: item.provider_name.clone(),
            cloud_id: item.cloud_id.clone(),
            step,
        }
    }

    pub(super) fn open_stops(&mut self, servers: Vec<(String, Observed)>) -> Result<()> {
        let mut steps = Vec::new();
        for (server, observed) in servers {
            let Some(item) = self.items.get_mut(&server) else {
                continue;
            };
            item.baseline = Some(baseline_of(&observed));
            steps.push((
                Self::key(item, StepCall::Stop),
                Intent {
                    token: step_token(&item.plan_id, &item.server, "stop"),
                    image: None,
                    previous_image: None,
                    success_record: None,
                    baseline: item.baseline.clone(),
                },
            ));
        }
        for (step, permit) in self.protocol().open(steps)? {
            let server = step.key().server.clone();
            self.reporter.report(Event::StopStarted {
                server: server.clone(),
            });
            if let Some(item) = self.items.get_mut(&server) {
                item.step = Some(step);
                item.timings.stop_started_at = Some(records::now_text());
                self.send_stop(permit);
            }
        }
        Ok(())
    }

    /// Opens reinstall steps for servers just re-read (or just stopped), grouped by the
    /// provider's batch key and cut into its `reinstall_batch`, one journal write per batch.
    pub(super) fn open_reinstalls(&mut self, servers: Vec<(String, Observed)>) -> Result<()> {
        let Some(plan) = self.plan else {
            return Ok(());
        };
        // provider → batch key → servers
        let mut groups: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
        for (server, observed) in servers {
            let Some(item) = self.items.get_mut(&server) else {
                continue;
            };
            let Some(index) = item.planned else {
                continue;
            };
            match records::reinstall_request(plan, &plan.servers[index]) {
                Ok(request) => {
                    item.baseline = Some(baseline_of(&observed));
                    let key = item.provider.batch_key(&request);
                    item.request = Some(request);
                    groups
                        .entry(item.provider_name.clone())
                        .or_default()
                        .entry(key)
                        .or_default()
                        .push(server);
                }
                Err(error) => {
                    // Nothing was sent: the request could not even be built.
                    self.close(
                        &server,
                        StepOutcome::NotSent,
                        Some(format!("not sent: {error}")),
                    )?;
                }
            }
        }
        for (provider_name, by_key) in groups {
            let provider = self.fleet.provider(&provider_name)?;
            let batch = provider.capabilities().reinstall_batch.max(1);
            for members in by_key.into_values() {
                for chunk in members.chunks(batch) {
                    let mut steps = Vec::new();
                    for server in chunk {
                        let Some(item) = self.items.get(server) else {
                            continue;
                        };
                        let Some(request) = &item.request else {
                            continue;
                        };
                        steps.push((
                            Self::key(item, StepCall::Reinstall),
                            Intent {
                                token: request.token.clone(),
                                image: Some(request.image.clone()),
                                previous_image: request.previous_image.clone(),
                                success_record: item.success_record.clone(),
                                baseline: item.baseline.clone(),
                            },
                        ));
                    }
                    let mut permits = Vec::new();
                    for (step, permit) in self.protocol().open(steps)? {
                        if let Some(item) = self.items.get_mut(&step.key().server) {
                            item.step = Some(step);
                            item.timings.install_started_at = Some(records::now_text());
                            permits.push(permit);
                        }
                    }
                    self.send_reinstalls(provider.clone(), permits);
                }
            }
        }
        Ok(())
    }

    fn send_stop(&mut self, permit: SendPermit) {
        let Some(item) = self.items.get_mut(permit.server()) else {
            return;
        };
        let Some(step) = &item.step else {
            return;
        };
        let token = step.token().to_string();
        let provider = item.provider.clone();
        let cloud_id = item.cloud_id.clone();
        let server = item.server.clone();
        item.sending();
        self.calls.spawn(async move {
            let _sent = permit;
            let result = provider.stop(&cloud_id, &token).await;
            CallDone::Stop { server, result }
        });
    }

    /// One call for the given servers' reinstalls (one batch of one provider).
    fn send_reinstalls(&mut self, provider: Arc<dyn Provider>, permits: Vec<SendPermit>) {
        let mut requests: Vec<ReinstallRequest> = Vec::new();
        for permit in &permits {
            if let Some(item) = self.items.get_mut(permit.server())
                && let Some(request) = &item.request
            {
                requests.push(request.clone());
                item.sending();
            }
        }
        if requests.is_empty() {
            return;
        }
        self.calls.spawn(async move {
            let _sent = permits;
            let results = provider.reinstall_batch(&requests).await;
            let mut results = results.into_iter();
            CallDone::Reinstall {
                results: requests
                    .iter()
                    .map(|request| {
                        let result = results.next().unwrap_or_else(|| {
                            Err(ProviderError::Config {
                                provider: provider.name().to_string(),
                                message: "the provider returned no result for this request"
                                    .to_string(),
                                help: "this is a bug in reimage".to_string(),
                            })
                        });
                        (request.server.clone(), result)
                    })
                    .collect(),
            }
        });
    }

    pub(super) fn handle_call(&mut self, done: CallDone) -> Result<()> {
        match done {
            CallDone::Stop { server, result } => match result {
                Ok(()) => {
                    if let Some(item) = self.items.get_mut(&server) {
                        item.enter(WatchStage::Stopping);
                    }
                    self.poll_soon(&server);
                    Ok(())
                }
                Err(error) => self.call_failed(&server, error),
            },
            CallDone::Reinstall { results } => {
                for (server, result) in results {
                    match result {
                        Ok(operation) => self.accepted(&server, operation)?,
                        Err(error) => self.call_failed(&server, error)?,
                    }
                }
                Ok(())
            }
        }
    }

    /// The provider took the reinstall (or the server shows it did): it is polled from now on.
    pub(super) fn accepted(&mut self, server: &str, operation: Operation) -> Result<()> {
        let protocol = self.protocol();
        let Some(item) = self.items.get_mut(server) else {
            return Ok(());
        };
        let Some(step) = item.step.as_mut() else {
            return Ok(());
        };
        protocol.accept(step, &operation)?;
        self.reporter.report(Event::ReinstallStarted {
            server: server.to_string(),
            request_id: operation.request_id.clone(),
            job_id: operation.job_id.clone(),
        });
        item.enter(WatchStage::Installing(operation));
        self.poll_soon(server);
        Ok(())
    }

    /// A call ended without an answer that says it was taken: what happens next depends on
    /// what the failure proves.
    fn call_failed(&mut self, server: &str, error: ProviderError) -> Result<()> {
        let Some(item) = self.items.get_mut(server) else {
            return Ok(());
        };
        let what = item.step_kind().unwrap_or(StepCall::Reinstall).as_str();
        let sends = item.step.as_ref().map_or(1, |step| step.sends());
        match error.call_fate() {
            CallFate::Refused => self.close(
                server,
                StepOutcome::Refused,
                Some(format!("the {what} call was refused: {error}")),
            ),
            CallFate::NotSent | CallFate::Throttled => {
                if sends >= MAX_SENDS {
                    return self.close(
                        server,
                        StepOutcome::NotSent,
                        Some(format!(
                            "the {what} call could not be delivered after {sends} tries \
                             (last: {error}); nothing happened to the server"
                        )),
                    );
                }
                let wait = backoff(sends);
                item.enter(WatchStage::Backoff(Instant::now() + wait));
                self.status(
                    server,
                    format!(
                        "{what} not taken ({error}); sending again in {}s",
                        wait.as_secs_f64().ceil()
                    ),
                );
                Ok(())
            }
            CallFate::Ambiguous => {
                if item.provider.resends_safely() && sends < MAX_SENDS {
                    // The idempotency token makes the very same call harmless: ask again now.
                    let reason = format!(
                        "the answer was lost ({error}); the same request with its idempotency \
                         token cannot act twice"
                    );
                    self.status(server, format!("{what}: {reason}; sending it again"));
                    return self.resend(server, &reason);
                }
                item.answer_lost_at = Instant::now();
                item.enter(WatchStage::Verifying);
                self.status(
                    server,
                    format!("{what} answer lost ({error}); checking the server before deciding"),
                );
                self.poll_soon(server);
                Ok(())
            }
        }
    }

    /// Sends the step's call again: the journal announces it first.
    pub(super) fn resend(&mut self, server: &str, reason: &str) -> Result<()> {
        let protocol = self.protocol();
        let Some(item) = self.items.get_mut(server) else {
            return Ok(());
        };
        let Some(step) = item.step.as_mut() else {
            return Ok(());
        };
        let kind = step.step();
        if kind == StepCall::Reinstall && item.request.is_none() {
            // Taken over from a journal: the request is not here to repeat. Nothing acted, so
            // the next plan includes the server again.
            return self.close(
                server,
                StepOutcome::NotSent,
                Some(format!("{reason}; a new plan includes it again")),
            );
        }
        let permit = protocol.resend(step, reason)?;
        tracing::info!(
            server,
            attempt = permit.attempt(),
            reason,
            "sending a call again"
        );
        match kind {
            StepCall::Stop => self.send_stop(permit),
            StepCall::Reinstall => {
                let provider = item.provider.clone();
                self.send_reinstalls(provider, vec![permit]);
            }
        }
        Ok(())
    }

    /// Resends and re-reads whose backoff has passed.
    pub(super) fn send_due(&mut self) -> Result<()> {
        let now = Instant::now();
        let due: Vec<(String, bool)> = self
            .items
            .values()
            .filter(|item| matches!(item.stage, WatchStage::Backoff(at) if at <= now))
            .map(|item| (item.server.clone(), item.step.is_some()))
            .collect();
        let mut rechecks = Vec::new();
        for (server, opened) in due {
            if opened {
                self.resend(&server, "the earlier call did not act")?;
            } else {
                rechecks.push(server);
            }
        }
        self.recheck(rechecks);
        Ok(())
    }

    /// The servers a stop has just finished for go on to their reinstall. The read that showed
    /// them stopped is their re-read.
    pub(super) fn after_stop(&mut self, stopped: Vec<(String, Observed)>) -> Result<()> {
        let mut reinstalls = Vec::new();
        for (server, observed) in stopped {
            let Some(item) = self.items.get(&server) else {
                continue;
            };
            if item.planned.is_none() || self.plan.is_none() {
                // A stop taken over from an earlier run: its reinstall is for a new plan.
                self.items.remove(&server);
                continue;
            }
            if let Some(reason) = moved_since_plan(
                item.planned_observed.as_ref(),
                &Observation::Found(observed.clone()),
                &item.image,
                true,
            ) {
                self.skip(&server, format!("moved since the plan: skipped ({reason})"));
                continue;
            }
            reinstalls.push((server, observed));
        }
        self.open_reinstalls(reinstalls)
    }

    pub(super) fn not_started(&mut self, server: &str, reason: String) {
        self.summary
            .not_started
            .push(crate::apply::events::NotStartedServer {
                server: server.to_string(),
                reason: reason.clone(),
            });
        self.reporter.report(Event::NotStarted {
            server: server.to_string(),
            reason,
        });
    }

    /// Names of servers the engine holds that never got a call (for Ctrl-C).
    pub(super) fn unsent(&self) -> BTreeSet<String> {
        self.items
            .values()
            .filter(|item| item.step.is_none())
            .map(|item| item.server.clone())
            .collect()
    }
}
