//! Tests of the JD Cloud CPS adapter: configuration, exact requests (snapshots), signing over
//! the bytes sent, the plan's review, completion rules, and whole flows against the built-in
//! emulator on 127.0.0.1 (which parses the API on its own).

use std::collections::BTreeMap;

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use super::reads::observed;
use super::status::operation_status;
use super::wire::{ApiCall, InstanceInfo};
use super::*;
use crate::emulator::{EmulatorConfig, RunningEmulator};
use crate::manifest::model::ProviderConfig;
use crate::manifest::{DesiredAccess, SecretRef};
use crate::provider::sign::jdcloud as sign;
use crate::provider::{Observed, ResolvedAccess, ServerStatus};

const AK: &str = "JDAKTEST0001";
const SK: &str = "JDSK-canary-7c1f";
/// A password that must never appear in an error or a debug print.
const PASSWORD: &str = "Canary7Secret";

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let map: BTreeMap<String, String> = pairs
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect();
    move |key| map.get(key).cloned()
}

fn keys_env() -> impl Fn(&str) -> Option<String> {
    env_of(&[(ENV_ACCESS_KEY, AK), (ENV_SECRET_KEY, SK)])
}

fn provider_config(endpoint: Option<&str>, region: Option<&str>) -> DesiredProvider {
    DesiredProvider {
        name: "jd".to_string(),
        config: ProviderConfig {
            provider_type: ProviderType::JdcloudCps,
            endpoint: endpoint.map(str::to_string),
            region: region.map(str::to_string),
            zone: None,
            credentials: BTreeMap::new(),
            poll_interval: None,
            install_timeout: None,
            install_estimate: None,
            start_grace: None,
            stop_timeout: None,
            request_timeout: None,
            options: serde_json::Map::new(),
            rate_limits: BTreeMap::new(),
        },
    }
}

fn config_error(result: Result<JdcloudCps, ProviderError>) -> (String, String) {
    match result {
        Err(ProviderError::Config { message, help, .. }) => (message, help),
        other => panic!("expected a configuration error, got {other:?}"),
    }
}

#[test]
fn region_endpoint_and_credentials_resolve_in_order() {
    let provider =
        JdcloudCps::with_env(&provider_config(None, Some("cn-east-1")), None, keys_env()).unwrap();
    assert_eq!(provider.endpoint().as_str(), "https://cps.jdcloud-api.com/");
    assert_eq!(provider.region(), "cn-east-1");
    assert_eq!(provider.credentials.access_key, AK);

    // Region from JDCLOUD_REGION when the manifest has none; the manifest wins otherwise.
    let env = env_of(&[
        (ENV_ACCESS_KEY, AK),
        (ENV_SECRET_KEY, SK),
        (ENV_REGION, "cn-south-1"),
    ]);
    let provider = JdcloudCps::with_env(&provider_config(None, None), None, &env).unwrap();
    assert_eq!(provider.region(), "cn-south-1");
    let provider =
        JdcloudCps::with_env(&provider_config(None, Some("cn-north-1")), None, &env).unwrap();
    assert_eq!(provider.region(), "cn-north-1");

    let (message, help) = config_error(JdcloudCps::with_env(
        &provider_config(None, None),
        None,
        keys_env(),
    ));
    assert!(message.contains("no region"), "{message}");
    assert!(help.contains(ENV_REGION), "{help}");
    let (message, _) = config_error(JdcloudCps::with_env(
        &provider_config(None, Some("cn-east-1/../x")),
        None,
        keys_env(),
    ));
    assert!(message.contains("not a JD Cloud region id"), "{message}");

    // The endpoint override (the emulator) wins over the manifest.
    let provider = JdcloudCps::with_env(
        &provider_config(Some("https://cps.example.internal"), Some("cn-east-1")),
        Some("http://127.0.0.1:8080"),
        keys_env(),
    )
    .unwrap();
    assert_eq!(provider.signed_host, "127.0.0.1:8080");
    let (message, _) = config_error(JdcloudCps::with_env(
        &provider_config(Some("http://cps.example.com"), Some("cn-east-1")),
        None,
        keys_env(),
    ));
    assert!(message.contains("plain http"), "{message}");
}

