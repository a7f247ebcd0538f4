//! Helpers for the Huawei Cloud end-to-end tests: inventories, manifests, emulator state.

use std::path::Path;

use super::Emulator;

pub const AK: &str = "HWAKE2E00001";
pub const SK: &str = "HwE2eSecretKey-canary-0001";
pub const PROJECT: &str = "0a1b2c3d4e5f60718293a4b5c6d7e8f9";
/// A password that meets Huawei's policy; also a canary that must never be printed.
pub const PASSWORD: &str = "Canary!Bm-Pass-2026";

/// A `reimage` command with no Huawei variables from the outer environment and the test
/// credentials in `TEST_HW_*`.
pub fn reimage(dir: &Path) -> assert_cmd::Command {
    assert_cmd::Command::from_std(command(dir))
}

/// [`reimage`] as a plain process command.
pub fn command(dir: &Path) -> std::process::Command {
    let mut command = super::command(dir);
    for name in [
        "HW_ACCESS_KEY",
        "HW_SECRET_KEY",
        "HW_SECURITY_TOKEN",
        "HW_AUTH_TOKEN",
        "HW_PROJECT_ID",
        "HW_REGION_NAME",
        "HW_CLOUD",
        "HW_AUTH_URL",
        "HUAWEICLOUD_SDK_AK",
        "HUAWEICLOUD_SDK_SK",
        "HUAWEICLOUD_SDK_PROJECT_ID",
        "HUAWEICLOUD_SDK_IAM_ENDPOINT",
        "OS_ACCESS_KEY",
        "OS_SECRET_KEY",
        "OS_AUTH_TOKEN",
        "OS_PROJECT_ID",
        "OS_REGION_NAME",
    ] {
        command.env_remove(name);
    }
    command.env("TEST_HW_AK", AK);
    command.env("TEST_HW_SK", SK);
    command.env("TEST_HW_PW", PASSWORD);
    command
}

/// ECS servers `(id, image, extra inventory fields)` and CloudDC instances `(id, image, extra)`.
pub fn inventory(
    ecs: &[(&str, &str, &str)],
    clouddc: &[(String, &str, &str)],
    install_seconds: f64,
) -> String {
    let mut text = format!(
        "install_seconds: {install_seconds}\nhuaweicloud:\n  credentials: [{{access_key: {AK}, secret_key: {SK}}}]\n  projects: [{{id: {PROJECT}, name: cn-north-4}}]\n  ecs:\n    images:\n      - {{id: img-old, name: Old OS}}\n      - {{id: img-new, name: New OS}}\n    servers:"
    );
    if ecs.is_empty() {
        text.push_str(" []");
    }
    text.push('\n');
    for (id, image, extra) in ecs {
        text.push_str(&format!(
            "      - {{id: {id}, name: n-{id}, image: {image}{extra}}}\n"
        ));
    }
    text.push_str("  clouddc:\n    images:\n      - {id: dc-old, name: Old}\n      - {id: dc-new, name: New}\n    instances:");
    if clouddc.is_empty() {
        text.push_str(" []");
    }
    text.push('\n');
    for (id, image, extra) in clouddc {
        text.push_str(&format!(
            "      - {{id: {id}, name: n-{id}, image: {image}{extra}}}\n"
        ));
    }
    text
}

/// A manifest with one provider of `provider_type` at the emulator; `servers` are
/// `(name, id, image)`; `defaults` is YAML under `defaults:` (after `provider:`).
pub fn manifest(
    provider_type: &str,
    emulator: &Emulator,
    servers: &[(&str, &str, &str)],
    defaults: &str,
    server_extra: &str,
) -> String {
    let base = &emulator.base;
    let mut text = format!(
        "version: 1\nproviders:\n  hw:\n    type: {provider_type}\n    region: cn-north-4\n    endpoint: {base}\n    poll_interval: 0.2\n    credentials:\n      access_key: {{env: TEST_HW_AK}}\n      secret_key: {{env: TEST_HW_SK}}\n    options:\n      iam_endpoint: {base}\npolicy:\n  rollout: {{canary: 0, max_parallel: 30, max_failures: 30}}\ndefaults:\n  provider: hw\n{defaults}servers:\n"
    );
    for (name, id, image) in servers {
        text.push_str(&format!(
            "  - name: {name}\n    id: {id}\n    os: {{image: {image}}}\n{server_extra}"
        ));
    }
    text
}

/// The emulator's view of one Huawei server (`ecs` or `clouddc`).
pub fn server(emulator: &Emulator, family: &str, id: &str) -> serde_json::Value {
    let state = emulator.state();
    state["huaweicloud"][family]["servers"]
        .as_array()
        .and_then(|servers| servers.iter().find(|server| server["id"] == id).cloned())
        .unwrap_or(serde_json::Value::Null)
}

/// Every accepted call of `ecs` or `clouddc`, oldest first.
pub fn calls(emulator: &Emulator, family: &str) -> Vec<serde_json::Value> {
    emulator.state()["huaweicloud"][family]["calls"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}
