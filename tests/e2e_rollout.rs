//! End to end: the apply engine at fleet scale, against a real emulator process: waves,
//! failure limits, faults, lost responses, crashes, Ctrl-C, progress output.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

/// A manifest for `count` servers with ids 1..=count, all wanting `image`.
fn fleet_manifest(
    endpoint: &str,
    count: usize,
    image: &str,
    policy: &str,
    provider_extra: &str,
    server_extra: &str,
) -> String {
    let mut text = format!(
        "version: 1\n{policy}providers:\n  zl:\n    type: zenlayer-bmc\n    endpoint: {endpoint}\n    poll_interval: 0.1\n    credentials:\n      access_key_id: {{env: TEST_ZL_KEY_ID}}\n      access_key_password: {{env: TEST_ZL_KEY_PASSWORD}}\n    options:\n      running_grace_seconds: 2\n    rate_limits:\n      read: {{per_minute: 60000, concurrency: 8}}\n      status: {{per_minute: 60000, concurrency: 8}}\n      reinstall: {{per_minute: 60000, concurrency: 50}}\n{provider_extra}defaults:\n  provider: zl\n  os: {{image: {image}}}\n  access: {{ssh_key_id: key-test}}\nservers:\n"
    );
    for id in 1..=count {
        text.push_str(&format!(
            "  - {{name: s{id:03}, id: \"{id}\"}}\n{server_extra}"
        ));
    }
    text
}

fn fleet(dir: &Path, count: usize, image: &str, install_seconds: f64) -> Emulator {
    let servers: Vec<InventoryServer> = (1..=count)
        .map(|id| server(&id.to_string(), image))
        .collect();
    Emulator::start(dir, &inventory(&servers, install_seconds))
}

fn write(dir: &Path, text: &str) {
    std::fs::write(dir.join("reimage.yaml"), text).unwrap();
}

