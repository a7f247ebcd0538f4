//! End to end: saved plans as approval artifacts (signature, expiry, commit, markdown, the
//! GitHub step summary), protection recorded in the state, forgetting removed servers, and
//! `state list|show|rm`. The real binary against a real emulator process (Zenlayer BMC).

mod common;

use std::path::Path;
use std::process::Output;

use common::*;

/// A signing key that doubles as a canary: it must never show up anywhere.
const PLAN_KEY: &str = "Plan-Key-Canary-7f3a9c0e1b2d4f68";

fn setup(servers: &[InventoryServer]) -> (tempfile::TempDir, Emulator) {
    let dir = tempfile::tempdir().unwrap();
    let emulator = Emulator::start(dir.path(), &inventory(servers, 0.2));
    (dir, emulator)
}

/// A manifest with one block of extra YAML per server (e.g. `    protect: true\n`).
fn write_manifest(dir: &Path, emulator: &Emulator, servers: &[(&str, &str, &str, &str)]) {
    let mut text = manifest(&emulator.zenlayer, &[], "");
    for (name, id, image, extra) in servers {
        text.push_str(&format!(
            "  - name: {name}\n    id: \"{id}\"\n    os:\n      image: {image}\n{extra}"
        ));
    }
    std::fs::write(dir.join("reimage.yaml"), text).unwrap();
}

fn run(dir: &Path, args: &[&str]) -> Output {
    reimage(dir).args(args).output().unwrap()
}

fn run_keyed(dir: &Path, args: &[&str]) -> Output {
    reimage(dir)
        .args(args)
        .env("REIMAGE_PLAN_KEY", PLAN_KEY)
        .output()
        .unwrap()
}

fn both(output: &Output) -> String {
    format!("{}{}", stdout_of(output), stderr_of(output))
}

fn assert_ok(output: &Output) {
    assert!(output.status.success(), "{}", both(output));
}

fn state_json(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join(".reimage/state.json")).unwrap())
        .unwrap()
}

fn plan_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

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
fn a_signed_plan_applies_and_one_flipped_byte_is_refused_naming_the_signature() {
    let (dir, emulator) = setup(&[server("1", "img-old")]);
    write_manifest(dir.path(), &emulator, &[("web", "1", "img-new", "")]);
    let mut everything = String::new();

    let plan = reimage(dir.path())
        .args(["plan", "-out=plan.json"])
        .env("REIMAGE_PLAN_KEY", PLAN_KEY)
        .env("REIMAGE_LOG", "debug")
        .output()
        .unwrap();
    assert_ok(&plan);
    everything.push_str(&both(&plan));
    assert!(
        stderr_of(&plan).contains("Signed it (HMAC-SHA256 with `REIMAGE_PLAN_KEY`): plan.json.sig"),
        "{}",
        both(&plan)
    );
    let signature: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("plan.json.sig")).unwrap())
            .unwrap();
    assert_eq!(signature["algorithm"], "hmac-sha256");
    assert_eq!(
        signature["plan_id"],
        plan_json(&dir.path().join("plan.json"))["plan_id"]
    );

    // One bit of one byte changed (the image the reviewer approved), the signature copied along.
    let bytes = std::fs::read(dir.path().join("plan.json")).unwrap();
    let text = String::from_utf8(bytes.clone()).unwrap();
    let position = text.find("\"image\":\"img-new\"").unwrap() + "\"image\":\"img-ne".len();
    let mut tampered = bytes.clone();
    tampered[position] ^= 0x01; // `w` → `v`
    std::fs::write(dir.path().join("tampered.json"), &tampered).unwrap();
    std::fs::copy(
        dir.path().join("plan.json.sig"),
        dir.path().join("tampered.json.sig"),
    )
    .unwrap();
    let refused = run_keyed(dir.path(), &["apply", "tampered.json"]);
    everything.push_str(&both(&refused));
    assert_eq!(refused.status.code(), Some(1), "{}", both(&refused));
    let message = flat(&stderr_of(&refused));
    assert!(message.contains("the saved plan was refused"), "{message}");
    assert!(
        message.contains(
            "the plan's signature does not match: the plan file changed since it was signed"
        ),
        "{message}"
    );
    assert!(message.contains("tampered.json.sig"), "{message}");
    assert_eq!(
        emulator.reinstall_count("1"),
        0,
        "a refused plan touches nothing"
    );

    // The same bytes under another key are refused too, naming the key.
    let other_key = reimage(dir.path())
        .args(["apply", "plan.json"])
        .env("REIMAGE_PLAN_KEY", "another-key-entirely-0123456789")
        .output()
        .unwrap();
    assert_eq!(other_key.status.code(), Some(1));
    assert!(
        flat(&stderr_of(&other_key)).contains("signed with another key"),
        "{}",
        stderr_of(&other_key)
    );

    // The untouched plan applies, with the signature required and verified.
    let applied = reimage(dir.path())
        .args(["apply", "--require-signed", "plan.json"])
        .env("REIMAGE_PLAN_KEY", PLAN_KEY)
        .env("REIMAGE_LOG", "debug")
        .output()
        .unwrap();
    everything.push_str(&both(&applied));
    assert_ok(&applied);
    assert!(
        stderr_of(&applied).contains("Verified the plan's signature (`plan.json.sig`)."),
        "{}",
        stderr_of(&applied)
    );
    assert_eq!(emulator.reinstall_count("1"), 1);

    // The key is in no file, output or log.
    for name in [
        "plan.json",
        "plan.json.sig",
        ".reimage/state.json",
        ".reimage/state.json.backup",
        ".reimage/state.json.journal",
    ] {
        everything.push_str(&std::fs::read_to_string(dir.path().join(name)).unwrap_or_default());
    }
    assert!(everything.contains("Apply complete!"), "{everything}");
    assert!(
        !everything.contains(PLAN_KEY),
        "the plan key leaked:\n{everything}"
    );
}

