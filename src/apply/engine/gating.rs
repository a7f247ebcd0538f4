//! Gating: after a server's install succeeded, its health gate (from the plan) runs until it
//! passes or its attempts are spent. The next wave waits for it; a gate that does not pass is a
//! failure for `max_failures` and the canary. The record keeps the image either way (the OS is
//! installed): a failed gate sets the outcome `gate_failed`, which alone never plans a
//! reinstall.

use std::time::{Duration, Instant};

use super::{Engine, Item, WatchStage};
use crate::apply::events::{Event, FailedServer};
use crate::apply::gate;
use crate::apply::records::now_text;
use crate::error::Result;
use crate::state::{GateStatus, HealthRecord, Outcome};

/// The result of one attempt.
pub(super) struct GateDone {
    server: String,
    result: std::result::Result<String, String>,
}

impl Engine<'_> {
    /// The install succeeded: the gate's first attempt is due now.
    pub(super) fn begin_gate(&mut self, mut item: Item) {
        let Some(gate) = item.gate.clone() else {
            return;
        };
        item.timings.gate_started_at = Some(now_text());
        item.gate_attempts = 0;
        item.enter(WatchStage::Gating(Some(Instant::now())));
        self.reporter.report(Event::GateStarted {
            server: item.server.clone(),
            check: gate.check.describe(),
            attempts: gate.attempts,
            source: gate.source.clone(),
        });
        self.items.insert(item.server.clone(), item);
    }

    /// Starts every attempt whose time has come.
    pub(super) fn start_due_gates(&mut self) {
        let now = Instant::now();
        for item in self.items.values_mut() {
            let (WatchStage::Gating(Some(at)), Some(gate)) = (&item.stage, &item.gate) else {
                continue;
            };
            if *at > now {
                continue;
            }
            let check = gate.check.clone();
            let timeout = seconds(gate.timeout_s);
            let target = item.gate_target.clone();
            let server = item.server.clone();
            item.gate_attempts += 1;
            // Not `enter`: the gate's stage began with its first attempt.
            item.stage = WatchStage::Gating(None);
            self.gates.spawn(async move {
                let result = gate::attempt(&check, timeout, &target).await;
                GateDone { server, result }
            });
        }
    }

    /// One attempt is back: pass, try again after the interval, or fail.
    pub(super) fn handle_gate(&mut self, done: GateDone) -> Result<()> {
        let Some(item) = self.items.get_mut(&done.server) else {
            return Ok(());
        };
        let (WatchStage::Gating(None), Some(gate)) = (&item.stage, &item.gate) else {
            return Ok(());
        };
        let attempt = item.gate_attempts;
        let attempts = gate.attempts;
        let interval = seconds(gate.interval_s);
        let check = gate.check.describe();
        self.reporter.report(Event::GateAttempt {
            server: done.server.clone(),
            attempt,
            attempts,
            passed: done.result.is_ok(),
            detail: match &done.result {
                Ok(detail) | Err(detail) => detail.clone(),
            },
        });
        match done.result {
            Ok(detail) => self.finish_gate(&done.server, Ok(detail)),
            Err(why) if attempt >= attempts => {
                let message = format!(
                    "installed, but the health gate did not pass: {check} failed {attempt} \
                     attempt(s) (last: {why}). The OS is on the machine; the next plan does not \
                     reinstall it for this. Check the server, then apply again or fix it by hand"
                );
                self.finish_gate(&done.server, Err(message))
            }
            Err(_) => {
                if let Some(item) = self.items.get_mut(&done.server) {
                    item.stage = WatchStage::Gating(Some(Instant::now() + interval));
                }
                Ok(())
            }
        }
    }

    /// The gate ended: the state's record says how, and the server counts as done or failed.
    fn finish_gate(
        &mut self,
        server: &str,
        result: std::result::Result<String, String>,
    ) -> Result<()> {
        let Some(mut item) = self.items.remove(server) else {
            return Ok(());
        };
        let now = now_text();
        item.timings.gate_ended_at = Some(now.clone());
        let check = item
            .gate
            .as_ref()
            .map(|gate| gate.check.describe())
            .unwrap_or_default();
        if let Some(operation) = self
            .state
            .servers
            .get_mut(server)
            .and_then(|record| record.last_operation.as_mut())
            .filter(|operation| operation.plan_id == item.plan_id)
        {
            operation.health = Some(HealthRecord {
                status: if result.is_ok() {
                    GateStatus::Passed
                } else {
                    GateStatus::Failed
                },
                check,
                attempts: item.gate_attempts,
                message: result.as_ref().err().cloned(),
                finished_at: Some(now),
            });
            if let Err(message) = &result {
                operation.outcome = Outcome::GateFailed;
                operation.message = Some(message.clone());
            }
            self.dirty = true;
        }
        self.finish_item(&mut item);
        match result {
            Ok(detail) => {
                let passed = format!(
                    "health gate passed after {} attempt(s) ({detail})",
                    item.gate_attempts
                );
                self.summary.reinstalled.push(item.server.clone());
                self.reporter.report(Event::Done {
                    server: item.server.clone(),
                    elapsed_s: item.started.elapsed().as_secs(),
                    queued_s: item.queued.as_secs(),
                    installing_s: item.install_took.map_or(0, |took| took.as_secs()),
                    note: Some(match item.install_note.take() {
                        Some(note) => format!("{note}; {passed}"),
                        None => passed,
                    }),
                });
            }
            Err(message) => {
                self.gate_failed(&item, message);
            }
        }
        self.flush(false)
    }

    fn gate_failed(&mut self, item: &Item, message: String) {
        self.summary.gate_failed.push(FailedServer {
            server: item.server.clone(),
            message: message.clone(),
            request_id: None,
        });
        self.reporter.report(Event::Failed {
            server: item.server.clone(),
            outcome: "gate_failed".to_string(),
            message,
            request_id: None,
        });
        self.failures += 1;
        if item.canary {
            self.halt("a canary's health gate did not pass".to_string());
        }
    }

    /// The second Ctrl-C: a gate being run is left; the record says it is pending.
    pub(super) fn abandon_gate(&mut self, server: &str) {
        let Some(mut item) = self.items.remove(server) else {
            return;
        };
        item.timings.gate_ended_at = Some(now_text());
        self.finish_item(&mut item);
        self.gate_failed(
            &item,
            "installed, but its health gate was not finished (Ctrl-C); the state records the \
             gate as pending: check the server"
                .to_string(),
        );
    }

    /// Starts the gate of a server whose install an earlier run of this plan finished
    /// (`--resume` after a crash while gating).
    pub(super) fn resume_gate(&mut self, mut item: Item) {
        item.install_note = Some("installed by an earlier run of this plan".to_string());
        self.begin_gate(item);
    }
}

fn seconds(value: f64) -> Duration {
    Duration::try_from_secs_f64(value).unwrap_or(Duration::ZERO)
}
