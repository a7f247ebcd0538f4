//! End to end with the PostgreSQL backend: the real binary, the emulator and a real
//! PostgreSQL server on loopback. Plan and apply through the database, two applies at once
//! (`-lock-timeout`), `kill -9` of the holder, resuming from the journal in PostgreSQL,
//! `force-unlock`, `state push`, the history, and the URL's password kept out of everything.
#![cfg(feature = "postgres")]

mod common;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::postgres::{TestDatabase, database};
use common::*;

/// A manifest for `count` servers (ids 1..=count, names s001…) wanting `image`, with
/// `backend` (YAML lines, or empty for the local file).
fn manifest_text(endpoint: &str, count: usize, image: &str, backend: &str) -> String {
    let mut text = format!(
        "version: 1\npolicy:\n  rollout: {{canary: 0, max_parallel: 5}}\nproviders:\n  zl:\n    type: zenlayer-bmc\n    endpoint: {endpoint}\n    poll_interval: 0.1\n    credentials:\n      access_key_id: {{env: TEST_ZL_KEY_ID}}\n      access_key_password: {{env: TEST_ZL_KEY_PASSWORD}}\n    options:\n      running_grace_seconds: 2\ndefaults:\n  provider: zl\n  os: {{image: {image}}}\n  access: {{ssh_key_id: key-test}}\n{backend}servers:\n"
    );
    for id in 1..=count {
        text.push_str(&format!("  - {{name: s{id:03}, id: \"{id}\"}}\n"));
    }
    text
}

fn postgres_backend(name: &str) -> String {
    format!("backend:\n  type: postgres\n  url: {{env: REIMAGE_PG_URL}}\n  name: {name}\n")
}

fn fleet(dir: &Path, count: usize, image: &str, install_seconds: f64) -> Emulator {
    let servers: Vec<InventoryServer> = (1..=count)
        .map(|id| server(&id.to_string(), image))
        .collect();
    Emulator::start(dir, &inventory(&servers, install_seconds))
}

fn write_manifest(dir: &Path, text: &str) {
    std::fs::write(dir.join("reimage.yaml"), text).unwrap();
}

/// `reimage ARGS` in `dir` with the database URL in the environment.
fn run(dir: &Path, url: &str, args: &[&str]) -> Output {
    reimage(dir)
        .env("REIMAGE_PG_URL", url)
        .args(args)
        .output()
        .unwrap()
}

/// `reimage ARGS` in the background, output captured.
fn spawn(dir: &Path, url: &str, args: &[&str], env: &[(&str, &str)]) -> Child {
    let mut command = Command::new(binary());
    command
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env("REIMAGE_PG_URL", url)
        .env("TEST_ZL_KEY_ID", KEY_ID)
        .env("TEST_ZL_KEY_PASSWORD", KEY_PASSWORD)
        .env_remove("REIMAGE_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, value) in env {
        command.env(name, value);
    }
    command.spawn().unwrap()
}

fn all_output(output: &Output) -> String {
    format!("{}{}", stdout_of(output), stderr_of(output))
}

/// Polls `done` every 50 ms for at most two minutes (a loaded machine is slow).
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The id in the lock holder row, once reimage's tables exist and someone holds the lock.
fn lock_id(db: &TestDatabase) -> Option<String> {
    let tables = db.value("SELECT to_regclass('reimage_lock') IS NOT NULL");
    if tables.as_deref() != Some("t") {
        return None;
    }
    db.value("SELECT id FROM reimage_lock")
}

fn counts(emulator: &Emulator, count: usize) -> Vec<u64> {
    (1..=count)
        .map(|id| emulator.reinstall_count(&id.to_string()))
        .collect()
}

