//! When is an EDIS reinstall done? The API has no job id and no install status (brief §6), so
//! reimage follows the brief's heuristic, every step **unconfirmed**:
//!
//! 1. nothing counts before a grace period after the accepted call (default 60 s): the VPS may
//!    still show its old power state;
//! 2. after it, the power state must read "on" again (the install reboots the VM; a power-off
//!    seen in between is noted, but a short install may happen between two polls);
//! 3. when an SSH probe address is configured for the server, a TCP connection to exactly that
//!    address must succeed, within a deadline counted from the first "on" after the grace
//!    period.
//!
//! Even then the provider has not confirmed which OS was installed, so success always carries
//! the note "completed (not verifiable by the provider)".

use std::time::Duration;

use crate::provider::ServerStatus;

/// The note every EDIS success carries (shown next to the outcome by the apply engine).
pub const NOT_VERIFIABLE: &str = "completed (not verifiable by the provider)";

/// Where one install stands as far as this process has seen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    /// A power-off was seen after the reinstall call.
    pub off_seen: bool,
    /// Unix ms of the first "on" after the grace period (the SSH deadline counts from it).
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

/// Tries one TCP connection to exactly `address` (`HOST:PORT`), within `timeout`.
pub async fn probe(address: &str, timeout: Duration) -> Result<(), String> {
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(address)).await {
        Ok(Ok(_stream)) => Ok(()),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
    }
}

/// The success note: the fixed words, then what was actually seen.
pub fn success_note(progress: &Progress, probed: Option<&str>) -> String {
    let power = if progress.off_seen {
        "powered off and on again"
    } else {
        "powered on after the grace period (no power-off was seen between polls)"
    };
    match probed {
        Some(address) => format!("{NOT_VERIFIABLE}: {power}; SSH port {address} answered"),
        None => format!("{NOT_VERIFIABLE}: {power}"),
    }
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
            success_note(&progress, Some("127.0.0.1:22")),
            "completed (not verifiable by the provider): powered off and on again; SSH port \
             127.0.0.1:22 answered"
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
        assert!(success_note(&progress, None).starts_with(NOT_VERIFIABLE));
        assert!(success_note(&progress, None).contains("no power-off was seen"));
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

    #[tokio::test]
    async fn the_probe_connects_to_a_local_listener_and_fails_on_a_closed_port() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let accepted = tokio::spawn(async move { listener.accept().await.map(|(_, peer)| peer) });
        probe(&address, Duration::from_secs(2)).await.unwrap();
        // The connection reached exactly this listener.
        let peer = tokio::time::timeout(Duration::from_secs(2), accepted)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert!(peer.ip().is_loopback());

        let closed = {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            listener.local_addr().unwrap().to_string()
        };
        assert!(probe(&closed, Duration::from_secs(2)).await.is_err());
    }
}
