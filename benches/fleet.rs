//! Fleet-scale benchmarks (`cargo bench --bench fleet`). Each figure is a ratio measured in one
//! run, so the noise of a shared machine cancels out; see BENCHMARKS.md.
//!
//! 1. The pure diff and rendering for 1,000 and 10,000 servers (per-server cost, and how it
//!    scales: the ratio should stay near 10).
//! 2. `reimage plan` of 200 and 2,000 servers against the emulator (reads batched 100 ids per
//!    call): wall time and peak memory, and how they scale.
//! 3. `reimage apply` of 300 servers whose installs take 1 s: `max_parallel` 50 against 10
//!    (the ratio of wall times shows the engine keeps the window full).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reimage::manifest::{DesiredAccess, DesiredServer, ProviderType};
use reimage::plan::diff::{DiffInput, diff};
use reimage::plan::inputs::input_digests;
use reimage::provider::{Observation, Observed, ReinstallReview, ServerStatus};
use reimage::state::{ServerRecord, State};

fn desired(index: usize) -> DesiredServer {
    DesiredServer {
        group: None,
        address: None,
        health: Default::default(),
        name: format!("server-{index:05}"),
        provider: "zl".into(),
        provider_type: ProviderType::ZenlayerBmc,
        cloud_id: format!("{}", 100_000 + index),
        image: if index.is_multiple_of(10) {
            "img-new".into()
        } else {
            "img-old".into()
        },
        revision: 0,
        access: DesiredAccess::SshKeyId { id: "key".into() },
        hostname: Some(format!("server-{index:05}.example.net")),
        user_data: Some("#cloud-config\npackages: [nginx]\n".into()),
        protect: false,
        options: serde_json::Map::new(),
    }
}

fn bench_diff(count: usize) -> Duration {
    let state = State::new();
    let key = state.digest_key_bytes();
    let servers: Vec<DesiredServer> = (0..count).map(desired).collect();
    let observed: BTreeMap<String, Observation> = servers
        .iter()
        .map(|server| {
            (
                server.name.clone(),
                Observation::Found(Observed {
                    cloud_id: server.cloud_id.clone(),
                    status: ServerStatus::Running,
                    raw_status: "RUNNING".into(),
                    image: Some("img-old".into()),
                    image_name: None,
                    hostname: server.hostname.clone(),
                    address: None,
                    extra: BTreeMap::new(),
                }),
            )
        })
        .collect();
    let digests: BTreeMap<String, BTreeMap<String, String>> = servers
        .iter()
        .map(|server| (server.name.clone(), input_digests(&key, server, None)))
        .collect();
    let recorded: BTreeMap<String, ServerRecord> = BTreeMap::new();
    let replace = BTreeSet::new();
    let started = Instant::now();
    let planned = diff(&DiffInput {
        servers: &servers,
        observed: &observed,
        digests: &digests,
        recorded: &recorded,
        replace: &replace,
        reports_image: &|_| true,
        reinstalls_failed_install: &|_| false,
        review: &|_, _| ReinstallReview::default(),
        forget_removed: true,
        in_flight: &BTreeMap::new(),
    });
    let rendered: usize = planned
        .iter()
        .map(|server| {
            serde_json::to_string(server)
                .map(|text| text.len())
                .unwrap_or(0)
        })
        .sum();
    let elapsed = started.elapsed();
    assert!(rendered > 0 && planned.len() == count);
    elapsed
}

fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_reimage"))
}

