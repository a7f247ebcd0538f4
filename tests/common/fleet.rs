//! One fleet harness for the five provider types: an inventory of `count` servers, a manifest
//! that wants one of two images for all of them, the credentials each needs, and the
//! emulator's per-server counts of what acted (`GET /_emulator/state`, `counts`).

use std::path::Path;

use super::{Emulator, edis, huawei, jdcloud};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Zenlayer,
    Ecs,
    Clouddc,
    Edis,
    Jd,
}

pub const ALL: [Kind; 5] = [
    Kind::Zenlayer,
    Kind::Ecs,
    Kind::Clouddc,
    Kind::Edis,
    Kind::Jd,
];

impl Kind {
    /// The provider `type` in the manifest and the key of the emulator's `counts`.
    pub fn type_name(self) -> &'static str {
        match self {
            Kind::Zenlayer => "zenlayer-bmc",
            Kind::Ecs => "huaweicloud-ecs",
            Kind::Clouddc => "huaweicloud-clouddc",
            Kind::Edis => "edis-kvm",
            Kind::Jd => "jdcloud-cps",
        }
    }

    /// The two images a fleet moves between: (installed at the start, the other one).
    pub fn images(self) -> (&'static str, &'static str) {
        match self {
            Kind::Zenlayer | Kind::Ecs => ("img-old", "img-new"),
            Kind::Clouddc => ("dc-old", "dc-new"),
            Kind::Edis => ("debian-bullseye", "debian-bookworm"),
            Kind::Jd => (jdcloud::OLD_OS, jdcloud::NEW_OS),
        }
    }

    pub fn id(self, index: usize) -> String {
        match self {
            Kind::Zenlayer => format!("{}", 7000 + index),
            Kind::Ecs => format!("ecs-{index:03}"),
            Kind::Clouddc => format!("dc-{index:03}"),
            Kind::Edis => format!("{}", 9000 + index),
            Kind::Jd => format!("cps-{index:03}"),
        }
    }

    pub fn name(index: usize) -> String {
        format!("s{index:03}")
    }

    /// Every secret value this kind's tests use: none may appear in output or files.
    pub fn secrets(self) -> Vec<&'static str> {
        match self {
            Kind::Zenlayer => vec![super::KEY_PASSWORD],
            Kind::Ecs | Kind::Clouddc => {
                vec![huawei::SK, huawei::PASSWORD, CLOUDDC_SECOND_PASSWORD]
            }
            Kind::Edis => vec![edis::ACCOUNT_PASSWORD, edis::ROOT_PASSWORD],
            Kind::Jd => vec![jdcloud::SK, jdcloud::PASSWORD],
        }
    }
}

/// A second CloudDC password, so batches must be grouped by password.
pub const CLOUDDC_SECOND_PASSWORD: &str = "Second!Bm-Pass-2026";

/// How a test fleet is set up.
#[derive(Debug, Clone)]
pub struct Spec {
    pub kind: Kind,
    pub count: usize,
    pub install_seconds: f64,
    /// JD: servers start `running` (so each reinstall is stop, then reinstall).
    pub running: bool,
    /// CloudDC: every other server uses [`CLOUDDC_SECOND_PASSWORD`].
    pub two_passwords: bool,
    /// Seconds a call may take to show at the provider (`start_grace`).
    pub start_grace: f64,
    pub poll_interval: f64,
    /// YAML under `policy:` (indented two spaces), e.g. `  rollout: {canary: 1}`.
    pub policy: String,
    /// EDIS: how long the emulator's tickets live, in seconds.
    pub edis_ticket_ttl: f64,
}

impl Spec {
    pub fn new(kind: Kind, count: usize) -> Spec {
        Spec {
            kind,
            count,
            // EDIS cannot report the image: an install shows only while the VPS is off, which
            // must outlast the grace (as in production: minutes), and the server must be read
            // at least once per grace even while reads fail and are retried.
            install_seconds: if kind == Kind::Edis { 45.0 } else { 0.6 },
            running: kind == Kind::Jd,
            two_passwords: false,
            // Under 30% 5xx a read retried four times can take 15 s (backoff 1, 2, 4, 8 s),
            // and the ticket behind it as long again: the grace must outlast both.
            start_grace: if kind == Kind::Edis { 40.0 } else { 1.5 },
            poll_interval: 0.2,
            policy: "  rollout: {canary: 1, max_parallel: 10, max_failures: 1}\n".to_string(),
            edis_ticket_ttl: 3600.0,
        }
    }

