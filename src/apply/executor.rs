//! The apply engine: starts exactly the plan's reinstalls, wave by wave, under the rollout
//! policy and the providers' rate limits, watches them with batched polls, and records every
//! step in the journal (before and after each call) and every outcome in the state.
//!
//! One loop owns all mutable state (items in flight, the state, the journal); provider calls
//! and polls run as tasks whose results come back to it. So a slow call never stops the
//! others from being watched, and the journal and state are written in one order.
//!
//! Safety rules kept here:
//! - a reinstall call is sent once; when its response is lost, the server is observed until
//!   the install shows or `start_grace` passes, and the step is then recorded as unknown,
//!   never resent;
//! - nothing starts after a canary failure, after `max_failures`, or after Ctrl-C;
//! - each step's intent is durable before its call is made.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio::task::JoinSet;

use super::events::{Event, FailedServer, NotStartedServer, Reporter};
use super::records::{self, Target};
use super::step_token;
use crate::error::{Error, Result};
use crate::manifest::ProviderType;
use crate::ops::fleet::Fleet;
use crate::plan::model::{ActionKind, Plan, ServerPlan};
use crate::plan::rollout::Wave;
use crate::provider::limits::WaitCause;
use crate::provider::{
    Observation, Operation, OperationStatus, Provider, ProviderError, ReinstallRequest,
    ServerStatus,
};
use crate::state::journal::{JournalEntry, Phase, Step, StepOutcome, StepState};
use crate::state::{ServerRecord, State, StateLock, StateStore};

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

/// What happened, per server.
#[derive(Debug, Default, Clone)]
pub struct ApplySummary {
    pub adopted: Vec<String>,
    pub reinstalled: Vec<String>,
    pub failed: Vec<FailedServer>,
    pub not_started: Vec<NotStartedServer>,
    /// Ctrl-C was pressed.
    pub interrupted: bool,
}

impl ApplySummary {
    pub fn succeeded(&self) -> bool {
        self.failed.is_empty() && self.not_started.is_empty() && !self.interrupted
    }
}

/// Which servers of a plan an interrupted apply already finished (for `--resume`).
#[derive(Debug, Default, Clone)]
pub struct ResumeScope {
    /// Outcome recorded for this plan (success or failure): never started again.
    pub finished: BTreeSet<String>,
    /// Stopped by this plan's apply but not yet reinstalled: start with the reinstall.
    pub stopped: BTreeSet<String>,
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

/// One server being worked on.
struct Item {
    plan_id: String,
    server: String,
    provider: Arc<dyn Provider>,
    provider_name: String,
    provider_type: ProviderType,
    cloud_id: String,
    image: String,
    previous_image: Option<String>,
    success_record: Option<ServerRecord>,
    /// When the current step was started (for timeouts and elapsed times).
    started: Instant,
    /// The step under way (its outcome closes it in the journal).
    step: Step,
    stage: Stage,
    last_detail: String,
    /// Canary items halt the rollout when they fail.
    canary: bool,
    /// The planned server (absent for steps reconciled from an earlier run's journal).
    planned: Option<usize>,
    /// The reinstall request as sent, kept for providers that may resend it with its token.
    request: Option<ReinstallRequest>,
    /// Times the same request was resent after a lost response.
    resends: u8,
}

/// A request whose response was lost is resent at most this often, and only to providers whose
/// idempotency tokens make a repeat harmless.
const MAX_TOKEN_RESENDS: u8 = 2;

#[derive(Debug, Clone)]
enum Stage {
    /// A provider call is in flight.
    Calling,
    /// Stopped was asked; observing until the server reads `Stopped`.
    Stopping,
    /// The reinstall call's response was lost: observing for signs of the install.
    Verifying,
    /// The install runs; polled through its operation.
    Installing(Operation),
}

impl Item {
    fn target(&self) -> Target<'_> {
        Target {
            plan_id: &self.plan_id,
            server: &self.server,
            provider: &self.provider_name,
            provider_type: self.provider_type,
            cloud_id: &self.cloud_id,
            previous_image: self.previous_image.as_deref(),
        }
    }
}

