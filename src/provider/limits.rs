//! Rate limits per provider and API family: a sliding window that never lets more than the
//! configured rate through in any one-second window, and a cap on calls in flight. Defaults
//! come from each provider type (each says where its figures come from, or that they are a
//! guess); the manifest may override them (`providers.NAME.rate_limits`).
//!
//! A call holds its place in the window from the moment it is granted until one window after
//! its answer arrived: the provider counts it at some moment in between, so no window at the
//! provider can hold more than the rate either, however long the call took on the way.
//!
//! When the provider throttles anyway (429), the family pauses for the `Retry-After` (or a
//! backoff) and slows down to half its rate (once per few seconds, however many 429s a burst
//! brings, and never below a quarter), recovering step by step while no 429 comes.
//!
//! Every wait caused by a limit or by a provider's throttling is announced to the [`WaitSink`]
//! the provider was built with, so progress displays can show why nothing moves.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub use crate::model::limits::{ApiFamily, RateLimit, WaitCause, WaitNotice, Window};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, broadcast};

/// Where a provider's wait notices go: made by whoever runs the command (one per run), handed to
/// the providers as they are built, and subscribed to by whoever displays progress. A sink
/// nobody made ([`WaitSink::none`]) drops every notice.
#[derive(Debug, Clone, Default)]
pub struct WaitSink {
    sender: Option<broadcast::Sender<WaitNotice>>,
}

impl WaitSink {
    /// A sink whose notices reach every subscriber from then on.
    pub fn new() -> Self {
        WaitSink {
            sender: Some(broadcast::channel(1024).0),
        }
    }

    /// A sink that drops every notice (nobody displays progress).
    pub fn none() -> Self {
        WaitSink { sender: None }
    }

    /// Every notice announced from now on (none for [`WaitSink::none`]).
    pub fn subscribe(&self) -> broadcast::Receiver<WaitNotice> {
        match &self.sender {
            Some(sender) => sender.subscribe(),
            // A closed channel: the receiver reports `Closed` at once.
            None => broadcast::channel(1).1,
        }
    }

    pub fn announce(&self, notice: WaitNotice) {
        if let Some(sender) = &self.sender {
            // No subscriber is fine: nobody is displaying progress right now.
            let _ = sender.send(notice);
        }
    }
}

/// After a 429 the rate is halved, down to this share of the configured one at most: a
/// provider that throttles below it is waited out through its `Retry-After`s, and a burst of
/// 429s does not starve the reads that watch installs.
const SLOWEST: f64 = 1.0 / 4.0;
/// The rate is halved at most once this often (the 429s of one burst are one slow-down); and
/// without a 429 for this long, a slowed family takes back an eighth of its configured rate.
const RECOVERY_STEP: Duration = Duration::from_secs(5);
const RECOVERY_SHARE: f64 = 1.0 / 8.0;
/// Waits shorter than this are not worth announcing.
const ANNOUNCE_FROM: Duration = Duration::from_millis(50);

/// The sliding window of one family: calls granted and still in flight hold a place; a
/// finished call holds its place until `span` after its answer.
struct Slots {
    configured: Window,
    /// Share of the configured rate in use: 1 until the provider throttles.
    share: f64,
    /// The last halving of the rate.
    slowed_at: Option<Instant>,
    window: Window,
    in_flight: usize,
    /// When the places of finished calls free up, earliest first.
    freeing: VecDeque<Instant>,
    /// No call is granted before this (a `Retry-After`).
    paused_until: Option<Instant>,
    /// The last 429 or recovery step.
    last_change: Instant,
}

/// What a caller at the head of the queue must wait for.
enum Verdict {
    Granted,
    Until(Instant),
    /// Every place is held by a call in flight: wait for one to end.
    CallEnds,
}