    pub fn inventory(&self) -> String {
        let (old, _) = self.kind.images();
        let ids: Vec<String> = (1..=self.count).map(|index| self.kind.id(index)).collect();
        match self.kind {
            Kind::Zenlayer => {
                let servers: Vec<super::InventoryServer> =
                    ids.iter().map(|id| super::server(id, old)).collect();
                super::inventory(&servers, self.install_seconds)
            }
            Kind::Ecs => {
                let ecs: Vec<(&str, &str, &str)> =
                    ids.iter().map(|id| (id.as_str(), old, "")).collect();
                huawei::inventory(&ecs, &[], self.install_seconds)
            }
            Kind::Clouddc => {
                let instances: Vec<(String, &str, &str)> =
                    ids.iter().map(|id| (id.clone(), old, "")).collect();
                huawei::inventory(&[], &instances, self.install_seconds)
            }
            Kind::Edis => {
                let vps: Vec<(&str, &str, &str)> =
                    ids.iter().map(|id| (id.as_str(), "vps", old)).collect();
                edis::inventory(&vps, self.edis_ticket_ttl, self.install_seconds)
            }
            Kind::Jd => {
                let status = if self.running { "running" } else { "stopped" };
                let mut text = jdcloud::inventory(&[], self.install_seconds);
                for id in &ids {
                    text.push_str(&format!(
                        "    - {{id: {id}, name: n-{id}, region: cn-east-1, az: cn-east-1a, status: {status}, os_type_id: {old}, sys_raid_type_id: r-sys-raid1, data_raid_type_id: r-data-noraid}}\n"
                    ));
                }
                text
            }
        }
    }

    /// The manifest wanting `image` on every server, with test timings.
    pub fn manifest(&self, dir: &Path, emulator: &Emulator, image: &str) -> String {
        let timing = format!(
            "    poll_interval: {}\n    start_grace: {}\n    install_timeout: 120\n    stop_timeout: 60\n    rate_limits:\n      read: {{per_minute: 60000, concurrency: 8}}\n      status: {{per_minute: 60000, concurrency: 8}}\n      reinstall: {{per_minute: 60000, concurrency: 50}}\n",
            self.poll_interval, self.start_grace
        );
        let base = &emulator.base;
        let (provider, defaults) = match self.kind {
            Kind::Zenlayer => (
                format!(
                    "  p:\n    type: zenlayer-bmc\n    endpoint: {}\n{timing}    credentials:\n      access_key_id: {{env: TEST_ZL_KEY_ID}}\n      access_key_password: {{env: TEST_ZL_KEY_PASSWORD}}\n    options:\n      running_grace_seconds: 2\n",
                    emulator.zenlayer
                ),
                "  access: {ssh_key_id: key-test}\n".to_string(),
            ),
            Kind::Ecs | Kind::Clouddc => (
                format!(
                    "  p:\n    type: {}\n    region: cn-north-4\n    endpoint: {base}\n{timing}    credentials:\n      access_key: {{env: TEST_HW_AK}}\n      secret_key: {{env: TEST_HW_SK}}\n    options:\n      iam_endpoint: {base}\n",
                    self.kind.type_name()
                ),
                "  access: {password: {env: TEST_HW_PW}}\n".to_string(),
            ),
            Kind::Edis => {
                std::fs::write(
                    dir.join("root.password"),
                    format!("{}\n", edis::ROOT_PASSWORD),
                )
                .unwrap();
                (
                    format!(
                        "  p:\n    type: edis-kvm\n    endpoint: {}\n{timing}    credentials:\n      email: {{env: TEST_EDIS_EMAIL}}\n      password: {{env: TEST_EDIS_PASSWORD}}\n    options:\n      completion_grace_seconds: 0.3\n",
                        emulator.endpoints["edis-kvm"]
                    ),
                    "  access: {password: {file: root.password}}\n".to_string(),
                )
            }
            Kind::Jd => (
                format!(
                    "  p:\n    type: jdcloud-cps\n    endpoint: {base}\n    region: cn-east-1\n{timing}    credentials:\n      access_key: {{env: TEST_JD_AK}}\n      secret_key: {{env: TEST_JD_SK}}\n    options:\n      running_grace_seconds: 30\n"
                ),
                "  access: {password: {env: TEST_JD_PASSWORD}}\n  options: {allow_stop: true}\n"
                    .to_string(),
            ),
        };
        let mut text = format!(
            "version: 1\npolicy:\n{}providers:\n{provider}defaults:\n  provider: p\n  os: {{image: {image}}}\n{defaults}servers:\n",
            self.policy
        );
        for index in 1..=self.count {
            text.push_str(&format!(
                "  - {{name: {}, id: \"{}\"",
                Kind::name(index),
                self.kind.id(index)
            ));
            if self.kind == Kind::Clouddc && self.two_passwords && index % 2 == 0 {
                text.push_str(", access: {password: {env: TEST_HW_PW2}}");
            }
            text.push_str("}\n");
        }
        text
    }
}

