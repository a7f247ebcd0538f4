//! Tests of the adapter: configuration, exact bodies (snapshots), signing over the bytes sent,
//! and calls against a small signature-checking fake of the API on 127.0.0.1.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex as StdMutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use super::status::operation_status;
use super::*;
use crate::manifest::SecretRef;
use crate::manifest::model::ProviderConfig;
use crate::provider::sign::zc2;
use crate::provider::{Observed, ResolvedAccess, ServerStatus};

const KEY_ID: &str = "AKIDtest0001";
const KEY_PASSWORD: &str = "k3y-Password~value";
const TOKEN: &str = "zl-token-value-42";

fn no_env(_: &str) -> Option<String> {
    None
}

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let map: BTreeMap<String, String> = pairs
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect();
    move |key| map.get(key).cloned()
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

    fn access_key(&self) -> BTreeMap<String, SecretRef> {
        BTreeMap::from([
            ("access_key_id".to_string(), self.reference("id", KEY_ID)),
            (
                "access_key_password".to_string(),
                self.reference("password", KEY_PASSWORD),
            ),
        ])
    }
}

fn provider_config(
    endpoint: Option<&str>,
    credentials: BTreeMap<String, SecretRef>,
    options: Value,
) -> DesiredProvider {
    DesiredProvider {
        name: "zl".to_string(),
        config: ProviderConfig {
            provider_type: ProviderType::ZenlayerBmc,
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
            rate_limits: BTreeMap::new(),
        },
    }
}

/// A provider with access-key credentials from files and no environment.
fn provider_at(endpoint: &str, options: Value) -> ZenlayerBmc {
    let files = SecretFiles::new();
    let config = provider_config(Some(endpoint), files.access_key(), options);
    ZenlayerBmc::with_env(&config, None, no_env).unwrap()
}

