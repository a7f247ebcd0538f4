//! The CI templates end to end: their own scripts (read from `examples/ci/*.yml`, so a template
//! that drifts fails here) run as two separate "runners" that share only the PostgreSQL database
//! and the plan artifact. Each runner is a fresh folder with its own clone of a tiny git repo and
//! its own home; the provider is the emulator.
//!
//! Runner A is the pull request's plan job (at the PR's head commit), runner B the apply job (on
//! main after the merge). A tampered, an expired and an other-commit artifact are refused,
//! naming what differs and changing nothing; the reviewed one applies; a second plan shows no
//! changes.
#![cfg(feature = "postgres")]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::ci;
use common::postgres::{TestDatabase, database};
use common::*;

/// The plan key, which doubles as a canary: it must show up nowhere.
const PLAN_KEY: &str = "Plan-Key-Canary-CI-5d1e8a2f9b7c3e60";
const STATE_NAME: &str = "fleet";
const MANIFEST: &str = "fleet/reimage.yaml";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Ci {
    GitHub,
    GitLab,
}

/// What one CI system's template runs, and how its artifact travels.
struct Flow {
    ci: Ci,
    doc: serde_json::Value,
    plan_script: String,
    apply_script: String,
    /// The plan job's files that reach the apply job.
    artifact_files: Vec<String>,
    /// Where the apply job finds them, relative to its checkout.
    download_dir: String,
}

impl Flow {
    fn of(ci: Ci) -> Flow {
        match ci {
            Ci::GitHub => {
                let doc = ci::github();
                let plan_script =
                    ci::text(ci::github_step(&doc, "plan", "plan"), "run", "plan").to_string();
                let apply_script =
                    ci::text(ci::github_step(&doc, "apply", "apply"), "run", "apply").to_string();
                let upload = ci::github_step_using(&doc, "plan", "actions/upload-artifact");
                let download = ci::github_step_using(&doc, "apply", "actions/download-artifact");
                Flow {
                    ci,
                    artifact_files: ci::string_list(&upload["with"]["path"]),
                    download_dir: ci::text(&download["with"], "path", "download").to_string(),
                    plan_script,
                    apply_script,
                    doc,
                }
            }
            Ci::GitLab => {
                let doc = ci::gitlab();
                let plan_files =
                    ci::string_list(&ci::gitlab_job(&doc, "plan")["artifacts"]["paths"]);
                // `reviewed-plan` fetches these from the plan job and hands them to `apply`.
                let reviewed = ci::gitlab_job(&doc, "reviewed-plan");
                let artifact_files = ci::string_list(&reviewed["artifacts"]["paths"]);
                for file in &artifact_files {
                    assert!(
                        plan_files.contains(file),
                        "`reviewed-plan` passes on `{file}`, which the plan job does not keep"
                    );
                }
                let dotenv = ci::text(&reviewed["artifacts"]["reports"], "dotenv", "reviewed-plan");
                let fetch = ci::gitlab_script(&doc, "reviewed-plan", "script");
                assert!(
                    fetch.contains(&format!("echo \"REVIEWED_SHA=$sha\" > {dotenv}")),
                    "`reviewed-plan` must hand REVIEWED_SHA to `apply` through its dotenv report:\n{fetch}"
                );
                Flow {
                    ci,
                    plan_script: ci::gitlab_script(&doc, "plan", "script"),
                    apply_script: ci::gitlab_script(&doc, "apply", "script"),
                    artifact_files,
                    download_dir: ".".to_string(),
                    doc,
                }
            }
        }
    }

    /// The plan script's environment: the template's, its secrets, and what the CI system sets.
    fn plan_env(&self, database_url: &str, runner: &Runner, commit: &str) -> Env {
        let mut env = match self.ci {
            Ci::GitHub => {
                let step = ci::github_step(&self.doc, "plan", "plan");
                ci::github_env(&self.doc, "plan", step, &github_secrets(database_url))
            }
            Ci::GitLab => gitlab_env(&self.doc, "plan", database_url),
        };
        env.extend(runner.ci_variables(self.ci, commit));
        env
    }

