//! End to end: the real binary over real HTTP against a real emulator process (EDIS KVM).

mod common;

use common::edis::*;
use common::{flat, stderr_of, stdout_of};

const FLEET: [(&str, &str, &str); 2] = [
    ("kvm_100001_1", "web-1", "debian-bullseye"),
    ("kvm_100002_1", "web-2", "debian-bullseye"),
];

fn setup(ttl: f64, install_seconds: f64) -> (tempfile::TempDir, EdisEmulator) {
    let dir = tempfile::tempdir().unwrap();
    let emulator = EdisEmulator::start(dir.path(), &inventory(&FLEET, ttl, install_seconds));
    (dir, emulator)
}

fn write_manifest(dir: &std::path::Path, emulator: &EdisEmulator, options: &str) {
    let text = manifest(
        dir,
        &emulator.auth_url,
        &[
            ("web-1", "kvm_100001_1", "debian-bookworm"),
            ("web-2", "kvm_100002_1", "debian-bookworm"),
        ],
        options,
    );
    std::fs::write(dir.join("reimage.yaml"), text).unwrap();
}

fn state_json(dir: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join(".reimage/state.json")).unwrap())
        .unwrap()
}

#[test]
fn the_first_plan_of_an_existing_fleet_blocks_every_vps_and_apply_wipes_nothing() {
    let (dir, emulator) = setup(3600.0, 0.5);
    write_manifest(dir.path(), &emulator, "");
    let plan = reimage(dir.path()).arg("plan").output().unwrap();
    let (out, err) = (stdout_of(&plan), stderr_of(&plan));
    assert_eq!(plan.status.code(), Some(1), "{out}{err}");
    assert!(out.contains("# web-1 is blocked"), "{out}");
    assert!(out.contains("# web-2 is blocked"), "{out}");
    assert!(
        out.contains("note: current OS not reported by EDIS; never applied by reimage"),
        "{out}"
    );
    assert!(out.contains("unknown current OS"), "{out}");
    assert!(
        out.contains("Plan: 0 to reinstall, 0 to adopt, 0 unchanged, 2 blocked."),
        "{out}"
    );
    // miette wraps long lines: compare with the wrapping undone.
    let err = flat(&err);
    assert!(
        err.contains("`reimage state adopt NAME --image IMAGE`"),
        "{err}"
    );
    assert!(err.contains("--replace NAME"), "{err}");

    let apply = reimage(dir.path())
        .args(["apply", "--auto-approve"])
        .output()
        .unwrap();
    assert_eq!(apply.status.code(), Some(1), "{}", stdout_of(&apply));
    assert_eq!(emulator.reinstall_count("kvm_100001_1"), 0);
    assert_eq!(emulator.reinstall_count("kvm_100002_1"), 0);
}

