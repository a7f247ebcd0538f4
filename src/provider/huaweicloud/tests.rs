//! Tests of the Huawei adapters: configuration, signing over the bytes sent, exact bodies
//! (snapshots), parsers, the plan's review, and calls against the built-in emulator on loopback.

use std::collections::BTreeMap;
use std::time::Duration;

use secrecy::SecretString;
use serde_json::{Value, json};

use super::wire::{Cloud, EcsBodyInput, EcsCall, EcsVariant};
use super::*;
use crate::emulator::{EmulatorConfig, RunningEmulator};
use crate::manifest::model::ProviderConfig;
use crate::manifest::{DesiredAccess, DesiredProvider, DesiredServer, ProviderType, SecretRef};
use crate::provider::{
    Observation, Observed, OperationStatus, Provider, ProviderError, ReinstallRequest,
    ResolvedAccess, ServerStatus,
};

const AK: &str = "HWAKTEST0001";
const SK: &str = "HwSecretCanary-0001";
const PROJECT: &str = "0a1b2c3d4e5f60718293a4b5c6d7e8f9";
const PASSWORD: &str = "Canary!Pass-2025";

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

fn config(
    provider_type: ProviderType,
    region: Option<&str>,
    endpoint: Option<&str>,
    options: Value,
) -> DesiredProvider {
    DesiredProvider {
        name: "hw".to_string(),
        config: ProviderConfig {
            provider_type,
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
            options: options.as_object().cloned().unwrap_or_default(),
            rate_limits: BTreeMap::new(),
        },
    }
}

fn keys_env() -> impl Fn(&str) -> Option<String> {
    env_of(&[("HW_ACCESS_KEY", AK), ("HW_SECRET_KEY", SK)])
}

fn ecs_with(
    region: Option<&str>,
    endpoint: Option<&str>,
    options: Value,
) -> Result<HuaweiEcs, ProviderError> {
    HuaweiEcs::with_env(
        &config(ProviderType::HuaweicloudEcs, region, endpoint, options),
        None,
        keys_env(),
    )
}

