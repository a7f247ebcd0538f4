//! Terraform's command-line habits against the real binary: `-no-color`, `-input=false`,
//! `-parallelism=N`, `version [-json]`, and Terraform options reimage does not have.

mod common;

use common::*;

fn setup() -> (tempfile::TempDir, Emulator) {
    let dir = tempfile::tempdir().unwrap();
    let emulator = Emulator::start(dir.path(), &inventory(&[server("1", "img-old")], 0.2));
    std::fs::write(
        dir.path().join("reimage.yaml"),
        manifest(
            &emulator.zenlayer,
            &[("a", "1", "img-new"), ("b", "2", "img-new")],
            "",
        ),
    )
    .unwrap();
    (dir, emulator)
}

#[test]
fn version_prints_like_terraform_and_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let text = reimage(dir.path()).arg("version").output().unwrap();
    assert!(text.status.success());
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        stdout_of(&text).starts_with(&format!("reimage v{version}\non ")),
        "{}",
        stdout_of(&text)
    );
    let json = reimage(dir.path())
        .args(["version", "-json"])
        .output()
        .unwrap();
    assert!(json.status.success());
    let document: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(document["reimage_version"], version);
    assert!(document["platform"].as_str().unwrap().contains('_'));
}

#[test]
fn no_color_wins_even_when_colour_is_forced() {
    let (dir, _emulator) = setup();
    for flag in ["-no-color", "--no-color"] {
        let output = reimage(dir.path())
            .args(["plan", flag])
            .env_remove("NO_COLOR")
            .env("CLICOLOR_FORCE", "1")
            .output()
            .unwrap();
        let all = format!("{}{}", stdout_of(&output), stderr_of(&output));
        assert!(all.contains("will be reinstalled"), "{flag}: {all}");
        assert!(!all.contains('\u{1b}'), "{flag}: {all}");
    }
}

#[test]
fn input_false_never_asks_and_changes_nothing() {
    let (dir, emulator) = setup();
    let output = reimage(dir.path())
        .args(["apply", "-input=false", "-target=a"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(
        flat(&stderr_of(&output)).contains("`-input=false` was given"),
        "{}",
        stderr_of(&output)
    );
    assert_eq!(emulator.reinstall_count("1"), 0);
    // `plan` accepts it too (it never asks).
    let plan = reimage(dir.path())
        .args(["plan", "-input=false", "-target=a"])
        .output()
        .unwrap();
    assert!(plan.status.success(), "{}", stderr_of(&plan));
}

#[test]
fn parallelism_is_max_parallel() {
    let (dir, _emulator) = setup();
    let output = reimage(dir.path())
        .args(["plan", "-target=a", "-json", "-canary=0", "-parallelism=7"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr_of(&output));
    let plan: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(plan["rollout"]["default"]["max_parallel"], 7);
}

#[test]
fn terraform_options_reimage_lacks_say_what_to_do_instead() {
    let dir = tempfile::tempdir().unwrap();
    for (args, expected) in [
        (&["plan", "-var", "x=1"][..], "`-var` is a Terraform option"),
        (
            &["apply", "-refresh=false"][..],
            "reads every server's current state",
        ),
        (
            &["plan", "-paralelism=2"][..],
            "did you mean `-parallelism`",
        ),
        (&["plan", "--no-colour"][..], "--no-color"),
    ] {
        let output = reimage(dir.path()).args(args).output().unwrap();
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        let err = stderr_of(&output);
        assert!(err.contains(expected), "{args:?}: {err}");
        // Never clap's reading of a single-dash word as a cluster of short flags.
        assert!(!err.contains("unexpected argument '-l'"), "{args:?}: {err}");
    }
}
