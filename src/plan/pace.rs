//! The pace a rollout will really have, worked out from the providers' rate limits: per
//! provider, how many installs its reinstall rate keeps in flight; per wave, an estimated
//! duration and what bounds it. Pure: every figure comes in, nothing is read.
//!
//! Each wave is scheduled the way apply runs it: a server takes one of the wave's
//! `max_parallel` places as soon as one frees, waits there for its provider's reinstall rate
//! limit (a sliding window, servers started together sharing one call up to the batch size),
//! installs for the provider's `install_estimate`, and is seen done half a poll interval later
//! on average. Waves run one after another. Stops before a reinstall are not counted.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::model::{ActionKind, ServerPlan};
use super::rollout::Wave;
use crate::model::limits::Window;

/// What the pace of one provider depends on.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderFigures {
    /// Reinstall calls per minute reimage keeps to (`None`: not limited).
    pub reinstall_per_minute: Option<f64>,
    /// Servers one reinstall call takes.
    pub reinstall_batch: usize,
    /// Status poll calls per minute reimage keeps to (`None`: not limited).
    pub status_per_minute: Option<f64>,
    /// Servers one status poll reads.
    pub poll_batch: usize,
    pub poll_interval: Duration,
    pub install_estimate: Duration,
}

/// The pace of a plan's rollout.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Pace {
    /// Per provider with reinstalls in the plan.
    pub providers: BTreeMap<String, ProviderPace>,
    /// In the order the waves run.
    pub waves: Vec<WavePace>,
    /// The whole rollout, waves one after another, in seconds.
    pub estimated_s: f64,
    /// What the estimate leaves out, or where a limit slows watching down.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ProviderPace {
    pub reinstalls: usize,
    /// Reinstall calls per minute (`None`: not limited).
    pub reinstall_per_minute: Option<f64>,
    pub reinstall_batch: usize,
    pub install_estimate_s: f64,
    /// Installs the reinstall rate keeps in flight at most (rate × batch × install time);
    /// `None` when the rate does not limit them.
    pub rate_allows_in_flight: Option<usize>,
}

/// What sets the length of a wave.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Bound {
    /// Every server starts at once: one install's time.
    Install,
    /// `max_parallel` places are full all along.
    MaxParallel,
    /// A provider's reinstall rate limit starts servers more slowly than places free up.
    RateLimit { provider: String },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WavePace {
    pub wave: usize,
    pub servers: usize,
    pub max_parallel: usize,
    /// The most installs in flight at once in the schedule.
    pub in_flight: usize,
    pub estimated_s: f64,
    pub bound: Bound,
}

