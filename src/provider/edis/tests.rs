//! Tests of the EDIS adapter: configuration, and every call against the built-in emulator on
//! 127.0.0.1 (which parses the form bodies with its own decoder, written from the brief).

use std::collections::BTreeMap;
use std::time::Duration;

use secrecy::ExposeSecret;
use serde_json::{Value, json};

use super::tickets::renew_at;
use super::*;
use crate::emulator::{EmulatorConfig, RunningEmulator};
use crate::manifest::model::ProviderConfig;
use crate::manifest::{DesiredAccess, SecretRef};
use crate::provider::ResolvedAccess;

const EMAIL: &str = "ops+edis@example.com";
/// `+`, `&`, `=` and `%`: what breaks naive form encoders.
const ACCOUNT_PASSWORD: &str = "Emu+lator&Pass=1%";
const ROOT_PASSWORD: &str = "R00t+pw&x=y%z";

fn no_env(_: &str) -> Option<String> {
    None
}

/// Secret files in a temporary folder; the folder lives as long as the value.
struct SecretFiles(tempfile::TempDir);

impl SecretFiles {
    fn new() -> Self {
        Self(tempfile::tempdir().unwrap())
    }

    fn reference(&self, name: &str, value: &str) -> SecretRef {
        let path = self.0.path().join(name);
        std::fs::write(&path, format!("{value}\n")).unwrap();
        SecretRef::File(path.display().to_string())
    }

    fn login(&self, email: &str, password: &str) -> BTreeMap<String, SecretRef> {
        BTreeMap::from([
            ("email".to_string(), self.reference("email", email)),
            ("password".to_string(), self.reference("password", password)),
        ])
    }
}

fn provider_config(
    endpoint: Option<&str>,
    credentials: BTreeMap<String, SecretRef>,
    options: Value,
) -> DesiredProvider {
    // No waiting on reimage's own rate limits in tests: 0 per minute means unlimited.
    let unlimited = RateLimit::new(0.0, 8);
    DesiredProvider {
        name: "edis".to_string(),
        config: ProviderConfig {
            provider_type: ProviderType::EdisKvm,
            endpoint: endpoint.map(str::to_string),
            region: None,
            zone: None,
            credentials,
            poll_interval: None,
            install_timeout: None,
            install_estimate: None,
            start_grace: None,
            stop_timeout: None,
            request_timeout: None,
            options: options.as_object().cloned().unwrap_or_default(),
            rate_limits: [
                ApiFamily::Auth,
                ApiFamily::Read,
                ApiFamily::Status,
                ApiFamily::Reinstall,
            ]
            .into_iter()
            .map(|family| (family, unlimited))
            .collect(),
        },
    }
}

fn config_error(result: Result<EdisKvm, ProviderError>) -> (String, String) {
    match result {
        Err(ProviderError::Config { message, help, .. }) => (message, help),
        other => panic!("expected a config error, got {other:?}"),
    }
}

/// The emulator with one account and three VPSs: on (api_host 127.0.0.1), off (api_host
/// `localhost`), suspended.
fn inventory(ttl_seconds: f64, install_seconds: f64, valid_until_format: &str) -> String {
    format!(
        r#"install_seconds: {install_seconds}
edis:
  ticket_ttl_seconds: {ttl_seconds}
  valid_until_format: {valid_until_format}
  accounts:
    - {{email: "{EMAIL}", password: "{ACCOUNT_PASSWORD}"}}
    - {{email: other@example.com, password: Other-Pass-1}}
  images: [debian-bookworm, ubuntu-24.04]
  turnkey_images: [turnkey-lamp-18.0-bookworm]
  vps:
    - {{kvm_id: kvm_100001_1, description: web-1, image: debian-bullseye}}
    - {{kvm_id: kvm_100002_1, description: web-2, power: "off", api_host: localhost}}
    - {{kvm_id: kvm_100003_1, description: frozen, suspended: true}}
    - {{kvm_id: kvm_200001_1, description: not-ours, account: other@example.com}}
"#
    )
}

struct Harness {
    emulator: RunningEmulator,
    _dir: tempfile::TempDir,
    _secrets: SecretFiles,
    provider: EdisKvm,
    admin: reqwest::Client,
}