#[test]
fn credentials_come_from_the_manifest_then_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, value: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, format!("{value}\n")).unwrap();
        SecretRef::File(path.display().to_string())
    };
    let mut config = provider_config(None, Some("cn-east-1"));
    config.config.credentials = BTreeMap::from([
        ("access_key".to_string(), file("ak", "JDAKFROMFILE")),
        ("secret_key".to_string(), file("sk", "secret-from-file")),
    ]);
    let provider = JdcloudCps::with_env(&config, None, keys_env()).unwrap();
    assert_eq!(provider.credentials.access_key, "JDAKFROMFILE");
    assert_eq!(
        provider.credentials.secret_key.expose_secret(),
        "secret-from-file"
    );

    config.config.credentials.remove("secret_key");
    let (message, _) = config_error(JdcloudCps::with_env(&config, None, keys_env()));
    assert!(message.contains("must be given together"), "{message}");
    config.config.credentials =
        BTreeMap::from([("access_key_id".to_string(), SecretRef::Env("X".into()))]);
    let (message, help) = config_error(JdcloudCps::with_env(&config, None, keys_env()));
    assert!(
        message.contains("unknown credential `access_key_id`"),
        "{message}"
    );
    assert!(
        help.contains("did you mean `access_key`? allowed: `access_key`, `secret_key`"),
        "{help}"
    );

    let none = |_: &str| None;
    let (message, help) = config_error(JdcloudCps::with_env(
        &provider_config(None, Some("cn-east-1")),
        None,
        none,
    ));
    assert!(message.contains("no JD Cloud credentials"), "{message}");
    assert!(help.contains("JDCLOUD_ACCESS_KEY") && help.contains("JDCLOUD_SECRET_KEY"));
    let half = env_of(&[(ENV_ACCESS_KEY, AK)]);
    let (message, _) = config_error(JdcloudCps::with_env(
        &provider_config(None, Some("cn-east-1")),
        None,
        half,
    ));
    assert!(message.contains("only one of"), "{message}");

    let provider =
        JdcloudCps::with_env(&provider_config(None, Some("cn-east-1")), None, keys_env()).unwrap();
    assert!(
        !format!("{provider:?}").contains(SK),
        "the secret key never prints"
    );
}

#[test]
fn provider_options_and_capabilities() {
    let mut config = provider_config(None, Some("cn-east-1"));
    let provider = JdcloudCps::with_env(&config, None, keys_env()).unwrap();
    let capabilities = provider.capabilities();
    assert_eq!(capabilities.observe_batch, 100);
    assert_eq!(capabilities.poll_interval, Duration::from_secs(30));
    assert_eq!(capabilities.install_timeout, Duration::from_secs(90 * 60));
    assert!(capabilities.reports_image);
    config.config.options = json!({"running_grace": 1}).as_object().cloned().unwrap();
    let (message, _) = config_error(JdcloudCps::with_env(&config, None, keys_env()));
    assert!(message.contains("unknown option"), "{message}");
    config.config.options = json!({"running_grace_seconds": 5})
        .as_object()
        .cloned()
        .unwrap();
    let provider = JdcloudCps::with_env(&config, None, keys_env()).unwrap();
    assert_eq!(provider.running_grace, Duration::from_secs(5));
}

#[test]
fn the_registry_builds_a_jdcloud_provider() {
    let mut config = provider_config(None, Some("cn-east-1"));
    config.config.credentials = BTreeMap::from([
        (
            "access_key".to_string(),
            SecretRef::Env("REIMAGE_TEST_JD_UNSET_AK".into()),
        ),
        (
            "secret_key".to_string(),
            SecretRef::Env("REIMAGE_TEST_JD_UNSET_SK".into()),
        ),
    ]);
    // It reaches the JD constructor (which then names the unset variable).
    match crate::provider::build(&config, None) {
        Err(ProviderError::Config { message, .. }) => {
            assert!(message.contains("REIMAGE_TEST_JD_UNSET_AK"), "{message}")
        }
        Err(other) => panic!("{other:?}"),
        Ok(_) => panic!("the variable is unset"),
    }
}

// ---------------------------------------------------------------------------------------------
// Exact requests and signatures

fn snapshot_settings() -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    // Snapshots of all providers live together in src/provider/snapshots.
    settings.set_snapshot_path("../snapshots");
    settings
}

fn call_text(call: &ApiCall) -> String {
    let mut text = format!("{} {}", call.method, call.path);
    if !call.query.is_empty() {
        text.push('?');
        text.push_str(&call.query);
    }
    text.push('\n');
    text.push_str(&String::from_utf8_lossy(&call.body));
    text
}

fn password() -> SecretString {
    SecretString::from(PASSWORD.to_string())
}

#[test]
fn describe_instances_request_is_exact() {
    let ids = ["cps-abcdef0001".to_string(), "cps-abcdef0002".to_string()];
    let text = call_text(&wire::describe_instances("cn-east-1", &ids, 1));
    snapshot_settings().bind(|| insta::assert_snapshot!("jdcloud_describe_instances", text));
    let text = call_text(&wire::describe_os("cn-east-1", Some("cps.c.normal")));
    snapshot_settings().bind(|| insta::assert_snapshot!("jdcloud_describe_os", text));
}