#[test]
fn adoption_is_recorded_and_the_plan_compares_with_the_record() {
    let (dir, emulator) = setup(3600.0, 0.5);
    write_manifest(dir.path(), &emulator, "");

    // web-1 already runs the desired image; web-2 runs an older one.
    let adopt = reimage(dir.path())
        .args(["state", "adopt", "web-1", "--image", "debian-bookworm"])
        .output()
        .unwrap();
    assert!(adopt.status.success(), "{}", stderr_of(&adopt));
    let out = stdout_of(&adopt);
    assert!(
        out.contains("Adopted `web-1` (edis-kvm `edis`, id kvm_100001_1)"),
        "{out}"
    );
    assert!(
        out.contains("recorded as running `debian-bookworm`"),
        "{out}"
    );
    assert!(out.contains("The machine was not touched."), "{out}");
    assert!(out.contains("the next plan shows no change"), "{out}");
    let adopt = reimage(dir.path())
        .args(["state", "adopt", "web-2", "--image", "debian-bullseye"])
        .output()
        .unwrap();
    assert!(adopt.status.success(), "{}", stderr_of(&adopt));
    assert!(stdout_of(&adopt).contains("the next plan will reinstall it"));

    let state = state_json(dir.path());
    let web1 = &state["servers"]["web-1"];
    assert_eq!(web1["image"], "debian-bookworm");
    assert_eq!(web1["cloud_id"], "kvm_100001_1");
    assert_eq!(web1["provider_type"], "edis-kvm");
    assert_eq!(web1["last_operation"]["kind"], "adopt");
    assert!(web1["input_digests"]["access"].is_string());
    assert_eq!(emulator.reinstall_count("kvm_100001_1"), 0);
    assert_eq!(emulator.reinstall_count("kvm_100002_1"), 0);

    // Adopting twice needs --force; an unknown name gets a suggestion.
    let again = reimage(dir.path())
        .args(["state", "adopt", "web-1", "--image", "debian-bookworm"])
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(1));
    assert!(
        stderr_of(&again).contains("--force"),
        "{}",
        stderr_of(&again)
    );
    let typo = reimage(dir.path())
        .args(["state", "adopt", "web-3", "--image", "debian-bookworm"])
        .output()
        .unwrap();
    assert_eq!(typo.status.code(), Some(1));
    assert!(
        stderr_of(&typo).contains("did you mean `web-1`?"),
        "{}",
        stderr_of(&typo)
    );

    let plan = reimage(dir.path())
        .args(["plan", "-detailed-exitcode"])
        .output()
        .unwrap();
    let out = stdout_of(&plan);
    assert_eq!(plan.status.code(), Some(2), "{out}{}", stderr_of(&plan));
    assert!(!out.contains("# web-1"), "web-1 matches its record: {out}");
    assert!(out.contains("# web-2 will be reinstalled"), "{out}");
    assert!(
        out.contains(r#"image: "debian-bullseye" -> "debian-bookworm""#),
        "{out}"
    );
    assert!(
        out.contains(
            "note: current OS not reported by EDIS; last applied by reimage: debian-bullseye \
             (recorded by adoption)"
        ),
        "{out}"
    );
    assert!(
        out.contains("Plan: 1 to reinstall, 0 to adopt, 1 unchanged, 0 blocked."),
        "{out}"
    );
    assert!(
        out.contains("image differs: recorded by reimage `debian-bullseye`"),
        "the before image is the record, not an observation: {out}"
    );

    // The JSON plan carries the notes and follows the published schema.
    let json = reimage(dir.path())
        .args(["plan", "--json"])
        .output()
        .unwrap();
    let document: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/plan.schema.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let validator = jsonschema::draft202012::new(&schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&document)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    let web2 = &document["servers"][1];
    assert_eq!(web2["reasons"][0]["kind"], "recorded_image_differs");
    assert_eq!(web2["observed"]["image"], serde_json::Value::Null);
    assert!(
        web2["notes"][0]
            .as_str()
            .unwrap()
            .starts_with("current OS not reported by EDIS")
    );

    let apply = reimage(dir.path())
        .args(["apply", "--auto-approve"])
        .timeout(std::time::Duration::from_secs(120))
        .output()
        .unwrap();
    assert!(
        apply.status.success(),
        "{}{}",
        stdout_of(&apply),
        stderr_of(&apply)
    );
    assert_eq!(
        emulator.reinstall_count("kvm_100001_1"),
        0,
        "adopted and matching: untouched"
    );
    assert_eq!(emulator.reinstall_count("kvm_100002_1"), 1);
    assert_eq!(emulator.vps("kvm_100002_1")["image"], "debian-bookworm");
    assert_eq!(
        state_json(dir.path())["servers"]["web-2"]["image"],
        "debian-bookworm"
    );

    let again = reimage(dir.path())
        .args(["plan", "-detailed-exitcode"])
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(0), "{}", stdout_of(&again));
    assert!(stdout_of(&again).contains("No changes."));
}