fn config_error(result: Result<ZenlayerBmc, ProviderError>) -> (String, String) {
    match result {
        Err(ProviderError::Config { message, help, .. }) => (message, help),
        other => panic!("expected a config error, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Configuration

#[test]
fn endpoint_comes_from_override_then_manifest_then_environment_then_default() {
    let files = SecretFiles::new();
    let manifest = provider_config(
        Some("https://bmc.example.net/api/v2/bmc"),
        files.access_key(),
        json!({}),
    );
    let domain_env = env_of(&[
        ("ZENLAYERCLOUD_DOMAIN", "api.example.org:8443"),
        ("ZENLAYERCLOUD_SCHEME", "HTTPS"),
    ]);

    let provider = ZenlayerBmc::with_env(
        &manifest,
        Some("http://127.0.0.1:4000/api/v2/bmc"),
        &domain_env,
    )
    .unwrap();
    assert_eq!(
        provider.endpoint().as_str(),
        "http://127.0.0.1:4000/api/v2/bmc"
    );
    assert_eq!(provider.signed_host, "127.0.0.1:4000");

    let provider = ZenlayerBmc::with_env(&manifest, None, &domain_env).unwrap();
    assert_eq!(
        provider.endpoint().as_str(),
        "https://bmc.example.net/api/v2/bmc"
    );
    assert_eq!(provider.signed_host, "bmc.example.net");

    let bare = provider_config(None, files.access_key(), json!({}));
    let provider = ZenlayerBmc::with_env(&bare, None, &domain_env).unwrap();
    assert_eq!(
        provider.endpoint().as_str(),
        "https://api.example.org:8443/api/v2/bmc"
    );
    assert_eq!(provider.signed_host, "api.example.org:8443");

    let provider = ZenlayerBmc::with_env(&bare, None, no_env).unwrap();
    assert_eq!(
        provider.endpoint().as_str(),
        "https://console.zenlayer.com/api/v2/bmc"
    );
    assert_eq!(provider.signed_host, "console.zenlayer.com");
}

#[test]
fn plain_http_is_accepted_only_for_loopback_hosts() {
    for (endpoint, expected_url, expected_host) in [
        (
            "http://127.0.0.1:8080",
            "http://127.0.0.1:8080/api/v2/bmc",
            "127.0.0.1:8080",
        ),
        (
            "http://127.9.9.9/api/v2/bmc",
            "http://127.9.9.9/api/v2/bmc",
            "127.9.9.9",
        ),
        (
            "http://localhost:9000/",
            "http://localhost:9000/api/v2/bmc",
            "localhost:9000",
        ),
        (
            "http://[::1]:1234/custom",
            "http://[::1]:1234/custom",
            "[::1]:1234",
        ),
        // The default port is not part of the Host header, so it is not signed either.
        (
            "https://console.zenlayer.com:443/api/v2/bmc",
            "https://console.zenlayer.com/api/v2/bmc",
            "console.zenlayer.com",
        ),
    ] {
        let provider = provider_at(endpoint, json!({}));
        assert_eq!(provider.endpoint().as_str(), expected_url, "{endpoint}");
        assert_eq!(provider.signed_host, expected_host, "{endpoint}");
    }
    let files = SecretFiles::new();
    for endpoint in [
        "http://10.0.0.1/api/v2/bmc",
        "http://console.zenlayer.com",
        "http://127.0.0.1.example.com",
        "ftp://127.0.0.1",
        "console.zenlayer.com",
        "https://user:pw@console.zenlayer.com",
        "https://console.zenlayer.com/api/v2/bmc?x=1",
    ] {
        let config = provider_config(Some(endpoint), files.access_key(), json!({}));
        let (message, help) = config_error(ZenlayerBmc::with_env(&config, None, no_env));
        assert!(message.contains(endpoint), "{endpoint}: {message}");
        assert!(!help.is_empty());
    }
    let config = provider_config(Some("http://10.0.0.1"), files.access_key(), json!({}));
    let (_, help) = config_error(ZenlayerBmc::with_env(&config, None, no_env));
    assert!(help.contains("use https"), "{help}");

    let config = provider_config(Some("emulator"), files.access_key(), json!({}));
    let (message, _) = config_error(ZenlayerBmc::with_env(&config, None, no_env));
    assert!(message.contains("emulator"), "{message}");
}

fn credentials_of(provider: &ZenlayerBmc) -> (&'static str, String, String) {
    match &provider.credentials {
        Credentials::AccessKey { id, password } => {
            ("key", id.clone(), password.expose_secret().to_string())
        }
        Credentials::Token(token) => ("token", String::new(), token.expose_secret().to_string()),
    }
}

#[test]
fn credentials_come_from_the_manifest_then_the_usual_environment_variables() {
    let files = SecretFiles::new();
    let both_env = env_of(&[
        ("ZENLAYERCLOUD_ACCESS_KEY_ID", "tf-id"),
        ("ZENLAYERCLOUD_ACCESS_KEY_PASSWORD", "tf-password"),
        ("ZENLAYER_ACCESS_KEY_ID", "cli-id"),
        ("ZENLAYER_ACCESS_KEY_SECRET", "cli-secret"),
        ("ZENLAYER_TOKEN", "cli-token"),
    ]);

    let manifest = provider_config(None, files.access_key(), json!({}));
    let provider = ZenlayerBmc::with_env(&manifest, None, &both_env).unwrap();
    assert_eq!(
        credentials_of(&provider),
        ("key", KEY_ID.into(), KEY_PASSWORD.into())
    );

    let manifest_token = provider_config(
        None,
        BTreeMap::from([("token".to_string(), files.reference("token", TOKEN))]),
        json!({}),
    );
    let provider = ZenlayerBmc::with_env(&manifest_token, None, &both_env).unwrap();
    assert_eq!(
        credentials_of(&provider),
        ("token", String::new(), TOKEN.into())
    );

    let bare = provider_config(None, BTreeMap::new(), json!({}));
    let provider = ZenlayerBmc::with_env(&bare, None, &both_env).unwrap();
    assert_eq!(
        credentials_of(&provider),
        ("key", "tf-id".into(), "tf-password".into())
    );

    let cli_env = env_of(&[
        ("ZENLAYERCLOUD_ACCESS_KEY_ID", ""),
        ("ZENLAYER_ACCESS_KEY_ID", "cli-id"),
        ("ZENLAYER_ACCESS_KEY_SECRET", "cli-secret"),
        ("ZENLAYER_TOKEN", "cli-token"),
    ]);
    let provider = ZenlayerBmc::with_env(&bare, None, &cli_env).unwrap();
    assert_eq!(
        credentials_of(&provider),
        ("key", "cli-id".into(), "cli-secret".into())
    );

    let token_env = env_of(&[("ZENLAYER_TOKEN", "cli-token")]);
    let provider = ZenlayerBmc::with_env(&bare, None, &token_env).unwrap();
    assert_eq!(
        credentials_of(&provider),
        ("token", String::new(), "cli-token".into())
    );
}

#[test]
fn missing_or_malformed_credentials_are_explained() {
    let files = SecretFiles::new();
    let bare = provider_config(None, BTreeMap::new(), json!({}));
    let (message, help) = config_error(ZenlayerBmc::with_env(&bare, None, no_env));
    assert!(message.contains("no Zenlayer credentials"));
    for name in [
        "credentials.access_key_id",
        "credentials.token",
        "ZENLAYERCLOUD_ACCESS_KEY_ID",
        "ZENLAYERCLOUD_ACCESS_KEY_PASSWORD",
        "ZENLAYER_ACCESS_KEY_ID",
        "ZENLAYER_ACCESS_KEY_SECRET",
        "ZENLAYER_TOKEN",
    ] {
        assert!(help.contains(name), "{name} missing from: {help}");
    }

    let half_env = env_of(&[("ZENLAYERCLOUD_ACCESS_KEY_ID", "tf-id")]);
    let (message, _) = config_error(ZenlayerBmc::with_env(&bare, None, half_env));
    assert!(
        message.contains("ZENLAYERCLOUD_ACCESS_KEY_PASSWORD"),
        "{message}"
    );

    let unknown = provider_config(
        None,
        BTreeMap::from([("secret_key".to_string(), files.reference("x", "y"))]),
        json!({}),
    );
    let (message, help) = config_error(ZenlayerBmc::with_env(&unknown, None, no_env));
    assert!(message.contains("secret_key"));
    assert!(
        help.contains("`access_key_id`, `access_key_password`, `token`"),
        "{help}"
    );

    let mut half = files.access_key();
    half.remove("access_key_password");
    let (message, _) = config_error(ZenlayerBmc::with_env(
        &provider_config(None, half, json!({})),
        None,
        no_env,
    ));
    assert!(message.contains("together"), "{message}");

    let mut both = files.access_key();
    both.insert("token".to_string(), files.reference("token", TOKEN));
    let (message, _) = config_error(ZenlayerBmc::with_env(
        &provider_config(None, both, json!({})),
        None,
        no_env,
    ));
    assert!(message.contains("both"), "{message}");

    let missing_file = provider_config(
        None,
        BTreeMap::from([
            ("access_key_id".to_string(), files.reference("id", KEY_ID)),
            (
                "access_key_password".to_string(),
                SecretRef::File("/nonexistent/zl-password".to_string()),
            ),
        ]),
        json!({}),
    );
    let (message, _) = config_error(ZenlayerBmc::with_env(&missing_file, None, no_env));
    assert!(message.contains("access_key_password"), "{message}");
    assert!(message.contains("/nonexistent/zl-password"), "{message}");
}

#[test]
fn secrets_never_appear_in_debug_output_or_errors() {
    let files = SecretFiles::new();
    let provider = provider_at("https://console.zenlayer.com", json!({}));
    let text = format!("{provider:?}");
    assert!(
        text.contains(KEY_ID),
        "the key id is not secret and helps debugging"
    );
    assert!(!text.contains(KEY_PASSWORD), "{text}");

    let token = provider_config(
        None,
        BTreeMap::from([("token".to_string(), files.reference("token", TOKEN))]),
        json!({}),
    );
    let provider = ZenlayerBmc::with_env(&token, None, no_env).unwrap();
    assert!(!format!("{provider:?}").contains(TOKEN));

    // A later config error (bad option) must not carry the resolved secret either.
    let bad = provider_config(
        None,
        files.access_key(),
        json!({"api_version": "1999-01-01"}),
    );
    let error = ZenlayerBmc::with_env(&bad, None, no_env).unwrap_err();
    let text = format!("{error} {error:?}");
    assert!(!text.contains(KEY_PASSWORD), "{text}");
}

#[test]
fn api_version_and_provider_options() {
    let provider = provider_at("https://console.zenlayer.com", json!({}));
    assert_eq!(provider.api_version(), "2022-11-20");
    assert_eq!(provider.running_grace, Duration::from_secs(120));
    let provider = provider_at(
        "https://console.zenlayer.com",
        json!({"api_version": "2026-02-01", "running_grace_seconds": 0.5}),
    );
    assert_eq!(provider.api_version(), "2026-02-01");
    assert_eq!(provider.running_grace, Duration::from_millis(500));

    let files = SecretFiles::new();
    for (options, expected) in [
        (json!({"api_version": "2023-01-01"}), "api_version"),
        (json!({"api_version": 2022}), "api_version"),
        (
            json!({"running_grace_seconds": -1}),
            "running_grace_seconds",
        ),
        (json!({"region": "x"}), "unknown option `region`"),
    ] {
        let config = provider_config(None, files.access_key(), options);
        let (message, help) = config_error(ZenlayerBmc::with_env(&config, None, no_env));
        assert!(message.contains(expected), "{message}");
        assert!(!help.is_empty());
    }
}

#[test]
fn capabilities_have_defaults_and_follow_the_manifest() {
    let provider = provider_at("https://console.zenlayer.com", json!({}));
    let capabilities = provider.capabilities();
    assert_eq!(capabilities.observe_batch, 100);
    assert!(capabilities.reports_image);
    assert_eq!(capabilities.poll_interval, Duration::from_secs(15));
    assert_eq!(capabilities.install_timeout, Duration::from_secs(90 * 60));
    assert_eq!(provider.provider_type(), ProviderType::ZenlayerBmc);
    assert_eq!(provider.name(), "zl");

    let files = SecretFiles::new();
    let mut config = provider_config(None, files.access_key(), json!({}));
    config.config.poll_interval = Some(2.5);
    config.config.install_timeout = Some(600.0);
    let provider = ZenlayerBmc::with_env(&config, None, no_env).unwrap();
    assert_eq!(
        provider.capabilities().poll_interval,
        Duration::from_millis(2500)
    );
    assert_eq!(
        provider.capabilities().install_timeout,
        Duration::from_secs(600)
    );

    config.config.poll_interval = Some(0.0);
    let (message, _) = config_error(ZenlayerBmc::with_env(&config, None, no_env));
    assert!(message.contains("poll_interval"));
}

#[test]
fn the_registry_builds_a_zenlayer_provider() {
    let files = SecretFiles::new();
    // `build` reads the real environment only for defaults the manifest leaves open.
    let config = provider_config(
        Some("https://console.zenlayer.com/api/v2/bmc"),
        files.access_key(),
        json!({}),
    );
    let provider = crate::provider::build(&config, None).unwrap();
    assert_eq!(provider.capabilities().observe_batch, 100);
}

// ---------------------------------------------------------------------------------------------
// Exact bodies and signatures

fn snapshot_settings() -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    // Snapshots of all providers live together in src/provider/snapshots.
    settings.set_snapshot_path("../snapshots");
    settings
}

fn reinstall_request(access: ResolvedAccess, options: Value) -> ReinstallRequest {
    ReinstallRequest {
        server: "web-1".to_string(),
        cloud_id: "1234567890".to_string(),
        image: "img-ubuntu-2404".to_string(),
        hostname: Some("web-1.example.com".to_string()),
        user_data: Some("#!/bin/sh\necho \"hello\" > /tmp/hi\n".to_string()),
        access,
        options: options.as_object().cloned().unwrap_or_default(),
        token: "unused-by-zenlayer".to_string(),
        previous_image: Some("img-ubuntu-2204".to_string()),
    }
}

fn body_text(request: &ReinstallRequest) -> String {
    let body = wire::reinstall_body(&wire::ReinstallInput {
        cloud_id: &request.cloud_id,
        image: &request.image,
        hostname: request.hostname.as_deref(),
        user_data: request.user_data.as_deref(),
        access: &request.access,
        options: &request.options,
    })
    .unwrap();
    String::from_utf8(body).unwrap()
}

#[test]
fn describe_instances_body_is_exact() {
    let ids = vec!["1234567890".to_string(), "2345678901".to_string()];
    let body = String::from_utf8(wire::describe_instances_body(&ids, 1, 100)).unwrap();
    snapshot_settings().bind(|| insta::assert_snapshot!("zenlayer_describe_instances_body", body));
}

#[test]
fn reinstall_body_with_password_is_exact() {
    let request = reinstall_request(
        ResolvedAccess::Password(SecretString::from("Passw0rd~ok".to_string())),
        json!({}),
    );
    let body = body_text(&request);
    snapshot_settings().bind(|| insta::assert_snapshot!("zenlayer_reinstall_body_password", body));
}

#[test]
fn reinstall_body_with_key_id_is_exact() {
    let mut request = reinstall_request(ResolvedAccess::SshKeyId("key-YWD2QFOl".into()), json!({}));
    request.hostname = None;
    request.user_data = None;
    let body = body_text(&request);
    snapshot_settings().bind(|| insta::assert_snapshot!("zenlayer_reinstall_body_key_id", body));
}

#[test]
fn reinstall_body_with_options_is_exact() {
    let request = reinstall_request(
        ResolvedAccess::SshKeyId("key-YWD2QFOl".into()),
        json!({
            "nic": {"lan_name": "lan0", "wan_name": "wan0"},
            "partitions": [
                {"fs_path": "/", "fs_type": "ext4", "size": 100},
                {"fs_path": "/data", "fs_type": "xfs", "size": 800}
            ],
            "raid_type": 1
        }),
    );
    let body = body_text(&request);
    snapshot_settings().bind(|| insta::assert_snapshot!("zenlayer_reinstall_body_options", body));
}

#[test]
fn reinstall_bodies_refuse_what_would_do_harm() {
    let input = |request: &ReinstallRequest| {
        wire::reinstall_body(&wire::ReinstallInput {
            cloud_id: &request.cloud_id,
            image: &request.image,
            hostname: request.hostname.as_deref(),
            user_data: request.user_data.as_deref(),
            access: &request.access,
            options: &request.options,
        })
    };
    let mut request = reinstall_request(ResolvedAccess::SshKeyId("key-1".into()), json!({}));
    request.image = " ".to_string();
    let error = input(&request).unwrap_err();
    assert!(
        error.message.contains("without an image"),
        "{}",
        error.message
    );
    assert!(
        error
            .help
            .contains("reinstalls the image already on the machine")
    );

    let request = reinstall_request(ResolvedAccess::None, json!({}));
    assert!(
        input(&request)
            .unwrap_err()
            .message
            .contains("password or SSH key")
    );

    let request = reinstall_request(ResolvedAccess::SshKeyId("key-1".into()), json!({"raid": 1}));
    assert!(input(&request).unwrap_err().message.contains("`raid`"));
    let request = reinstall_request(
        ResolvedAccess::SshKeyId("key-1".into()),
        json!({"raid_type": 2}),
    );
    assert!(input(&request).is_err());
}

#[test]
fn requests_are_signed_over_the_exact_bytes_sent() {
    let provider = provider_at("http://127.0.0.1:8080", json!({}));
    let body = wire::describe_instances_body(&["i-1".to_string()], 1, 100);
    let request = provider
        .build_request_at(wire::DESCRIBE_INSTANCES, &body, 1_700_000_000)
        .unwrap();
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_else(|| panic!("header {name} missing"))
            .to_string()
    };
    assert_eq!(request.method(), reqwest::Method::POST);
    assert_eq!(request.url().as_str(), "http://127.0.0.1:8080/api/v2/bmc");
    assert_eq!(header("content-type"), "application/json");
    assert_eq!(header("x-zc-action"), "DescribeInstances");
    assert_eq!(header("x-zc-version"), "2022-11-20");
    assert_eq!(header("x-zc-service"), "bmc");
    assert_eq!(header("x-zc-timestamp"), "1700000000");
    assert_eq!(header("x-zc-signature-method"), "ZC2-HMAC-SHA256");
    assert_eq!(header("x-zc-request-client"), "reimage");
    let sent = request.body().and_then(|body| body.as_bytes()).unwrap();
    assert_eq!(sent, body.as_slice());
    let expected = zc2::authorization(
        KEY_ID,
        KEY_PASSWORD,
        "1700000000",
        &header("content-type"),
        "127.0.0.1:8080",
        sent,
    );
    assert_eq!(header("authorization"), expected);
    assert!(request.headers()["authorization"].is_sensitive());
    // Changing one byte changes the signature: the body hash really is covered.
    let other = zc2::authorization(
        KEY_ID,
        KEY_PASSWORD,
        "1700000000",
        "application/json",
        "127.0.0.1:8080",
        b"{}",
    );
    assert_ne!(header("authorization"), other);
}

// ---------------------------------------------------------------------------------------------
// Completion rules (brief §7)

fn operation(started_at_ms: i64) -> Operation {
    Operation {
        server: "web-1".into(),
        cloud_id: "i-1".into(),
        image: "img-new".into(),
        job_id: None,
        request_id: Some("T-1".into()),
        started_at_ms,
        previous_image: None,
    }
}

fn found(raw_status: &str, image: &str) -> Observation {
    Observation::Found(Observed {
        cloud_id: "i-1".into(),
        status: wire::map_status(raw_status),
        raw_status: raw_status.into(),
        image: Some(image.into()),
        image_name: None,
        hostname: None,
        address: None,
        extra: Default::default(),
    })
}

#[test]
fn an_image_that_moved_to_the_desired_one_proves_the_install_ran() {
    let mut moved = operation(0);
    moved.previous_image = Some("img-old".into());
    let early = Duration::from_secs(1).as_millis() as i64;
    let grace = Duration::from_secs(120);
    assert!(matches!(
        operation_status(
            &moved,
            Some(&found("RUNNING", "img-new")),
            false,
            early,
            grace
        ),
        OperationStatus::Succeeded { .. }
    ));
    // Same image as before: only a seen INSTALLING or the grace period can tell.
    let mut same = operation(0);
    same.previous_image = Some("img-new".into());
    assert!(matches!(
        operation_status(
            &same,
            Some(&found("RUNNING", "img-new")),
            false,
            early,
            grace
        ),
        OperationStatus::InProgress { .. }
    ));
}

#[test]
fn completion_follows_installing_then_running_with_the_desired_image() {
    let grace = Duration::from_secs(120);
    let start = 1_000_000;
    let early = start + 10_000;
    let late = start + 121_000;
    let status = |observation: Option<&Observation>, seen: bool, now: i64| {
        operation_status(&operation(start), observation, seen, now, grace)
    };
    let in_progress = |status: OperationStatus| match status {
        OperationStatus::InProgress { detail } => detail,
        other => panic!("expected in progress, got {other:?}"),
    };
    let failure = |status: OperationStatus| match status {
        OperationStatus::Failed {
            message,
            request_id,
        } => {
            assert_eq!(request_id.as_deref(), Some("T-1"));
            message
        }
        other => panic!("expected a failure, got {other:?}"),
    };
    let succeeded = OperationStatus::Succeeded {
        image: "img-new".into(),
        note: None,
    };

    assert_eq!(
        in_progress(status(Some(&found("INSTALLING", "img-new")), true, early)),
        "installing"
    );
    // Before the install shows up, RUNNING is still the old state.
    assert!(
        in_progress(status(Some(&found("RUNNING", "img-old")), false, early))
            .contains("waiting for the install to start")
    );
    assert!(
        in_progress(status(Some(&found("RUNNING", "img-new")), false, early)).contains("waiting")
    );
    assert_eq!(
        status(Some(&found("RUNNING", "img-new")), true, early),
        succeeded
    );
    assert_eq!(
        status(Some(&found("running", "img-new")), false, late),
        succeeded
    );
    assert_eq!(
        failure(status(Some(&found("RUNNING", "img-old")), true, early)),
        "install ended with image img-old, expected img-new"
    );
    assert!(failure(status(Some(&found("RUNNING", "img-old")), false, late)).contains("img-old"));
    assert!(
        failure(status(
            Some(&found("INSTALL_FAILED", "img-new")),
            true,
            early
        ))
        .contains("manual action")
    );
    assert!(failure(status(Some(&Observation::NotFound), true, early)).contains("disappeared"));
    assert!(failure(status(None, true, early)).contains("disappeared"));
    assert!(
        failure(status(Some(&found("RECYCLING", "img-new")), true, early)).contains("recycled")
    );
    assert_eq!(
        in_progress(status(Some(&found("BOOTING", "img-new")), true, late)),
        "status BOOTING"
    );
    assert_eq!(
        in_progress(status(Some(&found("STOPPED", "img-old")), false, early)),
        "status STOPPED"
    );
}

// ---------------------------------------------------------------------------------------------
// Against a fake API on 127.0.0.1 that checks every signature

#[derive(Debug, Clone)]
struct FakeInstance {
    status: String,
    image: String,
    /// Reads left before an INSTALLING instance turns RUNNING.
    installing_reads_left: u32,
}

#[derive(Default)]
struct FakeState {
    instances: BTreeMap<String, FakeInstance>,
    /// The fake's own page size limit, to force paging.
    max_page_size: usize,
    /// Answer this many calls with 429 REQUEST_LIMIT_EXCEEDED first.
    throttle_next: u32,
    /// A canned answer for ReinstallInstance.
    reinstall_answer: Option<(u16, Value)>,
    /// (action, body) of every request, accepted or not.
    requests: Vec<(String, Value)>,
}

type Shared = Arc<StdMutex<FakeState>>;

fn signature_is_valid(headers: &HeaderMap, body: &[u8]) -> bool {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("")
    };
    let authorization = header("authorization");
    if let Some(token) = authorization.strip_prefix("Bearer ") {
        return token == TOKEN && headers.get("x-zc-timestamp").is_none();
    }
    let timestamp = header("x-zc-timestamp");
    let fresh = timestamp
        .parse::<i64>()
        .is_ok_and(|seconds| (jiff::Timestamp::now().as_second() - seconds).abs() <= 300);
    let expected = zc2::authorization(
        KEY_ID,
        KEY_PASSWORD,
        timestamp,
        header("content-type"),
        header("host"),
        body,
    );
    fresh
        && header("x-zc-signature-method") == zc2::ALGORITHM
        && zc2::signatures_match(&expected, authorization)
}

