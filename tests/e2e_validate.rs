//! `validate` knows everything `plan` knows: one table of every rule that `plan` or provider
//! construction enforces without the network. For each, `validate` reports it at its line
//! (with the allowed values or a did-you-mean where there are any), and `plan` stops at the
//! same place and writes nothing (no state, no lock, no `.reimage` folder).

mod common;

use std::path::Path;

use common::{flat, stderr_of, stdout_of};

/// The environment variables the providers read as defaults; removed so the host's own
/// settings cannot change the outcome.
const PROVIDER_ENV: [&str; 24] = [
    "ZENLAYERCLOUD_ACCESS_KEY_ID",
    "ZENLAYERCLOUD_ACCESS_KEY_PASSWORD",
    "ZENLAYER_ACCESS_KEY_ID",
    "ZENLAYER_ACCESS_KEY_SECRET",
    "ZENLAYER_TOKEN",
    "ZENLAYERCLOUD_DOMAIN",
    "HW_ACCESS_KEY",
    "HW_SECRET_KEY",
    "HW_AUTH_TOKEN",
    "HW_REGION_NAME",
    "HW_PROJECT_ID",
    "HUAWEICLOUD_SDK_AK",
    "HUAWEICLOUD_SDK_SK",
    "HUAWEICLOUD_SDK_PROJECT_ID",
    "OS_ACCESS_KEY",
    "OS_SECRET_KEY",
    "OS_AUTH_TOKEN",
    "OS_REGION_NAME",
    "OS_PROJECT_ID",
    "JDCLOUD_ACCESS_KEY",
    "JDCLOUD_SECRET_KEY",
    "JDCLOUD_REGION",
    "EDIS_EMAIL",
    "EDIS_PASSWORD",
];

fn reimage(dir: &Path, args: &[&str]) -> std::process::Output {
    let mut command = common::reimage(dir);
    for name in PROVIDER_ENV {
        command.env_remove(name);
    }
    command
        .env("TEST_AK", "AKTEST")
        .env("TEST_SK", "sk-test-value")
        .env("TEST_PW", "Reimage-Test-9x")
        .env_remove("REIMAGE_TEST_UNSET")
        .args(args)
        .output()
        .unwrap()
}

/// Credentials every provider type accepts, by type.
fn credentials(provider_type: &str) -> &'static str {
    match provider_type {
        "zenlayer-bmc" => "{access_key_id: {env: TEST_AK}, access_key_password: {env: TEST_SK}}",
        "edis-kvm" => "{email: {env: TEST_AK}, password: {env: TEST_SK}}",
        _ => "{access_key: {env: TEST_AK}, secret_key: {env: TEST_SK}}",
    }
}

/// A manifest with one provider `p` of `provider_type` and one server, each with extra YAML
/// lines (already indented for their place).
fn manifest(provider_type: &str, provider_lines: &str, server_lines: &str) -> String {
    let region = match provider_type {
        _ if provider_lines.contains("region:") => "",
        "edis-kvm" | "zenlayer-bmc" => "",
        "jdcloud-cps" => "    region: cn-east-1\n",
        _ => "    region: cn-north-4\n",
    };
    let access = match provider_type {
        "zenlayer-bmc" => "    access: {ssh_key_id: key-1}\n",
        _ => "    access: {password: {env: TEST_PW}}\n",
    };
    let provider_lines = if provider_lines.contains("credentials:") {
        provider_lines.to_string()
    } else {
        format!(
            "    credentials: {}\n{provider_lines}",
            credentials(provider_type)
        )
    };
    let server_lines = if server_lines.contains("access:") {
        server_lines.to_string()
    } else {
        format!("{access}{server_lines}")
    };
    format!(
        "version: 1\nproviders:\n  p:\n    type: {provider_type}\n{region}{provider_lines}servers:\n  - name: web-1\n    id: srv-1\n    os: {{image: img-1}}\n{server_lines}"
    )
}

/// One rule: the manifest that breaks it, the line (found by a unique marker in the text)
/// the diagnostic points at, and words its message or help must contain.
struct Rule {
    name: &'static str,
    manifest: String,
    marker: &'static str,
    expected: &'static [&'static str],
    /// `validate` warns (a later environment may fix it); `plan` refuses.
    warning_only: bool,
}

