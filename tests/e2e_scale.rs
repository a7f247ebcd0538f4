//! Big inputs must finish, with the answer they call for. No time is asserted (speed lives in
//! `benches/validate.rs`); the generous deadlines only turn a hang into a failure.

mod common;

use std::time::Duration;

use common::*;

const DEADLINE: Duration = Duration::from_secs(20 * 60);

/// 100,000 servers, each in its own rollout group (100,000 more keys under `policy.groups`):
/// valid, and `validate` says so.
#[test]
fn validate_finishes_on_100000_servers_in_100000_groups() {
    let dir = tempfile::tempdir().unwrap();
    let count = 100_000;
    let mut text = String::from(
        "version: 1\nproviders:\n  zl:\n    type: zenlayer-bmc\n    credentials: {access_key_id: {env: TEST_ZL_KEY_ID}, access_key_password: {env: TEST_ZL_KEY_PASSWORD}}\npolicy:\n  groups:\n",
    );
    for index in 0..count {
        text.push_str(&format!("    g{index}: {{rollout: {{canary: 0}}}}\n"));
    }
    text.push_str("defaults:\n  os: {image: img}\n  access: {ssh_key_id: key-1}\nservers:\n");
    for index in 0..count {
        text.push_str(&format!(
            "  - {{name: s{index}, id: 'id{index}', group: g{index}}}\n"
        ));
    }
    std::fs::write(dir.path().join("reimage.yaml"), text).unwrap();
    let output = reimage(dir.path())
        .timeout(DEADLINE)
        .arg("validate")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr_of(&output));
    assert!(
        stdout_of(&output).contains("100000 servers, 1 provider"),
        "{}",
        stdout_of(&output)
    );
}

/// A plan over thousands of ids the provider does not know ends, and its error lists every
/// one of them by name and id.
#[test]
fn a_plan_over_3000_unknown_ids_lists_them() {
    let dir = tempfile::tempdir().unwrap();
    let emulator = Emulator::start(dir.path(), &inventory(&[server("1", "img-old")], 0.2));
    let count = 3000;
    let servers: Vec<(String, String)> = (0..count)
        .map(|index| (format!("s{index}"), format!("unknown-{index}")))
        .collect();
    let servers: Vec<(&str, &str, &str)> = servers
        .iter()
        .map(|(name, id)| (name.as_str(), id.as_str(), "img-new"))
        .collect();
    let text = manifest(&emulator.zenlayer, &servers, "").replace(
        "    options:\n",
        "    rate_limits:\n      read: {per_minute: 60000, concurrency: 8}\n    options:\n",
    );
    std::fs::write(dir.path().join("reimage.yaml"), text).unwrap();
    let output = reimage(dir.path())
        .timeout(DEADLINE)
        .arg("plan")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let err = stderr_of(&output);
    assert!(err.contains("3000 server(s) are blocked"), "{err}");
    for index in [0, 1234, 2999] {
        let line =
            format!("s{index} (id `unknown-{index}`): the provider does not know this cloud id");
        assert!(err.contains(&line), "{line}");
    }
    assert!(
        stdout_of(&output).contains("Plan: 0 to reinstall, 0 to adopt, 0 unchanged, 3000 blocked."),
        "{}",
        stdout_of(&output)
    );
}
