//! Fleet-scale benchmarks (`cargo bench --bench fleet`, issue 12). They drive the real binary
//! against real `reimage emulator serve` processes whose APIs all answer after a latency and
//! refuse (429) beyond a rate in any one-second window, as a provider's own limiter would.
//! Every figure is printed as a ratio to its bound, measured in one run, so the noise of a
//! shared machine cancels out; see BENCHMARKS.md for what each row means.
//!
//! 1. `plan` of 10,000 servers per provider type (EDIS: 400, one read per server) with rate
//!    limits equal to the API's: wall time against ceil(N / ids per call) calls at that rate,
//!    and the 429s drawn.
//! 2. A mixed plan (three providers of 2,000 servers and 100 EDIS servers) against the slowest
//!    of them alone.
//! 3. Peak memory of `plan` and plan-file size at 10,000 and 50,000 servers; `validate` time.
//! 4. JD Cloud at 10,000 and 50,000 servers: read calls per server and CPU time scaling.
//! 5. `apply` of 500 servers (10 s installs, `max_parallel` 100) against the wave bound, status
//!    calls per poll interval, time queued and installing; the plan's own pace estimate.

#[path = "fleet/fixtures.rs"]
mod fixtures;
#[path = "fleet/support.rs"]
mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use fixtures::{Kind, Settings, Sizes};
use support::{calls_between, emulator, mib, run, workdir};

/// Every API's own limit in the emulator, and the latency of every call.
const API_PER_SECOND: u32 = 20;
const LATENCY: f64 = 0.05;

fn api_rate() -> Settings {
    Settings {
        per_minute: Some(f64::from(API_PER_SECOND) * 60.0),
        // 5% of an install, as real defaults (15-30 s) are of real installs (20-30 minutes).
        poll_interval: 0.5,
        install_estimate: 10.0,
        max_parallel: 100,
    }
}

/// `REIMAGE_BENCH_SCALE` (default 1) scales every fleet, for a quick try of the harness.
fn scaled(count: usize) -> usize {
    let scale = std::env::var("REIMAGE_BENCH_SCALE")
        .ok()
        .and_then(|text| text.parse::<f64>().ok())
        .filter(|scale| *scale > 0.0)
        .unwrap_or(1.0);
    ((count as f64 * scale).round() as usize).max(1)
}

fn sizes(entries: &[(Kind, usize)]) -> Sizes {
    entries
        .iter()
        .map(|(kind, count)| (*kind, scaled(*count)))
        .collect()
}

/// Plans of these fleets reinstall (exit 2 with `-detailed-exitcode`); EDIS, which cannot
/// report the OS, blocks its never-adopted servers (exit 1) once it has read them all.
fn plan_ok(kinds: &Sizes) -> &'static [i32] {
    if kinds.contains_key(&Kind::Edis) {
        &[1]
    } else {
        &[2]
    }
}

fn check_blocked_only_by_edis(kinds: &Sizes, run: &support::Run) {
    if kinds.contains_key(&Kind::Edis) {
        assert!(
            run.stderr.contains("unknown current OS"),
            "the plan failed for another reason: {}",
            run.stderr
        );
    }
}

/// The least time `calls` calls take at the API's rate.
fn read_bound(calls: usize) -> Duration {
    Duration::from_secs_f64(calls as f64 / f64::from(API_PER_SECOND))
}

fn plan_args() -> Vec<&'static str> {
    vec!["plan", "-out", "plan.json", "-detailed-exitcode"]
}

fn main() {
    println!("reimage fleet benchmarks: one run, ratios to bounds (see BENCHMARKS.md)\n");
    let temporary = tempfile::tempdir().expect("a temporary folder");
    // `REIMAGE_BENCH_DIR=PATH` keeps every run's folder (manifests, plans, states) there.
    let kept = std::env::var_os("REIMAGE_BENCH_DIR").map(std::path::PathBuf::from);
    let root = kept.as_deref().unwrap_or(temporary.path());
    // `REIMAGE_BENCH_ONLY=plans|scale|apply` runs one part.
    let only = std::env::var("REIMAGE_BENCH_ONLY").unwrap_or_default();
    let wanted = |part: &str| only.is_empty() || only == part;
    if wanted("plans") {
        plans_per_provider(root);
    }
    if wanted("scale") {
        memory_and_scaling(root);
    }
    if wanted("apply") {
        apply_rollout(root);
    }
}

