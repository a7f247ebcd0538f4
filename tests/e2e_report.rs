//! End to end: `reimage report` after an apply with a canary, a failed install (with the
//! provider's request id) and a failed health gate: the JSON figures, and the HTML page opened
//! in a real headless browser (Debian's `chromium`), which must draw the timeline (bars present
//! and sized, measured by the page itself) and gives a screenshot kept under `target/tmp/`.
//! Without chromium the browser part is skipped, saying so; with `CI=true` it fails.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

fn fleet(dir: &Path) -> Emulator {
    let mut servers: Vec<InventoryServer> = (1..=5)
        .map(|id| server(&id.to_string(), "img-old"))
        .collect();
    servers[2].fail_next_install = true;
    let emulator = Emulator::start(dir, &inventory(&servers, 0.3));
    let mut text = format!(
        "version: 1\npolicy:\n  rollout: {{canary: 1, max_parallel: 2, max_failures: 3}}\nproviders:\n  zl:\n    type: zenlayer-bmc\n    endpoint: {}\n    poll_interval: 0.1\n    credentials:\n      access_key_id: {{env: TEST_ZL_KEY_ID}}\n      access_key_password: {{env: TEST_ZL_KEY_PASSWORD}}\n    options:\n      running_grace_seconds: 2\ndefaults:\n  provider: zl\n  os: {{image: img-new}}\n  access: {{ssh_key_id: key-test}}\n  health: {{command: \"test \\\"$REIMAGE_SERVER\\\" != s4\", attempts: 2, interval: 0.1}}\nservers:\n",
        emulator.zenlayer
    );
    for id in 1..=5 {
        text.push_str(&format!("  - {{name: s{id}, id: \"{id}\"}}\n"));
    }
    std::fs::write(dir.join("reimage.yaml"), text).unwrap();
    emulator
}

fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

/// Headless chromium with the flags this sandbox needs and a fresh profile.
fn browser(binary: &Path, profile: &Path) -> Command {
    let mut command = Command::new(binary);
    command.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
    ]);
    command.arg(format!("--user-data-dir={}", profile.display()));
    command
}

/// Width and height from a PNG's IHDR chunk.
fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    assert_eq!(&bytes[12..16], b"IHDR");
    let word =
        |at: usize| u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    (word(16), word(20))
}

#[test]
fn the_report_draws_the_rollout_in_a_real_browser() {
    let dir = tempfile::tempdir().unwrap();
    let _emulator = fleet(dir.path());
    let apply = reimage(dir.path())
        .args(["apply", "--auto-approve"])
        .output()
        .unwrap();
    assert_eq!(apply.status.code(), Some(1), "{}", stderr_of(&apply));

    let json = reimage(dir.path())
        .args(["report", "--json"])
        .output()
        .unwrap();
    assert!(json.status.success(), "{}", stderr_of(&json));
    let report: serde_json::Value = serde_json::from_str(&stdout_of(&json)).unwrap();
    let figures = &report["figures"];
    assert_eq!(figures["servers"], 5);
    assert_eq!(figures["reinstalled"], 3);
    assert_eq!(figures["failed"], 1);
    assert_eq!(figures["gate_failed"], 1);
    let waves = report["waves"].as_array().unwrap();
    assert_eq!(waves.len(), 2);
    assert_eq!(waves[0]["canary"], true);
    let row = |name: &str| {
        report["servers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|row| row["server"] == name)
            .unwrap()
            .clone()
    };
    let failed = row("s3");
    assert_eq!(failed["outcome"], "failed");
    let request_id = failed["request_id"]
        .as_str()
        .expect("the provider's request id");
    assert!(!request_id.is_empty());
    let phases = |name: &str| -> Vec<String> {
        row(name)["segments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|segment| segment["phase"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(phases("s1"), ["queued", "installing", "gate"]);
    assert_eq!(row("s4")["outcome"], "gate_failed");

    // The page, kept with its screenshot as test artifacts.
    let artifacts = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let page = artifacts.join("report.html");
    let written = reimage(dir.path())
        .args(["report", "--out"])
        .arg(&page)
        .output()
        .unwrap();
    assert!(written.status.success(), "{}", stderr_of(&written));
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(
        html.contains(request_id),
        "the failure shows its request id"
    );
    assert!(html.contains("INSTALL_FAILED") || html.contains("install failed"));

    let Some(binary) = chromium() else {
        if std::env::var("CI").is_ok_and(|value| value == "true") {
            panic!("chromium is not installed, and CI=true: `.ci/run` installs Debian's chromium");
        }
        eprintln!(
            "SKIPPED the browser part of the report test: no `chromium` on PATH (install Debian's \
             `chromium` package to run it)"
        );
        return;
    };
    let url = format!("file://{}", page.display());
    let profile = tempfile::tempdir().unwrap();
    let dom = browser(&binary, profile.path())
        .arg("--window-size=1280,900")
        .arg("--dump-dom")
        .arg(&url)
        .output()
        .unwrap();
    assert!(dom.status.success(), "{}", stderr_of(&dom));
    let dom = stdout_of(&dom);
    let drawn = dom
        .split("data-drawn=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("the page did not measure its timeline:\n{dom}"));
    let value = |key: &str| -> String {
        drawn
            .split(';')
            .find_map(|part| part.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("{key} missing in {drawn}"))
            .to_string()
    };
    let bars: usize = value("bars").parse().unwrap();
    // s1..s5: queued + installing for each, a gate for the four installed; no bar for none.
    assert!(bars >= 12, "{drawn}");
    assert_eq!(
        value("sized"),
        value("bars"),
        "every bar has a size: {drawn}"
    );
    assert_eq!(value("waves"), "2", "{drawn}");
    let (width, height) = value("timeline")
        .split_once('x')
        .map(|(w, h)| (w.parse::<u32>().unwrap(), h.parse::<u32>().unwrap()))
        .unwrap();
    assert!(width > 500 && height > 100, "{drawn}");

    let screenshot = artifacts.join("report.png");
    let _ = std::fs::remove_file(&screenshot);
    let shot = browser(&binary, profile.path())
        .arg("--window-size=1280,900")
        .arg(format!("--screenshot={}", screenshot.display()))
        .arg(&url)
        .output()
        .unwrap();
    assert!(shot.status.success(), "{}", stderr_of(&shot));
    let png = std::fs::read(&screenshot).unwrap();
    assert_eq!(png_size(&png), (1280, 900));
    // Not blank: far bigger than a screenshot of an empty page of the same size.
    let blank_page = artifacts.join("blank.html");
    std::fs::write(&blank_page, "<!doctype html><html><body></body></html>").unwrap();
    let blank_shot = artifacts.join("blank.png");
    let blank = browser(&binary, profile.path())
        .arg("--window-size=1280,900")
        .arg(format!("--screenshot={}", blank_shot.display()))
        .arg(format!("file://{}", blank_page.display()))
        .output()
        .unwrap();
    assert!(blank.status.success());
    let blank_len = std::fs::metadata(&blank_shot).unwrap().len();
    assert!(
        png.len() as u64 > blank_len * 4,
        "the screenshot ({} bytes) looks blank (an empty page: {blank_len} bytes)",
        png.len()
    );
    eprintln!("report screenshot: {}", screenshot.display());
}

#[test]
fn a_report_without_history_or_of_an_unknown_apply_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let none = reimage(dir.path())
        .args(["report", "--state", "nothing/state.json"])
        .output()
        .unwrap();
    assert_eq!(none.status.code(), Some(1));
    assert!(
        flat(&stderr_of(&none)).contains("has no apply yet"),
        "{}",
        stderr_of(&none)
    );
}
