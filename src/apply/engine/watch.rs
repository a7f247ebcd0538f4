//! Watching: batched polls of installs and reads of servers being stopped or checked after a
//! lost answer, what each read proves, and the deadline of every wait.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use super::evidence::{self, Evidence};
use super::{Engine, MAX_SENDS, Stage, backoff};
use crate::apply::events::Event;
use crate::error::Result;
use crate::provider::{Observation, Operation, OperationStatus, Provider};
use crate::state::journal::{Step, StepOutcome};

pub(super) struct PollDone {
    provider: String,
    statuses: Vec<(String, std::result::Result<OperationStatus, String>)>,
    observations: std::result::Result<BTreeMap<String, Observation>, String>,
    /// (server, cloud id) the observations were asked for.
    observed_servers: Vec<(String, String)>,
}

impl Engine<'_> {
    pub(super) fn poll_soon(&mut self, server: &str) {
        if let Some(item) = self.items.get(server) {
            let interval = item.provider.capabilities().poll_interval;
            self.next_poll
                .entry(item.provider_name.clone())
                .or_insert_with(|| Instant::now() + interval);
        }
    }

    /// Starts a poll for every provider whose turn has come (one poll in flight each).
    pub(super) fn schedule_polls(&mut self, force: bool) {
        let now = Instant::now();
        let mut providers: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for item in self.items.values() {
            if matches!(
                item.stage,
                Stage::Stopping | Stage::Verifying | Stage::Installing(_)
            ) {
                providers
                    .entry(item.provider_name.clone())
                    .or_default()
                    .push(item.server.clone());
            }
        }
        for (provider_name, servers) in providers {
            if self.polling.contains(&provider_name) {
                continue;
            }
            let due = self
                .next_poll
                .get(&provider_name)
                .is_none_or(|at| *at <= now);
            if !due && !force {
                continue;
            }
            let Some(first) = servers.first().and_then(|name| self.items.get(name)) else {
                continue;
            };
            let provider = first.provider.clone();
            let mut operations: Vec<(String, Operation)> = Vec::new();
            let mut to_observe: Vec<(String, String)> = Vec::new();
            for name in &servers {
                let Some(item) = self.items.get(name) else {
                    continue;
                };
                match &item.stage {
                    Stage::Installing(operation) => {
                        operations.push((name.clone(), operation.clone()))
                    }
                    _ => to_observe.push((name.clone(), item.cloud_id.clone())),
                }
            }
            self.polling.insert(provider_name.clone());
            let interval = provider.capabilities().poll_interval;
            self.next_poll.insert(provider_name.clone(), now + interval);
            self.polls.spawn(poll_provider(
                provider_name,
                provider,
                operations,
                to_observe,
            ));
        }
    }

    pub(super) fn handle_poll(&mut self, done: PollDone) -> Result<()> {
        self.polling.remove(&done.provider);
        for (server, status) in done.statuses {
            if !matches!(
                self.items.get(&server).map(|item| &item.stage),
                Some(Stage::Installing(_))
            ) {
                continue;
            }
            match status {
                Ok(OperationStatus::Succeeded { note, .. }) => {
                    self.close(&server, StepOutcome::Succeeded, note)?;
                }
                Ok(OperationStatus::Failed {
                    message,
                    request_id,
                }) => {
                    let message = match request_id {
                        Some(id) if !message.contains(&id) => {
                            format!("{message} (request id {id})")
                        }
                        _ => message,
                    };
                    self.close(&server, StepOutcome::Failed, Some(message))?;
                }
                Ok(OperationStatus::InProgress { detail }) => self.status(&server, detail),
                Err(message) => self.status(
                    &server,
                    format!("status read failed, will retry: {message}"),
                ),
            }
        }
        match done.observations {
            Ok(observations) => {
                let mut stopped = Vec::new();
                for (server, cloud_id) in done.observed_servers {
                    let observation = observations
                        .get(&cloud_id)
                        .cloned()
                        .unwrap_or(Observation::NotFound);
                    if let Some(observed) = self.judge(&server, &observation)? {
                        stopped.push((server, observed));
                    }
                }
                self.after_stop(stopped)?;
            }
            Err(message) => {
                for (server, _) in done.observed_servers {
                    self.status(&server, format!("read failed, will retry: {message}"));
                }
            }
        }
        Ok(())
    }

    /// What one read of a server being stopped, or checked after a lost answer, proves.
    /// Returns the server as read when its stop has just finished (its reinstall comes next).
    fn judge(
        &mut self,
        server: &str,
        observation: &Observation,
    ) -> Result<Option<crate::provider::Observed>> {
        let Some(item) = self.items.get_mut(server) else {
            return Ok(None);
        };
        let Some(step) = item.step_kind() else {
            return Ok(None);
        };
        let verifying = matches!(item.stage, Stage::Verifying);
        if !verifying && !matches!(item.stage, Stage::Stopping) {
            return Ok(None);
        }
        if matches!(observation, Observation::Found(_)) {
            item.read_now();
        }
        let item = &*item;
        let baseline =
            evidence::baseline_or(item.baseline.as_ref(), item.previous_image.as_deref());
        let found = match step {
            Step::Stop => evidence::of_stop(&baseline, observation),
            Step::Reinstall => evidence::of_reinstall(&baseline, &item.image, observation),
        };
        let past_grace = item.sent_at.elapsed() > item.provider.start_grace();
        match (step, found) {
            (_, Evidence::Gone) => {
                self.close(
                    server,
                    StepOutcome::Failed,
                    Some("the server disappeared at the provider".to_string()),
                )?;
            }
            (Step::Stop, Evidence::Done) => {
                let Observation::Found(observed) = observation else {
                    return Ok(None);
                };
                self.stopped(server)?;
                return Ok(Some(observed.clone()));
            }
            (Step::Stop, Evidence::Underway(detail)) => {
                if let Some(item) = self.items.get_mut(server)
                    && verifying
                {
                    item.enter(Stage::Stopping);
                }
                self.status(server, format!("stopping ({detail})"));
            }
            (Step::Reinstall, Evidence::Underway(detail)) => {
                // The install shows: it is tracked from the server from now on.
                let operation = Operation {
                    server: item.server.clone(),
                    cloud_id: item.cloud_id.clone(),
                    image: item.image.clone(),
                    job_id: None,
                    request_id: None,
                    started_at_ms: jiff::Timestamp::now().as_millisecond()
                        - item.sent_at.elapsed().as_millis() as i64,
                    previous_image: item.previous_image.clone(),
                };
                self.status(server, format!("the install shows ({detail})"));
                self.accepted(server, operation)?;
            }
            (Step::Reinstall, Evidence::Done) => {
                self.close(
                    server,
                    StepOutcome::Succeeded,
                    Some("the answer to the call was lost; the server shows the new image".into()),
                )?;
            }
            (_, Evidence::InstallFailed(message)) => {
                self.close(server, StepOutcome::Failed, Some(message))?;
            }
            (_, Evidence::Unchanged) if verifying && past_grace => {
                self.not_acted(server)?;
            }
            (_, Evidence::Unchanged) => {
                let wait = item
                    .provider
                    .start_grace()
                    .saturating_sub(item.sent_at.elapsed());
                let what = step.as_str();
                self.status(
                    server,
                    format!(
                        "no sign of the {what} yet; waiting up to {}s before deciding it did not act",
                        wait.as_secs()
                    ),
                );
            }
            (_, Evidence::Unclear(detail)) => {
                self.status(server, format!("waiting ({detail})"));
            }
        }
        Ok(None)
    }

    /// The server is as it was before the call, past the grace. That proves the call did not
    /// act when the image would have moved (a different image, on a provider that reports it),
    /// for a stop (a stopped server does not start by itself), or when the server was read at
    /// least once per grace since the call (an install shows for longer than that). Otherwise
    /// nothing proves either way, and it is not guessed.
    fn not_acted(&mut self, server: &str) -> Result<()> {
        let Some(item) = self.items.get_mut(server) else {
            return Ok(());
        };
        let step = item.step_kind().unwrap_or(Step::Reinstall);
        let sends = item.step.as_ref().map_or(1, |step| step.sends());
        let grace = item.provider.start_grace();
        let image_proves = item.provider.capabilities().reports_image
            && item.baseline.as_ref().is_some_and(|baseline| {
                baseline.image.is_some() && baseline.image.as_deref() != Some(item.image.as_str())
            });
        let watched_closely = item.longest_gap <= grace;
        if step == Step::Reinstall && !image_proves && !watched_closely {
            let message = format!(
                "the answer to the reinstall call was lost, and the server was not read for {}s \
                 at a stretch (more than the {}s an install takes to show), so an install that \
                 ran and ended in between would leave nothing to see. It was not sent again. \
                 Check the server (uptime, console), then `reimage state adopt {} --image {}` \
                 if it runs the new OS, or `reimage plan --replace {}` if it still needs it",
                item.longest_gap.as_secs(),
                grace.as_secs_f64(),
                item.server,
                item.image,
                item.server
            );
            return self.close(server, StepOutcome::Unknown, Some(message));
        }
        if item.reconciled {
            // Taken over from a journal: the plan it belonged to is not carried on here.
            let message = format!(
                "the {} of an interrupted apply did not act (no sign of it, the server is \
                 unchanged); nothing happened to the server, and a new plan decides again",
                step.as_str()
            );
            return self.close(server, StepOutcome::NotSent, Some(message));
        }
        let grace = grace.as_secs_f64();
        if sends >= MAX_SENDS {
            let message = format!(
                "the {} call was sent {sends} times and never acted (the server showed no sign \
                 of it within {grace}s each time); nothing happened to the server",
                step.as_str()
            );
            return self.close(server, StepOutcome::NotSent, Some(message));
        }
        let wait = backoff(sends);
        item.enter(Stage::Backoff(Instant::now() + wait));
        self.status(
            server,
            format!(
                "the {} did not act: no sign of it within {grace}s, the server is unchanged; \
                 sending it again",
                step.as_str()
            ),
        );
        Ok(())
    }

    /// The stop step ends well; the item stays for its reinstall.
    fn stopped(&mut self, server: &str) -> Result<()> {
        let protocol = self.protocol();
        let Some(item) = self.items.get_mut(server) else {
            return Ok(());
        };
        if let Some(step) = item.step.take() {
            protocol.close(step, StepOutcome::Succeeded, None, None)?;
        }
        if item.reconciled {
            self.reporter.report(Event::Reconciled {
                server: server.to_string(),
                plan_id: item.plan_id.clone(),
                step: "stop".to_string(),
                outcome: "succeeded".to_string(),
                message: Some(
                    "stopped; its reinstall was never sent (a new plan includes it)".to_string(),
                ),
            });
        } else {
            self.reporter.report(Event::Stopped {
                server: server.to_string(),
            });
        }
        Ok(())
    }

    /// Ends every wait past its deadline as unknown, saying what to check.
    pub(super) fn check_deadlines(&mut self) -> Result<()> {
        let mut expired = Vec::new();
        for item in self.items.values() {
            let capabilities = item.provider.capabilities();
            let (limit, since, what) = match &item.stage {
                Stage::Stopping => (capabilities.stop_timeout, item.stage_since, "stop"),
                Stage::Verifying => (capabilities.install_timeout, item.sent_at, "call"),
                Stage::Installing(_) => (capabilities.install_timeout, item.sent_at, "install"),
                _ => continue,
            };
            if since.elapsed() <= limit {
                continue;
            }
            let last = if item.last_detail.is_empty() {
                "no status yet".to_string()
            } else {
                item.last_detail.clone()
            };
            let message = match what {
                "stop" => format!(
                    "the server did not stop within {}s ({last}); the reinstall was not sent. \
                     Check `{}` at the provider, then plan again",
                    limit.as_secs(),
                    item.cloud_id
                ),
                "call" => format!(
                    "after {}s it is still unclear whether the {} call acted ({last}); it was \
                     not sent again. Check `{}` at the provider, then plan again",
                    limit.as_secs(),
                    item.step_kind().unwrap_or(Step::Reinstall).as_str(),
                    item.cloud_id
                ),
                _ => format!(
                    "timed out after {}s waiting ({last}); the install may still be running at \
                     the provider. Check `{}` there, then plan again",
                    limit.as_secs(),
                    item.cloud_id
                ),
            };
            expired.push((item.server.clone(), message));
        }
        for (server, message) in expired {
            self.close(&server, StepOutcome::Unknown, Some(message))?;
        }
        Ok(())
    }
}

