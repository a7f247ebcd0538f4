//! Rate limits per provider and API family: a token bucket (calls per minute, with a burst)
//! and a cap on calls in flight. Defaults come from each provider's brief; the manifest may
//! override them (`providers.NAME.rate_limits`).
//!
//! Every wait caused by a limit or by a provider's throttling is announced on [`waits`], so
//! progress displays can show why nothing moves.

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast};

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
}

impl ApiFamily {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Reinstall => "reinstall",
            Self::Status => "status",
            Self::Stop => "stop",
            Self::Auth => "auth",
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

/// One wait, announced on [`waits`].
#[derive(Debug, Clone)]
pub struct WaitNotice {
    pub provider: String,
    pub family: ApiFamily,
    pub cause: WaitCause,
    pub wait: Duration,
}

static WAITS: LazyLock<broadcast::Sender<WaitNotice>> =
    LazyLock::new(|| broadcast::channel(1024).0);

/// Subscribes to every wait any provider in this process makes from now on.
pub fn waits() -> broadcast::Receiver<WaitNotice> {
    WAITS.subscribe()
}

pub(crate) fn announce(notice: WaitNotice) {
    // No subscriber is fine: nobody is displaying progress.
    let _ = WAITS.send(notice);
}

struct Bucket {
    limit: RateLimit,
    tokens: f64,
    refilled: Instant,
}

struct Family {
    bucket: Mutex<Bucket>,
    in_flight: Arc<Semaphore>,
}

/// The limits of one configured provider.
pub struct RateLimits {
    provider: String,
    families: BTreeMap<ApiFamily, Family>,
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits")
            .field("provider", &self.provider)
            .field("families", &self.families.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Held while a call is in flight; releases the concurrency slot on drop.
pub struct CallPermit {
    _permit: Option<OwnedSemaphorePermit>,
}

impl RateLimits {
    /// Limits from the provider's defaults, overridden family by family by the manifest.
    pub fn new(
        provider: &str,
        defaults: &[(ApiFamily, RateLimit)],
        overrides: &BTreeMap<ApiFamily, RateLimit>,
    ) -> Self {
        let mut chosen: BTreeMap<ApiFamily, RateLimit> = defaults.iter().copied().collect();
        chosen.extend(overrides.iter().map(|(family, limit)| (*family, *limit)));
        let families = chosen
            .into_iter()
            .map(|(family, limit)| {
                let limit = RateLimit {
                    per_minute: if limit.per_minute.is_finite() && limit.per_minute > 0.0 {
                        limit.per_minute
                    } else {
                        f64::INFINITY
                    },
                    // A semaphore holds at most `MAX_PERMITS`; more would panic.
                    concurrency: limit.concurrency.clamp(1, Semaphore::MAX_PERMITS),
                };
                (
                    family,
                    Family {
                        bucket: Mutex::new(Bucket {
                            limit,
                            tokens: burst(limit),
                            refilled: Instant::now(),
                        }),
                        in_flight: Arc::new(Semaphore::new(limit.concurrency)),
                    },
                )
            })
            .collect();
        RateLimits {
            provider: provider.to_string(),
            families,
        }
    }

    /// No limits at all (tests, emulators).
    pub fn unlimited(provider: &str) -> Self {
        Self::new(provider, &[], &BTreeMap::new())
    }

    /// Waits for a slot and a token of `family`; announces any wait.
    pub async fn acquire(&self, family: ApiFamily) -> CallPermit {
        let Some(state) = self.families.get(&family) else {
            return CallPermit { _permit: None };
        };
        let started = Instant::now();
        let permit = state.in_flight.clone().acquire_owned().await.ok();
        loop {
            let wait = {
                let Ok(mut bucket) = state.bucket.lock() else {
                    break;
                };
                let now = Instant::now();
                let per_second = bucket.limit.per_minute / 60.0;
                let elapsed = now.duration_since(bucket.refilled).as_secs_f64();
                bucket.tokens = (bucket.tokens + elapsed * per_second).min(burst(bucket.limit));
                bucket.refilled = now;
                if bucket.tokens >= 1.0 {
                    bucket.tokens -= 1.0;
                    None
                } else {
                    Some(Duration::from_secs_f64((1.0 - bucket.tokens) / per_second))
                }
            };
            match wait {
                None => break,
                Some(wait) => tokio::time::sleep(wait).await,
            }
        }
        let waited = started.elapsed();
        if waited >= Duration::from_millis(50) {
            announce(WaitNotice {
                provider: self.provider.clone(),
                family,
                cause: WaitCause::RateLimit,
                wait: waited,
            });
        }
        CallPermit { _permit: permit }
    }
}

/// Tokens a full bucket holds: a few seconds' worth, at least one.
fn burst(limit: RateLimit) -> f64 {
    if limit.per_minute.is_infinite() {
        return f64::INFINITY;
    }
    (limit.per_minute / 60.0 * 2.0).max(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sustained_rate_is_held_and_waits_are_announced() {
        let mut notices = waits();
        // 600/min = 10/s with a burst of 20: 30 calls need about one second.
        let limits = RateLimits::new(
            "test-rate",
            &[(ApiFamily::Reinstall, RateLimit::new(600.0, 100))],
            &BTreeMap::new(),
        );
        let started = Instant::now();
        for _ in 0..30 {
            let _permit = limits.acquire(ApiFamily::Reinstall).await;
        }
        let elapsed = started.elapsed();
        assert!(elapsed >= Duration::from_millis(900), "{elapsed:?}");
        assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
        let mut announced = false;
        while let Ok(notice) = notices.try_recv() {
            if notice.provider == "test-rate" {
                assert_eq!(notice.cause, WaitCause::RateLimit);
                announced = true;
            }
        }
        assert!(announced);
    }

    /// A manifest may ask for any concurrency; more than a semaphore holds must not panic.
    #[tokio::test]
    async fn a_huge_concurrency_is_clamped() {
        let overrides = BTreeMap::from([(ApiFamily::Read, RateLimit::new(60.0, usize::MAX / 2))]);
        let limits = RateLimits::new("test-huge", &[], &overrides);
        let _permit = limits.acquire(ApiFamily::Read).await;
    }

    #[tokio::test]
    async fn concurrency_cap_and_overrides() {
        let overrides = BTreeMap::from([(ApiFamily::Read, RateLimit::new(0.0, 2))]);
        let limits = Arc::new(RateLimits::new(
            "test-cap",
            &[(ApiFamily::Read, RateLimit::new(1.0, 50))],
            &overrides,
        ));
        let first = limits.acquire(ApiFamily::Read).await;
        let _second = limits.acquire(ApiFamily::Read).await;
        let third = {
            let limits = limits.clone();
            tokio::spawn(async move { limits.acquire(ApiFamily::Read).await })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            !third.is_finished(),
            "the cap of 2 must hold the third call"
        );
        drop(first);
        tokio::time::timeout(Duration::from_secs(2), third)
            .await
            .unwrap()
            .unwrap();
        // Unlisted families are not limited.
        let _free = limits.acquire(ApiFamily::Stop).await;
    }
}