fn reinstall_log(emulator: &Emulator) -> Vec<serde_json::Value> {
    emulator.state()["zenlayer"]["reinstall_log"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn counts(emulator: &Emulator, count: usize) -> Vec<u64> {
    let state = emulator.state();
    let servers = state["zenlayer"]["servers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    (1..=count)
        .map(|id| {
            servers
                .iter()
                .find(|server| server["id"].as_str() == Some(id.to_string().as_str()))
                .and_then(|server| server["reinstall_count"].as_u64())
                .unwrap_or(u64::MAX)
        })
        .collect()
}

#[test]
fn two_hundred_servers_roll_out_in_waves_within_max_parallel() {
    let dir = tempfile::tempdir().unwrap();
    let emulator = fleet(dir.path(), 200, "img-old", 1.0);
    write(
        dir.path(),
        &fleet_manifest(
            &emulator.zenlayer,
            200,
            "img-new",
            "policy:\n  rollout: {canary: 2, max_parallel: 20, max_failures: 1}\n",
            "",
            "",
        ),
    );
    let plan = reimage(dir.path())
        .args(["plan", "-out", "plan.json"])
        .output()
        .unwrap();
    assert!(plan.status.success(), "{}", stderr_of(&plan));
    let text = stdout_of(&plan);
    assert!(text.contains("Rollout in 2 wave(s):"), "{text}");
    assert!(text.contains("wave 1 (canary"), "{text}");
    assert!(
        text.contains("wave 2: 198 server(s), at most 20 at a time"),
        "{text}"
    );

    let started = Instant::now();
    let apply = reimage(dir.path())
        .args(["apply", "plan.json"])
        .output()
        .unwrap();
    assert!(
        apply.status.success(),
        "{}{}",
        stdout_of(&apply),
        stderr_of(&apply)
    );
    assert!(stdout_of(&apply).contains("Apply complete! 200 reinstalled"));
    eprintln!("200 servers applied in {:?}", started.elapsed());

    assert!(counts(&emulator, 200).iter().all(|count| *count == 1));
    let log = reinstall_log(&emulator);
    assert_eq!(log.len(), 200);
    // The canary wave: the first two servers, and nothing else until both finished.
    let mut first_two: Vec<&str> = log[..2]
        .iter()
        .map(|e| e["server_id"].as_str().unwrap())
        .collect();
    first_two.sort();
    assert_eq!(first_two, ["1", "2"]);
    assert_eq!(
        log[2]["installing_at_call"], 1,
        "the third reinstall started while a canary ran"
    );
    let peak = emulator.state()["zenlayer"]["peak_installing"]
        .as_u64()
        .unwrap();
    assert!(peak <= 20, "more than max_parallel in flight: {peak}");
    assert!(
        peak >= 10,
        "the rolling wave did not run in parallel: peak {peak}"
    );
}

#[test]
fn a_failed_canary_stops_the_rollout() {
    let dir = tempfile::tempdir().unwrap();
    let mut servers: Vec<InventoryServer> = ["1", "2", "3", "4", "5", "6"]
        .into_iter()
        .map(|id| server(id, "img-old"))
        .collect();
    servers[0].fail_next_install = true;
    let emulator = Emulator::start(dir.path(), &inventory(&servers, 0.3));
    write(
        dir.path(),
        &fleet_manifest(
            &emulator.zenlayer,
            6,
            "img-new",
            "policy:\n  rollout: {canary: 1, max_parallel: 5, max_failures: 10}\n",
            "",
            "",
        ),
    );
    let output = reimage(dir.path())
        .args(["apply", "--auto-approve"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let summary = stdout_of(&output);
    assert!(
        summary.contains(
            "Apply finished with errors. 0 reinstalled, 0 adopted, 1 failed, 5 not started."
        ),
        "{summary}"
    );
    assert!(
        stderr_of(&output).contains("not started: s002: a canary reinstall did not succeed"),
        "{}",
        stderr_of(&output)
    );
    assert_eq!(counts(&emulator, 6), [1, 0, 0, 0, 0, 0]);
}

#[test]
fn max_failures_stops_new_work_and_max_reinstalls_refuses_up_front() {
    let dir = tempfile::tempdir().unwrap();
    let mut servers: Vec<InventoryServer> = ["1", "2", "3", "4", "5", "6"]
        .into_iter()
        .map(|id| server(id, "img-old"))
        .collect();
    for failing in &mut servers[..3] {
        failing.fail_next_install = true;
    }
    let emulator = Emulator::start(dir.path(), &inventory(&servers, 0.3));
    write(
        dir.path(),
        &fleet_manifest(&emulator.zenlayer, 6, "img-new", "", "", ""),
    );

    let refused = reimage(dir.path())
        .args(["apply", "--auto-approve", "--max-reinstalls", "5"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        flat(&stderr_of(&refused))
            .contains("the plan reinstalls 6 servers, more than `max_reinstalls: 5` allows"),
        "{}",
        stderr_of(&refused)
    );
    assert_eq!(counts(&emulator, 6), [0; 6]);

    // One at a time, so the order of failures is certain: the second failure stops the rollout.
    let output = reimage(dir.path())
        .args([
            "apply",
            "--auto-approve",
            "--canary",
            "0",
            "--max-parallel",
            "1",
            "--max-failures",
            "2",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stdout_of(&output).contains("0 reinstalled, 0 adopted, 2 failed, 4 not started."),
        "{}",
        stdout_of(&output)
    );
    assert!(
        flat(&stderr_of(&output)).contains("(max_failures: 2)"),
        "{}",
        stderr_of(&output)
    );
    assert_eq!(counts(&emulator, 6), [1, 1, 0, 0, 0, 0]);
}

#[test]
fn read_errors_and_throttling_during_observe_and_polls_still_reinstall_each_server_once() {
    let dir = tempfile::tempdir().unwrap();
    let emulator = fleet(dir.path(), 40, "img-old", 0.5);
    emulator
        .set_faults(serde_json::json!({"zenlayer": {"read_500_rate": 0.3, "read_429_rate": 0.1}}));
    write(
        dir.path(),
        &fleet_manifest(
            &emulator.zenlayer,
            40,
            "img-new",
            "policy:\n  rollout: {canary: 0, max_parallel: 20, max_failures: 1}\n",
            "",
            "",
        ),
    );
    let output = reimage(dir.path())
        .args(["apply", "--auto-approve"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}{}",
        stdout_of(&output),
        stderr_of(&output)
    );
    assert!(stdout_of(&output).contains("Apply complete! 40 reinstalled"));
    assert!(
        counts(&emulator, 40).iter().all(|count| *count == 1),
        "{:?}",
        counts(&emulator, 40)
    );
    // The waits were visible.
    let log = stderr_of(&output);
    assert!(
        log.contains("throttled by the provider") || log.contains("retrying after an error"),
        "{log}"
    );
}

#[test]
fn a_lost_reinstall_response_is_checked_not_resent() {
    let dir = tempfile::tempdir().unwrap();
    let emulator = fleet(dir.path(), 3, "img-old", 0.5);
    emulator
        .set_faults(serde_json::json!({"zenlayer": {"drop_connection_after_reinstall": ["2"]}}));
    write(
        dir.path(),
        &fleet_manifest(&emulator.zenlayer, 3, "img-new", "", "", ""),
    );
    let output = reimage(dir.path())
        .args(["apply", "--auto-approve"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}{}",
        stdout_of(&output),
        stderr_of(&output)
    );
    assert!(
        stderr_of(&output).contains("reinstall answer lost"),
        "{}",
        stderr_of(&output)
    );
    assert_eq!(counts(&emulator, 3), [1, 1, 1]);
}

fn state_parses(dir: &Path) {
    let path = dir.join(".reimage/state.json");
    if path.exists() {
        let text = std::fs::read_to_string(&path).unwrap();
        serde_json::from_str::<serde_json::Value>(&text)
            .unwrap_or_else(|error| panic!("state does not parse after a crash: {error}\n{text}"));
    }
}

/// Runs `apply --resume` then fresh applies until the plan is empty; returns what the resume
/// printed on stderr.
fn run_to_completion(dir: &Path) -> String {
    // Continue the interrupted plan, if the state says one was interrupted.
    let resume = reimage(dir)
        .args(["apply", "--resume", "plan.json"])
        .output()
        .unwrap();
    let message = stderr_of(&resume);
    assert!(
        resume.status.code() == Some(0) || resume.status.code() == Some(1),
        "{message}"
    );
    state_parses(dir);
    // Anything the crash left undecided is planned afresh until nothing is left.
    let mut last = String::new();
    for _ in 0..5 {
        let plan = reimage(dir)
            .args(["plan", "--detailed-exitcode"])
            .output()
            .unwrap();
        if plan.status.code() == Some(0) {
            return message;
        }
        last = format!("{}{}", stdout_of(&plan), stderr_of(&plan));
        let apply = reimage(dir)
            .args(["apply", "--auto-approve"])
            .output()
            .unwrap();
        state_parses(dir);
        assert!(
            apply.status.code() == Some(0) || apply.status.code() == Some(1),
            "{}",
            stderr_of(&apply)
        );
    }
    panic!("the fleet did not converge; last plan:\n{last}\nresume said:\n{message}");
}

#[test]
fn kill_9_at_random_moments_never_reinstalls_a_planned_server_twice() {
    const SERVERS: usize = 6;
    const ITERATIONS: u64 = 20;
    let dir = tempfile::tempdir().unwrap();
    let emulator = fleet(dir.path(), SERVERS, "img-old", 0.3);
    let mut random = Seeded(20261122);
    let (mut resumes, mut reconciled) = (0, 0);
    for iteration in 1..=ITERATIONS {
        // Alternate images, so every iteration reinstalls every server exactly once more.
        let image = if iteration % 2 == 1 {
            "img-new"
        } else {
            "img-old"
        };
        write(
            dir.path(),
            &fleet_manifest(
                &emulator.zenlayer,
                SERVERS,
                image,
                "policy:\n  rollout: {canary: 1, max_parallel: 3, max_failures: 3}\n",
                "",
                "",
            ),
        );
        let plan = reimage(dir.path())
            .args(["plan", "-out", "plan.json"])
            .output()
            .unwrap();
        assert!(plan.status.success(), "{}", stderr_of(&plan));
        let mut child = std::process::Command::new(binary())
            .args(["apply", "plan.json"])
            .current_dir(dir.path())
            .env("TEST_ZL_KEY_ID", KEY_ID)
            .env("TEST_ZL_KEY_PASSWORD", KEY_PASSWORD)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(30 + random.below(1500)));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        state_parses(dir.path());
        let resumed = run_to_completion(dir.path());
        if resumed.contains("Resuming plan") {
            resumes += 1;
        }
        if resumed.contains("of interrupted plan") {
            reconciled += 1;
        }
        let expected = iteration;
        let now = counts(&emulator, SERVERS);
        assert!(
            now.iter().all(|count| *count == expected),
            "iteration {iteration}: reinstall counts {now:?}, expected {expected} each"
        );
    }
    eprintln!("{resumes} resumed mid-plan, {reconciled} with steps in flight at the kill");
    // The kills must land mid-apply often enough for the test to mean something.
    assert!(
        resumes >= 5,
        "only {resumes} of {ITERATIONS} kills interrupted a plan mid-way"
    );
    assert!(
        reconciled >= 2,
        "only {reconciled} kills left a step in flight"
    );
}

/// `reimage apply --auto-approve` in the background, with its output captured.
fn spawn_apply(dir: &Path) -> std::process::Child {
    std::process::Command::new(binary())
        .args(["apply", "--auto-approve"])
        .current_dir(dir)
        .env("TEST_ZL_KEY_ID", KEY_ID)
        .env("TEST_ZL_KEY_PASSWORD", KEY_PASSWORD)
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits (at most 30 s) until the emulator has accepted `at_least` reinstalls.
fn wait_for_reinstalls(emulator: &Emulator, servers: usize, at_least: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while counts(emulator, servers).iter().sum::<u64>() < at_least && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn ctrl_c_stops_new_work_watches_in_flight_and_exits_130() {
    let dir = tempfile::tempdir().unwrap();
    let emulator = fleet(dir.path(), 6, "img-old", 2.0);
    write(
        dir.path(),
        &fleet_manifest(
            &emulator.zenlayer,
            6,
            "img-new",
            "policy:\n  rollout: {canary: 0, max_parallel: 2}\n",
            "",
            "",
        ),
    );
    let child = spawn_apply(dir.path());
    wait_for_reinstalls(&emulator, 6, 2);
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(130), "{}", stderr_of(&output));
    let summary = stdout_of(&output);
    assert!(
        summary.contains("Apply interrupted. 2 reinstalled, 0 adopted, 0 failed, 4 not started."),
        "{summary}"
    );
    assert!(
        stderr_of(&output).contains("interrupted: no new reinstall starts"),
        "{}",
        stderr_of(&output)
    );
    assert_eq!(counts(&emulator, 6), [1, 1, 0, 0, 0, 0]);
    // Both in-flight installs were watched to the end and recorded.
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join(".reimage/state.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        state["servers"]["s001"]["last_operation"]["outcome"],
        "succeeded"
    );
    assert_eq!(
        state["servers"]["s002"]["last_operation"]["outcome"],
        "succeeded"
    );
}

#[test]
fn json_events_follow_their_schema_and_ci_logs_have_heartbeats() {
    let dir = tempfile::tempdir().unwrap();
    let emulator = fleet(dir.path(), 4, "img-old", 1.2);
    write(
        dir.path(),
        &fleet_manifest(
            &emulator.zenlayer,
            4,
            "img-new",
            "policy:\n  rollout: {canary: 1, max_parallel: 3}\n",
            "",
            "",
        ),
    );
    let plan = reimage(dir.path())
        .args(["plan", "-out", "plan.json"])
        .output()
        .unwrap();
    assert!(plan.status.success());
    let output = reimage(dir.path())
        .args(["apply", "--json", "plan.json"])
        .env("REIMAGE_HEARTBEAT_SECONDS", "0.5")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr_of(&output));
    let schema_text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/apply-events.schema.json"),
    )
    .unwrap();
    let validator =
        jsonschema::draft202012::new(&serde_json::from_str(&schema_text).unwrap()).unwrap();
    let mut kinds = Vec::new();
    for line in stdout_of(&output).lines() {
        let event: serde_json::Value = serde_json::from_str(line).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&event)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{line}: {errors:?}");
        kinds.push(event["event"].as_str().unwrap().to_string());
    }
    for kind in [
        "plan",
        "wave_started",
        "reinstall_started",
        "done",
        "heartbeat",
        "summary",
    ] {
        assert!(
            kinds.iter().any(|k| k == kind),
            "no `{kind}` event in {kinds:?}"
        );
    }
    assert_eq!(kinds.last().map(String::as_str), Some("summary"));

    // Without a terminal and without --json: timestamped lines and a heartbeat.
    write(
        dir.path(),
        &fleet_manifest(
            &emulator.zenlayer,
            4,
            "img-old",
            "policy:\n  rollout: {canary: 0, max_parallel: 4}\n",
            "",
            "",
        ),
    );
    let lines = reimage(dir.path())
        .args(["apply", "--auto-approve"])
        .env("REIMAGE_HEARTBEAT_SECONDS", "0.5")
        .output()
        .unwrap();
    assert!(lines.status.success(), "{}", stderr_of(&lines));
    let log = stderr_of(&lines);
    assert!(log.contains("still working: "), "{log}");
    assert!(
        log.lines()
            .any(|line| line.starts_with('[') && line.contains("] s001: reinstall started")),
        "{log}"
    );
}

#[test]
fn a_second_ctrl_c_leaves_installs_to_the_journal_and_the_next_plan_settles_them() {
    let dir = tempfile::tempdir().unwrap();
    let emulator = fleet(dir.path(), 4, "img-old", 3.0);
    write(
        dir.path(),
        &fleet_manifest(
            &emulator.zenlayer,
            4,
            "img-new",
            "policy:\n  rollout: {canary: 0, max_parallel: 2}\n",
            "",
            "",
        ),
    );
    let child = spawn_apply(dir.path());
    wait_for_reinstalls(&emulator, 4, 2);
    for _ in 0..2 {
        let sent = std::process::Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        std::thread::sleep(Duration::from_millis(300));
    }
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(130), "{}", stderr_of(&output));
    assert!(
        stderr_of(&output).contains("no longer watching; the journal keeps what is in flight"),
        "{}",
        stderr_of(&output)
    );
    let journal = std::fs::read_to_string(dir.path().join(".reimage/state.json.journal")).unwrap();
    assert!(journal.contains("\"phase\":\"called\""), "{journal}");

    // Once the installs have finished, the next plan records them before planning.
    std::thread::sleep(Duration::from_secs(4));
    let plan = reimage(dir.path()).arg("plan").output().unwrap();
    let log = stderr_of(&plan);
    assert!(log.contains("s001: reinstall of interrupted plan"), "{log}");
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join(".reimage/state.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        state["servers"]["s001"]["last_operation"]["outcome"],
        "succeeded"
    );
    assert_eq!(
        state["servers"]["s002"]["last_operation"]["outcome"],
        "succeeded"
    );
    let text = stdout_of(&plan);
    assert!(text.contains("Plan: 2 to reinstall"), "{text}");
    assert_eq!(counts(&emulator, 4), [1, 1, 0, 0]);
}
