//! End to end: reimage at fleet pace against a real emulator process whose APIs limit calls per
//! second as providers do. What is checked is what the calls were and what reimage says, never
//! how long anything took (speed is measured in `benches/fleet.rs`).

mod common;

use common::{Emulator, reimage};
use serde_json::{Value, json};

/// A Zenlayer fleet of `count` servers on `img-old`, installs taking `install_seconds`.
fn zenlayer_inventory(count: usize, install_seconds: f64) -> String {
    let servers: Vec<common::InventoryServer> = (1..=count)
        .map(|index| common::server(&format!("{}", 500_000 + index), "img-old"))
        .collect();
    common::inventory(&servers, install_seconds)
}

/// A manifest for those servers, all wanting `img-new`, with `rate_limits` YAML for `zl`.
fn zenlayer_manifest(emulator: &Emulator, count: usize, rate_limits: &str, extra: &str) -> String {
    let mut text = format!(
        "version: 1\n{extra}providers:\n  zl:\n    type: zenlayer-bmc\n    endpoint: {}\n    \
         poll_interval: 0.2\n    install_estimate: 1\n    credentials:\n      access_key_id: \
         {{env: TEST_ZL_KEY_ID}}\n      access_key_password: {{env: TEST_ZL_KEY_PASSWORD}}\n    \
         rate_limits:\n{rate_limits}defaults:\n  provider: zl\n  os: {{image: img-new}}\n  \
         access: {{ssh_key_id: key-test}}\nservers:\n",
        emulator.zenlayer
    );
    for index in 1..=count {
        text.push_str(&format!(
            "  - {{name: s{index:05}, id: \"{}\"}}\n",
            500_000 + index
        ));
    }
    text
}

/// How often a fault fired: `faults_fired[provider][call][fault]`.
fn fired(emulator: &Emulator, provider: &str, call: &str, fault: &str) -> u64 {
    emulator.state()["faults_fired"][provider][call][fault]
        .as_u64()
        .unwrap_or(0)
}

/// A read limit equal to the API's own (a sliding window of 5 calls a second) draws no 429:
/// a call's place in the window is held until a second after its answer, so no second at the
/// API ever holds more. (A token bucket with a burst sends twice the rate in its first second.)
#[test]
fn a_limit_equal_to_the_apis_rate_draws_no_429() {
    let dir = tempfile::tempdir().unwrap();
    let emulator = Emulator::start_with_faults(
        dir.path(),
        &zenlayer_inventory(1_500, 1.0),
        json!({"rules": [
            {"provider": "zenlayer-bmc", "call": "*", "fault": "rate_limit", "per_second": 5},
            {"provider": "zenlayer-bmc", "call": "*", "fault": "latency", "seconds": 0.02},
        ]}),
    );
    std::fs::write(
        dir.path().join("reimage.yaml"),
        zenlayer_manifest(
            &emulator,
            1_500,
            "      read: {per_minute: 300, concurrency: 8}\n",
            "",
        ),
    )
    .unwrap();
    reimage(dir.path())
        .args(["plan", "-detailed-exitcode"])
        .assert()
        .code(2);
    // 1,500 servers: 15 reads of 100 ids, every one answered the first time.
    assert_eq!(fired(&emulator, "zenlayer-bmc", "read", "latency"), 15);
    assert_eq!(
        fired(&emulator, "zenlayer-bmc", "read", "rate_limit"),
        0,
        "{:#}",
        emulator.state()["faults_fired"]
    );
}

/// JD Cloud's plan reads each server once: the OS catalogue check works from the plan's own
/// read instead of describing every server a second time.
#[test]
fn jd_cloud_reads_each_server_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut inventory = format!(
        "install_seconds: 1\njdcloud:\n  credentials:\n    - {{access_key: {}, secret_key: {}}}\n  \
         os:\n    - {{os_type_id: os-old, os_name: Old, device_type: cps.c.normal}}\n    - \
         {{os_type_id: os-new, os_name: New, device_type: cps.c.normal}}\n  servers:\n",
        common::jdcloud::AK,
        common::jdcloud::SK
    );
    let mut manifest = String::from(
        "version: 1\nproviders:\n  jd:\n    type: jdcloud-cps\n    endpoint: ENDPOINT\n    \
         region: cn-east-1\n    credentials:\n      access_key: {env: TEST_JD_AK}\n      \
         secret_key: {env: TEST_JD_SK}\ndefaults:\n  provider: jd\n  os: {image: os-new}\n  \
         access:\n    password: {env: TEST_JD_PASSWORD}\nservers:\n",
    );
    for index in 1..=250 {
        inventory.push_str(&format!(
            "    - {{id: cps-{index:05}, name: n{index}, region: cn-east-1, az: cn-east-1a, \
             status: stopped, os_type_id: os-old, sys_raid_type_id: r-sys-raid1}}\n"
        ));
        manifest.push_str(&format!("  - {{name: j{index:05}, id: cps-{index:05}}}\n"));
    }
    let emulator = Emulator::start_with_faults(
        dir.path(),
        &inventory,
        // Every call meets this rule, so `faults_fired` counts the calls.
        json!({"rules": [{"provider": "jdcloud-cps", "call": "*", "fault": "latency", "seconds": 0}]}),
    );
    std::fs::write(
        dir.path().join("reimage.yaml"),
        manifest.replace("ENDPOINT", &emulator.base),
    )
    .unwrap();
    common::jdcloud::reimage(dir.path())
        .args(["plan", "-detailed-exitcode"])
        .assert()
        .code(2);
    // 250 servers: three describeInstances of at most 100 ids, and one describeOS.
    assert_eq!(fired(&emulator, "jdcloud-cps", "read", "latency"), 3);
    assert_eq!(fired(&emulator, "jdcloud-cps", "other", "latency"), 1);
}

