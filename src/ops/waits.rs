//! While a plan reads the fleet, a line on stderr whenever providers' rate limits (or a
//! throttling provider) hold the reads back, at most one per provider and cause every few
//! seconds: a plan of 100,000 servers takes minutes at a cautious rate, and must not look hung.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::output::Printer;
use crate::provider::limits::{WaitCause, WaitNotice};

/// Between two lines about the same provider, family and cause.
const QUIET: Duration = Duration::from_secs(10);

/// Prints wait notices until dropped.
pub struct WaitLines(tokio::task::JoinHandle<()>);

impl WaitLines {
    pub fn start(
        printer: &Printer,
        mut notices: tokio::sync::broadcast::Receiver<WaitNotice>,
    ) -> Self {
        let printer = printer.clone();
        WaitLines(tokio::spawn(async move {
            let mut last: HashMap<(String, &'static str, &'static str), Instant> = HashMap::new();
            loop {
                let notice = match notices.recv().await {
                    Ok(notice) => notice,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                };
                let cause = match notice.cause {
                    WaitCause::RateLimit => "held to its rate limit",
                    WaitCause::Throttled => "throttled by the provider",
                    WaitCause::Retrying => "retrying after an error",
                };
                let key = (notice.provider.clone(), notice.family.as_str(), cause);
                if last.get(&key).is_some_and(|at| at.elapsed() < QUIET) {
                    continue;
                }
                last.insert(key, Instant::now());
                let hint = match (&notice.cause, notice.slowed_to_per_minute) {
                    (WaitCause::RateLimit, _) => format!(
                        " (`rate_limits.{}` in the manifest sets it)",
                        notice.family.as_str()
                    ),
                    (WaitCause::Throttled, Some(per_minute)) => {
                        format!("; slowing down to {per_minute:.0} calls a minute")
                    }
                    _ => String::new(),
                };
                printer.status(&format!(
                    "Waiting {:.1}s: `{}` {} calls are {cause}{hint}…",
                    notice.wait.as_secs_f64(),
                    crate::output::escape_control(&notice.provider),
                    notice.family.as_str(),
                ));
            }
        }))
    }
}

impl Drop for WaitLines {
    fn drop(&mut self) {
        self.0.abort();
    }
}
