//! When is an EDIS reinstall done? The API has no job id and no install status (brief §6), so
//! reimage follows the brief's heuristic, every step **unconfirmed**:
//!
//! 1. nothing counts before a grace period after the accepted call (default 60 s): the VPS may
//!    still show its old power state;
//! 2. after it, the power state must read "on" again (the install reboots the VM; a power-off
//!    seen in between is noted, but a short install may happen between two polls);
//! 3. when an SSH probe address is configured for the server (`ssh_probe`), it becomes the
//!    server's health gate ([`probe_gate`]): after the VPS is on again, a TCP connection to
//!    exactly that address must succeed within `ssh_probe_timeout_seconds`. The engine runs it
//!    like any gate of the manifest; a server with its own `health:` uses that instead.
//!
//! Even then the provider has not confirmed which OS was installed, so success always carries
//! the note "completed (not verifiable by the provider)".

use std::time::Duration;

use crate::manifest::health::{HealthCheck, HealthGate};
use crate::provider::ServerStatus;

/// The note every EDIS success carries (shown next to the outcome by the apply engine).
pub const NOT_VERIFIABLE: &str = "completed (not verifiable by the provider)";

/// Where one install stands as far as this process has seen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    /// A power-off was seen after the reinstall call.
    pub off_seen: bool,
    /// Unix ms of the first "on" after the grace period.
    pub on_since_ms: Option<i64>,
}

/// Settings of the heuristic.
#[derive(Debug, Clone, PartialEq)]
pub struct Heuristic {
    pub grace: Duration,
    /// Longest wait for the SSH port after the VPS is on again.
    pub probe_deadline: Duration,
    /// Longest wait for one TCP connection.
    pub probe_connect_timeout: Duration,
}

/// What the power state says, before any probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PowerVerdict {
    Waiting(String),
    /// On again after the grace period: done unless a probe must answer first.
    BackOn,
}

/// Judges one power reading taken `elapsed_ms` after the reinstall call was accepted.
/// Records a power-off and the first "on" after the grace period in `progress`.
pub fn judge_power(
    heuristic: &Heuristic,
    progress: &mut Progress,
    elapsed_ms: i64,
    now_ms: i64,
    status: ServerStatus,
    raw: &str,
) -> PowerVerdict {
    let grace_ms = i64::try_from(heuristic.grace.as_millis()).unwrap_or(i64::MAX);
    match status {
        ServerStatus::Stopped => {
            progress.off_seen = true;
            progress.on_since_ms = None;
            PowerVerdict::Waiting(format!("{raw} (installing)"))
        }
        ServerStatus::Running if elapsed_ms < grace_ms => PowerVerdict::Waiting(format!(
            "{raw}; waiting out the {}s grace period before believing it",
            heuristic.grace.as_secs()
        )),
        ServerStatus::Running => {
            progress.on_since_ms.get_or_insert(now_ms);
            PowerVerdict::BackOn
        }
        _ => PowerVerdict::Waiting(format!("power state `{raw}`")),
    }
}

/// The health gate an `ssh_probe` address becomes: a TCP check of exactly that address, each
/// try limited to the connect timeout, tried every 10 s (or less) until the probe deadline.
pub fn probe_gate(address: &str, heuristic: &Heuristic, source: &str) -> HealthGate {
    let deadline = heuristic.probe_deadline.as_secs_f64();
    let interval = deadline.min(10.0);
    let attempts = if interval > 0.0 {
        (deadline / interval).floor() as u32 + 1
    } else {
        1
    };
    HealthGate {
        check: HealthCheck::Tcp {
            address: address.to_string(),
        },
        timeout_s: heuristic.probe_connect_timeout.as_secs_f64(),
        interval_s: interval,
        attempts: attempts.max(1),
        source: source.to_string(),
    }
}

/// The success note: the fixed words, then what was actually seen.
pub fn success_note(progress: &Progress) -> String {
    let power = if progress.off_seen {
        "powered off and on again"
    } else {
        "powered on after the grace period (no power-off was seen between polls)"
    };
    format!("{NOT_VERIFIABLE}: {power}")
}