impl Slots {
    fn new(configured: Window) -> Self {
        Slots {
            configured,
            share: 1.0,
            slowed_at: None,
            window: configured,
            in_flight: 0,
            freeing: VecDeque::new(),
            paused_until: None,
            last_change: Instant::now(),
        }
    }

    fn set_share(&mut self, share: f64) {
        self.share = share.clamp(SLOWEST, 1.0);
        let per_minute = self.configured.per_second() * 60.0 * self.share;
        self.window = Window::of(per_minute).unwrap_or(self.configured);
    }

    fn try_grant(&mut self, now: Instant) -> Verdict {
        if self.share < 1.0 && now.saturating_duration_since(self.last_change) >= RECOVERY_STEP {
            self.set_share(self.share + RECOVERY_SHARE);
            self.last_change = now;
        }
        if let Some(until) = self.paused_until {
            if now < until {
                return Verdict::Until(until);
            }
            self.paused_until = None;
        }
        while self.freeing.front().is_some_and(|at| *at <= now) {
            self.freeing.pop_front();
        }
        if self.in_flight + self.freeing.len() < self.window.calls {
            self.in_flight += 1;
            return Verdict::Granted;
        }
        match self.freeing.front() {
            Some(at) => Verdict::Until(*at),
            None => Verdict::CallEnds,
        }
    }

    fn finished(&mut self, now: Instant) {
        self.in_flight = self.in_flight.saturating_sub(1);
        self.freeing.push_back(now + self.window.span);
    }

    /// A 429: pause for `pause`, and halve the rate unless it was halved within the last
    /// [`RECOVERY_STEP`]. Returns the rate now in calls per minute.
    fn throttled(&mut self, now: Instant, pause: Duration) -> f64 {
        let until = now + pause;
        self.paused_until = Some(self.paused_until.map_or(until, |at| at.max(until)));
        let recently = self
            .slowed_at
            .is_some_and(|at| now.saturating_duration_since(at) < RECOVERY_STEP);
        if !recently {
            self.set_share(self.share / 2.0);
            self.slowed_at = Some(now);
        }
        self.last_change = now;
        self.window.per_second() * 60.0
    }
}

struct Family {
    limit: RateLimit,
    slots: Option<Arc<Mutex<Slots>>>,
    /// Callers wait here in turn (tokio's mutex is fair: first come, first served).
    queue: tokio::sync::Mutex<()>,
    /// Wakes the caller at the head of the queue when a call ends.
    call_ended: Arc<Notify>,
    in_flight: Arc<Semaphore>,
}