/// A `reimage` command in `dir` with every kind's test credentials.
pub fn reimage(dir: &Path) -> assert_cmd::Command {
    assert_cmd::Command::from_std(command(dir))
}

/// [`reimage`] as a plain process command (for tests that spawn and kill it).
pub fn command(dir: &Path) -> std::process::Command {
    let mut command = huawei::command(dir);
    for name in [
        "JDCLOUD_ACCESS_KEY",
        "JDCLOUD_SECRET_KEY",
        "JDCLOUD_REGION",
        "EDIS_EMAIL",
        "EDIS_PASSWORD",
    ] {
        command.env_remove(name);
    }
    command
        .env("TEST_HW_PW2", CLOUDDC_SECOND_PASSWORD)
        .env("TEST_JD_AK", jdcloud::AK)
        .env("TEST_JD_SK", jdcloud::SK)
        .env("TEST_JD_PASSWORD", jdcloud::PASSWORD)
        .env("TEST_EDIS_EMAIL", edis::EMAIL)
        .env("TEST_EDIS_PASSWORD", edis::ACCOUNT_PASSWORD);
    command
}

/// What acted at the emulator for one server: (reinstall + change_os, stop, replayed).
pub fn acted(emulator: &Emulator, kind: Kind, index: usize) -> (u64, u64, u64) {
    let state = emulator.state();
    let counts = &state["counts"][kind.type_name()][kind.id(index)];
    let number = |field: &str| counts[field].as_u64().unwrap_or(0);
    (
        number("reinstall") + number("change_os"),
        number("stop"),
        number("replayed"),
    )
}

/// Installs that acted per server, in server order.
pub fn installs(emulator: &Emulator, spec: &Spec) -> Vec<u64> {
    let state = emulator.state();
    let counts = &state["counts"][spec.kind.type_name()];
    (1..=spec.count)
        .map(|index| {
            let server = &counts[spec.kind.id(index)];
            server["reinstall"].as_u64().unwrap_or(0) + server["change_os"].as_u64().unwrap_or(0)
        })
        .collect()
}

/// A temp folder with a running emulator for `spec` and the manifest wanting the other image.
/// EDIS servers are adopted first (EDIS cannot report the OS, so an unrecorded VPS is blocked).
pub fn setup(spec: &Spec) -> (tempfile::TempDir, Emulator) {
    let dir = tempfile::tempdir().unwrap();
    let emulator = Emulator::start(dir.path(), &spec.inventory());
    let (old, new) = spec.kind.images();
    if spec.kind == Kind::Edis {
        std::fs::write(
            dir.path().join("reimage.yaml"),
            spec.manifest(dir.path(), &emulator, old),
        )
        .unwrap();
        for index in 1..=spec.count {
            let output = reimage(dir.path())
                .args(["state", "adopt", &Kind::name(index), "--image", old])
                .output()
                .unwrap();
            assert!(output.status.success(), "{}", super::stderr_of(&output));
        }
    }
    std::fs::write(
        dir.path().join("reimage.yaml"),
        spec.manifest(dir.path(), &emulator, new),
    )
    .unwrap();
    (dir, emulator)
}

/// Checks that no secret of `kind` appears in `text`.
pub fn assert_no_secret(kind: Kind, text: &str) {
    for secret in kind.secrets() {
        assert!(!text.contains(secret), "a secret leaked: {text}");
    }
}

/// Rewrites the manifest in `dir`: `from` becomes `to` (which must be there).
pub fn edit_manifest(dir: &Path, from: &str, to: &str) {
    let path = dir.join("reimage.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.contains(from),
        "`{from}` is not in the manifest:\n{text}"
    );
    std::fs::write(path, text.replace(from, to)).unwrap();
}