struct Emulator {
    child: std::process::Child,
    endpoint: String,
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn emulator(dir: &Path, servers: usize, install_seconds: f64) -> Emulator {
    let mut inventory = format!(
        "install_seconds: {install_seconds}\nzenlayer:\n  credentials:\n    - {{access_key_id: ZLAKBENCH, access_key_password: BenchPassword0001}}\n  images:\n    - {{id: img-old, name: Old}}\n    - {{id: img-new, name: New}}\n  servers:\n"
    );
    for id in 1..=servers {
        inventory.push_str(&format!(
            "    - {{id: \"{id}\", name: s{id}, image: img-old}}\n"
        ));
    }
    std::fs::write(dir.join("inventory.yaml"), inventory).unwrap();
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
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let endpoint = loop {
        let line = lines.next().unwrap().unwrap();
        if line.trim_start().starts_with("zenlayer-bmc") {
            break line.split_whitespace().last().unwrap().to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Emulator { child, endpoint }
}

fn manifest(endpoint: &str, servers: usize, max_parallel: usize) -> String {
    let mut text = format!(
        "version: 1\npolicy:\n  rollout: {{canary: 0, max_parallel: {max_parallel}, max_failures: 1}}\nproviders:\n  zl:\n    type: zenlayer-bmc\n    endpoint: {endpoint}\n    poll_interval: 0.5\n    credentials:\n      access_key_id: {{env: BENCH_KEY_ID}}\n      access_key_password: {{env: BENCH_KEY_PASSWORD}}\n    rate_limits:\n      read: {{per_minute: 100000, concurrency: 8}}\n      status: {{per_minute: 100000, concurrency: 8}}\n      reinstall: {{per_minute: 100000, concurrency: 100}}\ndefaults:\n  provider: zl\n  os: {{image: img-new}}\n  access: {{ssh_key_id: key}}\nservers:\n"
    );
    for id in 1..=servers {
        text.push_str(&format!("  - {{name: s{id:05}, id: \"{id}\"}}\n"));
    }
    text
}

fn run(dir: &Path, args: &[&str]) -> (Duration, String) {
    let started = Instant::now();
    let output = Command::new("/usr/bin/time")
        .arg("-f")
        .arg("maxrss_kb=%M")
        .arg(binary())
        .args(args)
        .current_dir(dir)
        .env("BENCH_KEY_ID", "ZLAKBENCH")
        .env("BENCH_KEY_PASSWORD", "BenchPassword0001")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let elapsed = started.elapsed();
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    assert!(
        output.status.success() || output.status.code() == Some(2),
        "{args:?}: {stderr}"
    );
    let rss = stderr
        .lines()
        .filter_map(|line| line.strip_prefix("maxrss_kb="))
        .next_back()
        .unwrap_or("?")
        .to_string();
    (elapsed, rss)
}

fn main() {
    // `cargo bench` passes `--bench`; any other argument filters nothing here.
    println!("reimage fleet benchmarks (one run; compare ratios, not absolute times)\n");

    let small = bench_diff(1_000);
    let large = bench_diff(10_000);
    println!(
        "diff+json   1,000 servers: {:>8.2} ms ({:.1} µs/server)",
        small.as_secs_f64() * 1e3,
        small.as_secs_f64() * 1e6 / 1_000.0
    );
    println!(
        "diff+json  10,000 servers: {:>8.2} ms ({:.1} µs/server)",
        large.as_secs_f64() * 1e3,
        large.as_secs_f64() * 1e6 / 10_000.0
    );
    println!(
        "  scaling 10x servers -> {:.1}x time (linear is 10x)\n",
        large.as_secs_f64() / small.as_secs_f64()
    );

    let dir = tempfile::tempdir().unwrap();
    let emulator_2000 = emulator(dir.path(), 2_000, 1.0);
    std::fs::write(
        dir.path().join("reimage.yaml"),
        manifest(&emulator_2000.endpoint, 2_000, 10),
    )
    .unwrap();
    let (plan_2000, rss_2000) = run(dir.path(), &["plan", "--detailed-exitcode"]);
    std::fs::write(
        dir.path().join("reimage.yaml"),
        manifest(&emulator_2000.endpoint, 200, 10),
    )
    .unwrap();
    let (plan_200, rss_200) = run(dir.path(), &["plan", "--detailed-exitcode"]);
    println!(
        "plan   200 servers (2 reads of 100 ids):   {:>7.2} s, max RSS {rss_200} KiB",
        plan_200.as_secs_f64()
    );
    println!(
        "plan 2,000 servers (20 reads of 100 ids):  {:>7.2} s, max RSS {rss_2000} KiB",
        plan_2000.as_secs_f64()
    );
    println!(
        "  scaling 10x servers -> {:.1}x time\n",
        plan_2000.as_secs_f64() / plan_200.as_secs_f64()
    );
    drop(emulator_2000);

    let mut walls = Vec::new();
    for max_parallel in [10, 50] {
        let dir = tempfile::tempdir().unwrap();
        let emulator = emulator(dir.path(), 300, 1.0);
        std::fs::write(
            dir.path().join("reimage.yaml"),
            manifest(&emulator.endpoint, 300, max_parallel),
        )
        .unwrap();
        let (wall, rss) = run(dir.path(), &["apply", "--auto-approve"]);
        println!(
            "apply 300 servers, 1 s installs, max_parallel {max_parallel:>3}: {:>7.2} s, max RSS {rss} KiB",
            wall.as_secs_f64()
        );
        walls.push(wall);
    }
    println!(
        "  max_parallel 50 vs 10 -> {:.1}x faster (ideal 5x)",
        walls[0].as_secs_f64() / walls[1].as_secs_f64()
    );
}
