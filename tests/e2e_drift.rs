//! End to end: `reimage plan --drift` against the emulator: none after an apply, then a server
//! reinstalled outside this state (another state applies another image) and a recorded server
//! the provider no longer knows; exit codes, text, Markdown and JSON (checked against its
//! schema), and the manifest's changes listed apart.

mod common;

use std::path::Path;

use common::*;

fn validator(name: &str) -> jsonschema::Validator {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("schemas")
            .join(name),
    )
    .unwrap();
    jsonschema::draft202012::new(&serde_json::from_str(&text).unwrap()).unwrap()
}

#[test]
fn drift_is_found_named_and_kept_apart_from_manifest_changes() {
    let dir = tempfile::tempdir().unwrap();
    let servers: Vec<InventoryServer> = (1..=3)
        .map(|id| server(&id.to_string(), "img-old"))
        .collect();
    let emulator = Emulator::start(dir.path(), &inventory(&servers, 0.2));
    let fleet = [
        ("s1", "1", "img-new"),
        ("s2", "2", "img-new"),
        ("s3", "3", "img-new"),
    ];
    std::fs::write(
        dir.path().join("reimage.yaml"),
        manifest(&emulator.zenlayer, &fleet, ""),
    )
    .unwrap();
    let apply = reimage(dir.path())
        .args(["apply", "--auto-approve"])
        .output()
        .unwrap();
    assert!(apply.status.success(), "{}", stderr_of(&apply));

    let clean = reimage(dir.path())
        .args(["plan", "--drift"])
        .output()
        .unwrap();
    assert_eq!(clean.status.code(), Some(0), "{}", stderr_of(&clean));
    let text = stdout_of(&clean);
    assert!(text.contains("No drift"), "{text}");
    assert!(text.contains("Checked 3 recorded server(s)"), "{text}");
    assert!(text.contains("Manifest changes: none."), "{text}");

    // Someone else (another state) puts the old image back on s1.
    let other = manifest(&emulator.zenlayer, &[("s1", "1", "img-old")], "")
        .replace("servers:\n", "state: {path: other/state.json}\nservers:\n");
    std::fs::write(dir.path().join("other.yaml"), other).unwrap();
    let outside = reimage(dir.path())
        .args(["apply", "-f", "other.yaml", "--auto-approve"])
        .output()
        .unwrap();
    assert!(outside.status.success(), "{}", stderr_of(&outside));
    assert_eq!(emulator.reinstall_count("1"), 2);
    // And the state records a server whose id the provider does not know.
    let state_path = dir.path().join(".reimage/state.json");
    let mut state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state_path).unwrap()).unwrap();
    let mut ghost = state["servers"]["s3"].clone();
    ghost["cloud_id"] = "999".into();
    state["servers"]["ghost"] = ghost;
    std::fs::write(&state_path, state.to_string()).unwrap();
    let before = std::fs::read(&state_path).unwrap();

    let drift = reimage(dir.path())
        .args(["plan", "--drift"])
        .output()
        .unwrap();
    assert_eq!(drift.status.code(), Some(2), "{}", stderr_of(&drift));
    let text = stdout_of(&drift);
    assert!(
        text.contains("Drift: 2 server(s) differ from what reimage recorded"),
        "{text}"
    );
    assert!(
        text.contains(
            "s1 (zl `1`): image changed outside reimage: recorded `img-new`, observed `img-old`"
        ),
        "{text}"
    );
    assert!(
        text.contains("ghost (zl `999`): gone: the provider no longer knows id `999`"),
        "{text}"
    );
    // The manifest still wants img-new on s1, and no longer has `ghost`: changes, not drift.
    assert!(text.contains("Manifest changes (not drift"), "{text}");
    assert!(text.contains("  - s1: reinstall ("), "{text}");
    assert!(text.contains("  - ghost: forget ("), "{text}");
    assert_eq!(
        std::fs::read(&state_path).unwrap(),
        before,
        "a drift check writes nothing"
    );

    let json = reimage(dir.path())
        .args(["plan", "--drift", "--json"])
        .output()
        .unwrap();
    assert_eq!(json.status.code(), Some(2));
    let report: serde_json::Value = serde_json::from_str(&stdout_of(&json)).unwrap();
    let errors: Vec<String> = validator("drift.schema.json")
        .iter_errors(&report)
        .map(|error| error.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:?}\n{report:#}");
    let kinds: Vec<(&str, &str)> = report["drift"]
        .as_array()
        .unwrap()
        .iter()
        .map(|drift| {
            (
                drift["server"].as_str().unwrap(),
                drift["kind"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(kinds, [("ghost", "gone"), ("s1", "image_changed")]);
    assert_eq!(report["checked"], 4);

    let markdown = reimage(dir.path())
        .args(["plan", "--drift", "--markdown"])
        .output()
        .unwrap();
    assert_eq!(markdown.status.code(), Some(2));
    let text = stdout_of(&markdown);
    assert!(text.starts_with("### reimage drift check"), "{text}");
    assert!(
        text.contains("| `s1` | zl | `1` | **image_changed** | img-new | img-old |"),
        "{text}"
    );

    // An error is exit 1, never a silent "no drift".
    let broken = reimage(dir.path())
        .args(["plan", "--drift", "-f", "missing.yaml"])
        .output()
        .unwrap();
    assert_eq!(broken.status.code(), Some(1));
}