/// The pace of `waves`, or `None` when no wave has a server.
pub fn estimate(
    servers: &[ServerPlan],
    waves: &[Wave],
    providers: &BTreeMap<String, ProviderFigures>,
) -> Option<Pace> {
    let provider_of: HashMap<&str, &str> = servers
        .iter()
        .map(|server| (server.name.as_str(), server.provider.as_str()))
        .collect();
    let mut pace = Pace {
        providers: BTreeMap::new(),
        waves: Vec::new(),
        estimated_s: 0.0,
        notes: Vec::new(),
    };
    let mut most_in_flight: BTreeMap<&str, usize> = BTreeMap::new();
    for wave in waves {
        let members: Vec<(&str, &ProviderFigures)> = wave
            .servers
            .iter()
            .filter_map(|name| {
                let provider = *provider_of.get(name.as_str())?;
                Some((provider, providers.get(provider)?))
            })
            .collect();
        if members.is_empty() {
            continue;
        }
        let limited = schedule(&members, wave.max_parallel, true);
        for (provider, count) in &limited.in_flight_by_provider {
            let most = most_in_flight.entry(provider).or_default();
            *most = (*most).max(*count);
        }
        // What bounds the wave is the larger of two bounds: its places alone (no rate limit),
        // and the rate limits alone (a place for every server).
        let places_only = schedule(&members, wave.max_parallel, false);
        let rates_only = schedule(&members, members.len(), true);
        let bound = match rates_only.most_delayed {
            Some(provider) if rates_only.end > places_only.end => Bound::RateLimit {
                provider: provider.to_string(),
            },
            _ if members.len() <= wave.max_parallel => Bound::Install,
            _ => Bound::MaxParallel,
        };
        pace.estimated_s += limited.end;
        pace.waves.push(WavePace {
            wave: wave.index,
            servers: members.len(),
            max_parallel: wave.max_parallel,
            in_flight: limited.in_flight,
            estimated_s: limited.end,
            bound,
        });
    }
    if pace.waves.is_empty() {
        return None;
    }
    let mut reinstalls: BTreeMap<&str, usize> = BTreeMap::new();
    let mut stopped_first = 0;
    for server in servers
        .iter()
        .filter(|server| server.action.is_destructive())
    {
        *reinstalls.entry(server.provider.as_str()).or_default() += 1;
        if server.action == ActionKind::StopAndReinstall {
            stopped_first += 1;
        }
    }
    for (name, count) in reinstalls {
        let Some(figures) = providers.get(name) else {
            continue;
        };
        let window = figures.reinstall_per_minute.and_then(Window::of);
        pace.providers.insert(
            name.to_string(),
            ProviderPace {
                reinstalls: count,
                reinstall_per_minute: window.map(|window| window.per_second() * 60.0),
                reinstall_batch: figures.reinstall_batch.max(1),
                install_estimate_s: figures.install_estimate.as_secs_f64(),
                rate_allows_in_flight: window.map(|window| {
                    (window.per_second()
                        * figures.reinstall_batch.max(1) as f64
                        * figures.install_estimate.as_secs_f64())
                    .ceil()
                    .max(1.0) as usize
                }),
            },
        );
        let in_flight = most_in_flight.get(name).copied().unwrap_or(0);
        let polls = in_flight.div_ceil(figures.poll_batch.max(1)) as f64;
        let needed = polls * 60.0 / figures.poll_interval.as_secs_f64().max(1e-3);
        if let Some(allowed) = figures.status_per_minute.and_then(Window::of)
            && needed > allowed.per_second() * 60.0
        {
            pace.notes.push(format!(
                "`{name}`: watching {in_flight} installs every {}s takes about {needed:.0} \
                 status calls a minute, more than its status limit ({:.0} a minute): installs \
                 will be seen done later than they end (`rate_limits.status` or \
                 `poll_interval` change that)",
                figures.poll_interval.as_secs_f64(),
                allowed.per_second() * 60.0
            ));
        }
    }
    if stopped_first > 0 {
        pace.notes.push(format!(
            "{stopped_first} server(s) are stopped before their reinstall; the estimate does \
             not count the stops"
        ));
    }
    Some(pace)
}

/// The schedule of one wave.
struct Schedule<'a> {
    /// When the last install is seen done, in seconds from the wave's start.
    end: f64,
    /// The most installs in flight at once, in all and per provider.
    in_flight: usize,
    in_flight_by_provider: BTreeMap<&'a str, usize>,
    /// The provider whose servers waited longest in all for its rate limit.
    most_delayed: Option<&'a str>,
}

/// One provider's reinstall calls so far, for its sliding window.
struct Calls {
    window: Option<Window>,
    /// Grant times of the latest `window.calls` calls.
    recent: VecDeque<f64>,
    /// The latest call: when, and how many servers it carries.
    open: Option<(f64, usize)>,
    waited: f64,
}

impl Calls {
    /// When a server ready at `ready` gets its reinstall call.
    fn grant(&mut self, ready: f64, batch: usize) -> f64 {
        let Some(window) = self.window else {
            return ready;
        };
        if let Some((at, carried)) = &mut self.open
            && *at >= ready
            && *carried < batch
        {
            *carried += 1;
            self.waited += *at - ready;
            return *at;
        }
        let mut at = ready;
        if self.recent.len() >= window.calls
            && let Some(oldest) = self.recent.pop_front()
        {
            at = at.max(oldest + window.span.as_secs_f64());
        }
        self.recent.push_back(at);
        self.open = Some((at, 1));
        self.waited += at - ready;
        at
    }
}

