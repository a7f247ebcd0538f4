//! Rate-limit data: API families, limits, the sliding window a rate allows, and wait notices.
//! The limiter itself (which waits) lives in `provider::limits`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The kinds of calls a provider makes, each limited on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApiFamily {
    /// Describe/list calls made while planning.
    Read,
    /// Reinstall / change-OS calls.
    Reinstall,
    /// Status polls (job or instance reads) while waiting for installs.
    Status,
    /// Stop calls before a reinstall.
    Stop,
    /// Authentication calls (token or ticket issue).
    Auth,
    /// Catalogue look-ups while planning (JD's OS list per device type, EDIS's turnkey
    /// images): other APIs than the server reads, limited on their own so that a look-up that
    /// needs the reads' answers does not wait behind them.
    Catalogue,
}

impl ApiFamily {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Reinstall => "reinstall",
            Self::Status => "status",
            Self::Stop => "stop",
            Self::Auth => "auth",
            Self::Catalogue => "catalogue",
        }
    }
}

/// One family's limit.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Calls per minute (sustained).
    pub per_minute: f64,
    /// Calls in flight at once.
    pub concurrency: usize,
}

impl RateLimit {
    pub const fn new(per_minute: f64, concurrency: usize) -> Self {
        RateLimit {
            per_minute,
            concurrency,
        }
    }

    /// Whether the rate bounds anything (a rate of zero, or none, means no limit).
    pub fn is_limited(self) -> bool {
        self.per_minute.is_finite() && self.per_minute > 0.0
    }
}

/// The sliding window a rate allows: `calls` per `span`. At one call a second or more, the
/// whole calls that fit in one second (so any one-second window holds at most the rate); below
/// that, one call per `60 / per_minute` seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    pub calls: usize,
    pub span: Duration,
}

impl Window {
    /// `None` when the rate limits nothing.
    pub fn of(per_minute: f64) -> Option<Window> {
        if !(per_minute.is_finite() && per_minute > 0.0) {
            return None;
        }
        let per_second = per_minute / 60.0;
        if per_second >= 1.0 {
            Some(Window {
                // A window of many calls costs memory per call: beyond a million a second
                // nothing on a network is limited anyway.
                calls: per_second.floor().min(1_000_000.0) as usize,
                span: Duration::from_secs(1),
            })
        } else {
            Some(Window {
                calls: 1,
                span: Duration::from_secs_f64(1.0 / per_second),
            })
        }
    }

    /// Calls per second this window lets through at most.
    pub fn per_second(self) -> f64 {
        self.calls as f64 / self.span.as_secs_f64()
    }
}

/// Why a call waited.
#[derive(Debug, Clone, PartialEq)]
pub enum WaitCause {
    /// reimage's own limit for this family.
    RateLimit,
    /// The provider said to slow down (429 or a throttling code), with its `Retry-After`.
    Throttled,
    /// A server or transport error is being retried.
    Retrying,
}

/// One wait, announced to whoever displays progress.
#[derive(Debug, Clone)]
pub struct WaitNotice {
    pub provider: String,
    pub family: ApiFamily,
    pub cause: WaitCause,
    pub wait: Duration,
    /// After a 429: the rate (calls per minute) the family slowed down to.
    pub slowed_to_per_minute: Option<f64>,
}
