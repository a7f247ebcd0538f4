//! End to end: health gates between installs and "done", against real local listeners (a TCP
//! port, a small HTTP server, a command) and the emulator: a gate that passes, one that never
//! passes (the rollout stops after the canary), one that passes late, a crash while gating,
//! and EDIS's `ssh_probe` as a gate.

mod common;

use std::path::Path;

use common::listeners::{Listener, closed_port};
use common::*;

/// `count` Zenlayer servers wanting `img-new`, one canary then the rest, with `health` YAML
/// under `defaults`.
fn gated_fleet(dir: &Path, count: usize, health: &str) -> Emulator {
    let servers: Vec<InventoryServer> = (1..=count)
        .map(|id| server(&id.to_string(), "img-old"))
        .collect();
    let emulator = Emulator::start(dir, &inventory(&servers, 0.3));
    let mut text = format!(
        "version: 1\npolicy:\n  rollout: {{canary: 1, max_parallel: 5, max_failures: 1}}\nproviders:\n  zl:\n    type: zenlayer-bmc\n    endpoint: {}\n    poll_interval: 0.1\n    credentials:\n      access_key_id: {{env: TEST_ZL_KEY_ID}}\n      access_key_password: {{env: TEST_ZL_KEY_PASSWORD}}\n    options:\n      running_grace_seconds: 2\ndefaults:\n  provider: zl\n  os: {{image: img-new}}\n  access: {{ssh_key_id: key-test}}\n  health: {health}\nservers:\n",
        emulator.zenlayer
    );
    for id in 1..=count {
        text.push_str(&format!(
            "  - {{name: s{id}, id: \"{id}\", address: 127.0.0.1}}\n"
        ));
    }
    std::fs::write(dir.join("reimage.yaml"), text).unwrap();
    emulator
}

fn validator(name: &str) -> jsonschema::Validator {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("schemas")
            .join(name),
    )
    .unwrap();
    jsonschema::draft202012::new(&serde_json::from_str(&text).unwrap()).unwrap()
}

fn events(output: &std::process::Output) -> Vec<serde_json::Value> {
    stdout_of(output)
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

fn position(events: &[serde_json::Value], pick: impl Fn(&serde_json::Value) -> bool) -> usize {
    events
        .iter()
        .position(pick)
        .unwrap_or_else(|| panic!("event not found in {events:#?}"))
}

fn state(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join(".reimage/state.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn a_gate_that_passes_holds_the_next_wave_until_it_passes() {
    let dir = tempfile::tempdir().unwrap();
    let http = Listener::http(0);
    let emulator = gated_fleet(
        dir.path(),
        3,
        &format!(
            "{{http: {{url: \"http://{{address}}:{}/health\", body_contains: ok}}, interval: 0.1, attempts: 5}}",
            http.address.rsplit_once(':').unwrap().1
        ),
    );
    let plan = reimage(dir.path())
        .args(["plan", "-out", "plan.json"])
        .output()
        .unwrap();
    assert!(plan.status.success(), "{}", stderr_of(&plan));
    let text = stdout_of(&plan);
    let url = format!("http://{}/health", http.address);
    assert!(
        text.contains(&format!("health gate: http GET {url} → 200")),
        "the plan lists each server's gate, with the address filled in:\n{text}"
    );
    assert!(text.contains("(from defaults.health)"), "{text}");
    let markdown = reimage(dir.path())
        .args(["show", "--markdown", "plan.json"])
        .output()
        .unwrap();
    let markdown = stdout_of(&markdown);
    assert!(markdown.contains("**Health gates**"), "{markdown}");
    assert!(
        markdown.contains(&format!("- `s1`: http GET {url} → 200")),
        "{markdown}"
    );

    let apply = reimage(dir.path())
        .args(["apply", "--json", "plan.json"])
        .output()
        .unwrap();
    assert!(apply.status.success(), "{}", stderr_of(&apply));
    let events = events(&apply);
    // Events and the plan with its gates follow their published schemas.
    let event_schema = validator("apply-events.schema.json");
    for event in &events {
        let errors: Vec<String> = event_schema
            .iter_errors(event)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{event}: {errors:?}");
    }
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("plan.json")).unwrap())
            .unwrap();
    let errors: Vec<String> = validator("plan.schema.json")
        .iter_errors(&saved)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    // The canary's gate passed before anything of the second wave started.
    let canary_passed = position(&events, |event| {
        event["event"] == "gate_attempt" && event["server"] == "s1" && event["passed"] == true
    });
    let second_wave = position(&events, |event| {
        event["event"] == "wave_started" && event["wave"] == 2
    });
    assert!(canary_passed < second_wave, "{events:#?}");
    for name in ["s1", "s2", "s3"] {
        let done = position(&events, |event| {
            event["event"] == "done" && event["server"] == name
        });
        let started = position(&events, |event| {
            event["event"] == "gate_started" && event["server"] == name
        });
        assert!(started < done);
        let note = events[done]["note"].as_str().unwrap();
        assert!(
            note.contains("health gate passed after 1 attempt(s)"),
            "{note}"
        );
        let health = &state(dir.path())["servers"][name]["last_operation"]["health"];
        assert_eq!(health["status"], "passed");
        assert_eq!(
            health["check"],
            format!("http GET {url} → 200 with \"ok\" in the body")
        );
    }
    assert_eq!(http.requests(), 3);
    assert_eq!(
        (1..=3)
            .map(|id| emulator.reinstall_count(&id.to_string()))
            .collect::<Vec<_>>(),
        [1, 1, 1]
    );
    // The history keeps each server's timings, gate included, and the waves.
    let history = std::fs::read_to_string(dir.path().join(".reimage/state.json.history")).unwrap();
    let entry: serde_json::Value = serde_json::from_str(history.lines().last().unwrap()).unwrap();
    let timings = &entry["servers"]["s2"]["timings"];
    for field in [
        "queued_at",
        "started_at",
        "install_started_at",
        "install_ended_at",
        "gate_started_at",
        "gate_ended_at",
        "finished_at",
    ] {
        assert!(timings[field].is_string(), "{field}: {timings}");
    }
    assert_eq!(timings["wave"], 2);
    assert_eq!(entry["waves"].as_array().unwrap().len(), 2);
    assert!(entry["apply_id"].is_string());
}