#[test]
fn stop_and_reinstall_bodies_are_exact() {
    let text = call_text(&wire::stop_instance(
        "cn-east-1",
        "cps-abcdef0001",
        "0123456789abcdef0123456789abcdef",
    ));
    snapshot_settings().bind(|| insta::assert_snapshot!("jdcloud_stop_instance", text));
    let password = password();
    let spec = wire::InstanceSpec {
        az: "cn-east-1a",
        image_type: "standard",
        os_type_id: "ubuntu-22.04-x86_64-0001",
        sys_raid_type_id: "r-sys-raid1",
        data_raid_type_id: Some("r-data-noraid"),
        keep_data: true,
        password: &password,
        hostname: Some("web-01"),
        user_data: Some("#!/bin/sh\necho hi\n"),
        keypair_id: Some("kp-ops"),
    };
    let call = wire::reinstall_instance(
        "cn-east-1",
        "cps-abcdef0001",
        "0123456789abcdef0123456789abcdef",
        &spec,
    );
    snapshot_settings()
        .bind(|| insta::assert_snapshot!("jdcloud_reinstall_instance", call_text(&call)));
    // User data is base64 on the wire.
    let body: Value = serde_json::from_slice(&call.body).unwrap();
    assert_eq!(body["instanceSpec"]["userData"], "IyEvYmluL3NoCmVjaG8gaGkK");
    // keepData: no only from an explicit false; absent optional fields are left out.
    let wiping = wire::InstanceSpec {
        keep_data: false,
        data_raid_type_id: None,
        hostname: None,
        user_data: None,
        keypair_id: None,
        ..spec
    };
    let call = wire::reinstall_instance("cn-east-1", "cps-abcdef0001", "t", &wiping);
    snapshot_settings().bind(|| {
        insta::assert_snapshot!("jdcloud_reinstall_instance_keep_data_no", call_text(&call))
    });
}

#[test]
fn requests_are_signed_with_jdcloud2_over_the_exact_bytes_sent() {
    let provider = JdcloudCps::with_env(
        &provider_config(None, Some("cn-east-1")),
        Some("http://127.0.0.1:9999/prefix"),
        keys_env(),
    )
    .unwrap();
    let call = wire::stop_instance("cn-east-1", "cps-1", "tok");
    let request = provider
        .build_request_with(
            &call,
            "20250115T083000Z",
            "6f1c2b1e-8a4d-4a0e-9c3b-2f7e5d9a1b00",
        )
        .unwrap();
    assert_eq!(request.method(), reqwest::Method::PUT);
    assert_eq!(
        request.url().as_str(),
        "http://127.0.0.1:9999/prefix/v1/regions/cn-east-1/instances/cps-1%3AstopInstance"
    );
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .unwrap()
            .to_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(header("x-jdcloud-date"), "20250115T083000Z");
    assert_eq!(
        header("x-jdcloud-nonce"),
        "6f1c2b1e-8a4d-4a0e-9c3b-2f7e5d9a1b00"
    );
    assert_eq!(header("content-type"), "application/json");
    let authorization = header("authorization");
    assert!(
        request
            .headers()
            .get("authorization")
            .unwrap()
            .is_sensitive()
    );
    let body = request.body().and_then(|body| body.as_bytes()).unwrap();
    assert_eq!(body, call.body.as_slice());
    // Recomputed independently from what is on the request.
    let signed = [
        ("content-type", "application/json"),
        ("host", "127.0.0.1:9999"),
        ("x-jdcloud-date", "20250115T083000Z"),
        ("x-jdcloud-nonce", "6f1c2b1e-8a4d-4a0e-9c3b-2f7e5d9a1b00"),
    ];
    let expected = sign::authorization(
        &sign::Scope {
            version: sign::Version::V2,
            datetime: "20250115T083000Z",
            region: "cn-east-1",
            service: "cps",
        },
        AK,
        SK,
        &sign::Request {
            method: "PUT",
            path: request.url().path(),
            query: "",
            headers: &signed,
            body,
        },
    );
    assert_eq!(authorization, expected);
    assert!(authorization.starts_with(
        "JDCLOUD2-HMAC-SHA256 Credential=JDAKTEST0001/20250115/cn-east-1/cps/jdcloud2_request, \
         SignedHeaders=content-type;host;x-jdcloud-date;x-jdcloud-nonce, Signature="
    ));
}