#[test]
fn plan_apply_plan_through_postgres_keeps_the_password_out_of_everything() {
    let Some(db) = database("plan_apply_plan_through_postgres") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let emulator = fleet(dir.path(), 2, "img-old", 0.3);
    let runner_a = dir.path().join("runner-a");
    let runner_b = dir.path().join("runner-b");
    std::fs::create_dir_all(&runner_a).unwrap();
    std::fs::create_dir_all(&runner_b).unwrap();
    write_manifest(
        &runner_a,
        &manifest_text(
            &emulator.zenlayer,
            2,
            "img-new",
            &postgres_backend("fleet-a"),
        ),
    );
    let mut everything = String::new();

    let plan = reimage(&runner_a)
        .env("REIMAGE_PG_URL", &db.url)
        .env("REIMAGE_LOG", "debug")
        .args(["plan", "-out", "plan.json"])
        .output()
        .unwrap();
    everything.push_str(&all_output(&plan));
    assert!(plan.status.success(), "{}", all_output(&plan));
    assert!(
        stdout_of(&plan).contains("2 to reinstall"),
        "{}",
        stdout_of(&plan)
    );
    let plan_text = std::fs::read_to_string(runner_a.join("plan.json")).unwrap();
    let plan_json: serde_json::Value = serde_json::from_str(&plan_text).unwrap();
    assert_eq!(
        plan_json["backend"],
        serde_json::json!({"type": "postgres", "url": {"env": "REIMAGE_PG_URL"}, "name": "fleet-a"})
    );
    everything.push_str(&plan_text);

    // Another runner with only the plan file: the plan names the backend.
    std::fs::copy(runner_a.join("plan.json"), runner_b.join("plan.json")).unwrap();
    let apply = reimage(&runner_b)
        .env("REIMAGE_PG_URL", &db.url)
        .env("REIMAGE_LOG", "debug")
        .args(["apply", "plan.json"])
        .output()
        .unwrap();
    everything.push_str(&all_output(&apply));
    assert!(apply.status.success(), "{}", all_output(&apply));
    assert!(
        stdout_of(&apply).contains("Apply complete! 2 reinstalled"),
        "{}",
        stdout_of(&apply)
    );
    assert_eq!(counts(&emulator, 2), [1, 1]);

    let again = run(&runner_a, &db.url, &["plan", "--detailed-exitcode"]);
    everything.push_str(&all_output(&again));
    assert_eq!(again.status.code(), Some(0), "{}", all_output(&again));
    assert!(
        stdout_of(&again).contains("No changes."),
        "{}",
        stdout_of(&again)
    );

    // Nothing local: the state, journal and history are in the database.
    for runner in [&runner_a, &runner_b] {
        assert!(!runner.join(".reimage/state.json").exists());
    }
    assert_eq!(
        db.value("SELECT serial > 0 FROM reimage_state WHERE name = 'fleet-a'"),
        Some("t".into())
    );
    assert_eq!(
        db.value("SELECT count(*) FROM reimage_journal"),
        Some("0".into())
    );
    let history = db.query(
        "SELECT plan_id, outcome, servers->'s001'->>'outcome', user_name, host \
         FROM reimage_history WHERE state_name = 'fleet-a'",
    );
    assert_eq!(history.len(), 1, "one history row per apply: {history:?}");
    assert_eq!(history[0][0].as_deref(), plan_json["plan_id"].as_str());
    assert_eq!(history[0][1].as_deref(), Some("succeeded"));
    assert_eq!(history[0][2].as_deref(), Some("reinstalled"));

    // The password appears nowhere: output, debug logs, plan file, state, journal, history.
    for table in [
        "reimage_state",
        "reimage_history",
        "reimage_lock",
        "reimage_journal",
    ] {
        for row in db.query(&format!("SELECT t::text FROM {table} t")) {
            everything.push_str(row[0].as_deref().unwrap_or_default());
        }
    }
    assert!(everything.contains("DEBUG"), "debug logs were captured");
    assert!(
        everything.contains("postgres://postgres@127.0.0.1"),
        "the location is named (without the password)"
    );
    assert!(
        !everything.contains(&db.password),
        "the database password leaked"
    );
}

