//! End to end: apply converges exactly once under the faults real fleets meet, for each of the
//! five provider types: 5xx before acting, throttling bursts, answers lost after acting, slow
//! answers, status that shows late; a second operator at once; `--resume`; refused calls.
//! The real binary, over real HTTP, against a real emulator process; counts come from the
//! emulator (what acted), never from reimage's own output.

mod common;

use std::path::Path;
use std::process::Output;

use common::fleet::{self, Kind, Spec};
use common::{Emulator, stderr_of, stdout_of};
use serde_json::json;

fn apply(dir: &Path, kind: Kind, extra: &[&str]) -> Output {
    let output = fleet::reimage(dir)
        .args(["apply", "--auto-approve"])
        .args(extra)
        .output()
        .unwrap();
    fleet::assert_no_secret(
        kind,
        &format!("{}{}", stdout_of(&output), stderr_of(&output)),
    );
    output
}

fn show(output: &Output) -> String {
    format!("{}\n{}", stdout_of(output), stderr_of(output))
}

/// 30% 5xx on every call, 429 bursts, 30% of mutating answers lost after acting, slow answers
/// and status that shows late: one apply converges, each server reinstalled exactly once.
fn converges_under_faults(kind: Kind) {
    let mut spec = Spec::new(kind, 30);
    spec.policy = "  rollout: {canary: 1, max_parallel: 30, max_failures: 1}\n".to_string();
    let (dir, emulator) = fleet::setup(&spec);
    if kind == Kind::Clouddc {
        // Batches of 2: enough calls that every fault meets a reinstall.
        fleet::edit_manifest(
            dir.path(),
            "    options:\n",
            "    options:\n      reinstall_batch: 2\n",
        );
    }
    emulator.arm(json!({"clear": true, "seed": 7, "rules": [
        {"provider": kind.type_name(), "call": "*", "fault": "error_5xx", "rate": 0.3},
        {"provider": kind.type_name(), "call": "*", "fault": "throttle_429", "rate": 0.05, "burst": 3, "seconds": 1},
        {"provider": kind.type_name(), "call": "mutating", "fault": "drop_after", "rate": 0.3},
        {"provider": kind.type_name(), "call": "mutating", "fault": "slow_after", "rate": 0.1, "seconds": 0.5},
        {"provider": kind.type_name(), "call": "mutating", "fault": "late_status", "rate": 0.3, "seconds": 0.8},
    ]}));
    let output = apply(dir.path(), kind, &[]);
    assert_eq!(output.status.code(), Some(0), "{}", show(&output));
    assert_eq!(
        fleet::installs(&emulator, &spec),
        vec![1; 30],
        "{}",
        show(&output)
    );
    if kind == Kind::Jd {
        for index in 1..=spec.count {
            assert_eq!(
                fleet::acted(&emulator, kind, index).1,
                1,
                "stops of {index}"
            );
        }
    }
    // The mutating calls really met the faults (which ones is up to the seeded generator).
    let fired = &emulator.state()["faults_fired"][kind.type_name()];
    let on_calls: u64 = ["reinstall", "change_os", "stop"]
        .iter()
        .filter_map(|call| fired[*call].as_object())
        .flat_map(|faults| faults.values())
        .filter_map(serde_json::Value::as_u64)
        .sum();
    assert!(on_calls >= 5, "too few faults met a mutating call: {fired}");
    // Nothing is left to do (asked of a healthy API: this checks the state, not the retries).
    emulator.arm(json!({"clear": true, "rules": []}));
    let plan = fleet::reimage(dir.path())
        .args(["plan", "--detailed-exitcode"])
        .output()
        .unwrap();
    assert_eq!(plan.status.code(), Some(0), "{}", show(&plan));
}

#[test]
fn zenlayer_converges_once_under_faults() {
    converges_under_faults(Kind::Zenlayer);
}

#[test]
fn huaweicloud_ecs_converges_once_under_faults() {
    converges_under_faults(Kind::Ecs);
}

#[test]
fn huaweicloud_clouddc_converges_once_under_faults() {
    converges_under_faults(Kind::Clouddc);
}

#[test]
fn edis_converges_once_under_faults() {
    converges_under_faults(Kind::Edis);
}

