//! The CI templates in `examples/ci/` as data, read with reimage's own YAML loader: the scripts
//! of the steps and jobs the tests run, and the environment each would get from the template.
//!
//! The tests run exactly these scripts, so a template that drifts (a flag dropped, a variable
//! renamed, a step id changed) fails them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

pub fn template_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/ci")
        .join(name)
}

/// One template, parsed (YAML 1.2: GitHub's `on:` stays a string key).
pub fn load(name: &str) -> Value {
    let path = template_path(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    let (value, _) = reimage::manifest::yaml::parse_document(&text).unwrap_or_else(|error| {
        panic!(
            "{}:{}:{}: {}",
            path.display(),
            error.line,
            error.column,
            error.message
        )
    });
    value
}

pub fn github() -> Value {
    load("github-actions.yml")
}

pub fn gitlab() -> Value {
    load("gitlab-ci.yml")
}

/// `value[key]` as a string, with the path in the panic.
pub fn text<'a>(value: &'a Value, key: &str, what: &str) -> &'a str {
    value[key]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: `{key}` is not a string: {}", value[key]))
}

/// The GitHub job `job`.
pub fn github_job<'a>(doc: &'a Value, job: &str) -> &'a Value {
    let found = &doc["jobs"][job];
    assert!(found.is_object(), "github-actions.yml has no job `{job}`");
    found
}

/// The steps of a GitHub job.
pub fn github_steps<'a>(doc: &'a Value, job: &str) -> &'a Vec<Value> {
    github_job(doc, job)["steps"]
        .as_array()
        .unwrap_or_else(|| panic!("github-actions.yml: job `{job}` has no steps"))
}

/// The step with `id: step_id` in a GitHub job.
pub fn github_step<'a>(doc: &'a Value, job: &str, step_id: &str) -> &'a Value {
    github_steps(doc, job)
        .iter()
        .find(|step| step["id"] == step_id)
        .unwrap_or_else(|| panic!("github-actions.yml: job `{job}` has no step `id: {step_id}`"))
}

/// The step of a GitHub job that uses `action` (e.g. `actions/upload-artifact`).
pub fn github_step_using<'a>(doc: &'a Value, job: &str, action: &str) -> &'a Value {
    github_steps(doc, job)
        .iter()
        .find(|step| {
            step["uses"]
                .as_str()
                .is_some_and(|uses| uses.starts_with(&format!("{action}@")))
        })
        .unwrap_or_else(|| panic!("github-actions.yml: job `{job}` does not use {action}"))
}

/// The environment a GitHub step sees from the template: the workflow's `env`, the job's, the
/// step's. Every `${{ expression }}` value must be one of `known`: an expression this test does
/// not provide fails it, so a renamed secret or output is caught.
pub fn github_env(
    doc: &Value,
    job: &str,
    step: &Value,
    known: &BTreeMap<&str, String>,
) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for level in [&doc["env"], &github_job(doc, job)["env"], &step["env"]] {
        let Some(map) = level.as_object() else {
            continue;
        };
        for (name, value) in map {
            let value = match value {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            let resolved = match value
                .trim()
                .strip_prefix("${{")
                .and_then(|rest| rest.strip_suffix("}}"))
            {
                Some(expression) => known
                    .get(expression.trim())
                    .unwrap_or_else(|| {
                        panic!(
                            "github-actions.yml, job `{job}`: `{name}: {value}` is an expression \
                             this test does not provide"
                        )
                    })
                    .clone(),
                None => {
                    assert!(
                        !value.contains("${{"),
                        "`{name}: {value}`: only whole-value expressions are understood here"
                    );
                    value
                }
            };
            env.insert(name.clone(), resolved);
        }
    }
    env
}

/// The GitLab job `job`.
pub fn gitlab_job<'a>(doc: &'a Value, job: &str) -> &'a Value {
    let found = &doc[job];
    assert!(found.is_object(), "gitlab-ci.yml has no job `{job}`");
    found
}

/// A GitLab job's `script` (or `before_script`, `after_script`) as one shell script.
pub fn gitlab_script(doc: &Value, job: &str, key: &str) -> String {
    gitlab_job(doc, job)[key]
        .as_array()
        .unwrap_or_else(|| panic!("gitlab-ci.yml: job `{job}` has no `{key}` list"))
        .iter()
        .map(|line| {
            line.as_str()
                .unwrap_or_else(|| panic!("gitlab-ci.yml: `{job}.{key}` has a non-string item"))
                .to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The variables a GitLab job sets itself: the global ones, then the job's (taken literally).
pub fn gitlab_variables(doc: &Value, job: &str) -> BTreeMap<String, String> {
    let mut variables = BTreeMap::new();
    for level in [&doc["variables"], &gitlab_job(doc, job)["variables"]] {
        if let Some(map) = level.as_object() {
            for (name, value) in map {
                let value = match value {
                    Value::String(text) => text.clone(),
                    other => other.to_string(),
                };
                variables.insert(name.clone(), value);
            }
        }
    }
    variables
}

/// The `reimage …` command lines of a shell script, with `\` continuations joined and runs of
/// blanks squeezed.
pub fn reimage_commands(script: &str) -> Vec<String> {
    let mut commands = Vec::new();
    let mut current = String::new();
    for line in script.lines() {
        let line = line.trim();
        let (body, continued) = match line.strip_suffix('\\') {
            Some(body) => (body, true),
            None => (line, false),
        };
        if !current.is_empty() {
            current.push(' ');
        }
        current.push_str(body.trim());
        if !continued {
            let command = current.split_whitespace().collect::<Vec<_>>().join(" ");
            if command.starts_with("reimage ") {
                commands.push(command);
            }
            current.clear();
        }
    }
    commands
}

/// The one command of `script` that starts with `prefix` (e.g. `reimage apply`).
pub fn the_command(script: &str, prefix: &str) -> String {
    let found: Vec<String> = reimage_commands(script)
        .into_iter()
        .filter(|command| command.starts_with(prefix))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected one `{prefix}` in the script, found {found:?}:\n{script}"
    );
    found.into_iter().next().unwrap_or_default()
}

/// Strings in a list value (`paths: [...]`), or the lines of a block string (`path: |`).
pub fn string_list(value: &Value) -> Vec<String> {
    match value {
        Value::Array(items) => items
            .iter()
            .filter_map(|item| item.as_str().map(str::to_string))
            .collect(),
        Value::String(text) => text
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}
