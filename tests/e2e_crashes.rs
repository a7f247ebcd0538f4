//! End to end: a seeded campaign of crashes per provider type. Each round flips the fleet's
//! desired image, kills `reimage apply` (an abort right after a chosen journal write, or a
//! `kill -9` at a seeded moment while installs run), then runs `apply` again until it
//! succeeds: every planned server must be reinstalled exactly once (the emulator's counts),
//! and no rerun may take longer than its deadlines.
//!
//! CI runs 8 rounds per provider type; `REIMAGE_CRASH_ROUNDS=24 cargo test --test e2e_crashes`
//! runs the whole campaign (24 kill points each, as documented in the README).

mod common;

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::fleet::{self, Kind, Spec};
use common::{Seeded, stderr_of};

fn rounds() -> usize {
    std::env::var("REIMAGE_CRASH_ROUNDS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(8)
}

fn spawn_apply(dir: &Path, crash_after_write: Option<u64>) -> Child {
    let mut command = fleet::command(dir);
    command
        .args(["apply", "--auto-approve"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(write) = crash_after_write {
        command.env("REIMAGE_TEST_CRASH_AFTER_JOURNAL_WRITE", write.to_string());
    }
    command.spawn().unwrap()
}

/// Waits for `child`, failing the test if it runs past `deadline` (a hang, not slowness: the
/// deadline is far beyond every wait the manifest allows).
fn wait_within(mut child: Child, deadline: Duration, what: &str) -> std::process::Output {
    let started = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if started.elapsed() > deadline {
            let _ = child.kill();
            let output = child.wait_with_output().unwrap();
            panic!(
                "{what} ran past its deadline of {}s:\n{}",
                deadline.as_secs(),
                stderr_of(&output)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn state_parses(dir: &Path) {
    let text = std::fs::read_to_string(dir.join(".reimage/state.json")).unwrap();
    let _: serde_json::Value = serde_json::from_str(&text).unwrap();
}

/// Journal writes one server's reinstall takes: intent, called, outcome; a JD server that runs
/// is stopped first (intent, outcome).
fn writes_per_server(spec: &Spec) -> u64 {
    if spec.kind == Kind::Jd && spec.running {
        5
    } else {
        3
    }
}

fn campaign(kind: Kind, seed: u64) {
    let mut spec = Spec::new(kind, 4);
    // No faults here: reads succeed, so a short grace is watched closely. EDIS shows an
    // install only while the VPS is off, which must outlast the grace.
    spec.start_grace = 1.5;
    spec.install_seconds = if kind == Kind::Edis { 2.5 } else { 0.8 };
    spec.policy = "  rollout: {canary: 1, max_parallel: 4, max_failures: 4}\n".to_string();
    let (dir, emulator) = fleet::setup(&spec);
    let (old, new) = kind.images();
    let mut random = Seeded(seed);
    let mut expected = vec![0u64; spec.count];
    // Every wait of a rerun is bounded by the manifest: grace, stop and install timeouts.
    let rerun_deadline = Duration::from_secs(240);
    let mut landed = 0;
    for round in 0..rounds() {
        let image = if round % 2 == 0 { new } else { old };
        std::fs::write(
            dir.path().join("reimage.yaml"),
            spec.manifest(dir.path(), &emulator, image),
        )
        .unwrap();
        let before = fleet::installs(&emulator, &spec);
        let crashed = if round % 2 == 0 {
            // An abort right after a chosen journal write: between any two writes.
            let total = writes_per_server(&spec) * spec.count as u64;
            let write = 1 + random.below(total);
            wait_within(
                spawn_apply(dir.path(), Some(write)),
                rerun_deadline,
                "the crashing apply",
            )
        } else {
            // kill -9 at a seeded moment once installs run (polling, or between calls).
            let mut child = spawn_apply(dir.path(), None);
            let started = Instant::now();
            while fleet::installs(&emulator, &spec) == before
                && started.elapsed() < Duration::from_secs(30)
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            std::thread::sleep(Duration::from_millis(random.below(900)));
            let _ = child.kill();
            child.wait_with_output().unwrap()
        };
        if !crashed.status.success() {
            landed += 1;
        }
        state_parses(dir.path());
        let mut converged = false;
        for attempt in 1..=4 {
            let rerun = wait_within(
                spawn_apply(dir.path(), None),
                rerun_deadline,
                &format!("rerun {attempt} of round {round}"),
            );
            state_parses(dir.path());
            if rerun.status.success() {
                converged = true;
                break;
            }
            eprintln!(
                "{kind:?} round {round}: rerun {attempt} exited {:?}:\n{}",
                rerun.status.code(),
                stderr_of(&rerun)
            );
        }
        assert!(converged, "{kind:?} round {round}: never converged");
        for count in &mut expected {
            *count += 1;
        }
        assert_eq!(
            fleet::installs(&emulator, &spec),
            expected,
            "{kind:?} round {round}: a planned server was not reinstalled exactly once"
        );
    }
    assert!(
        landed * 2 >= rounds(),
        "{kind:?}: only {landed} of {} crashes landed mid-apply",
        rounds()
    );
}

#[test]
fn zenlayer_crash_campaign() {
    campaign(Kind::Zenlayer, 11);
}

#[test]
fn huaweicloud_ecs_crash_campaign() {
    campaign(Kind::Ecs, 12);
}

#[test]
fn huaweicloud_clouddc_crash_campaign() {
    campaign(Kind::Clouddc, 13);
}

#[test]
fn edis_crash_campaign() {
    campaign(Kind::Edis, 14);
}

#[test]
fn jdcloud_crash_campaign_with_running_servers() {
    campaign(Kind::Jd, 15);
}