/// Schedules `members` (in start order) on `places` places; with `limited`, under the
/// providers' reinstall rate limits.
fn schedule<'a>(
    members: &[(&'a str, &ProviderFigures)],
    places: usize,
    limited: bool,
) -> Schedule<'a> {
    /// Times in whole microseconds, for a heap of integers.
    fn micros(seconds: f64) -> u64 {
        (seconds * 1e6).round().max(0.0) as u64
    }
    let mut free_at: BinaryHeap<Reverse<u64>> = (0..places.max(1)).map(|_| Reverse(0)).collect();
    let mut calls: BTreeMap<&str, Calls> = BTreeMap::new();
    let mut intervals: Vec<(u64, u64, &str)> = Vec::with_capacity(members.len());
    let mut end = 0.0f64;
    for (provider, figures) in members {
        let ready = free_at.pop().map_or(0, |Reverse(at)| at) as f64 / 1e6;
        let provider_calls = calls.entry(provider).or_insert_with(|| Calls {
            window: if limited {
                figures.reinstall_per_minute.and_then(Window::of)
            } else {
                None
            },
            recent: VecDeque::new(),
            open: None,
            waited: 0.0,
        });
        let start = provider_calls.grant(ready, figures.reinstall_batch.max(1));
        let install_end = start + figures.install_estimate.as_secs_f64();
        let seen_done = install_end + figures.poll_interval.as_secs_f64() / 2.0;
        end = end.max(seen_done);
        free_at.push(Reverse(micros(seen_done)));
        intervals.push((micros(start), micros(install_end), *provider));
    }
    let (in_flight, in_flight_by_provider) = most_at_once(&intervals);
    let most_delayed = calls
        .iter()
        .filter(|(_, calls)| calls.waited > 0.0)
        .max_by(|a, b| a.1.waited.total_cmp(&b.1.waited))
        .map(|(provider, _)| *provider);
    Schedule {
        end,
        in_flight,
        in_flight_by_provider,
        most_delayed,
    }
}

/// The most intervals overlapping at once, in all and per provider (a sweep over sorted
/// starts and ends; an interval ending when another starts does not overlap it).
fn most_at_once<'a>(intervals: &[(u64, u64, &'a str)]) -> (usize, BTreeMap<&'a str, usize>) {
    let mut events: Vec<(u64, i8, &str)> = Vec::with_capacity(intervals.len() * 2);
    for (start, end, provider) in intervals {
        events.push((*start, 1, provider));
        events.push((*end, -1, provider));
    }
    // Ends before starts at the same moment.
    events.sort_by_key(|(at, change, _)| (*at, *change));
    let mut now = 0usize;
    let mut most = 0usize;
    let mut now_by: BTreeMap<&str, usize> = BTreeMap::new();
    let mut most_by: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, change, provider) in events {
        let count = now_by.entry(provider).or_default();
        if change > 0 {
            now += 1;
            *count += 1;
            most = most.max(now);
            let best = most_by.entry(provider).or_default();
            *best = (*best).max(*count);
        } else {
            now = now.saturating_sub(1);
            *count = count.saturating_sub(1);
        }
    }
    (most, most_by)
}