// ---------------------------------------------------------------------------------------------
// The plan's review (pure)

fn desired(options: Value) -> DesiredServer {
    DesiredServer {
        name: "web".into(),
        provider: "jd".into(),
        provider_type: ProviderType::JdcloudCps,
        cloud_id: "cps-1".into(),
        image: "os-new".into(),
        revision: 0,
        access: DesiredAccess::Password {
            secret: SecretRef::Env("JD_PW".into()),
        },
        hostname: None,
        user_data: None,
        protect: false,
        group: None,
        address: None,
        health: Default::default(),
        options: options.as_object().cloned().unwrap_or_default(),
    }
}

fn observed_with(status: &str) -> Observed {
    observed(InstanceInfo {
        instance_id: "cps-1".into(),
        status: status.into(),
        os_type_id: Some("os-old".into()),
        os_name: Some("Old OS".into()),
        az: Some("cn-east-1a".into()),
        device_type: Some("cps.c.normal".into()),
        image_type: Some("Standard".into()),
        sys_raid_type_id: Some("r-sys-raid1".into()),
        data_raid_type_id: Some("r-data-noraid".into()),
        name: Some("web".into()),
        address: Some("192.0.2.8".into()),
    })
}

#[test]
fn observation_carries_the_os_and_the_layout() {
    let observed = observed_with("running");
    assert_eq!(observed.status, ServerStatus::Running);
    assert_eq!(observed.image.as_deref(), Some("os-old"));
    assert_eq!(observed.image_name.as_deref(), Some("Old OS"));
    assert_eq!(observed.hostname, None);
    assert_eq!(observed.extra[EXTRA_AZ], "cn-east-1a");
    assert_eq!(observed.extra[EXTRA_SYS_RAID], "r-sys-raid1");
    assert_eq!(observed.extra[EXTRA_DATA_RAID], "r-data-noraid");
    assert_eq!(observed.extra[EXTRA_DEVICE_TYPE], "cps.c.normal");
}

#[test]
fn a_running_server_is_stopped_first_only_when_allowed() {
    let review_of = |options: Value| review(&desired(options), &observed_with("running"));
    let allowed = review_of(json!({"allow_stop": true}));
    assert!(allowed.stop_first);
    assert_eq!(allowed.blocked, None);
    assert!(allowed.notes[0].contains("stops it"), "{:?}", allowed.notes);
    for options in [json!({}), json!({"allow_stop": false})] {
        let blocked = review_of(options);
        assert!(!blocked.stop_first);
        let reason = blocked.blocked.unwrap();
        assert!(
            reason.contains("reinstalls only stopped servers"),
            "{reason}"
        );
        assert!(reason.contains("allow_stop: true"), "{reason}");
    }
    // A stopped server needs nothing.
    assert_eq!(
        review(&desired(json!({})), &observed_with("stopped")),
        ReinstallReview::default()
    );
}

