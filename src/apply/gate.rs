//! One attempt of a health gate's check: a TCP connection, an HTTP GET, or a command. Each is
//! held to the gate's timeout; none retries on its own (the engine spaces the attempts).
//!
//! Nothing the server answers reaches messages beyond a status: a body or a command's output
//! may hold anything, so only the HTTP status or the exit status is reported.

use std::time::Duration;

use crate::manifest::health::HealthCheck;

/// The server a check is about, for a command's environment.
#[derive(Debug, Clone)]
pub struct GateTarget {
    pub name: String,
    pub cloud_id: String,
    pub address: Option<String>,
}

/// Longest body read when looking for `body_contains`.
const BODY_LIMIT: usize = 1024 * 1024;

/// Runs one attempt; `Ok` with what passed, `Err` with why not.
pub async fn attempt(
    check: &HealthCheck,
    timeout: Duration,
    target: &GateTarget,
) -> Result<String, String> {
    match tokio::time::timeout(timeout, run(check, timeout, target)).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer within {}s", timeout.as_secs_f64())),
    }
}

async fn run(
    check: &HealthCheck,
    timeout: Duration,
    target: &GateTarget,
) -> Result<String, String> {
    match check {
        HealthCheck::Tcp { address } => tokio::net::TcpStream::connect(address.as_str())
            .await
            .map(|_| format!("{address} accepted a connection"))
            .map_err(|error| format!("{address}: {error}")),
        HealthCheck::Http {
            url,
            status,
            body_contains,
        } => http(url, *status, body_contains.as_deref(), timeout).await,
        HealthCheck::Command { argv, dir } => command(argv, dir, target).await,
    }
}

async fn http(
    url: &str,
    expected: u16,
    body_contains: Option<&str>,
    timeout: Duration,
) -> Result<String, String> {
    // No proxy: a health check goes to the server itself.
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|error| format!("cannot make an HTTP client: {error}"))?;
    let mut response = client
        .get(url)
        .send()
        .await
        .map_err(|error| format!("GET {url}: {}", without_url(&error)))?;
    let status = response.status().as_u16();
    if status != expected {
        return Err(format!("GET {url} answered {status}, expected {expected}"));
    }
    let Some(wanted) = body_contains else {
        return Ok(format!("GET {url} answered {status}"));
    };
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|error| format!("GET {url}: reading the body: {}", without_url(&error)))?
    {
        body.extend_from_slice(&chunk);
        if body.len() >= BODY_LIMIT {
            break;
        }
    }
    if String::from_utf8_lossy(&body).contains(wanted) {
        Ok(format!(
            "GET {url} answered {status} with {wanted:?} in the body"
        ))
    } else {
        Err(format!(
            "GET {url} answered {status}, but the body does not contain {wanted:?}"
        ))
    }
}

fn without_url(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    if let Some(url) = error.url() {
        text = text.replace(&format!(" ({url})"), "");
    }
    text
}

async fn command(argv: &[String], dir: &str, target: &GateTarget) -> Result<String, String> {
    let Some((program, arguments)) = argv.split_first() else {
        return Err("the command is empty".to_string());
    };
    let status = tokio::process::Command::new(program)
        .args(arguments)
        .current_dir(dir)
        .env("REIMAGE_SERVER", &target.name)
        .env("REIMAGE_SERVER_ID", &target.cloud_id)
        .env(
            "REIMAGE_SERVER_ADDRESS",
            target.address.as_deref().unwrap_or_default(),
        )
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        // A check that outlives its timeout is killed when the attempt is dropped.
        .kill_on_drop(true)
        .status()
        .await
        .map_err(|error| format!("cannot run `{program}`: {error}"))?;
    if status.success() {
        Ok(format!("`{program}` exited 0"))
    } else {
        Err(match status.code() {
            Some(code) => format!("`{program}` exited {code}"),
            None => format!("`{program}` was ended by a signal"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn target() -> GateTarget {
        GateTarget {
            name: "web-1".into(),
            cloud_id: "i-1".into(),
            address: Some("127.0.0.1".into()),
        }
    }

    const SECOND: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn tcp_passes_on_a_listener_and_fails_on_a_closed_port() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let check = HealthCheck::Tcp { address };
        assert!(attempt(&check, SECOND, &target()).await.is_ok());
        drop(listener);
        assert!(attempt(&check, SECOND, &target()).await.is_err());
    }

    /// Serves `answers` (status, body) to successive requests, then closes.
    async fn http_server(answers: Vec<(u16, &'static str)>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            for (status, body) in answers {
                let (mut stream, _) = listener.accept().await.unwrap();
                let mut request = [0u8; 1024];
                let _ = stream.read(&mut request).await;
                let answer = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(answer.as_bytes()).await;
            }
        });
        format!("http://{address}/health")
    }

    #[tokio::test]
    async fn http_checks_the_status_and_the_body_and_reports_no_body() {
        let url = http_server(vec![(503, "secret-ish"), (200, "all ok"), (200, "meh")]).await;
        let check = HealthCheck::Http {
            url,
            status: 200,
            body_contains: Some("ok".into()),
        };
        let first = attempt(&check, SECOND, &target()).await.unwrap_err();
        assert!(first.contains("answered 503"), "{first}");
        assert!(!first.contains("secret-ish"));
        assert!(attempt(&check, SECOND, &target()).await.is_ok());
        let third = attempt(&check, SECOND, &target()).await.unwrap_err();
        assert!(third.contains("does not contain"), "{third}");
    }

    #[tokio::test]
    async fn a_command_sees_the_server_and_its_exit_status_decides() {
        let dir = tempfile::tempdir().unwrap();
        let check = |line: &str| HealthCheck::Command {
            argv: vec!["sh".into(), "-c".into(), line.into()],
            dir: dir.path().display().to_string(),
        };
        let env_check = check(
            "test \"$REIMAGE_SERVER\" = web-1 && test \"$REIMAGE_SERVER_ID\" = i-1 \
             && test \"$REIMAGE_SERVER_ADDRESS\" = 127.0.0.1 && test \"$(pwd)\" = \"$PWD\"",
        );
        assert!(attempt(&env_check, SECOND, &target()).await.is_ok());
        let failing = attempt(&check("exit 3"), SECOND, &target()).await;
        assert_eq!(failing.unwrap_err(), "`sh` exited 3");
        let slow = attempt(&check("sleep 30"), Duration::from_millis(300), &target()).await;
        assert!(slow.unwrap_err().contains("no answer within"));
    }
}