    /// The apply script's environment, for the reviewed commit `reviewed`.
    fn apply_env(&self, database_url: &str, runner: &Runner, reviewed: &str) -> Env {
        let mut env = match self.ci {
            Ci::GitHub => {
                let step = ci::github_step(&self.doc, "apply", "apply");
                let mut known = github_secrets(database_url);
                known.insert("needs.reviewed-plan.outputs.commit", reviewed.to_string());
                ci::github_env(&self.doc, "apply", step, &known)
            }
            Ci::GitLab => {
                let mut env = gitlab_env(&self.doc, "apply", database_url);
                // From `reviewed-plan`'s dotenv report.
                env.insert("REVIEWED_SHA".into(), reviewed.to_string());
                env
            }
        };
        env.extend(runner.ci_variables(self.ci, &runner.head()));
        env
    }
}

type Env = BTreeMap<String, String>;

/// The secrets a GitHub repository holds, by expression.
fn github_secrets(database_url: &str) -> BTreeMap<&'static str, String> {
    BTreeMap::from([
        ("secrets.REIMAGE_PG_URL", database_url.to_string()),
        ("secrets.REIMAGE_PLAN_KEY", PLAN_KEY.to_string()),
        ("secrets.ZENLAYERCLOUD_ACCESS_KEY_ID", KEY_ID.to_string()),
        (
            "secrets.ZENLAYERCLOUD_ACCESS_KEY_PASSWORD",
            KEY_PASSWORD.to_string(),
        ),
    ])
}

/// A GitLab job's variables plus the project's CI/CD variables (the secrets).
fn gitlab_env(doc: &serde_json::Value, job: &str, database_url: &str) -> Env {
    let mut env = ci::gitlab_variables(doc, job);
    env.insert("REIMAGE_PG_URL".into(), database_url.to_string());
    env.insert("REIMAGE_PLAN_KEY".into(), PLAN_KEY.to_string());
    env.insert("ZENLAYERCLOUD_ACCESS_KEY_ID".into(), KEY_ID.to_string());
    env.insert(
        "ZENLAYERCLOUD_ACCESS_KEY_PASSWORD".into(),
        KEY_PASSWORD.to_string(),
    );
    env
}

/// A fresh machine: its own folder, home and clone of the repository.
struct Runner {
    name: &'static str,
    _root: tempfile::TempDir,
    home: PathBuf,
    checkout: PathBuf,
    step_summary: PathBuf,
}

impl Runner {
    fn new(name: &'static str, origin: &Path, commit: &str) -> Runner {
        let root = tempfile::Builder::new()
            .prefix(&format!("reimage-runner-{name}-"))
            .tempdir()
            .unwrap();
        let home = root.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        let checkout = root.path().join("work");
        git(
            root.path(),
            &["clone", "-q", &origin.display().to_string(), "work"],
        );
        let runner = Runner {
            name,
            step_summary: root.path().join("step-summary.md"),
            home,
            checkout,
            _root: root,
        };
        runner.check_out(commit);
        runner
    }

    /// A clean checkout of `commit`, as the CI's checkout step leaves it.
    fn check_out(&self, commit: &str) {
        git(&self.checkout, &["checkout", "-q", "--detach", commit]);
        git(&self.checkout, &["clean", "-q", "-ffdx"]);
    }

    fn head(&self) -> String {
        git(&self.checkout, &["rev-parse", "HEAD"])
    }