#[test]
fn require_signed_refuses_an_unsigned_plan_and_a_missing_key() {
    let (dir, emulator) = setup(&[server("1", "img-old")]);
    write_manifest(dir.path(), &emulator, &[("web", "1", "img-new", "")]);
    // A signature left from an earlier plan is removed when a plan is saved without a key.
    assert_ok(&run_keyed(dir.path(), &["plan", "-out=plan.json"]));
    assert!(dir.path().join("plan.json.sig").exists());
    assert_ok(&run(dir.path(), &["plan", "-out=plan.json"]));
    assert!(!dir.path().join("plan.json.sig").exists());

    let unsigned = run_keyed(dir.path(), &["apply", "--require-signed", "plan.json"]);
    assert_eq!(unsigned.status.code(), Some(1));
    let message = flat(&stderr_of(&unsigned));
    assert!(
        message.contains("the plan is not signed: there is no `plan.json.sig` beside it"),
        "{message}"
    );

    assert_ok(&run_keyed(dir.path(), &["plan", "-out=plan.json"]));
    let keyless = run(dir.path(), &["apply", "-require-signed", "plan.json"]);
    assert_eq!(keyless.status.code(), Some(1));
    let message = flat(&stderr_of(&keyless));
    assert!(
        message.contains("`--require-signed` needs `REIMAGE_PLAN_KEY`"),
        "{message}"
    );

    // A key too short to be safe is refused before anything is planned.
    let weak = reimage(dir.path())
        .args(["plan", "-out=weak.json"])
        .env("REIMAGE_PLAN_KEY", "short")
        .output()
        .unwrap();
    assert_eq!(weak.status.code(), Some(1));
    assert!(flat(&stderr_of(&weak)).contains("shorter than 16 bytes"));
    assert!(!dir.path().join("weak.json").exists());

    // Unsigned plans can be edited; what they were made against is still checked (here, the
    // state's name).
    assert_ok(&run(dir.path(), &["plan", "-out=plan.json"]));
    let text = std::fs::read_to_string(dir.path().join("plan.json")).unwrap();
    assert_eq!(text.matches("\"name\":\"default\"").count(), 1);
    std::fs::write(
        dir.path().join("plan.json"),
        text.replace("\"name\":\"default\"", "\"name\":\"prod\""),
    )
    .unwrap();
    let other_state = run(dir.path(), &["apply", "plan.json"]);
    assert_eq!(other_state.status.code(), Some(1));
    assert!(
        flat(&stderr_of(&other_state))
            .contains("the plan was made against the state named `prod`, this is `default`"),
        "{}",
        stderr_of(&other_state)
    );
    assert_eq!(emulator.reinstall_count("1"), 0);
}