/// Sections 1 to 3 (10,000 servers): one emulator for all of them.
fn plans_per_provider(root: &Path) {
    let world = sizes(&[
        (Kind::Zenlayer, 10_000),
        (Kind::Ecs, 10_000),
        (Kind::Clouddc, 10_000),
        (Kind::Jd, 10_000),
        (Kind::Edis, 400),
    ]);
    let dir = root.join("world-10k");
    std::fs::create_dir_all(&dir).expect("a folder");
    let emulator = emulator(
        &dir,
        &fixtures::inventory(&world, 10.0),
        LATENCY,
        API_PER_SECOND,
    );
    println!("1. plan, limits equal to the API's rate ({API_PER_SECOND}/s, {LATENCY} s latency)");
    for kind in Kind::ALL {
        let count = world[&kind];
        let fleet: Sizes = [(kind, count)].into_iter().collect();
        let manifest = fixtures::manifest(&emulator.endpoints, &fleet, &api_rate());
        let dir = workdir(root, &format!("plan-{}", kind.name()), &manifest);
        let before = emulator.fired();
        let result = run(&dir, &plan_args(), &[], plan_ok(&fleet));
        check_blocked_only_by_edis(&fleet, &result);
        let calls = calls_between(&before, &emulator.fired(), Some(kind.provider_type()));
        let bound = read_bound(count.div_ceil(kind.ids_per_read()));
        println!(
            "   {:<20} {count:>6} servers: {:>6.2} s, bound {:>5.2} s -> {:.2}x; {} calls ({:.3} \
             per server), {} x 429",
            kind.provider_type(),
            run_secs(&result),
            bound.as_secs_f64(),
            result.wall.as_secs_f64() / bound.as_secs_f64(),
            calls.all,
            calls.all as f64 / count as f64,
            calls.throttled
        );
    }
    println!("\n2. mixed plan: every provider at once");
    let mixed = sizes(&[
        (Kind::Zenlayer, 2_000),
        (Kind::Ecs, 2_000),
        (Kind::Jd, 2_000),
        (Kind::Edis, 100),
    ]);
    let mut alone = BTreeMap::new();
    for (kind, count) in &mixed {
        let fleet: Sizes = [(*kind, *count)].into_iter().collect();
        let manifest = fixtures::manifest(&emulator.endpoints, &fleet, &api_rate());
        let dir = workdir(root, &format!("alone-{}", kind.name()), &manifest);
        let result = run(&dir, &plan_args(), &[], plan_ok(&fleet));
        check_blocked_only_by_edis(&fleet, &result);
        println!(
            "   {:<20} {count:>6} servers alone: {:>6.2} s",
            kind.provider_type(),
            run_secs(&result)
        );
        alone.insert(*kind, result.wall);
    }
    let manifest = fixtures::manifest(&emulator.endpoints, &mixed, &api_rate());
    let dir = workdir(root, "mixed", &manifest);
    let before = emulator.fired();
    let result = run(&dir, &plan_args(), &[], plan_ok(&mixed));
    check_blocked_only_by_edis(&mixed, &result);
    let calls = calls_between(&before, &emulator.fired(), None);
    let slowest = alone.values().max().copied().unwrap_or_default();
    let sum: Duration = alone.values().sum();
    println!(
        "   all four together: {:.2} s -> {:.2}x the slowest alone ({:.2} s; one after another \
         would be {:.2} s), {} x 429",
        run_secs(&result),
        result.wall.as_secs_f64() / slowest.as_secs_f64(),
        slowest.as_secs_f64(),
        sum.as_secs_f64(),
        calls.throttled
    );

    println!("\n3. memory and plan files (Zenlayer, shared user data)");
    let zenlayer = sizes(&[(Kind::Zenlayer, 10_000)]);
    let servers = zenlayer[&Kind::Zenlayer];
    let manifest = fixtures::manifest(&emulator.endpoints, &zenlayer, &api_rate());
    let dir = workdir(root, "memory-10k", &manifest);
    let plan = run(&dir, &plan_args(), &[], &[2]);
    report_memory(&dir, &plan, servers, 64.0);
    let validate = run(&dir, &["validate"], &[], &[0]);
    println!(
        "   validate {servers} servers: {:.2} s (goal < 0.5 s), peak RSS {:.1} MiB",
        run_secs(&validate),
        mib(validate.max_rss_kib)
    );
}

