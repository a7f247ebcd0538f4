//! Test harness: the real `reimage` binary, a real emulator process on loopback, temp folders.
#![allow(dead_code)]

pub mod ci;
pub mod edis;
pub mod huawei;
pub mod listeners;
#[cfg(feature = "postgres")]
pub mod postgres;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub const KEY_ID: &str = "ZLAKTEST0001";
pub const KEY_PASSWORD: &str = "TestEmulatorPassword0001";

pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_reimage"))
}

/// A `reimage` command in `dir` with a clean, colourless environment.
pub fn reimage(dir: &Path) -> assert_cmd::Command {
    assert_cmd::Command::from_std(command(dir))
}

/// [`reimage`] as a plain process command (for tests that spawn and kill it).
pub fn command(dir: &Path) -> Command {
    let mut command = Command::new(binary());
    command.current_dir(dir).env("NO_COLOR", "1");
    for name in [
        "ZENLAYERCLOUD_ACCESS_KEY_ID",
        "ZENLAYERCLOUD_ACCESS_KEY_PASSWORD",
        "ZENLAYER_ACCESS_KEY_ID",
        "ZENLAYER_ACCESS_KEY_SECRET",
        "ZENLAYER_TOKEN",
        "ZENLAYERCLOUD_DOMAIN",
        "ZENLAYERCLOUD_SCHEME",
        "REIMAGE_LOG",
        // Set by CI runners; a test opts in where it means to.
        "REIMAGE_PLAN_KEY",
        "GITHUB_STEP_SUMMARY",
    ] {
        command.env_remove(name);
    }
    command.env("TEST_ZL_KEY_ID", KEY_ID);
    command.env("TEST_ZL_KEY_PASSWORD", KEY_PASSWORD);
    command
}

/// One server in an emulator inventory.
pub struct InventoryServer {
    pub id: String,
    pub image: String,
    pub status: String,
    pub fail_next_install: bool,
}

pub fn server(id: &str, image: &str) -> InventoryServer {
    InventoryServer {
        id: id.to_string(),
        image: image.to_string(),
        status: "RUNNING".to_string(),
        fail_next_install: false,
    }
}

pub fn inventory(servers: &[InventoryServer], install_seconds: f64) -> String {
    let mut text = format!(
        "install_seconds: {install_seconds}\nzenlayer:\n  credentials:\n    - access_key_id: {KEY_ID}\n      access_key_password: {KEY_PASSWORD}\n  images:\n    - {{id: img-old, name: Old OS}}\n    - {{id: img-new, name: New OS}}\n  servers:\n"
    );
    for server in servers {
        text.push_str(&format!(
            "    - {{id: \"{}\", name: s{}, image: {}, status: {}, hostname: h{}, fail_next_install: {}}}\n",
            server.id, server.id, server.image, server.status, server.id, server.fail_next_install
        ));
    }
    text
}

/// A running `reimage emulator serve` process; killed on drop.
pub struct Emulator {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    /// The Zenlayer BMC endpoint.
    pub zenlayer: String,
    /// Every API's base URL as printed by the emulator, by provider type.
    pub endpoints: std::collections::BTreeMap<String, String>,
}

impl Emulator {
    pub fn start(dir: &Path, inventory_text: &str) -> Emulator {
        Self::start_with_args(dir, inventory_text, &[])
    }

    /// Starts with faults armed from the beginning (`--faults FILE`, the JSON of
    /// `POST /_emulator/faults`).
    pub fn start_with_faults(
        dir: &Path,
        inventory_text: &str,
        faults: serde_json::Value,
    ) -> Emulator {
        let path = dir.join("faults.json");
        std::fs::write(&path, faults.to_string()).unwrap();
        let path = path.display().to_string();
        Self::start_with_args(dir, inventory_text, &["--faults", &path])
    }