#[test]
fn an_expired_plan_is_refused() {
    let (dir, emulator) = setup(&[server("1", "img-old")]);
    write_manifest(dir.path(), &emulator, &[("web", "1", "img-new", "")]);
    assert_ok(&run_keyed(
        dir.path(),
        &["plan", "-out=plan.json", "--plan-ttl", "1s"],
    ));
    let plan = plan_json(&dir.path().join("plan.json"));
    let expires: jiff::Timestamp = plan["expires_at"].as_str().unwrap().parse().unwrap();
    let created: jiff::Timestamp = plan["created_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        expires.duration_since(created),
        jiff::SignedDuration::from_secs(1)
    );
    // Wait until the expiry has passed (a lower bound, whatever the machine's speed).
    while jiff::Timestamp::now() <= expires {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let refused = run_keyed(dir.path(), &["apply", "plan.json"]);
    assert_eq!(refused.status.code(), Some(1), "{}", both(&refused));
    let message = flat(&stderr_of(&refused));
    assert!(
        message.contains(&format!("the plan expired at {expires}")),
        "{message}"
    );
    assert_eq!(emulator.reinstall_count("1"), 0);

    let bad_ttl = run(dir.path(), &["plan", "--plan-ttl", "soon"]);
    assert_eq!(bad_ttl.status.code(), Some(1));
    assert!(
        stderr_of(&bad_ttl).contains("is not a duration"),
        "{}",
        stderr_of(&bad_ttl)
    );
}

fn git(dir: &Path, args: &[&str]) -> String {
    let output = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.name=Reviewer",
            "-c",
            "user.email=reviewer@example.invalid",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .output()
        .unwrap();
    assert!(output.status.success(), "git {args:?}: {}", both(&output));
    stdout_of(&output).trim().to_string()
}

#[test]
fn require_commit_refuses_a_plan_made_at_another_commit() {
    let (dir, emulator) = setup(&[server("1", "img-old")]);
    write_manifest(dir.path(), &emulator, &[("web", "1", "img-new", "")]);
    git(dir.path(), &["init", "-q"]);
    git(dir.path(), &["add", "reimage.yaml"]);
    git(dir.path(), &["commit", "-q", "-m", "reviewed change"]);
    let head = git(dir.path(), &["rev-parse", "HEAD"]);

    assert_ok(&run_keyed(dir.path(), &["plan", "-out=plan.json"]));
    assert_eq!(plan_json(&dir.path().join("plan.json"))["commit"], head);

    let other = "def5678def5678def5678def5678def5678def56";
    let refused = run_keyed(
        dir.path(),
        &[
            "apply",
            "--require-signed",
            "--require-commit",
            other,
            "plan.json",
        ],
    );
    assert_eq!(refused.status.code(), Some(1), "{}", both(&refused));
    let message = flat(&stderr_of(&refused));
    assert!(
        message.contains(&format!(
            "the plan was made at commit {head}, this is {other}"
        )),
        "{message}"
    );
    assert_eq!(emulator.reinstall_count("1"), 0);

    let not_a_commit = run_keyed(
        dir.path(),
        &["apply", "--require-commit", "main", "plan.json"],
    );
    assert_eq!(not_a_commit.status.code(), Some(1));
    assert!(stderr_of(&not_a_commit).contains("is not a commit id"));

    let short = &head[..7];
    let applied = run_keyed(
        dir.path(),
        &[
            "apply",
            "--require-signed",
            "-require-commit",
            short,
            "plan.json",
        ],
    );
    assert_ok(&applied);
    assert_eq!(emulator.reinstall_count("1"), 1);
}

#[test]
fn markdown_names_the_artifact_and_goes_to_the_github_step_summary() {
    let (dir, emulator) = setup(&[server("1", "img-old")]);
    write_manifest(dir.path(), &emulator, &[("web", "1", "img-new", "")]);
    git(dir.path(), &["init", "-q"]);
    git(dir.path(), &["add", "reimage.yaml"]);
    git(dir.path(), &["commit", "-q", "-m", "change"]);
    let head = git(dir.path(), &["rev-parse", "HEAD"]);
    let summary_file = dir.path().join("step-summary.md");

    let plan = reimage(dir.path())
        .args(["plan", "--markdown", "-out=plan.json"])
        .env("REIMAGE_PLAN_KEY", PLAN_KEY)
        .env("GITHUB_STEP_SUMMARY", &summary_file)
        .output()
        .unwrap();
    assert_ok(&plan);
    let markdown = stdout_of(&plan);
    let saved = plan_json(&dir.path().join("plan.json"));
    let plan_id = saved["plan_id"].as_str().unwrap();
    let expires = saved["expires_at"].as_str().unwrap();
    assert!(
        markdown.contains(&format!(
            "Plan `{plan_id}` · commit `{head}` · state `default` (serial 1) · expires {expires}"
        )),
        "{markdown}"
    );
    assert!(markdown.contains("| `web` | **reinstall** |"), "{markdown}");
    assert_eq!(
        std::fs::read_to_string(&summary_file).unwrap(),
        format!("{markdown}\n")
    );

    // `show --markdown` of the saved file names the same artifact.
    let shown = run(dir.path(), &["show", "--markdown", "plan.json"]);
    assert_ok(&shown);
    assert_eq!(stdout_of(&shown), markdown);
    let text = run(dir.path(), &["show", "plan.json"]);
    assert!(
        stdout_of(&text).starts_with(&format!(
            "Plan {plan_id} made at commit {head}, against state `default` (serial 1); expires {expires}."
        )),
        "{}",
        stdout_of(&text)
    );

    // Every plan appends; a text plan writes the markdown there too.
    let again = reimage(dir.path())
        .args(["plan"])
        .env("GITHUB_STEP_SUMMARY", &summary_file)
        .output()
        .unwrap();
    assert_ok(&again);
    assert!(stdout_of(&again).contains("# web will be reinstalled"));
    let summary = std::fs::read_to_string(&summary_file).unwrap();
    assert_eq!(summary.matches("### reimage plan").count(), 2, "{summary}");
}

#[test]
fn state_list_show_and_rm_read_and_forget_records_without_touching_machines() {
    let (dir, emulator) = setup(&[server("1", "img-old"), server("2", "img-new")]);
    write_manifest(
        dir.path(),
        &emulator,
        &[
            ("web", "1", "img-new", ""),
            ("db", "2", "img-new", "    protect: true\n"),
        ],
    );
    let empty = run(dir.path(), &["state", "list"]);
    assert_ok(&empty);
    assert!(
        stdout_of(&empty).contains("No state at"),
        "{}",
        stdout_of(&empty)
    );
    assert_ok(&run(dir.path(), &["apply", "--auto-approve"]));
    let key = state_json(dir.path())["digest_key"]
        .as_str()
        .unwrap()
        .to_string();
    let mut everything = String::new();

    let list = run(dir.path(), &["state", "list"]);
    assert_ok(&list);
    let text = stdout_of(&list);
    everything.push_str(&text);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[1].starts_with("NAME"), "{text}");
    let db = lines.iter().find(|line| line.starts_with("db ")).unwrap();
    assert!(
        db.contains("zenlayer-bmc `zl`") && db.contains("img-new"),
        "{text}"
    );
    assert!(
        db.contains("yes") && db.contains("adopt succeeded at"),
        "{text}"
    );
    let web = lines.iter().find(|line| line.starts_with("web ")).unwrap();
    assert!(web.contains("reinstall succeeded at"), "{text}");

    let json = run(dir.path(), &["state", "list", "--json"]);
    assert_ok(&json);
    everything.push_str(&stdout_of(&json));
    let listing: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(listing["servers"][0]["name"], "db");
    assert_eq!(listing["servers"][0]["protected"], true);
    assert_eq!(listing["servers"][1]["last_operation"]["kind"], "reinstall");
    assert_eq!(listing["state"]["name"], "default");

    let show = run(dir.path(), &["state", "show", "web", "--json"]);
    assert_ok(&show);
    everything.push_str(&stdout_of(&show));
    let shown: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(shown["record"]["image"], "img-new");
    assert_eq!(shown["record"]["cloud_id"], "1");
    let show_text = run(dir.path(), &["state", "show", "db"]);
    everything.push_str(&stdout_of(&show_text));
    assert!(stdout_of(&show_text).contains("protected: yes"));
    assert!(
        !everything.contains(&key),
        "the digest key was printed:\n{everything}"
    );

    let typo = run(dir.path(), &["state", "show", "wbe"]);
    assert_eq!(typo.status.code(), Some(1));
    assert!(stderr_of(&typo).contains("no server named `wbe` in the state"));

    // `rm` is all or nothing, suggests names, and never calls the provider.
    let refused = run(dir.path(), &["state", "rm", "web", "dbb"]);
    assert_eq!(refused.status.code(), Some(1));
    let message = flat(&stderr_of(&refused));
    assert!(message.contains("nothing was removed"), "{message}");
    assert!(message.contains("did you mean `db`?"), "{message}");
    assert!(state_json(dir.path())["servers"].get("web").is_some());
    let serial = state_json(dir.path())["serial"].as_u64().unwrap();

    let removed = run(dir.path(), &["state", "rm", "web"]);
    assert_ok(&removed);
    assert!(
        stdout_of(&removed).contains("Forgot `web`"),
        "{}",
        both(&removed)
    );
    assert!(
        stderr_of(&removed).contains("`web` is still in the manifest"),
        "{}",
        stderr_of(&removed)
    );
    let state = state_json(dir.path());
    assert!(state["servers"].get("web").is_none());
    assert!(state["servers"].get("db").is_some());
    assert_eq!(state["serial"].as_u64(), Some(serial + 1));
    assert_eq!(emulator.reinstall_count("1"), 1);
    assert_eq!(emulator.reinstall_count("2"), 0);

    // With `--state PATH`, no manifest is needed.
    let elsewhere = tempfile::tempdir().unwrap();
    let state_path = dir.path().join(".reimage/state.json");
    let alone = reimage(elsewhere.path())
        .args(["state", "list", "--state"])
        .arg(&state_path)
        .output()
        .unwrap();
    assert_ok(&alone);
    assert!(stdout_of(&alone).contains("db "), "{}", stdout_of(&alone));

    // The forgotten server, still in the manifest, is adopted again: the machine is untouched.
    let plan = run(dir.path(), &["plan"]);
    assert!(
        stdout_of(&plan).contains("# web will be adopted"),
        "{}",
        both(&plan)
    );
}

