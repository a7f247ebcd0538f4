//! The CI templates' structure (`examples/ci/*.yml`), read with reimage's own YAML loader: the
//! approval gates, permissions, secrets and concurrency they promise. No network, no real CI;
//! every shell script in them must at least parse (`bash -n`). Their commands run end to end in
//! `tests/e2e_ci_flow.rs`.

mod common;

use std::process::Command;

use common::ci;
use serde_json::{Value, json};

fn is_commit_id(text: &str) -> bool {
    text.len() == 40 && text.bytes().all(|byte| byte.is_ascii_hexdigit())
}

/// `bash -n`: the script parses.
fn assert_parses(what: &str, script: &str) {
    let output = Command::new("bash")
        .args(["--noprofile", "--norc", "-n", "-c", script])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{what} is not valid bash: {}\n{script}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `needs:` as job names (a name, a list of names, or a list of `{job: …}`).
fn needs(job: &Value) -> Vec<String> {
    match &job["needs"] {
        Value::String(name) => vec![name.clone()],
        Value::Array(items) => items
            .iter()
            .filter_map(|item| match item {
                Value::String(name) => Some(name.clone()),
                other => other["job"].as_str().map(str::to_string),
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn environment_name(job: &Value) -> Option<&str> {
    job["environment"]
        .as_str()
        .or_else(|| job["environment"]["name"].as_str())
}

#[test]
fn github_actions_plans_pull_requests_and_applies_the_reviewed_artifact_behind_an_environment() {
    let doc = ci::github();
    let on = &doc["on"];
    assert!(on["pull_request"].is_object(), "plans run on pull requests");
    assert_eq!(on["push"]["branches"], json!(["main"]));
    assert_eq!(
        on["workflow_dispatch"]["inputs"]["commit"]["required"],
        true
    );
    assert!(
        on.get("pull_request_target").is_none(),
        "pull_request_target would hand a fork's code the secrets"
    );
    assert_eq!(doc["permissions"], json!({}), "nothing by default");
    assert_eq!(doc["defaults"]["run"]["shell"], "bash");
    assert!(is_commit_id(ci::text(&doc["env"], "REIMAGE_REV", "env")));

    let jobs: Vec<&String> = doc["jobs"].as_object().unwrap().keys().collect();
    assert_eq!(jobs, ["fork-notice", "plan", "reviewed-plan", "apply"]);

    // Forks: no plan job, no secrets, a notice instead of a confusing failure.
    let same_repo = "github.event.pull_request.head.repo.full_name == github.repository";
    let fork = "github.event.pull_request.head.repo.full_name != github.repository";
    let plan = ci::github_job(&doc, "plan");
    assert!(ci::text(plan, "if", "plan").contains(same_repo));
    let notice = ci::github_job(&doc, "fork-notice");
    assert!(ci::text(notice, "if", "fork-notice").contains(fork));
    assert!(!notice.to_string().contains("secrets."));
    assert!(notice.to_string().contains("::notice"));

    // Least privilege, job by job.
    assert_eq!(notice["permissions"], json!({}));
    assert_eq!(
        plan["permissions"],
        json!({"contents": "read", "pull-requests": "write"})
    );
    let reviewed = ci::github_job(&doc, "reviewed-plan");
    assert_eq!(
        reviewed["permissions"],
        json!({"contents": "read", "pull-requests": "read", "actions": "read"})
    );
    let apply = ci::github_job(&doc, "apply");
    assert_eq!(
        apply["permissions"],
        json!({"contents": "read", "actions": "read"})
    );

    // Secrets reach exactly two steps, through `env:` only; `${{ }}` never lands in a script.
    for (job_name, job) in doc["jobs"].as_object().unwrap() {
        assert!(
            !job.get("env")
                .is_some_and(|env| env.to_string().contains("secrets.")),
            "job `{job_name}` hands secrets to every step"
        );
        for step in ci::github_steps(&doc, job_name) {
            let id = step["id"].as_str().unwrap_or("");
            let with_secrets = step.to_string().contains("secrets.");
            let allowed = (job_name.as_str(), id) == ("plan", "plan")
                || (job_name.as_str(), id) == ("apply", "apply");
            assert!(
                !with_secrets || allowed,
                "step `{id}` of `{job_name}` has secrets"
            );
            if let Some(script) = step["run"].as_str() {
                assert!(
                    !script.contains("${{"),
                    "`{job_name}` step `{id}`: expressions belong in `env:` (script injection)"
                );
                assert_parses(&format!("`{job_name}` step `{id}`"), script);
            }
            if let Some(uses) = step["uses"].as_str() {
                let (_, pin) = uses.split_once('@').unwrap();
                assert!(is_commit_id(pin), "`{uses}` is not pinned to a commit");
            }
            if step["uses"]
                .as_str()
                .is_some_and(|uses| uses.starts_with("actions/checkout@"))
            {
                assert_eq!(step["with"]["persist-credentials"], false);
            }
        }
    }

    // The plan: at the PR's head commit, signed, uploaded under that commit's name, commented.
    let checkout = ci::github_step_using(&doc, "plan", "actions/checkout");
    assert_eq!(
        checkout["with"]["ref"],
        "${{ github.event.pull_request.head.sha }}"
    );
    assert_eq!(plan["concurrency"]["cancel-in-progress"], true);
    let plan_step = ci::github_step(&doc, "plan", "plan");
    let plan_command = ci::the_command(ci::text(plan_step, "run", "plan"), "reimage plan");
    assert!(
        plan_command.contains("-out=plan.json --markdown"),
        "{plan_command}"
    );
    let upload = ci::github_step_using(&doc, "plan", "actions/upload-artifact");
    assert_eq!(
        upload["with"]["name"],
        "reimage-plan-${{ github.event.pull_request.head.sha }}"
    );
    let files = ci::string_list(&upload["with"]["path"]);
    assert!(files.contains(&"plan.json".into()) && files.contains(&"plan.json.sig".into()));
    assert_eq!(upload["with"]["if-no-files-found"], "error");
    let comment = ci::github_steps(&doc, "plan")
        .iter()
        .find(|step| {
            step["run"]
                .as_str()
                .is_some_and(|run| run.contains("issues/comments"))
        })
        .expect("a step posts the plan comment");
    let comment_script = comment["run"].as_str().unwrap();
    for needed in [
        "marker=\"<!-- reimage-plan:",
        "startswith(\\\"$marker\\\")",
        "github-actions[bot]",
        "--method PATCH",
    ] {
        assert!(
            comment_script.contains(needed),
            "comment step lacks {needed}"
        );
    }
    assert!(ci::text(comment, "if", "comment").contains("!cancelled()"));

    // The apply: after the lookup, in the protected environment, one at a time, exactly the
    // artifact of the reviewed commit, refused unless signed and made at that commit.
    assert_eq!(
        reviewed["outputs"],
        json!({
            "commit": "${{ steps.find.outputs.commit }}",
            "run-id": "${{ steps.find.outputs.run-id }}",
            "artifact": "${{ steps.find.outputs.artifact }}",
        })
    );
    assert!(ci::text(reviewed, "if", "reviewed-plan").contains("workflow_dispatch"));
    assert_eq!(needs(apply), ["reviewed-plan"]);
    assert_eq!(environment_name(apply), Some("production"));
    assert!(
        apply["concurrency"]["group"]
            .as_str()
            .is_some_and(|group| !group.contains("${{")),
        "one group for every apply"
    );
    assert_eq!(apply["concurrency"]["cancel-in-progress"], false);
    let download = ci::github_step_using(&doc, "apply", "actions/download-artifact");
    assert_eq!(
        download["with"]["name"],
        "${{ needs.reviewed-plan.outputs.artifact }}"
    );
    assert_eq!(
        download["with"]["run-id"],
        "${{ needs.reviewed-plan.outputs.run-id }}"
    );
    assert_eq!(download["with"]["github-token"], "${{ github.token }}");
    let apply_step = ci::github_step(&doc, "apply", "apply");
    let apply_command = ci::the_command(ci::text(apply_step, "run", "apply"), "reimage apply");
    assert!(
        apply_command.contains("--require-signed --require-commit \"$REVIEWED_SHA\""),
        "{apply_command}"
    );
    assert_eq!(
        apply_step["env"]["REVIEWED_SHA"],
        "${{ needs.reviewed-plan.outputs.commit }}"
    );

    // reimage is installed from a pinned commit in both jobs that run it.
    for job in ["plan", "apply"] {
        let install = ci::github_steps(&doc, job)
            .iter()
            .filter_map(|step| step["run"].as_str())
            .find(|run| run.contains("cargo install"))
            .unwrap_or_else(|| panic!("`{job}` installs reimage"));
        assert!(
            install
                .contains("cargo install --locked --git \"$REIMAGE_GIT\" --rev \"$REIMAGE_REV\""),
            "{install}"
        );
    }
}

#[test]
fn gitlab_ci_plans_merge_requests_and_applies_by_a_blocking_manual_job() {
    let doc = ci::gitlab();
    assert_eq!(doc["stages"], json!(["plan", "report", "apply"]));
    assert!(is_commit_id(ci::text(
        &doc["variables"],
        "REIMAGE_REV",
        "variables"
    )));
    let jobs: Vec<&String> = doc
        .as_object()
        .unwrap()
        .iter()
        .filter(|(name, value)| value["script"].is_array() && !name.starts_with('.'))
        .map(|(name, _)| name)
        .collect();
    assert_eq!(
        jobs,
        ["plan", "fork-notice", "plan-note", "reviewed-plan", "apply"]
    );

    // Every script parses.
    for (name, job) in doc.as_object().unwrap() {
        for key in ["before_script", "script", "after_script"] {
            if job[key].is_array() {
                assert_parses(
                    &format!("`{name}.{key}`"),
                    &ci::gitlab_script(&doc, name, key),
                );
            }
        }
    }

    // Plans only for merge requests from this project; a fork's gets a notice, no secrets.
    let same_project = "$CI_PIPELINE_SOURCE == \"merge_request_event\" && $CI_MERGE_REQUEST_SOURCE_PROJECT_ID == $CI_MERGE_REQUEST_PROJECT_ID";
    let plan = ci::gitlab_job(&doc, "plan");
    let plan_rules = plan["rules"].as_array().unwrap();
    assert!(
        plan_rules.iter().all(|rule| rule["if"] == same_project),
        "{plan_rules:?}"
    );
    let notice = ci::gitlab_job(&doc, "fork-notice");
    assert!(
        notice["rules"][0]["if"]
            .as_str()
            .unwrap()
            .contains("$CI_MERGE_REQUEST_SOURCE_PROJECT_ID != $CI_MERGE_REQUEST_PROJECT_ID")
    );
    assert!(!ci::gitlab_script(&doc, "fork-notice", "script").contains("$REIMAGE_"));
    let plan_command = ci::the_command(&ci::gitlab_script(&doc, "plan", "script"), "reimage plan");
    assert!(
        plan_command.contains("-out=plan.json --markdown"),
        "{plan_command}"
    );
    assert_eq!(plan["artifacts"]["when"], "always");
    let kept = ci::string_list(&plan["artifacts"]["paths"]);
    for file in ["plan.json", "plan.json.sig", "plan.md", "plan.status"] {
        assert!(kept.contains(&file.to_string()), "{kept:?}");
    }
    assert_eq!(plan["interruptible"], true);

    // The note: after the plan (even a failed one), one note edited in place.
    let note = ci::gitlab_job(&doc, "plan-note");
    assert_eq!(note["needs"], json!([{"job": "plan", "artifacts": true}]));
    let note_rules = note["rules"].as_array().unwrap();
    assert_eq!(note_rules.len(), plan_rules.len());
    for (note_rule, plan_rule) in note_rules.iter().zip(plan_rules) {
        assert_eq!(note_rule["if"], plan_rule["if"]);
        assert_eq!(note_rule["changes"], plan_rule["changes"]);
        assert_eq!(note_rule["when"], "always");
    }
    let note_script = ci::gitlab_script(&doc, "plan-note", "script");
    for needed in [
        "marker=\"<!-- reimage-plan:",
        "startswith($marker)",
        ".author.id == $me",
        "-X PUT",
    ] {
        assert!(note_script.contains(needed), "plan-note lacks {needed}");
    }

    // The lookup hands the reviewed commit and its plan to `apply`.
    let reviewed = ci::gitlab_job(&doc, "reviewed-plan");
    assert_eq!(reviewed["artifacts"]["reports"]["dotenv"], "reviewed.env");
    assert_eq!(
        ci::string_list(&reviewed["artifacts"]["paths"]),
        ["plan.json", "plan.json.sig"]
    );

    // The apply: manual but blocking (a failure fails the pipeline), on the default branch only,
    // in the protected environment, one at a time, never cancelled.
    let apply = ci::gitlab_job(&doc, "apply");
    assert!(
        apply.get("when").is_none() && apply.get("allow_failure").is_none(),
        "`when`/`allow_failure` belong inside `rules:` (beside them, `when: manual` makes an \
         optional job whose failure leaves the pipeline green)"
    );
    let apply_rules = apply["rules"].as_array().unwrap();
    assert!(!apply_rules.is_empty());
    for rule in apply_rules {
        assert_eq!(rule["when"], "manual", "{rule}");
        assert_eq!(rule["allow_failure"], false, "{rule}");
        assert!(
            rule["if"]
                .as_str()
                .unwrap()
                .starts_with("$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH && "),
            "{rule}"
        );
    }
    assert_eq!(environment_name(apply), Some("production"));
    assert!(
        apply["resource_group"]
            .as_str()
            .is_some_and(|group| !group.is_empty())
    );
    assert_eq!(apply["interruptible"], false);
    assert_eq!(
        apply["needs"],
        json!([{"job": "reviewed-plan", "artifacts": true}])
    );
    assert_eq!(needs(apply), ["reviewed-plan"]);
    let apply_command =
        ci::the_command(&ci::gitlab_script(&doc, "apply", "script"), "reimage apply");
    assert!(
        apply_command.contains("--require-signed --require-commit \"$REVIEWED_SHA\" plan.json"),
        "{apply_command}"
    );

    // reimage is installed from a pinned commit for the jobs that run it.
    let install = ci::gitlab_script(&doc, ".reimage", "before_script");
    assert!(
        install.contains("cargo install --locked --git \"$REIMAGE_GIT\" --rev \"$REIMAGE_REV\""),
        "{install}"
    );
    for job in ["plan", "apply"] {
        assert_eq!(ci::gitlab_job(&doc, job)["extends"], ".reimage");
    }
}

/// A plan job without its secrets (a Dependabot pull request, a variable not readable by MR
/// pipelines) says so and makes no plan, rather than an unsigned one or a confusing error.
#[test]
fn plan_scripts_say_when_their_secrets_are_missing() {
    let github = ci::github();
    let gitlab = ci::gitlab();
    let scripts = [
        (
            "GitHub",
            ci::text(ci::github_step(&github, "plan", "plan"), "run", "plan").to_string(),
        ),
        ("GitLab", ci::gitlab_script(&gitlab, "plan", "script")),
    ];
    for (ci_name, script) in scripts {
        let dir = tempfile::tempdir().unwrap();
        let output = Command::new("bash")
            .args(["--noprofile", "--norc", "-eo", "pipefail", "-c", &script])
            .current_dir(dir.path())
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("REIMAGE_MANIFEST", "fleet/reimage.yaml")
            .env("REIMAGE_PLAN_TTL", "72h")
            // What a run without secrets gets: empty values.
            .env("REIMAGE_PLAN_KEY", "")
            .env("REIMAGE_PG_URL", "")
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&output.stdout);
        assert_eq!(output.status.code(), Some(1), "{ci_name}: {said}");
        assert!(
            said.contains("REIMAGE_PLAN_KEY or REIMAGE_PG_URL is empty"),
            "{ci_name}: {said}"
        );
        assert!(said.contains("no plan was made"), "{ci_name}: {said}");
        assert!(!dir.path().join("plan.json").exists());
    }
}
