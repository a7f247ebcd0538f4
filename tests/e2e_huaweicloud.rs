//! End to end: the real binary over real HTTP against a real emulator process (Huawei Cloud ECS
//! and CloudDC).

mod common;

use common::huawei::{self, PASSWORD, SK};
use common::{Emulator, stderr_of, stdout_of};

fn setup(inventory: &str) -> (tempfile::TempDir, Emulator) {
    let dir = tempfile::tempdir().unwrap();
    let emulator = Emulator::start(dir.path(), inventory);
    (dir, emulator)
}

fn write_manifest(dir: &std::path::Path, text: &str) {
    std::fs::write(dir.join("reimage.yaml"), text).unwrap();
}

fn run(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    let output = huawei::reimage(dir).args(args).output().unwrap();
    let all = format!("{}{}", stdout_of(&output), stderr_of(&output));
    for secret in [SK, PASSWORD] {
        assert!(!all.contains(secret), "{secret} leaked: {all}");
    }
    output
}

/// A key pair needs the IAM user that owns it (`userid` goes with `keyname`).
const KEY_DEFAULTS: &str = "  access: {ssh_key_id: kp-ops}\n  options: {user_id: u-ops}\n";
const PASSWORD_DEFAULTS: &str = "  access: {password: {env: TEST_HW_PW}}\n";

#[test]
fn ecs_change_os_then_reinstall_the_same_image() {
    let (dir, emulator) = setup(&huawei::inventory(
        &[
            ("ecs-1", "img-old", ""),
            ("ecs-2", "img-new", ", status: SHUTOFF"),
        ],
        &[],
        0.5,
    ));
    write_manifest(
        dir.path(),
        &huawei::manifest(
            "huaweicloud-ecs",
            &emulator,
            &[("web", "ecs-1", "img-new"), ("db", "ecs-2", "img-new")],
            KEY_DEFAULTS,
            "",
        ),
    );
    let plan = run(dir.path(), &["plan", "-detailed-exitcode"]);
    let text = stdout_of(&plan);
    assert_eq!(plan.status.code(), Some(2), "{text}{}", stderr_of(&plan));
    assert!(text.contains("# web will be reinstalled"), "{text}");
    assert!(
        text.contains("note: the OS is changed with changeos (v1, image without Cloud-Init)"),
        "{text}"
    );
    assert!(
        text.contains("note: the server is stopped before the reinstall (mode withStopServer)"),
        "{text}"
    );
    assert!(text.contains("# db will be adopted"), "{text}");

    let apply = run(dir.path(), &["apply", "--auto-approve"]);
    assert!(
        apply.status.success(),
        "{}{}",
        stdout_of(&apply),
        stderr_of(&apply)
    );
    assert!(
        stdout_of(&apply).contains("Apply complete! 1 reinstalled, 1 adopted, 0 failed"),
        "{}",
        stdout_of(&apply)
    );
    let web = huawei::server(&emulator, "ecs", "ecs-1");
    assert_eq!(web["image"], "img-new");
    assert_eq!(web["status"], "ACTIVE");
    let calls = huawei::calls(&emulator, "ecs");
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["call"], "changeos");
    assert_eq!(calls[0]["version"], "v1");
    assert_eq!(calls[0]["mode"], "withStopServer");
    assert_eq!(calls[0]["key_name"], "kp-ops");

    let again = run(dir.path(), &["plan", "-detailed-exitcode"]);
    assert_eq!(again.status.code(), Some(0), "{}", stdout_of(&again));

    // Same image, reinstall asked for: reinstallos, never changeos.
    let replace = run(dir.path(), &["apply", "--auto-approve", "--replace", "db"]);
    assert!(
        replace.status.success(),
        "{}{}",
        stdout_of(&replace),
        stderr_of(&replace)
    );
    let calls = huawei::calls(&emulator, "ecs");
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[1]["server_id"], "ecs-2");
    assert_eq!(calls[1]["call"], "reinstallos");
    assert_eq!(
        huawei::server(&emulator, "ecs", "ecs-2")["status"],
        "SHUTOFF"
    );
}

