//! Helpers for the JD Cloud CPS end-to-end tests: inventory, manifest, emulator state.

use std::path::Path;

use super::Emulator;

pub const AK: &str = "JDAKE2ETEST0001";
pub const SK: &str = "jd-e2e-secret-canary-5a1";
/// The servers' password; a canary that must never show up in output, plans or state.
pub const PASSWORD: &str = "Canary9Passw0rd";
pub const OLD_OS: &str = "os-centos-79";
pub const NEW_OS: &str = "os-ubuntu-2204";

/// A `reimage` command with JD credentials in test variables and none of JD's own variables.
pub fn reimage(dir: &Path) -> assert_cmd::Command {
    let mut command = super::reimage(dir);
    for name in ["JDCLOUD_ACCESS_KEY", "JDCLOUD_SECRET_KEY", "JDCLOUD_REGION"] {
        command.env_remove(name);
    }
    command.env("TEST_JD_AK", AK);
    command.env("TEST_JD_SK", SK);
    command.env("TEST_JD_PASSWORD", PASSWORD);
    command
}

/// One server: id, status (`running`/`stopped`), current OS, and YAML flags.
pub struct JdServer {
    pub id: &'static str,
    pub status: &'static str,
    pub os: &'static str,
    pub extra: &'static str,
}

pub fn jd_server(id: &'static str, status: &'static str, os: &'static str) -> JdServer {
    JdServer {
        id,
        status,
        os,
        extra: "",
    }
}

pub fn inventory(servers: &[JdServer], install_seconds: f64) -> String {
    let mut text = format!(
        "install_seconds: {install_seconds}\njdcloud:\n  stop_seconds: 0.3\n  credentials:\n    - {{access_key: {AK}, secret_key: {SK}}}\n  os:\n    - {{os_type_id: {OLD_OS}, os_name: \"CentOS 7.9\", device_type: cps.c.normal}}\n    - {{os_type_id: {NEW_OS}, os_name: \"Ubuntu 22.04\", device_type: cps.c.normal}}\n  servers:\n"
    );
    for server in servers {
        text.push_str(&format!(
            "    - {{id: {}, name: n-{}, region: cn-east-1, az: cn-east-1a, status: {}, os_type_id: {}, sys_raid_type_id: r-sys-raid1, data_raid_type_id: r-data-noraid{}}}\n",
            server.id, server.id, server.status, server.os, server.extra
        ));
    }
    text
}

/// A manifest for (name, id, desired OS, server options as flow YAML) against the emulator.
pub fn manifest(emulator: &Emulator, servers: &[(&str, &str, &str, &str)]) -> String {
    let mut text = format!(
        "version: 1\nproviders:\n  jd:\n    type: jdcloud-cps\n    endpoint: {}\n    region: cn-east-1\n    poll_interval: 0.2\n    credentials:\n      access_key: {{env: TEST_JD_AK}}\n      secret_key: {{env: TEST_JD_SK}}\n    options:\n      running_grace_seconds: 30\ndefaults:\n  provider: jd\n  access:\n    password: {{env: TEST_JD_PASSWORD}}\nservers:\n",
        emulator.base
    );
    for (name, id, os, options) in servers {
        text.push_str(&format!(
            "  - name: {name}\n    id: {id}\n    os: {{image: {os}}}\n    options: {options}\n"
        ));
    }
    text
}

/// The emulator's view of one JD server (`/_emulator/state`, key `jdcloud`).
pub fn server_state(emulator: &Emulator, id: &str) -> serde_json::Value {
    let state = emulator.state();
    state["jdcloud"]["servers"]
        .as_array()
        .and_then(|servers| servers.iter().find(|server| server["id"] == id))
        .cloned()
        .unwrap_or(serde_json::Value::Null)
}

pub fn count(emulator: &Emulator, id: &str, field: &str) -> u64 {
    server_state(emulator, id)[field].as_u64().unwrap_or(0)
}
