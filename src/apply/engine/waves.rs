//! Waves: which planned servers start when. The canary wave first, then a sliding window of
//! `max_parallel`; nothing new after a canary failure, `max_failures`, or Ctrl-C.

use std::collections::{BTreeSet, HashMap, VecDeque};

use super::{Engine, ResumeScope};
use crate::apply::events::Event;
use crate::apply::records;
use crate::error::Result;
use crate::plan::model::{ActionKind, Plan};
use crate::plan::rollout::Wave;
use crate::state::history::WaveRecord;

impl<'a> Engine<'a> {
    /// Records every planned adoption (no provider call).
    pub fn adopt_all(&mut self, plan: &Plan, skip: &BTreeSet<String>) -> Result<()> {
        for server in plan
            .servers
            .iter()
            .filter(|server| server.action == ActionKind::Adopt && !skip.contains(&server.name))
        {
            let record = records::adopted_record(plan, server, self.state)?;
            self.state.servers.insert(server.name.clone(), record);
            self.dirty = true;
            self.summary.adopted.push(server.name.clone());
            self.reporter.report(Event::Adopted {
                server: server.name.clone(),
            });
        }
        self.flush(true)
    }

    fn note_interrupt(&mut self) {
        if self.interrupt.stopping() && !self.summary.interrupted {
            self.summary.interrupted = true;
            self.reporter.report(Event::Interrupted { abandon: false });
        }
    }

    fn leave_pending(&mut self, plan: &Plan, pending: &mut VecDeque<usize>, reason: &str) {
        for index in pending.drain(..) {
            self.pending_count = self.pending_count.saturating_sub(1);
            self.not_started(&plan.servers[index].name, reason.to_string());
        }
    }

    /// Runs the waves of the plan (servers in `resume.finished` are skipped).
    pub async fn run_waves(&mut self, plan: &'a Plan, resume: &ResumeScope) -> Result<()> {
        let index_of: HashMap<&str, usize> = plan
            .servers
            .iter()
            .enumerate()
            .map(|(index, server)| (server.name.as_str(), index))
            .collect();
        let waves: Vec<Wave> = plan.waves.clone();
        self.resume_gates = resume.gate_pending.clone();
        self.pending_count = waves.iter().map(|wave| wave.servers.len()).sum();
        for wave in &waves {
            let mut pending: VecDeque<usize> = wave
                .servers
                .iter()
                .filter(|name| {
                    !resume.finished.contains(*name) || resume.gate_pending.contains(*name)
                })
                .filter_map(|name| index_of.get(name.as_str()).copied())
                .filter(|index| plan.servers[*index].action.is_destructive())
                .collect();
            if let Some(reason) = self.stop_reason() {
                self.leave_pending(plan, &mut pending, &reason);
                continue;
            }
            if pending.is_empty() {
                continue;
            }
            self.reporter.report(Event::WaveStarted {
                wave: wave.index,
                canary: wave.canary,
                group: wave.group.clone(),
                servers: pending.len(),
                max_parallel: wave.max_parallel,
            });
            let wave_started = records::now_text();
            for index in &pending {
                self.queued_at
                    .insert(plan.servers[*index].name.clone(), wave_started.clone());
            }
            let mut started_names: Vec<String> = Vec::new();
            loop {
                self.note_interrupt();
                if let Some(limit) = wave.max_failures
                    && self.failures >= limit
                {
                    self.halt(format!(
                        "stopped starting new reinstalls after {} failure(s) (max_failures: {limit})",
                        self.failures
                    ));
                }
                if self.stop_reason().is_none() {
                    let capacity = wave.max_parallel.saturating_sub(self.items.len());
                    let take = capacity.min(pending.len());
                    let batch: Vec<usize> = pending.drain(..take).collect();
                    if !batch.is_empty() {
                        self.pending_count = self.pending_count.saturating_sub(batch.len());
                        started_names
                            .extend(batch.iter().map(|index| plan.servers[*index].name.clone()));
                        self.start(plan, batch, wave.canary, wave.index)?;
                    }
                }
                let stopped = self.stop_reason().is_some();
                if self.items.is_empty() && (pending.is_empty() || stopped) {
                    break;
                }
                if self.interrupt.abandoned() {
                    break;
                }
                self.step().await?;
            }
            self.summary.waves.push(WaveRecord {
                index: wave.index,
                canary: wave.canary,
                group: wave.group.clone(),
                servers: started_names,
                started_at: wave_started,
                finished_at: records::now_text(),
            });
            if self.interrupt.abandoned() {
                self.abandon_in_flight();
                self.leave_pending(plan, &mut pending, "interrupted (Ctrl-C)");
                break;
            }
            if let Some(reason) = self.stop_reason() {
                self.leave_pending(plan, &mut pending, &reason);
            }
        }
        // Waves after an abandon are never started.
        if self.interrupt.abandoned() {
            let seen: BTreeSet<String> = self
                .summary
                .reinstalled
                .iter()
                .chain(self.summary.failed.iter().map(|f| &f.server))
                .chain(self.summary.unknown.iter().map(|f| &f.server))
                .chain(self.summary.refused.iter().map(|f| &f.server))
                .chain(self.summary.skipped.iter().map(|s| &s.server))
                .chain(self.summary.not_started.iter().map(|n| &n.server))
                .cloned()
                .collect();
            for wave in &waves {
                for name in &wave.servers {
                    let destructive = index_of
                        .get(name.as_str())
                        .is_some_and(|index| plan.servers[*index].action.is_destructive());
                    if destructive && !seen.contains(name) && !resume.finished.contains(name) {
                        self.not_started(name, "interrupted (Ctrl-C)".to_string());
                    }
                }
            }
        }
        Ok(())
    }

    fn stop_reason(&self) -> Option<String> {
        if self.interrupt.stopping() {
            return Some("interrupted (Ctrl-C) before it started".to_string());
        }
        self.halted.clone()
    }

    /// The second Ctrl-C: servers with an open step stay in the journal for the next run;
    /// servers whose first call was not made are simply not started.
    fn abandon_in_flight(&mut self) {
        self.summary.interrupted = true;
        self.reporter.report(Event::Interrupted { abandon: true });
        let unsent = self.unsent();
        let gating: Vec<String> = self
            .items
            .values()
            .filter(|item| matches!(item.stage, super::WatchStage::Gating(_)))
            .map(|item| item.server.clone())
            .collect();
        for server in gating {
            self.abandon_gate(&server);
        }
        let left: Vec<String> = self.items.keys().cloned().collect();
        for server in left {
            self.items.remove(&server);
            let reason = if unsent.contains(&server) {
                "interrupted (Ctrl-C) before its call".to_string()
            } else {
                "left in flight at Ctrl-C: the journal has it; the next `reimage apply` or \
                 `reimage plan` checks it with the provider"
                    .to_string()
            };
            self.not_started(&server, reason);
        }
    }
}