#[test]
fn a_gate_that_never_passes_stops_the_rollout_after_the_canary() {
    let dir = tempfile::tempdir().unwrap();
    let closed = closed_port();
    let port = closed.rsplit_once(':').unwrap().1;
    let emulator = gated_fleet(
        dir.path(),
        3,
        &format!("{{tcp: {port}, timeout: 1, interval: 0.1, attempts: 3}}"),
    );
    let apply = reimage(dir.path())
        .args(["apply", "--auto-approve", "--json"])
        .output()
        .unwrap();
    assert_eq!(apply.status.code(), Some(1), "{}", stderr_of(&apply));
    let events = events(&apply);
    let attempts: Vec<&serde_json::Value> = events
        .iter()
        .filter(|event| event["event"] == "gate_attempt")
        .collect();
    assert_eq!(attempts.len(), 3, "{attempts:#?}");
    assert!(attempts.iter().all(|event| event["passed"] == false));
    let summary = events.last().unwrap();
    assert_eq!(summary["event"], "summary");
    assert_eq!(summary["gate_failed"][0]["server"], "s1");
    assert!(
        summary["gate_failed"][0]["message"]
            .as_str()
            .unwrap()
            .contains(&format!("tcp 127.0.0.1:{port} failed 3 attempt(s)")),
        "{summary}"
    );
    let not_started: Vec<&str> = summary["not_started"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["server"].as_str().unwrap())
        .collect();
    assert_eq!(not_started, ["s2", "s3"]);
    assert_eq!(
        (1..=3)
            .map(|id| emulator.reinstall_count(&id.to_string()))
            .collect::<Vec<_>>(),
        [1, 0, 0],
        "nothing starts after a canary's gate fails"
    );
    // The image is on the machine; the outcome says the gate failed.
    let record = &state(dir.path())["servers"]["s1"];
    assert_eq!(record["image"], "img-new");
    assert_eq!(record["last_operation"]["outcome"], "gate_failed");
    assert_eq!(record["last_operation"]["health"]["status"], "failed");
    assert_eq!(record["last_operation"]["health"]["attempts"], 3);

    // The next plan does not reinstall it for that alone, and says why it stands out.
    let plan = reimage(dir.path()).args(["plan"]).output().unwrap();
    assert!(plan.status.success(), "{}", stderr_of(&plan));
    let text = stdout_of(&plan);
    assert!(text.contains("2 to reinstall"), "{text}");
    assert!(!text.contains("s1 (id"), "s1 is not planned:\n{text}");
}

