//! EDIS helpers for end-to-end tests: an inventory, a manifest, and an emulator process whose
//! auth URL is read from its banner.

use std::path::Path;

pub const EMAIL: &str = "ops+edis@example.com";
/// `+ & = %`: what breaks naive form encoders.
pub const ACCOUNT_PASSWORD: &str = "Emu+lator&Pass=1%";
pub const ROOT_PASSWORD: &str = "R00t+pw&x=y%z";

/// A `reimage` command with the EDIS login in the environment variables the manifest names.
pub fn reimage(dir: &Path) -> assert_cmd::Command {
    let mut command = super::reimage(dir);
    command
        .env_remove("EDIS_EMAIL")
        .env_remove("EDIS_PASSWORD")
        .env("TEST_EDIS_EMAIL", EMAIL)
        .env("TEST_EDIS_PASSWORD", ACCOUNT_PASSWORD);
    command
}

/// (kvm_id, description, image installed at the start)
pub fn inventory(vps: &[(&str, &str, &str)], ticket_ttl: f64, install_seconds: f64) -> String {
    let mut text = format!(
        "install_seconds: {install_seconds}\nedis:\n  ticket_ttl_seconds: {ticket_ttl}\n  accounts:\n    - {{email: \"{EMAIL}\", password: \"{ACCOUNT_PASSWORD}\"}}\n  images: [debian-bookworm, debian-bullseye, ubuntu-24.04]\n  turnkey_images: [turnkey-lamp-18.0-bookworm]\n  vps:\n"
    );
    for (id, description, image) in vps {
        text.push_str(&format!(
            "    - {{kvm_id: \"{id}\", description: {description}, image: {image}}}\n"
        ));
    }
    text
}

/// A manifest for (name, kvm_id, desired image) with a password file holding
/// [`ROOT_PASSWORD`]; `provider_options` is YAML for `providers.edis.options` (may be empty).
pub fn manifest(
    dir: &Path,
    auth_url: &str,
    servers: &[(&str, &str, &str)],
    provider_options: &str,
) -> String {
    std::fs::write(dir.join("root.password"), format!("{ROOT_PASSWORD}\n")).unwrap();
    let mut text = format!(
        "version: 1\nproviders:\n  edis:\n    type: edis-kvm\n    endpoint: {auth_url}\n    poll_interval: 0.2\n    credentials:\n      email: {{env: TEST_EDIS_EMAIL}}\n      password: {{env: TEST_EDIS_PASSWORD}}\n    options:\n      completion_grace_seconds: 0.3\n{provider_options}defaults:\n  provider: edis\n  access:\n    password: {{file: root.password}}\n  user_data: |\n    #cloud-config\n    runcmd: [\"echo a&b=c+d\"]\nservers:\n"
    );
    for (name, id, image) in servers {
        text.push_str(&format!(
            "  - name: {name}\n    id: {id}\n    os:\n      image: {image}\n"
        ));
    }
    text
}

/// A running `reimage emulator serve` process (the shared harness) and its EDIS auth URL.
pub struct EdisEmulator {
    emulator: super::Emulator,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    /// The EDIS auth URL.
    pub auth_url: String,
}

impl EdisEmulator {
    pub fn start(dir: &Path, inventory_text: &str) -> EdisEmulator {
        let emulator = super::Emulator::start(dir, inventory_text);
        EdisEmulator {
            base: emulator.base.clone(),
            auth_url: emulator.endpoints["edis-kvm"].clone(),
            emulator,
        }
    }

    fn request(&self, method: &str, path: &str, body: &str) -> serde_json::Value {
        self.emulator.request(method, path, body)
    }

    /// `edis` part of `GET /_emulator/state`.
    pub fn state(&self) -> serde_json::Value {
        self.request("GET", "/_emulator/state", "")["edis"].clone()
    }

    pub fn vps(&self, id: &str) -> serde_json::Value {
        self.state()["servers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|vps| vps["id"] == id)
            .cloned()
            .unwrap()
    }

    pub fn reinstall_count(&self, id: &str) -> u64 {
        self.vps(id)["reinstall_count"].as_u64().unwrap()
    }

    pub fn set_faults(&self, faults: serde_json::Value) {
        self.request(
            "POST",
            "/_emulator/faults",
            &serde_json::json!({ "edis": faults }).to_string(),
        );
    }
}
