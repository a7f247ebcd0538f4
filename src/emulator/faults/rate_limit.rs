//! Sliding one-second windows for `rate_limit` rules, per (rule, provider type, call kind).
//! Kept in memory only: a restarted API forgets its recent calls, as a real one would, and the
//! world file is not rewritten on every call of a benchmark.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::rules::CallKind;
use crate::manifest::ProviderType;

const WINDOW: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
pub struct RateWindows {
    admitted: HashMap<(u64, ProviderType, CallKind), VecDeque<Instant>>,
}

impl RateWindows {
    /// Whether one more call fits under `per_second` in the window ending `now`; an admitted
    /// call is remembered, a refused one is not (it did not reach the API).
    pub fn admit(
        &mut self,
        key: (u64, ProviderType, CallKind),
        per_second: u32,
        now: Instant,
    ) -> bool {
        let calls = self.admitted.entry(key).or_default();
        while calls
            .front()
            .is_some_and(|at| now.saturating_duration_since(*at) >= WINDOW)
        {
            calls.pop_front();
        }
        if calls.len() < per_second as usize {
            calls.push_back(now);
            true
        } else {
            false
        }
    }

    /// Forgets the windows of rules that are no longer armed.
    pub fn retain_rules(&mut self, armed: &[u64]) {
        self.admitted.retain(|(rule, _, _), _| armed.contains(rule));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_admits_per_second_calls_then_refuses_until_a_second_has_passed() {
        let mut windows = RateWindows::default();
        let key = (1, ProviderType::ZenlayerBmc, CallKind::Read);
        let start = Instant::now();
        for _ in 0..3 {
            assert!(windows.admit(key, 3, start));
        }
        assert!(!windows.admit(key, 3, start + Duration::from_millis(500)));
        let other = (1, ProviderType::ZenlayerBmc, CallKind::Reinstall);
        assert!(
            windows.admit(other, 3, start),
            "each call kind has its own window"
        );
        assert!(windows.admit(key, 3, start + Duration::from_millis(1000)));
        windows.retain_rules(&[]);
        assert!(windows.admitted.is_empty());
    }
}