fn events(stdout: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

/// The plan states the pace the reinstall limit allows, and apply tells the time a server
/// queued behind that limit apart from the time its install took.
#[test]
fn the_plan_states_its_pace_and_progress_splits_queued_from_installing() {
    let dir = tempfile::tempdir().unwrap();
    let emulator = Emulator::start(dir.path(), &zenlayer_inventory(3, 1.0));
    std::fs::write(
        dir.path().join("reimage.yaml"),
        zenlayer_manifest(
            &emulator,
            3,
            "      reinstall: {per_minute: 60, concurrency: 8}\n",
            "policy:\n  rollout: {canary: 0, max_parallel: 3}\n",
        ),
    )
    .unwrap();
    let plan = reimage(dir.path())
        .args(["plan", "--json"])
        .assert()
        .success();
    let plan: Value = serde_json::from_slice(&plan.get_output().stdout).unwrap();
    let pace = &plan["pace"];
    assert_eq!(
        pace["providers"]["zl"]["reinstall_per_minute"], 60.0,
        "{pace}"
    );
    // One call a second, installs of 1 s: the rate keeps one install in flight, not three.
    assert_eq!(
        pace["providers"]["zl"]["rate_allows_in_flight"], 1,
        "{pace}"
    );
    assert_eq!(pace["waves"][0]["bound"]["kind"], "rate_limit", "{pace}");
    assert_eq!(pace["waves"][0]["bound"]["provider"], "zl", "{pace}");
    let text = reimage(dir.path()).args(["plan"]).assert().success();
    let text = String::from_utf8_lossy(&text.get_output().stdout).to_string();
    assert!(
        text.contains("bound by `zl`'s reinstall rate limit, not max_parallel (3)"),
        "{text}"
    );

    let apply = reimage(dir.path())
        .args(["apply", "--auto-approve", "--json"])
        .assert()
        .success();
    let done: Vec<Value> = events(&apply.get_output().stdout)
        .into_iter()
        .filter(|event| event["event"] == "done")
        .collect();
    assert_eq!(done.len(), 3, "{done:?}");
    for event in &done {
        assert!(
            event["installing_s"].is_u64() && event["queued_s"].is_u64(),
            "{event}"
        );
    }
    // The third call goes at least two seconds after the first: it queued that long.
    let most_queued = done
        .iter()
        .filter_map(|event| event["queued_s"].as_u64())
        .max()
        .unwrap();
    assert!(most_queued >= 2, "{done:?}");
}

/// A 429 slows the family down, and the progress says to what.
#[test]
fn a_429_slows_calls_down_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let emulator = Emulator::start_with_faults(
        dir.path(),
        &zenlayer_inventory(2, 0.5),
        json!({"rules": [
            {"provider": "zenlayer-bmc", "call": "reinstall", "fault": "throttle_429", "count": 1}
        ]}),
    );
    std::fs::write(
        dir.path().join("reimage.yaml"),
        zenlayer_manifest(
            &emulator,
            2,
            "      reinstall: {per_minute: 600, concurrency: 8}\n",
            "policy:\n  rollout: {canary: 0, max_parallel: 2}\n",
        ),
    )
    .unwrap();
    let apply = reimage(dir.path())
        .args(["apply", "--auto-approve", "--json"])
        .assert()
        .success();
    let events = events(&apply.get_output().stdout);
    let throttled: Vec<&Value> = events
        .iter()
        .filter(|event| event["event"] == "waiting" && event["cause"] == "throttled")
        .collect();
    assert!(
        throttled
            .iter()
            .any(|event| event["family"] == "reinstall" && event["slowed_to_per_minute"] == 300.0),
        "{events:#?}"
    );
    // Throttled before acting: each server was reinstalled exactly once.
    for id in ["500001", "500002"] {
        assert_eq!(emulator.counts("zenlayer-bmc", id).0, 1);
    }
}