#[test]
fn jdcloud_converges_once_under_faults_stop_included() {
    converges_under_faults(Kind::Jd);
}

/// A reinstall answered so slowly that the client gives up (a timeout after sending) is
/// checked with the server, not guessed; so is a stop (JD).
#[test]
fn answers_slower_than_the_request_timeout_are_resolved_not_guessed() {
    for kind in [Kind::Zenlayer, Kind::Jd] {
        let spec = Spec::new(kind, 3);
        let (dir, emulator) = fleet::setup(&spec);
        fleet::edit_manifest(
            dir.path(),
            "    poll_interval:",
            "    request_timeout: 1\n    poll_interval:",
        );
        emulator.arm(json!({"clear": true, "rules": [
            {"provider": kind.type_name(), "call": "mutating", "fault": "slow_after", "seconds": 3}
        ]}));
        let output = apply(dir.path(), kind, &[]);
        assert_eq!(output.status.code(), Some(0), "{kind:?}: {}", show(&output));
        assert!(show(&output).contains("answer"), "{}", show(&output));
        assert_eq!(fleet::installs(&emulator, &spec), vec![1; 3], "{kind:?}");
    }
}

/// A provider that takes a call in slowly acts late: here 2.5 s after the sending, longer than
/// the 1.5 s grace; then the answer is lost and the status shows 1.2 s late. The grace runs from
/// when the answer was lost, so the install is seen and the call is not sent a second time.
#[test]
fn a_call_taken_in_slowly_then_lost_is_not_sent_again() {
    for (kind, call) in [(Kind::Zenlayer, "reinstall"), (Kind::Ecs, "change_os")] {
        let spec = Spec::new(kind, 2);
        let (dir, emulator) = fleet::setup(&spec);
        emulator.arm(json!({"clear": true, "rules": [
            {"provider": kind.type_name(), "call": call, "fault": "latency", "seconds": 2.5},
            {"provider": kind.type_name(), "call": call, "fault": "drop_after"},
            {"provider": kind.type_name(), "call": call, "fault": "late_status", "seconds": 1.2},
        ]}));
        let output = apply(dir.path(), kind, &[]);
        assert_eq!(output.status.code(), Some(0), "{kind:?}: {}", show(&output));
        assert!(
            !stderr_of(&output).contains("did not act:"),
            "{kind:?}: {}",
            show(&output)
        );
        assert_eq!(fleet::installs(&emulator, &spec), vec![1; 2], "{kind:?}");
    }
}

/// Huawei ECS: every answer to changeos is lost, so no job id is ever known; the server itself
/// tells when the install is done.
#[test]
fn ecs_without_a_job_id_is_followed_through_the_server() {
    let spec = Spec::new(Kind::Ecs, 3);
    let (dir, emulator) = fleet::setup(&spec);
    emulator.arm(json!({"clear": true, "rules": [
        {"provider": "huaweicloud-ecs", "call": "change_os", "fault": "drop_after"}
    ]}));
    let output = apply(dir.path(), Kind::Ecs, &[]);
    assert_eq!(output.status.code(), Some(0), "{}", show(&output));
    assert!(!show(&output).contains("no job id"), "{}", show(&output));
    assert_eq!(fleet::installs(&emulator, &spec), vec![1; 3]);
}

/// A call answered 5xx before acting (every time, for a while) is shown not to have acted and
/// sent again under the same step; it is neither a failure nor a canary failure.
#[test]
fn a_5xx_before_acting_is_sent_again_after_the_grace_and_does_not_fail_the_canary() {
    let spec = Spec::new(Kind::Zenlayer, 4);
    let (dir, emulator) = fleet::setup(&spec);
    emulator.arm(json!({"clear": true, "rules": [
        {"provider": "zenlayer-bmc", "call": "reinstall", "fault": "error_5xx", "count": 2, "ids": [Kind::Zenlayer.id(1)]}
    ]}));
    let output = apply(dir.path(), Kind::Zenlayer, &[]);
    assert_eq!(output.status.code(), Some(0), "{}", show(&output));
    assert!(
        stderr_of(&output).contains("did not act"),
        "{}",
        show(&output)
    );
    assert_eq!(fleet::installs(&emulator, &spec), vec![1; 4]);
}

