//! Watching: batched polls of installs and reads of servers being stopped or checked after a
//! lost answer, what each read proves, and the deadline of every wait.

use std::collections::BTreeMap;
use std::time::Instant;

use super::evidence::{self, Evidence};
use super::{Engine, MAX_SENDS, WatchStage, backoff};
use crate::apply::events::Event;
use crate::error::Result;
use crate::provider::{Observation, Operation, OperationStatus, Provider};
use crate::state::journal::{StepCall, StepOutcome};

/// A poll round's results. Status polls of installs and reads of servers (being stopped, or
/// checked after a lost answer) run as separate rounds, so a slow status poll never holds up
/// the judgement of a read, nor makes an old read look recent.
pub(super) enum PollDone {
    Statuses {
        key: String,
        statuses: Statuses,
    },
    Reads {
        key: String,
        /// (server, cloud id) asked for.
        servers: Vec<(String, String)>,
        observations: std::result::Result<BTreeMap<String, Observation>, String>,
        /// When the read began: what it shows is at least this recent.
        started: Instant,
    },
}

/// Which round of a provider: `PROVIDER/status` or `PROVIDER/read`.
fn round_key(provider: &str, reads: bool) -> String {
    format!("{provider}/{}", if reads { "read" } else { "status" })
}

impl Engine<'_> {
    /// Rounds that have servers to watch, with the provider and the servers.
    fn due_rounds(&self) -> BTreeMap<String, (String, Vec<String>)> {
        let mut rounds: BTreeMap<String, (String, Vec<String>)> = BTreeMap::new();
        for item in self.items.values() {
            let reads = match item.stage {
                WatchStage::Installing(_) => false,
                WatchStage::Stopping | WatchStage::Verifying => true,
                _ => continue,
            };
            rounds
                .entry(round_key(&item.provider_name, reads))
                .or_insert_with(|| (item.provider_name.clone(), Vec::new()))
                .1
                .push(item.server.clone());
        }
        rounds
    }

    /// The earliest time a round with servers to watch is due (none in flight for it).
    pub(super) fn next_round_at(&self) -> Option<Instant> {
        self.due_rounds()
            .keys()
            .filter(|key| !self.polling.contains(*key))
            .filter_map(|key| self.next_poll.get(key))
            .min()
            .copied()
    }

    pub(super) fn poll_soon(&mut self, server: &str) {
        if let Some(item) = self.items.get(server) {
            let interval = item.provider.capabilities().poll_interval;
            for reads in [false, true] {
                self.next_poll
                    .entry(round_key(&item.provider_name, reads))
                    .or_insert_with(|| Instant::now() + interval);
            }
        }
    }

    /// Starts every round whose turn has come (one in flight per provider and kind).
    pub(super) fn schedule_polls(&mut self, force: bool) {
        let now = Instant::now();
        for (key, (provider_name, servers)) in self.due_rounds() {
            if self.polling.contains(&key) {
                continue;
            }
            let due = self.next_poll.get(&key).is_none_or(|at| *at <= now);
            if !due && !force {
                continue;
            }
            let Some(provider) = servers
                .first()
                .and_then(|name| self.items.get(name))
                .map(|item| item.provider.clone())
            else {
                continue;
            };
            let mut operations: Vec<(String, Operation)> = Vec::new();
            let mut to_read: Vec<(String, String)> = Vec::new();
            for name in &servers {
                let Some(item) = self.items.get(name) else {
                    continue;
                };
                match &item.stage {
                    WatchStage::Installing(operation) => {
                        operations.push((name.clone(), operation.clone()))
                    }
                    _ => to_read.push((name.clone(), item.cloud_id.clone())),
                }
            }
            tracing::trace!(provider = %provider_name, round = %key, "poll round");
            self.polling.insert(key.clone());
            let interval = provider.capabilities().poll_interval;
            self.next_poll.insert(key.clone(), now + interval);
            let batch = provider.capabilities().observe_batch.max(1);
            if to_read.is_empty() {
                self.polls.spawn(async move {
                    let statuses = poll_operations(provider.as_ref(), batch, &operations).await;
                    PollDone::Statuses { key, statuses }
                });
            } else {
                self.polls.spawn(async move {
                    let started = Instant::now();
                    let observations = read_servers(provider.as_ref(), batch, &to_read).await;
                    PollDone::Reads {
                        key,
                        servers: to_read,
                        observations,
                        started,
                    }
                });
            }
        }
    }

    pub(super) fn handle_poll(&mut self, done: PollDone) -> Result<()> {
        match done {
            PollDone::Statuses { key, statuses } => {
                self.polling.remove(&key);
                self.handle_statuses(statuses)
            }
            PollDone::Reads {
                key,
                servers,
                observations,
                started,
            } => {
                self.polling.remove(&key);
                self.handle_reads(servers, observations, started)
            }
        }
    }

    fn handle_statuses(&mut self, statuses: Statuses) -> Result<()> {
        for (server, status) in statuses {
            if !matches!(
                self.items.get(&server).map(|item| &item.stage),
                Some(WatchStage::Installing(_))
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
        Ok(())
    }

    fn handle_reads(
        &mut self,
        servers: Vec<(String, String)>,
        observations: std::result::Result<BTreeMap<String, Observation>, String>,
        started: Instant,
    ) -> Result<()> {
        match observations {
            Ok(observations) => {
                let mut stopped = Vec::new();
                for (server, cloud_id) in servers {
                    let observation = observations
                        .get(&cloud_id)
                        .cloned()
                        .unwrap_or(Observation::NotFound);
                    if let Some(observed) = self.judge(&server, &observation, started)? {
                        stopped.push((server, observed));
                    }
                }
                self.after_stop(stopped)
            }
            Err(message) => {
                for (server, _) in servers {
                    self.status(&server, format!("read failed, will retry: {message}"));
                }
                Ok(())
            }
        }
    }

    /// What one read of a server being stopped, or checked after a lost answer, proves.
    /// Returns the server as read when its stop has just finished (its reinstall comes next).
    fn judge(
        &mut self,
        server: &str,
        observation: &Observation,
        read_started: Instant,
    ) -> Result<Option<crate::provider::Observed>> {
        let Some(item) = self.items.get_mut(server) else {
            return Ok(None);
        };
        let Some(step) = item.step_kind() else {
            return Ok(None);
        };
        let verifying = matches!(item.stage, WatchStage::Verifying);
        if !verifying && !matches!(item.stage, WatchStage::Stopping) {
            return Ok(None);
        }
        // A read begun before the step's latest call says nothing about that call.
        if read_started < item.sent_at {
            return Ok(None);
        }
        if matches!(observation, Observation::Found(_)) {
            item.read_at(read_started);
        }
        let item = &*item;
        let baseline =
            evidence::baseline_or(item.baseline.as_ref(), item.previous_image.as_deref());
        let found = match step {
            StepCall::Stop => evidence::of_stop(&baseline, observation),
            StepCall::Reinstall => evidence::of_reinstall(&baseline, &item.image, observation),
        };
        // What the read shows is at least as recent as when it began, no more; and the call may
        // have acted up to the moment its answer was lost.
        let past_grace = read_started.saturating_duration_since(item.answer_lost_at)
            > item.provider.start_grace();
        match (step, found) {
            (_, Evidence::Gone) => {
                self.close(
                    server,
                    StepOutcome::Failed,
                    Some("the server disappeared at the provider".to_string()),
                )?;
            }
            (StepCall::Stop, Evidence::Done) => {
                let Observation::Found(observed) = observation else {
                    return Ok(None);
                };
                self.stopped(server)?;
                return Ok(Some(observed.clone()));
            }
            (StepCall::Stop, Evidence::Underway(detail)) => {
                if let Some(item) = self.items.get_mut(server)
                    && verifying
                {
                    item.enter(WatchStage::Stopping);
                }
                self.status(server, format!("stopping ({detail})"));
            }
            (StepCall::Reinstall, Evidence::Underway(detail)) => {
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
            (StepCall::Reinstall, Evidence::Done) => {
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
                    .saturating_sub(item.answer_lost_at.elapsed());
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
        let step = item.step_kind().unwrap_or(StepCall::Reinstall);
        let sends = item.step.as_ref().map_or(1, |step| step.sends());
        let grace = item.provider.start_grace();
        let image_proves = item.provider.capabilities().reports_image
            && item.baseline.as_ref().is_some_and(|baseline| {
                baseline.image.is_some() && baseline.image.as_deref() != Some(item.image.as_str())
            });
        let watched_closely = item.longest_gap <= grace;
        if step == StepCall::Reinstall && !image_proves && !watched_closely {
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
        item.enter(WatchStage::Backoff(Instant::now() + wait));
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
        item.timings.stop_ended_at = Some(crate::apply::records::now_text());
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
                WatchStage::Stopping => (capabilities.stop_timeout, item.stage_since, "stop"),
                WatchStage::Verifying => (capabilities.install_timeout, item.sent_at, "call"),
                WatchStage::Installing(_) => {
                    (capabilities.install_timeout, item.sent_at, "install")
                }
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
                    item.step_kind().unwrap_or(StepCall::Reinstall).as_str(),
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

type Statuses = Vec<(String, std::result::Result<OperationStatus, String>)>;

async fn poll_operations(
    provider: &dyn Provider,
    batch: usize,
    operations: &[(String, Operation)],
) -> Statuses {
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
    statuses
}

async fn read_servers(
    provider: &dyn Provider,
    batch: usize,
    servers: &[(String, String)],
) -> std::result::Result<BTreeMap<String, Observation>, String> {
    let ids: Vec<String> = servers.iter().map(|(_, id)| id.clone()).collect();
    let mut found = BTreeMap::new();
    for chunk in ids.chunks(batch) {
        found.extend(
            provider
                .observe(chunk)
                .await
                .map_err(|error| error.to_string())?,
        );
    }
    Ok(found)
}