    /// What the CI system itself sets for a job at `commit`.
    fn ci_variables(&self, ci: Ci, commit: &str) -> Env {
        let mut env = Env::from([("CI".to_string(), "true".to_string())]);
        let pairs: Vec<(&str, String)> = match ci {
            Ci::GitHub => vec![
                ("GITHUB_ACTIONS", "true".into()),
                ("GITHUB_SHA", commit.into()),
                ("GITHUB_WORKSPACE", self.checkout.display().to_string()),
                (
                    "GITHUB_STEP_SUMMARY",
                    self.step_summary.display().to_string(),
                ),
                ("GITHUB_SERVER_URL", "https://github.example".into()),
                ("GITHUB_REPOSITORY", "acme/fleet".into()),
                ("GITHUB_RUN_ID", format!("run-of-runner-{}", self.name)),
            ],
            Ci::GitLab => vec![
                ("GITLAB_CI", "true".into()),
                ("CI_COMMIT_SHA", commit.into()),
                ("CI_PROJECT_DIR", self.checkout.display().to_string()),
                (
                    "CI_JOB_URL",
                    format!(
                        "https://gitlab.example/acme/fleet/-/jobs/runner-{}",
                        self.name
                    ),
                ),
            ],
        };
        env.extend(
            pairs
                .into_iter()
                .map(|(name, value)| (name.to_string(), value)),
        );
        env
    }

    /// Runs a template's script as the CI would: bash with `-e` and `pipefail`, in the checkout,
    /// with nothing from this test's environment but `PATH` (the built `reimage` first).
    fn run(&self, script: &str, env: &Env) -> Output {
        let bin = binary();
        let bin_dir = bin.parent().unwrap();
        Command::new("bash")
            .args(["--noprofile", "--norc", "-eo", "pipefail", "-c", script])
            .current_dir(&self.checkout)
            .env_clear()
            .env(
                "PATH",
                format!("{}:/usr/local/bin:/usr/bin:/bin", bin_dir.display()),
            )
            .env("HOME", &self.home)
            .envs(env)
            .output()
            .unwrap()
    }
}

fn git(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.name=Reviewer",
            "-c",
            "user.email=reviewer@example.invalid",
            "-c",
            "commit.gpgsign=false",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "git {args:?}: {}",
        stderr_of(&output)
    );
    stdout_of(&output).trim().to_string()
}

fn manifest_text(endpoint: &str, image: &str) -> String {
    // No `credentials:`: the provider reads ZENLAYERCLOUD_ACCESS_KEY_ID/_PASSWORD, which the
    // templates map from the CI's secrets.
    format!(
        "version: 1\npolicy:\n  rollout: {{canary: 0, max_parallel: 5}}\nproviders:\n  zl:\n    \
         type: zenlayer-bmc\n    endpoint: {endpoint}\n    poll_interval: 0.1\n    options:\n      \
         running_grace_seconds: 2\ndefaults:\n  provider: zl\n  os: {{image: {image}}}\n  access: \
         {{ssh_key_id: key-test}}\nbackend:\n  type: postgres\n  url: {{env: REIMAGE_PG_URL}}\n  \
         name: {STATE_NAME}\nservers:\n  - {{name: web-1, id: \"1\"}}\n  - {{name: web-2, id: \"2\"}}\n"
    )
}

/// The commits of the fleet repository.
struct Commits {
    /// The pull request's first push: the image change.
    first_push: String,
    /// Its head when merged: a README edit on top.
    head: String,
    /// main after the merge (a merge commit).
    merged: String,
}

/// A repository with main at the old image and a pull request moving to the new one, merged.
fn fleet_repository(dir: &Path, endpoint: &str) -> Commits {
    git(dir, &["init", "-q"]);
    std::fs::create_dir_all(dir.join("fleet")).unwrap();
    std::fs::write(dir.join(MANIFEST), manifest_text(endpoint, "img-old")).unwrap();
    std::fs::write(dir.join("README.md"), "The fleet.\n").unwrap();
    git(dir, &["add", "."]);
    git(dir, &["commit", "-q", "-m", "The fleet as it runs"]);
    git(dir, &["checkout", "-q", "-b", "new-image"]);
    std::fs::write(dir.join(MANIFEST), manifest_text(endpoint, "img-new")).unwrap();
    git(dir, &["commit", "-q", "-am", "Move the fleet to img-new"]);
    let first_push = git(dir, &["rev-parse", "HEAD"]);
    std::fs::write(dir.join("README.md"), "The fleet, on img-new.\n").unwrap();
    git(dir, &["commit", "-q", "-am", "Say so"]);
    let head = git(dir, &["rev-parse", "HEAD"]);
    git(dir, &["checkout", "-q", "main"]);
    git(
        dir,
        &[
            "merge",
            "-q",
            "--no-ff",
            "-m",
            "Merge new-image",
            "new-image",
        ],
    );
    let merged = git(dir, &["rev-parse", "HEAD"]);
    Commits {
        first_push,
        head,
        merged,
    }
}