async fn fake_api(
    State(shared): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, axum::Json<Value>) {
    let action = headers
        .get("x-zc-action")
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
        .to_string();
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut state = shared.lock().unwrap();
    state.requests.push((action.clone(), request.clone()));
    if !signature_is_valid(&headers, &body) {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(
                json!({"requestId": "T-auth", "code": "AUTH_FAILED", "message": "signature mismatch"}),
            ),
        );
    }
    if state.throttle_next > 0 {
        state.throttle_next -= 1;
        return (
            StatusCode::TOO_MANY_REQUESTS,
            axum::Json(
                json!({"requestId": "T-429", "code": "REQUEST_LIMIT_EXCEEDED", "message": "slow down"}),
            ),
        );
    }
    match action.as_str() {
        "DescribeInstances" => {
            let ids: Vec<&str> = request["instanceIds"]
                .as_array()
                .map(|ids| ids.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let page_num = request["pageNum"].as_u64().unwrap_or(1) as usize;
            let page_size =
                (request["pageSize"].as_u64().unwrap_or(20) as usize).min(state.max_page_size);
            let matching: Vec<(String, FakeInstance)> = state
                .instances
                .iter()
                .filter(|(id, _)| ids.contains(&id.as_str()))
                .map(|(id, instance)| (id.clone(), instance.clone()))
                .collect();
            let page: Vec<Value> = matching
                .iter()
                .skip((page_num - 1) * page_size)
                .take(page_size)
                .map(|(id, instance)| {
                    json!({
                        "instanceId": id,
                        "instanceName": format!("name-{id}"),
                        "hostname": format!("host-{id}"),
                        "imageId": instance.image,
                        "imageName": format!("Image {}", instance.image),
                        "instanceStatus": instance.status,
                    })
                })
                .collect();
            for (id, _) in matching
                .iter()
                .skip((page_num - 1) * page_size)
                .take(page_size)
            {
                if let Some(instance) = state.instances.get_mut(id)
                    && instance.status == "INSTALLING"
                {
                    instance.installing_reads_left =
                        instance.installing_reads_left.saturating_sub(1);
                    if instance.installing_reads_left == 0 {
                        instance.status = "RUNNING".into();
                    }
                }
            }
            (
                StatusCode::OK,
                axum::Json(
                    json!({"requestId": "T-describe", "response": {"requestId": "T-describe", "totalCount": matching.len(), "dataSet": page}}),
                ),
            )
        }
        "ReinstallInstance" => {
            if let Some((status, answer)) = state.reinstall_answer.clone() {
                return (StatusCode::from_u16(status).unwrap(), axum::Json(answer));
            }
            let id = request["instanceId"].as_str().unwrap_or("");
            let image = request["imageId"].as_str().unwrap_or("").to_string();
            match state.instances.get_mut(id) {
                None => (
                    StatusCode::BAD_REQUEST,
                    axum::Json(
                        json!({"requestId": "T-r", "code": "INVALID_INSTANCE_NOT_FOUND", "message": "not found"}),
                    ),
                ),
                Some(instance) if instance.status == "INSTALLING" => (
                    StatusCode::BAD_REQUEST,
                    axum::Json(
                        json!({"requestId": "T-r", "code": "OPERATION_DENIED_INSTANCE_STATUS_INSTALLING", "message": "instance is installing"}),
                    ),
                ),
                Some(instance) => {
                    instance.status = "INSTALLING".into();
                    instance.image = image;
                    instance.installing_reads_left = 2;
                    (
                        StatusCode::OK,
                        axum::Json(
                            json!({"requestId": "T-reinstall", "response": {"requestId": "T-reinstall"}}),
                        ),
                    )
                }
            }
        }
        _ => (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"code": "INVALID_ACTION", "message": "unknown action"})),
        ),
    }
}

