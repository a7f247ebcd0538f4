//! Emulated fleets for the benchmarks: one inventory holding every provider type's servers, and
//! manifests over any part of it. Servers run `old` images and the manifests want `new` ones,
//! so every plan reinstalls (EDIS, which cannot report the OS, blocks instead).

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The fake credentials the inventory accepts and the manifests read from the environment.
pub const ENV: [(&str, &str); 10] = [
    ("BENCH_ZL_ID", "ZLAKBENCH0001"),
    ("BENCH_ZL_PW", "BenchPassword0001"),
    ("BENCH_HW_AK", "HWAKBENCH0001"),
    ("BENCH_HW_SK", "BenchSecretKey0001"),
    ("BENCH_JD_AK", "JDAKBENCH0001"),
    ("BENCH_JD_SK", "BenchEmulatorSecret0001"),
    ("BENCH_EDIS_EMAIL", "bench@example.com"),
    ("BENCH_EDIS_PW", "Bench+Pass&word=1"),
    // Server passwords: within every provider type's policy.
    ("BENCH_SERVER_PW", "Bench-Pass1234x"),
    ("REIMAGE_NO_PROGRESS", "1"),
];

const HW_PROJECT: &str = "0a1b2c3d4e5f60718293a4b5c6d7e8f9";
const HW_OLD: &str = "4b6c5f5a-2204-4c2a-9d7e-0a1b2c3d4e01";
const HW_NEW: &str = "67f433d8-ed0e-4321-a8a2-a71838539e09";
const JD_OLD: &str = "bcd36bc5-5d5a-4b82-9cfd-1a2b3c4d5e01";
const JD_NEW: &str = "8e3f0a71-2c4b-4d6e-8f90-1a2b3c4d5e02";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Zenlayer,
    Ecs,
    Clouddc,
    Jd,
    Edis,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::Zenlayer,
        Kind::Ecs,
        Kind::Clouddc,
        Kind::Jd,
        Kind::Edis,
    ];

    /// The provider's name in the manifests.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Zenlayer => "zl",
            Kind::Ecs => "ecs",
            Kind::Clouddc => "dc",
            Kind::Jd => "jd",
            Kind::Edis => "edis",
        }
    }

    pub fn provider_type(self) -> &'static str {
        match self {
            Kind::Zenlayer => "zenlayer-bmc",
            Kind::Ecs => "huaweicloud-ecs",
            Kind::Clouddc => "huaweicloud-clouddc",
            Kind::Jd => "jdcloud-cps",
            Kind::Edis => "edis-kvm",
        }
    }

    /// Server ids one read call takes (EDIS reads one VPS per call).
    pub fn ids_per_read(self) -> usize {
        match self {
            Kind::Edis => 1,
            _ => 100,
        }
    }

    /// The cloud id of server `index` (1-based).
    pub fn id(self, index: usize) -> String {
        match self {
            Kind::Zenlayer => format!("{}", 100_000_000 + index),
            Kind::Ecs => format!("6ef9c3a2-0000-4e6b-9b5a-{index:012x}"),
            Kind::Clouddc => format!("0197f36d-d83b-7258-b177-{index:012x}"),
            Kind::Jd => format!("cps-{index:010}"),
            Kind::Edis => format!("kvm_{index}_1"),
        }
    }
}

/// How many servers of each kind.
pub type Sizes = BTreeMap<Kind, usize>;