fn both(output: &Output) -> String {
    format!("{}{}", stdout_of(output), stderr_of(output))
}

/// The CI system around the runners: the template's flow, the shared database, and the artifact
/// storage (a folder the plan job's files are copied into, and out of for the apply job).
struct Pipeline<'a> {
    flow: &'a Flow,
    db: &'a TestDatabase,
    store: &'a Path,
}

impl Pipeline<'_> {
    /// Runs the plan job on `runner` at `commit` and keeps its artifact as `name`. `ttl`
    /// overrides the template's `REIMAGE_PLAN_TTL`.
    fn plan_job(
        &self,
        runner: &Runner,
        commit: &str,
        ttl: Option<&str>,
        name: &str,
        everything: &mut String,
    ) -> PathBuf {
        runner.check_out(commit);
        let mut env = self.flow.plan_env(&self.db.url, runner, commit);
        if let Some(ttl) = ttl {
            let old = env.insert("REIMAGE_PLAN_TTL".into(), ttl.into());
            assert!(old.is_some(), "the template sets REIMAGE_PLAN_TTL");
        }
        let output = runner.run(&self.flow.plan_script, &env);
        everything.push_str(&both(&output));
        assert!(
            output.status.success(),
            "{:?} plan job at {commit}:\n{}",
            self.flow.ci,
            both(&output)
        );
        let kept = self.store.join(name);
        std::fs::create_dir_all(&kept).unwrap();
        for file in &self.flow.artifact_files {
            let from = runner.checkout.join(file);
            assert!(from.exists(), "the plan job made no `{file}`");
            std::fs::copy(&from, kept.join(file)).unwrap();
            everything.push_str(&std::fs::read_to_string(&from).unwrap_or_default());
        }
        kept
    }

    /// Runs the apply job on `runner` with the artifact kept in `kept`, for the reviewed commit.
    fn apply_job(&self, runner: &Runner, kept: &Path, reviewed: &str) -> Output {
        let download = runner.checkout.join(&self.flow.download_dir);
        std::fs::create_dir_all(&download).unwrap();
        for file in &self.flow.artifact_files {
            std::fs::copy(kept.join(file), download.join(file)).unwrap();
        }
        let env = self.flow.apply_env(&self.db.url, runner, reviewed);
        runner.run(&self.flow.apply_script, &env)
    }
}

fn plan_of(kept: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(kept.join("plan.json")).unwrap()).unwrap()
}

fn counts(emulator: &Emulator) -> Vec<u64> {
    ["1", "2"]
        .iter()
        .map(|id| emulator.reinstall_count(id))
        .collect()
}

fn state_serial(db: &TestDatabase) -> Option<String> {
    db.value(&format!(
        "SELECT serial FROM reimage_state WHERE name = '{STATE_NAME}'"
    ))
}

fn history_rows(db: &TestDatabase) -> Vec<Vec<Option<String>>> {
    db.query(&format!(
        "SELECT plan_id, outcome, git_commit, ci_job_url FROM reimage_history \
         WHERE state_name = '{STATE_NAME}' ORDER BY id"
    ))
}