#[test]
fn keep_data_false_and_raid_changes_are_named_as_wipes() {
    let stopped = observed_with("stopped");
    let wiping = review(&desired(json!({"keep_data": false})), &stopped);
    assert_eq!(wiping.extra_wipes, ["DATA DISKS"]);
    assert!(
        wiping
            .notes
            .iter()
            .any(|note| note.contains("ALL DATA DISKS OF THIS SERVER WILL BE WIPED")),
        "{:?}",
        wiping.notes
    );
    let raid = review(
        &desired(json!({"sys_raid_type_id": "r-sys-raid0"})),
        &stopped,
    );
    assert_eq!(
        raid.extra_wipes,
        ["system RAID rebuilt (r-sys-raid1 -> r-sys-raid0)"]
    );
    // The same RAID as now is no change.
    let same = review(
        &desired(json!({"sys_raid_type_id": "r-sys-raid1"})),
        &stopped,
    );
    assert!(same.extra_wipes.is_empty());
    // A data RAID change cannot keep data: blocked unless keep_data: false.
    let blocked = review(
        &desired(json!({"data_raid_type_id": "r-data-raid5"})),
        &stopped,
    );
    assert!(blocked.blocked.unwrap().contains("keep_data: false"));
    let confirmed = review(
        &desired(json!({"data_raid_type_id": "r-data-raid5", "keep_data": false})),
        &stopped,
    );
    assert_eq!(confirmed.blocked, None);
    assert_eq!(
        confirmed.extra_wipes,
        [
            "DATA DISKS",
            "data RAID rebuilt (r-data-noraid -> r-data-raid5)"
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Completion rules

fn operation(started_at_ms: i64, previous: &str) -> Operation {
    Operation {
        server: "web".into(),
        cloud_id: "cps-1".into(),
        image: "os-new".into(),
        job_id: None,
        request_id: Some("req-1".into()),
        started_at_ms,
        previous_image: Some(previous.into()),
    }
}

fn instance(status: &str, os: &str) -> InstanceInfo {
    InstanceInfo {
        instance_id: "cps-1".into(),
        status: status.into(),
        os_type_id: Some(os.into()),
        ..InstanceInfo::default()
    }
}

#[test]
fn completion_needs_a_stable_status_and_the_desired_os() {
    let grace = Duration::from_secs(120);
    let now = 1_000_000;
    let fresh = operation(now, "os-old");
    let status = |instance: &InstanceInfo, seen: bool, op: &Operation| {
        operation_status(op, Some(instance), seen, now, grace)
    };
    assert!(matches!(
        status(&instance("stopped", "os-old"), false, &fresh),
        OperationStatus::InProgress { detail } if detail.contains("waiting for the install to start")
    ));
    assert!(matches!(
        status(&instance("installing", "os-old"), false, &fresh),
        OperationStatus::InProgress { .. }
    ));
    assert_eq!(
        status(&instance("running", "os-new"), false, &fresh),
        OperationStatus::Succeeded {
            image: "os-new".into(),
            note: None
        },
        "the OS id moved: proof enough"
    );
    assert_eq!(
        status(&instance("stopped", "os-new"), true, &fresh),
        OperationStatus::Succeeded {
            image: "os-new".into(),
            note: None
        },
        "the final power state may be stopped"
    );
    assert!(matches!(
        status(&instance("running", "os-old"), true, &fresh),
        OperationStatus::Failed { message, .. } if message.contains("expected os-new")
    ));
    assert!(matches!(
        status(&instance("error", "os-new"), true, &fresh),
        OperationStatus::Failed { message, request_id } if message.contains("`error`") && request_id.as_deref() == Some("req-1")
    ));
    assert!(matches!(
        operation_status(&fresh, None, true, now, grace),
        OperationStatus::Failed { message, .. } if message.contains("disappeared")
    ));
    // Same OS again (a revision raise): only the grace period can tell, and the note says so.
    let same = operation(now - 200_000, "os-new");
    assert!(matches!(
        status(&instance("running", "os-new"), false, &same),
        OperationStatus::Succeeded { note: Some(note), .. } if note.contains("inferred")
    ));
    let same_fresh = operation(now, "os-new");
    assert!(matches!(
        status(&instance("running", "os-new"), false, &same_fresh),
        OperationStatus::InProgress { .. }
    ));
}

// ---------------------------------------------------------------------------------------------
// Against the built-in emulator

const INVENTORY: &str = r#"
install_seconds: 0.4
jdcloud:
  stop_seconds: 0.3
  credentials:
    - {access_key: JDAKTEST0001, secret_key: JDSK-canary-7c1f}
  os:
    - {os_type_id: os-old, os_name: "Old OS 1.0", device_type: cps.c.normal}
    - {os_type_id: os-new, os_name: "New OS 2.0", device_type: cps.c.normal}
    - {os_type_id: os-gpu, os_name: "GPU OS", device_type: cps.gpu}
  servers:
    - {id: cps-run, name: web, region: cn-east-1, az: cn-east-1a, os_type_id: os-old, sys_raid_type_id: r-sys-raid1, data_raid_type_id: r-data-noraid}
    - {id: cps-off, name: db, region: cn-east-1, az: cn-east-1a, status: stopped, os_type_id: os-old, sys_raid_type_id: r-sys-raid1}
    - {id: cps-mfa, name: mfa, region: cn-east-1, az: cn-east-1a, os_type_id: os-old, sys_raid_type_id: r-sys-raid1, operation_protection: true}
    - {id: cps-bad, name: bad, region: cn-east-1, az: cn-east-1a, status: stopped, os_type_id: os-old, sys_raid_type_id: r-sys-raid1, fail_next_install: true}
"#;

struct Setup {
    emulator: RunningEmulator,
    provider: JdcloudCps,
    _dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let inventory = dir.path().join("inventory.yaml");
    std::fs::write(&inventory, INVENTORY).unwrap();
    let emulator = crate::emulator::start(EmulatorConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        inventory,
        data_dir: dir.path().join("data"),
        install_seconds: None,
    })
    .await
    .unwrap();
    let endpoint = emulator.endpoints[&ProviderType::JdcloudCps].clone();
    let mut provider = JdcloudCps::with_env(
        &provider_config(None, Some("cn-east-1")),
        Some(&endpoint),
        keys_env(),
    )
    .unwrap();
    provider.set_retry_policy(RetryPolicy {
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(20),
        max_attempts: 3,
        max_retry_after: Duration::from_millis(20),
    });
    Setup {
        emulator,
        provider,
        _dir: dir,
    }
}

impl Setup {
    async fn admin(&self, path: &str, body: Option<Value>) -> Value {
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let url = format!("{}/{path}", self.emulator.admin_url());
        let request = match body {
            Some(body) => client.post(url).json(&body),
            None => client.get(url),
        };
        request.send().await.unwrap().json().await.unwrap()
    }

    async fn server(&self, id: &str) -> Value {
        let state = self.admin("state", None).await;
        state["jdcloud"]["servers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|server| server["id"] == id)
            .cloned()
            .unwrap()
    }

    async fn observe_one(&self, id: &str) -> Observed {
        match self
            .provider
            .observe(&[id.to_string()])
            .await
            .unwrap()
            .remove(id)
        {
            Some(Observation::Found(observed)) => observed,
            other => panic!("{id}: {other:?}"),
        }
    }

    async fn wait_for(&self, id: &str, status: ServerStatus) {
        for _ in 0..200 {
            if self.observe_one(id).await.status == status {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("{id} never reached {status:?}");
    }

    async fn poll_until_done(&self, operation: &Operation) -> OperationStatus {
        for _ in 0..200 {
            let status = self
                .provider
                .poll(std::slice::from_ref(operation))
                .await
                .unwrap();
            match status.into_iter().next().unwrap() {
                OperationStatus::InProgress { .. } => {
                    tokio::time::sleep(Duration::from_millis(25)).await
                }
                done => return done,
            }
        }
        panic!("the install never ended");
    }
}

fn request_for(cloud_id: &str, token: &str, options: Value) -> ReinstallRequest {
    ReinstallRequest {
        server: "web".into(),
        cloud_id: cloud_id.into(),
        image: "os-new".into(),
        hostname: Some("web-01".into()),
        user_data: Some("#!/bin/sh\necho hi\n".into()),
        access: ResolvedAccess::Password(password()),
        options: options.as_object().cloned().unwrap_or_default(),
        token: token.into(),
        previous_image: Some("os-old".into()),
    }
}

fn no_secret(text: &str) {
    assert!(!text.contains(PASSWORD), "the password leaked: {text}");
    assert!(!text.contains(SK), "the secret key leaked: {text}");
}

#[tokio::test]
async fn observe_reads_status_os_and_layout_and_reports_unknown_ids() {
    let setup = setup().await;
    let ids = [
        "cps-run".to_string(),
        "cps-off".to_string(),
        "cps-nope".to_string(),
    ];
    let observed = setup.provider.observe(&ids).await.unwrap();
    assert_eq!(observed.len(), 3);
    let Observation::Found(running) = &observed["cps-run"] else {
        panic!()
    };
    assert_eq!(running.status, ServerStatus::Running);
    assert_eq!(running.image.as_deref(), Some("os-old"));
    assert_eq!(running.image_name.as_deref(), Some("Old OS 1.0"));
    assert_eq!(running.extra[EXTRA_DATA_RAID], "r-data-noraid");
    let Observation::Found(stopped) = &observed["cps-off"] else {
        panic!()
    };
    assert_eq!(stopped.status, ServerStatus::Stopped);
    assert_eq!(observed["cps-nope"], Observation::NotFound);

    // More ids than one call takes (the emulator refuses over 100): chunked, all answered.
    let mut many: Vec<String> = (0..150).map(|index| format!("cps-none-{index}")).collect();
    many.push("cps-off".to_string());
    let observed = setup.provider.observe(&many).await.unwrap();
    assert_eq!(observed.len(), 151);
    assert!(matches!(observed["cps-off"], Observation::Found(_)));
    assert_eq!(observed["cps-none-149"], Observation::NotFound);
}

#[tokio::test]
async fn check_desired_refuses_unknown_os_and_mismatched_names() {
    let setup = setup().await;
    let mut good = desired(json!({"os_name": "new os 2.0"}));
    good.cloud_id = "cps-run".into();
    let mut unknown = desired(json!({}));
    unknown.name = "unknown".into();
    unknown.cloud_id = "cps-run".into();
    unknown.image = "os-nope".into();
    let mut wrong_device = desired(json!({}));
    wrong_device.name = "gpu".into();
    wrong_device.cloud_id = "cps-off".into();
    wrong_device.image = "os-gpu".into();
    let mut mismatch = desired(json!({"os_name": "Old OS 1.0"}));
    mismatch.name = "mismatch".into();
    mismatch.cloud_id = "cps-off".into();
    let mut by_name = desired(json!({"os_name": "New OS 2.0"}));
    by_name.name = "by-name".into();
    by_name.cloud_id = "cps-off".into();
    by_name.image = "New OS 2.0".into();
    let mut missing = desired(json!({}));
    missing.name = "missing".into();
    missing.cloud_id = "cps-nope".into();
    let servers = [
        &good,
        &unknown,
        &wrong_device,
        &mismatch,
        &by_name,
        &missing,
    ];
    // As the plan does: the servers are read once, and the check works from that read.
    let ids: Vec<String> = servers
        .iter()
        .map(|server| server.cloud_id.clone())
        .collect();
    let observed = setup.provider.observe(&ids).await.unwrap();
    let checked: Vec<(&DesiredServer, &Observation)> = servers
        .iter()
        .map(|server| (*server, &observed[&server.cloud_id]))
        .collect();
    let issues = setup.provider.check_desired(&checked).await.unwrap();
    let found: Vec<(&str, &str)> = issues
        .iter()
        .map(|(server, issue)| (server.as_str(), issue.pointer.as_str()))
        .collect();
    assert_eq!(
        found,
        [
            ("unknown", "/os/image"),
            ("gpu", "/os/image"),
            ("mismatch", "/options/os_name"),
            ("by-name", "/os/image"),
        ]
    );
    assert!(
        issues[0].1.message.contains("unknown OS"),
        "{:?}",
        issues[0]
    );
    assert!(
        issues[0]
            .1
            .help
            .as_deref()
            .unwrap()
            .contains("`os-new` (New OS 2.0)")
    );
    assert!(
        issues[2].1.message.contains("is `New OS 2.0`"),
        "{:?}",
        issues[2]
    );
    assert!(
        issues[3]
            .1
            .help
            .as_deref()
            .unwrap()
            .contains("did you mean `os.image: os-new`")
    );
}

#[tokio::test]
async fn stop_wait_reinstall_poll_ends_with_the_new_os() {
    let setup = setup().await;
    let desired_server = desired(json!({"allow_stop": true, "keypair_id": "kp-ops"}));
    let before = setup.observe_one("cps-run").await;
    assert!(
        setup
            .provider
            .review_reinstall(&desired_server, &before)
            .stop_first
    );

    setup
        .provider
        .stop("cps-run", "plan-1-web-stop")
        .await
        .unwrap();
    setup.wait_for("cps-run", ServerStatus::Stopped).await;
    // A resumed apply stops again: nothing is sent for a stopped server.
    setup
        .provider
        .stop("cps-run", "plan-1-web-stop")
        .await
        .unwrap();
    assert_eq!(setup.server("cps-run").await["stop_count"], 1);

    let request = request_for(
        "cps-run",
        "plan-1-web-reinstall",
        json!({"allow_stop": true, "keypair_id": "kp-ops"}),
    );
    let operation = setup.provider.reinstall(&request).await.unwrap();
    assert!(operation.request_id.is_some());
    let done = setup.poll_until_done(&operation).await;
    assert_eq!(
        done,
        OperationStatus::Succeeded {
            image: "os-new".into(),
            note: None
        }
    );
    let after = setup.observe_one("cps-run").await;
    assert_eq!(
        (after.status, after.image.as_deref()),
        (ServerStatus::Running, Some("os-new"))
    );

    let state = setup.admin("state", None).await;
    let log = &state["jdcloud"]["reinstall_log"][0];
    // The layout was repeated as observed; data kept; key pair and token sent.
    assert_eq!(log["az"], "cn-east-1a");
    assert_eq!(log["sys_raid_type_id"], "r-sys-raid1");
    assert_eq!(log["data_raid_type_id"], "r-data-noraid");
    assert_eq!(log["image_type"], "standard");
    assert_eq!(log["keep_data"], "yes");
    assert_eq!(log["keypair_id"], "kp-ops");
    assert_eq!(log["signature_version"], "JDCLOUD2-HMAC-SHA256");
    assert_eq!(
        log["client_token"],
        wire::client_token("plan-1-web-reinstall", "cps-run", "reinstall")
    );
    assert_eq!(
        log["user_data_sha256"],
        crate::digest::sha256_hex(b"#!/bin/sh\necho hi\n")
    );
    no_secret(&state.to_string());
}

#[tokio::test]
async fn the_same_step_sent_twice_reinstalls_once() {
    let setup = setup().await;
    let request = request_for("cps-off", "plan-2-db-reinstall", json!({}));
    let first = setup.provider.reinstall(&request).await.unwrap();
    let second = setup.provider.reinstall(&request).await.unwrap();
    assert_eq!(first.cloud_id, second.cloud_id);
    assert_eq!(setup.server("cps-off").await["reinstall_count"], 1);
    assert_eq!(
        setup.admin("state", None).await["jdcloud"]["token_replays"],
        1
    );
    // The same step after the install finished still does not reinstall again.
    setup.poll_until_done(&first).await;
    setup.provider.reinstall(&request).await.unwrap();
    assert_eq!(setup.server("cps-off").await["reinstall_count"], 1);
    // Another plan's step is a new reinstall (of a server stopped again).
    setup
        .provider
        .stop("cps-off", "plan-3-db-stop")
        .await
        .unwrap();
    setup.wait_for("cps-off", ServerStatus::Stopped).await;
    let mut next = request_for("cps-off", "plan-3-db-reinstall", json!({}));
    next.previous_image = Some("os-new".into());
    setup.provider.reinstall(&next).await.unwrap();
    assert_eq!(setup.server("cps-off").await["reinstall_count"], 2);
}

#[tokio::test]
async fn a_reinstall_whose_answer_was_lost_is_maybe_sent_and_safe_to_retry() {
    let setup = setup().await;
    setup
        .admin(
            "faults",
            Some(json!({"jdcloud": {"drop_connection_after_reinstall": ["cps-off"]}})),
        )
        .await;
    let request = request_for("cps-off", "plan-4-db-reinstall", json!({}));
    match setup.provider.reinstall(&request).await {
        Err(ProviderError::Transport {
            maybe_sent: true,
            message,
            ..
        }) => no_secret(&message),
        other => panic!("expected a maybe-sent transport error, got {other:?}"),
    }
    assert_eq!(setup.server("cps-off").await["reinstall_count"], 1);
    // The retry carries the same clientToken: JD answers as the first time, no second install.
    let operation = setup.provider.reinstall(&request).await.unwrap();
    assert_eq!(setup.server("cps-off").await["reinstall_count"], 1);
    assert_eq!(
        setup.poll_until_done(&operation).await,
        OperationStatus::Succeeded {
            image: "os-new".into(),
            note: None
        }
    );
}

#[tokio::test]
async fn refusals_are_explained_without_secrets() {
    let setup = setup().await;
    // Operation protection (MFA) on stop.
    let error = setup
        .provider
        .stop("cps-mfa", "plan-5-mfa-stop")
        .await
        .unwrap_err();
    let text = error.to_string();
    assert!(text.contains("operation protection (MFA)"), "{text}");
    assert!(text.contains("Turn off operation protection"), "{text}");
    assert!(!error.is_retryable());
    // A running server is refused by reinstall, with the way out.
    let error = setup
        .provider
        .reinstall(&request_for("cps-run", "plan-5-web", json!({})))
        .await
        .unwrap_err();
    let text = error.to_string();
    assert!(text.contains("reinstalls only stopped servers"), "{text}");
    no_secret(&text);
    // A bad password never echoes.
    let mut weak = request_for("cps-off", "plan-5-db", json!({}));
    weak.access = ResolvedAccess::Password(SecretString::from("canaryweakpw".to_string()));
    let text = setup
        .provider
        .reinstall(&weak)
        .await
        .unwrap_err()
        .to_string();
    assert!(!text.contains("canaryweakpw"), "{text}");
    // Without a password nothing is sent.
    let mut keyed = request_for("cps-off", "plan-5-db2", json!({}));
    keyed.access = ResolvedAccess::SshKeyId("kp-1".into());
    let error = setup.provider.reinstall(&keyed).await.unwrap_err();
    assert!(error.to_string().contains("without a password"), "{error}");
    assert_eq!(setup.server("cps-off").await["reinstall_count"], 0);
    // An unknown instance.
    let text = setup
        .provider
        .stop("cps-nope", "t")
        .await
        .unwrap_err()
        .to_string();
    assert!(text.contains("not known"), "{text}");
}

#[tokio::test]
async fn failed_installs_and_throttled_reads() {
    let setup = setup().await;
    let operation = setup
        .provider
        .reinstall(&request_for("cps-bad", "plan-6-bad", json!({})))
        .await
        .unwrap();
    match setup.poll_until_done(&operation).await {
        OperationStatus::Failed { message, .. } => {
            assert!(message.contains("`error`"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    // Reads are retried through 429 and 500.
    setup
        .admin(
            "faults",
            Some(json!({"jdcloud": {"status_429_next": 1, "status_500_next": 1}})),
        )
        .await;
    assert_eq!(
        setup.observe_one("cps-run").await.status,
        ServerStatus::Running
    );
}
