//! One server's place in the engine: what it is, where its step stands ([`WatchStage`]) and how long
//! it spent queued.

use super::*;

/// One server being worked on.
pub(super) struct Item {
    pub(super) plan_id: String,
    pub(super) server: String,
    pub(super) provider: Arc<dyn Provider>,
    pub(super) provider_name: String,
    pub(super) provider_type: ProviderType,
    pub(super) cloud_id: String,
    /// The image the reinstall installs.
    pub(super) image: String,
    /// The image seen at plan time.
    pub(super) previous_image: Option<String>,
    /// The server as the plan saw it.
    pub(super) planned_observed: Option<Observed>,
    pub(super) success_record: Option<ServerRecord>,
    /// Canary items halt the rollout when they do not succeed.
    pub(super) canary: bool,
    /// The planned server (absent for steps taken over from an earlier run's journal).
    pub(super) planned: Option<usize>,
    /// Planned as `stop-and-reinstall`: a stop comes first unless the server reads stopped.
    pub(super) stop_first: bool,
    /// The journaled step under way; `None` before the first call (the re-read).
    pub(super) step: Option<OpenStep>,
    pub(super) stage: WatchStage,
    /// When the current stage began (watch deadlines).
    pub(super) stage_since: Instant,
    /// When the step's last call was sent.
    pub(super) sent_at: Instant,
    /// When that call ended without an answer (timeout, connection lost, 5xx): the provider may
    /// have acted at any moment until then, however slowly it took the call in, so the grace
    /// for signs of it starts here, not at the sending.
    pub(super) answer_lost_at: Instant,
    /// The last successful read of the server since then, and the longest time between two
    /// (the call counting as the first): an install that shows for at least the provider's
    /// grace cannot hide in gaps no longer than it.
    pub(super) last_read: Instant,
    pub(super) longest_gap: Duration,
    /// When work on this server began (elapsed times).
    pub(super) started: Instant,
    /// Time spent waiting to get a call through before the install began: the re-read, the
    /// queue behind the provider's rate limits, the calls themselves and their backoffs.
    pub(super) queued: Duration,
    /// When the install was seen to begin (its call accepted, or the install showing).
    pub(super) install_began: Option<Instant>,
    /// How long the install took, once it succeeded (a health gate's time is not in it).
    pub(super) install_took: Option<Duration>,
    /// The server as read right before the step's first call.
    pub(super) baseline: Option<Baseline>,
    /// The reinstall request as sent, kept for resends.
    pub(super) request: Option<ReinstallRequest>,
    pub(super) last_detail: String,
    /// Taken over from a journal: nobody watched it while the earlier process was gone.
    pub(super) reconciled: bool,
    /// Re-reads before the call tried so far.
    pub(super) checks: u32,
    /// The health gate to pass after the install (from the plan).
    pub(super) gate: Option<HealthGate>,
    /// The server as a gate's command sees it.
    pub(super) gate_target: GateTarget,
    /// Gate attempts made so far.
    pub(super) gate_attempts: u32,
    /// The provider's note on the install's success, kept for the end of the gate.
    pub(super) install_note: Option<String>,
    pub(super) timings: ServerTimings,
}

/// Where the engine's watch of a step stands (in memory only; the journal records its
/// `JournalPhase`, the step its `StepCall`).
#[derive(Debug, Clone)]
pub(super) enum WatchStage {
    /// The re-read before the call is in flight.
    Checking,
    /// A provider call is in flight.
    Calling,
    /// Waiting until the given time to send again (or re-read, before the first call).
    Backoff(Instant),
    /// The stop was accepted: watched until the server reads stopped.
    Stopping,
    /// The call's answer was lost: watched for signs of it.
    Verifying,
    /// The install runs; polled through its operation.
    Installing(Operation),
    /// The install succeeded; the health gate runs. The next attempt is due at the given time
    /// (`None` while one runs).
    Gating(Option<Instant>),
}

impl Item {
    pub(super) fn target(&self) -> Target<'_> {
        Target {
            plan_id: &self.plan_id,
            server: &self.server,
            provider: &self.provider_name,
            provider_type: self.provider_type,
            cloud_id: &self.cloud_id,
            previous_image: self.previous_image.as_deref(),
        }
    }

    pub(super) fn enter(&mut self, stage: WatchStage) {
        let now = Instant::now();
        if self.install_began.is_none() {
            if matches!(
                self.stage,
                WatchStage::Checking | WatchStage::Calling | WatchStage::Backoff(_)
            ) {
                self.queued += now.saturating_duration_since(self.stage_since);
            }
            if matches!(stage, WatchStage::Installing(_)) {
                self.install_began = Some(now);
            }
        }
        self.stage = stage;
        self.stage_since = now;
    }

    /// The step's call goes out now.
    pub(super) fn sending(&mut self) {
        let now = Instant::now();
        self.sent_at = now;
        self.answer_lost_at = now;
        self.last_read = now;
        self.longest_gap = Duration::ZERO;
        self.enter(WatchStage::Calling);
    }

    /// The server was read by a read begun at `started` and ending now. Between two reads the
    /// server went unseen for at most the time from the earlier one's start to this one's end.
    pub(super) fn read_at(&mut self, started: Instant) {
        let now = Instant::now();
        self.longest_gap = self
            .longest_gap
            .max(now.saturating_duration_since(self.last_read));
        self.last_read = started.max(self.last_read);
    }

    pub(super) fn step_kind(&self) -> Option<StepCall> {
        self.step.as_ref().map(OpenStep::step)
    }
}