#[test]
fn a_gate_that_passes_late_within_its_attempts() {
    let dir = tempfile::tempdir().unwrap();
    let http = Listener::http(3);
    let _emulator = gated_fleet(
        dir.path(),
        1,
        &format!(
            "{{http: \"http://{}/health\", interval: 0.1, attempts: 10}}",
            http.address
        ),
    );
    let apply = reimage(dir.path())
        .args(["apply", "--auto-approve", "--json"])
        .output()
        .unwrap();
    assert!(apply.status.success(), "{}", stderr_of(&apply));
    let attempts: Vec<(u64, bool)> = events(&apply)
        .iter()
        .filter(|event| event["event"] == "gate_attempt")
        .map(|event| {
            (
                event["attempt"].as_u64().unwrap(),
                event["passed"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        attempts,
        [(1, false), (2, false), (3, false), (4, true)],
        "three 503s, then 200"
    );
    let health = &state(dir.path())["servers"]["s1"]["last_operation"]["health"];
    assert_eq!(
        (health["status"].as_str(), health["attempts"].as_u64()),
        (Some("passed"), Some(4))
    );
}

#[test]
fn a_command_gate_sees_the_server_in_its_environment() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("check.sh"),
        "#!/bin/sh\ntest \"$REIMAGE_SERVER\" = s1 && test \"$REIMAGE_SERVER_ID\" = 1 && test \"$REIMAGE_SERVER_ADDRESS\" = 127.0.0.1 && test -f ready\n",
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            dir.path().join("check.sh"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
    }
    std::fs::write(dir.path().join("ready"), "").unwrap();
    let _emulator = gated_fleet(
        dir.path(),
        1,
        "{command: [./check.sh], attempts: 2, interval: 0}",
    );
    let apply = reimage(dir.path())
        .args(["apply", "--auto-approve"])
        .output()
        .unwrap();
    assert!(
        apply.status.success(),
        "{}{}",
        stdout_of(&apply),
        stderr_of(&apply)
    );
    assert!(stderr_of(&apply).contains("health gate passed after 1 attempt(s)"));
}

#[test]
fn a_crash_while_gating_keeps_the_install_and_resume_runs_the_gate() {
    let dir = tempfile::tempdir().unwrap();
    let tcp = Listener::tcp();
    let emulator = gated_fleet(
        dir.path(),
        1,
        &format!("{{tcp: \"{}\", interval: 0.1, attempts: 3}}", tcp.address),
    );
    let plan = reimage(dir.path())
        .args(["plan", "-out", "plan.json"])
        .output()
        .unwrap();
    assert!(plan.status.success(), "{}", stderr_of(&plan));
    // Journal writes of one reinstall: intent, called, outcome. Abort right after the
    // outcome: the install succeeded and its gate has just begun.
    let crashed = command(dir.path())
        .args(["apply", "plan.json"])
        .env("REIMAGE_TEST_CRASH_AFTER_JOURNAL_WRITE", "3")
        .output()
        .unwrap();
    assert!(!crashed.status.success());
    assert_eq!(emulator.reinstall_count("1"), 1);
    assert_eq!(
        tcp.requests(),
        0,
        "the crash came before the gate's first attempt"
    );

    // `plan` settles the journal: the install is recorded, the gate pending, nothing to do.
    let replan = reimage(dir.path()).args(["plan"]).output().unwrap();
    assert!(replan.status.success(), "{}", stderr_of(&replan));
    let text = stdout_of(&replan);
    assert!(text.contains("No changes."), "{text}");
    let record = &state(dir.path())["servers"]["s1"];
    assert_eq!(record["image"], "img-new");
    assert_eq!(record["last_operation"]["outcome"], "succeeded");
    assert_eq!(record["last_operation"]["health"]["status"], "pending");

    // `--resume` runs the gate it never ran, and reinstalls nothing.
    let resumed = reimage(dir.path())
        .args(["apply", "--resume", "plan.json"])
        .output()
        .unwrap();
    assert!(
        resumed.status.success(),
        "{}{}",
        stdout_of(&resumed),
        stderr_of(&resumed)
    );
    let out = format!("{}{}", stdout_of(&resumed), stderr_of(&resumed));
    assert!(out.contains("health gate passed"), "{out}");
    assert_eq!(emulator.reinstall_count("1"), 1);
    assert!(tcp.accepted_at_least(1) >= 1);
    let health = &state(dir.path())["servers"]["s1"]["last_operation"]["health"];
    assert_eq!(health["status"], "passed");
}

#[test]
fn an_edis_ssh_probe_runs_as_the_servers_health_gate() {
    use common::edis;
    let dir = tempfile::tempdir().unwrap();
    let emulator = edis::EdisEmulator::start(
        dir.path(),
        &edis::inventory(&[("kvm_1", "vps-1", "debian-bullseye")], 300.0, 0.3),
    );
    let tcp = Listener::tcp();
    std::fs::write(
        dir.path().join("reimage.yaml"),
        edis::manifest(
            dir.path(),
            &emulator.auth_url,
            &[("web-1", "kvm_1", "debian-bookworm")],
            &format!(
                "      ssh_probe: {{web-1: \"{}\"}}\n      ssh_probe_timeout_seconds: 20\n      ssh_probe_connect_timeout_seconds: 1\n",
                tcp.address
            ),
        ),
    )
    .unwrap();
    let adopt = edis::reimage(dir.path())
        .args(["state", "adopt", "web-1", "--image", "debian-bullseye"])
        .output()
        .unwrap();
    assert!(adopt.status.success(), "{}", stderr_of(&adopt));
    let plan = edis::reimage(dir.path()).args(["plan"]).output().unwrap();
    assert!(plan.status.success(), "{}", stderr_of(&plan));
    let text = stdout_of(&plan);
    assert!(
        text.contains(&format!("health gate: tcp {}", tcp.address))
            && text.contains("from providers.edis.options.ssh_probe"),
        "{text}"
    );
    let apply = edis::reimage(dir.path())
        .args(["apply", "--auto-approve"])
        .output()
        .unwrap();
    assert!(
        apply.status.success(),
        "{}{}",
        stdout_of(&apply),
        stderr_of(&apply)
    );
    // Progress lines go to stderr.
    let out = format!("{}{}", stdout_of(&apply), stderr_of(&apply));
    assert!(
        out.contains("completed (not verifiable by the provider)"),
        "{out}"
    );
    assert!(out.contains("health gate passed"), "{out}");
    assert!(
        tcp.accepted_at_least(1) >= 1,
        "the probe connected to exactly that address"
    );
}

#[test]
fn the_address_comes_from_the_provider_and_a_gate_without_one_blocks_the_plan() {
    let dir = tempfile::tempdir().unwrap();
    let text = inventory(&[server("1", "img-old"), server("2", "img-old")], 0.3)
        .replace("hostname: h1,", "hostname: h1, public_ip: 127.0.0.2,");
    let emulator = Emulator::start(dir.path(), &text);
    let manifest = manifest(
        &emulator.zenlayer,
        &[("s1", "1", "img-new"), ("s2", "2", "img-new")],
        "",
    )
    .replace("defaults:\n", "defaults:\n  health: {tcp: 22}\n");
    std::fs::write(dir.path().join("reimage.yaml"), manifest).unwrap();
    let plan = reimage(dir.path()).args(["plan"]).output().unwrap();
    assert_eq!(plan.status.code(), Some(1), "{}", stdout_of(&plan));
    let text = stdout_of(&plan);
    assert!(
        text.contains("health gate: tcp 127.0.0.2:22"),
        "Zenlayer's primary public address fills in `{{address}}`:\n{text}"
    );
    let error = flat(&stderr_of(&plan));
    assert!(
        error.contains("s2") && error.contains("add `address: HOST` to the server"),
        "{error}"
    );
    assert_eq!(emulator.reinstall_count("1"), 0);
}

/// JD Cloud: `{address}` is the server's `publicIp`, else its `privateIp`, as describeInstances
/// reports them; with neither, a gate that needs one blocks the plan.
#[test]
fn jd_cloud_reports_the_address_a_gate_needs() {
    use common::jdcloud::{JdServer, NEW_OS, OLD_OS, inventory, manifest, reimage as jd_reimage};
    let dir = tempfile::tempdir().unwrap();
    let servers = [
        JdServer {
            id: "cps-pub",
            status: "stopped",
            os: OLD_OS,
            extra: ", public_ip: 127.0.0.4, private_ip: 10.0.0.4",
        },
        JdServer {
            id: "cps-priv",
            status: "stopped",
            os: OLD_OS,
            extra: ", private_ip: 127.0.0.5",
        },
        JdServer {
            id: "cps-none",
            status: "stopped",
            os: OLD_OS,
            extra: "",
        },
    ];
    let emulator = Emulator::start(dir.path(), &inventory(&servers, 0.3));
    let text = manifest(
        &emulator,
        &[
            ("with-public", "cps-pub", NEW_OS, "{}"),
            ("with-private", "cps-priv", NEW_OS, "{}"),
            ("without-address", "cps-none", NEW_OS, "{}"),
        ],
    )
    .replace("defaults:\n", "defaults:\n  health: {tcp: 22}\n");
    std::fs::write(dir.path().join("reimage.yaml"), text).unwrap();
    let plan = jd_reimage(dir.path()).args(["plan"]).output().unwrap();
    assert_eq!(plan.status.code(), Some(1), "{}", stdout_of(&plan));
    let shown = stdout_of(&plan);
    assert!(shown.contains("health gate: tcp 127.0.0.4:22"), "{shown}");
    assert!(shown.contains("health gate: tcp 127.0.0.5:22"), "{shown}");
    let error = flat(&stderr_of(&plan));
    assert!(
        error.contains("without-address") && error.contains("add `address: HOST` to the server"),
        "{error}"
    );
}