#[test]
fn a_server_removed_from_the_manifest_is_forgotten_by_apply() {
    let (dir, emulator) = setup(&[server("1", "img-new"), server("2", "img-new")]);
    write_manifest(
        dir.path(),
        &emulator,
        &[("web", "1", "img-new", ""), ("old", "2", "img-new", "")],
    );
    assert_ok(&run(dir.path(), &["apply", "--auto-approve"]));
    write_manifest(dir.path(), &emulator, &[("web", "1", "img-new", "")]);

    let plan = run(dir.path(), &["plan", "-detailed-exitcode"]);
    let text = stdout_of(&plan);
    assert_eq!(plan.status.code(), Some(2), "{}", both(&plan));
    assert!(text.contains("# old will be forgotten"), "{text}");
    assert!(
        text.contains("no longer in the manifest: will be forgotten (the machine is not touched)"),
        "{text}"
    );
    assert!(
        text.contains("Plan: 0 to reinstall, 0 to adopt, 1 to forget, 1 unchanged, 0 blocked."),
        "{text}"
    );
    let markdown = run(dir.path(), &["plan", "--markdown"]);
    assert!(
        stdout_of(&markdown).contains("| `old` | **forget** |"),
        "{}",
        stdout_of(&markdown)
    );

    let json = run(dir.path(), &["plan", "--json", "-out=forget.json"]);
    assert_ok(&json);
    let document: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let errors: Vec<String> = validator("plan.schema.json")
        .iter_errors(&document)
        .map(|error| error.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    let old = document["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|server| server["name"] == "old")
        .unwrap();
    assert_eq!(old["action"], "forget");
    assert_eq!(old["reasons"][0]["kind"], "no_longer_in_manifest");
    assert_eq!(document["summary"]["forget"], 1);
    assert_eq!(document["summary"]["reinstall"], 0);

    let apply = run(dir.path(), &["apply", "--json", "forget.json"]);
    assert_ok(&apply);
    let events = validator("apply-events.schema.json");
    let mut kinds = Vec::new();
    for line in stdout_of(&apply).lines() {
        let event: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(events.is_valid(&event), "{event}");
        kinds.push(event["event"].as_str().unwrap().to_string());
    }
    assert!(kinds.contains(&"forgotten".to_string()), "{kinds:?}");
    let summary: serde_json::Value =
        serde_json::from_str(stdout_of(&apply).lines().last().unwrap()).unwrap();
    assert_eq!(summary["forgotten"], serde_json::json!(["old"]));

    let state = state_json(dir.path());
    assert!(state["servers"].get("old").is_none());
    assert!(state["servers"].get("web").is_some());
    assert_eq!(emulator.reinstall_count("1"), 0);
    assert_eq!(
        emulator.reinstall_count("2"),
        0,
        "forgetting never touches the machine"
    );

    let again = run(dir.path(), &["plan", "-detailed-exitcode"]);
    assert_eq!(again.status.code(), Some(0), "{}", both(&again));
    assert!(stdout_of(&again).contains("No changes."));
}

#[test]
fn removing_protect_in_the_change_that_reinstalls_is_blocked_and_its_own_change_records_it() {
    let (dir, emulator) = setup(&[server("1", "img-old")]);
    // Adopted while protected: the state records the protection.
    write_manifest(
        dir.path(),
        &emulator,
        &[("db", "1", "img-old", "    protect: true\n")],
    );
    assert_ok(&run(dir.path(), &["apply", "--auto-approve"]));
    assert_eq!(state_json(dir.path())["servers"]["db"]["protected"], true);

    // One change removes `protect` and asks for a new image: blocked, nothing saved.
    write_manifest(dir.path(), &emulator, &[("db", "1", "img-new", "")]);
    let blocked = run(dir.path(), &["plan", "-out=both.json"]);
    assert_eq!(blocked.status.code(), Some(1), "{}", both(&blocked));
    assert!(
        stdout_of(&blocked).contains("# db is blocked"),
        "{}",
        stdout_of(&blocked)
    );
    let message = flat(&both(&blocked));
    assert!(
        message.contains("remove the protection in its own reviewed change first"),
        "{message}"
    );
    assert!(!dir.path().join("both.json").exists());
    let apply = run(dir.path(), &["apply", "--auto-approve"]);
    assert_eq!(apply.status.code(), Some(1));
    assert_eq!(emulator.reinstall_count("1"), 0);

    // Its own change: only `protect` goes; the apply updates the record, not the machine.
    write_manifest(dir.path(), &emulator, &[("db", "1", "img-old", "")]);
    let plan = run(
        dir.path(),
        &["plan", "-out=unprotect.json", "-detailed-exitcode"],
    );
    assert_eq!(plan.status.code(), Some(2), "{}", both(&plan));
    let text = stdout_of(&plan);
    assert!(text.contains("# db will have its record updated"), "{text}");
    assert!(text.contains("protect: \"true\" -> \"false\""), "{text}");
    assert!(text.contains("1 record to update"), "{text}");
    let applied = run(dir.path(), &["apply", "unprotect.json"]);
    assert_ok(&applied);
    assert!(
        stdout_of(&applied).contains("1 record(s) updated"),
        "{}",
        stdout_of(&applied)
    );
    assert_eq!(state_json(dir.path())["servers"]["db"]["protected"], false);
    assert_eq!(emulator.reinstall_count("1"), 0);

    // The next reviewed change may reinstall it.
    write_manifest(dir.path(), &emulator, &[("db", "1", "img-new", "")]);
    let reinstall = run(dir.path(), &["apply", "--auto-approve"]);
    assert_ok(&reinstall);
    assert_eq!(emulator.reinstall_count("1"), 1);
}