#[test]
fn two_applies_at_once_one_waits_within_the_lock_timeout() {
    let Some(db) = database("two_applies_at_once_one_waits_within_the_lock_timeout") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let emulator = fleet(dir.path(), 1, "img-old", 8.0);
    write_manifest(
        dir.path(),
        &manifest_text(
            &emulator.zenlayer,
            1,
            "img-new",
            &postgres_backend("default"),
        ),
    );
    // The first apply runs "in CI", so the others name its job.
    let first = spawn(
        dir.path(),
        &db.url,
        &["apply", "--auto-approve"],
        &[
            ("GITHUB_SERVER_URL", "https://github.example"),
            ("GITHUB_REPOSITORY", "acme/fleet"),
            ("GITHUB_RUN_ID", "7001"),
        ],
    );
    let first_pid = first.id().to_string();
    wait_until("the first apply to take the lock", || {
        lock_id(&db).is_some()
    });

    // A patient one waits in the background; an impatient one gives up after 1 s.
    let patient = spawn(
        dir.path(),
        &db.url,
        &["apply", "--auto-approve", "-lock-timeout=5m"],
        &[],
    );
    let impatient = run(
        dir.path(),
        &db.url,
        &["apply", "--auto-approve", "--lock-timeout", "1s"],
    );
    let said = flat(&stderr_of(&impatient));
    assert_eq!(impatient.status.code(), Some(1), "{said}");
    assert!(
        said.contains("Waiting up to 1s for the state lock, held by"),
        "{said}"
    );
    assert!(said.contains("is locked by"), "{said}");
    assert!(
        said.contains(&format!("pid {first_pid} (`reimage apply`)")),
        "{said}"
    );
    assert!(
        said.contains("https://github.example/acme/fleet/actions/runs/7001"),
        "{said}"
    );
    assert!(said.contains("(waited 1s)"), "{said}");

    let first = first.wait_with_output().unwrap();
    assert!(first.status.success(), "{}", all_output(&first));
    let patient = patient.wait_with_output().unwrap();
    let patient_said = all_output(&patient);
    assert!(patient.status.success(), "{patient_said}");
    assert!(
        patient_said.contains("Waiting up to 5m for the state lock"),
        "{patient_said}"
    );
    assert!(
        stdout_of(&patient).contains("No changes."),
        "{patient_said}"
    );
    assert_eq!(
        counts(&emulator, 1),
        [1],
        "one reinstall, by the first apply only"
    );
    assert_eq!(
        db.value("SELECT count(*) FROM reimage_lock"),
        Some("0".into())
    );
    // A history row per apply that held the lock; the one that gave up never held it.
    let outcomes = db.query("SELECT outcome, ci_job_url FROM reimage_history ORDER BY id");
    assert_eq!(
        outcomes,
        [
            [
                Some("succeeded".to_string()),
                Some("https://github.example/acme/fleet/actions/runs/7001".to_string())
            ],
            [Some("no_changes".to_string()), None]
        ]
    );
}