#[test]
fn ecs_blocks_unknown_locked_and_busy_servers_and_reports_a_failed_job() {
    let (dir, emulator) = setup(&huawei::inventory(
        &[
            ("ecs-1", "img-old", ", fail_next_install: true"),
            ("ecs-2", "img-old", ", locked: true"),
            ("ecs-3", "img-old", ", task_state: rebooting"),
        ],
        &[],
        0.3,
    ));
    write_manifest(
        dir.path(),
        &huawei::manifest(
            "huaweicloud-ecs",
            &emulator,
            &[
                ("fails", "ecs-1", "img-new"),
                ("locked", "ecs-2", "img-new"),
                ("busy", "ecs-3", "img-new"),
                ("ghost", "ecs-404", "img-new"),
            ],
            KEY_DEFAULTS,
            "",
        ),
    );
    let plan = run(dir.path(), &["plan"]);
    let text = stdout_of(&plan);
    assert_eq!(plan.status.code(), Some(1), "{text}");
    assert!(text.contains("# locked is blocked"), "{text}");
    assert!(text.contains("locked at ECS"), "{text}");
    assert!(text.contains("task state `rebooting`"), "{text}");
    assert!(text.contains("# ghost is blocked"), "{text}");
    assert!(
        text.contains("Plan: 1 to reinstall, 0 to adopt, 0 unchanged, 3 blocked."),
        "{text}"
    );

    let apply = run(
        dir.path(),
        &["apply", "--auto-approve", "--target", "fails"],
    );
    let out = format!("{}{}", stdout_of(&apply), stderr_of(&apply));
    assert_eq!(apply.status.code(), Some(1), "{out}");
    assert!(out.contains("ECS job"), "{out}");
    assert!(out.contains("failed (injected by the emulator)"), "{out}");
    assert_eq!(huawei::server(&emulator, "ecs", "ecs-1")["status"], "ERROR");
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join(".reimage/state.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        state["servers"]["fails"]["last_operation"]["outcome"],
        "failed"
    );
    // The failed server now reads ERROR: the next plan blocks it instead of retrying blindly.
    let plan = run(dir.path(), &["plan", "--target", "fails"]);
    assert_eq!(plan.status.code(), Some(1));
    assert!(
        stdout_of(&plan).contains("# fails is blocked"),
        "{}",
        stdout_of(&plan)
    );
}

#[test]
fn ecs_observe_rides_out_a_429_storm() {
    let (dir, emulator) = setup(&huawei::inventory(&[("ecs-1", "img-new", "")], &[], 0.3));
    write_manifest(
        dir.path(),
        &huawei::manifest(
            "huaweicloud-ecs",
            &emulator,
            &[("web", "ecs-1", "img-new")],
            KEY_DEFAULTS,
            "",
        ),
    );
    emulator.set_faults(serde_json::json!({"huaweicloud": {"status_429_next": 3}}));
    let plan = run(dir.path(), &["plan", "-detailed-exitcode"]);
    assert_eq!(
        plan.status.code(),
        Some(2),
        "{}{}",
        stdout_of(&plan),
        stderr_of(&plan)
    );
    assert!(
        stdout_of(&plan).contains("# web will be adopted"),
        "{}",
        stdout_of(&plan)
    );
    assert_eq!(
        emulator.state()["huaweicloud"]["faults"]["status_429_next"],
        0
    );
}

#[test]
fn ecs_validation_points_at_the_fields() {
    let (dir, emulator) = setup(&huawei::inventory(&[("ecs-1", "img-old", "")], &[], 0.3));
    let mut text = huawei::manifest(
        "huaweicloud-ecs",
        &emulator,
        &[("web", "ecs-1", "img-new")],
        PASSWORD_DEFAULTS,
        "    user_data: \"#cloud-config\\n\"\n    options: {cloud: otc, cloudinit: true}\n",
    );
    text = text.replace("TEST_HW_PW", "TEST_HW_WEAK");
    write_manifest(dir.path(), &text);
    let output = huawei::reimage(dir.path())
        .env("TEST_HW_WEAK", "weak-canary")
        .args(["validate"])
        .output()
        .unwrap();
    let out = format!("{}{}", stdout_of(&output), stderr_of(&output));
    assert_eq!(output.status.code(), Some(1), "{out}");
    assert!(
        out.contains("user data needs an image with Cloud-Init"),
        "{out}"
    );
    assert!(out.contains("did you mean `cloud_init`?"), "{out}");
    assert!(
        out.contains("Open Telekom Cloud takes no password"),
        "{out}"
    );
    assert!(!out.contains("weak-canary"), "{out}");
}

fn clouddc_ids(count: usize) -> Vec<String> {
    (1..=count).map(|n| format!("dc-{n:02}")).collect()
}