/// Results of provider calls made in tasks.
enum CallDone {
    Stop {
        server: String,
        result: std::result::Result<(), ProviderError>,
    },
    Reinstall {
        results: Vec<(String, std::result::Result<Operation, ProviderError>)>,
    },
}

struct PollDone {
    provider: String,
    statuses: Vec<(String, std::result::Result<OperationStatus, String>)>,
    observations: std::result::Result<BTreeMap<String, Observation>, String>,
    /// The ids the observations were asked for, by server.
    observed_servers: Vec<(String, String)>,
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
    calls: JoinSet<CallDone>,
    polls: JoinSet<PollDone>,
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
            polls: JoinSet::new(),
            polling: BTreeSet::new(),
            next_poll: HashMap::new(),
            summary: ApplySummary::default(),
            failures: 0,
            halted: None,
            dirty: false,
            last_flush: Instant::now(),
            last_heartbeat: Instant::now(),
            pending_count: 0,
            waits: crate::provider::limits::waits(),
        }
    }

    pub fn summary(&self) -> &ApplySummary {
        &self.summary
    }

    // ----- journal and state -------------------------------------------------------------

    fn journal(&self, item: &Item, step: Step, phase: Phase) -> Result<()> {
        self.journal_entries(vec![JournalEntry {
            plan_id: item.plan_id.clone(),
            server: item.server.clone(),
            provider: item.provider_name.clone(),
            cloud_id: item.cloud_id.clone(),
            step,
            at: records::now_text(),
            phase,
        }])
    }

    fn journal_entries(&self, entries: Vec<JournalEntry>) -> Result<()> {
        self.store
            .journal()
            .append(&entries)
            .map_err(|error| Error::State(error.into()))
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

    fn finish_item(
        &mut self,
        server: &str,
        outcome: StepOutcome,
        message: Option<String>,
    ) -> Result<()> {
        let Some(item) = self.items.remove(server) else {
            return Ok(());
        };
        let operation = match &item.stage {
            Stage::Installing(operation) => Some(operation.clone()),
            _ => None,
        };
        let record = match outcome {
            StepOutcome::Succeeded => item.success_record.clone().map(|record| {
                records::finish_success(record, operation.as_ref(), message.as_deref())
            }),
            _ => Some(records::failed_record(
                &item.target(),
                self.state,
                operation.as_ref(),
                message.as_deref().unwrap_or("failed"),
            )),
        };
        self.journal(
            &item,
            item.step,
            Phase::Outcome {
                outcome,
                message: message.clone(),
                record: record.clone().map(Box::new),
            },
        )?;
        if let Some(record) = record {
            self.state.servers.insert(item.server.clone(), record);
            self.dirty = true;
        }
        let elapsed_s = item.started.elapsed().as_secs();
        match outcome {
            StepOutcome::Succeeded => {
                self.summary.reinstalled.push(item.server.clone());
                self.reporter.report(Event::Done {
                    server: item.server.clone(),
                    elapsed_s,
                    note: message,
                });
            }
            _ => {
                let message = message.unwrap_or_else(|| "failed".to_string());
                let request_id = operation.and_then(|operation| operation.request_id);
                self.summary.failed.push(FailedServer {
                    server: item.server.clone(),
                    message: message.clone(),
                    request_id: request_id.clone(),
                });
                self.reporter.report(Event::Failed {
                    server: item.server.clone(),
                    message,
                    request_id,
                });
                self.failures += 1;
                if item.canary {
                    self.halt("a canary reinstall failed".to_string());
                }
            }
        }
        self.flush(false)
    }

    fn halt(&mut self, reason: String) {
        if self.halted.is_none() {
            self.halted = Some(reason);
        }
    }

    // ----- adoption ------------------------------------------------------------------------

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

    // ----- starting work ------------------------------------------------------------------

    fn new_item(&self, plan: &Plan, index: usize, canary: bool) -> Result<Item> {
        let server = &plan.servers[index];
        Ok(Item {
            plan_id: plan.plan_id.clone(),
            server: server.name.clone(),
            provider: self.fleet.provider(&server.provider)?,
            provider_name: server.provider.clone(),
            provider_type: server.provider_type,
            cloud_id: server.cloud_id.clone(),
            image: server.desired.image.clone(),
            previous_image: server.observed.as_ref().and_then(|o| o.image.clone()),
            success_record: Some(records::success_record(plan, server, self.state)?),
            started: Instant::now(),
            step: Step::Reinstall,
            stage: Stage::Calling,
            last_detail: String::new(),
            canary,
            planned: Some(index),
            request: None,
            resends: 0,
        })
    }

    /// Starts the given planned servers: stops first where planned, reinstall calls batched
    /// per provider up to its `reinstall_batch`.
    fn start(
        &mut self,
        plan: &Plan,
        indexes: Vec<usize>,
        canary: bool,
        stopped: &BTreeSet<String>,
    ) -> Result<()> {
        let mut reinstall_now: Vec<usize> = Vec::new();
        for index in indexes {
            let server = &plan.servers[index];
            let mut item = match self.new_item(plan, index, canary) {
                Ok(item) => item,
                Err(error) => {
                    self.not_started(&server.name, format!("cannot start: {error}"));
                    continue;
                }
            };
            if server.action == ActionKind::StopAndReinstall && !stopped.contains(&server.name) {
                let token = step_token(&plan.plan_id, &server.name, "stop");
                self.journal(
                    &item,
                    Step::Stop,
                    Phase::Intent {
                        token: token.clone(),
                        image: None,
                        previous_image: None,
                        success_record: None,
                    },
                )?;
                self.reporter.report(Event::StopStarted {
                    server: server.name.clone(),
                });
                let provider = item.provider.clone();
                let cloud_id = item.cloud_id.clone();
                let name = server.name.clone();
                self.calls.spawn(async move {
                    let result = provider.stop(&cloud_id, &token).await;
                    CallDone::Stop {
                        server: name,
                        result,
                    }
                });
                item.stage = Stage::Calling;
                item.step = Step::Stop;
                self.items.insert(server.name.clone(), item);
            } else {
                self.items.insert(server.name.clone(), item);
                reinstall_now.push(index);
            }
        }
        self.start_reinstalls(plan, reinstall_now)
    }

    fn start_reinstalls(&mut self, plan: &Plan, indexes: Vec<usize>) -> Result<()> {
        let mut by_provider: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for index in indexes {
            by_provider
                .entry(plan.servers[index].provider.clone())
                .or_default()
                .push(index);
        }
        for (provider_name, indexes) in by_provider {
            let provider = self.fleet.provider(&provider_name)?;
            let batch = provider.capabilities().reinstall_batch.max(1);
            for chunk in indexes.chunks(batch) {
                let mut requests: Vec<ReinstallRequest> = Vec::new();
                let mut intents = Vec::new();
                for &index in chunk {
                    let server: &ServerPlan = &plan.servers[index];
                    match records::reinstall_request(plan, server) {
                        Ok(request) => {
                            if let Some(item) = self.items.get_mut(&server.name) {
                                item.started = Instant::now();
                                item.stage = Stage::Calling;
                                item.step = Step::Reinstall;
                                item.request = Some(request.clone());
                                intents.push(JournalEntry {
                                    plan_id: plan.plan_id.clone(),
                                    server: server.name.clone(),
                                    provider: provider_name.clone(),
                                    cloud_id: server.cloud_id.clone(),
                                    step: Step::Reinstall,
                                    at: records::now_text(),
                                    phase: Phase::Intent {
                                        token: request.token.clone(),
                                        image: Some(request.image.clone()),
                                        previous_image: request.previous_image.clone(),
                                        success_record: item.success_record.clone().map(Box::new),
                                    },
                                });
                            }
                            requests.push(request);
                        }
                        Err(error) => {
                            // Nothing was sent: the request could not even be built.
                            self.items.remove(&server.name);
                            let message = format!("not sent: {error}");
                            self.summary.failed.push(FailedServer {
                                server: server.name.clone(),
                                message: message.clone(),
                                request_id: None,
                            });
                            self.reporter.report(Event::Failed {
                                server: server.name.clone(),
                                message,
                                request_id: None,
                            });
                            self.failures += 1;
                        }
                    }
                }
                if requests.is_empty() {
                    continue;
                }
                // The intents are durable before the call is made.
                self.journal_entries(intents)?;
                let provider = provider.clone();
                self.calls.spawn(async move {
                    let results = provider.reinstall_batch(&requests).await;
                    CallDone::Reinstall {
                        results: requests
                            .iter()
                            .map(|request| request.server.clone())
                            .zip(results.into_iter().chain(std::iter::repeat_with(|| {
                                Err(ProviderError::Config {
                                    provider: String::new(),
                                    message: "the provider returned no result for this request"
                                        .to_string(),
                                    help: String::new(),
                                })
                            })))
                            .collect(),
                    }
                });
            }
        }
        Ok(())
    }

    fn not_started(&mut self, server: &str, reason: String) {
        self.summary.not_started.push(NotStartedServer {
            server: server.to_string(),
            reason: reason.clone(),
        });
        self.reporter.report(Event::NotStarted {
            server: server.to_string(),
            reason,
        });
    }

    fn handle_call(&mut self, done: CallDone) -> Result<()> {
        match done {
            CallDone::Stop { server, result } => {
                if !self.items.contains_key(&server) {
                    return Ok(());
                }
                match result {
                    Ok(()) => {
                        if let Some(item) = self.items.get_mut(&server) {
                            item.stage = Stage::Stopping;
                        }
                        self.poll_soon(&server);
                    }
                    Err(error) => {
                        let message = format!("stop call failed: {error}");
                        self.finish_item(&server, StepOutcome::Failed, Some(message))?;
                    }
                }
            }
            CallDone::Reinstall { results } => {
                for (server, result) in results {
                    let Some(item) = self.items.get(&server) else {
                        continue;
                    };
                    match result {
                        Ok(operation) => {
                            self.journal(
                                item,
                                Step::Reinstall,
                                Phase::Called {
                                    operation: operation.clone(),
                                },
                            )?;
                            self.reporter.report(Event::ReinstallStarted {
                                server: server.clone(),
                                request_id: operation.request_id.clone(),
                                job_id: operation.job_id.clone(),
                            });
                            if let Some(item) = self.items.get_mut(&server) {
                                item.stage = Stage::Installing(operation);
                            }
                            self.poll_soon(&server);
                        }
                        Err(ProviderError::Transport {
                            maybe_sent: true,
                            message,
                            ..
                        }) if self.resend_with_token(&server, &message) => {}
                        Err(ProviderError::Transport {
                            maybe_sent: true,
                            message,
                            ..
                        }) => {
                            // Never resent: find out from the server whether it arrived.
                            self.reporter.report(Event::Status {
                                server: server.clone(),
                                detail: format!(
                                    "reinstall response lost ({message}); checking the server before deciding"
                                ),
                                elapsed_s: 0,
                            });
                            if let Some(item) = self.items.get_mut(&server) {
                                item.stage = Stage::Verifying;
                            }
                            self.poll_soon(&server);
                        }
                        Err(error) => {
                            let message = format!("reinstall call refused: {error}");
                            self.finish_item(&server, StepOutcome::Failed, Some(message))?;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Resends a request whose response was lost, when the provider's idempotency token makes
    /// that harmless. Returns whether it did.
    fn resend_with_token(&mut self, server: &str, lost: &str) -> bool {
        let Some(item) = self.items.get_mut(server) else {
            return false;
        };
        let Some(request) = item.request.clone() else {
            return false;
        };
        if !item.provider.resends_safely() || item.resends >= MAX_TOKEN_RESENDS {
            return false;
        }
        item.resends += 1;
        item.stage = Stage::Calling;
        let provider = item.provider.clone();
        self.reporter.report(Event::Status {
            server: server.to_string(),
            detail: format!(
                "reinstall response lost ({lost}); sending the same request again with its \
                 idempotency token (the provider answers a repeat without installing twice)"
            ),
            elapsed_s: item.started.elapsed().as_secs(),
        });
        self.calls.spawn(async move {
            let results = provider
                .reinstall_batch(std::slice::from_ref(&request))
                .await;
            CallDone::Reinstall {
                results: vec![(
                    request.server.clone(),
                    results.into_iter().next().unwrap_or_else(|| {
                        Err(ProviderError::Config {
                            provider: String::new(),
                            message: "the provider returned no result for this request".to_string(),
                            help: String::new(),
                        })
                    }),
                )],
            }
        });
        true
    }

    // ----- watching ---------------------------------------------------------------------

    fn poll_soon(&mut self, server: &str) {
        if let Some(item) = self.items.get(server) {
            let interval = item.provider.capabilities().poll_interval;
            self.next_poll
                .entry(item.provider_name.clone())
                .or_insert_with(|| Instant::now() + interval);
        }
    }

    /// Starts a poll for every provider whose turn has come (one poll in flight each).
    fn schedule_polls(&mut self, force: bool) {
        let now = Instant::now();
        let mut providers: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for item in self.items.values() {
            if matches!(item.stage, Stage::Calling) {
                continue;
            }
            providers
                .entry(item.provider_name.clone())
                .or_default()
                .push(item.server.clone());
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
                    Stage::Stopping | Stage::Verifying => {
                        to_observe.push((name.clone(), item.cloud_id.clone()))
                    }
                    Stage::Calling => {}
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

    fn handle_poll(&mut self, done: PollDone) -> Result<()> {
        self.polling.remove(&done.provider);
        for (server, status) in done.statuses {
            let Some(item) = self.items.get_mut(&server) else {
                continue;
            };
            match status {
                Ok(OperationStatus::Succeeded { note, .. }) => {
                    self.finish_item(&server, StepOutcome::Succeeded, note)?;
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
                    self.finish_item(&server, StepOutcome::Failed, Some(message))?;
                }
                Ok(OperationStatus::InProgress { detail }) => {
                    if detail != item.last_detail {
                        item.last_detail = detail.clone();
                        let elapsed_s = item.started.elapsed().as_secs();
                        self.reporter.report(Event::Status {
                            server,
                            detail,
                            elapsed_s,
                        });
                    }
                }
                Err(message) => {
                    let detail = format!("status read failed, will retry: {message}");
                    if detail != item.last_detail {
                        item.last_detail = detail.clone();
                        let elapsed_s = item.started.elapsed().as_secs();
                        self.reporter.report(Event::Status {
                            server,
                            detail,
                            elapsed_s,
                        });
                    }
                }
            }
        }
        match done.observations {
            Ok(observations) => {
                for (server, cloud_id) in done.observed_servers {
                    let observation = observations
                        .get(&cloud_id)
                        .cloned()
                        .unwrap_or(Observation::NotFound);
                    self.handle_observation(&server, observation)?;
                }
            }
            Err(message) => {
                for (server, _) in done.observed_servers {
                    if let Some(item) = self.items.get_mut(&server) {
                        let detail = format!("read failed, will retry: {message}");
                        if detail != item.last_detail {
                            item.last_detail = detail.clone();
                            self.reporter.report(Event::Status {
                                server,
                                detail,
                                elapsed_s: item.started.elapsed().as_secs(),
                            });
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn handle_observation(&mut self, server: &str, observation: Observation) -> Result<()> {
        let Some(item) = self.items.get(server) else {
            return Ok(());
        };
        let observed = match observation {
            Observation::Found(observed) => observed,
            Observation::NotFound => {
                return self.finish_item(
                    server,
                    StepOutcome::Failed,
                    Some("the server disappeared at the provider".to_string()),
                );
            }
        };
        match item.stage {
            Stage::Stopping => {
                if observed.status == ServerStatus::Stopped {
                    self.journal(
                        item,
                        Step::Stop,
                        Phase::Outcome {
                            outcome: StepOutcome::Succeeded,
                            message: None,
                            record: None,
                        },
                    )?;
                    self.reporter.report(Event::Stopped {
                        server: server.to_string(),
                    });
                    match (self.plan, item.planned) {
                        (Some(plan), Some(index)) => self.start_reinstalls(plan, vec![index])?,
                        _ => {
                            // A stop reconciled from an earlier run: the reinstall of that plan
                            // was never started, and is not started now.
                            let name = server.to_string();
                            self.items.remove(&name);
                            self.not_started(
                                &name,
                                "stopped by an interrupted apply; its reinstall was never sent"
                                    .to_string(),
                            );
                        }
                    }
                } else if observed.status == ServerStatus::Gone {
                    self.finish_item(
                        server,
                        StepOutcome::Failed,
                        Some(format!(
                            "the server is {} at the provider",
                            observed.raw_status
                        )),
                    )?;
                }
            }
            Stage::Verifying => {
                let image_moved = item.previous_image.as_deref() != Some(item.image.as_str())
                    && observed.image.as_deref() == Some(item.image.as_str());
                match observed.status {
                    ServerStatus::Installing => {
                        let operation = Operation {
                            server: item.server.clone(),
                            cloud_id: item.cloud_id.clone(),
                            image: item.image.clone(),
                            job_id: None,
                            request_id: None,
                            started_at_ms: jiff::Timestamp::now().as_millisecond()
                                - item.started.elapsed().as_millis() as i64,
                            previous_image: item.previous_image.clone(),
                        };
                        self.journal(
                            item,
                            Step::Reinstall,
                            Phase::Called {
                                operation: operation.clone(),
                            },
                        )?;
                        if let Some(item) = self.items.get_mut(server) {
                            item.stage = Stage::Installing(operation);
                        }
                    }
                    ServerStatus::InstallFailed => {
                        self.finish_item(
                            server,
                            StepOutcome::Failed,
                            Some(format!(
                                "the install failed (status {})",
                                observed.raw_status
                            )),
                        )?;
                    }
                    ServerStatus::Running | ServerStatus::Stopped if image_moved => {
                        self.finish_item(server, StepOutcome::Succeeded, None)?;
                    }
                    _ if item.started.elapsed() > item.provider.start_grace() => {
                        let message = format!(
                            "the reinstall call may have reached the provider, but after {}s the server \
                             shows no install (status {}, image {}); it was NOT sent again. Check the \
                             server, then plan again",
                            item.started.elapsed().as_secs(),
                            observed.raw_status,
                            observed.image.as_deref().unwrap_or("unknown")
                        );
                        self.finish_item(server, StepOutcome::Unknown, Some(message))?;
                    }
                    _ => {}
                }
            }
            Stage::Calling | Stage::Installing(_) => {}
        }
        Ok(())
    }

    fn check_timeouts(&mut self) -> Result<()> {
        let expired: Vec<(String, String)> = self
            .items
            .values()
            .filter(|item| !matches!(item.stage, Stage::Calling))
            .filter(|item| item.started.elapsed() > item.provider.capabilities().install_timeout)
            .map(|item| {
                (
                    item.server.clone(),
                    format!(
                        "timed out after {}s waiting ({}); the install may still be running at the provider",
                        item.started.elapsed().as_secs(),
                        if item.last_detail.is_empty() { "no status yet" } else { &item.last_detail }
                    ),
                )
            })
            .collect();
        for (server, message) in expired {
            self.finish_item(&server, StepOutcome::Unknown, Some(message))?;
        }
        Ok(())
    }

    /// Waits for the next thing to happen: a call or poll result, a poll due, a heartbeat,
    /// a state flush, or Ctrl-C.
    async fn step(&mut self) -> Result<()> {
        self.schedule_polls(false);
        let now = Instant::now();
        let mut wake = now
            + self
                .settings
                .heartbeat
                .saturating_sub(self.last_heartbeat.elapsed());
        for (provider, at) in &self.next_poll {
            if !self.polling.contains(provider)
                && self
                    .items
                    .values()
                    .any(|item| &item.provider_name == provider)
            {
                wake = wake.min(*at);
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
            Some(done) = self.polls.join_next() => {
                let done = done.map_err(|error| Error::Io { message: format!("a poll task failed: {error}") })?;
                self.handle_poll(done)?;
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
                });
            }
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(wake)) => {}
            _ = interrupt.notify.notified() => {}
        }
        self.check_timeouts()?;
        if self.last_heartbeat.elapsed() >= self.settings.heartbeat {
            self.last_heartbeat = Instant::now();
            self.reporter.report(Event::Heartbeat {
                in_flight: self.items.len(),
                done: self.summary.reinstalled.len(),
                failed: self.summary.failed.len(),
                pending: self.pending_count,
            });
        }
        self.flush(false)
    }

    fn note_interrupt(&mut self) {
        if self.interrupt.stopping() && !self.summary.interrupted {
            self.summary.interrupted = true;
            self.reporter.report(Event::Interrupted { abandon: false });
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
        let total: usize = waves.iter().map(|wave| wave.servers.len()).sum();
        self.pending_count = total;
        for wave in &waves {
            let mut pending: VecDeque<usize> = wave
                .servers
                .iter()
                .filter(|name| !resume.finished.contains(*name))
                .filter_map(|name| index_of.get(name.as_str()).copied())
                .filter(|index| plan.servers[*index].action.is_destructive())
                .collect();
            if let Some(reason) = self.stop_reason() {
                for index in pending.drain(..) {
                    self.pending_count = self.pending_count.saturating_sub(1);
                    self.not_started(&plan.servers[index].name, reason.clone());
                }
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
                    let mut batch = Vec::new();
                    while batch.len() < capacity {
                        let Some(index) = pending.pop_front() else {
                            break;
                        };
                        batch.push(index);
                    }
                    if !batch.is_empty() {
                        self.pending_count = self.pending_count.saturating_sub(batch.len());
                        self.start(plan, batch, wave.canary, &resume.stopped)?;
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
            if self.interrupt.abandoned() {
                self.abandon_in_flight();
                for index in pending.drain(..) {
                    self.not_started(
                        &plan.servers[index].name,
                        "interrupted (Ctrl-C)".to_string(),
                    );
                }
                break;
            }
            if let Some(reason) = self.stop_reason() {
                for index in pending.drain(..) {
                    self.pending_count = self.pending_count.saturating_sub(1);
                    self.not_started(&plan.servers[index].name, reason.clone());
                }
            }
        }
        // Waves after an abandon are never started.
        if self.interrupt.abandoned() {
            let started: BTreeSet<String> = self
                .summary
                .reinstalled
                .iter()
                .chain(self.summary.failed.iter().map(|f| &f.server))
                .chain(self.summary.not_started.iter().map(|n| &n.server))
                .cloned()
                .collect();
            for wave in &waves {
                for name in &wave.servers {
                    if !started.contains(name) && !resume.finished.contains(name) {
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

    fn abandon_in_flight(&mut self) {
        self.summary.interrupted = true;
        self.reporter.report(Event::Interrupted { abandon: true });
        let left: Vec<String> = self.items.keys().cloned().collect();
        for server in left {
            self.items.remove(&server);
            self.not_started(
                &server,
                "left in flight at Ctrl-C: the journal has it; the next `reimage apply` or `reimage plan` checks it with the provider"
                    .to_string(),
            );
        }
    }

    // ----- reconciliation of an earlier run's journal -------------------------------------

    /// Takes over the steps an earlier, interrupted apply left in flight. With `wait`, watches
    /// them to the end (apply); without, looks once (plan) and leaves the rest in flight.
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
            let started = Instant::now()
                .checked_sub(age_of(step.intent_at.as_deref()))
                .unwrap_or_else(Instant::now);
            let stage = match (step.step, &step.operation) {
                (Step::Reinstall, Some(operation)) => Stage::Installing(operation.clone()),
                (Step::Reinstall, None) => Stage::Verifying,
                (Step::Stop, _) => Stage::Stopping,
            };
            let step_kind = step.step;
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
                    success_record: step.success_record.clone(),
                    started,
                    step: step_kind,
                    stage,
                    last_detail: String::new(),
                    canary: false,
                    planned: None,
                    request: None,
                    resends: 0,
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
        for step in steps.iter().filter(|step| step.step == Step::Reinstall) {
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

/// One poll round for one provider: operations polled in batches of the provider's read
/// limit; servers being stopped or verified observed in batches.
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