fn lock(slots: &Mutex<Slots>) -> MutexGuard<'_, Slots> {
    // The window holds plain numbers; a panic elsewhere cannot leave it inconsistent.
    slots
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The limits of one configured provider.
pub struct RateLimits {
    provider: String,
    families: BTreeMap<ApiFamily, Family>,
    /// Where waits are announced: nowhere until [`RateLimits::report_waits_to`] says.
    waits: std::sync::Mutex<WaitSink>,
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits")
            .field("provider", &self.provider)
            .field("families", &self.families.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Held while a call is in flight; on drop, the call's place in the window starts to free
/// and its concurrency slot is released.
pub struct CallPermit {
    family: ApiFamily,
    _permit: Option<OwnedSemaphorePermit>,
    slot: Option<(Arc<Mutex<Slots>>, Arc<Notify>)>,
}

impl CallPermit {
    /// The family the call was granted for.
    pub fn family(&self) -> ApiFamily {
        self.family
    }
}

impl Drop for CallPermit {
    fn drop(&mut self) {
        if let Some((slots, call_ended)) = self.slot.take() {
            lock(&slots).finished(Instant::now());
            call_ended.notify_one();
        }
    }
}

/// The limits a provider runs with: its defaults, overridden family by family by the manifest.
/// A rate of zero (or none) means no limit; the concurrency is at least one.
pub fn effective(
    defaults: &[(ApiFamily, RateLimit)],
    overrides: &BTreeMap<ApiFamily, RateLimit>,
) -> BTreeMap<ApiFamily, RateLimit> {
    let mut chosen: BTreeMap<ApiFamily, RateLimit> = defaults.iter().copied().collect();
    chosen.extend(overrides.iter().map(|(family, limit)| (*family, *limit)));
    chosen
        .into_iter()
        .map(|(family, limit)| {
            let limit = RateLimit {
                per_minute: if limit.is_limited() {
                    limit.per_minute
                } else {
                    f64::INFINITY
                },
                // A semaphore holds at most `MAX_PERMITS`; more would panic.
                concurrency: limit.concurrency.clamp(1, Semaphore::MAX_PERMITS),
            };
            (family, limit)
        })
        .collect()
}

impl RateLimits {
    /// Limits from the provider's defaults, overridden family by family by the manifest.
    pub fn new(
        provider: &str,
        defaults: &[(ApiFamily, RateLimit)],
        overrides: &BTreeMap<ApiFamily, RateLimit>,
    ) -> Self {
        let families = effective(defaults, overrides)
            .into_iter()
            .map(|(family, limit)| {
                (
                    family,
                    Family {
                        limit,
                        slots: Window::of(limit.per_minute)
                            .map(|window| Arc::new(Mutex::new(Slots::new(window)))),
                        queue: tokio::sync::Mutex::new(()),
                        call_ended: Arc::new(Notify::new()),
                        in_flight: Arc::new(Semaphore::new(limit.concurrency)),
                    },
                )
            })
            .collect();
        RateLimits {
            provider: provider.to_string(),
            families,
            waits: std::sync::Mutex::new(WaitSink::none()),
        }
    }

    /// Announces this provider's waits to `waits` from now on (the run that built the provider
    /// hands in its sink; until then waits are announced nowhere).
    pub fn report_waits_to(&self, waits: &WaitSink) {
        *self
            .waits
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = waits.clone();
    }

    /// Announces one wait of this provider.
    pub fn announce(&self, notice: WaitNotice) {
        let waits = self
            .waits
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        waits.announce(notice);
    }

    /// No limits at all (tests, emulators).
    pub fn unlimited(provider: &str) -> Self {
        Self::new(provider, &[], &BTreeMap::new())
    }

    /// The limit of each family that has one.
    pub fn limits(&self) -> BTreeMap<ApiFamily, RateLimit> {
        self.families
            .iter()
            .map(|(family, state)| (*family, state.limit))
            .collect()
    }

    /// Waits for a concurrency slot and a place in the window of `family`; announces any wait.
    pub async fn acquire(&self, family: ApiFamily) -> CallPermit {
        let Some(state) = self.families.get(&family) else {
            return CallPermit {
                family,
                _permit: None,
                slot: None,
            };
        };
        let started = Instant::now();
        let permit = state.in_flight.clone().acquire_owned().await.ok();
        let Some(slots) = &state.slots else {
            return CallPermit {
                family,
                _permit: permit,
                slot: None,
            };
        };
        {
            let _head = state.queue.lock().await;
            loop {
                // Registered before looking, so a call ending in between is not missed.
                let call_ended = state.call_ended.notified();
                let verdict = lock(slots).try_grant(Instant::now());
                match verdict {
                    Verdict::Granted => break,
                    Verdict::Until(at) => {
                        tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await
                    }
                    Verdict::CallEnds => call_ended.await,
                }
            }
        }
        let waited = started.elapsed();
        if waited >= ANNOUNCE_FROM {
            self.announce(WaitNotice {
                provider: self.provider.clone(),
                family,
                cause: WaitCause::RateLimit,
                wait: waited,
                slowed_to_per_minute: None,
            });
        }
        CallPermit {
            family,
            _permit: permit,
            slot: Some((slots.clone(), state.call_ended.clone())),
        }
    }

    /// The provider throttled a call of `family` (429): the family pauses for `pause` (its
    /// `Retry-After`, or a backoff) and slows down; the wait and the new rate are announced.
    pub fn throttled(&self, family: ApiFamily, pause: Duration) {
        let slowed_to = self
            .families
            .get(&family)
            .and_then(|state| state.slots.as_ref())
            .map(|slots| lock(slots).throttled(Instant::now(), pause));
        self.announce(WaitNotice {
            provider: self.provider.clone(),
            family,
            cause: WaitCause::Throttled,
            wait: pause,
            slowed_to_per_minute: slowed_to,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_never_hold_more_than_the_rate_in_one_second() {
        let window = Window::of(1200.0).unwrap();
        assert_eq!((window.calls, window.span), (20, Duration::from_secs(1)));
        // 90/min is 1.5/s: one call a second would be under the rate, two would be over it.
        let window = Window::of(90.0).unwrap();
        assert_eq!((window.calls, window.span), (1, Duration::from_secs(1)));
        let window = Window::of(30.0).unwrap();
        assert_eq!((window.calls, window.span), (1, Duration::from_secs(2)));
        assert_eq!(Window::of(0.0), None);
        assert_eq!(Window::of(f64::INFINITY), None);
        assert_eq!(Window::of(f64::NAN), None);
    }

    /// Every grant of a sliding window, as times; no `span` may hold more than `calls` of them.
    fn assert_window_held(grants: &[Instant], window: Window) {
        for (index, start) in grants.iter().enumerate() {
            let inside = grants[index..]
                .iter()
                .take_while(|at| at.saturating_duration_since(*start) < window.span)
                .count();
            assert!(
                inside <= window.calls,
                "{inside} calls within {:?} of call {index}",
                window.span
            );
        }
    }

    #[test]
    fn a_place_frees_one_window_after_the_answer_not_after_the_grant() {
        let start = Instant::now();
        let mut slots = Slots::new(Window::of(120.0).unwrap());
        assert!(matches!(slots.try_grant(start), Verdict::Granted));
        assert!(matches!(slots.try_grant(start), Verdict::Granted));
        // Both places are held by calls in flight.
        assert!(matches!(slots.try_grant(start), Verdict::CallEnds));
        // The first answer comes after 300 ms: its place frees a second later.
        let answered = start + Duration::from_millis(300);
        slots.finished(answered);
        match slots.try_grant(answered) {
            Verdict::Until(at) => assert_eq!(at, answered + Duration::from_secs(1)),
            _ => panic!("the window is full until a second after the answer"),
        }
        assert!(matches!(
            slots.try_grant(answered + Duration::from_secs(1)),
            Verdict::Granted
        ));
    }

    #[test]
    fn a_429_pauses_halves_the_rate_and_it_recovers_without_429s() {
        let start = Instant::now();
        let mut slots = Slots::new(Window::of(1200.0).unwrap());
        let slowed = slots.throttled(start, Duration::from_secs(2));
        assert_eq!(slowed, 600.0);
        match slots.try_grant(start + Duration::from_secs(1)) {
            Verdict::Until(at) => assert_eq!(at, start + Duration::from_secs(2)),
            _ => panic!("a Retry-After of 2 s pauses the family"),
        }
        assert_eq!(slots.window.calls, 10);
        // The other 429s of the same burst pause, but do not halve again.
        let later = start + Duration::from_millis(1500);
        assert_eq!(slots.throttled(later, Duration::from_secs(1)), 600.0);
        match slots.try_grant(later) {
            Verdict::Until(at) => assert_eq!(at, later + Duration::from_secs(1)),
            _ => panic!("each 429 pauses the family for its Retry-After"),
        }
        // 429s that keep coming halve it again, down to a quarter of the rate at most.
        let mut now = start;
        for _ in 0..4 {
            now += RECOVERY_STEP;
            slots.throttled(now, Duration::ZERO);
        }
        assert_eq!(slots.window.calls, 5);
        // Each quiet step takes back an eighth of the configured rate, up to all of it.
        for _ in 0..20 {
            now += RECOVERY_STEP;
            slots.try_grant(now);
            slots.finished(now);
        }
        assert_eq!(slots.share, 1.0);
        assert_eq!(slots.window.calls, 20);
    }

    #[tokio::test]
    async fn calls_keep_to_the_window_and_waits_are_announced() {
        let sink = WaitSink::new();
        let mut notices = sink.subscribe();
        // 600/min = 10 calls in any one second.
        let limits = Arc::new(RateLimits::new(
            "test-rate",
            &[(ApiFamily::Reinstall, RateLimit::new(600.0, 100))],
            &BTreeMap::new(),
        ));
        limits.report_waits_to(&sink);
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..25 {
            let limits = limits.clone();
            tasks.spawn(async move {
                let permit = limits.acquire(ApiFamily::Reinstall).await;
                let granted = Instant::now();
                tokio::time::sleep(Duration::from_millis(20)).await;
                drop(permit);
                granted
            });
        }
        let mut grants = tasks.join_all().await;
        grants.sort();
        assert_window_held(&grants, Window::of(600.0).unwrap());
        // 25 calls at 10 a second: the last ones wait for two windows to pass.
        let spread = grants[24].duration_since(grants[0]);
        assert!(spread >= Duration::from_secs(2), "{spread:?}");
        let mut announced = false;
        while let Ok(notice) = notices.try_recv() {
            if notice.provider == "test-rate" {
                assert_eq!(notice.cause, WaitCause::RateLimit);
                announced = true;
            }
        }
        assert!(announced);
    }

    #[tokio::test]
    async fn a_throttled_family_waits_and_says_how_slow_it_went() {
        let sink = WaitSink::new();
        let mut notices = sink.subscribe();
        let limits = RateLimits::new(
            "test-throttled",
            &[(ApiFamily::Read, RateLimit::new(1200.0, 8))],
            &BTreeMap::new(),
        );
        limits.report_waits_to(&sink);
        limits.throttled(ApiFamily::Read, Duration::from_millis(300));
        let started = Instant::now();
        let _permit = limits.acquire(ApiFamily::Read).await;
        assert!(started.elapsed() >= Duration::from_millis(250));
        let mut slowed = None;
        while let Ok(notice) = notices.try_recv() {
            if notice.provider == "test-throttled" && notice.cause == WaitCause::Throttled {
                slowed = notice.slowed_to_per_minute;
            }
        }
        assert_eq!(slowed, Some(600.0));
    }

    /// Each run's sink hears its own providers only: two runs in one process (tests, the
    /// emulator beside a plan) do not see each other's waits, and limits no run attached to a
    /// sink announce nowhere.
    #[test]
    fn waits_reach_the_sink_the_limits_report_to_and_no_other() {
        let (first, second) = (WaitSink::new(), WaitSink::new());
        let (mut first_hears, mut second_hears) = (first.subscribe(), second.subscribe());
        let of_first = RateLimits::unlimited("first");
        of_first.report_waits_to(&first);
        let unattached = RateLimits::unlimited("unattached");
        of_first.throttled(ApiFamily::Read, Duration::from_millis(1));
        unattached.throttled(ApiFamily::Read, Duration::from_millis(1));
        let heard = first_hears.try_recv().map(|notice| notice.provider);
        assert_eq!(heard.as_deref(), Ok("first"));
        assert!(
            first_hears.try_recv().is_err(),
            "the unattached limits reached a sink"
        );
        assert!(
            second_hears.try_recv().is_err(),
            "another run's sink heard a wait"
        );
        // Limits made later, in the same thread, are not attached to anything by that.
        let later = RateLimits::unlimited("later");
        later.throttled(ApiFamily::Read, Duration::from_millis(1));
        assert!(
            first_hears.try_recv().is_err(),
            "limits made later reached the first run's sink"
        );
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
