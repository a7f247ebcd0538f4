//! `reimage emulator serve --faults FILE`: faults armed at start, and a bad file refused before
//! the emulator announces its address.

mod common;

use std::time::Duration;

use common::{Emulator, inventory, reimage, server, stderr_of};

#[test]
fn faults_from_a_file_are_armed_at_start_and_counts_list_every_server() {
    let dir = tempfile::tempdir().unwrap();
    let text = inventory(&[server("1", "img-old"), server("2", "img-old")], 0.5);
    let faults = serde_json::json!({"seed": 5, "rules": [
        {"provider": "zenlayer-bmc", "call": "reinstall", "fault": "drop_after", "ids": ["2"], "count": 1},
    ]});
    let emulator = Emulator::start_with_faults(dir.path(), &text, faults);
    let state = emulator.state();
    assert_eq!(state["fault_seed"], 5);
    assert_eq!(state["fault_rules"][0]["fault"], "drop_after");
    assert_eq!(state["fault_rules"][0]["ids"], serde_json::json!(["2"]));
    assert_eq!(emulator.counts("zenlayer-bmc", "1"), (0, 0, 0, 0));
    assert_eq!(emulator.counts("zenlayer-bmc", "2"), (0, 0, 0, 0));
    // More rules are added at runtime, or all replaced with `clear`.
    let armed = emulator.arm(serde_json::json!({"rules": [
        {"provider": "*", "call": "read", "fault": "latency", "seconds": 0.1},
    ]}));
    assert_eq!(armed["rules"].as_array().map(Vec::len), Some(2));
    let armed = emulator.arm(serde_json::json!({"clear": true}));
    assert_eq!(armed["rules"], serde_json::json!([]));
}

#[test]
fn a_bad_faults_file_stops_the_emulator_naming_the_file_and_the_field() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("inventory.yaml"),
        inventory(&[server("1", "img-old")], 0.5),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("faults.json"),
        r#"{"rules": [{"provider": "zenlayer-bmc", "call": "reinstall", "fault": "drop_after", "ids": ["9"]}]}"#,
    )
    .unwrap();
    let output = reimage(dir.path())
        .args(["emulator", "serve", "--listen", "127.0.0.1:0"])
        .args(["--inventory", "inventory.yaml", "--data-dir", "data"])
        .args(["--faults", "faults.json"])
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = stderr_of(&output);
    assert!(stderr.contains("faults.json"), "{stderr}");
    assert!(
        stderr.contains("rules[0].ids: `9` is not a server of zenlayer-bmc"),
        "{stderr}"
    );
}