fn run_secs(run: &support::Run) -> f64 {
    run.wall.as_secs_f64()
}

fn report_memory(dir: &Path, plan: &support::Run, servers: usize, goal_mib: f64) {
    let bytes = std::fs::metadata(dir.join("plan.json"))
        .map(|metadata| metadata.len())
        .unwrap_or(0);
    println!(
        "   plan {servers:>6} servers: peak RSS {:>6.1} MiB (goal <= {goal_mib} MiB, {:.2}x), \
         {:>5.0} bytes/server in RSS; plan file {:.0} bytes/server (goal <= 1024, {:.2}x)",
        mib(plan.max_rss_kib),
        mib(plan.max_rss_kib) / goal_mib,
        plan.max_rss_kib as f64 * 1024.0 / servers as f64,
        bytes as f64 / servers as f64,
        bytes as f64 / servers as f64 / 1024.0
    );
}

/// Sections 3 (50,000 servers) and 4: a bigger world.
fn memory_and_scaling(root: &Path) {
    let world = sizes(&[(Kind::Zenlayer, 50_000), (Kind::Jd, 50_000)]);
    let dir = root.join("world-50k");
    std::fs::create_dir_all(&dir).expect("a folder");
    let emulator = emulator(
        &dir,
        &fixtures::inventory(&world, 10.0),
        LATENCY,
        API_PER_SECOND,
    );
    let zenlayer: Sizes = [(Kind::Zenlayer, world[&Kind::Zenlayer])]
        .into_iter()
        .collect();
    let manifest = fixtures::manifest(&emulator.endpoints, &zenlayer, &api_rate());
    let dir = workdir(root, "memory-50k", &manifest);
    let plan = run(&dir, &plan_args(), &[], &[2]);
    report_memory(&dir, &plan, zenlayer[&Kind::Zenlayer], 256.0);

    println!("\n4. JD Cloud: each server read once, CPU time linear in the fleet");
    let mut cpu = Vec::new();
    for size in [10_000, 50_000] {
        let fleet = sizes(&[(Kind::Jd, size)]);
        let count = fleet[&Kind::Jd];
        let manifest = fixtures::manifest(&emulator.endpoints, &fleet, &api_rate());
        let dir = workdir(root, &format!("jd-{count}"), &manifest);
        let before = emulator.fired();
        let result = run(&dir, &plan_args(), &[], &[2]);
        let calls = calls_between(&before, &emulator.fired(), Some("jdcloud-cps"));
        println!(
            "   {count:>6} servers: {:>6.2} s wall, {:>5.2} s CPU; {} read calls = {:.2}x \
             ceil(N/100) (the catalogue read is one more), {} x 429",
            run_secs(&result),
            result.cpu.as_secs_f64(),
            calls.reads,
            calls.reads as f64 / count.div_ceil(100) as f64,
            calls.throttled
        );
        cpu.push(result.cpu.as_secs_f64());
    }
    println!(
        "   5x the servers -> {:.1}x the CPU (linear: 5x; the issue measured 15.8x)",
        cpu[1] / cpu[0].max(1e-9)
    );
}

