//! The apply engine: starts exactly the plan's reinstalls, wave by wave, under the rollout
//! policy and the providers' rate limits, watches them with batched reads, and records every
//! step through the journal protocol and every outcome in the state.
//!
//! One loop owns all mutable state (servers in flight, the state, the journal); provider calls,
//! re-reads and polls run as tasks whose results come back to it, so a slow call never stops
//! the others from being watched, and the journal and state are written in one order.
//!
//! The jobs, one file each:
//! - [`waves`]: which servers start when (canary, `max_parallel`, `max_failures`, Ctrl-C);
//! - [`calls`]: the re-read right before a call, the calls themselves, and what each outcome of
//!   a call leads to (accepted, not sent, throttled, refused, ambiguous);
//! - [`watch`]: batched reads of servers in flight, what they prove, and every deadline;
//! - [`reconcile`]: taking over the steps an interrupted apply left open;
//! - [`gating`]: the health gate between "installed" and "done";
//! - [`evidence`]: the pure judgements those rest on.
//!
//! A health gate is not a provider call and has no journal step: the install's success is
//! journaled (with the gate `pending` in its record) before the gate starts, so a crash while
//! gating keeps the install; the gate's end is written to the state alone. A gate that does not
//! pass counts as a failure for `max_failures` and the canary, and the next wave waits for it.
//!
//! Safety rules kept here:
//! - a server is re-read right before its stop or reinstall call; one that moved since the plan
//!   is skipped;
//! - a call is sent again only under its own journaled step: at once where the API's
//!   idempotency token makes a repeat harmless, otherwise only once the call is shown not to
//!   have acted (refused before acting, never sent, or no sign of it for the provider's grace),
//!   with backoff and at most [`MAX_SENDS`] calls; never while any sign of the first exists;
//! - every wait has a deadline; past it the step ends as unknown, saying what to check;
//! - nothing starts after a canary failure, after `max_failures`, or after Ctrl-C.

mod calls;
mod check;
pub mod evidence;
mod gating;
mod item;
mod reconcile;
mod watch;
mod waves;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio::task::JoinSet;

use self::item::{Item, WatchStage};
use super::events::{Event, FailedServer, NotStartedServer, Reporter, SkippedServer};
use super::protocol::{OpenStep, Protocol};
use super::records::{self, Target};
use crate::apply::gate::GateTarget;
use crate::error::{Error, Result};
use crate::manifest::ProviderType;
use crate::manifest::health::HealthGate;
use crate::plan::model::Plan;
use crate::provider::fleet::Fleet;
use crate::provider::limits::WaitCause;
use crate::provider::{Observed, Operation, Provider, ReinstallRequest};
use crate::state::history::{ServerTimings, WaveRecord};
use crate::state::journal::{Baseline, StepCall, StepOutcome};
use crate::state::{Outcome, ServerRecord, State, StateLock, StateStore};

/// Calls made under one step at most (the first included). A call shown not to have acted is
/// sent again up to this often; each try waits longer.
pub const MAX_SENDS: u32 = 10;

/// A server's re-read before its call is tried this often before the server is left unstarted.
const MAX_CHECKS: u32 = 5;

/// Ctrl-C, as the engine sees it: first stop starting, then abandon watching.
#[derive(Debug, Default)]
pub struct Interrupt {
    stop_starting: AtomicBool,
    abandon: AtomicBool,
    notify: Notify,
}