async fn harness_with(inventory_text: &str, options: Value) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let inventory_path = dir.path().join("inventory.yaml");
    std::fs::write(&inventory_path, inventory_text).unwrap();
    let emulator = crate::emulator::start(EmulatorConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        inventory: inventory_path,
        data_dir: dir.path().join("data"),
        install_seconds: None,
    })
    .await
    .unwrap();
    let endpoint = emulator.endpoints[&ProviderType::EdisKvm].clone();
    let secrets = SecretFiles::new();
    let config = provider_config(None, secrets.login(EMAIL, ACCOUNT_PASSWORD), options);
    let mut provider = EdisKvm::with_env(&config, Some(&endpoint), no_env).unwrap();
    provider.set_retry_policy(RetryPolicy {
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
        max_attempts: 3,
        max_retry_after: Duration::from_secs(1),
    });
    Harness {
        emulator,
        _dir: dir,
        _secrets: secrets,
        provider,
        admin: reqwest::Client::new(),
    }
}

async fn harness(options: Value) -> Harness {
    harness_with(&inventory(3600.0, 1.0, "epoch"), options).await
}

impl Harness {
    async fn state(&self) -> Value {
        self.admin
            .get(format!("{}/state", self.emulator.admin_url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn vps(&self, id: &str) -> Value {
        let state = self.state().await;
        state["edis"]["servers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|server| server["id"] == id)
            .cloned()
            .unwrap()
    }

    async fn faults(&self, faults: Value) {
        let response = self
            .admin
            .post(format!("{}/faults", self.emulator.admin_url()))
            .json(&json!({ "edis": faults }))
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "{:?}",
            response.text().await
        );
    }

    async fn observe(&self, ids: &[&str]) -> BTreeMap<String, Observation> {
        let ids: Vec<String> = ids.iter().map(|id| id.to_string()).collect();
        self.provider.observe(&ids).await.unwrap()
    }

    /// Polls until the operation ends; panics after `limit`.
    async fn wait(&self, operation: &Operation, limit: Duration) -> (OperationStatus, Vec<String>) {
        let started = std::time::Instant::now();
        let mut details = Vec::new();
        loop {
            let status = self
                .provider
                .poll(std::slice::from_ref(operation))
                .await
                .unwrap()
                .remove(0);
            match status {
                OperationStatus::InProgress { detail } => details.push(detail),
                done => return (done, details),
            }
            assert!(started.elapsed() < limit, "still in progress: {details:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn request(server: &str, cloud_id: &str, image: &str) -> ReinstallRequest {
    ReinstallRequest {
        server: server.to_string(),
        cloud_id: cloud_id.to_string(),
        image: image.to_string(),
        hostname: None,
        user_data: Some("#cloud-config\nhostname: web-1\nruncmd: [\"echo a&b=c+d\"]\n".into()),
        access: ResolvedAccess::Password(SecretString::from(ROOT_PASSWORD.to_string())),
        options: serde_json::Map::new(),
        token: "t".into(),
        previous_image: None,
    }
}

fn found(observation: &Observation) -> &Observed {
    match observation {
        Observation::Found(observed) => observed,
        Observation::NotFound => panic!("not found"),
    }
}

// ---------------------------------------------------------------------------------------------
// Configuration

#[test]
fn auth_url_defaults_to_production_and_accepts_overrides() {
    let secrets = SecretFiles::new();
    let login = secrets.login(EMAIL, ACCOUNT_PASSWORD);
    let provider = EdisKvm::with_env(
        &provider_config(None, login.clone(), json!({})),
        None,
        no_env,
    )
    .unwrap();
    assert_eq!(provider.auth_url().as_str(), wire::DEFAULT_AUTH_URL);
    assert!(provider.production);
    assert!(!provider.capabilities().reports_image);

    let provider = EdisKvm::with_env(
        &provider_config(
            Some("https://edis-proxy.example.org"),
            login.clone(),
            json!({}),
        ),
        None,
        no_env,
    )
    .unwrap();
    assert_eq!(
        provider.auth_url().as_str(),
        "https://edis-proxy.example.org/kvm/v2/get/auth"
    );
    assert!(!provider.production);

    let provider = EdisKvm::with_env(
        &provider_config(Some("https://x.example"), login.clone(), json!({})),
        Some("http://127.0.0.1:4000/kvm/v2/get/auth"),
        no_env,
    )
    .unwrap();
    assert_eq!(
        provider.auth_url().as_str(),
        "http://127.0.0.1:4000/kvm/v2/get/auth"
    );

    for (endpoint, expected) in [
        ("http://edis.example.org", "plain http"),
        ("ftp://edis.example.org", "scheme `ftp`"),
        ("https://user:pw@edis.example.org", "user info"),
        ("https://edis.example.org/?x=1", "query"),
        ("not a url", "is not a URL"),
    ] {
        let (message, _) = config_error(EdisKvm::with_env(
            &provider_config(Some(endpoint), login.clone(), json!({})),
            None,
            no_env,
        ));
        assert!(message.contains(expected), "{endpoint}: {message}");
    }
}

#[test]
fn credentials_come_from_references_or_edis_env_vars() {
    let env = |key: &str| match key {
        "EDIS_EMAIL" => Some(" env@example.com ".to_string()),
        "EDIS_PASSWORD" => Some("Env+Pass&1".to_string()),
        _ => None,
    };
    let provider = EdisKvm::with_env(
        &provider_config(None, BTreeMap::new(), json!({})),
        None,
        env,
    )
    .unwrap();
    assert_eq!(provider.email.expose_secret(), "env@example.com");
    assert_eq!(provider.password.expose_secret(), "Env+Pass&1");
    // The Debug form never shows a secret.
    let debug = format!("{provider:?}");
    assert!(
        !debug.contains("Env+Pass&1") && !debug.contains("env@example.com"),
        "{debug}"
    );

    let (message, help) = config_error(EdisKvm::with_env(
        &provider_config(None, BTreeMap::new(), json!({})),
        None,
        no_env,
    ));
    assert!(message.contains("no EDIS credentials"), "{message}");
    assert!(
        help.contains("EDIS_EMAIL") && help.contains("EDIS_PASSWORD"),
        "{help}"
    );

    let secrets = SecretFiles::new();
    let mut only_email = secrets.login(EMAIL, ACCOUNT_PASSWORD);
    only_email.remove("password");
    let (message, _) = config_error(EdisKvm::with_env(
        &provider_config(None, only_email, json!({})),
        None,
        no_env,
    ));
    assert!(message.contains("given together"), "{message}");

    let mut misspelt = secrets.login(EMAIL, ACCOUNT_PASSWORD);
    let value = misspelt.remove("password").unwrap();
    misspelt.insert("pasword".into(), value);
    let (message, help) = config_error(EdisKvm::with_env(
        &provider_config(None, misspelt, json!({})),
        None,
        no_env,
    ));
    assert!(
        message.contains("unknown credential `pasword`"),
        "{message}"
    );
    assert!(help.starts_with("did you mean `password`?"), "{help}");
}

#[test]
fn provider_options_are_checked() {
    let secrets = SecretFiles::new();
    let build = |options: Value| {
        EdisKvm::with_env(
            &provider_config(None, secrets.login(EMAIL, ACCOUNT_PASSWORD), options),
            None,
            no_env,
        )
    };
    let provider = build(json!({
        "completion_grace_seconds": 5,
        "ssh_probe": {"web-1": "127.0.0.1:2222"},
        "ssh_probe_timeout_seconds": 30,
        "ssh_probe_connect_timeout_seconds": 0.5,
        "images": ["debian-bookworm"]
    }))
    .unwrap();
    assert_eq!(provider.heuristic.grace, Duration::from_secs(5));
    assert_eq!(provider.heuristic.probe_deadline, Duration::from_secs(30));
    assert_eq!(
        provider.heuristic.probe_connect_timeout,
        Duration::from_millis(500)
    );
    assert_eq!(provider.ssh_probes["web-1"], "127.0.0.1:2222");
    assert_eq!(
        provider.images.as_deref(),
        Some(&["debian-bookworm".to_string()][..])
    );

    for (options, expected) in [
        (json!({"ssh_probes": {}}), "did you mean `ssh_probe`?"),
        (json!({"ssh_probe": "127.0.0.1:22"}), "must be a map"),
        (json!({"ssh_probe": {"a": "127.0.0.1"}}), "HOST:PORT"),
        (json!({"ssh_probe": {"a": 22}}), "must be a string"),
        (json!({"completion_grace_seconds": -1}), "number of seconds"),
        (json!({"ssh_probe_timeout_seconds": 0}), "number of seconds"),
        (json!({"images": []}), "non-empty list"),
        (json!({"images": ["ok", ""]}), "non-empty list"),
    ] {
        let (message, help) = config_error(build(options.clone()));
        let text = format!("{message} {help}");
        assert!(text.contains(expected), "{options}: {text}");
    }
}

#[test]
fn tickets_are_renewed_a_minute_early_or_a_quarter_of_a_short_life_early() {
    let issued_ms = 1_000_000_000;
    // One hour: a minute before the end.
    assert_eq!(
        renew_at(issued_ms, Some(1_000_000 + 3600)),
        (1_000_000 + 3600 - 60) * 1000
    );
    // Two seconds: half a second before the end.
    assert_eq!(renew_at(issued_ms, Some(1_000_002)), 1_000_001_500);
    // Already expired: at once.
    assert!(renew_at(issued_ms, Some(999_000)) <= issued_ms);
    // Unreadable: five minutes after issue.
    assert_eq!(renew_at(issued_ms, None), issued_ms + 300_000);
}

// ---------------------------------------------------------------------------------------------
// Against the emulator

#[tokio::test]
async fn observe_logs_in_with_an_awkward_password_and_reads_power_per_vps_host() {
    let h = harness(json!({})).await;
    let observed = h
        .observe(&[
            "kvm_100001_1",
            "kvm_100002_1",
            "kvm_100003_1",
            "kvm_200001_1",
            "kvm_nope",
        ])
        .await;
    // `+ & = %` in the login password arrived intact, or the emulator would have refused it.
    assert_eq!(h.provider.auth_calls(), 1, "one login covers every VPS");

    let on = found(&observed["kvm_100001_1"]);
    assert_eq!(on.status, ServerStatus::Running);
    assert_eq!(on.raw_status, "server powered on");
    assert_eq!(on.image, None, "EDIS cannot report the OS");
    assert_eq!(on.extra["description"], "web-1");
    assert_eq!(on.extra["suspended"], "n");
    assert_eq!(on.extra["traffic_suspended"], "false");

    // Reached at `localhost:PORT`, its own api_host: the emulator checks the Host.
    let off = found(&observed["kvm_100002_1"]);
    assert_eq!(off.status, ServerStatus::Stopped);
    assert_eq!(off.raw_status, "server powered off");

    let frozen = found(&observed["kvm_100003_1"]);
    assert_eq!(frozen.status, ServerStatus::Busy);
    assert!(frozen.raw_status.starts_with("suspended"));

    // Another account's VPS and an unknown id are both unknown to this account.
    assert_eq!(observed["kvm_200001_1"], Observation::NotFound);
    assert_eq!(observed["kvm_nope"], Observation::NotFound);
    let state = h.state().await;
    assert_eq!(state["edis"]["auth_count"], 1);
    assert_eq!(state["edis"]["unauthorized_count"], 0);
}

#[tokio::test]
async fn a_wrong_password_is_refused_without_showing_it() {
    let h = harness(json!({})).await;
    let secrets = SecretFiles::new();
    let canary = "Canary+Secret&Value=42";
    let endpoint = h.emulator.endpoints[&ProviderType::EdisKvm].clone();
    let provider = EdisKvm::with_env(
        &provider_config(None, secrets.login(EMAIL, canary), json!({})),
        Some(&endpoint),
        no_env,
    )
    .unwrap();
    let error = provider
        .observe(&["kvm_100001_1".to_string()])
        .await
        .unwrap_err();
    let text = format!("{error} {error:?}");
    assert!(
        text.contains("EDIS refused the e-mail and password"),
        "{text}"
    );
    assert!(text.contains("Invalid login credentials."), "{text}");
    assert!(text.contains("KVM portal"), "{text}");
    assert!(!text.contains(canary) && !text.contains("Canary"), "{text}");
}

#[tokio::test]
async fn tickets_are_renewed_before_they_expire() {
    let h = harness_with(&inventory(2.0, 1.0, "epoch"), json!({})).await;
    h.observe(&["kvm_100001_1"]).await;
    h.observe(&["kvm_100001_1"]).await;
    assert_eq!(h.provider.auth_calls(), 1, "a fresh ticket is reused");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    h.observe(&["kvm_100001_1"]).await;
    assert_eq!(h.provider.auth_calls(), 2);
    // Renewed ahead of time: EDIS never had to refuse a ticket.
    assert_eq!(h.state().await["edis"]["unauthorized_count"], 0);
}

#[tokio::test]
async fn iso_valid_until_is_echoed_exactly_as_issued() {
    let h = harness_with(&inventory(3600.0, 1.0, "iso"), json!({})).await;
    let observed = h.observe(&["kvm_100001_1"]).await;
    assert_eq!(
        found(&observed["kvm_100001_1"]).status,
        ServerStatus::Running
    );
    let cache = h.provider.tickets.lock().await;
    let ticket = &cache.tickets["kvm_100001_1"].ticket;
    assert!(ticket.valid_until.ends_with('Z'), "{}", ticket.valid_until);
    assert!(ticket.expires_at.is_some());
}

#[tokio::test]
async fn a_refused_ticket_is_renewed_once_for_reads_and_for_the_reinstall() {
    let h = harness(json!({})).await;
    h.observe(&["kvm_100001_1"]).await;
    h.faults(json!({"revoke_tickets": true})).await;
    let observed = h.observe(&["kvm_100001_1"]).await;
    assert_eq!(
        found(&observed["kvm_100001_1"]).status,
        ServerStatus::Running
    );
    assert_eq!(h.provider.auth_calls(), 2);
    assert_eq!(h.state().await["edis"]["unauthorized_count"], 1);

    h.faults(json!({"revoke_tickets": true})).await;
    h.provider
        .reinstall(&request("web-1", "kvm_100001_1", "debian-bookworm"))
        .await
        .unwrap();
    assert_eq!(h.provider.auth_calls(), 3);
    let state = h.state().await;
    assert_eq!(state["edis"]["unauthorized_count"], 2);
    // Refused once, sent again once: exactly one reinstall happened.
    assert_eq!(h.vps("kvm_100001_1").await["reinstall_count"], 1);
}

#[tokio::test]
async fn reinstall_sends_the_form_exactly_and_completes_unverifiably() {
    let h = harness(json!({"completion_grace_seconds": 0.3})).await;
    let request = request("web-1", "kvm_100001_1", "debian-bookworm");
    let operation = h.provider.reinstall(&request).await.unwrap();
    assert_eq!(operation.job_id, None);
    assert_eq!(operation.image, "debian-bookworm");
    let vps = h.vps("kvm_100001_1").await;
    assert_eq!(vps["status"], "installing");
    assert_eq!(vps["power"], "off");
    // The awkward root password and the user data arrived byte for byte.
    assert_eq!(
        vps["last_password_sha256"],
        crate::digest::sha256_hex(ROOT_PASSWORD.as_bytes())
    );
    assert_eq!(vps["last_user_data"].as_str(), request.user_data.as_deref());

    let (status, details) = h.wait(&operation, Duration::from_secs(10)).await;
    let OperationStatus::Succeeded { image, note } = status else {
        panic!("expected success, got {status:?}");
    };
    assert_eq!(image, "debian-bookworm");
    let note = note.unwrap();
    assert!(
        note.starts_with("completed (not verifiable by the provider)"),
        "{note}"
    );
    assert!(note.contains("powered off and on again"), "{note}");
    assert!(
        details.iter().any(|detail| detail.contains("installing")),
        "{details:?}"
    );
    let vps = h.vps("kvm_100001_1").await;
    assert_eq!(vps["image"], "debian-bookworm");
    assert_eq!(vps["reinstall_count"], 1);
}

#[tokio::test]
async fn tickets_expire_and_are_renewed_in_the_middle_of_an_install() {
    // Tickets live 1 s; the install takes 3 s: polling must log in again several times.
    let h = harness_with(
        &inventory(1.0, 3.0, "epoch"),
        json!({"completion_grace_seconds": 0.5}),
    )
    .await;
    let operation = h
        .provider
        .reinstall(&request("web-1", "kvm_100001_1", "ubuntu-24.04"))
        .await
        .unwrap();
    let (status, _) = h.wait(&operation, Duration::from_secs(15)).await;
    assert!(
        matches!(status, OperationStatus::Succeeded { .. }),
        "{status:?}"
    );
    assert!(
        h.provider.auth_calls() >= 3,
        "{} logins",
        h.provider.auth_calls()
    );
    let state = h.state().await;
    assert_eq!(h.vps("kvm_100001_1").await["image"], "ubuntu-24.04");
    assert!(state["edis"]["auth_count"].as_u64().unwrap() >= 3);
}

#[tokio::test]
async fn an_ssh_probe_is_the_servers_health_gate_and_the_install_ends_without_it() {
    let closed = {
        let spare = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        spare.local_addr().unwrap().to_string()
    };
    let h = harness(json!({
        "completion_grace_seconds": 0.2,
        "ssh_probe": {"web-2": closed},
        "ssh_probe_timeout_seconds": 30,
        "ssh_probe_connect_timeout_seconds": 0.5,
    }))
    .await;
    // Nothing listens at the probe address: the install still ends (power back on); the
    // address is checked by the gate the engine runs afterwards.
    let operation = h
        .provider
        .reinstall(&request("web-2", "kvm_100002_1", "debian-bookworm"))
        .await
        .unwrap();
    let (status, _) = h.wait(&operation, Duration::from_secs(15)).await;
    let OperationStatus::Succeeded { note, .. } = status else {
        panic!("expected success, got {status:?}");
    };
    assert!(note.unwrap().starts_with(completion::NOT_VERIFIABLE));
    let server = |name: &str| DesiredServer {
        name: name.into(),
        provider: "edis".into(),
        provider_type: ProviderType::EdisKvm,
        cloud_id: "kvm_1".into(),
        image: "debian-bookworm".into(),
        revision: 0,
        access: DesiredAccess::None,
        hostname: None,
        user_data: None,
        protect: false,
        group: None,
        address: None,
        health: Default::default(),
        options: serde_json::Map::new(),
    };
    let gate = h.provider.health_gate(&server("web-2")).unwrap();
    assert_eq!(
        gate.check,
        crate::manifest::health::HealthCheck::Tcp { address: closed }
    );
    assert_eq!(
        (gate.timeout_s, gate.interval_s, gate.attempts),
        (0.5, 10.0, 4)
    );
    assert!(
        gate.source.ends_with(".options.ssh_probe"),
        "{}",
        gate.source
    );
    assert!(h.provider.health_gate(&server("web-1")).is_none());
}

#[tokio::test]
async fn reinstall_refusals_say_whether_the_call_may_have_acted() {
    let h = harness(json!({})).await;
    // 400 for an image the emulator does not know: nothing happened.
    let error = h
        .provider
        .reinstall(&request("web-1", "kvm_100001_1", "windows-11"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            ProviderError::Api {
                status: Some(400),
                ..
            }
        ),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("Invalid parameters provided."),
        "{error}"
    );

    // A suspended VPS is refused before anything is sent.
    let error = h
        .provider
        .reinstall(&request("frozen", "kvm_100003_1", "debian-bookworm"))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("suspended"), "{error}");
    assert_eq!(h.vps("kvm_100003_1").await["reinstall_count"], 0);

    // A 500 may have started it: reported as "may have been sent", never resent.
    h.observe(&["kvm_100001_1"]).await; // log in first so the fault hits the reinstall
    h.faults(json!({"status_500_next": 1})).await;
    let error = h
        .provider
        .reinstall(&request("web-1", "kvm_100001_1", "debian-bookworm"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            ProviderError::Transport {
                maybe_sent: true,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("may have started"), "{error}");

    // A 429 refuses before acting: sent again after a backoff, one reinstall in the end.
    h.faults(json!({"status_429_next": 1})).await;
    h.provider
        .reinstall(&request("web-1", "kvm_100001_1", "debian-bookworm"))
        .await
        .unwrap();
    assert_eq!(h.vps("kvm_100001_1").await["reinstall_count"], 1);

    // A connection dropped after the call: performed, reported as maybe sent.
    h.faults(json!({"drop_connection_after_reinstall": ["kvm_100002_1"]}))
        .await;
    let error = h
        .provider
        .reinstall(&request("web-2", "kvm_100002_1", "debian-bookworm"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            ProviderError::Transport {
                maybe_sent: true,
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(h.vps("kvm_100002_1").await["reinstall_count"], 1);
    let text = format!("{error} {error:?}");
    assert!(
        !text.contains(ROOT_PASSWORD) && !text.contains(ACCOUNT_PASSWORD),
        "{text}"
    );
}

#[tokio::test]
async fn reads_are_retried_on_throttling() {
    let h = harness(json!({})).await;
    h.faults(json!({"status_429_next": 2})).await;
    let observed = h.observe(&["kvm_100001_1"]).await;
    assert_eq!(
        found(&observed["kvm_100001_1"]).status,
        ServerStatus::Running
    );
}

/// Checks the servers' images as the plan does: with each server as just observed.
async fn check_observed(
    provider: &EdisKvm,
    servers: &[DesiredServer],
) -> Vec<(String, crate::provider::FieldIssue)> {
    let ids: Vec<String> = servers
        .iter()
        .map(|server| server.cloud_id.clone())
        .collect();
    let observed = provider.observe(&ids).await.unwrap();
    let checked: Vec<(&DesiredServer, &Observation)> = servers
        .iter()
        .map(|server| (server, &observed[&server.cloud_id]))
        .collect();
    provider.check_desired(&checked).await.unwrap()
}

#[tokio::test]
async fn image_names_are_checked_where_a_list_exists() {
    let h = harness(json!({"images": ["debian-bookworm", "ubuntu-24.04"]})).await;
    let server = |name: &str, id: &str, image: &str| DesiredServer {
        name: name.into(),
        provider: "edis".into(),
        provider_type: ProviderType::EdisKvm,
        cloud_id: id.into(),
        image: image.into(),
        revision: 0,
        access: DesiredAccess::None,
        hostname: None,
        user_data: None,
        protect: false,
        group: None,
        address: None,
        health: Default::default(),
        options: serde_json::Map::new(),
    };
    let servers = [
        server("ok", "kvm_100001_1", "debian-bookworm"),
        server("typo", "kvm_100001_1", "debian-bookwrm"),
    ];
    let issues = check_observed(&h.provider, &servers).await;
    assert_eq!(issues.len(), 1);
    assert_eq!(issues[0].0, "typo");
    assert_eq!(issues[0].1.pointer, "/os/image");
    assert!(
        issues[0]
            .1
            .help
            .as_deref()
            .unwrap()
            .starts_with("did you mean `debian-bookworm`?")
    );

    // Without a manifest list, turnkey names are checked against the VPS's turnkey list.
    let h = harness(json!({})).await;
    let servers = [
        server("lamp", "kvm_100001_1", "turnkey-lamp-18.0-bookworm"),
        server("wp", "kvm_100001_1", "turnkey-wordpress-18.0-bookworm"),
        server("plain", "kvm_100001_1", "anything-goes"),
        server("gone", "kvm_nope", "turnkey-x"),
    ];
    let issues = check_observed(&h.provider, &servers).await;
    let names: Vec<&str> = issues.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["wp"]);
    assert!(
        issues[0].1.message.contains("not offered"),
        "{:?}",
        issues[0]
    );
}

#[test]
fn review_blocks_suspended_vpss_and_explains_completion() {
    let secrets = SecretFiles::new();
    let provider = EdisKvm::with_env(
        &provider_config(
            None,
            secrets.login(EMAIL, ACCOUNT_PASSWORD),
            json!({"ssh_probe": {"web-1": "192.0.2.10:22"}}),
        ),
        None,
        no_env,
    )
    .unwrap();
    let desired = DesiredServer {
        name: "web-1".into(),
        provider: "edis".into(),
        provider_type: ProviderType::EdisKvm,
        cloud_id: "kvm_1".into(),
        image: "debian-bookworm".into(),
        revision: 0,
        access: DesiredAccess::None,
        hostname: None,
        user_data: None,
        protect: false,
        group: None,
        address: None,
        health: Default::default(),
        options: serde_json::Map::new(),
    };
    let mut observed = Observed {
        cloud_id: "kvm_1".into(),
        status: ServerStatus::Running,
        raw_status: "server powered on".into(),
        image: None,
        image_name: None,
        hostname: None,
        address: None,
        extra: BTreeMap::from([("suspended".to_string(), "n".to_string())]),
    };
    let review = provider.review_reinstall(&desired, &observed);
    assert_eq!(review.blocked, None);
    assert!(
        review.notes[0].contains("SSH at 192.0.2.10:22"),
        "{:?}",
        review.notes
    );
    observed.extra.insert("suspended".into(), "y".into());
    observed.status = ServerStatus::Stopped;
    let review = provider.review_reinstall(&desired, &observed);
    assert!(review.blocked.unwrap().contains("suspended"));
    assert!(
        review
            .notes
            .iter()
            .any(|note| note.contains("powered off now"))
    );
}