/// EDIS: a reinstall queued behind the rate limit takes its ticket when the limiter lets it
/// go (renewed if it is about to expire), never before: 3-second tickets, one reinstall a
/// second, eight VPSs, and not one call refused for an expired ticket.
#[test]
fn edis_tickets_are_attached_after_the_rate_limiter_grants_the_call() {
    let mut spec = Spec::new(Kind::Edis, 8);
    spec.install_seconds = 2.0;
    spec.edis_ticket_ttl = 3.0;
    spec.policy = "  rollout: {canary: 0, max_parallel: 8}\n".to_string();
    let (dir, emulator) = fleet::setup(&spec);
    fleet::edit_manifest(
        dir.path(),
        "reinstall: {per_minute: 60000, concurrency: 50}",
        "reinstall: {per_minute: 60, concurrency: 1}",
    );
    let output = apply(dir.path(), Kind::Edis, &[]);
    assert_eq!(output.status.code(), Some(0), "{}", show(&output));
    assert!(
        stderr_of(&output).contains("rate limit"),
        "{}",
        show(&output)
    );
    assert_eq!(fleet::installs(&emulator, &spec), vec![1; 8]);
    let edis = &emulator.state()["edis"];
    assert_eq!(edis["unauthorized_count"], 0, "{edis:#}");
    assert!(
        edis["auth_count"].as_u64().unwrap() > 1,
        "tickets were never renewed: {edis:#}"
    );
}

/// CloudDC: one call per image and password, cut into batches after grouping: 25 servers with
/// two passwords take 4 calls (13 + 12, batches of 10), not 5.
#[test]
fn clouddc_groups_by_password_before_cutting_batches() {
    let mut spec = Spec::new(Kind::Clouddc, 25);
    spec.two_passwords = true;
    spec.policy = "  rollout: {canary: 0, max_parallel: 25}\n".to_string();
    let (dir, emulator) = fleet::setup(&spec);
    let output = apply(dir.path(), Kind::Clouddc, &[]);
    assert_eq!(output.status.code(), Some(0), "{}", show(&output));
    let calls = common::huawei::calls(&emulator, "clouddc");
    // The emulator logs every accepted batch reinstall call with its instances.
    let mut sizes: Vec<usize> = calls
        .iter()
        .filter_map(|call| call["instance_ids"].as_array().map(Vec::len))
        .collect();
    sizes.sort_unstable();
    assert_eq!(sizes, [2, 3, 10, 10], "{calls:#?}");
    assert_eq!(fleet::installs(&emulator, &spec), vec![1; 25]);
}

