//! End to end: the real binary over real HTTP against a real emulator process (JD Cloud CPS).

mod common;

use common::jdcloud::*;
use common::{Emulator, stderr_of, stdout_of};

fn setup(servers: &[JdServer], install_seconds: f64) -> (tempfile::TempDir, Emulator) {
    let dir = tempfile::tempdir().unwrap();
    let emulator = Emulator::start(dir.path(), &inventory(servers, install_seconds));
    (dir, emulator)
}

fn write_manifest(dir: &std::path::Path, text: &str) {
    std::fs::write(dir.join("reimage.yaml"), text).unwrap();
}

fn no_secrets(text: &str) {
    assert!(!text.contains(PASSWORD), "the password leaked:\n{text}");
    assert!(!text.contains(SK), "the secret key leaked:\n{text}");
}

fn run(dir: &std::path::Path, args: &[&str]) -> (Option<i32>, String, String) {
    let output = reimage(dir)
        .args(args)
        .timeout(std::time::Duration::from_secs(120))
        .output()
        .unwrap();
    let (stdout, stderr) = (stdout_of(&output), stderr_of(&output));
    no_secrets(&stdout);
    no_secrets(&stderr);
    (output.status.code(), stdout, stderr)
}

#[test]
fn a_running_server_is_stopped_then_reinstalled_and_the_plan_converges() {
    let (dir, emulator) = setup(
        &[
            jd_server("cps-run", "running", OLD_OS),
            jd_server("cps-off", "stopped", OLD_OS),
            jd_server("cps-same", "running", NEW_OS),
        ],
        0.5,
    );
    write_manifest(
        dir.path(),
        &manifest(
            &emulator,
            &[
                (
                    "web",
                    "cps-run",
                    NEW_OS,
                    "{allow_stop: true, os_name: Ubuntu 22.04}",
                ),
                ("db", "cps-off", NEW_OS, "{}"),
                ("ci", "cps-same", NEW_OS, "{}"),
            ],
        ),
    );
    let (code, plan, stderr) = run(
        dir.path(),
        &["plan", "-detailed-exitcode", "-out=plan.json"],
    );
    assert_eq!(code, Some(2), "{plan}{stderr}");
    assert!(
        plan.contains("# web will be stopped and reinstalled"),
        "{plan}"
    );
    assert!(
        plan.contains("note: the server is running: reimage stops it"),
        "{plan}"
    );
    assert!(plan.contains("# db will be reinstalled"), "{plan}");
    assert!(plan.contains("# ci will be adopted"), "{plan}");
    assert!(
        // The OS name JD reports stands beside its id.
        plan.contains(&format!(r#"image: "{OLD_OS}" (CentOS 7.9) -> "{NEW_OS}""#)),
        "{plan}"
    );
    // Default keepData: yes, so only the system disk is wiped.
    assert!(!plan.contains("DATA DISKS"), "{plan}");
    let saved = std::fs::read_to_string(dir.path().join("plan.json")).unwrap();
    assert!(
        saved.contains("\"stop-and-reinstall\""),
        "the plan file names the action"
    );
    no_secrets(&saved);

    let (code, stdout, stderr) = run(dir.path(), &["apply", "plan.json"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert_eq!(count(&emulator, "cps-run", "stop_count"), 1);
    assert_eq!(count(&emulator, "cps-run", "reinstall_count"), 1);
    assert_eq!(
        count(&emulator, "cps-off", "stop_count"),
        0,
        "already stopped"
    );
    assert_eq!(count(&emulator, "cps-off", "reinstall_count"), 1);
    assert_eq!(count(&emulator, "cps-same", "reinstall_count"), 0);
    for id in ["cps-run", "cps-off"] {
        let server = server_state(&emulator, id);
        assert_eq!(server["status"], "running", "{server}");
        assert_eq!(server["image"], NEW_OS, "{server}");
    }
    let state = emulator.state();
    for entry in state["jdcloud"]["reinstall_log"].as_array().unwrap() {
        assert_eq!(entry["keep_data"], "yes", "{entry}");
        assert_eq!(
            entry["sys_raid_type_id"], "r-sys-raid1",
            "the layout was repeated"
        );
        assert_eq!(entry["data_raid_type_id"], "r-data-noraid");
        assert_eq!(entry["az"], "cn-east-1a");
        assert_eq!(entry["client_token"].as_str().map(str::len), Some(32));
    }
    no_secrets(&state.to_string());
    let state_file = std::fs::read_to_string(dir.path().join(".reimage/state.json")).unwrap();
    no_secrets(&state_file);

    let (code, again, _) = run(dir.path(), &["plan", "-detailed-exitcode"]);
    assert_eq!(code, Some(0), "{again}");
    assert!(again.contains("No changes."), "{again}");
}

#[test]
fn a_running_server_without_allow_stop_is_blocked_and_untouched() {
    let (dir, emulator) = setup(&[jd_server("cps-run", "running", OLD_OS)], 0.3);
    write_manifest(
        dir.path(),
        &manifest(&emulator, &[("web", "cps-run", NEW_OS, "{}")]),
    );
    let (code, stdout, stderr) = run(dir.path(), &["plan"]);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("# web is blocked"), "{stdout}");
    let text = format!("{stdout}{stderr}");
    assert!(
        text.contains("JD Cloud reinstalls only stopped servers"),
        "{text}"
    );
    assert!(text.contains("allow_stop: true"), "{text}");
    let (code, _, _) = run(dir.path(), &["apply", "--auto-approve"]);
    assert_eq!(code, Some(1));
    assert_eq!(count(&emulator, "cps-run", "stop_count"), 0);
    assert_eq!(count(&emulator, "cps-run", "reinstall_count"), 0);
    assert_eq!(server_state(&emulator, "cps-run")["status"], "running");
}

#[test]
fn keep_data_false_is_shown_in_capitals_and_sent_as_no() {
    let (dir, emulator) = setup(&[jd_server("cps-off", "stopped", OLD_OS)], 0.3);
    write_manifest(
        dir.path(),
        &manifest(
            &emulator,
            &[("db", "cps-off", NEW_OS, "{keep_data: false}")],
        ),
    );
    let (code, plan, stderr) = run(dir.path(), &["plan", "-detailed-exitcode"]);
    assert_eq!(code, Some(2), "{plan}{stderr}");
    assert!(plan.contains("wipes: system disk, DATA DISKS"), "{plan}");
    assert!(
        plan.contains("KEEP_DATA IS FALSE: ALL DATA DISKS OF THIS SERVER WILL BE WIPED"),
        "{plan}"
    );
    let (code, json, _) = run(dir.path(), &["plan", "--json"]);
    assert_eq!(code, Some(0));
    assert!(json.contains("DATA DISKS"), "{json}");

    let (code, stdout, stderr) = run(dir.path(), &["apply", "--auto-approve"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert_eq!(count(&emulator, "cps-off", "data_wipe_count"), 1);
    assert_eq!(
        emulator.state()["jdcloud"]["reinstall_log"][0]["keep_data"],
        "no"
    );
}

#[test]
fn an_unknown_os_or_a_wrong_os_name_fails_the_plan() {
    let (dir, emulator) = setup(&[jd_server("cps-off", "stopped", OLD_OS)], 0.3);
    write_manifest(
        dir.path(),
        &manifest(&emulator, &[("db", "cps-off", "os-nope", "{}")]),
    );
    let (code, stdout, stderr) = run(dir.path(), &["plan"]);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains("unknown OS: osTypeId `os-nope`"),
        "{stderr}"
    );
    assert!(
        stderr.contains(NEW_OS),
        "the help lists what is offered: {stderr}"
    );
    write_manifest(
        dir.path(),
        &manifest(
            &emulator,
            &[("db", "cps-off", NEW_OS, "{os_name: CentOS 7.9}")],
        ),
    );
    let (code, _, stderr) = run(dir.path(), &["plan"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("/options/os_name"), "{stderr}");
    assert_eq!(count(&emulator, "cps-off", "reinstall_count"), 0);
}

#[test]
fn a_lost_reinstall_answer_is_checked_not_resent_and_retrying_the_step_reinstalls_once() {
    let (dir, emulator) = setup(&[jd_server("cps-off", "stopped", OLD_OS)], 0.5);
    write_manifest(
        dir.path(),
        &manifest(&emulator, &[("db", "cps-off", NEW_OS, "{}")]),
    );
    emulator.set_faults(serde_json::json!({
        "jdcloud": {"drop_connection_after_reinstall": ["cps-off"]}
    }));
    let (code, stdout, stderr) = run(dir.path(), &["apply", "--auto-approve"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    // The engine asked again with the same clientToken; JD answered without a second install.
    assert!(
        stderr.contains("the same request with its idempotency token cannot act twice"),
        "{stderr}"
    );
    assert_eq!(count(&emulator, "cps-off", "reinstall_count"), 1);

    // The same plan step sent again through the provider (as a retried or resumed apply would):
    // the deterministic clientToken makes JD answer as the first time, without a second install.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        std::fs::write(dir.path().join("ak"), AK).unwrap();
        std::fs::write(dir.path().join("sk"), SK).unwrap();
        let config: reimage::manifest::model::ProviderConfig =
            serde_json::from_value(serde_json::json!({
                "type": "jdcloud-cps",
                "endpoint": emulator.base,
                "region": "cn-east-1",
                "credentials": {
                    "access_key": {"file": dir.path().join("ak")},
                    "secret_key": {"file": dir.path().join("sk")},
                },
            }))
            .unwrap();
        let provider = reimage::provider::build(
            &reimage::manifest::DesiredProvider {
                name: "jd".to_string(),
                config,
            },
            None,
        )
        .unwrap();
        let stop = provider.stop("cps-off", "step-token-stop");
        stop.await.unwrap();
        // Wait for the stop so the second plan's reinstall is accepted.
        for _ in 0..100 {
            if server_state(&emulator, "cps-off")["status"] == "stopped" {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let request = reimage::provider::ReinstallRequest {
            server: "db".into(),
            cloud_id: "cps-off".into(),
            image: OLD_OS.into(),
            hostname: None,
            user_data: None,
            access: reimage::provider::ResolvedAccess::Password(secrecy::SecretString::from(
                PASSWORD.to_string(),
            )),
            options: serde_json::Map::new(),
            token: reimage::apply::step_token("plan-x", "db", "reinstall"),
            previous_image: Some(NEW_OS.into()),
        };
        for attempt in 0..3 {
            provider
                .reinstall(&request)
                .await
                .unwrap_or_else(|error| panic!("attempt {attempt}: {error}"));
        }
    });
    assert_eq!(
        count(&emulator, "cps-off", "reinstall_count"),
        2,
        "one per plan step"
    );
    // One replay from the engine's resend after the lost answer, two from the loop above.
    assert_eq!(emulator.state()["jdcloud"]["token_replays"], 3);
}

#[test]
fn a_failed_install_and_an_mfa_refusal_are_reported_and_recorded() {
    let mut protected = jd_server("cps-mfa", "running", OLD_OS);
    protected.extra = ", operation_protection: true";
    let mut failing = jd_server("cps-bad", "stopped", OLD_OS);
    failing.extra = ", fail_next_install: true";
    let (dir, emulator) = setup(&[failing, protected], 0.3);
    write_manifest(
        dir.path(),
        &manifest(
            &emulator,
            &[
                ("bad", "cps-bad", NEW_OS, "{}"),
                ("mfa", "cps-mfa", NEW_OS, "{allow_stop: true}"),
            ],
        ),
    );
    // One at a time: a failed canary would stop the other from starting.
    let (code, stdout, stderr) = run(dir.path(), &["apply", "--auto-approve", "--target", "bad"]);
    let text = format!("{stdout}{stderr}");
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("`error`"),
        "the failed install is named: {text}"
    );
    let (code, stdout, stderr) = run(dir.path(), &["apply", "--auto-approve", "--target", "mfa"]);
    let text = format!("{stdout}{stderr}");
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("operation protection (MFA)"), "{text}");
    assert!(text.contains("Turn off operation protection"), "{text}");
    assert_eq!(count(&emulator, "cps-mfa", "stop_count"), 0);
    assert_eq!(count(&emulator, "cps-mfa", "reinstall_count"), 0);
    assert_eq!(server_state(&emulator, "cps-bad")["status"], "error");
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join(".reimage/state.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        state["servers"]["bad"]["last_operation"]["outcome"], "failed",
        "{state}"
    );
    // The server in `error` now blocks the next plan.
    let (code, plan, _) = run(dir.path(), &["plan", "--target", "bad"]);
    assert_eq!(code, Some(1), "{plan}");
    assert!(plan.contains("# bad is blocked"), "{plan}");
}

#[test]
fn the_example_validates_and_plans_against_the_emulator() {
    let dir = tempfile::tempdir().unwrap();
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    std::fs::create_dir_all(dir.path().join("secrets")).unwrap();
    for file in [
        "jdcloud-cps.yaml",
        "jdcloud-cps-inventory.yaml",
        "secrets/jdcloud-access-key",
        "secrets/jdcloud-secret-key",
        "secrets/jdcloud-server.password",
    ] {
        std::fs::copy(examples.join(file), dir.path().join(file)).unwrap();
    }
    let (code, stdout, stderr) = run(dir.path(), &["validate", "-f", "jdcloud-cps.yaml"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let (code, plan, stderr) = run(
        dir.path(),
        &["plan", "-f", "jdcloud-cps.yaml", "-detailed-exitcode"],
    );
    assert_eq!(code, Some(2), "{plan}{stderr}");
    assert!(
        plan.contains("# web-01 will be stopped and reinstalled"),
        "{plan}"
    );
    assert!(plan.contains("wipes: system disk, DATA DISKS"), "{plan}");
    assert!(plan.contains("Plan: 2 to reinstall, 2 to adopt"), "{plan}");
}

#[test]
fn invalid_jd_options_are_validation_errors_with_pointers() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("reimage.yaml"),
        "version: 1\nproviders:\n  jd: {type: jdcloud-cps, region: cn-east-1}\nservers:\n  - name: a\n    id: cps-1\n    os: {image: os-1}\n    access: {ssh_key_id: kp-1}\n    options: {allowstop: true, keep_data: \"no\"}\n",
    )
    .unwrap();
    let (code, stdout, stderr) = run(dir.path(), &["validate"]);
    let text = format!("{stdout}{stderr}");
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("did you mean `allow_stop`"), "{text}");
    assert!(text.contains("`keep_data` must be true or false"), "{text}");
    assert!(text.contains("options.keypair_id"), "{text}");
}