impl Interrupt {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The first Ctrl-C: no new reinstall starts; in-flight ones are watched to the end.
    pub fn stop_starting(&self) {
        self.stop_starting.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    /// The second Ctrl-C: stop watching; the journal keeps what is in flight.
    pub fn abandon(&self) {
        self.stop_starting.store(true, Ordering::SeqCst);
        self.abandon.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    pub fn stopping(&self) -> bool {
        self.stop_starting.load(Ordering::SeqCst)
    }

    pub fn abandoned(&self) -> bool {
        self.abandon.load(Ordering::SeqCst)
    }
}

/// A server of the plan that an earlier run of this plan already finished (`--resume`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct EarlierServer {
    pub server: String,
    pub outcome: Outcome,
    pub message: Option<String>,
}

/// What happened, per server.
#[derive(Debug, Default, Clone)]
pub struct ApplySummary {
    pub adopted: Vec<String>,
    pub reinstalled: Vec<String>,
    /// The install ran and failed.
    pub failed: Vec<FailedServer>,
    /// Whether anything happened could not be established.
    pub unknown: Vec<FailedServer>,
    /// Refused by the provider before acting, or shown not to have acted: nothing happened.
    pub refused: Vec<FailedServer>,
    /// Moved since the plan: not touched.
    pub skipped: Vec<SkippedServer>,
    pub not_started: Vec<NotStartedServer>,
    /// Installed (the image is on the machine), but the health gate did not pass.
    pub gate_failed: Vec<FailedServer>,
    /// On `--resume`: servers an earlier run of this plan finished, with how.
    pub earlier: Vec<EarlierServer>,
    /// Ctrl-C was pressed.
    pub interrupted: bool,
    /// When each server's work began and ended, by name (for the history and the report).
    pub timings: BTreeMap<String, ServerTimings>,
    /// The waves as they ran.
    pub waves: Vec<WaveRecord>,
}

impl ApplySummary {
    /// Every planned reinstall is done (in this run or an earlier one of the same plan).
    pub fn succeeded(&self) -> bool {
        self.failed.is_empty()
            && self.gate_failed.is_empty()
            && self.unknown.is_empty()
            && self.refused.is_empty()
            && self.skipped.is_empty()
            && self.not_started.is_empty()
            && self
                .earlier
                .iter()
                .all(|earlier| earlier.outcome == Outcome::Succeeded)
            && !self.interrupted
    }
}

/// Which servers of a plan an interrupted apply already finished (for `--resume`).
#[derive(Debug, Default, Clone)]
pub struct ResumeScope {
    /// Outcome recorded for this plan (success or not): never started again.
    pub finished: BTreeSet<String>,
    /// Stopped by this plan's apply but not yet reinstalled: start with the reinstall.
    pub stopped: BTreeSet<String>,
    /// Installed by this plan's apply, whose health gate never ended: the gate runs again.
    pub gate_pending: BTreeSet<String>,
}

/// Timing knobs (tests shorten them).
#[derive(Debug, Clone)]
pub struct Settings {
    pub heartbeat: Duration,
    /// State is rewritten at most this often while outcomes arrive (the journal holds them
    /// durably in between).
    pub flush_every: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        let heartbeat = std::env::var("REIMAGE_HEARTBEAT_SECONDS")
            .ok()
            .and_then(|text| text.parse::<f64>().ok())
            .filter(|seconds| seconds.is_finite() && *seconds > 0.0)
            .map(Duration::from_secs_f64)
            .unwrap_or(Duration::from_secs(30));
        Settings {
            heartbeat,
            flush_every: Duration::from_secs(1),
        }
    }
}

pub struct Engine<'a> {
    plan: Option<&'a Plan>,
    fleet: &'a Fleet,
    store: &'a dyn StateStore,
    lock: &'a dyn StateLock,
    state: &'a mut State,
    reporter: &'a dyn Reporter,
    interrupt: Arc<Interrupt>,
    settings: Settings,
    items: BTreeMap<String, Item>,
    calls: JoinSet<calls::CallDone>,
    checks: JoinSet<check::CheckDone>,
    polls: JoinSet<watch::PollDone>,
    gates: JoinSet<gating::GateDone>,
    /// When each server's wave began (it is queued from then on).
    queued_at: HashMap<String, String>,
    /// Servers whose earlier install passed no gate yet (`--resume`): they start gating.
    resume_gates: BTreeSet<String>,
    polling: BTreeSet<String>,
    next_poll: HashMap<String, Instant>,
    summary: ApplySummary,
    failures: usize,
    halted: Option<String>,
    dirty: bool,
    last_flush: Instant,
    last_heartbeat: Instant,
    pending_count: usize,
    waits: tokio::sync::broadcast::Receiver<crate::provider::limits::WaitNotice>,
}