fn error_text(result: Result<impl std::fmt::Debug, ProviderError>) -> String {
    match result {
        Err(ProviderError::Config { message, help, .. }) => format!("{message} | {help}"),
        other => panic!("expected a configuration error, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Configuration

#[test]
fn credentials_come_from_the_manifest_then_hw_then_sdk_then_os() {
    let build = |env: &dyn Fn(&str) -> Option<String>| {
        HuaweiClient::from_config(
            Service::Ecs,
            &config(
                ProviderType::HuaweicloudEcs,
                Some("cn-north-4"),
                None,
                json!({}),
            ),
            None,
            &[],
            env,
        )
        .map(|parsed| parsed.client.credentials)
    };
    let all = env_of(&[
        ("HW_ACCESS_KEY", "ak-hw"),
        ("HW_SECRET_KEY", "sk-hw"),
        ("HUAWEICLOUD_SDK_AK", "ak-sdk"),
        ("HUAWEICLOUD_SDK_SK", "sk-sdk"),
        ("OS_ACCESS_KEY", "ak-os"),
        ("OS_SECRET_KEY", "sk-os"),
    ]);
    let access_key = |credentials: Credentials| match credentials {
        Credentials::AccessKey { access_key, .. } => access_key,
        Credentials::Token(_) => "token".to_string(),
    };
    assert_eq!(access_key(build(&all).unwrap()), "ak-hw");
    let sdk_and_os = env_of(&[
        ("HUAWEICLOUD_SDK_AK", "ak-sdk"),
        ("HUAWEICLOUD_SDK_SK", "sk-sdk"),
        ("OS_ACCESS_KEY", "ak-os"),
        ("OS_SECRET_KEY", "sk-os"),
    ]);
    assert_eq!(access_key(build(&sdk_and_os).unwrap()), "ak-sdk");
    let os = env_of(&[("OS_ACCESS_KEY", "ak-os"), ("OS_SECRET_KEY", "sk-os")]);
    assert_eq!(access_key(build(&os).unwrap()), "ak-os");
    let token = env_of(&[("HW_AUTH_TOKEN", "tok")]);
    assert_eq!(access_key(build(&token).unwrap()), "token");
    let temporary = env_of(&[
        ("HW_ACCESS_KEY", "ak"),
        ("HW_SECRET_KEY", "sk"),
        ("HW_SECURITY_TOKEN", "st"),
    ]);
    assert!(matches!(
        build(&temporary).unwrap(),
        Credentials::AccessKey {
            security_token: Some(_),
            ..
        }
    ));
    let half = env_of(&[("HW_ACCESS_KEY", "ak")]);
    assert!(error_text(build(&half)).contains("only one of HW_ACCESS_KEY and HW_SECRET_KEY"));
    let none = error_text(build(&no_env));
    assert!(
        none.contains("HW_ACCESS_KEY") && none.contains("HUAWEICLOUD_SDK_AK"),
        "{none}"
    );

    // Manifest references win over the environment.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("sk"), "sk-file\n").unwrap();
    let mut manifest = config(
        ProviderType::HuaweicloudEcs,
        Some("cn-north-4"),
        None,
        json!({}),
    );
    manifest.config.credentials = BTreeMap::from([
        (
            "access_key".to_string(),
            SecretRef::Env("REIMAGE_TEST_HW_AK_UNSET_9".to_string()),
        ),
        (
            "secret_key".to_string(),
            SecretRef::File(dir.path().join("sk").display().to_string()),
        ),
    ]);
    let error = error_text(HuaweiEcs::with_env(&manifest, None, &all));
    assert!(
        error.contains("access_key") && error.contains("REIMAGE_TEST_HW_AK_UNSET_9"),
        "{error}"
    );
    manifest
        .config
        .credentials
        .insert("acess_key".to_string(), SecretRef::Env("X".to_string()));
    let error = error_text(HuaweiEcs::with_env(&manifest, None, &all));
    assert!(error.contains("did you mean `access_key`?"), "{error}");
}

#[test]
fn endpoints_follow_region_base_domain_and_overrides() {
    let ecs = ecs_with(Some("cn-north-4"), None, json!({})).unwrap();
    assert_eq!(
        ecs.client().endpoint().as_str(),
        "https://ecs.cn-north-4.myhuaweicloud.com/"
    );
    assert_eq!(
        ecs.client().iam_endpoint().as_str(),
        "https://iam.myhuaweicloud.com/"
    );
    let eu = ecs_with(
        Some("eu-west-101"),
        None,
        json!({"base_domain": "myhuaweicloud.eu"}),
    )
    .unwrap();
    assert_eq!(
        eu.client().endpoint().as_str(),
        "https://ecs.eu-west-101.myhuaweicloud.eu/"
    );
    assert_eq!(
        eu.client().iam_endpoint().as_str(),
        "https://iam.myhuaweicloud.eu/"
    );
    let otc = ecs_with(
        Some("eu-de"),
        Some("https://ecs.eu-de.otc.t-systems.com"),
        json!({"iam_endpoint": "https://iam.eu-de.otc.t-systems.com"}),
    )
    .unwrap();
    assert_eq!(
        otc.client().endpoint().as_str(),
        "https://ecs.eu-de.otc.t-systems.com/"
    );
    assert_eq!(
        otc.client().iam_endpoint().as_str(),
        "https://iam.eu-de.otc.t-systems.com/"
    );
    let from_env = HuaweiEcs::with_env(
        &config(
            ProviderType::HuaweicloudEcs,
            Some("cn-north-4"),
            None,
            json!({}),
        ),
        None,
        env_of(&[
            ("HW_ACCESS_KEY", AK),
            ("HW_SECRET_KEY", SK),
            ("HW_CLOUD", "example.com"),
            (
                "HUAWEICLOUD_SDK_REGION_ECS_CN_NORTH_4",
                "https://ecs.internal, https://b",
            ),
            ("HW_AUTH_URL", "https://iam.internal:443/v3"),
        ]),
    )
    .unwrap();
    assert_eq!(
        from_env.client().endpoint().as_str(),
        "https://ecs.internal/"
    );
    assert_eq!(
        from_env.client().iam_endpoint().as_str(),
        "https://iam.internal/"
    );
    let clouddc = HuaweiClouddc::with_env(
        &config(
            ProviderType::HuaweicloudClouddc,
            Some("cn-east-3"),
            None,
            json!({}),
        ),
        None,
        keys_env(),
    )
    .unwrap();
    assert_eq!(
        clouddc.client().endpoint().as_str(),
        "https://clouddc.cn-east-3.myhuaweicloud.com/"
    );
    assert_eq!(clouddc.capabilities().reinstall_batch, 10);
    // The emulator override serves IAM too.
    let emulated = HuaweiEcs::with_env(
        &config(
            ProviderType::HuaweicloudEcs,
            Some("cn-north-4"),
            Some("emulator"),
            json!({}),
        ),
        Some("http://127.0.0.1:9"),
        keys_env(),
    )
    .unwrap();
    assert_eq!(
        emulated.client().iam_endpoint().as_str(),
        "http://127.0.0.1:9/"
    );

    assert!(
        error_text(ecs_with(
            Some("cn-north-4"),
            Some("http://ecs.example.com"),
            json!({})
        ))
        .contains("plain http")
    );
    assert!(error_text(ecs_with(None, None, json!({}))).contains("no region"));
    assert!(
        error_text(ecs_with(None, Some("https://e.example"), json!({}))).contains("no project id")
    );
    assert!(
        ecs_with(
            None,
            Some("https://e.example"),
            json!({"project_id": PROJECT})
        )
        .is_ok()
    );
    assert!(error_text(ecs_with(Some("cn north"), None, json!({}))).contains("not a region"));
    let unknown = error_text(ecs_with(
        Some("cn-north-4"),
        None,
        json!({"projectid": "x"}),
    ));
    assert!(unknown.contains("did you mean `project_id`?"), "{unknown}");
    let batch = |value: Value| {
        HuaweiClouddc::with_env(
            &config(
                ProviderType::HuaweicloudClouddc,
                Some("cn-east-3"),
                None,
                json!({"reinstall_batch": value}),
            ),
            None,
            keys_env(),
        )
    };
    assert_eq!(batch(json!(50)).unwrap().capabilities().reinstall_batch, 50);
    assert!(error_text(batch(json!(51))).contains("1 to 50"));
    assert!(error_text(batch(json!(0))).contains("1 to 50"));
}

// ---------------------------------------------------------------------------------------------
// Signing over what is sent

fn header(request: &reqwest::Request, name: &str) -> Option<String> {
    request
        .headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(str::to_string)
}

/// Re-derives the signature from the request as it will go on the wire.
fn verify(request: &reqwest::Request, secret_key: &str) {
    let authorization = header(request, "authorization").unwrap();
    let parsed = sign::sdk_hmac::parse_authorization(&authorization).unwrap();
    let headers: Vec<(String, String)> = parsed
        .signed_headers
        .split(';')
        .map(|name| {
            (
                name.to_string(),
                header(request, name).unwrap_or_else(|| panic!("{name} not sent")),
            )
        })
        .collect();
    let query = sign::sdk_hmac::canonical_query(&sign::sdk_hmac::parse_query(
        request.url().query().unwrap_or_default(),
    ));
    assert_eq!(
        request.url().query().unwrap_or_default(),
        query,
        "the query is sent canonical"
    );
    let body = request
        .body()
        .and_then(|body| body.as_bytes())
        .unwrap_or_default();
    let canonical = sign::sdk_hmac::canonical_request(
        request.method().as_str(),
        request.url().path(),
        &query,
        &headers,
        &parsed.signed_headers,
        body,
    );
    let date = header(request, "x-sdk-date").unwrap();
    let expected = sign::sdk_hmac::signature(
        secret_key,
        &sign::sdk_hmac::string_to_sign(&date, &canonical),
    );
    assert_eq!(parsed.signature, expected);
}

use crate::provider::sign;

#[test]
fn requests_are_signed_over_the_bytes_and_headers_sent() {
    let ecs = ecs_with(Some("cn-north-4"), None, json!({"project_id": PROJECT})).unwrap();
    let at: jiff::Timestamp = "2025-01-15T08:30:00Z".parse().unwrap();
    let query = vec![
        ("server_id".to_string(), "a,b".to_string()),
        ("limit".to_string(), "100".to_string()),
    ];
    let read = ecs
        .client()
        .build_request_at(
            Target::Service,
            reqwest::Method::GET,
            &wire::ecs_detail_path(PROJECT),
            &query,
            None,
            Some(PROJECT),
            at,
        )
        .unwrap();
    assert_eq!(
        read.url().as_str(),
        format!(
            "https://ecs.cn-north-4.myhuaweicloud.com/v1/{PROJECT}/cloudservers/detail?limit=100&server_id=a%2Cb"
        )
    );
    assert_eq!(
        header(&read, "x-sdk-date").as_deref(),
        Some("20250115T083000Z")
    );
    assert_eq!(header(&read, "x-project-id").as_deref(), Some(PROJECT));
    assert_eq!(
        header(&read, "content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(
        header(&read, "host").as_deref(),
        Some("ecs.cn-north-4.myhuaweicloud.com")
    );
    assert!(header(&read, "authorization").unwrap().starts_with(&format!(
        "SDK-HMAC-SHA256 Access={AK}, SignedHeaders=content-type;host;x-project-id;x-sdk-date, Signature="
    )));
    verify(&read, SK);
    let body = br#"{"os-change":{"keyname":"kp","imageid":"i","mode":"withStopServer"}}"#;
    let write = ecs
        .client()
        .build_request_at(
            Target::Service,
            reqwest::Method::POST,
            &wire::ecs_action_path(
                PROJECT,
                "id/../x",
                EcsCall::ChangeOs,
                EcsVariant::V1WithoutCloudInit,
            ),
            &[],
            Some(body),
            Some(PROJECT),
            at,
        )
        .unwrap();
    // An id cannot climb out of its path segment.
    assert!(
        write
            .url()
            .path()
            .ends_with("/cloudservers/id%2F..%2Fx/changeos"),
        "{}",
        write.url()
    );
    assert_eq!(
        header(&write, "content-type").as_deref(),
        Some("application/json;charset=utf-8")
    );
    verify(&write, SK);

    // Temporary keys sign the security token; tokens are sent as X-Auth-Token, unsigned.
    let temporary = HuaweiEcs::with_env(
        &config(
            ProviderType::HuaweicloudEcs,
            Some("cn-north-4"),
            None,
            json!({"project_id": PROJECT}),
        ),
        None,
        env_of(&[
            ("HW_ACCESS_KEY", AK),
            ("HW_SECRET_KEY", SK),
            ("HW_SECURITY_TOKEN", "sts-token"),
        ]),
    )
    .unwrap();
    let request = temporary
        .client()
        .build_request_at(
            Target::Service,
            reqwest::Method::GET,
            "/v1/p/jobs/j",
            &[],
            None,
            Some(PROJECT),
            at,
        )
        .unwrap();
    assert!(
        header(&request, "authorization")
            .unwrap()
            .contains("x-security-token")
    );
    verify(&request, SK);
    let token = HuaweiEcs::with_env(
        &config(
            ProviderType::HuaweicloudEcs,
            Some("cn-north-4"),
            None,
            json!({"project_id": PROJECT}),
        ),
        None,
        env_of(&[("HW_AUTH_TOKEN", "tok-1")]),
    )
    .unwrap();
    let request = token
        .client()
        .build_request_at(
            Target::Service,
            reqwest::Method::GET,
            "/v1/p/jobs/j",
            &[],
            None,
            Some(PROJECT),
            at,
        )
        .unwrap();
    assert_eq!(header(&request, "x-auth-token").as_deref(), Some("tok-1"));
    assert!(header(&request, "authorization").is_none());
    let described = crate::provider::http::describe_request(&request);
    assert!(!described.contains("tok-1"), "{described}");
}

// ---------------------------------------------------------------------------------------------
// Bodies

fn snapshot_settings() -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    // Snapshots of all providers live together in src/provider/snapshots.
    settings.set_snapshot_path("../snapshots");
    settings
}

fn password_access() -> ResolvedAccess {
    ResolvedAccess::Password(SecretString::from(PASSWORD.to_string()))
}

fn ecs_body(
    call: EcsCall,
    variant: EcsVariant,
    cloud: Cloud,
    access: &ResolvedAccess,
    user_id: Option<&str>,
    user_data: Option<&str>,
) -> Result<String, wire::BodyError> {
    wire::ecs_body(&EcsBodyInput {
        call,
        variant,
        cloud,
        image: "67f433d8-ed0e-4321-a8a2-a71838539e09",
        access,
        user_id,
        user_data,
        with_stop_server: true,
    })
    .map(|bytes| String::from_utf8(bytes).unwrap())
}

#[test]
fn the_four_ecs_bodies_and_the_clouddc_body_are_exact() {
    let key = ResolvedAccess::SshKeyId("kp-ops".to_string());
    let change_v1 = ecs_body(
        EcsCall::ChangeOs,
        EcsVariant::V1WithoutCloudInit,
        Cloud::Huawei,
        &password_access(),
        None,
        None,
    )
    .unwrap();
    // The same shape as the official SDK's request in the signing vectors.
    assert_eq!(
        change_v1,
        format!(
            r#"{{"os-change":{{"adminpass":"{PASSWORD}","imageid":"67f433d8-ed0e-4321-a8a2-a71838539e09","mode":"withStopServer"}}}}"#
        )
    );
    let change_v2 = ecs_body(
        EcsCall::ChangeOs,
        EcsVariant::V2WithCloudInit,
        Cloud::Huawei,
        &key,
        Some("user-1"),
        Some("#cloud-config\n"),
    )
    .unwrap();
    let reinstall_v1 = ecs_body(
        EcsCall::ReinstallOs,
        EcsVariant::V1WithoutCloudInit,
        Cloud::OpenTelekom,
        &key,
        Some("user-1"),
        None,
    )
    .unwrap();
    let reinstall_v2 = ecs_body(
        EcsCall::ReinstallOs,
        EcsVariant::V2WithCloudInit,
        Cloud::Huawei,
        &password_access(),
        None,
        None,
    )
    .unwrap();
    let clouddc = String::from_utf8(wire::clouddc_reinstall_body(
        "b5f5a0c2-3333-4a1b-9c8d-7e6f5a4b3c2d",
        &SecretString::from(PASSWORD.to_string()),
        &[
            "0197f36d-d83b-7258-b177-3784b7887a17",
            "0197f36d-d83b-7258-b177-3784b7887a18",
        ],
    ))
    .unwrap();
    snapshot_settings().bind(|| {
        insta::assert_snapshot!("huaweicloud_ecs_changeos_v1_body", change_v1);
        insta::assert_snapshot!("huaweicloud_ecs_changeos_v2_body", change_v2);
        insta::assert_snapshot!("huaweicloud_ecs_reinstallos_v1_body", reinstall_v1);
        insta::assert_snapshot!("huaweicloud_ecs_reinstallos_v2_body", reinstall_v2);
        insta::assert_snapshot!("huaweicloud_clouddc_reinstall_body", clouddc);
    });
    assert!(
        change_v2.contains(r#""metadata":{"user_data":"I2Nsb3VkLWNvbmZpZwo="}"#),
        "{change_v2}"
    );
    assert!(
        !reinstall_v1.contains("imageid"),
        "reinstallos takes no image id"
    );
}

#[test]
fn ecs_bodies_refuse_what_each_cloud_refuses() {
    let key = ResolvedAccess::SshKeyId("kp".to_string());
    let refuse = |result: Result<String, wire::BodyError>, expected: &str| {
        let error = result.unwrap_err();
        assert!(
            error.message.contains(expected) || error.help.contains(expected),
            "{error:?}"
        );
        assert!(!error.message.contains(PASSWORD) && !error.help.contains(PASSWORD));
    };
    refuse(
        ecs_body(
            EcsCall::ChangeOs,
            EcsVariant::V1WithoutCloudInit,
            Cloud::OpenTelekom,
            &password_access(),
            None,
            None,
        ),
        "no password",
    );
    refuse(
        ecs_body(
            EcsCall::ChangeOs,
            EcsVariant::V1WithoutCloudInit,
            Cloud::OpenTelekom,
            &key,
            None,
            None,
        ),
        "userid",
    );
    refuse(
        ecs_body(
            EcsCall::ChangeOs,
            EcsVariant::V1WithoutCloudInit,
            Cloud::Huawei,
            &key,
            Some("user-1"),
            Some("x"),
        ),
        "Cloud-Init",
    );
    refuse(
        ecs_body(
            EcsCall::ChangeOs,
            EcsVariant::V1WithoutCloudInit,
            Cloud::Huawei,
            &ResolvedAccess::None,
            None,
            None,
        ),
        "password or a key pair",
    );
    assert!(
        ecs_body(
            EcsCall::ChangeOs,
            EcsVariant::V2WithCloudInit,
            Cloud::Huawei,
            &ResolvedAccess::None,
            None,
            Some("x")
        )
        .is_ok()
    );
    // Brief §4.1: `userid` is required with `keyname`, on Huawei Cloud too.
    refuse(
        ecs_body(
            EcsCall::ChangeOs,
            EcsVariant::V1WithoutCloudInit,
            Cloud::Huawei,
            &key,
            None,
            None,
        ),
        "userid",
    );
    assert!(
        ecs_body(
            EcsCall::ChangeOs,
            EcsVariant::V1WithoutCloudInit,
            Cloud::Huawei,
            &key,
            Some("user-1"),
            None
        )
        .is_ok()
    );
}

// ---------------------------------------------------------------------------------------------
// Parsers

fn raw(status: u16, request_id: Option<&str>, body: &str) -> http::RawResponse {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(id) = request_id {
        headers.insert("x-request-id", id.parse().unwrap());
    }
    http::RawResponse {
        status: reqwest::StatusCode::from_u16(status).unwrap(),
        headers,
        body: body.as_bytes().to_vec(),
    }
}

use crate::provider::http;

#[test]
fn the_tolerant_error_parser_reads_every_documented_shape_and_keeps_the_request_id() {
    let cases = [
        (
            r#"{"error_code":"APIGW.0301","error_msg":"bad sig","request_id":"rb"}"#,
            Some("APIGW.0301"),
            "bad sig",
        ),
        (
            r#"{"errorCode":"X.1","errorMsg":"camel"}"#,
            Some("X.1"),
            "camel",
        ),
        (
            r#"{"code":"Ecs.0200","message":"job query"}"#,
            Some("Ecs.0200"),
            "job query",
        ),
        (
            r#"{"error":{"code":"Ecs.0114","message":"no such server","details":[]}}"#,
            Some("Ecs.0114"),
            "no such server",
        ),
        (
            r#"{"wrapper":{"error_code":"CDC.1","error_msg":"nested"}}"#,
            Some("CDC.1"),
            "nested",
        ),
        ("<html>bad gateway</html>", None, "<html>bad gateway</html>"),
    ];
    for (body, code, message) in cases {
        let error =
            wire::error_from_response("hw", "listing servers", &raw(400, Some("req-123"), body));
        match &error {
            ProviderError::Api {
                code: got,
                message: text,
                request_id,
                retryable,
                ..
            } => {
                assert_eq!(got.as_deref(), code, "{body}");
                assert!(text.contains(message), "{body}: {text}");
                assert_eq!(request_id.as_deref(), Some("req-123"));
                assert!(!retryable);
            }
            other => panic!("{other:?}"),
        }
        assert!(
            error.to_string().contains("(request id req-123)"),
            "{error}"
        );
    }
    let from_body = wire::error_from_response(
        "hw",
        "x",
        &raw(
            401,
            None,
            r#"{"error_code":"APIGW.0301","error_msg":"m","request_id":"rb"}"#,
        ),
    );
    assert!(
        from_body.to_string().contains("request id rb"),
        "{from_body}"
    );
    assert!(wire::error_from_response("hw", "x", &raw(429, None, "")).is_retryable());
    assert!(wire::error_from_response("hw", "x", &raw(503, None, "{}")).is_retryable());
    assert!(!wire::error_from_response("hw", "x", &raw(404, None, "{}")).is_retryable());
}

#[test]
fn jobs_servers_and_instances_parse_tolerantly() {
    let failed = wire::parse_job(&json!({
        "status": "FAIL", "error_code": "Ecs.0001", "fail_reason": "disk",
        "entities": {"sub_jobs": [{"status": "FAIL", "entities": {"errorcode_message": "sub broke"}}]}
    }));
    assert_eq!(
        failed,
        wire::JobState::Fail("Ecs.0001; disk; sub-job: sub broke".to_string())
    );
    assert_eq!(
        wire::parse_job(&json!({"status": "SUCCESS"})),
        wire::JobState::Success
    );
    assert!(matches!(
        wire::parse_job(&json!({"status": "INIT"})),
        wire::JobState::Pending(_)
    ));
    assert!(matches!(
        wire::parse_job(&json!({})),
        wire::JobState::Pending(_)
    ));
    assert!(
        wire::parse_ecs_servers(
            &json!({"servers": [{"id": null}, 3, {"id": "a", "image": null, "locked": "x"}]})
        )
        .len()
            == 1
    );
    assert_eq!(wire::map_ecs_status("ACTIVE"), ServerStatus::Running);
    assert_eq!(wire::map_ecs_status("SHUTOFF"), ServerStatus::Stopped);
    assert_eq!(wire::map_ecs_status("REBUILD"), ServerStatus::Installing);
    assert_eq!(wire::map_ecs_status("ERROR"), ServerStatus::InstallFailed);
    assert_eq!(wire::map_ecs_status("RESIZE"), ServerStatus::Busy);
    assert_eq!(
        wire::map_clouddc_status("pending", Some("reinstall-processing")),
        ServerStatus::Installing
    );
    assert_eq!(
        wire::map_clouddc_status("running", Some("reinstall-failed")),
        ServerStatus::InstallFailed
    );
    assert_eq!(
        wire::map_clouddc_status("error", None),
        ServerStatus::InstallFailed
    );
    assert_eq!(
        wire::map_clouddc_status("pending", Some("modify-ip-processing")),
        ServerStatus::Busy
    );
    let (instances, next) = wire::parse_clouddc_page(
        &json!({"instances": [{"id": "a", "state": "running", "image": {"id": "i"}}], "page_info": {"next_marker": "a"}}),
    );
    assert_eq!(instances[0].image_id.as_deref(), Some("i"));
    assert_eq!(next.as_deref(), Some("a"));
    assert_eq!(
        wire::project_from_listing(&json!({"projects": [{"id": "p", "name": "r"}]}), "r"),
        Ok("p".to_string())
    );
    assert!(
        wire::project_from_listing(&json!({"projects": []}), "r")
            .unwrap_err()
            .contains("no project")
    );
    assert!(
        wire::project_from_listing(&json!({"projects": [{"id": "p"}, {"id": "q"}]}), "r")
            .unwrap_err()
            .contains("2 projects")
    );
}

// ---------------------------------------------------------------------------------------------
// Plan review (pure)

fn desired(provider_type: ProviderType, image: &str, options: Value) -> DesiredServer {
    DesiredServer {
        name: "web".into(),
        provider: "hw".into(),
        provider_type,
        cloud_id: "id-1".into(),
        image: image.into(),
        revision: 0,
        access: DesiredAccess::SshKeyId { id: "kp".into() },
        hostname: None,
        user_data: None,
        protect: false,
        group: None,
        address: None,
        health: Default::default(),
        options: options.as_object().cloned().unwrap_or_default(),
    }
}

fn seen(status: ServerStatus, raw_status: &str, image: &str, extra: &[(&str, &str)]) -> Observed {
    Observed {
        cloud_id: "id-1".into(),
        status,
        raw_status: raw_status.into(),
        image: Some(image.into()),
        image_name: None,
        hostname: None,
        address: None,
        extra: extra
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

#[test]
fn ecs_review_blocks_locked_and_busy_servers_and_names_the_call() {
    let change = desired(ProviderType::HuaweicloudEcs, "img-new", json!({}));
    let review = ecs::review(
        &change,
        &seen(
            ServerStatus::Running,
            "ACTIVE",
            "img-old",
            &[("locked", "true")],
        ),
    );
    assert!(review.blocked.unwrap().contains("locked"));
    let review = ecs::review(
        &change,
        &seen(
            ServerStatus::Running,
            "ACTIVE",
            "img-old",
            &[("locked", "false"), ("task_state", "rebooting")],
        ),
    );
    assert!(review.blocked.unwrap().contains("rebooting"));
    let review = ecs::review(
        &change,
        &seen(
            ServerStatus::Running,
            "ACTIVE",
            "img-old",
            &[("locked", "false")],
        ),
    );
    assert_eq!(review.blocked, None);
    assert!(!review.stop_first, "the API stops the server itself");
    assert_eq!(
        review.notes,
        [
            "the OS is changed with changeos (v1, image without Cloud-Init)",
            "the server is stopped before the reinstall (mode withStopServer)"
        ]
    );
    let same = desired(
        ProviderType::HuaweicloudEcs,
        "img-old",
        json!({"cloud_init": true}),
    );
    let review = ecs::review(
        &same,
        &seen(ServerStatus::Stopped, "SHUTOFF", "img-old", &[]),
    );
    assert_eq!(
        review.notes,
        [
            "the OS is reinstalled from the current image with reinstallos (v2, image with Cloud-Init)"
        ]
    );
    let no_stop = desired(
        ProviderType::HuaweicloudEcs,
        "img-new",
        json!({"with_stop_server": false}),
    );
    assert!(
        ecs::review(
            &no_stop,
            &seen(ServerStatus::Running, "ACTIVE", "img-old", &[])
        )
        .blocked
        .unwrap()
        .contains("with_stop_server")
    );
    assert_eq!(
        ecs::review(
            &no_stop,
            &seen(ServerStatus::Stopped, "SHUTOFF", "img-old", &[])
        )
        .blocked,
        None
    );
    assert_eq!(ecs::choose_call(Some("a"), "a"), EcsCall::ReinstallOs);
    assert_eq!(ecs::choose_call(Some("a"), "b"), EcsCall::ChangeOs);
    assert_eq!(ecs::choose_call(None, "b"), EcsCall::ChangeOs);
}

#[test]
fn clouddc_review_requires_running() {
    let server = desired(ProviderType::HuaweicloudClouddc, "img", json!({}));
    assert!(
        clouddc::review(&server, &seen(ServerStatus::Stopped, "stopped", "img", &[]))
            .blocked
            .unwrap()
            .contains("only running")
    );
    assert_eq!(
        clouddc::review(&server, &seen(ServerStatus::Running, "running", "img", &[])).blocked,
        None
    );
}

// ---------------------------------------------------------------------------------------------
// Against the emulator

async fn emulator(inventory: &str) -> (RunningEmulator, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inventory.yaml");
    std::fs::write(&path, inventory).unwrap();
    let running = crate::emulator::start(EmulatorConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        inventory: path,
        data_dir: dir.path().join("data"),
        install_seconds: None,
    })
    .await
    .unwrap();
    (running, dir)
}

fn inventory(clouddc_instances: usize) -> String {
    let mut text = format!(
        "install_seconds: 0.4\nhuaweicloud:\n  credentials: [{{access_key: {AK}, secret_key: {SK}}}]\n  tokens: [tok-emulated]\n  projects: [{{id: {PROJECT}, name: cn-north-4}}]\n  ecs:\n    images:\n      - {{id: img-old, name: Old}}\n      - {{id: img-new, name: New}}\n    servers:\n      - {{id: ecs-1, name: a, image: img-old}}\n      - {{id: ecs-2, name: b, image: img-new, status: SHUTOFF}}\n      - {{id: ecs-3, name: c, image: img-old, fail_next_install: true}}\n      - {{id: ecs-4, name: d, image: img-old, locked: true, task_state: rebooting}}\n  clouddc:\n    max_page_size: 10\n    images:\n      - {{id: dc-old, name: Old}}\n      - {{id: dc-new, name: New}}\n    instances:"
    );
    text.push_str(if clouddc_instances == 0 {
        " []\n"
    } else {
        "\n"
    });
    for n in 1..=clouddc_instances {
        let extra = if n == 3 {
            ", fail_next_install: true"
        } else {
            ""
        };
        text.push_str(&format!(
            "      - {{id: dc-{n:02}, name: bm-{n}, image: dc-old{extra}}}\n"
        ));
    }
    text
}

fn fast_retries() -> http::RetryPolicy {
    http::RetryPolicy {
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
        max_attempts: 6,
        max_retry_after: Duration::from_millis(5),
    }
}

fn emulated_ecs(running: &RunningEmulator, options: Value) -> HuaweiEcs {
    let endpoint = running.endpoints[&ProviderType::HuaweicloudEcs].clone();
    let mut ecs = HuaweiEcs::with_env(
        &config(
            ProviderType::HuaweicloudEcs,
            Some("cn-north-4"),
            Some("emulator"),
            options,
        ),
        Some(&endpoint),
        keys_env(),
    )
    .unwrap();
    ecs.set_retry_policy(fast_retries());
    ecs
}

fn emulated_clouddc(running: &RunningEmulator) -> HuaweiClouddc {
    let endpoint = running.endpoints[&ProviderType::HuaweicloudClouddc].clone();
    let mut clouddc = HuaweiClouddc::with_env(
        &config(
            ProviderType::HuaweicloudClouddc,
            Some("cn-north-4"),
            Some("emulator"),
            json!({"project_id": PROJECT}),
        ),
        Some(&endpoint),
        keys_env(),
    )
    .unwrap();
    clouddc.set_retry_policy(fast_retries());
    clouddc
}

async fn admin(running: &RunningEmulator, method: &str, path: &str, body: Option<Value>) -> Value {
    let client = reqwest::Client::new();
    let url = format!("{}/{path}", running.admin_url());
    let request = match body {
        Some(body) if method == "POST" => client.post(url).json(&body),
        _ => client.get(url),
    };
    request.send().await.unwrap().json().await.unwrap()
}

fn request(
    server: &str,
    cloud_id: &str,
    image: &str,
    previous: &str,
    access: ResolvedAccess,
    options: Value,
) -> ReinstallRequest {
    ReinstallRequest {
        server: server.into(),
        cloud_id: cloud_id.into(),
        image: image.into(),
        hostname: None,
        user_data: None,
        access,
        options: options.as_object().cloned().unwrap_or_default(),
        token: format!("token-{server}"),
        previous_image: Some(previous.into()),
    }
}

async fn poll_until_done<P: Provider + ?Sized>(
    provider: &P,
    operations: &[crate::provider::Operation],
) -> Vec<OperationStatus> {
    for _ in 0..200 {
        let statuses = provider.poll(operations).await.unwrap();
        if statuses
            .iter()
            .all(|status| !matches!(status, OperationStatus::InProgress { .. }))
        {
            return statuses;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("operations never finished");
}

/// A plan reads every chunk of ids at once: they wait for one project lookup, not one each.
#[tokio::test]
async fn reads_made_together_look_the_project_up_once() {
    let (running, _dir) = emulator(&inventory(0)).await;
    // A slow IAM keeps every lookup in flight while the others begin.
    admin(
        &running,
        "POST",
        "faults",
        Some(json!({"rules": [
            {"provider": "huaweicloud-ecs", "call": "auth", "fault": "latency", "seconds": 0.3}
        ]})),
    )
    .await;
    let ecs = emulated_ecs(&running, json!({}));
    let ids: Vec<String> = vec!["ecs-1".to_string()];
    let reads = (0..8).map(|_| ecs.observe(&ids));
    for observed in futures_util::future::join_all(reads).await {
        assert!(matches!(observed.unwrap()["ecs-1"], Observation::Found(_)));
    }
    let state = admin(&running, "GET", "state", None).await;
    assert_eq!(
        state["faults_fired"]["huaweicloud-ecs"]["auth"]["latency"], 1,
        "{state:#}"
    );
}

#[tokio::test]
async fn ecs_observes_in_batches_resolves_the_project_once_and_survives_a_429_storm() {
    let (running, _dir) = emulator(&inventory(0)).await;
    let ecs = emulated_ecs(&running, json!({}));
    admin(
        &running,
        "POST",
        "faults",
        Some(json!({"huaweicloud": {"status_429_next": 4}})),
    )
    .await;
    let ids: Vec<String> = ["ecs-1", "ecs-4", "unknown-1"]
        .iter()
        .map(|id| id.to_string())
        .collect();
    let observed = ecs.observe(&ids).await.unwrap();
    assert_eq!(observed["unknown-1"], Observation::NotFound);
    let Observation::Found(first) = &observed["ecs-1"] else {
        panic!()
    };
    assert_eq!(first.status, ServerStatus::Running);
    assert_eq!(first.image.as_deref(), Some("img-old"));
    assert_eq!(first.image_name.as_deref(), Some("Old"));
    assert_eq!(first.extra["locked"], "false");
    let Observation::Found(locked) = &observed["ecs-4"] else {
        panic!()
    };
    assert_eq!(locked.extra["locked"], "true");
    assert_eq!(locked.extra["task_state"], "rebooting");
    let state = admin(&running, "GET", "state", None).await;
    assert_eq!(
        state["huaweicloud"]["faults"]["status_429_next"], 0,
        "the storm was retried through"
    );

    // The project id is cached per (IAM, key, region): a second provider needs no IAM call.
    admin(
        &running,
        "POST",
        "faults",
        Some(json!({"huaweicloud": {"status_500_next": 1}})),
    )
    .await;
    let second = emulated_ecs(&running, json!({}));
    assert_eq!(second.client().project_id().await.unwrap(), PROJECT);
    let state = admin(&running, "GET", "state", None).await;
    assert_eq!(
        state["huaweicloud"]["faults"]["status_500_next"], 1,
        "no call was made"
    );
    admin(
        &running,
        "POST",
        "faults",
        Some(json!({"huaweicloud": {"status_500_next": 0}})),
    )
    .await;

    // A region without a project is a clear error.
    let endpoint = running.endpoints[&ProviderType::HuaweicloudEcs].clone();
    let elsewhere = HuaweiEcs::with_env(
        &config(
            ProviderType::HuaweicloudEcs,
            Some("ap-southeast-1"),
            Some("emulator"),
            json!({}),
        ),
        Some(&endpoint),
        keys_env(),
    )
    .unwrap();
    let error = elsewhere.observe(&ids).await.unwrap_err().to_string();
    assert!(
        error.contains("no project named `ap-southeast-1`"),
        "{error}"
    );
}

#[tokio::test]
async fn ecs_changes_the_os_reinstalls_the_same_image_and_reports_failures() {
    let (running, _dir) = emulator(&inventory(0)).await;
    let ecs = emulated_ecs(&running, json!({"project_id": PROJECT}));
    let key = ResolvedAccess::SshKeyId("kp".into());
    let change = ecs
        .reinstall(&request(
            "a",
            "ecs-1",
            "img-new",
            "img-old",
            password_access(),
            json!({}),
        ))
        .await
        .unwrap();
    assert!(change.job_id.is_some() && change.request_id.is_some());
    let same = ecs
        .reinstall(&request(
            "b",
            "ecs-2",
            "img-new",
            "img-new",
            key.clone(),
            json!({"cloud_init": true, "user_id": "u-1"}),
        ))
        .await
        .unwrap();
    let failing = ecs
        .reinstall(&request(
            "c",
            "ecs-3",
            "img-new",
            "img-old",
            key.clone(),
            json!({"user_id": "u-1"}),
        ))
        .await
        .unwrap();
    let statuses = poll_until_done(&ecs, &[change, same, failing]).await;
    assert_eq!(
        statuses[0],
        OperationStatus::Succeeded {
            image: "img-new".into(),
            note: None
        }
    );
    assert_eq!(
        statuses[1],
        OperationStatus::Succeeded {
            image: "img-new".into(),
            note: None
        }
    );
    match &statuses[2] {
        OperationStatus::Failed {
            message,
            request_id,
        } => {
            assert!(
                message.contains("failed (injected by the emulator)"),
                "{message}"
            );
            assert!(message.contains("sub-job"), "{message}");
            assert!(request_id.is_some());
        }
        other => panic!("{other:?}"),
    }
    let state = admin(&running, "GET", "state", None).await;
    let calls = state["huaweicloud"]["ecs"]["calls"].as_array().unwrap();
    let summary: Vec<(String, String, String)> = calls
        .iter()
        .map(|call| {
            (
                call["server_id"].as_str().unwrap().into(),
                call["call"].as_str().unwrap().into(),
                call["version"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("ecs-1".into(), "changeos".into(), "v1".into()),
            ("ecs-2".into(), "reinstallos".into(), "v2".into()),
            ("ecs-3".into(), "changeos".into(), "v1".into()),
        ]
    );
    assert!(calls.iter().all(|call| call["mode"] == "withStopServer"));
    // A locked server is refused by the API too, with its code and request id.
    let error = ecs
        .reinstall(&request(
            "d",
            "ecs-4",
            "img-new",
            "img-old",
            key,
            json!({"user_id": "u-1"}),
        ))
        .await
        .unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains("EMULATOR.ECS.LOCKED") && text.contains("request id"),
        "{text}"
    );
    // An unknown server: Ecs.0114.
    let error = ecs
        .reinstall(&request(
            "e",
            "nope",
            "img-new",
            "img-old",
            password_access(),
            json!({}),
        ))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("Ecs.0114"), "{error}");
    assert!(!error.to_string().contains(PASSWORD));
}

#[tokio::test]
async fn a_succeeded_job_with_the_wrong_image_is_a_failure() {
    let operation = crate::provider::Operation {
        server: "a".into(),
        cloud_id: "ecs-1".into(),
        image: "img-new".into(),
        job_id: Some("j".into()),
        request_id: None,
        started_at_ms: 0,
        previous_image: Some("img-old".into()),
    };
    let (running, _dir) = emulator(&inventory(0)).await;
    let endpoint = running.endpoints[&ProviderType::HuaweicloudEcs].clone();
    let mut settings = config(
        ProviderType::HuaweicloudEcs,
        Some("cn-north-4"),
        Some("emulator"),
        json!({"project_id": PROJECT}),
    );
    // The server may show the new image a little after the job: for `start_grace`.
    settings.config.start_grace = Some(0.5);
    let mut ecs = HuaweiEcs::with_env(&settings, Some(&endpoint), keys_env()).unwrap();
    ecs.set_retry_policy(fast_retries());
    // Make a real job on another server, then check it against this operation's server.
    let job = ecs
        .reinstall(&request(
            "b",
            "ecs-2",
            "img-old",
            "img-new",
            ResolvedAccess::SshKeyId("kp".into()),
            json!({"user_id": "u-1"}),
        ))
        .await
        .unwrap();
    let done = poll_until_done(&ecs, std::slice::from_ref(&job)).await;
    assert!(matches!(done[0], OperationStatus::Succeeded { .. }));
    let mismatched = crate::provider::Operation {
        job_id: job.job_id.clone(),
        ..operation
    };
    let statuses = ecs.poll(std::slice::from_ref(&mismatched)).await.unwrap();
    assert!(
        matches!(&statuses[0], OperationStatus::InProgress { detail } if detail.contains("still reports image img-old")),
        "{statuses:?}"
    );
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    let statuses = ecs.poll(&[mismatched]).await.unwrap();
    assert!(
        matches!(&statuses[0], OperationStatus::Failed { message, .. } if message.contains("reports image img-old")),
        "{statuses:?}"
    );
    let unknown_job = crate::provider::Operation {
        job_id: Some("missing".into()),
        ..job
    };
    let statuses = ecs.poll(&[unknown_job]).await.unwrap();
    assert!(
        matches!(&statuses[0], OperationStatus::Failed { message, .. } if message.contains("EMULATOR.JOB_NOT_FOUND")),
        "{statuses:?}"
    );
}

#[tokio::test]
async fn clouddc_reinstalls_25_servers_in_3_calls_grouped_by_password() {
    let (running, _dir) = emulator(&inventory(27)).await;
    let clouddc = emulated_clouddc(&running);
    let ids: Vec<String> = (1..=27).map(|n| format!("dc-{n:02}")).collect();
    // Pages of 10 are followed by marker.
    let observed = clouddc.observe(&ids).await.unwrap();
    assert_eq!(observed.len(), 27);
    assert!(observed.values().all(|o| matches!(o, Observation::Found(found) if found.status == ServerStatus::Running && found.image.as_deref() == Some("dc-old"))));
    let requests: Vec<ReinstallRequest> = ids[..25]
        .iter()
        .map(|id| request(id, id, "dc-new", "dc-old", password_access(), json!({})))
        .collect();
    let operations: Vec<_> = clouddc
        .reinstall_batch(&requests)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let state = admin(&running, "GET", "state", None).await;
    let sizes: Vec<usize> = state["huaweicloud"]["clouddc"]["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|call| call["instance_ids"].as_array().unwrap().len())
        .collect();
    assert_eq!(sizes, [10, 10, 5]);
    let statuses = poll_until_done(&clouddc, &operations).await;
    for (index, status) in statuses.iter().enumerate() {
        if index == 2 {
            assert!(
                matches!(status, OperationStatus::Failed { message, .. } if message.contains("CLOUDDC.EMULATOR.INSTALL_FAILED")),
                "{status:?}"
            );
        } else {
            assert_eq!(
                status,
                &OperationStatus::Succeeded {
                    image: "dc-new".into(),
                    note: None
                },
                "{index}"
            );
        }
    }

    // Two passwords (and an image) make separate calls; a wrong access fails alone.
    let other = ResolvedAccess::Password(SecretString::from("Other!Pass-2025".to_string()));
    let mixed = vec![
        request(
            "x",
            "dc-26",
            "dc-new",
            "dc-old",
            password_access(),
            json!({}),
        ),
        request("y", "dc-27", "dc-new", "dc-old", other, json!({})),
        request(
            "z",
            "dc-01",
            "dc-new",
            "dc-new",
            ResolvedAccess::SshKeyId("kp".into()),
            json!({}),
        ),
    ];
    let results = clouddc.reinstall_batch(&mixed).await;
    assert!(results[0].is_ok() && results[1].is_ok());
    assert!(
        results[2]
            .as_ref()
            .unwrap_err()
            .to_string()
            .contains("needs a password")
    );
    let state = admin(&running, "GET", "state", None).await;
    let calls = state["huaweicloud"]["clouddc"]["calls"].as_array().unwrap();
    assert_eq!(calls.len(), 5);
    assert_eq!(calls[3]["instance_ids"], json!(["dc-26"]));
    assert_eq!(calls[4]["instance_ids"], json!(["dc-27"]));
    assert!(!state.to_string().contains(PASSWORD));
}

#[tokio::test]
async fn clouddc_refusals_reach_every_request_of_the_call() {
    let (running, _dir) = emulator(&inventory(3)).await;
    let clouddc = emulated_clouddc(&running);
    // dc-03 failed its previous install (made so here): the whole call is refused.
    let first = clouddc
        .reinstall_batch(&[request(
            "c",
            "dc-03",
            "dc-new",
            "dc-old",
            password_access(),
            json!({}),
        )])
        .await;
    let operation = first.into_iter().next().unwrap().unwrap();
    poll_until_done(&clouddc, std::slice::from_ref(&operation)).await;
    let batch = vec![
        request(
            "a",
            "dc-01",
            "dc-new",
            "dc-old",
            password_access(),
            json!({}),
        ),
        request(
            "c",
            "dc-03",
            "dc-new",
            "dc-old",
            password_access(),
            json!({}),
        ),
    ];
    let results = clouddc.reinstall_batch(&batch).await;
    for result in &results {
        let text = result.as_ref().unwrap_err().to_string();
        assert!(
            text.contains("STATE_NOT_RUNNING") && text.contains("request id"),
            "{text}"
        );
        assert!(!text.contains(PASSWORD));
    }
    let observed = clouddc.observe(&["dc-03".to_string()]).await.unwrap();
    let Observation::Found(failed) = &observed["dc-03"] else {
        panic!()
    };
    assert_eq!(failed.status, ServerStatus::InstallFailed);
    assert_eq!(failed.extra["operation_state"], "reinstall-failed");
}

#[tokio::test]
async fn logs_and_errors_hold_no_secrets() {
    let (logs, _guard) = crate::provider::captured_logs::CapturedLogs::start();
    let (running, _dir) = emulator(&inventory(2)).await;
    let ecs = emulated_ecs(&running, json!({"project_id": PROJECT}));
    let clouddc = emulated_clouddc(&running);
    admin(
        &running,
        "POST",
        "faults",
        Some(json!({"huaweicloud": {"status_429_next": 1}})),
    )
    .await;
    ecs.observe(&["ecs-1".to_string()]).await.unwrap();
    ecs.reinstall(&request(
        "a",
        "ecs-1",
        "img-new",
        "img-old",
        password_access(),
        json!({}),
    ))
    .await
    .unwrap();
    clouddc
        .reinstall_batch(&[request(
            "b",
            "dc-01",
            "dc-new",
            "dc-old",
            password_access(),
            json!({}),
        )])
        .await;
    let weak = ResolvedAccess::Password(SecretString::from("weakcanary".to_string()));
    let error = clouddc
        .reinstall_batch(&[request("b", "dc-02", "dc-new", "dc-old", weak, json!({}))])
        .await;
    let error_text = format!("{:?}", error);
    let text = logs.text();
    assert!(text.contains("retrying"), "{text}");
    for secret in [SK, PASSWORD, "weakcanary", "Signature="] {
        assert!(
            !text.contains(secret),
            "{secret} leaked into the logs: {text}"
        );
        assert!(
            !error_text.contains(secret),
            "{secret} leaked into an error: {error_text}"
        );
    }
    assert!(!format!("{ecs:?}").contains(SK));
}
