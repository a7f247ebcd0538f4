//! End to end: the real binary over real HTTP against a real emulator process (Zenlayer BMC).

mod common;

use common::*;

fn setup(servers: &[InventoryServer], install_seconds: f64) -> (tempfile::TempDir, Emulator) {
    let dir = tempfile::tempdir().unwrap();
    let emulator = Emulator::start(dir.path(), &inventory(servers, install_seconds));
    (dir, emulator)
}

fn write_manifest(dir: &std::path::Path, text: &str) {
    std::fs::write(dir.join("reimage.yaml"), text).unwrap();
}

#[test]
fn plan_apply_plan_converges_to_no_changes() {
    let (dir, emulator) = setup(&[server("1", "img-old"), server("2", "img-new")], 0.5);
    write_manifest(
        dir.path(),
        &manifest(
            &emulator.zenlayer,
            &[("web", "1", "img-new"), ("db", "2", "img-new")],
            "",
        ),
    );

    let plan = reimage(dir.path())
        .args(["plan", "-detailed-exitcode"])
        .output()
        .unwrap();
    let text = stdout_of(&plan);
    assert_eq!(plan.status.code(), Some(2), "{text}{}", stderr_of(&plan));
    assert!(text.contains("# web will be reinstalled"), "{text}");
    assert!(text.contains("wipes: system disk"), "{text}");
    assert!(
        text.contains(r#"image: "img-old" (Old OS) -> "img-new""#),
        "{text}"
    );
    assert!(text.contains("# db will be adopted"), "{text}");
    assert!(
        text.contains("Plan: 1 to reinstall, 1 to adopt, 0 unchanged, 0 blocked."),
        "{text}"
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
    assert!(stdout_of(&apply).contains("Apply complete! 1 reinstalled, 1 adopted, 0 failed"));
    assert_eq!(emulator.reinstall_count("1"), 1);
    assert_eq!(
        emulator.reinstall_count("2"),
        0,
        "adoption never touches the machine"
    );

    let again = reimage(dir.path())
        .args(["plan", "-detailed-exitcode"])
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(0), "{}", stdout_of(&again));
    assert!(stdout_of(&again).contains("No changes."));

    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join(".reimage/state.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(state["servers"]["web"]["image"], "img-new");
    assert_eq!(
        state["servers"]["web"]["last_operation"]["outcome"],
        "succeeded"
    );
    assert_eq!(state["servers"]["db"]["last_operation"]["kind"], "adopt");
}

#[test]
fn saved_plan_is_applied_exactly_and_refused_when_stale() {
    let (dir, emulator) = setup(&[server("1", "img-old"), server("2", "img-old")], 0.3);
    write_manifest(
        dir.path(),
        &manifest(
            &emulator.zenlayer,
            &[("a", "1", "img-new"), ("b", "2", "img-new")],
            "",
        ),
    );
    // Plan only `a`, then change `b` and the state behind the plan's back in different ways.
    let saved = reimage(dir.path())
        .args(["plan", "-out=only-a.json", "--target", "a"])
        .output()
        .unwrap();
    assert!(saved.status.success(), "{}", stderr_of(&saved));
    assert!(
        stderr_of(&saved)
            .contains("To perform exactly these actions, run:\n  reimage apply only-a.json"),
        "{}",
        stderr_of(&saved)
    );

    // 1. The server `a` itself changes at the provider (reinstalled by someone else, who keeps
    //    their own state file): the fingerprint moved.
    let other = reimage(dir.path())
        .args([
            "apply",
            "--auto-approve",
            "--target",
            "a",
            "--state",
            "other-state.json",
        ])
        .output()
        .unwrap();
    assert!(other.status.success(), "{}", stderr_of(&other));
    let refused = reimage(dir.path())
        .args(["apply", "only-a.json"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    let message = stderr_of(&refused);
    assert!(message.contains("stale"), "{message}");
    assert!(
        message.contains("server `a` changed at the provider"),
        "{message}"
    );
    assert_eq!(
        emulator.reinstall_count("1"),
        1,
        "the stale plan reinstalled nothing"
    );

    // 2. The state moved (another apply) since the plan.
    let fresh = reimage(dir.path())
        .args(["plan", "-out=b.json", "--target", "b"])
        .output()
        .unwrap();
    assert!(fresh.status.success(), "{}", stderr_of(&fresh));
    let moved = reimage(dir.path())
        .args(["apply", "--auto-approve", "--target", "a", "--replace", "a"])
        .output()
        .unwrap();
    assert!(moved.status.success(), "{}", stderr_of(&moved));
    let refused = reimage(dir.path())
        .args(["apply", "b.json"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr_of(&refused).contains("state serial is"),
        "{}",
        stderr_of(&refused)
    );
    assert_eq!(emulator.reinstall_count("2"), 0);

    // 3. The manifest changed since the plan (checked when `-f` is given).
    let fresh = reimage(dir.path())
        .args(["plan", "-out=b2.json", "--target", "b"])
        .output()
        .unwrap();
    assert!(fresh.status.success(), "{}", stderr_of(&fresh));
    let mut text = std::fs::read_to_string(dir.path().join("reimage.yaml")).unwrap();
    text.push_str("# an edit after review\n");
    write_manifest(dir.path(), &text);
    let refused = reimage(dir.path())
        .args(["apply", "b2.json", "-f", "reimage.yaml"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr_of(&refused).contains("the manifest files changed"),
        "{}",
        stderr_of(&refused)
    );
    assert_eq!(emulator.reinstall_count("2"), 0);

    // A current saved plan applies without a prompt and does exactly what it showed.
    let fresh = reimage(dir.path())
        .args(["plan", "-out=b3.json", "--target", "b"])
        .output()
        .unwrap();
    assert!(fresh.status.success());
    let applied = reimage(dir.path())
        .args(["apply", "b3.json"])
        .output()
        .unwrap();
    assert!(applied.status.success(), "{}", stderr_of(&applied));
    assert_eq!(emulator.reinstall_count("2"), 1);
    assert_eq!(emulator.reinstall_count("1"), 2);
}

/// A saved plan without changes says so, instead of offering to apply it.
#[test]
fn a_saved_plan_without_changes_says_there_is_nothing_to_apply() {
    let (dir, emulator) = setup(&[server("1", "img-new")], 0.3);
    write_manifest(
        dir.path(),
        &manifest(&emulator.zenlayer, &[("a", "1", "img-new")], ""),
    );
    let adopted = reimage(dir.path())
        .args(["apply", "--auto-approve"])
        .output()
        .unwrap();
    assert!(adopted.status.success(), "{}", stderr_of(&adopted));
    let saved = reimage(dir.path())
        .args(["plan", "-out=empty.json"])
        .output()
        .unwrap();
    assert!(saved.status.success(), "{}", stderr_of(&saved));
    let said = stderr_of(&saved);
    assert!(said.contains("Saved the plan to: empty.json"), "{said}");
    assert!(said.contains("It holds no changes"), "{said}");
    assert!(!said.contains("To perform exactly these actions"), "{said}");
    assert_eq!(emulator.reinstall_count("1"), 0);
}

#[test]
fn apply_without_a_terminal_or_auto_approve_changes_nothing() {
    let (dir, emulator) = setup(&[server("1", "img-old")], 0.2);
    write_manifest(
        dir.path(),
        &manifest(&emulator.zenlayer, &[("a", "1", "img-new")], ""),
    );
    let output = reimage(dir.path())
        .arg("apply")
        .write_stdin("yes\n")
        .timeout(std::time::Duration::from_secs(60))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let message = stderr_of(&output);
    assert!(
        message.contains("standard input is not a terminal"),
        "{message}"
    );
    assert!(message.contains("--auto-approve"), "{message}");
    assert_eq!(emulator.reinstall_count("1"), 0);
}

#[test]
fn install_failed_is_reported_and_recorded() {
    let mut failing = server("1", "img-old");
    failing.fail_next_install = true;
    let (dir, emulator) = setup(&[failing, server("2", "img-old")], 0.3);
    write_manifest(
        dir.path(),
        &manifest(
            &emulator.zenlayer,
            &[("bad", "1", "img-new"), ("good", "2", "img-new")],
            "",
        ),
    );
    // No canary and room for failures: both servers are tried.
    let output = reimage(dir.path())
        .args([
            "apply",
            "--auto-approve",
            "--canary",
            "0",
            "--max-failures",
            "5",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", stdout_of(&output));
    let summary = stdout_of(&output);
    assert!(
        summary.contains("Apply finished with errors. 1 reinstalled, 0 adopted, 1 failed"),
        "{summary}"
    );
    assert!(
        stderr_of(&output).contains("bad: FAILED"),
        "{}",
        stderr_of(&output)
    );
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join(".reimage/state.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        state["servers"]["bad"]["last_operation"]["outcome"],
        "failed"
    );
    assert!(
        state["servers"]["bad"]["last_operation"]["message"]
            .as_str()
            .unwrap()
            .contains("INSTALL_FAILED")
    );
    assert_eq!(
        state["servers"]["good"]["last_operation"]["outcome"],
        "succeeded"
    );

    // The failed machine is now INSTALL_FAILED: the next plan says it is blocked, exit 1.
    let plan = reimage(dir.path()).arg("plan").output().unwrap();
    assert_eq!(plan.status.code(), Some(1));
    assert!(
        stdout_of(&plan).contains("# bad is blocked"),
        "{}",
        stdout_of(&plan)
    );
    assert_eq!(emulator.reinstall_count("1"), 1);
}

#[test]
fn canary_secret_never_appears_in_outputs_plan_file_or_state() {
    const CANARY: &str = "Canary-S3cret=9";
    const CANARY_2: &str = "Canary-S3cret=8";
    let (dir, emulator) = setup(&[server("1", "img-old")], 0.2);
    let text = manifest(
        &emulator.zenlayer,
        &[("a", "1", "img-new")],
        "    access:\n      password: {env: CANARY_PASSWORD}\n",
    )
    .replace("  access:\n    ssh_key_id: key-test\n", "");
    write_manifest(dir.path(), &text);

    let mut everything = String::new();
    for (args, password) in [
        (vec!["validate"], CANARY),
        (vec!["plan", "-out=plan.json"], CANARY),
        (vec!["plan", "--json"], CANARY),
        (vec!["plan", "--markdown"], CANARY),
        (vec!["show", "plan.json"], CANARY),
        (vec!["apply", "plan.json"], CANARY),
        (vec!["plan"], CANARY_2),
        (vec!["apply", "--auto-approve"], CANARY_2),
        (vec!["plan", "--json"], CANARY_2),
    ] {
        let output = reimage(dir.path())
            .args(&args)
            .env("CANARY_PASSWORD", password)
            .env("REIMAGE_LOG", "debug")
            .output()
            .unwrap();
        everything.push_str(&stdout_of(&output));
        everything.push_str(&stderr_of(&output));
        if args == ["plan"] {
            assert!(
                stdout_of(&output).contains("password: (sensitive value changed)"),
                "{}",
                stdout_of(&output)
            );
        }
    }
    for file in [
        "plan.json",
        ".reimage/state.json",
        ".reimage/state.json.backup",
    ] {
        everything.push_str(&std::fs::read_to_string(dir.path().join(file)).unwrap());
    }
    for entry in std::fs::read_dir(dir.path().join("emulator-data")).unwrap() {
        everything.push_str(&std::fs::read_to_string(entry.unwrap().path()).unwrap_or_default());
    }
    assert!(everything.contains("Apply complete!"), "{everything}");
    for canary in [CANARY, CANARY_2] {
        assert!(!everything.contains(canary), "secret leaked:\n{everything}");
    }
    assert_eq!(emulator.reinstall_count("1"), 2);
}

#[test]
fn unknown_cloud_id_blocks_the_plan_and_no_plan_file_is_saved() {
    let (dir, emulator) = setup(&[server("1", "img-old")], 0.2);
    write_manifest(
        dir.path(),
        &manifest(
            &emulator.zenlayer,
            &[("a", "1", "img-new"), ("ghost", "404", "img-new")],
            "",
        ),
    );
    let output = reimage(dir.path())
        .args(["plan", "-out=p.json"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(stdout_of(&output).contains("# ghost is blocked"));
    assert!(
        stderr_of(&output).contains("ghost (id `404`): the provider does not know this cloud id"),
        "{}",
        stderr_of(&output)
    );
    assert!(!dir.path().join("p.json").exists());
}

#[test]
fn user_data_change_shows_a_unified_diff_and_reinstalls() {
    let (dir, emulator) = setup(&[server("1", "img-new")], 0.2);
    let with_user_data = |packages: &str| {
        manifest(
            &emulator.zenlayer,
            &[("a", "1", "img-new")],
            &format!("    user_data: |\n      #cloud-config\n      packages: [{packages}]\n"),
        )
    };
    write_manifest(dir.path(), &with_user_data("nginx"));
    let adopt = reimage(dir.path())
        .args(["apply", "--auto-approve"])
        .output()
        .unwrap();
    assert!(adopt.status.success(), "{}", stderr_of(&adopt));
    assert_eq!(emulator.reinstall_count("1"), 0);

    write_manifest(dir.path(), &with_user_data("nginx, htop"));
    let plan = reimage(dir.path()).arg("plan").output().unwrap();
    let text = stdout_of(&plan);
    assert!(text.contains("-packages: [nginx]"), "{text}");
    assert!(text.contains("+packages: [nginx, htop]"), "{text}");
    assert!(
        text.contains("user_data changed since the last apply"),
        "{text}"
    );
}

#[test]
fn validate_reports_errors_with_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("reimage.yaml"),
        "version: 1\nproviders:\n  zl:\n    type: zenlayer-bmc\nservers:\n  - name: a\n    id: \"1\"\n    os:\n      imgae: x\n",
    )
    .unwrap();
    let output = reimage(dir.path()).arg("validate").output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let message = stderr_of(&output);
    assert!(message.contains("reimage.yaml:9:7"), "{message}");
    assert!(message.contains("image"), "{message}");
}

#[test]
fn a_running_apply_holds_the_lock_and_a_second_command_names_it() {
    let (dir, emulator) = setup(&[server("1", "img-old")], 4.0);
    write_manifest(
        dir.path(),
        &manifest(&emulator.zenlayer, &[("a", "1", "img-new")], ""),
    );
    let mut first = std::process::Command::new(binary())
        .args(["apply", "--auto-approve"])
        .current_dir(dir.path())
        .env("TEST_ZL_KEY_ID", KEY_ID)
        .env("TEST_ZL_KEY_PASSWORD", KEY_PASSWORD)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the first apply has started its reinstall.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while emulator.reinstall_count("1") == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let second = reimage(dir.path()).arg("plan").output().unwrap();
    assert_eq!(second.status.code(), Some(1));
    let message = stderr_of(&second);
    let message = flat(&message);
    assert!(message.contains("is locked by"), "{message}");
    assert!(
        message.contains(&format!("pid {} (`reimage apply`)", first.id())),
        "{message}"
    );
    assert!(message.contains("lock ID"), "{message}");
    assert!(first.wait().unwrap().success());
}

fn schema_validator(name: &str) -> jsonschema::Validator {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("schemas")
            .join(name),
    )
    .unwrap();
    jsonschema::draft202012::new(&serde_json::from_str(&text).unwrap()).unwrap()
}

#[test]
fn json_outputs_follow_their_published_schemas() {
    let (dir, emulator) = setup(&[server("1", "img-old"), server("2", "img-new")], 0.2);
    write_manifest(
        dir.path(),
        &manifest(
            &emulator.zenlayer,
            &[("a", "1", "img-new"), ("b", "2", "img-new")],
            "    hostname: box\n    user_data: \"#!/bin/sh\\necho hi\\n\"\n",
        ),
    );
    let plan = reimage(dir.path())
        .args(["plan", "--json", "-out", "p.json"])
        .output()
        .unwrap();
    assert!(plan.status.success(), "{}", stderr_of(&plan));
    let document: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    let validator = schema_validator("plan.schema.json");
    let errors: Vec<String> = validator
        .iter_errors(&document)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    assert_eq!(document["summary"]["reinstall"], 1);
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("p.json")).unwrap()).unwrap();
    assert!(validator.is_valid(&saved));
    let shown = reimage(dir.path())
        .args(["show", "--json", "p.json"])
        .output()
        .unwrap();
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&shown.stdout).unwrap(),
        saved
    );

    let validate = reimage(dir.path())
        .args(["validate", "--json"])
        .output()
        .unwrap();
    let document: serde_json::Value = serde_json::from_slice(&validate.stdout).unwrap();
    assert!(
        schema_validator("validate.schema.json").is_valid(&document),
        "{document}"
    );
    assert_eq!(document["valid"], true);

    std::fs::write(dir.path().join("bad.yaml"), "version: 2\nservers: 3\n").unwrap();
    let invalid = reimage(dir.path())
        .args(["validate", "--json", "-f", "bad.yaml"])
        .output()
        .unwrap();
    assert_eq!(invalid.status.code(), Some(1));
    let document: serde_json::Value = serde_json::from_slice(&invalid.stdout).unwrap();
    assert!(
        schema_validator("validate.schema.json").is_valid(&document),
        "{document}"
    );
    assert_eq!(document["valid"], false);
    assert!(document["error_count"].as_u64().unwrap() >= 2, "{document}");
}

#[test]
fn colour_only_when_asked_for_and_never_with_no_color() {
    let (dir, emulator) = setup(&[server("1", "img-old")], 0.2);
    write_manifest(
        dir.path(),
        &manifest(&emulator.zenlayer, &[("a", "1", "img-new")], ""),
    );
    // Not a terminal: plain text.
    let plain = reimage(dir.path())
        .arg("plan")
        .env_remove("NO_COLOR")
        .output()
        .unwrap();
    assert!(
        !stdout_of(&plain).contains('\u{1b}'),
        "{}",
        stdout_of(&plain)
    );
    // Forced (as a terminal would get): styled.
    let forced = reimage(dir.path())
        .arg("plan")
        .env_remove("NO_COLOR")
        .env("CLICOLOR_FORCE", "1")
        .output()
        .unwrap();
    assert!(
        stdout_of(&forced).contains('\u{1b}'),
        "{}",
        stdout_of(&forced)
    );
    // NO_COLOR: plain again, even when colour is forced.
    let no_color = reimage(dir.path())
        .arg("plan")
        .env("NO_COLOR", "1")
        .env("CLICOLOR_FORCE", "1")
        .output()
        .unwrap();
    assert!(!stdout_of(&no_color).contains('\u{1b}'));
    assert!(stdout_of(&no_color).contains("# a will be reinstalled"));
}