#[test]
fn replace_reinstalls_an_unrecorded_vps_with_the_password_intact_and_no_secret_leaks() {
    let (dir, emulator) = setup(3600.0, 0.5);
    write_manifest(dir.path(), &emulator, "");
    let plan = reimage(dir.path())
        .args([
            "plan",
            "--target",
            "web-1",
            "--replace",
            "web-1",
            "-out=plan.json",
        ])
        .output()
        .unwrap();
    let out = stdout_of(&plan);
    assert!(plan.status.success(), "{out}{}", stderr_of(&plan));
    assert!(out.contains("# web-1 will be reinstalled"), "{out}");
    assert!(out.contains("reinstall requested with --replace"), "{out}");
    assert!(
        out.contains(r#"image: (unknown) -> "debian-bookworm""#),
        "{out}"
    );
    assert!(out.contains("EDIS reports no install progress"), "{out}");

    let apply = reimage(dir.path())
        .args(["apply", "plan.json"])
        .env("REIMAGE_LOG", "debug")
        .timeout(std::time::Duration::from_secs(120))
        .output()
        .unwrap();
    assert!(
        apply.status.success(),
        "{}{}",
        stdout_of(&apply),
        stderr_of(&apply)
    );
    let progress = stderr_of(&apply);
    assert!(
        progress.contains("web-1: reinstalled: installing ")
            && progress.contains("completed (not verifiable by the provider)"),
        "{progress}"
    );
    assert_eq!(emulator.reinstall_count("kvm_100001_1"), 1);
    assert_eq!(emulator.reinstall_count("kvm_100002_1"), 0);
    let vps = emulator.vps("kvm_100001_1");
    assert_eq!(vps["image"], "debian-bookworm");
    // The root password with `+ & = %` arrived byte for byte, and so did the user data.
    use sha2::Digest;
    let expected = hex::encode(sha2::Sha256::digest(ROOT_PASSWORD.as_bytes()));
    assert_eq!(vps["last_password_sha256"], expected);
    assert_eq!(
        vps["last_user_data"],
        "#cloud-config\nruncmd: [\"echo a&b=c+d\"]\n"
    );
    let state = state_json(dir.path());
    assert_eq!(state["servers"]["web-1"]["image"], "debian-bookworm");
    assert_eq!(
        state["servers"]["web-1"]["last_operation"]["kind"],
        "reinstall"
    );

    let plan = reimage(dir.path())
        .args(["plan", "--target", "web-1", "-detailed-exitcode"])
        .output()
        .unwrap();
    assert_eq!(plan.status.code(), Some(0), "{}", stdout_of(&plan));

    // Canaries: neither password nor any ticket signature appears in any output (debug logs
    // included), the plan file or the state.
    let world: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("emulator-data/world.json")).unwrap(),
    )
    .unwrap();
    let signatures: Vec<String> = world["edis"]["tickets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|ticket| ticket["signature"].as_str().unwrap().to_string())
        .collect();
    assert!(!signatures.is_empty());
    assert!(stderr_of(&apply).contains("sending"), "debug logs are on");
    let texts = [
        out,
        stdout_of(&apply),
        stderr_of(&apply),
        std::fs::read_to_string(dir.path().join("plan.json")).unwrap(),
        std::fs::read_to_string(dir.path().join(".reimage/state.json")).unwrap(),
    ];
    for text in texts {
        assert!(
            !text.contains(ROOT_PASSWORD),
            "root password leaked: {text}"
        );
        assert!(
            !text.contains(ACCOUNT_PASSWORD),
            "account password leaked: {text}"
        );
        for signature in &signatures {
            assert!(
                !text.contains(signature.as_str()),
                "a ticket leaked: {text}"
            );
        }
    }
}

#[test]
fn tickets_are_renewed_in_the_middle_of_an_apply() {
    // Tickets live 1 s, an install takes 3 s: the apply outlives several tickets.
    let (dir, emulator) = setup(1.0, 3.0);
    write_manifest(dir.path(), &emulator, "");
    let apply = reimage(dir.path())
        .args([
            "apply",
            "--auto-approve",
            "--replace",
            "web-1",
            "--target",
            "web-1",
        ])
        .timeout(std::time::Duration::from_secs(120))
        .output()
        .unwrap();
    assert!(
        apply.status.success(),
        "{}{}",
        stdout_of(&apply),
        stderr_of(&apply)
    );
    assert_eq!(emulator.reinstall_count("kvm_100001_1"), 1);
    let auths = emulator.state()["auth_count"].as_u64().unwrap();
    assert!(
        auths >= 3,
        "only {auths} logins in a 3 s apply with 1 s tickets"
    );
}