impl<'a> Engine<'a> {
    pub fn new(plan: Option<&'a Plan>, context: &super::Context<'a>, state: &'a mut State) -> Self {
        Engine {
            plan,
            fleet: context.fleet,
            store: context.store,
            lock: context.lock,
            state,
            reporter: context.reporter,
            interrupt: context.interrupt.clone(),
            settings: context.settings.clone(),
            items: BTreeMap::new(),
            calls: JoinSet::new(),
            checks: JoinSet::new(),
            polls: JoinSet::new(),
            gates: JoinSet::new(),
            queued_at: HashMap::new(),
            resume_gates: BTreeSet::new(),
            polling: BTreeSet::new(),
            next_poll: HashMap::new(),
            summary: ApplySummary::default(),
            failures: 0,
            halted: None,
            dirty: false,
            last_flush: Instant::now(),
            last_heartbeat: Instant::now(),
            pending_count: 0,
            waits: context.fleet.waits(),
        }
    }

    pub fn summary(&self) -> &ApplySummary {
        &self.summary
    }

    pub fn summary_mut(&mut self) -> &mut ApplySummary {
        &mut self.summary
    }

    fn protocol(&self) -> Protocol<'a> {
        Protocol::new(self.store.journal())
    }

    fn flush(&mut self, force: bool) -> Result<()> {
        if self.dirty && (force || self.last_flush.elapsed() >= self.settings.flush_every) {
            self.store.write(self.lock, self.state)?;
            self.dirty = false;
            self.last_flush = Instant::now();
        }
        Ok(())
    }

    /// Writes `applying` so an interrupted apply of this plan can be resumed.
    pub fn mark_applying(&mut self, plan: &Plan) -> Result<()> {
        self.state.applying = Some(crate::state::ApplyingPlan {
            plan_id: plan.plan_id.clone(),
            base_serial: plan.state.serial,
            since: records::now_text(),
        });
        self.dirty = true;
        self.flush(true)
    }

    /// Ends the apply: the state is written, `applying` cleared unless interrupted, and the
    /// journal compacted to the steps still in flight.
    pub fn finish(&mut self, clear_applying: bool) -> Result<()> {
        if clear_applying
            && !self.summary.interrupted
            && self.items.is_empty()
            && self.state.applying.is_some()
        {
            self.state.applying = None;
            self.dirty = true;
        }
        self.flush(true)?;
        self.store
            .journal()
            .compact()
            .map_err(|error| Error::State(error.into()))?;
        Ok(())
    }

    /// Ends a server's work: its open step (if any) is closed with `outcome`, the state records
    /// it, and the operator is told. Every way out of the engine for a server goes here.
    fn close(&mut self, server: &str, outcome: StepOutcome, message: Option<String>) -> Result<()> {
        let Some(mut item) = self.items.remove(server) else {
            return Ok(());
        };
        let operation = item.step.as_ref().and_then(|step| step.accepted().cloned());
        let record = match outcome {
            StepOutcome::Succeeded => item.success_record.clone().map(|record| {
                records::finish_success(record, operation.as_ref(), message.as_deref())
            }),
            // Nothing happened to the machine, and nothing about it is worth keeping: a resumed
            // apply of the plan starts the server again (after its re-read).
            StepOutcome::NotSent => None,
            _ => Some(records::failed_record(
                &item.target(),
                self.state,
                operation.as_ref(),
                message.as_deref().unwrap_or("failed"),
                match outcome {
                    StepOutcome::Failed => Outcome::Failed,
                    StepOutcome::Unknown => Outcome::Unknown,
                    _ => Outcome::Refused,
                },
            )),
        };
        let step = item.step.take();
        let step_kind = step.as_ref().map(OpenStep::step);
        if let Some(step) = step {
            self.protocol()
                .close(step, outcome, message.clone(), record.clone())?;
        }
        if let Some(record) = record {
            self.state.servers.insert(item.server.clone(), record);
            self.dirty = true;
        }
        if item.timings.install_started_at.is_some() && item.timings.install_ended_at.is_none() {
            item.timings.install_ended_at = Some(records::now_text());
        }
        if item.reconciled {
            self.reporter.report(Event::Reconciled {
                server: item.server.clone(),
                plan_id: item.plan_id.clone(),
                step: step_kind
                    .unwrap_or(StepCall::Reinstall)
                    .as_str()
                    .to_string(),
                outcome: outcome_word(outcome).to_string(),
                message,
            });
            return self.flush(false);
        }
        if outcome == StepOutcome::Succeeded && item.gate.is_some() {
            // Installed: the server counts as done once its gate passes.
            item.install_note = message;
            item.install_took = item.install_began.map(|began| began.elapsed());
            self.begin_gate(item);
            return self.flush(false);
        }
        self.finish_item(&mut item);
        let elapsed_s = item.started.elapsed().as_secs();
        if outcome == StepOutcome::Succeeded {
            self.summary.reinstalled.push(item.server.clone());
            self.reporter.report(Event::Done {
                server: item.server.clone(),
                elapsed_s,
                queued_s: item.queued.as_secs(),
                installing_s: item
                    .install_began
                    .map_or(0, |began| began.elapsed().as_secs()),
                note: message,
            });
            return self.flush(false);
        }
        let message = message.unwrap_or_else(|| "failed".to_string());
        let request_id = operation.and_then(|operation| operation.request_id);
        let entry = FailedServer {
            server: item.server.clone(),
            message: message.clone(),
            request_id: request_id.clone(),
        };
        match outcome {
            StepOutcome::Failed => self.summary.failed.push(entry),
            StepOutcome::Unknown => self.summary.unknown.push(entry),
            _ => self.summary.refused.push(entry),
        }
        self.reporter.report(Event::Failed {
            server: item.server.clone(),
            outcome: outcome_word(outcome).to_string(),
            message,
            request_id,
        });
        // Whatever kept the server from its new OS counts against the rollout.
        self.failures += 1;
        if item.canary {
            self.halt("a canary reinstall did not succeed".to_string());
        }
        self.flush(false)
    }

    /// The server's work ends: its timings go into the summary.
    fn finish_item(&mut self, item: &mut Item) {
        item.timings.finished_at = Some(records::now_text());
        self.summary
            .timings
            .insert(item.server.clone(), item.timings.clone());
    }

    /// Leaves a server untouched because it moved since the plan (nothing was sent).
    fn skip(&mut self, server: &str, reason: String) {
        if let Some(mut item) = self.items.remove(server) {
            self.finish_item(&mut item);
            self.summary.skipped.push(SkippedServer {
                server: server.to_string(),
                reason: reason.clone(),
            });
            self.reporter.report(Event::Skipped {
                server: server.to_string(),
                reason,
            });
        }
    }

    fn halt(&mut self, reason: String) {
        if self.halted.is_none() {
            self.halted = Some(reason);
        }
    }

    fn status(&mut self, server: &str, detail: String) {
        if let Some(item) = self.items.get_mut(server)
            && detail != item.last_detail
        {
            item.last_detail = detail.clone();
            let elapsed_s = item.started.elapsed().as_secs();
            self.reporter.report(Event::Status {
                server: server.to_string(),
                detail,
                elapsed_s,
            });
        }
    }

    /// Waits for the next thing to happen: a call, re-read or poll result, a resend or poll
    /// due, a heartbeat, a state flush, or Ctrl-C.
    async fn step(&mut self) -> Result<()> {
        self.send_due()?;
        self.start_due_gates();
        self.schedule_polls(false);
        let now = Instant::now();
        let mut wake = now
            + self
                .settings
                .heartbeat
                .saturating_sub(self.last_heartbeat.elapsed());
        if let Some(at) = self.next_round_at() {
            wake = wake.min(at);
        }
        for item in self.items.values() {
            if let WatchStage::Backoff(at) | WatchStage::Gating(Some(at)) = item.stage {
                wake = wake.min(at);
            }
        }
        if self.dirty {
            wake = wake.min(self.last_flush + self.settings.flush_every);
        }
        let interrupt = self.interrupt.clone();
        tokio::select! {
            Some(done) = self.calls.join_next() => {
                let done = done.map_err(|error| Error::Io { message: format!("a provider call task failed: {error}") })?;
                self.handle_call(done)?;
            }
            Some(done) = self.checks.join_next() => {
                let done = done.map_err(|error| Error::Io { message: format!("a re-read task failed: {error}") })?;
                self.handle_check(done)?;
            }
            Some(done) = self.polls.join_next() => {
                let done = done.map_err(|error| Error::Io { message: format!("a poll task failed: {error}") })?;
                self.handle_poll(done)?;
            }
            Some(done) = self.gates.join_next() => {
                let done = done.map_err(|error| Error::Io { message: format!("a health check task failed: {error}") })?;
                self.handle_gate(done)?;
            }
            Ok(notice) = self.waits.recv() => {
                let cause = match notice.cause {
                    WaitCause::RateLimit => "rate_limit",
                    WaitCause::Throttled => "throttled",
                    WaitCause::Retrying => "retrying",
                };
                self.reporter.report(Event::Waiting {
                    provider: notice.provider,
                    family: notice.family.as_str().to_string(),
                    cause: cause.to_string(),
                    wait_ms: notice.wait.as_millis() as u64,
                    slowed_to_per_minute: notice.slowed_to_per_minute,
                });
            }
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(wake)) => {}
            _ = interrupt.notify.notified() => {}
        }
        self.check_deadlines()?;
        if self.last_heartbeat.elapsed() >= self.settings.heartbeat {
            self.last_heartbeat = Instant::now();
            self.reporter.report(Event::Heartbeat {
                in_flight: self.items.len(),
                done: self.summary.reinstalled.len(),
                failed: self.summary.failed.len()
                    + self.summary.gate_failed.len()
                    + self.summary.unknown.len()
                    + self.summary.refused.len(),
                pending: self.pending_count,
            });
        }
        self.flush(false)
    }
}