async fn start_fake(state: FakeState) -> (String, Shared) {
    let shared: Shared = Arc::new(StdMutex::new(state));
    let app = Router::new()
        .route("/api/v2/bmc", post(fake_api))
        .with_state(shared.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{address}"), shared)
}

fn running(image: &str) -> FakeInstance {
    FakeInstance {
        status: "RUNNING".into(),
        image: image.into(),
        installing_reads_left: 0,
    }
}

fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
        max_attempts: 3,
        max_retry_after: Duration::from_millis(10),
    }
}

#[tokio::test]
async fn observe_chunks_ids_follows_pages_and_reports_unknown_ids() {
    let instances = (0..120)
        .map(|n| (format!("i-{n:03}"), running(&format!("img-{}", n % 3))))
        .collect();
    let (endpoint, shared) = start_fake(FakeState {
        instances,
        max_page_size: 40,
        ..FakeState::default()
    })
    .await;
    let provider = provider_at(&endpoint, json!({}));
    let ids: Vec<String> = (0..150).map(|n| format!("i-{n:03}")).collect();
    let observations = provider.observe(&ids).await.unwrap();
    assert_eq!(observations.len(), 150);
    for n in 0..150 {
        let id = format!("i-{n:03}");
        match &observations[&id] {
            Observation::Found(observed) if n < 120 => {
                assert_eq!(observed.cloud_id, id);
                assert_eq!(observed.status, ServerStatus::Running);
                assert_eq!(observed.raw_status, "RUNNING");
                assert_eq!(
                    observed.image.as_deref(),
                    Some(format!("img-{}", n % 3).as_str())
                );
                assert_eq!(
                    observed.image_name.as_deref(),
                    Some(format!("Image img-{}", n % 3).as_str())
                );
                assert_eq!(
                    observed.hostname.as_deref(),
                    Some(format!("host-{id}").as_str())
                );
            }
            Observation::NotFound if n >= 120 => {}
            other => panic!("{id}: unexpected {other:?}"),
        }
    }
    let requests = shared.lock().unwrap().requests.clone();
    // First chunk: 100 found, pages of 40 → 3 calls; second chunk: 20 found → 1 call.
    let shape: Vec<(usize, u64)> = requests
        .iter()
        .map(|(action, body)| {
            assert_eq!(action, "DescribeInstances");
            assert_eq!(body["pageSize"], 100);
            (
                body["instanceIds"].as_array().unwrap().len(),
                body["pageNum"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(shape, [(100, 1), (100, 2), (100, 3), (50, 1)]);
}

#[tokio::test]
async fn throttled_reads_are_retried_with_fresh_signatures() {
    let (endpoint, shared) = start_fake(FakeState {
        instances: BTreeMap::from([("i-1".to_string(), running("img-1"))]),
        max_page_size: 100,
        throttle_next: 2,
        ..FakeState::default()
    })
    .await;
    let mut provider = provider_at(&endpoint, json!({}));
    provider.set_retry_policy(fast_retries());
    let observations = provider.observe(&["i-1".to_string()]).await.unwrap();
    assert!(matches!(observations["i-1"], Observation::Found(_)));
    assert_eq!(shared.lock().unwrap().requests.len(), 3);

    // Past the attempt limit the throttling error comes back with its code.
    shared.lock().unwrap().throttle_next = 5;
    match provider.observe(&["i-1".to_string()]).await {
        Err(ProviderError::Api {
            code,
            status,
            retryable,
            request_id,
            ..
        }) => {
            assert_eq!(code.as_deref(), Some("REQUEST_LIMIT_EXCEEDED"));
            assert_eq!(status, Some(429));
            assert!(retryable);
            assert_eq!(request_id.as_deref(), Some("T-429"));
        }
        other => panic!("expected throttling, got {other:?}"),
    }
}

#[tokio::test]
async fn a_wrong_secret_is_refused_by_the_fake_and_token_auth_works() {
    let (endpoint, _shared) = start_fake(FakeState {
        instances: BTreeMap::from([("i-1".to_string(), running("img-1"))]),
        max_page_size: 100,
        ..FakeState::default()
    })
    .await;
    let files = SecretFiles::new();
    let wrong = BTreeMap::from([
        ("access_key_id".to_string(), files.reference("id", KEY_ID)),
        (
            "access_key_password".to_string(),
            files.reference("pw", "not-the-password"),
        ),
    ]);
    let provider = ZenlayerBmc::with_env(
        &provider_config(Some(&endpoint), wrong, json!({})),
        None,
        no_env,
    )
    .unwrap();
    match provider.observe(&["i-1".to_string()]).await {
        Err(ProviderError::Api { code, status, .. }) => {
            assert_eq!(code.as_deref(), Some("AUTH_FAILED"));
            assert_eq!(status, Some(401));
        }
        other => panic!("expected an auth failure, got {other:?}"),
    }

    let token = BTreeMap::from([("token".to_string(), files.reference("token", TOKEN))]);
    let provider = ZenlayerBmc::with_env(
        &provider_config(Some(&endpoint), token, json!({})),
        None,
        no_env,
    )
    .unwrap();
    let observations = provider.observe(&["i-1".to_string()]).await.unwrap();
    assert!(matches!(observations["i-1"], Observation::Found(_)));
}

#[tokio::test]
async fn reinstall_then_poll_until_running_with_the_new_image() {
    let (endpoint, shared) = start_fake(FakeState {
        instances: BTreeMap::from([("i-1".to_string(), running("img-old"))]),
        max_page_size: 100,
        ..FakeState::default()
    })
    .await;
    // A long grace: success must come from having seen INSTALLING, not from the clock.
    let provider = provider_at(&endpoint, json!({"running_grace_seconds": 3600}));
    let mut request = reinstall_request(
        ResolvedAccess::Password(SecretString::from("Passw0rd~ok".to_string())),
        json!({"raid_type": 1}),
    );
    request.cloud_id = "i-1".into();
    request.image = "img-new".into();
    let operation = provider.reinstall(&request).await.unwrap();
    assert_eq!(operation.cloud_id, "i-1");
    assert_eq!(operation.image, "img-new");
    assert_eq!(operation.job_id, None);
    assert_eq!(operation.request_id.as_deref(), Some("T-reinstall"));
    assert!(operation.started_at_ms > 1_600_000_000_000);

    let sent = shared.lock().unwrap().requests[0].clone();
    assert_eq!(sent.0, "ReinstallInstance");
    assert_eq!(sent.1["imageId"], "img-new");
    assert_eq!(sent.1["password"], "Passw0rd~ok");
    assert_eq!(sent.1["raidConfig"], json!({"raidType": 1}));

    let operations = [operation];
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(provider.poll(&operations).await.unwrap().remove(0));
    }
    assert_eq!(
        statuses,
        [
            OperationStatus::InProgress {
                detail: "installing".into()
            },
            OperationStatus::InProgress {
                detail: "installing".into()
            },
            OperationStatus::Succeeded {
                image: "img-new".into(),
                note: None,
            },
        ]
    );
}

#[tokio::test]
async fn reinstall_is_sent_once_and_refusals_are_explained() {
    let (endpoint, shared) = start_fake(FakeState {
        instances: BTreeMap::from([("i-1".to_string(), running("img-old"))]),
        max_page_size: 100,
        reinstall_answer: Some((
            503,
            json!({"requestId": "T-503", "code": "INTERNAL_ERROR", "message": "try later"}),
        )),
        ..FakeState::default()
    })
    .await;
    let mut provider = provider_at(&endpoint, json!({}));
    provider.set_retry_policy(fast_retries());
    let mut request = reinstall_request(ResolvedAccess::SshKeyId("key-1".into()), json!({}));
    request.cloud_id = "i-1".into();
    // A server error does not prove the install did not start.
    match provider.reinstall(&request).await {
        Err(ProviderError::Transport {
            maybe_sent,
            message,
            ..
        }) => {
            assert!(maybe_sent);
            assert!(
                message.contains("INTERNAL_ERROR") && message.contains("T-503"),
                "{message}"
            );
            assert!(message.contains("may have started"), "{message}");
        }
        other => panic!("expected an ambiguous transport error, got {other:?}"),
    }
    assert_eq!(
        shared.lock().unwrap().requests.len(),
        1,
        "a reinstall must never be retried"
    );

    shared.lock().unwrap().reinstall_answer = Some((
        400,
        json!({"requestId": "T-busy", "code": "OPERATION_DENIED_INSTANCE_STATUS_INSTALLING", "message": "installing"}),
    ));
    match provider.reinstall(&request).await {
        Err(error @ ProviderError::Api { .. }) => {
            let text = error.to_string();
            assert!(
                text.contains("an install is already in progress on `i-1`"),
                "{text}"
            );
            assert!(text.contains("T-busy"), "{text}");
        }
        other => panic!("expected an API error, got {other:?}"),
    }

    // A refusal by validation is a plain API error: nothing started.
    shared.lock().unwrap().reinstall_answer = Some((
        400,
        json!({"requestId": "T-img", "code": "INVALID_IMAGE_NOT_FOUND", "message": "no such image"}),
    ));
    match provider.reinstall(&request).await {
        Err(ProviderError::Api { code, status, .. }) => {
            assert_eq!(code.as_deref(), Some("INVALID_IMAGE_NOT_FOUND"));
            assert_eq!(status, Some(400));
        }
        other => panic!("expected an API error, got {other:?}"),
    }

    // Nothing is sent when the body itself is refused.
    let before = shared.lock().unwrap().requests.len();
    request.image = String::new();
    assert!(matches!(
        provider.reinstall(&request).await,
        Err(ProviderError::Config { .. })
    ));
    assert_eq!(shared.lock().unwrap().requests.len(), before);
}

#[tokio::test]
async fn a_reinstall_that_cannot_connect_was_not_sent() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let provider = provider_at(&format!("http://{address}"), json!({}));
    let request = reinstall_request(ResolvedAccess::SshKeyId("key-1".into()), json!({}));
    assert!(matches!(
        provider.reinstall(&request).await,
        Err(ProviderError::Transport {
            maybe_sent: false,
            ..
        })
    ));
}

#[tokio::test]
async fn poll_reports_vanished_instances() {
    let (endpoint, _shared) = start_fake(FakeState {
        instances: BTreeMap::from([("i-1".to_string(), running("img-new"))]),
        max_page_size: 100,
        ..FakeState::default()
    })
    .await;
    let provider = provider_at(&endpoint, json!({"running_grace_seconds": 0}));
    let mut gone = operation(0);
    gone.cloud_id = "i-gone".into();
    let statuses = provider.poll(&[operation(0), gone]).await.unwrap();
    assert_eq!(
        statuses[0],
        OperationStatus::Succeeded {
            image: "img-new".into(),
            note: None,
        }
    );
    assert!(
        matches!(&statuses[1], OperationStatus::Failed { message, .. } if message.contains("disappeared"))
    );
}

#[tokio::test]
async fn logs_of_retries_and_reinstalls_hold_no_secrets() {
    let (logs, _guard) = crate::provider::captured_logs::CapturedLogs::start();

    let (endpoint, _shared) = start_fake(FakeState {
        instances: BTreeMap::from([("i-1".to_string(), running("img-old"))]),
        max_page_size: 100,
        throttle_next: 1,
        ..FakeState::default()
    })
    .await;
    let mut provider = provider_at(&endpoint, json!({}));
    provider.set_retry_policy(fast_retries());
    provider.observe(&["i-1".to_string()]).await.unwrap();
    let mut request = reinstall_request(
        ResolvedAccess::Password(SecretString::from("Passw0rd~ok".to_string())),
        json!({}),
    );
    request.cloud_id = "i-1".into();
    provider.reinstall(&request).await.unwrap();

    let text = logs.text();
    assert!(text.contains("retrying"), "{text}");
    assert!(text.contains("authorization=<redacted>"), "{text}");
    for secret in [KEY_PASSWORD, "Passw0rd~ok", "Signature="] {
        assert!(
            !text.contains(secret),
            "{secret} leaked into the logs: {text}"
        );
    }
}