/// One inventory with `sizes` servers of each kind.
pub fn inventory(sizes: &Sizes, install_seconds: f64) -> String {
    let count = |kind| sizes.get(&kind).copied().unwrap_or(0);
    let mut text = format!("install_seconds: {install_seconds}\n");
    text.push_str(
        "zenlayer:\n  credentials:\n    - {access_key_id: ZLAKBENCH0001, access_key_password: \
         BenchPassword0001}\n  images:\n    - {id: img-old, name: Old}\n    - {id: img-new, \
         name: New}\n  servers:\n",
    );
    empty_list(&mut text, count(Kind::Zenlayer));
    for index in 1..=count(Kind::Zenlayer) {
        let id = Kind::Zenlayer.id(index);
        let _ = writeln!(
            text,
            "    - {{id: \"{id}\", name: z{index}, image: img-old}}"
        );
    }
    let _ = write!(
        text,
        "huaweicloud:\n  credentials:\n    - {{access_key: HWAKBENCH0001, secret_key: \
         BenchSecretKey0001}}\n  projects:\n    - {{id: {HW_PROJECT}, name: cn-north-4}}\n  \
         ecs:\n    images:\n      - {{id: {HW_OLD}, name: Old}}\n      - {{id: {HW_NEW}, name: \
         New}}\n    servers:\n"
    );
    empty_list(&mut text, count(Kind::Ecs));
    for index in 1..=count(Kind::Ecs) {
        let id = Kind::Ecs.id(index);
        let _ = writeln!(
            text,
            "      - {{id: {id}, name: e{index}, image: {HW_OLD}}}"
        );
    }
    let _ = write!(
        text,
        "  clouddc:\n    images:\n      - {{id: {HW_OLD}, name: Old}}\n      - {{id: {HW_NEW}, \
         name: New}}\n    instances:\n"
    );
    empty_list(&mut text, count(Kind::Clouddc));
    for index in 1..=count(Kind::Clouddc) {
        let id = Kind::Clouddc.id(index);
        let _ = writeln!(
            text,
            "      - {{id: {id}, name: d{index}, image: {HW_OLD}}}"
        );
    }
    let _ = write!(
        text,
        "jdcloud:\n  credentials:\n    - {{access_key: JDAKBENCH0001, secret_key: \
         BenchEmulatorSecret0001}}\n  os:\n    - {{os_type_id: {JD_OLD}, os_name: Old, \
         device_type: cps.c.normal}}\n    - {{os_type_id: {JD_NEW}, os_name: New, device_type: \
         cps.c.normal}}\n  servers:\n"
    );
    empty_list(&mut text, count(Kind::Jd));
    for index in 1..=count(Kind::Jd) {
        let id = Kind::Jd.id(index);
        let _ = writeln!(
            text,
            "    - {{id: {id}, name: j{index}, region: cn-east-1, az: cn-east-1a, status: \
             stopped, os_type_id: {JD_OLD}, sys_raid_type_id: r-sys-raid1}}"
        );
    }
    text.push_str(
        "edis:\n  accounts:\n    - {email: bench@example.com, password: \"Bench+Pass&word=1\"}\n  \
         images: [debian-bookworm]\n  vps:\n",
    );
    empty_list(&mut text, count(Kind::Edis));
    for index in 1..=count(Kind::Edis) {
        let id = Kind::Edis.id(index);
        let _ = writeln!(
            text,
            "    - {{kvm_id: {id}, description: v{index}, image: debian-bookworm}}"
        );
    }
    text
}

/// A list header just written (`servers:`) holds nothing: YAML reads an empty one as null.
fn empty_list(text: &mut String, count: usize) {
    if count == 0 && text.ends_with(":\n") {
        text.pop();
        text.push_str(" []\n");
    }
}

/// Settings of the manifests' providers.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Every family's rate limit in calls per minute (`None`: the built-in defaults).
    pub per_minute: Option<f64>,
    pub poll_interval: f64,
    pub install_estimate: f64,
    pub max_parallel: usize,
}

