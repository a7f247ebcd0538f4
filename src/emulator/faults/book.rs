//! The persisted side of the fault menu: the armed rules, the generator, pending 429 bursts,
//! late views, and what happened (faults fired, calls that acted). Every decision about a call
//! is made here, so each API only classifies its calls and asks.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::generator::Generator;
use super::rate_limit::RateWindows;
use super::rules::{CallKind, FaultKind, Rule};
use super::{Aftermath, Call, Outcome, Refusal};
use crate::manifest::ProviderType;

/// A rule with `rate` < 1 does not refuse a read or status query that follows this many
/// injected refusals in a row of the same provider type and call kind: clients retry reads a
/// bounded number of times (reimage: eight attempts), so random faults test retries, not a dead
/// API. Rules with `rate` 1 (and bursts) are obeyed regardless: they were asked for.
pub const MAX_RANDOM_REFUSALS_IN_A_ROW: u32 = 4;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultBook {
    /// In arming order, which is also the order they are tried in (per fault, see `before`).
    pub rules: Vec<Rule>,
    pub next_rule_id: u64,
    pub generator: Generator,
    /// Injected refusals in a row, per provider type and read-like call kind.
    pub refusal_streaks: Vec<Streak>,
    /// 429s still owed by a `throttle_429` rule that fired with `burst` > 1.
    pub bursts: Vec<Burst>,
    /// Servers whose reads still show them as before an acting call (`late_status`).
    pub late: Vec<LateView>,
    /// How often each fault fired, by provider type and call kind.
    pub fired: BTreeMap<ProviderType, BTreeMap<CallKind, BTreeMap<FaultKind, u64>>>,
    /// Calls that acted (or were replayed), by provider type and server id.
    pub counts: BTreeMap<ProviderType, BTreeMap<String, ServerCounts>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Streak {
    pub provider: ProviderType,
    pub call: CallKind,
    pub refused: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Burst {
    pub rule: u64,
    pub provider: ProviderType,
    pub call: CallKind,
    pub remaining: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LateView {
    pub provider: ProviderType,
    pub id: String,
    pub until: Timestamp,
    /// The API's own record of the server as it was before the call.
    pub shown: Value,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerCounts {
    pub reinstall: u64,
    pub change_os: u64,
    pub stop: u64,
    /// Mutating calls answered from an idempotency token without acting again.
    pub replayed: u64,
}

impl FaultBook {
    /// Arms a rule (its id assigned here).
    pub fn arm(&mut self, mut rule: Rule) {
        self.next_rule_id += 1;
        rule.id = self.next_rule_id;
        self.rules.push(rule);
    }

    /// Drops every rule and what they still owed.
    pub fn clear_rules(&mut self) {
        self.rules.clear();
        self.bursts.clear();
        self.refusal_streaks.clear();
    }

    /// How long the call waits before being handled (`latency` rules), and whether the book
    /// must be saved: only when a rule that fired is random (the generator moved) or counted
    /// (it may run out). The tallies of a rule that always fires are kept in memory and saved
    /// with the next change: a benchmark's latency on every call must not rewrite the world
    /// file on every call.
    pub fn latency(&mut self, call: &Call) -> (Option<Duration>, bool) {
        let mut total = None;
        let mut changed = false;
        for index in 0..self.rules.len() {
            let rule = &self.rules[index];
            if rule.fault != FaultKind::Latency {
                continue;
            }
            let Some(provider) = rule.selects(call) else {
                continue;
            };
            let random = rule.rate < 1.0;
            let counted = rule.count.is_some();
            if self.decide(index, provider, call, false) {
                let delay = self.rules[index].duration();
                total = Some(total.unwrap_or(Duration::ZERO) + delay);
                self.record_fired(provider, call.kind, FaultKind::Latency);
                changed |= random || counted;
            }
        }
        (total, changed)
    }

    /// Whether the call is refused before acting, and how: `rate_limit`, then a burst in
    /// progress, then `throttle_429`, then `error_5xx`; within a fault, in arming order. The
    /// `bool` says whether the book changed (and must be saved).
    pub fn before(
        &mut self,
        call: &Call,
        windows: &mut RateWindows,
        now: Instant,
    ) -> (Option<Refusal>, bool) {
        let mut changed = false;
        let refusal = self.refusal(call, windows, now, &mut changed);
        // A call that gets through ends its streak only once it is answered (see `after`).
        if call.kind.is_read_like() && refusal.is_some() {
            self.note_streak(call, true);
            changed = true;
        }
        (refusal, changed)
    }

    fn refusal(
        &mut self,
        call: &Call,
        windows: &mut RateWindows,
        now: Instant,
        changed: &mut bool,
    ) -> Option<Refusal> {
        for index in 0..self.rules.len() {
            let rule = &self.rules[index];
            if rule.fault != FaultKind::RateLimit || rule.exhausted() {
                continue;
            }
            let Some(provider) = rule.selects(call) else {
                continue;
            };
            let per_second = rule.per_second.unwrap_or(u32::MAX);
            if windows.admit((rule.id, provider, call.kind), per_second, now) {
                continue;
            }
            let retry_after_seconds = rule.retry_after_seconds();
            self.rules[index].fired += 1;
            self.record_fired(provider, call.kind, FaultKind::RateLimit);
            *changed = true;
            return Some(Refusal::Throttled {
                retry_after_seconds,
            });
        }
        if let Some(refusal) = self.continue_burst(call) {
            *changed = true;
            return Some(refusal);
        }
        for fault in [FaultKind::Throttle429, FaultKind::Error5xx] {
            for index in 0..self.rules.len() {
                let rule = &self.rules[index];
                if rule.fault != fault {
                    continue;
                }
                let Some(provider) = rule.selects(call) else {
                    continue;
                };
                let random = rule.rate < 1.0;
                let fires = self.decide(index, provider, call, true);
                *changed |= random || fires;
                if !fires {
                    continue;
                }
                self.record_fired(provider, call.kind, fault);
                let rule = &self.rules[index];
                if fault == FaultKind::Error5xx {
                    return Some(Refusal::ServerError);
                }
                if rule.burst > 1 {
                    self.bursts.push(Burst {
                        rule: rule.id,
                        provider,
                        call: call.kind,
                        remaining: rule.burst - 1,
                    });
                }
                return Some(Refusal::Throttled {
                    retry_after_seconds: rule.retry_after_seconds(),
                });
            }
        }
        None
    }

    /// A 429 owed by a burst that covers this call, if any.
    fn continue_burst(&mut self, call: &Call) -> Option<Refusal> {
        let position = self.bursts.iter().position(|burst| {
            burst.call == call.kind
                && self
                    .rules
                    .iter()
                    .any(|rule| rule.id == burst.rule && rule.selects(call) == Some(burst.provider))
        })?;
        let burst = &mut self.bursts[position];
        burst.remaining = burst.remaining.saturating_sub(1);
        let (rule_id, provider) = (burst.rule, burst.provider);
        if burst.remaining == 0 {
            self.bursts.remove(position);
        }
        let retry_after_seconds = self
            .rules
            .iter()
            .find(|rule| rule.id == rule_id)
            .map_or(1, Rule::retry_after_seconds);
        self.record_fired(provider, call.kind, FaultKind::Throttle429);
        Some(Refusal::Throttled {
            retry_after_seconds,
        })
    }

    /// What follows a call that got through `before` and succeeded. `shown_before` gives the
    /// API's record of a server as it was before the call (for `late_status`). The `bool` says
    /// whether the book changed.
    pub fn after(
        &mut self,
        call: &Call,
        outcome: Outcome,
        now: Timestamp,
        shown_before: &dyn Fn(&str) -> Option<Value>,
    ) -> (Aftermath, bool) {
        let mut aftermath = Aftermath::default();
        let mut changed = false;
        let primary = call.providers.first().copied();
        match (outcome, primary) {
            (Outcome::Acted, Some(provider)) => {
                for id in &call.ids {
                    let counts = self
                        .counts
                        .entry(provider)
                        .or_default()
                        .entry(id.clone())
                        .or_default();
                    match call.kind {
                        CallKind::Reinstall => counts.reinstall += 1,
                        CallKind::ChangeOs => counts.change_os += 1,
                        CallKind::Stop => counts.stop += 1,
                        _ => {}
                    }
                }
                // What this call did supersedes what an earlier one had not shown yet.
                self.late.retain(|view| {
                    view.until > now
                        && !(call.providers.contains(&view.provider) && call.ids.contains(&view.id))
                });
                changed = true;
            }
            (Outcome::Replayed, Some(provider)) => {
                for id in &call.ids {
                    let counts = self.counts.entry(provider).or_default();
                    counts.entry(id.clone()).or_default().replayed += 1;
                }
                return (aftermath, true);
            }
            _ => {}
        }
        for index in 0..self.rules.len() {
            let rule = &self.rules[index];
            let fault = rule.fault;
            let applies = match fault {
                FaultKind::DropAfter | FaultKind::SlowAfter => true,
                FaultKind::LateStatus => outcome == Outcome::Acted,
                _ => false,
            };
            if !applies {
                continue;
            }
            let Some(provider) = rule.selects(call) else {
                continue;
            };
            let random = rule.rate < 1.0;
            let fires = self.decide(index, provider, call, fault == FaultKind::DropAfter);
            changed |= random || fires;
            if !fires {
                continue;
            }
            self.record_fired(provider, call.kind, fault);
            let rule = &self.rules[index];
            match fault {
                FaultKind::DropAfter => aftermath.drop_connection = true,
                FaultKind::SlowAfter => aftermath.delay += rule.duration(),
                _ => {
                    let span = SignedDuration::try_from_secs_f64(rule.seconds.unwrap_or(0.0))
                        .unwrap_or(SignedDuration::ZERO);
                    let until = now.checked_add(span).unwrap_or(Timestamp::MAX);
                    for id in &call.ids {
                        if let Some(shown) = shown_before(id) {
                            self.late
                                .retain(|view| !(view.provider == provider && &view.id == id));
                            self.late.push(LateView {
                                provider,
                                id: id.clone(),
                                until,
                                shown,
                            });
                        }
                    }
                }
            }
        }
        if call.kind.is_read_like() && (aftermath.drop_connection || self.streak(call) > 0) {
            self.note_streak(call, aftermath.drop_connection);
            changed = true;
        }
        (aftermath, changed)
    }

    /// The record a read of this server must show instead of the truth, while a `late_status`
    /// fault holds it.
    pub fn late_view(&self, provider: ProviderType, id: &str, now: Timestamp) -> Option<&Value> {
        self.late
            .iter()
            .find(|view| view.provider == provider && view.id == id && view.until > now)
            .map(|view| &view.shown)
    }

    /// Whether rule `index` fires for this call (and counts it as fired if so). A `refusing`
    /// decision on a read-like call is capped by [`MAX_RANDOM_REFUSALS_IN_A_ROW`].
    fn decide(
        &mut self,
        index: usize,
        provider: ProviderType,
        call: &Call,
        refusing: bool,
    ) -> bool {
        let rule = &self.rules[index];
        if rule.exhausted() || rule.rate <= 0.0 {
            return false;
        }
        if rule.rate < 1.0 {
            if refusing
                && call.kind.is_read_like()
                && self.streak_of(provider, call.kind) >= MAX_RANDOM_REFUSALS_IN_A_ROW
            {
                return false;
            }
            if self.generator.draw() >= rule.rate {
                return false;
            }
        }
        self.rules[index].fired += 1;
        true
    }

    fn streak(&self, call: &Call) -> u32 {
        call.providers
            .first()
            .map_or(0, |provider| self.streak_of(*provider, call.kind))
    }

    fn streak_of(&self, provider: ProviderType, kind: CallKind) -> u32 {
        self.refusal_streaks
            .iter()
            .find(|streak| streak.provider == provider && streak.call == kind)
            .map_or(0, |streak| streak.refused)
    }

    fn note_streak(&mut self, call: &Call, refused: bool) {
        let Some(provider) = call.providers.first().copied() else {
            return;
        };
        let before = self.streak_of(provider, call.kind);
        self.refusal_streaks
            .retain(|streak| !(streak.provider == provider && streak.call == call.kind));
        if refused {
            let refused = before + 1;
            self.refusal_streaks.push(Streak {
                provider,
                call: call.kind,
                refused,
            });
        }
    }

    fn record_fired(&mut self, provider: ProviderType, call: CallKind, fault: FaultKind) {
        *self
            .fired
            .entry(provider)
            .or_default()
            .entry(call)
            .or_default()
            .entry(fault)
            .or_default() += 1;
    }
}
