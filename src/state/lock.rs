//! Waiting for the state lock (`-lock-timeout`), and who a new holder is.
//!
//! Every backend's [`StateStore::lock`] tries once and fails at once naming the holder;
//! [`acquire`] retries it with backoff until the timeout (Terraform's `-lock-timeout`, default
//! `0s`: no wait). Both backends' locks die with their holder (the process for the local file,
//! the database session for PostgreSQL), so a wait only ever waits for a live command.

use std::time::{Duration, Instant};

use super::{LockInfo, StateError, StateLock, StateStore};

/// Parses a lock timeout the way Terraform writes it: `0s`, `30s`, `5m`, `1h30m`, `1.5m`,
/// `500ms`; a bare `0` is zero. Units: `ms`, `s`, `m`, `h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let invalid = || {
        format!(
            "`{text}` is not a duration: write a number and a unit (ms, s, m, h), e.g. `30s`, `5m`, `1h30m`"
        )
    };
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    if text.is_empty() {
        return Err(invalid());
    }
    let mut total = 0f64;
    let mut rest = text;
    while !rest.is_empty() {
        let number_length = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(invalid)?;
        let (number, after) = rest.split_at(number_length);
        let value: f64 = number.parse().map_err(|_| invalid())?;
        let unit_length = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_length);
        let seconds = match unit {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(invalid()),
        };
        total += value * seconds;
        rest = after;
    }
    // A week is far beyond any sensible wait; it also keeps the conversion finite.
    if !total.is_finite() || total > 7.0 * 24.0 * 3600.0 {
        return Err(format!("`{text}` is longer than a week"));
    }
    Ok(Duration::from_secs_f64(total))
}

/// Formats a duration as `parse_duration` reads it (`90s` → `1m30s`).
pub fn format_duration(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis == 0 {
        return "0s".to_string();
    }
    if !millis.is_multiple_of(1000) {
        return format!("{millis}ms");
    }
    let mut seconds = millis / 1000;
    let mut text = String::new();
    for (unit, size) in [("h", 3600), ("m", 60)] {
        if seconds >= size {
            text.push_str(&format!("{}{unit}", seconds / size));
            seconds %= size;
        }
    }
    if seconds > 0 || text.is_empty() {
        text.push_str(&format!("{seconds}s"));
    }
    text
}

/// The description a new lock holder writes about itself.
pub fn holder(command: &str) -> LockInfo {
    LockInfo {
        id: uuid::Uuid::new_v4().to_string(),
        user: user_name(),
        pid: std::process::id(),
        host: host_name(),
        command: command.to_string(),
        ci_job_url: ci_job_url(|name| std::env::var(name).ok()),
        since: jiff::Timestamp::now().to_string(),
    }
}

/// The login name, from the usual variables (`unknown` without them).
pub fn user_name() -> String {
    ["USER", "LOGNAME", "USERNAME"]
        .iter()
        .find_map(|name| std::env::var(name).ok().filter(|value| !value.is_empty()))
        .unwrap_or_else(|| "unknown".to_string())
}

pub fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|name| !name.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|name| name.trim().to_string())
                .filter(|name| !name.is_empty())
        })
        .unwrap_or_else(|| "unknown-host".to_string())
}

/// The URL of the CI job running this process: GitHub Actions' run, or GitLab's job.
pub fn ci_job_url(var: impl Fn(&str) -> Option<String>) -> Option<String> {
    let set = |name: &str| var(name).filter(|value| !value.is_empty());
    if let (Some(server), Some(repository), Some(run)) = (
        set("GITHUB_SERVER_URL"),
        set("GITHUB_REPOSITORY"),
        set("GITHUB_RUN_ID"),
    ) {
        return Some(format!(
            "{}/{repository}/actions/runs/{run}",
            server.trim_end_matches('/')
        ));
    }
    set("CI_JOB_URL")
}