#[test]
fn the_ssh_probe_connects_to_a_local_listener() {
    let (dir, emulator) = setup(3600.0, 0.5);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    write_manifest(
        dir.path(),
        &emulator,
        &format!("      ssh_probe:\n        web-1: \"{address}\"\n"),
    );
    let plan = reimage(dir.path())
        .args(["plan", "--target", "web-1", "--replace", "web-1"])
        .output()
        .unwrap();
    let out = stdout_of(&plan);
    assert!(out.contains(&format!("SSH at {address} answers")), "{out}");

    let apply = reimage(dir.path())
        .args([
            "apply",
            "--auto-approve",
            "--replace",
            "web-1",
            "--target",
            "web-1",
        ])
        .timeout(std::time::Duration::from_secs(120))
        .output()
        .unwrap();
    assert!(
        apply.status.success(),
        "{}{}",
        stdout_of(&apply),
        stderr_of(&apply)
    );
    let progress = stderr_of(&apply);
    // The probe is the server's health gate now: it runs after the install, as any gate.
    assert!(
        progress.contains(&format!(
            "health gate passed after 1 attempt(s) ({address} accepted a connection)"
        )),
        "{progress}"
    );
    // The probe's connection waits in the listener's queue.
    listener.set_nonblocking(true).unwrap();
    let (_stream, peer) = listener.accept().expect("the SSH probe never connected");
    assert!(peer.ip().is_loopback());
}

#[test]
fn the_example_validates_and_plans_against_the_emulator() {
    let dir = tempfile::tempdir().unwrap();
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    std::fs::create_dir_all(dir.path().join("secrets")).unwrap();
    for file in [
        "edis-kvm.yaml",
        "edis-kvm-inventory.yaml",
        "secrets/edis-email",
        "secrets/edis-password",
        "secrets/edis-root.password",
    ] {
        std::fs::copy(examples.join(file), dir.path().join(file)).unwrap();
    }
    let validate = reimage(dir.path())
        .args(["validate", "-f", "edis-kvm.yaml"])
        .output()
        .unwrap();
    assert!(validate.status.success(), "{}", stderr_of(&validate));

    // First plan: nothing is known about the fleet, so every VPS is blocked.
    let plan = reimage(dir.path())
        .args(["plan", "-f", "edis-kvm.yaml"])
        .output()
        .unwrap();
    let out = stdout_of(&plan);
    assert_eq!(plan.status.code(), Some(1), "{out}{}", stderr_of(&plan));
    assert!(
        out.contains("Plan: 0 to reinstall, 0 to adopt, 0 unchanged, 3 blocked."),
        "{out}"
    );

    // The workflow the example describes: adopt what runs now, then plan.
    for (name, image) in [
        ("web-01", "debian-bookworm"),
        ("web-02", "debian-bullseye"),
        ("db-01", "debian-bookworm"),
    ] {
        let adopt = reimage(dir.path())
            .args([
                "state",
                "adopt",
                name,
                "--image",
                image,
                "-f",
                "edis-kvm.yaml",
            ])
            .output()
            .unwrap();
        assert!(adopt.status.success(), "{name}: {}", stderr_of(&adopt));
    }
    let plan = reimage(dir.path())
        .args(["plan", "-f", "edis-kvm.yaml", "-detailed-exitcode"])
        .output()
        .unwrap();
    let out = stdout_of(&plan);
    assert_eq!(plan.status.code(), Some(2), "{out}{}", stderr_of(&plan));
    assert!(out.contains("# web-02 will be reinstalled"), "{out}");
    assert!(
        out.contains("Plan: 1 to reinstall, 0 to adopt, 2 unchanged, 0 blocked."),
        "{out}"
    );
}

#[test]
fn validate_enforces_edis_input_rules_without_quoting_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = manifest(
        dir.path(),
        "https://session.edisglobal.com",
        &[("web-1", "kvm_100001_1", "debian-bookworm")],
        "",
    );
    text.push_str(
        "    hostname: web-1.example.net\n    options:\n      ssh_probe: \"127.0.0.1:22\"\n",
    );
    std::fs::write(dir.path().join("reimage.yaml"), text).unwrap();
    let weak = "weak&pw";
    std::fs::write(dir.path().join("root.password"), format!("{weak}\n")).unwrap();
    let validate = reimage(dir.path()).arg("validate").output().unwrap();
    let err = stderr_of(&validate);
    assert_eq!(validate.status.code(), Some(1), "{err}");
    assert!(
        err.contains("the password does not meet reimage's rules for EDIS"),
        "{err}"
    );
    assert!(
        err.contains("EDIS's reinstall has no hostname field"),
        "{err}"
    );
    assert!(
        err.contains("unknown EDIS server option `ssh_probe`"),
        "{err}"
    );
    assert!(!err.contains(weak), "{err}");
}