/// The pace as lines for people (provider names escaped), headed by what it rests on.
pub fn describe(pace: &Pace) -> Vec<String> {
    let e = |text: &str| crate::output::escape_control(text).into_owned();
    let mut lines =
        vec!["Pace (from the providers' rate limits and `install_estimate`):".to_string()];
    for (name, provider) in &pace.providers {
        let calls = match provider.reinstall_per_minute {
            Some(rate) => format!(
                "reinstall calls at most {rate:.0} a minute, {} server(s) each",
                provider.reinstall_batch
            ),
            None => "reinstall calls not rate-limited".to_string(),
        };
        let in_flight = match provider.rate_allows_in_flight {
            Some(count) => format!(": the rate keeps up to {count} install(s) in flight"),
            None => String::new(),
        };
        lines.push(format!(
            "  `{}`: {} reinstall(s), installs of about {}; {calls}{in_flight}",
            e(name),
            provider.reinstalls,
            human(provider.install_estimate_s)
        ));
    }
    for wave in &pace.waves {
        let bound = match &wave.bound {
            Bound::Install => "bound by one install's time (all start at once)".to_string(),
            Bound::MaxParallel => format!("bound by max_parallel ({})", wave.max_parallel),
            Bound::RateLimit { provider } => format!(
                "bound by `{}`'s reinstall rate limit, not max_parallel ({})",
                e(provider),
                wave.max_parallel
            ),
        };
        lines.push(format!(
            "  wave {}: {} server(s) in about {}, up to {} in flight, {bound}",
            wave.wave,
            wave.servers,
            human(wave.estimated_s),
            wave.in_flight
        ));
    }
    lines.push(format!(
        "  estimated rollout: about {}",
        human(pace.estimated_s)
    ));
    for note in &pace.notes {
        lines.push(format!("  note: {}", e(note)));
    }
    lines
}

