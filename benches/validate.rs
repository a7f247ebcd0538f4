//! Big inputs for `reimage validate` and `plan` (`cargo bench --bench validate`): the shapes
//! that were once superlinear, each at two sizes, so the ratio shows how time and memory grow
//! (linear: about 2× for 2× the input). Timings are printed, never asserted; see BENCHMARKS.md.
//!
//! 1. 200,000 keys that are all errors (unknown provider options in `defaults`), rendered as
//!    text and as JSON.
//! 2. 200,000 unknown top-level keys (schema errors).
//! 3. 100,000 servers, each in its own rollout group (200,000 keys in all), valid.
//! 4. 100,000 servers with a hostname the provider refuses (100,000 diagnostics).
//! 5. `plan` of 20,000 servers whose ids the emulator does not know: it ends with their list.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_reimage"))
}

const PROVIDER: &str = "providers:\n  zl:\n    type: zenlayer-bmc\n    endpoint: ENDPOINT\n    credentials:\n      access_key_id: {env: BENCH_KEY_ID}\n      access_key_password: {env: BENCH_KEY_PASSWORD}\n";

fn head(endpoint: &str) -> String {
    format!("version: 1\n{}", PROVIDER.replace("ENDPOINT", endpoint))
}

fn unknown_options(keys: usize) -> String {
    let mut text = head("https://127.0.0.1:1");
    text.push_str("defaults:\n  os: {image: img}\n  access: {ssh_key_id: k}\n  options:\n");
    for key in 0..keys {
        text.push_str(&format!("    k{key}: {key}\n"));
    }
    text.push_str("servers:\n  - {name: a, id: '1'}\n");
    text
}

fn unknown_top_level(keys: usize) -> String {
    let mut text = head("https://127.0.0.1:1");
    for key in 0..keys {
        text.push_str(&format!("x{key}: {key}\n"));
    }
    text
}

fn grouped_servers(servers: usize) -> String {
    let mut text = head("https://127.0.0.1:1");
    text.push_str("policy:\n  groups:\n");
    for index in 0..servers {
        text.push_str(&format!("    g{index}: {{rollout: {{canary: 0}}}}\n"));
    }
    text.push_str("defaults:\n  os: {image: img}\n  access: {ssh_key_id: k}\nservers:\n");
    for index in 0..servers {
        text.push_str(&format!(
            "  - {{name: s{index}, id: 'id{index}', group: g{index}}}\n"
        ));
    }
    text
}

fn bad_hostnames(servers: usize) -> String {
    let mut text = head("https://127.0.0.1:1");
    text.push_str("defaults:\n  os: {image: img}\n  access: {ssh_key_id: k}\nservers:\n");
    for index in 0..servers {
        text.push_str(&format!(
            "  - {{name: s{index}, id: 'id{index}', hostname: bad_{index}}}\n"
        ));
    }
    text
}

fn unknown_ids(endpoint: &str, servers: usize) -> String {
    let mut text = head(endpoint);
    text.push_str("defaults:\n  os: {image: img-new}\n  access: {ssh_key_id: k}\nservers:\n");
    for index in 0..servers {
        text.push_str(&format!("  - {{name: s{index}, id: 'unknown-{index}'}}\n"));
    }
    text
}

/// Runs reimage on `manifest` in `dir`; returns wall time, peak RSS (KiB) and stderr.
fn run(dir: &Path, manifest: &str, args: &[&str]) -> (Duration, u64, String) {
    std::fs::write(dir.join("reimage.yaml"), manifest).unwrap();
    let _ = std::fs::remove_dir_all(dir.join(".reimage"));
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
        .stdout(Stdio::null())
        .output()
        .unwrap();
    let elapsed = started.elapsed();
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    let rss = stderr
        .lines()
        .filter_map(|line| line.strip_prefix("maxrss_kb="))
        .next_back()
        .and_then(|kb| kb.trim().parse().ok())
        .unwrap_or(0);
    (elapsed, rss, stderr)
}

struct Emulator(std::process::Child, String);

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn emulator(dir: &Path) -> Emulator {
    let inventory = "install_seconds: 1\nzenlayer:\n  credentials:\n    - {access_key_id: ZLAKBENCH, access_key_password: BenchPassword0001}\n  images:\n    - {id: img-new, name: New}\n  servers:\n    - {id: \"1\", name: s1, image: img-new}\n";
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
    Emulator(child, endpoint)
}

fn report(what: &str, small: usize, large: usize, make: &dyn Fn(usize) -> String, args: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let (small_time, small_rss, _) = run(dir.path(), &make(small), args);
    let (large_time, large_rss, stderr) = run(dir.path(), &make(large), args);
    println!(
        "{what}\n  {small:>7}: {:>8.2} s, {:>7} KiB peak\n  {large:>7}: {:>8.2} s, {:>7} KiB peak\n  \
         {:.1}x input -> {:.1}x time, {:.1}x memory",
        small_time.as_secs_f64(),
        small_rss,
        large_time.as_secs_f64(),
        large_rss,
        large as f64 / small as f64,
        large_time.as_secs_f64() / small_time.as_secs_f64().max(1e-9),
        large_rss as f64 / small_rss.max(1) as f64,
    );
    let last = stderr
        .lines()
        .rev()
        .find(|line| !line.starts_with("maxrss"));
    println!("  last line: {}\n", last.unwrap_or(""));
}

fn main() {
    println!("reimage validate benchmarks (one run; compare ratios, not absolute times)\n");
    report(
        "unknown provider options in defaults (text report)",
        100_000,
        200_000,
        &unknown_options,
        &["validate"],
    );
    report(
        "unknown provider options in defaults (--json)",
        100_000,
        200_000,
        &unknown_options,
        &["validate", "--json"],
    );
    report(
        "unknown top-level keys",
        100_000,
        200_000,
        &unknown_top_level,
        &["validate"],
    );
    report(
        "servers, each in its own rollout group (valid)",
        50_000,
        100_000,
        &grouped_servers,
        &["validate"],
    );
    report(
        "servers with a refused hostname",
        50_000,
        100_000,
        &bad_hostnames,
        &["validate"],
    );
    let dir = tempfile::tempdir().unwrap();
    let emulator = emulator(dir.path());
    let endpoint = emulator.1.clone();
    report(
        "plan of servers whose ids the provider does not know",
        10_000,
        20_000,
        &|servers| unknown_ids(&endpoint, servers),
        &["plan"],
    );
}