fn rule(
    name: &'static str,
    provider_type: &str,
    provider_lines: &str,
    server_lines: &str,
    marker: &'static str,
    expected: &'static [&'static str],
) -> Rule {
    Rule {
        name,
        manifest: manifest(provider_type, provider_lines, server_lines),
        marker,
        expected,
        warning_only: false,
    }
}

fn rules() -> Vec<Rule> {
    let zl = "zenlayer-bmc";
    let ecs = "huaweicloud-ecs";
    let dc = "huaweicloud-clouddc";
    let jd = "jdcloud-cps";
    let edis = "edis-kvm";
    let mut rules = vec![
        rule(
            "credential key typo",
            zl,
            "    credentials:\n      acess_key_id: {env: TEST_AK}\n      access_key_password: {env: TEST_SK}\n",
            "",
            "acess_key_id",
            &[
                "`acess_key_id`",
                "access_key_password, token",
                "did you mean `access_key_id`?",
            ],
        ),
        rule(
            "half a credential pair",
            zl,
            "    credentials:\n      access_key_password: {env: TEST_SK}\n",
            "",
            "access_key_password",
            &["must be given together", "`access_key_id` is missing"],
        ),
        rule(
            "access key and token together",
            zl,
            "    credentials:\n      access_key_id: {env: TEST_AK}\n      access_key_password: {env: TEST_SK}\n      token: {env: TEST_SK}\n",
            "",
            "token:",
            &["both an access key and a token"],
        ),
        rule(
            "Zenlayer api_version",
            zl,
            "    options: {api_version: \"2023-01-01\"}\n",
            "",
            "2023-01-01",
            &["api_version", "2022-11-20, 2026-02-01"],
        ),
        rule(
            "Zenlayer running grace",
            zl,
            "    options: {running_grace_seconds: -5}\n",
            "",
            "running_grace_seconds",
            &["running_grace_seconds", "at least 0"],
        ),
        rule(
            "unknown provider option",
            zl,
            "    options: {api_verison: \"2022-11-20\"}\n",
            "",
            "api_verison",
            &["`api_verison`", "did you mean `api_version`?"],
        ),
        rule(
            "plain http to another host",
            zl,
            "    endpoint: http://api.example.com/api/v2/bmc\n",
            "",
            "endpoint:",
            &["plain http", "127.0.0.0/8"],
        ),
        rule(
            "credentials in the endpoint URL",
            jd,
            "    endpoint: https://user:pw@cps.example.com\n",
            "",
            "endpoint:",
            &["user info", "credentials:"],
        ),
        rule(
            "poll interval too large to be a duration",
            zl,
            "    poll_interval: 1.0e300\n",
            "",
            "poll_interval",
            &["must be a number of seconds > 0"],
        ),
        rule(
            "CloudDC reinstall batch",
            dc,
            "    options: {reinstall_batch: 51}\n",
            "",
            "reinstall_batch",
            &["reinstall_batch", "at most 50"],
        ),
        rule(
            "a CloudDC option on ECS",
            ecs,
            "    options: {reinstall_batch: 5}\n",
            "    options: {user_id: u-1}\n",
            "reinstall_batch",
            &[
                "`reinstall_batch`",
                "allowed keys here: project_id, iam_endpoint, base_domain",
            ],
        ),
        rule(
            "Huawei project id",
            ecs,
            "    options: {project_id: \"not a project\"}\n",
            "",
            "project_id",
            &["is not a project id", "32 hexadecimal"],
        ),
        rule(
            "Huawei IAM endpoint over plain http",
            ecs,
            "    options: {iam_endpoint: \"http://iam.example.com\"}\n",
            "",
            "iam_endpoint",
            &["IAM endpoint", "plain http"],
        ),
        rule(
            "a security token alone",
            ecs,
            "    credentials:\n      security_token: {env: TEST_SK}\n",
            "",
            "security_token",
            &["`security_token` alone is not a credential"],
        ),
        rule(
            "JD region",
            jd,
            "    region: CN_EAST\n",
            "",
            "CN_EAST",
            &["not a JD Cloud region id", "cn-north-1"],
        ),
        rule(
            "EDIS probe address",
            edis,
            "    options:\n      ssh_probe: {web-1: \"nowhere\"}\n",
            "",
            "nowhere",
            &["`ssh_probe.web-1`", "HOST:PORT"],
        ),
        rule(
            "EDIS image list",
            edis,
            "    options: {images: []}\n",
            "",
            "images",
            &["images", "at least 1 item"],
        ),
        rule(
            "EDIS credential typo",
            edis,
            "    credentials:\n      emial: {env: TEST_AK}\n      password: {env: TEST_SK}\n",
            "",
            "emial",
            &["`emial`", "did you mean `email`?"],
        ),
        rule(
            "ECS key pair without user id",
            ecs,
            "",
            "    access: {ssh_key_id: kp-ops}\n",
            "kp-ops",
            &["`options.user_id`", "key pair"],
        ),
        rule(
            "Zenlayer RAID type",
            zl,
            "",
            "    options: {raid_type: 3}\n",
            "raid_type",
            &["`raid_type` must be 0, 1, 5 or 10"],
        ),
        rule(
            "server option typo",
            jd,
            "",
            "    options: {allowstop: true}\n",
            "allowstop",
            &[
                "unknown JD Cloud option `allowstop`",
                "did you mean `allow_stop`?",
            ],
        ),
    ];
    // References that cannot be read now, and setups the environment of a later run may
    // complete: warnings for `validate`, errors for `plan`.
    for (name, provider_type, provider_lines, server_lines, marker, expected) in [
        (
            "credential from an unset variable",
            zl,
            "    credentials:\n      access_key_id: {env: REIMAGE_TEST_UNSET}\n      access_key_password: {env: TEST_SK}\n",
            "",
            "REIMAGE_TEST_UNSET",
            &["`REIMAGE_TEST_UNSET` is not set"][..],
        ),
        (
            "server password from a missing file",
            jd,
            "",
            "    access: {password: {file: missing-password}}\n",
            "missing-password",
            &["missing-password", "cannot read the file"][..],
        ),
        (
            "JD without a region anywhere",
            jd,
            "",
            "",
            "  p:",
            &["no region configured", "JDCLOUD_REGION"][..],
        ),
    ] {
        let mut text = manifest(provider_type, provider_lines, server_lines);
        if name.starts_with("JD without") {
            text = text.replace("    region: cn-east-1\n", "");
        }
        rules.push(Rule {
            name,
            manifest: text,
            marker,
            expected,
            warning_only: true,
        });
    }
    rules
}