/// One poll round for one provider: operations polled in batches of the provider's read
/// limit; servers being stopped or checked read in batches.
async fn poll_provider(
    provider_name: String,
    provider: Arc<dyn Provider>,
    operations: Vec<(String, Operation)>,
    to_observe: Vec<(String, String)>,
) -> PollDone {
    let batch = provider.capabilities().observe_batch.max(1);
    let mut statuses = Vec::with_capacity(operations.len());
    for chunk in operations.chunks(batch) {
        let ops: Vec<Operation> = chunk
            .iter()
            .map(|(_, operation)| operation.clone())
            .collect();
        match provider.poll(&ops).await {
            Ok(results) => {
                let mut results = results.into_iter();
                for (server, _) in chunk {
                    let status = results
                        .next()
                        .ok_or_else(|| "the provider returned no status".to_string());
                    statuses.push((server.clone(), status));
                }
            }
            Err(error) => {
                for (server, _) in chunk {
                    statuses.push((server.clone(), Err(error.to_string())));
                }
            }
        }
    }
    let mut observations = Ok(BTreeMap::new());
    if !to_observe.is_empty() {
        let ids: Vec<String> = to_observe.iter().map(|(_, id)| id.clone()).collect();
        let mut found = BTreeMap::new();
        for chunk in ids.chunks(batch) {
            match provider.observe(chunk).await {
                Ok(result) => found.extend(result),
                Err(error) => {
                    observations = Err(error.to_string());
                    break;
                }
            }
        }
        if observations.is_ok() {
            observations = Ok(found);
        }
    }
    PollDone {
        provider: provider_name,
        statuses,
        observations,
        observed_servers: to_observe,
    }
}
