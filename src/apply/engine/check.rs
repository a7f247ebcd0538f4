//! The re-read right before a server's first call (compare before you wipe): items opened for
//! a wave, their servers read again in batches, and what each read leads to.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use super::evidence::moved_since_plan;
use super::{Engine, Item, MAX_CHECKS, WatchStage, backoff};
use crate::apply::records;
use crate::error::Result;
use crate::plan::model::{ActionKind, Plan};
use crate::provider::{Observation, Provider};

/// (server name, cloud id)
pub(super) type ServerId = (String, String);

/// The re-read of servers about to get their first call.
pub(super) struct CheckDone {
    pub(super) servers: Vec<ServerId>,
    pub(super) observations: std::result::Result<BTreeMap<String, Observation>, String>,
}

impl Engine<'_> {
    pub(super) fn new_item(
        &self,
        plan: &Plan,
        index: usize,
        canary: bool,
        wave: Option<usize>,
    ) -> Result<Item> {
        let server = &plan.servers[index];
        let now = Instant::now();
        Ok(Item {
            plan_id: plan.plan_id.clone(),
            server: server.name.clone(),
            provider: self.fleet.provider(&server.provider)?,
            provider_name: server.provider.clone(),
            provider_type: server.provider_type,
            cloud_id: server.cloud_id.clone(),
            image: server.desired.image.clone(),
            previous_image: server.observed.as_ref().and_then(|o| o.image.clone()),
            planned_observed: server.observed.clone(),
            success_record: Some(records::success_record(plan, server, self.state)?),
            canary,
            planned: Some(index),
            stop_first: server.action == ActionKind::StopAndReinstall,
            step: None,
            stage: WatchStage::Checking,
            stage_since: now,
            sent_at: now,
            answer_lost_at: now,
            last_read: now,
            longest_gap: std::time::Duration::ZERO,
            started: now,
            queued: std::time::Duration::ZERO,
            install_began: None,
            install_took: None,
            baseline: None,
            request: None,
            last_detail: String::new(),
            reconciled: false,
            checks: 0,
            gate: server.health.clone(),
            gate_target: crate::apply::gate::GateTarget {
                name: server.name.clone(),
                cloud_id: server.cloud_id.clone(),
                address: server
                    .desired
                    .address
                    .clone()
                    .or_else(|| server.observed.as_ref().and_then(|o| o.address.clone())),
            },
            gate_attempts: 0,
            install_note: None,
            timings: crate::state::history::ServerTimings {
                wave,
                queued_at: Some(
                    self.queued_at
                        .get(&server.name)
                        .cloned()
                        .unwrap_or_else(records::now_text),
                ),
                started_at: Some(records::now_text()),
                ..Default::default()
            },
        })
    }

    /// Starts the given planned servers: each is re-read (batched per provider) before its
    /// first call.
    pub(super) fn start(
        &mut self,
        plan: &Plan,
        indexes: Vec<usize>,
        canary: bool,
        wave: usize,
    ) -> Result<()> {
        let mut names = Vec::new();
        for index in indexes {
            let server = &plan.servers[index];
            match self.new_item(plan, index, canary, Some(wave)) {
                Ok(item) if self.resume_gates.contains(&server.name) => {
                    // Installed by an earlier run of this plan: only its gate is left.
                    self.resume_gate(item);
                }
                Ok(item) => {
                    self.items.insert(server.name.clone(), item);
                    names.push(server.name.clone());
                }
                Err(error) => {
                    self.not_started(&server.name, format!("cannot start: {error}"));
                }
            }
        }
        self.recheck(names);
        Ok(())
    }

    /// Re-reads the given servers (one read per batch of the provider's `observe_batch`).
    pub(super) fn recheck(&mut self, names: Vec<String>) {
        let mut by_provider: BTreeMap<String, (Arc<dyn Provider>, Vec<ServerId>)> = BTreeMap::new();
        for name in names {
            let Some(item) = self.items.get_mut(&name) else {
                continue;
            };
            item.checks += 1;
            item.enter(WatchStage::Checking);
            by_provider
                .entry(item.provider_name.clone())
                .or_insert_with(|| (item.provider.clone(), Vec::new()))
                .1
                .push((name.clone(), item.cloud_id.clone()));
        }
        // One task per provider: its reads (one per `observe_batch` ids) come back together,
        // so the servers started together are batched together for their calls.
        for (_, (provider, servers)) in by_provider {
            self.checks.spawn(async move {
                let batch = provider.capabilities().observe_batch.max(1);
                let ids: Vec<String> = servers.iter().map(|(_, id)| id.clone()).collect();
                let mut found = BTreeMap::new();
                for chunk in ids.chunks(batch) {
                    match provider.observe(chunk).await {
                        Ok(observations) => found.extend(observations),
                        Err(error) => {
                            return CheckDone {
                                servers,
                                observations: Err(error.to_string()),
                            };
                        }
                    }
                }
                CheckDone {
                    servers,
                    observations: Ok(found),
                }
            });
        }
    }

    /// The re-read is back: servers that moved are skipped, the rest get their step opened and
    /// their first call made.
    pub(super) fn handle_check(&mut self, done: CheckDone) -> Result<()> {
        let observations = match done.observations {
            Ok(observations) => observations,
            Err(message) => {
                for (server, _) in done.servers {
                    let Some(item) = self.items.get_mut(&server) else {
                        continue;
                    };
                    if item.checks >= MAX_CHECKS {
                        self.items.remove(&server);
                        self.not_started(
                            &server,
                            format!(
                                "could not re-read the server before its call ({message}); \
                                 nothing was sent"
                            ),
                        );
                    } else {
                        let at = Instant::now() + backoff(item.checks);
                        item.enter(WatchStage::Backoff(at));
                        self.status(&server, format!("re-read failed, will retry: {message}"));
                    }
                }
                return Ok(());
            }
        };
        let mut stops = Vec::new();
        let mut reinstalls = Vec::new();
        for (server, cloud_id) in done.servers {
            let Some(item) = self.items.get(&server) else {
                continue;
            };
            let now = observations
                .get(&cloud_id)
                .cloned()
                .unwrap_or(Observation::NotFound);
            // A server planned to be stopped may already be (by an earlier run of this plan):
            // its power state and what moves with it are expected to differ.
            if let Some(reason) = moved_since_plan(
                item.planned_observed.as_ref(),
                &now,
                &item.image,
                item.stop_first,
            ) {
                self.skip(&server, format!("moved since the plan: skipped ({reason})"));
                continue;
            }
            let Observation::Found(observed) = now else {
                continue;
            };
            let stopped = observed.status == crate::provider::ServerStatus::Stopped;
            if item.stop_first && !stopped {
                stops.push((server, observed));
            } else {
                reinstalls.push((server, observed));
            }
        }
        self.open_stops(stops)?;
        self.open_reinstalls(reinstalls)
    }
}