/// `1h2m`, `3m20s`, `45s`: a duration as people read it.
pub fn human(seconds: f64) -> String {
    let total = seconds.round().max(0.0) as u64;
    let (hours, minutes, secs) = (total / 3600, total / 60 % 60, total % 60);
    match (hours, minutes) {
        (0, 0) => format!("{secs}s"),
        (0, _) if secs == 0 => format!("{minutes}m"),
        (0, _) => format!("{minutes}m{secs}s"),
        _ if minutes == 0 => format!("{hours}h"),
        _ => format!("{hours}h{minutes}m"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{DesiredAccess, DesiredServer, ProviderType};

    fn figures(per_minute: Option<f64>, install_s: u64) -> ProviderFigures {
        ProviderFigures {
            reinstall_per_minute: per_minute,
            reinstall_batch: 1,
            status_per_minute: None,
            poll_batch: 100,
            poll_interval: Duration::ZERO,
            install_estimate: Duration::from_secs(install_s),
        }
    }

    fn wave(index: usize, names: &[String], max_parallel: usize) -> Wave {
        Wave {
            index,
            group: None,
            canary: false,
            servers: names.to_vec(),
            max_parallel,
            max_failures: None,
        }
    }

    fn planned(names: &[String], provider: &str) -> Vec<ServerPlan> {
        names
            .iter()
            .map(|name| ServerPlan {
                name: name.clone(),
                provider: provider.to_string(),
                provider_type: ProviderType::ZenlayerBmc,
                cloud_id: name.clone(),
                action: ActionKind::Reinstall,
                reasons: Vec::new(),
                wipes: Vec::new(),
                changes: Vec::new(),
                notes: Vec::new(),
                desired: DesiredServer {
                    group: None,
                    name: name.clone(),
                    provider: provider.to_string(),
                    provider_type: ProviderType::ZenlayerBmc,
                    cloud_id: name.clone(),
                    image: "img".into(),
                    revision: 0,
                    access: DesiredAccess::None,
                    hostname: None,
                    user_data: None,
                    protect: false,
                    options: serde_json::Map::new(),
                    address: None,
                    health: Default::default(),
                },
                observed: None,
                observed_fingerprint: String::new(),
                input_digests: Default::default(),
                health: None,
            })
            .collect()
    }

    fn names(count: usize) -> Vec<String> {
        (0..count).map(|index| format!("s{index}")).collect()
    }

    #[test]
    fn max_parallel_bounds_a_wave_the_rate_keeps_up_with() {
        let names = names(500);
        let servers = planned(&names, "zl");
        let providers = BTreeMap::from([("zl".to_string(), figures(Some(1200.0), 10))]);
        let pace = estimate(&servers, &[wave(1, &names, 100)], &providers).unwrap();
        let wave = &pace.waves[0];
        // 20 calls a second: the first 100 start over 4 s (20 at 0, 1, 2, 3 and 4 s), then
        // each place starts its next server as soon as the last ends: 4 s + 5 installs.
        assert_eq!(wave.estimated_s, 54.0);
        assert_eq!(wave.in_flight, 100);
        assert_eq!(wave.bound, Bound::MaxParallel);
        assert_eq!(pace.providers["zl"].rate_allows_in_flight, Some(200));
    }

    #[test]
    fn a_slow_reinstall_rate_bounds_the_wave_and_says_how_many_run_at_once() {
        let names = names(500);
        let servers = planned(&names, "zl");
        let providers = BTreeMap::from([("zl".to_string(), figures(Some(60.0), 10))]);
        let pace = estimate(&servers, &[wave(1, &names, 100)], &providers).unwrap();
        let wave = &pace.waves[0];
        // One call a second: the last of 500 starts at 499 s and ends 10 s later.
        assert_eq!(wave.estimated_s, 509.0);
        assert_eq!(
            wave.bound,
            Bound::RateLimit {
                provider: "zl".into()
            }
        );
        // Calls at 0..=10 s are all in flight at 10 s, when the first ends.
        assert_eq!(wave.in_flight, 10);
        assert_eq!(pace.providers["zl"].rate_allows_in_flight, Some(10));
    }

    #[test]
    fn a_small_wave_takes_one_install_and_waves_add_up() {
        let names = names(12);
        let servers = planned(&names, "zl");
        let providers = BTreeMap::from([("zl".to_string(), figures(None, 30))]);
        let waves = [wave(1, &names[..2], 2), wave(2, &names[2..], 5)];
        let pace = estimate(&servers, &waves, &providers).unwrap();
        assert_eq!(pace.waves[0].bound, Bound::Install);
        assert_eq!(pace.waves[0].estimated_s, 30.0);
        // 10 servers, 5 at a time: two rounds.
        assert_eq!(pace.waves[1].bound, Bound::MaxParallel);
        assert_eq!(pace.waves[1].estimated_s, 60.0);
        assert_eq!(pace.estimated_s, 90.0);
        assert_eq!(pace.providers["zl"].reinstall_per_minute, None);
    }

    #[test]
    fn servers_started_together_share_a_batch_call() {
        let names = names(20);
        let servers = planned(&names, "dc");
        let mut batched = figures(Some(1.0), 60);
        batched.reinstall_batch = 10;
        let providers = BTreeMap::from([("dc".to_string(), batched)]);
        let pace = estimate(&servers, &[wave(1, &names, 20)], &providers).unwrap();
        // Two calls of 10, one a minute: the second batch starts at 60 s.
        assert_eq!(pace.waves[0].estimated_s, 120.0);
    }

    #[test]
    fn a_status_limit_too_low_to_watch_every_install_is_noted() {
        let names = names(300);
        let servers = planned(&names, "zl");
        let mut slow_polls = figures(None, 600);
        slow_polls.status_per_minute = Some(6.0);
        slow_polls.poll_interval = Duration::from_secs(15);
        let providers = BTreeMap::from([("zl".to_string(), slow_polls)]);
        let pace = estimate(&servers, &[wave(1, &names, 300)], &providers).unwrap();
        // 300 in flight, 100 a poll, every 15 s: 12 calls a minute against 6 allowed.
        assert_eq!(pace.notes.len(), 1, "{:?}", pace.notes);
        assert!(pace.notes[0].contains("about 12 status calls a minute"));
    }

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(human(45.0), "45s");
        assert_eq!(human(200.0), "3m20s");
        assert_eq!(human(120.0), "2m");
        assert_eq!(human(3720.0), "1h2m");
        assert_eq!(human(7200.0), "2h");
    }
}