/// Two operators (two working copies, two state files) apply the same 20 servers at once:
/// each server is reinstalled exactly once, and the loser names every server it left alone
/// (moved since its plan, refused by the API as already installing, or blocked in its plan).
#[test]
fn two_concurrent_applies_never_reinstall_a_server_twice() {
    let mut spec = Spec::new(Kind::Zenlayer, 20);
    spec.install_seconds = 1.5;
    spec.policy = "  rollout: {canary: 0, max_parallel: 20, max_failures: 20}\n".to_string();
    let (first, emulator) = fleet::setup(&spec);
    let second = tempfile::tempdir().unwrap();
    std::fs::copy(
        first.path().join("reimage.yaml"),
        second.path().join("reimage.yaml"),
    )
    .unwrap();
    // Calls take a while to act, so both operators' plans see the fleet untouched.
    emulator.arm(json!({"clear": true, "rules": [
        {"provider": "zenlayer-bmc", "call": "reinstall", "fault": "latency", "seconds": 0.5}
    ]}));
    let spawn = |dir: &Path| {
        let mut command = fleet::command(dir);
        command
            .args(["apply", "--auto-approve", "--json"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let a = spawn(first.path());
    let b = spawn(second.path());
    let a = a.wait_with_output().unwrap();
    let b = b.wait_with_output().unwrap();
    let both = format!("{}\n----\n{}", show(&a), show(&b));
    assert_eq!(fleet::installs(&emulator, &spec), vec![1; 20], "{both}");
    let events = |output: &Output| -> Vec<serde_json::Value> {
        stdout_of(output)
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    };
    let named = |output: &Output, kinds: &[&str]| -> Vec<String> {
        events(output)
            .iter()
            .filter(|event| kinds.contains(&event["event"].as_str().unwrap_or("")))
            .filter(|event| event["event"] != "failed" || event["outcome"] == "refused")
            .filter_map(|event| event["server"].as_str().map(str::to_string))
            .collect()
    };
    let done_a = named(&a, &["done"]);
    let done_b = named(&b, &["done"]);
    assert_eq!(done_a.len() + done_b.len(), 20, "{both}");
    for (winner, loser, loser_output) in [(&done_a, &done_b, &b), (&done_b, &done_a, &a)] {
        if loser.len() == 20 {
            continue;
        }
        // A plan with blocked servers is refused whole: it names them all and does nothing.
        let blocked = stdout_of(loser_output).contains("is blocked");
        let left_alone = named(loser_output, &["skipped", "failed", "not_started"]);
        for server in winner.iter() {
            assert!(
                blocked || left_alone.contains(server),
                "{server} was not reported by the loser: {both}"
            );
        }
        assert_ne!(loser_output.status.code(), Some(0), "{both}");
    }
}

/// A server that another operator reinstalled while this rollout was under way is left alone:
/// the re-read right before its call shows it moved since the plan.
#[test]
fn a_server_that_moved_during_the_rollout_is_skipped() {
    let mut spec = sequential_spec(3);
    spec.install_seconds = 1.5;
    let (first, emulator) = fleet::setup(&spec);
    let second = tempfile::tempdir().unwrap();
    std::fs::copy(
        first.path().join("reimage.yaml"),
        second.path().join("reimage.yaml"),
    )
    .unwrap();
    let mut command = fleet::command(first.path());
    let a = command
        .args(["apply", "--auto-approve"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Once the first operator's rollout is under way, a second one reinstalls s003 alone.
    for _ in 0..400 {
        if fleet::installs(&emulator, &spec)[0] == 1 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let b = apply(second.path(), Kind::Zenlayer, &["--target", "s003"]);
    assert_eq!(b.status.code(), Some(0), "{}", show(&b));
    let a = a.wait_with_output().unwrap();
    assert!(
        stderr_of(&a).contains(
            "s003: moved since the plan: skipped (it is already on the desired image img-new)"
        ),
        "{}",
        show(&a)
    );
    assert!(
        stdout_of(&a).contains("1 skipped (moved since the plan)"),
        "{}",
        show(&a)
    );
    assert_eq!(a.status.code(), Some(1));
    assert_eq!(fleet::installs(&emulator, &spec), vec![1, 1, 1]);
}

/// A call refused before acting (the server was already installing, shown late) is recorded as
/// refused, not failed, and the next plan does not reinstall the server once its image matches.
#[test]
fn a_refused_call_does_not_make_the_next_plan_reinstall_a_matching_server() {
    let mut spec = Spec::new(Kind::Zenlayer, 1);
    spec.install_seconds = 2.0;
    let (first, emulator) = fleet::setup(&spec);
    let second = tempfile::tempdir().unwrap();
    std::fs::copy(
        first.path().join("reimage.yaml"),
        second.path().join("reimage.yaml"),
    )
    .unwrap();
    // The first operator's install does not show for 1.2 s: the second one's plan and re-read
    // still see the old image, and its call is refused by the API (already installing).
    emulator.arm(json!({"clear": true, "rules": [
        {"provider": "zenlayer-bmc", "call": "reinstall", "fault": "late_status", "seconds": 1.2, "count": 1}
    ]}));
    let mut command = fleet::command(first.path());
    let a = command
        .args(["apply", "--auto-approve"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    for _ in 0..200 {
        if fleet::installs(&emulator, &spec) == [1] {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    let b = apply(second.path(), Kind::Zenlayer, &[]);
    assert_eq!(b.status.code(), Some(1), "{}", show(&b));
    assert!(stderr_of(&b).contains("REFUSED"), "{}", show(&b));
    let a = a.wait_with_output().unwrap();
    assert_eq!(a.status.code(), Some(0), "{}", show(&a));
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(second.path().join(".reimage/state.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        state["servers"]["s001"]["last_operation"]["outcome"], "refused",
        "{state:#}"
    );
    // The image now matches: the second operator's plan records it, never reinstalls it.
    let plan = fleet::reimage(second.path())
        .args(["plan", "--json"])
        .output()
        .unwrap();
    let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    assert_eq!(plan["servers"][0]["action"], "adopt", "{plan:#}");
    assert_eq!(fleet::installs(&emulator, &spec), vec![1]);
}

fn write_plan(dir: &Path) {
    let output = fleet::reimage(dir)
        .args(["plan", "-out", "plan.json"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", show(&output));
}

fn sequential_spec(count: usize) -> Spec {
    let mut spec = Spec::new(Kind::Zenlayer, count);
    spec.policy = "  rollout: {canary: 0, max_parallel: 1, max_failures: 10}\n".to_string();
    spec.install_seconds = 0.3;
    spec
}

/// `apply --resume` after a crash continues the plan and exits 0 once every planned server is
/// done; a second `--resume` then has nothing to resume.
#[test]
fn resume_after_a_crash_finishes_the_plan_and_exits_0_only_when_all_are_done() {
    let spec = sequential_spec(5);
    let (dir, emulator) = fleet::setup(&spec);
    write_plan(dir.path());
    // Writes per server: intent, called, outcome. The 5th write is s002's `called`: s001 is
    // done, s002 installing unwatched, s003-s005 never started.
    let crashed = fleet::reimage(dir.path())
        .args(["apply", "plan.json"])
        .env("REIMAGE_TEST_CRASH_AFTER_JOURNAL_WRITE", "5")
        .output()
        .unwrap();
    assert!(!crashed.status.success(), "{}", show(&crashed));
    assert_eq!(fleet::installs(&emulator, &spec), vec![1, 1, 0, 0, 0]);
    let resumed = fleet::reimage(dir.path())
        .args(["apply", "--resume", "plan.json"])
        .output()
        .unwrap();
    assert_eq!(resumed.status.code(), Some(0), "{}", show(&resumed));
    assert!(
        // s001 finished before the crash; s002's install, left unwatched, was settled by the
        // resume's reconciliation before the rest started.
        stdout_of(&resumed).contains("3 reinstalled")
            && stdout_of(&resumed).contains("earlier runs of this plan: 2 done, 0 not"),
        "{}",
        show(&resumed)
    );
    assert_eq!(fleet::installs(&emulator, &spec), vec![1; 5]);
}

/// `--resume` counts what an earlier run of the plan did: a server whose install failed then
/// keeps the exit code non-zero, and is not reinstalled again.
#[test]
fn resume_exits_non_zero_while_a_planned_server_is_not_done() {
    let spec = sequential_spec(4);
    let dir = tempfile::tempdir().unwrap();
    let mut servers: Vec<common::InventoryServer> = (1..=4)
        .map(|index| common::server(&Kind::Zenlayer.id(index), "img-old"))
        .collect();
    servers[1].fail_next_install = true;
    let emulator = Emulator::start(dir.path(), &common::inventory(&servers, 0.3));
    std::fs::write(
        dir.path().join("reimage.yaml"),
        spec.manifest(dir.path(), &emulator, "img-new"),
    )
    .unwrap();
    write_plan(dir.path());
    // The 6th write is s002's outcome (failed): then the process dies.
    let crashed = fleet::reimage(dir.path())
        .args(["apply", "plan.json"])
        .env("REIMAGE_TEST_CRASH_AFTER_JOURNAL_WRITE", "6")
        .output()
        .unwrap();
    assert!(!crashed.status.success());
    let resumed = fleet::reimage(dir.path())
        .args(["apply", "--resume", "plan.json"])
        .output()
        .unwrap();
    assert_eq!(resumed.status.code(), Some(1), "{}", show(&resumed));
    let text = show(&resumed);
    assert!(text.contains("2 reinstalled"), "{text}");
    assert!(
        text.contains("earlier runs of this plan: 1 done, 1 not"),
        "{text}"
    );
    assert!(
        text.contains("failed in an earlier run of this plan: s002"),
        "{text}"
    );
    assert_eq!(fleet::installs(&emulator, &spec), vec![1; 4]);
}