fn line_of(text: &str, marker: &str) -> usize {
    let found: Vec<usize> = text
        .lines()
        .enumerate()
        .filter(|(_, line)| line.contains(marker))
        .map(|(index, _)| index + 1)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "marker {marker:?} must be unique in:\n{text}"
    );
    found[0]
}

#[test]
fn validate_reports_every_rule_plan_enforces_and_plan_writes_nothing() {
    let mut failures = Vec::new();
    for rule in rules() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("reimage.yaml"), &rule.manifest).unwrap();
        let line = line_of(&rule.manifest, rule.marker);

        // validate: the diagnostic, at its line, with its words.
        let validate = reimage(dir.path(), &["validate", "--json"]);
        let report: serde_json::Value =
            serde_json::from_slice(&validate.stdout).unwrap_or(serde_json::Value::Null);
        let severity = if rule.warning_only {
            "warning"
        } else {
            "error"
        };
        let found = report["diagnostics"].as_array().and_then(|diagnostics| {
            diagnostics.iter().find(|diagnostic| {
                let words = format!("{} {}", diagnostic["message"], diagnostic["help"]);
                diagnostic["severity"] == severity
                    && rule
                        .expected
                        .iter()
                        .all(|expected| words.contains(expected))
            })
        });
        match found {
            None => failures.push(format!(
                "{}: validate did not report it as {severity}: {report:#}",
                rule.name
            )),
            Some(diagnostic) if diagnostic["line"] != line => failures.push(format!(
                "{}: validate points at line {}, expected {line}",
                rule.name, diagnostic["line"]
            )),
            Some(_) => {}
        }
        let expected_code = if rule.warning_only { 0 } else { 1 };
        if validate.status.code() != Some(expected_code) {
            failures.push(format!(
                "{}: validate exited {:?}, expected {expected_code}",
                rule.name,
                validate.status.code()
            ));
        }

        // plan: stops at the same rule, located the same way, and writes nothing.
        let plan = reimage(dir.path(), &["plan"]);
        let err = flat(&stderr_of(&plan));
        if plan.status.code() != Some(1)
            || !rule.expected.iter().all(|expected| err.contains(expected))
            || !err.contains(&format!("reimage.yaml:{line}:"))
        {
            failures.push(format!(
                "{}: plan did not stop at the rule (exit {:?}):\n{err}\n{}",
                rule.name,
                plan.status.code(),
                stdout_of(&plan)
            ));
        }
        if dir.path().join(".reimage").exists() {
            failures.push(format!("{}: plan left a `.reimage` folder", rule.name));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The manifest the issue was filed with. Shape errors (the schema's) come first, all of them
/// located; once they are fixed, the provider rules that need a typed entry (plain http to
/// another host) are. `validate` never says "Success!" on the way.
#[test]
fn the_issue_s_manifest_is_refused_with_every_problem_located() {
    let dir = tempfile::tempdir().unwrap();
    let text = "version: 1\nproviders:\n  zl:\n    type: zenlayer-bmc\n    endpoint: http://10.0.0.1/api/v2/bmc\n    credentials:\n      acess_key: {env: TEST_AK}\n    options: {api_version: \"2023-01-01\"}\n  dc:\n    type: huaweicloud-clouddc\n    region: cn-east-3\n    credentials: {access_key: {env: TEST_AK}, secret_key: {env: TEST_SK}}\n    options: {reinstall_batch: 51}\nservers: []\n";
    let fixed = text
        .replace("acess_key: {env: TEST_AK}", "token: {env: TEST_AK}")
        .replace("\"2023-01-01\"", "\"2022-11-20\"")
        .replace("reinstall_batch: 51", "reinstall_batch: 50");
    for (manifest, expected) in [
        (
            text.to_string(),
            &[
                ("unknown key `acess_key` in `providers.zl.credentials`", 7),
                ("`api_version` must be one of: 2022-11-20, 2026-02-01", 8),
                ("at most 50", 13),
            ][..],
        ),
        (
            fixed,
            &[("plain http to a host that is not this machine", 5)][..],
        ),
    ] {
        std::fs::write(dir.path().join("reimage.yaml"), &manifest).unwrap();
        let validate = reimage(dir.path(), &["validate"]);
        let err = flat(&stderr_of(&validate));
        assert_eq!(validate.status.code(), Some(1), "{err}");
        assert!(!stdout_of(&validate).contains("Success"));
        for (words, line) in expected {
            assert!(err.contains(words), "{words}: {err}");
            assert!(
                err.contains(&format!("reimage.yaml:{line}:")),
                "{line}: {err}"
            );
        }
    }
}

/// User data, secrets and manifests that are FIFOs or devices would block a read forever (or
/// never end): each is refused at once, naming the file. The deadline only turns a hang into
/// a failure; it is not a speed requirement.
#[cfg(unix)]
#[test]
fn files_that_are_not_regular_are_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    assert!(made.is_ok_and(|status| status.success()), "mkfifo failed");
    let text = "version: 1\nproviders:\n  p:\n    type: zenlayer-bmc\n    credentials: {access_key_id: {env: TEST_AK}, access_key_password: {file: pipe}}\ndefaults: {os: {image: img-1}, access: {ssh_key_id: key-1}}\nservers:\n  - {name: a, id: '1', user_data: {file: /dev/zero}}\n  - {name: b, id: '2', user_data: {file: pipe}}\n  - {name: c, id: '3', access: {password: {file: pipe}}}\n";
    std::fs::write(dir.path().join("reimage.yaml"), text).unwrap();
    for command in ["validate", "plan"] {
        let output = common::reimage(dir.path())
            .timeout(std::time::Duration::from_secs(300))
            .arg(command)
            .output()
            .unwrap();
        let err = flat(&stderr_of(&output));
        assert_eq!(output.status.code(), Some(1), "{command}: {err}");
        assert!(
            err.contains("`/dev/zero` is a device, not a regular file"),
            "{command}: {err}"
        );
        assert!(
            err.contains("pipe` is a named pipe (FIFO), not a regular file"),
            "{command}: {err}"
        );
        assert!(
            err.contains("credential `access_key_password`")
                && err.contains("it is a named pipe (FIFO), not a regular file"),
            "{command}: {err}"
        );
    }
    let manifest_fifo = common::reimage(dir.path())
        .timeout(std::time::Duration::from_secs(300))
        .args(["validate", "-f", "pipe"])
        .output()
        .unwrap();
    assert_eq!(manifest_fifo.status.code(), Some(1));
    assert!(
        flat(&stderr_of(&manifest_fifo)).contains("is a named pipe (FIFO), not a regular file"),
        "{}",
        stderr_of(&manifest_fifo)
    );
    assert!(!dir.path().join(".reimage").exists());
}