#[test]
fn kill_9_mid_apply_frees_the_lock_and_the_rerun_resumes_from_the_journal() {
    let Some(db) = database("kill_9_mid_apply_frees_the_lock") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let emulator = fleet(dir.path(), 3, "img-old", 6.0);
    write_manifest(
        dir.path(),
        &manifest_text(
            &emulator.zenlayer,
            3,
            "img-new",
            &postgres_backend("default"),
        ),
    );
    let plan = run(dir.path(), &db.url, &["plan", "-out", "plan.json"]);
    assert!(plan.status.success(), "{}", all_output(&plan));
    let mut apply = spawn(dir.path(), &db.url, &["apply", "plan.json"], &[]);
    wait_until("all three installs to be in flight", || {
        counts(&emulator, 3) == [1, 1, 1]
    });
    let id = lock_id(&db).expect("the apply holds the lock");

    // While the holder lives, force-unlock refuses.
    let refused = run(dir.path(), &db.url, &["force-unlock", &id, "-force"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        flat(&stderr_of(&refused)).contains("held by a live PostgreSQL session"),
        "{}",
        stderr_of(&refused)
    );

    apply.kill().unwrap(); // SIGKILL
    apply.wait().unwrap();
    let in_flight = db.value("SELECT count(DISTINCT server) FROM reimage_journal");
    assert_eq!(in_flight, Some("3".into()), "the intents are in PostgreSQL");

    // The lock went with the session; its description stays until removed or overwritten.
    let removed = run(dir.path(), &db.url, &["force-unlock", &id, "-force"]);
    let said = stdout_of(&removed);
    assert!(removed.status.success(), "{}", all_output(&removed));
    assert!(said.contains("no live session holds it"), "{said}");
    assert!(said.contains(&format!("lock ID {id}")), "{said}");
    assert_eq!(
        db.value("SELECT count(*) FROM reimage_lock"),
        Some("0".into())
    );

    let resumed = run(dir.path(), &db.url, &["apply", "--resume", "plan.json"]);
    assert!(resumed.status.success(), "{}", all_output(&resumed));
    let settled = run(dir.path(), &db.url, &["plan", "--detailed-exitcode"]);
    assert_eq!(settled.status.code(), Some(0), "{}", all_output(&settled));
    assert_eq!(
        counts(&emulator, 3),
        [1, 1, 1],
        "exactly one reinstall per server"
    );
    assert_eq!(
        db.value("SELECT count(*) FROM reimage_journal"),
        Some("0".into())
    );
    let outcomes = db.query(
        "SELECT outcome, servers->'s001'->>'outcome', plan_id IS NOT NULL FROM reimage_history",
    );
    assert_eq!(
        outcomes,
        [[
            Some("succeeded".to_string()),
            Some("reinstalled".to_string()),
            Some("t".to_string())
        ]],
        "the killed apply could not write its history; the resume did"
    );
}

#[test]
fn state_push_moves_a_local_state_and_its_journal_into_postgres() {
    let Some(db) = database("state_push_moves_a_local_state") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let emulator = fleet(dir.path(), 2, "img-old", 4.0);
    // A team's first apply, on a laptop with the local file, is killed mid-way.
    write_manifest(
        dir.path(),
        &manifest_text(&emulator.zenlayer, 2, "img-new", ""),
    );
    let mut apply = spawn(dir.path(), &db.url, &["apply", "--auto-approve"], &[]);
    wait_until("both installs to be in flight", || {
        counts(&emulator, 2) == [1, 1]
    });
    apply.kill().unwrap();
    apply.wait().unwrap();
    let journal = dir.path().join(".reimage/state.json.journal");
    assert!(
        std::fs::read_to_string(&journal)
            .unwrap()
            .contains("intent")
    );

    // The team moves to PostgreSQL.
    write_manifest(
        dir.path(),
        &manifest_text(
            &emulator.zenlayer,
            2,
            "img-new",
            &postgres_backend("default"),
        ),
    );
    let pushed = run(dir.path(), &db.url, &["state", "push", "--json"]);
    assert!(pushed.status.success(), "{}", all_output(&pushed));
    let report: serde_json::Value = serde_json::from_str(&stdout_of(&pushed)).unwrap();
    assert!(report["journal_entries"].as_u64().unwrap() >= 2, "{report}");
    assert!(
        report["to"].as_str().unwrap().starts_with("postgres://"),
        "{report}"
    );
    assert!(!journal.exists() && !dir.path().join(".reimage/state.json").exists());
    assert!(dir.path().join(".reimage/state.json.pushed").exists());
    assert_eq!(
        db.value("SELECT count(DISTINCT server) FROM reimage_journal"),
        Some("2".into())
    );
    assert!(!stdout_of(&pushed).contains(&db.password));

    // Nothing left to push, and the alias says the same.
    let again = run(dir.path(), &db.url, &["state", "migrate"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        flat(&stderr_of(&again)).contains("nothing to push"),
        "{}",
        stderr_of(&again)
    );

    // The next apply, through PostgreSQL, settles the installs the killed one started.
    let finish = run(dir.path(), &db.url, &["apply", "--auto-approve"]);
    assert!(finish.status.success(), "{}", all_output(&finish));
    let settled = run(dir.path(), &db.url, &["plan", "--detailed-exitcode"]);
    assert_eq!(settled.status.code(), Some(0), "{}", all_output(&settled));
    assert_eq!(
        counts(&emulator, 2),
        [1, 1],
        "exactly one reinstall per server"
    );

    // Another fleet's local state is not pushed over this one.
    let other = tempfile::tempdir().unwrap();
    let other_emulator = fleet(other.path(), 1, "img-new", 0.2);
    write_manifest(
        other.path(),
        &manifest_text(&other_emulator.zenlayer, 1, "img-new", ""),
    );
    let local = run(other.path(), &db.url, &["apply", "--auto-approve"]);
    assert!(local.status.success(), "{}", all_output(&local));
    write_manifest(
        other.path(),
        &manifest_text(
            &other_emulator.zenlayer,
            1,
            "img-new",
            &postgres_backend("default"),
        ),
    );
    let refused = run(other.path(), &db.url, &["state", "push"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        flat(&stderr_of(&refused)).contains("already holds a state of another lineage"),
        "{}",
        stderr_of(&refused)
    );
    assert!(
        other.path().join(".reimage/state.json").exists(),
        "nothing moved"
    );
}

#[test]
fn the_local_backend_waits_for_its_lock_and_keeps_a_private_history() {
    let dir = tempfile::tempdir().unwrap();
    let emulator = fleet(dir.path(), 1, "img-old", 6.0);
    write_manifest(
        dir.path(),
        &manifest_text(&emulator.zenlayer, 1, "img-new", ""),
    );
    let lock_file = dir.path().join(".reimage/state.json.lock");
    let mut first = spawn(dir.path(), "", &["apply", "--auto-approve"], &[]);
    wait_until("the first apply to take the lock", || {
        std::fs::read_to_string(&lock_file).is_ok_and(|text| text.contains("reimage apply"))
    });
    let impatient = run(dir.path(), "", &["plan", "-lock-timeout=500ms"]);
    let said = flat(&stderr_of(&impatient));
    assert_eq!(impatient.status.code(), Some(1), "{said}");
    assert!(
        said.contains("Waiting up to 500ms for the state lock"),
        "{said}"
    );
    assert!(said.contains(&format!("pid {}", first.id())), "{said}");
    let description: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&lock_file).unwrap()).unwrap();
    let id = description["id"].as_str().unwrap().to_string();

    // kill -9: the lock dies with the process, its description stays.
    first.kill().unwrap();
    first.wait().unwrap();
    assert!(std::fs::read_to_string(&lock_file).unwrap().contains(&id));
    let unlocked = run(dir.path(), "", &["force-unlock", &id, "-force"]);
    let said = stdout_of(&unlocked);
    assert!(unlocked.status.success(), "{}", all_output(&unlocked));
    assert!(said.contains("dies with its process"), "{said}");
    assert!(said.contains("Removed the description"), "{said}");
    assert_eq!(std::fs::read_to_string(&lock_file).unwrap(), "");

    let finish = run(dir.path(), "", &["apply", "--auto-approve"]);
    assert!(finish.status.success(), "{}", all_output(&finish));
    let history = dir.path().join(".reimage/state.json.history");
    let text = std::fs::read_to_string(&history).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
    let entry: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    // The install the killed apply started was settled, then nothing was left to do.
    assert_eq!(entry["outcome"], "no_changes", "{entry}");
    assert_eq!(
        entry["servers"]["s001"]["outcome"], "reinstalled",
        "{entry}"
    );
    assert_eq!(entry["command"], "reimage apply");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&history).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(counts(&emulator, 1), [1]);
}