/// The word events and the journal use for an outcome.
pub fn outcome_word(outcome: StepOutcome) -> &'static str {
    match outcome {
        StepOutcome::Succeeded => "succeeded",
        StepOutcome::Failed => "failed",
        StepOutcome::Unknown => "unknown",
        StepOutcome::NotSent => "not_sent",
        StepOutcome::Refused => "refused",
    }
}

/// How long ago an RFC 3339 time was (zero if unreadable).
fn age_of(at: Option<&str>) -> Duration {
    at.and_then(|text| text.parse::<jiff::Timestamp>().ok())
        .and_then(|then| {
            let millis = jiff::Timestamp::now().as_millisecond() - then.as_millisecond();
            u64::try_from(millis).ok()
        })
        .map(Duration::from_millis)
        .unwrap_or_default()
}

/// The wait before call number `sends + 1` of a step: 1 s, doubling, at most 30 s, with
/// jitter so throttled servers do not come back in lockstep.
fn backoff(sends: u32) -> Duration {
    let ceiling = Duration::from_secs(1)
        .saturating_mul(1u32 << sends.saturating_sub(1).min(5))
        .min(Duration::from_secs(30));
    let jitter = uuid::Uuid::new_v4().as_bytes()[0] as f64 / 255.0;
    ceiling.mul_f64(0.5 + jitter / 2.0)
}