/// Section 5.
fn apply_rollout(root: &Path) {
    let fleet = sizes(&[(Kind::Zenlayer, 500)]);
    let servers = fleet[&Kind::Zenlayer];
    println!(
        "\n5. apply: {servers} servers, 10 s installs, max_parallel 100, poll every {} s",
        api_rate().poll_interval
    );
    let dir = root.join("world-apply");
    std::fs::create_dir_all(&dir).expect("a folder");
    let emulator = emulator(
        &dir,
        &fixtures::inventory(&fleet, 10.0),
        LATENCY,
        API_PER_SECOND,
    );
    let settings = api_rate();

    // What the plan says of its pace, at the API's rate and at the built-in defaults.
    for (label, settings) in [
        ("limits = API rate", settings.clone()),
        (
            "built-in defaults",
            Settings {
                per_minute: None,
                ..settings.clone()
            },
        ),
    ] {
        let manifest = fixtures::manifest(&emulator.endpoints, &fleet, &settings);
        let dir = workdir(root, &format!("pace-{}", label.len()), &manifest);
        let plan = run(&dir, &["plan", "--json"], &[], &[0]);
        let json: serde_json::Value = serde_json::from_str(&plan.stdout).expect("the plan as JSON");
        let pace = &json["pace"];
        println!(
            "   plan's pace ({label}): about {:.0} s, up to {} in flight, bound by {}",
            pace["estimated_s"].as_f64().unwrap_or(0.0),
            pace["waves"][0]["in_flight"],
            pace["waves"][0]["bound"]["kind"].as_str().unwrap_or("?")
        );
    }

    let manifest = fixtures::manifest(&emulator.endpoints, &fleet, &settings);
    let dir = workdir(root, "apply", &manifest);
    let plan = run(&dir, &["plan", "--json"], &[], &[0]);
    let estimate = serde_json::from_str::<serde_json::Value>(&plan.stdout)
        .expect("the plan as JSON")["pace"]["estimated_s"]
        .as_f64()
        .expect("the plan's pace");
    let before = emulator.fired();
    let apply = run(
        &dir,
        &["apply", "--auto-approve", "--json"],
        &[("REIMAGE_LOG", "reimage::provider::http=debug")],
        &[0],
    );
    let calls = calls_between(&before, &emulator.fired(), Some("zenlayer-bmc"));
    let log = std::env::temp_dir().join("reimage-bench-apply.log");
    let _ = std::fs::write(&log, &apply.stderr);
    let bound = wave_bound(
        servers,
        settings.max_parallel,
        API_PER_SECOND as usize,
        settings.install_estimate,
    );
    let wall = apply.wall.as_secs_f64();
    let status_calls = apply
        .stderr
        .lines()
        .filter(|line| line.contains("sending") && line.contains("family=\"status\""))
        .count();
    let intervals = wall / settings.poll_interval;
    // Servers in flight at once, in batches of one status call (100 ids).
    let batches = settings.max_parallel.min(servers).div_ceil(100) as f64;
    let (mut queued, mut installing, mut done) = (0u64, 0u64, 0u64);
    for line in apply.stdout.lines() {
        let Ok(event) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if event["event"] == "done" {
            done += 1;
            queued += event["queued_s"].as_u64().unwrap_or(0);
            installing += event["installing_s"].as_u64().unwrap_or(0);
        }
    }
    println!(
        "   apply: {wall:.1} s, wave bound {bound:.1} s -> {:.2}x; the plan estimated {estimate:.0} s \
         ({:.2}x the real time)",
        wall / bound,
        estimate / wall
    );
    assert_eq!(done as usize, servers, "every server is reinstalled");
    println!(
        "   status calls: {status_calls} in {intervals:.0} poll intervals = {:.2} per batch of \
         100 per interval; {} x 429 from the emulator {:?}",
        status_calls as f64 / intervals / batches,
        calls.throttled,
        calls.throttled_kinds
    );
    println!("   (the apply's log: {})", log.display());
    println!(
        "   {done} done; on average {:.1} s installing and {:.1} s queued before the install",
        installing as f64 / done.max(1) as f64,
        queued as f64 / done.max(1) as f64
    );
}

/// The least time `servers` installs of `install` seconds take with `places` at once when at
/// most `per_second` calls go out in any one second: call `i` goes no earlier than call
/// `i - per_second` plus a second, nor before call `i - places` has finished.
fn wave_bound(servers: usize, places: usize, per_second: usize, install: f64) -> f64 {
    let mut starts: Vec<f64> = Vec::with_capacity(servers);
    for index in 0..servers {
        let mut start = 0.0f64;
        if index >= per_second {
            start = start.max(starts[index - per_second] + 1.0);
        }
        if index >= places {
            start = start.max(starts[index - places] + install);
        }
        starts.push(start);
    }
    starts.iter().copied().fold(0.0, f64::max) + install
}