    fn start_with_args(dir: &Path, inventory_text: &str, extra: &[&str]) -> Emulator {
        let inventory_path = dir.join("inventory.yaml");
        std::fs::write(&inventory_path, inventory_text).unwrap();
        let mut child = Command::new(binary())
            .args([
                "emulator",
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--inventory",
            ])
            .arg(&inventory_path)
            .arg("--data-dir")
            .arg(dir.join("emulator-data"))
            .args(extra)
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let mut base = None;
        let mut endpoints = std::collections::BTreeMap::new();
        // The banner: the base URL, one line per API, then "Press Ctrl-C to stop." on stderr.
        loop {
            let line = lines.next().expect("emulator exited early").unwrap();
            if let Some(rest) = line.strip_prefix("reimage emulator listening on ") {
                base = Some(rest.trim().to_string());
                continue;
            }
            let mut words = line.split_whitespace();
            match (words.next(), words.next()) {
                (Some(kind), Some(url)) if url.starts_with("http://") => {
                    endpoints.insert(kind.to_string(), url.to_string());
                }
                _ => {}
            }
            if endpoints.contains_key("zenlayer-bmc") && endpoints.contains_key("edis-kvm") {
                break;
            }
        }
        // Keep draining stdout so the emulator never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Emulator {
            child,
            base: base.unwrap(),
            zenlayer: endpoints["zenlayer-bmc"].clone(),
            endpoints,
        }
    }

    /// One request to the emulator (admin endpoints), answered 200 with JSON.
    pub fn request(&self, method: &str, path: &str, body: &str) -> serde_json::Value {
        let address = self.base.trim_start_matches("http://");
        let mut stream = TcpStream::connect(address).unwrap();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200"), "{head}\n{body}");
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null)
    }

    /// The emulator's view of the world (`GET /_emulator/state`).
    pub fn state(&self) -> serde_json::Value {
        self.request("GET", "/_emulator/state", "")
    }

    pub fn set_faults(&self, faults: serde_json::Value) {
        self.request("POST", "/_emulator/faults", &faults.to_string());
    }

    /// Arms fault rules (`POST /_emulator/faults`), e.g.
    /// `json!({"rules": [{"provider": "zenlayer-bmc", "call": "reinstall", "fault": "drop_after",
    /// "count": 1}]})`; answers with what is armed. Panics unless the emulator answers 200.
    pub fn arm(&self, rules_json: serde_json::Value) -> serde_json::Value {
        self.request("POST", "/_emulator/faults", &rules_json.to_string())
    }

    /// The calls that acted on a server, from `/_emulator/state` `counts`:
    /// `(reinstall, change_os, stop, replayed)`. Panics on a server the inventory lacks.
    pub fn counts(&self, provider_type: &str, id: &str) -> (u64, u64, u64, u64) {
        let state = self.state();
        let counts = &state["counts"][provider_type][id];
        let field = |name: &str| {
            counts[name].as_u64().unwrap_or_else(|| {
                panic!("no counts for {provider_type} `{id}`: {}", state["counts"])
            })
        };
        (
            field("reinstall"),
            field("change_os"),
            field("stop"),
            field("replayed"),
        )
    }

    /// How many reinstalls the emulator accepted for a server.
    pub fn reinstall_count(&self, id: &str) -> u64 {
        let state = self.state();
        find_server(&state, id)
            .and_then(|server| server.get("reinstall_count"))
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0)
    }

    pub fn server_field(&self, id: &str, field: &str) -> Option<String> {
        let state = self.state();
        find_server(&state, id)
            .and_then(|server| server.get(field))
            .and_then(|value| value.as_str().map(str::to_string))
    }
}

fn find_server<'a>(state: &'a serde_json::Value, id: &str) -> Option<&'a serde_json::Value> {
    // Accept either a list of servers or a map keyed by id, under `zenlayer.servers` or `servers`.
    let servers = state
        .pointer("/zenlayer/servers")
        .or_else(|| state.get("servers"))?;
    match servers {
        serde_json::Value::Array(list) => list
            .iter()
            .find(|server| server.get("id").and_then(|v| v.as_str()) == Some(id)),
        serde_json::Value::Object(map) => map.get(id),
        _ => None,
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A manifest for the given servers (name, id, image) against this emulator.
pub fn manifest(endpoint: &str, servers: &[(&str, &str, &str)], extra_server_yaml: &str) -> String {
    let mut text = format!(
        "version: 1\nproviders:\n  zl:\n    type: zenlayer-bmc\n    endpoint: {endpoint}\n    poll_interval: 0.2\n    credentials:\n      access_key_id: {{env: TEST_ZL_KEY_ID}}\n      access_key_password: {{env: TEST_ZL_KEY_PASSWORD}}\n    options:\n      running_grace_seconds: 30\ndefaults:\n  provider: zl\n  access:\n    ssh_key_id: key-test\nservers:\n"
    );
    for (name, id, image) in servers {
        text.push_str(&format!(
            "  - name: {name}\n    id: \"{id}\"\n    os:\n      image: {image}\n{extra_server_yaml}"
        ));
    }
    text
}

pub fn stdout_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).to_string()
}

pub fn stderr_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).to_string()
}

/// A tiny seeded generator (splitmix64), so the crash moments are the same on every run.
pub struct Seeded(pub u64);

impl Seeded {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..limit` (`0` when `limit` is 0).
    pub fn below(&mut self, limit: u64) -> u64 {
        self.next() % limit.max(1)
    }
}

/// Text with miette's line wrapping undone: words joined by single spaces, frame glyphs gone.
pub fn flat(text: &str) -> String {
    text.split_whitespace()
        .filter(|word| !matches!(*word, "│" | "|" | "×" | "x" | "╰─▶" | "├─▶"))
        .collect::<Vec<_>>()
        .join(" ")
}
pub mod fleet;
pub mod jdcloud;
