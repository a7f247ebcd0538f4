//! What an apply tells the operator while it runs. The same events feed the terminal display,
//! the CI line log and `--json` (newline-delimited, `schemas/apply-events.schema.json`).

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The apply starts.
    Plan {
        plan_id: String,
        reinstall: usize,
        adopt: usize,
        update_record: usize,
        forget: usize,
        waves: usize,
    },
    /// An in-flight step of an earlier, interrupted apply was checked with the provider.
    Reconciled {
        server: String,
        plan_id: String,
        step: String,
        outcome: String,
        message: Option<String>,
    },
    WaveStarted {
        wave: usize,
        canary: bool,
        group: Option<String>,
        servers: usize,
        max_parallel: usize,
    },
    Adopted {
        server: String,
    },
    /// A record changed without touching the machine (`protect` added or removed).
    RecordUpdated {
        server: String,
        protected: bool,
    },
    /// A server no longer in the manifest: its record was removed; the machine was not touched.
    Forgotten {
        server: String,
    },
    StopStarted {
        server: String,
    },
    Stopped {
        server: String,
    },
    ReinstallStarted {
        server: String,
        request_id: Option<String>,
        job_id: Option<String>,
    },
    /// A change in what the provider reports for a server in flight.
    Status {
        server: String,
        detail: String,
        elapsed_s: u64,
    },
    /// A call waits: a rate limit, the provider's throttling, or a retry.
    Waiting {
        provider: String,
        family: String,
        cause: String,
        wait_ms: u64,
        /// After the provider throttled: the rate (calls per minute) reimage slowed down to.
        #[serde(skip_serializing_if = "Option::is_none")]
        slowed_to_per_minute: Option<f64>,
    },
    /// The install succeeded; the server's health gate starts (it counts as done once it
    /// passes).
    GateStarted {
        server: String,
        check: String,
        attempts: u32,
        source: String,
    },
    /// One attempt of a health gate ended.
    GateAttempt {
        server: String,
        attempt: u32,
        attempts: u32,
        passed: bool,
        detail: String,
    },
    Done {
        server: String,
        /// From the start of the server's work to its end.
        elapsed_s: u64,
        /// Waiting to get its calls through before the install began: the re-read, the queue
        /// behind the provider's rate limits, the calls and their backoffs.
        queued_s: u64,
        /// The install itself: from its call being taken (or the install showing) to done.
        installing_s: u64,
        note: Option<String>,
    },
    /// A server's work ended without its new OS, or without passing its health gate:
    /// `gate_failed` (installed, but the gate did not pass), `failed` (the install ran and failed),
    /// `unknown` (whether anything happened could not be established), `refused` (the
    /// provider refused before acting) or `not_sent` (shown not to have acted).
    Failed {
        server: String,
        outcome: String,
        message: String,
        request_id: Option<String>,
    },
    /// Not touched: the server moved since the plan (re-read right before its call).
    Skipped {
        server: String,
        reason: String,
    },
    NotStarted {
        server: String,
        reason: String,
    },
    /// Ctrl-C: no new reinstalls start; with `abandon`, in-flight ones are left to the journal.
    Interrupted {
        abandon: bool,
    },
    Heartbeat {
        in_flight: usize,
        done: usize,
        failed: usize,
        pending: usize,
    },
    Summary {
        reinstalled: Vec<String>,
        adopted: Vec<String>,
        records_updated: Vec<String>,
        forgotten: Vec<String>,
        failed: Vec<FailedServer>,
        /// Installed, but the health gate did not pass.
        gate_failed: Vec<FailedServer>,
        unknown: Vec<FailedServer>,
        refused: Vec<FailedServer>,
        skipped: Vec<SkippedServer>,
        not_started: Vec<NotStartedServer>,
        /// `--resume`: servers an earlier run of the same plan finished.
        earlier: Vec<super::engine::EarlierServer>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FailedServer {
    pub server: String,
    pub message: String,
    pub request_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SkippedServer {
    pub server: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NotStartedServer {
    pub server: String,
    pub reason: String,
}

/// Receives events; implementations render them.
pub trait Reporter: Send + Sync {
    fn report(&self, event: Event);
}