/// Takes the lock of `store`, waiting up to `timeout` for a holder to let go: polls with
/// backoff (0.1 s doubling up to 2 s), calls `waiting` once with the holder when it first has
/// to wait, and when the time is up fails naming the holder.
pub async fn acquire(
    store: &dyn StateStore,
    command: &str,
    timeout: Duration,
    mut waiting: impl FnMut(&LockInfo),
) -> Result<Box<dyn StateLock>, StateError> {
    let started = Instant::now();
    let mut delay = Duration::from_millis(100);
    let mut told = false;
    loop {
        match store.lock(command) {
            Err(StateError::Locked {
                holder,
                location,
                hint,
                ..
            }) => {
                let waited = started.elapsed();
                if waited >= timeout {
                    return Err(StateError::Locked {
                        holder,
                        location,
                        waited: (!timeout.is_zero()).then(|| format_duration(timeout)),
                        hint,
                    });
                }
                if !told {
                    waiting(&holder);
                    told = true;
                }
                tokio::time::sleep(delay.min(timeout - waited)).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::local::LocalStateStore;

    #[test]
    fn terraform_durations_parse() {
        let cases = [
            ("0", 0),
            ("0s", 0),
            ("30s", 30_000),
            ("5m", 300_000),
            ("1h", 3_600_000),
            ("1h30m", 5_400_000),
            ("1m30s", 90_000),
            ("1.5m", 90_000),
            ("500ms", 500),
            (" 2s ", 2_000),
        ];
        for (text, millis) in cases {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_millis(millis)),
                "{text}"
            );
        }
    }

    #[test]
    fn bad_durations_say_how_to_write_one() {
        for text in ["", "30", "5 m", "m", "1d", "-1s", "1.2.3s", "s5", "ten s"] {
            let error = parse_duration(text).unwrap_err();
            assert!(error.contains("is not a duration"), "{text}: {error}");
        }
        assert!(
            parse_duration("200h")
                .unwrap_err()
                .contains("longer than a week")
        );
    }

    #[test]
    fn durations_format_back_to_what_parses() {
        for (millis, text) in [
            (0, "0s"),
            (30_000, "30s"),
            (90_000, "1m30s"),
            (3_600_000, "1h"),
            (1_500, "1500ms"),
        ] {
            let duration = Duration::from_millis(millis);
            assert_eq!(format_duration(duration), text);
            assert_eq!(parse_duration(text), Ok(duration));
        }
    }

    #[test]
    fn the_ci_job_is_named_from_github_or_gitlab() {
        let github = |name: &str| {
            match name {
                "GITHUB_SERVER_URL" => Some("https://github.com/"),
                "GITHUB_REPOSITORY" => Some("acme/infra"),
                "GITHUB_RUN_ID" => Some("42"),
                "CI_JOB_URL" => Some("https://gitlab.example/job/1"),
                _ => None,
            }
            .map(str::to_string)
        };
        assert_eq!(
            ci_job_url(github).as_deref(),
            Some("https://github.com/acme/infra/actions/runs/42")
        );
        let gitlab = |name: &str| {
            (name == "CI_JOB_URL").then(|| "https://gitlab.example/acme/-/jobs/7".to_string())
        };
        assert_eq!(
            ci_job_url(gitlab).as_deref(),
            Some("https://gitlab.example/acme/-/jobs/7")
        );
        assert_eq!(ci_job_url(|_| None), None);
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn a_zero_timeout_fails_at_once_naming_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStateStore::new(dir.path().join("state.json"));
        let held = store.lock("reimage apply").unwrap();
        let mut told = 0;
        let error =
            match runtime().block_on(acquire(&store, "reimage plan", Duration::ZERO, |_| {
                told += 1
            })) {
                Err(error) => error,
                Ok(_) => panic!("the lock is held"),
            };
        assert_eq!(told, 0, "no wait, so no waiting notice");
        let message = error.to_string();
        assert!(message.contains("reimage apply"), "{message}");
        assert!(message.contains(&held.info().id), "{message}");
        assert!(!message.contains("waited"), "{message}");
    }

    #[test]
    fn a_wait_that_runs_out_says_how_long_it_waited_and_tells_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStateStore::new(dir.path().join("state.json"));
        let _held = store.lock("reimage apply").unwrap();
        let mut told = Vec::new();
        let result = runtime().block_on(acquire(
            &store,
            "reimage plan",
            Duration::from_millis(400),
            |holder| told.push(holder.command.clone()),
        ));
        let Err(error) = result else {
            panic!("the lock is held")
        };
        assert_eq!(told, ["reimage apply"]);
        assert!(error.to_string().contains("(waited 400ms)"), "{error}");
    }

    #[test]
    fn a_wait_ends_as_soon_as_the_holder_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(LocalStateStore::new(dir.path().join("state.json")));
        let held = store.lock("reimage apply").unwrap();
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            drop(held);
        });
        // Generous: the holder lets go after 0.3 s; the wait allows ten minutes.
        let lock = runtime()
            .block_on(acquire(
                store.as_ref(),
                "reimage plan",
                Duration::from_secs(600),
                |_| {},
            ))
            .unwrap();
        assert_eq!(lock.info().command, "reimage plan");
        releaser.join().unwrap();
    }
}