/// A manifest over the first `sizes` servers of each kind; Zenlayer fleets share user data from
/// the defaults (as fleets write it).
pub fn manifest(
    endpoints: &BTreeMap<String, String>,
    sizes: &Sizes,
    settings: &Settings,
) -> String {
    let mut text = format!(
        "version: 1\npolicy:\n  rollout: {{canary: 0, max_parallel: {}, max_failures: 1}}\n\
         providers:\n",
        settings.max_parallel
    );
    for kind in sizes.keys() {
        let endpoint = endpoints
            .get(kind.provider_type())
            .map(String::as_str)
            .unwrap_or("http://127.0.0.1:1");
        let _ = write!(
            text,
            "  {}:\n    type: {}\n    endpoint: {endpoint}\n    poll_interval: {}\n    \
             install_estimate: {}\n",
            kind.name(),
            kind.provider_type(),
            settings.poll_interval,
            settings.install_estimate
        );
        text.push_str(match kind {
            Kind::Zenlayer => {
                "    credentials:\n      access_key_id: {env: BENCH_ZL_ID}\n      \
                 access_key_password: {env: BENCH_ZL_PW}\n"
            }
            Kind::Ecs | Kind::Clouddc => {
                "    region: cn-north-4\n    credentials:\n      access_key: {env: \
                 BENCH_HW_AK}\n      secret_key: {env: BENCH_HW_SK}\n"
            }
            Kind::Jd => {
                "    region: cn-east-1\n    credentials:\n      access_key: {env: BENCH_JD_AK}\n      \
                 secret_key: {env: BENCH_JD_SK}\n"
            }
            Kind::Edis => {
                "    credentials:\n      email: {env: BENCH_EDIS_EMAIL}\n      password: {env: \
                 BENCH_EDIS_PW}\n"
            }
        });
        if matches!(kind, Kind::Ecs | Kind::Clouddc) {
            // The emulator serves IAM's project lookup on the same address.
            let _ = writeln!(text, "    options: {{iam_endpoint: \"{endpoint}\"}}");
        }
        if let Some(per_minute) = settings.per_minute {
            text.push_str("    rate_limits:\n");
            for family in ["read", "status", "reinstall", "stop", "auth", "catalogue"] {
                let _ = writeln!(
                    text,
                    "      {family}: {{per_minute: {per_minute}, concurrency: 8}}"
                );
            }
        }
    }
    // One provider: what every server shares sits in `defaults`, as fleets write it (Zenlayer
    // fleets also share their user data; Huawei and JD take user data only with options).
    let single = (sizes.len() == 1)
        .then(|| sizes.keys().next().copied())
        .flatten();
    if let Some(kind) = single {
        let (image, access) = image_and_access(kind);
        let _ = write!(
            text,
            "defaults:\n  provider: {}\n  os: {{image: {image}}}\n  access: {access}\n",
            kind.name()
        );
        if kind == Kind::Zenlayer {
            text.push_str(
                "  user_data: |\n    #cloud-config\n    package_update: true\n    packages: \
                 [nginx, curl, htop, jq]\n    runcmd:\n      - [systemctl, enable, --now, \
                 nginx]\n",
            );
        }
    }
    text.push_str("servers:\n");
    for (kind, count) in sizes {
        for index in 1..=*count {
            let own = match single {
                Some(_) => String::new(),
                None => {
                    let (image, access) = image_and_access(*kind);
                    format!(
                        ", provider: {}, os: {{image: {image}}}, access: {access}",
                        kind.name()
                    )
                }
            };
            let hostname = match kind {
                // Huawei cannot set one in a reinstall; EDIS takes it through user data.
                Kind::Zenlayer | Kind::Jd => {
                    format!(", hostname: {}-{index:05}.example.net", kind.name())
                }
                _ => String::new(),
            };
            let _ = writeln!(
                text,
                "  - {{name: {}-{index:05}, id: \"{}\"{own}{hostname}}}",
                kind.name(),
                kind.id(index),
            );
        }
    }
    text
}

fn image_and_access(kind: Kind) -> (&'static str, &'static str) {
    match kind {
        Kind::Zenlayer => ("img-new", "{ssh_key_id: key-ops}"),
        Kind::Ecs | Kind::Clouddc => (HW_NEW, "{password: {env: BENCH_SERVER_PW}}"),
        Kind::Jd => (JD_NEW, "{password: {env: BENCH_SERVER_PW}}"),
        Kind::Edis => ("debian-bookworm", "{password: {env: BENCH_SERVER_PW}}"),
    }
}