#[test]
fn tls_to_postgres_verifies_the_server_certificate_against_the_trusted_roots() {
    let Some(db) = database("tls_to_postgres_verifies_the_server_certificate") else {
        return;
    };
    let Some(ca_file) = db.ca_file.clone() else {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED tls_to_postgres_verifies_the_server_certificate: the test server has no TLS \
             (it was not started by the harness, or openssl is missing)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let emulator = fleet(dir.path(), 1, "img-new", 0.2);
    write_manifest(
        dir.path(),
        &manifest_text(
            &emulator.zenlayer,
            1,
            "img-new",
            &postgres_backend("default"),
        ),
    );
    let verify_full = db.url.replace("sslmode=disable", "sslmode=verify-full");
    assert_ne!(verify_full, db.url);

    // Trusting the test CA: a verified TLS connection.
    let trusted = reimage(dir.path())
        .env("REIMAGE_PG_URL", &verify_full)
        .env("SSL_CERT_FILE", &ca_file)
        .args(["plan"])
        .output()
        .unwrap();
    assert!(trusted.status.success(), "{}", all_output(&trusted));

    // Trusting another CA only: the server's certificate is refused, with `prefer` too (the
    // server offers TLS, so TLS it is, verified).
    let other_ca = dir.path().join("other-ca.pem");
    let made = std::process::Command::new("openssl")
        .current_dir(dir.path())
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=another CA",
            "-keyout",
            "other-ca.key",
            "-out",
            "other-ca.pem",
        ])
        .output()
        .unwrap();
    assert!(made.status.success());
    for url in [
        verify_full.clone(),
        db.url.replace("sslmode=disable", "sslmode=prefer"),
    ] {
        let untrusted = reimage(dir.path())
            .env("REIMAGE_PG_URL", &url)
            .env("SSL_CERT_FILE", &other_ca)
            .args(["plan"])
            .output()
            .unwrap();
        let said = flat(&stderr_of(&untrusted));
        assert_eq!(untrusted.status.code(), Some(1), "{said}");
        assert!(said.contains("certificate"), "{said}");
        assert!(!said.contains(&db.password), "{said}");
    }
}