/// Waits until `expires_at` of the plan in `kept` has passed (a lower bound, whatever the
/// machine's speed), for at most two minutes.
fn wait_for_expiry(kept: &Path) {
    let expires: jiff::Timestamp = plan_of(kept)["expires_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while jiff::Timestamp::now() <= expires {
        assert!(Instant::now() < deadline, "the plan never expired");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn ci_flow_across_two_runners(ci: Ci, test: &str) {
    let Some(db) = database(test) else {
        return;
    };
    let flow = Flow::of(ci);
    // What the templates must do, whatever else they do.
    let plan_command = ci::the_command(&flow.plan_script, "reimage plan");
    for flag in ["-out=plan.json", "--markdown", "--plan-ttl"] {
        assert!(
            plan_command.contains(flag),
            "{ci:?}: `{plan_command}` lacks {flag}"
        );
    }
    let apply_command = ci::the_command(&flow.apply_script, "reimage apply");
    for flag in ["--require-signed", "--require-commit", "-f "] {
        assert!(
            apply_command.contains(flag),
            "{ci:?}: `{apply_command}` lacks {flag}"
        );
    }
    for file in ["plan.json", "plan.json.sig"] {
        assert!(
            flow.artifact_files.iter().any(|kept| kept == file),
            "{ci:?}: the artifact lacks {file}: {:?}",
            flow.artifact_files
        );
    }

    let cloud = tempfile::tempdir().unwrap();
    let emulator = Emulator::start(
        cloud.path(),
        &inventory(&[server("1", "img-old"), server("2", "img-old")], 0.3),
    );
    let origin = tempfile::tempdir().unwrap();
    let commits = fleet_repository(origin.path(), &emulator.zenlayer);
    let store = tempfile::tempdir().unwrap();
    let pipeline = Pipeline {
        flow: &flow,
        db: &db,
        store: store.path(),
    };
    let mut everything = String::new();

    // Runner A, the pull request's plan job: at the first push, once with a 1 s lifetime, and at
    // the head the reviewers approve.
    let runner_a = Runner::new("a", origin.path(), &commits.first_push);
    let first_push = pipeline.plan_job(
        &runner_a,
        &commits.first_push,
        None,
        "first-push",
        &mut everything,
    );
    let short_lived = pipeline.plan_job(
        &runner_a,
        &commits.head,
        Some("1s"),
        "short-lived",
        &mut everything,
    );
    let reviewed = pipeline.plan_job(&runner_a, &commits.head, None, "reviewed", &mut everything);
    let plan = plan_of(&reviewed);
    assert_eq!(plan["commit"], commits.head.as_str());
    assert_eq!(plan["backend"]["name"], STATE_NAME);
    // The comment names the artifact that will run.
    let markdown = std::fs::read_to_string(runner_a.checkout.join("plan.md")).unwrap();
    let header = format!(
        "Plan `{}` · commit `{}` · state `{STATE_NAME}`",
        plan["plan_id"].as_str().unwrap(),
        commits.head
    );
    assert!(markdown.contains(&header), "{markdown}");
    assert!(
        markdown.contains("| `web-1` | **reinstall** |"),
        "{markdown}"
    );
    if ci == Ci::GitHub {
        let summary = std::fs::read_to_string(&runner_a.step_summary).unwrap();
        assert!(
            summary.contains(&header),
            "the job summary shows the plan: {summary}"
        );
    }
    // One byte of the reviewed plan changed (the image), its signature copied along.
    let tampered = store.path().join("tampered");
    std::fs::create_dir_all(&tampered).unwrap();
    for file in &flow.artifact_files {
        std::fs::copy(reviewed.join(file), tampered.join(file)).unwrap();
    }
    let mut bytes = std::fs::read(tampered.join("plan.json")).unwrap();
    let text = String::from_utf8(bytes.clone()).unwrap();
    let at = text.find("\"image\":\"img-new\"").unwrap() + "\"image\":\"img-ne".len();
    bytes[at] ^= 0x01; // `w` -> `v`
    std::fs::write(tampered.join("plan.json"), &bytes).unwrap();

    // Runner B, the apply job on main after the merge: the bad artifacts are refused.
    let runner_b = Runner::new("b", origin.path(), &commits.merged);
    let serial = state_serial(&db);
    assert!(
        serial.is_some(),
        "the plan job made the state in PostgreSQL"
    );
    let refusals = [
        (
            &tampered,
            "the plan's signature does not match: the plan file changed since it was signed"
                .to_string(),
        ),
        (
            &short_lived,
            format!(
                "the plan expired at {}",
                plan_of(&short_lived)["expires_at"].as_str().unwrap()
            ),
        ),
        (
            &first_push,
            format!(
                "the plan was made at commit {}, this is {}",
                commits.first_push, commits.head
            ),
        ),
    ];
    for (kept, expected) in refusals {
        if kept == &short_lived {
            wait_for_expiry(kept);
        }
        let refused = pipeline.apply_job(&runner_b, kept, &commits.head);
        everything.push_str(&both(&refused));
        let message = flat(&stderr_of(&refused));
        assert_eq!(refused.status.code(), Some(1), "{ci:?}: {}", both(&refused));
        assert!(message.contains("the saved plan was refused"), "{message}");
        assert!(
            message.contains(&expected),
            "{ci:?}: wanted `{expected}` in: {message}"
        );
        assert!(!message.contains("stale"), "{message}");
        assert_eq!(
            counts(&emulator),
            [0, 0],
            "a refused plan touches no server"
        );
        assert_eq!(
            state_serial(&db),
            serial,
            "a refused plan leaves the state alone"
        );
        assert!(
            history_rows(&db).is_empty(),
            "a refused plan never took the lock"
        );
    }

    // The reviewed artifact applies on runner B, which shares nothing with A but the database.
    let applied = pipeline.apply_job(&runner_b, &reviewed, &commits.head);
    everything.push_str(&both(&applied));
    assert!(applied.status.success(), "{ci:?}: {}", both(&applied));
    assert!(
        stdout_of(&applied).contains("Apply complete! 2 reinstalled"),
        "{}",
        both(&applied)
    );
    assert!(
        stderr_of(&applied).contains("Verified the plan's signature"),
        "{}",
        stderr_of(&applied)
    );
    assert_eq!(counts(&emulator), [1, 1]);
    let history = history_rows(&db);
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!(history[0][0].as_deref(), plan["plan_id"].as_str());
    assert_eq!(history[0][1].as_deref(), Some("succeeded"));
    assert_eq!(history[0][2].as_deref(), Some(commits.merged.as_str()));
    let job_url = history[0][3].clone().unwrap_or_default();
    match ci {
        Ci::GitHub => assert!(
            job_url.starts_with("https://github.example/acme/fleet/actions/runs/"),
            "{job_url}"
        ),
        Ci::GitLab => assert!(job_url.ends_with("/-/jobs/runner-b"), "{job_url}"),
    }

    // The next plan job (on either runner; here B, on main) finds nothing to do.
    let again = runner_b.run(
        &flow.plan_script,
        &flow.plan_env(&db.url, &runner_b, &commits.merged),
    );
    everything.push_str(&both(&again));
    assert!(again.status.success(), "{}", both(&again));
    let markdown = std::fs::read_to_string(runner_b.checkout.join("plan.md")).unwrap();
    assert!(
        markdown.contains("No changes. The fleet matches the manifest."),
        "{markdown}"
    );
    assert_eq!(counts(&emulator), [1, 1]);

    // No runner keeps a state of its own, and no secret reached any output or file.
    for runner in [&runner_a, &runner_b] {
        assert!(!runner.checkout.join("fleet/.reimage").exists());
        everything.push_str(&std::fs::read_to_string(&runner.step_summary).unwrap_or_default());
    }
    assert!(everything.contains("Apply complete!"));
    for secret in [PLAN_KEY, KEY_PASSWORD, db.password.as_str()]
        .into_iter()
        .filter(|secret| !secret.is_empty())
    {
        assert!(
            !everything.contains(secret),
            "{ci:?}: a secret leaked into the output or the artifacts"
        );
    }
}

#[test]
fn github_actions_template_plans_on_one_runner_and_applies_the_reviewed_artifact_on_another() {
    ci_flow_across_two_runners(
        Ci::GitHub,
        "github_actions_template_plans_on_one_runner_and_applies_the_reviewed_artifact_on_another",
    );
}

#[test]
fn gitlab_ci_template_plans_on_one_runner_and_applies_the_reviewed_artifact_on_another() {
    ci_flow_across_two_runners(
        Ci::GitLab,
        "gitlab_ci_template_plans_on_one_runner_and_applies_the_reviewed_artifact_on_another",
    );
}