/// Checks an SSH probe address: `HOST:PORT` with a port from 1 to 65535.
pub fn parse_probe_address(text: &str) -> Result<String, String> {
    let text = text.trim();
    let (host, port) = text
        .rsplit_once(':')
        .ok_or_else(|| format!("`{text}` is not HOST:PORT"))?;
    let port: u16 = port
        .parse()
        .ok()
        .filter(|port| *port > 0)
        .ok_or_else(|| format!("`{text}` has no port from 1 to 65535"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host.contains(char::is_whitespace) || host.contains('/') {
        return Err(format!("`{text}` has no host"));
    }
    Ok(if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heuristic() -> Heuristic {
        Heuristic {
            grace: Duration::from_secs(60),
            probe_deadline: Duration::from_secs(600),
            probe_connect_timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn nothing_counts_before_the_grace_period_and_a_power_off_is_remembered() {
        let mut progress = Progress::default();
        let on = "server powered on";
        let verdict = judge_power(
            &heuristic(),
            &mut progress,
            1_000,
            1_000,
            ServerStatus::Running,
            on,
        );
        assert!(matches!(verdict, PowerVerdict::Waiting(ref text) if text.contains("grace")));
        let verdict = judge_power(
            &heuristic(),
            &mut progress,
            30_000,
            30_000,
            ServerStatus::Stopped,
            "server powered off",
        );
        assert!(matches!(verdict, PowerVerdict::Waiting(ref text) if text.contains("installing")));
        assert!(progress.off_seen);
        let verdict = judge_power(
            &heuristic(),
            &mut progress,
            61_000,
            61_000,
            ServerStatus::Running,
            on,
        );
        assert_eq!(verdict, PowerVerdict::BackOn);
        assert_eq!(progress.on_since_ms, Some(61_000));
        // The first "on" sets the SSH clock; later ones keep it.
        judge_power(
            &heuristic(),
            &mut progress,
            70_000,
            70_000,
            ServerStatus::Running,
            on,
        );
        assert_eq!(progress.on_since_ms, Some(61_000));
        assert_eq!(
            success_note(&progress),
            "completed (not verifiable by the provider): powered off and on again"
        );
    }

    #[test]
    fn unknown_power_states_keep_waiting() {
        let mut progress = Progress::default();
        let verdict = judge_power(
            &heuristic(),
            &mut progress,
            90_000,
            90_000,
            ServerStatus::Unknown,
            "rebooting",
        );
        assert_eq!(
            verdict,
            PowerVerdict::Waiting("power state `rebooting`".into())
        );
        assert!(success_note(&progress).starts_with(NOT_VERIFIABLE));
        assert!(success_note(&progress).contains("no power-off was seen"));
    }

    #[test]
    fn probe_addresses_are_host_and_port() {
        assert_eq!(
            parse_probe_address("127.0.0.1:2222").unwrap(),
            "127.0.0.1:2222"
        );
        assert_eq!(parse_probe_address("[::1]:22").unwrap(), "[::1]:22");
        assert_eq!(
            parse_probe_address("vps.example.net:22").unwrap(),
            "vps.example.net:22"
        );
        for bad in [
            "127.0.0.1",
            "host:0",
            "host:99999",
            ":22",
            "a b:22",
            "h/x:22",
        ] {
            assert!(parse_probe_address(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_probe_becomes_a_tcp_gate_tried_until_the_deadline() {
        let gate = probe_gate(
            "192.0.2.10:22",
            &heuristic(),
            "providers.e.options.ssh_probe",
        );
        assert_eq!(
            gate.check,
            HealthCheck::Tcp {
                address: "192.0.2.10:22".into()
            }
        );
        // 600 s deadline, a try every 10 s from the first "on": 61 tries of 1 s at most.
        assert_eq!(
            (gate.interval_s, gate.attempts, gate.timeout_s),
            (10.0, 61, 1.0)
        );
        let short = Heuristic {
            probe_deadline: Duration::from_secs(1),
            ..heuristic()
        };
        let gate = probe_gate("h:22", &short, "s");
        assert_eq!((gate.interval_s, gate.attempts), (1.0, 2));
    }
}