#[test]
fn clouddc_reinstalls_25_servers_in_3_calls() {
    let ids = clouddc_ids(25);
    let instances: Vec<(String, &str, &str)> =
        ids.iter().map(|id| (id.clone(), "dc-old", "")).collect();
    let (dir, emulator) = setup(&huawei::inventory(&[], &instances, 0.5));
    let servers: Vec<(String, String)> = ids
        .iter()
        .map(|id| (format!("bm-{id}"), id.clone()))
        .collect();
    let servers: Vec<(&str, &str, &str)> = servers
        .iter()
        .map(|(name, id)| (name.as_str(), id.as_str(), "dc-new"))
        .collect();
    write_manifest(
        dir.path(),
        &huawei::manifest(
            "huaweicloud-clouddc",
            &emulator,
            &servers,
            PASSWORD_DEFAULTS,
            "",
        ),
    );
    let apply = run(dir.path(), &["apply", "--auto-approve"]);
    assert!(
        apply.status.success(),
        "{}{}",
        stdout_of(&apply),
        stderr_of(&apply)
    );
    assert!(
        stdout_of(&apply).contains("Apply complete! 25 reinstalled"),
        "{}",
        stdout_of(&apply)
    );
    // The three calls run concurrently, so they may arrive in any order.
    let mut sizes: Vec<usize> = huawei::calls(&emulator, "clouddc")
        .iter()
        .map(|call| call["instance_ids"].as_array().unwrap().len())
        .collect();
    sizes.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(sizes, [10, 10, 5]);
    for id in &ids {
        assert_eq!(
            huawei::server(&emulator, "clouddc", id)["image"],
            "dc-new",
            "{id}"
        );
    }
    let again = run(dir.path(), &["plan", "-detailed-exitcode"]);
    assert_eq!(again.status.code(), Some(0), "{}", stdout_of(&again));
}

#[test]
fn clouddc_failed_installs_and_stopped_instances() {
    let (dir, emulator) = setup(&huawei::inventory(
        &[],
        &[
            ("dc-01".to_string(), "dc-old", ""),
            ("dc-02".to_string(), "dc-old", ", fail_next_install: true"),
            ("dc-03".to_string(), "dc-old", ", state: stopped"),
        ],
        0.3,
    ));
    write_manifest(
        dir.path(),
        &huawei::manifest(
            "huaweicloud-clouddc",
            &emulator,
            &[
                ("ok", "dc-01", "dc-new"),
                ("broken", "dc-02", "dc-new"),
                ("off", "dc-03", "dc-new"),
            ],
            PASSWORD_DEFAULTS,
            "",
        ),
    );
    let plan = run(dir.path(), &["plan"]);
    assert_eq!(plan.status.code(), Some(1));
    assert!(
        stdout_of(&plan).contains("CloudDC reinstalls only running instances"),
        "{}",
        stdout_of(&plan)
    );

    let apply = run(
        dir.path(),
        &[
            "apply",
            "--auto-approve",
            "--target",
            "ok",
            "--target",
            "broken",
        ],
    );
    let out = format!("{}{}", stdout_of(&apply), stderr_of(&apply));
    assert_eq!(apply.status.code(), Some(1), "{out}");
    assert!(out.contains("1 reinstalled"), "{out}");
    assert!(out.contains("CLOUDDC.EMULATOR.INSTALL_FAILED"), "{out}");
    // One call for both (same image and password).
    assert_eq!(huawei::calls(&emulator, "clouddc").len(), 1);
}

#[test]
fn examples_validate_and_plan_against_the_emulator() {
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    for name in ["huaweicloud-ecs.yaml", "huaweicloud-clouddc.yaml"] {
        // Copied with their inventory and secrets, so no run leaves state in the repository.
        let dir = tempfile::tempdir().unwrap();
        for file in [name, "huaweicloud-inventory.yaml"] {
            std::fs::copy(examples.join(file), dir.path().join(file)).unwrap();
        }
        std::fs::create_dir(dir.path().join("secrets")).unwrap();
        for secret in [
            "huaweicloud-access-key",
            "huaweicloud-secret-key",
            "huaweicloud-bm.password",
        ] {
            std::fs::copy(
                examples.join("secrets").join(secret),
                dir.path().join("secrets").join(secret),
            )
            .unwrap();
        }
        let validate = run(dir.path(), &["validate", "-f", name]);
        assert!(
            validate.status.success(),
            "{name}: {}{}",
            stdout_of(&validate),
            stderr_of(&validate)
        );
        let plan = run(dir.path(), &["plan", "-f", name, "-detailed-exitcode"]);
        let text = stdout_of(&plan);
        assert_eq!(
            plan.status.code(),
            Some(2),
            "{name}: {text}{}",
            stderr_of(&plan)
        );
        assert!(
            text.contains("Plan: 2 to reinstall, 1 to adopt, 0 unchanged, 0 blocked."),
            "{name}: {text}"
        );
    }
}
