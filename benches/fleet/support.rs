//! The benchmarks' machinery: a real `reimage emulator serve` process with a latency and a
//! sliding-window rate limit on every API, its call tallies, and runs of the real binary under
//! `/usr/bin/time` (wall time, CPU time, peak memory).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_reimage"))
}

/// An emulator process; killed when dropped.
pub struct Emulator {
    child: std::process::Child,
    pub address: String,
    /// Base URL by provider type.
    pub endpoints: BTreeMap<String, String>,
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts an emulator of `inventory` where every call of every API waits `latency` and each
/// API (provider type and call kind) refuses beyond `per_second` calls in any one second.
pub fn emulator(dir: &Path, inventory: &str, latency: f64, per_second: u32) -> Emulator {
    std::fs::write(dir.join("inventory.yaml"), inventory).expect("write the inventory");
    let faults = serde_json::json!({"clear": true, "rules": [
        {"provider": "*", "call": "*", "fault": "latency", "seconds": latency},
        {"provider": "*", "call": "*", "fault": "rate_limit", "per_second": per_second},
    ]});
    std::fs::write(dir.join("faults.json"), faults.to_string()).expect("write the faults");
    let mut child = Command::new(binary())
        .args([
            "emulator",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--inventory",
        ])
        .arg(dir.join("inventory.yaml"))
        .arg("--data-dir")
        .arg(dir.join("emulator"))
        .arg("--faults")
        .arg(dir.join("faults.json"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the emulator");
    let mut lines = BufReader::new(child.stdout.take().expect("its stdout")).lines();
    let mut address = String::new();
    let mut endpoints = BTreeMap::new();
    for line in lines.by_ref() {
        let line = line.expect("a line of the emulator");
        if let Some(rest) = line.strip_prefix("reimage emulator listening on ") {
            address = rest.trim().to_string();
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        if let [provider_type, url] = words.as_slice() {
            endpoints.insert(provider_type.to_string(), url.to_string());
        }
        if endpoints.len() == 5 {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    Emulator {
        child,
        address,
        endpoints,
    }
}

impl Emulator {
    /// How often each fault fired: provider type → call kind → fault → count.
    pub fn fired(&self) -> BTreeMap<(String, String, String), u64> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let state: Value = runtime.block_on(async {
            reqwest::get(format!("{}/_emulator/state", self.address))
                .await
                .expect("the emulator's state")
                .json()
                .await
                .expect("its JSON")
        });
        let mut fired = BTreeMap::new();
        if let Some(providers) = state["faults_fired"].as_object() {
            for (provider, kinds) in providers {
                for (kind, faults) in kinds.as_object().into_iter().flatten() {
                    for (fault, count) in faults.as_object().into_iter().flatten() {
                        fired.insert(
                            (provider.clone(), kind.clone(), fault.clone()),
                            count.as_u64().unwrap_or(0),
                        );
                    }
                }
            }
        }
        fired
    }
}

/// Calls the emulator answered (every call meets the latency rule) and 429s it gave, between
/// two tallies, optionally for one provider type.
#[derive(Debug, Default, Clone)]
pub struct Calls {
    pub reads: u64,
    pub all: u64,
    pub throttled: u64,
    /// The call kinds that drew 429s, with how many.
    pub throttled_kinds: BTreeMap<String, u64>,
}

pub fn calls_between(
    before: &BTreeMap<(String, String, String), u64>,
    after: &BTreeMap<(String, String, String), u64>,
    provider_type: Option<&str>,
) -> Calls {
    let mut calls = Calls::default();
    for (key, count) in after {
        if provider_type.is_some_and(|wanted| wanted != key.0) {
            continue;
        }
        let delta = count - before.get(key).copied().unwrap_or(0);
        match key.2.as_str() {
            "latency" => {
                calls.all += delta;
                if key.1 == "read" {
                    calls.reads += delta;
                }
            }
            "rate_limit" if delta > 0 => {
                calls.throttled += delta;
                *calls.throttled_kinds.entry(key.1.clone()).or_default() += delta;
            }
            _ => {}
        }
    }
    calls
}

/// One run of the binary.
pub struct Run {
    pub wall: Duration,
    pub cpu: Duration,
    pub max_rss_kib: u64,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `reimage ARGS` in `dir` under `/usr/bin/time`; `ok` lists the exit codes expected.
///
/// Each run first lets a second pass: a provider counts calls per account, not per process,
/// so the calls of the run before would still count against this one's first second.
pub fn run(dir: &Path, args: &[&str], env: &[(&str, &str)], ok: &[i32]) -> Run {
    std::thread::sleep(Duration::from_millis(1100));
    let started = Instant::now();
    let output = Command::new("/usr/bin/time")
        .arg("-f")
        .arg("bench: maxrss_kb=%M user=%U sys=%S")
        .arg(binary())
        .args(args)
        .current_dir(dir)
        .envs(super::fixtures::ENV)
        .envs(env.iter().copied())
        .env("NO_COLOR", "1")
        .output()
        .expect("run reimage under /usr/bin/time");
    let wall = started.elapsed();
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    let code = output.status.code();
    assert!(
        code.is_some_and(|code| ok.contains(&code)),
        "reimage {args:?} ended with {code:?}: {}",
        stderr.lines().rev().take(30).collect::<Vec<_>>().join("\n")
    );
    let line = stderr
        .lines()
        .rev()
        .find(|line| line.starts_with("bench: "))
        .unwrap_or_default();
    let field = |name: &str| {
        line.split_whitespace()
            .find_map(|word| word.strip_prefix(name))
            .and_then(|value| value.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    Run {
        wall,
        cpu: Duration::from_secs_f64(field("user=") + field("sys=")),
        max_rss_kib: field("maxrss_kb=") as u64,
        stdout: String::from_utf8_lossy(&output.stdout).to_string(),
        stderr,
    }
}

/// A fresh folder for one run (its own state), with the manifest written.
pub fn workdir(root: &Path, name: &str, manifest: &str) -> PathBuf {
    let dir = root.join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("make a folder");
    std::fs::write(dir.join("reimage.yaml"), manifest).expect("write the manifest");
    dir
}

pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}
