//! JD Cloud CPS OpenAPI messages, built and parsed from the brief (`shared/providers/jdcloud.md`).
//! Deliberately not shared with the emulator: a misreading shared by both sides would pass every
//! test unseen.

use base64::Engine as _;
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value, json};

use crate::provider::http::RawResponse;
use crate::provider::response::{failure_message, is_retryable_status, non_json_message};
use crate::provider::sign::jdcloud as sign;
use crate::provider::{ProviderError, ServerStatus};

/// The service name in the signing scope.
pub const SERVICE: &str = "cps";
/// The single global host; the region is a path segment (brief §1).
pub const DEFAULT_ENDPOINT: &str = "https://cps.jdcloud-api.com";
/// Sent and signed as is.
pub const CONTENT_TYPE: &str = "application/json";
/// Ids per `describeInstances` call: the page size limit (brief §4.2, batch size unconfirmed).
pub const MAX_IDS_PER_CALL: usize = 100;
pub const PAGE_SIZE: u32 = 100;
/// `clientToken` is at most 36 characters (brief §0.7).
pub const CLIENT_TOKEN_LENGTH: usize = 32;

pub const DESCRIBE_INSTANCES: &str = "describeInstances";
pub const DESCRIBE_OS: &str = "describeOS";
pub const STOP_INSTANCE: &str = "stopInstance";
pub const REINSTALL_INSTANCE: &str = "reinstallInstance";

/// An access key pair. The secret stays wrapped; `Debug` prints it redacted.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub access_key: String,
    pub secret_key: SecretString,
}

/// One API call before signing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiCall {
    /// The API's name for it, for messages.
    pub action: &'static str,
    pub method: Method,
    /// Below the endpoint, e.g. `/v1/regions/cn-east-1/instances/cps-1%3AstopInstance`.
    pub path: String,
    /// Already encoded, in sending order.
    pub query: String,
    pub body: Vec<u8>,
}

fn region_path(region: &str) -> String {
    format!("/v1/regions/{}", sign::encode(region, false))
}

/// `{instance}:{action}`; the colon is sent as `%3A` like the Go SDK does (the Python SDK sends
/// it literally; the gateway canonicalises the decoded path either way).
fn action_path(region: &str, instance_id: &str, action: &str) -> String {
    format!(
        "{}/instances/{}%3A{action}",
        region_path(region),
        sign::encode(instance_id, false)
    )
}

fn query_string(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(name, value)| {
            format!(
                "{}={}",
                sign::encode(name, false),
                sign::encode(value, false)
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// `GET /v1/regions/{region}/instances` filtered by instance id (brief §4.2).
pub fn describe_instances(region: &str, ids: &[String], page_number: u32) -> ApiCall {
    let mut pairs = vec![
        ("pageNumber".to_string(), page_number.to_string()),
        ("pageSize".to_string(), PAGE_SIZE.to_string()),
        ("filters.1.name".to_string(), "instanceId".to_string()),
    ];
    for (index, id) in ids.iter().enumerate() {
        pairs.push((format!("filters.1.values.{}", index + 1), id.clone()));
    }
    ApiCall {
        action: DESCRIBE_INSTANCES,
        method: Method::GET,
        path: format!("{}/instances", region_path(region)),
        query: query_string(&pairs),
        body: Vec::new(),
    }
}

/// `GET /v1/regions/{region}/os?deviceType=…` (brief §4.4).
pub fn describe_os(region: &str, device_type: Option<&str>) -> ApiCall {
    let pairs: Vec<(String, String)> = device_type
        .map(|device_type| ("deviceType".to_string(), device_type.to_string()))
        .into_iter()
        .collect();
    ApiCall {
        action: DESCRIBE_OS,
        method: Method::GET,
        path: format!("{}/os", region_path(region)),
        query: query_string(&pairs),
        body: Vec::new(),
    }
}

/// `PUT …/instances/{id}:stopInstance` with its idempotency token (brief §5).
pub fn stop_instance(region: &str, instance_id: &str, client_token: &str) -> ApiCall {
    ApiCall {
        action: STOP_INSTANCE,
        method: Method::PUT,
        path: action_path(region, instance_id, STOP_INSTANCE),
        query: String::new(),
        body: json!({ "clientToken": client_token })
            .to_string()
            .into_bytes(),
    }
}

/// `instanceSpec` of `reinstallInstance` (brief §6). The storage layout is repeated as observed
/// unless the manifest changes it.
#[derive(Debug, Clone)]
pub struct InstanceSpec<'a> {
    pub az: &'a str,
    /// `standard` or `standard_app`, lower case as the request docs write it.
    pub image_type: &'a str,
    pub os_type_id: &'a str,
    pub sys_raid_type_id: &'a str,
    pub data_raid_type_id: Option<&'a str>,
    /// `false` wipes the data disks; only ever from an explicit `keep_data: false`.
    pub keep_data: bool,
    pub password: &'a SecretString,
    pub hostname: Option<&'a str>,
    /// The script as written; base64-encoded here for the wire.
    pub user_data: Option<&'a str>,
    pub keypair_id: Option<&'a str>,
}

/// `PUT …/instances/{id}:reinstallInstance`. The body is serialised once: these bytes are
/// signed and sent.
pub fn reinstall_instance(
    region: &str,
    instance_id: &str,
    client_token: &str,
    spec: &InstanceSpec<'_>,
) -> ApiCall {
    let mut instance_spec = Map::new();
    instance_spec.insert("az".into(), Value::from(spec.az));
    instance_spec.insert("imageType".into(), Value::from(spec.image_type));
    instance_spec.insert("osTypeId".into(), Value::from(spec.os_type_id));
    instance_spec.insert("sysRaidTypeId".into(), Value::from(spec.sys_raid_type_id));
    if let Some(data_raid_type_id) = spec.data_raid_type_id {
        instance_spec.insert("dataRaidTypeId".into(), Value::from(data_raid_type_id));
    }
    instance_spec.insert(
        "keepData".into(),
        Value::from(if spec.keep_data { "yes" } else { "no" }),
    );
    // The only place the password leaves its wrapper: into the body that is signed and sent.
    instance_spec.insert(
        "password".into(),
        Value::from(spec.password.expose_secret().to_string()),
    );
    if let Some(hostname) = spec.hostname {
        instance_spec.insert("hostname".into(), Value::from(hostname));
    }
    if let Some(user_data) = spec.user_data {
        instance_spec.insert(
            "userData".into(),
            Value::from(base64::engine::general_purpose::STANDARD.encode(user_data)),
        );
    }
    if let Some(keypair_id) = spec.keypair_id {
        instance_spec.insert("keypairId".into(), Value::from(keypair_id));
    }
    let body = json!({
        "clientToken": client_token,
        "instanceSpec": Value::Object(instance_spec),
    });
    ApiCall {
        action: REINSTALL_INSTANCE,
        method: Method::PUT,
        path: action_path(region, instance_id, REINSTALL_INSTANCE),
        query: String::new(),
        body: body.to_string().into_bytes(),
    }
}

/// The idempotency token of one step: deterministic in (the engine's per-plan step token,
/// instance id, step), 32 hex characters (≤ 36 allowed). The engine's token already derives
/// from (plan id, server, step); mixing in the instance id keeps two servers apart even if a
/// manifest renamed one.
pub fn client_token(step_token: &str, instance_id: &str, step: &str) -> String {
    let digest = crate::digest::sha256_hex(
        format!("reimage/jdcloud-cps/{step_token}/{instance_id}/{step}").as_bytes(),
    );
    digest[..CLIENT_TOKEN_LENGTH].to_string()
}

/// Every header of one call, in sending order (`host` is written by the HTTP client from the
/// URL and must equal `host` here, since it is signed).
pub fn signed_headers(
    credentials: &Credentials,
    region: &str,
    host: &str,
    full_path: &str,
    call: &ApiCall,
    datetime: &str,
    nonce: &str,
) -> Vec<(&'static str, String)> {
    let to_sign = [
        ("content-type", CONTENT_TYPE),
        ("host", host),
        (sign::DATE_HEADER, datetime),
        (sign::NONCE_HEADER, nonce),
    ];
    let authorization = sign::authorization(
        &sign::Scope {
            version: sign::Version::V2,
            datetime,
            region,
            service: SERVICE,
        },
        &credentials.access_key,
        credentials.secret_key.expose_secret(),
        &sign::Request {
            method: call.method.as_str(),
            path: full_path,
            query: &call.query,
            headers: &to_sign,
            body: &call.body,
        },
    );
    vec![
        ("content-type", CONTENT_TYPE.to_string()),
        (sign::DATE_HEADER, datetime.to_string()),
        (sign::NONCE_HEADER, nonce.to_string()),
        ("authorization", authorization),
    ]
}

/// A successful answer: the request id and the `result` object.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    pub request_id: Option<String>,
    pub result: Map<String, Value>,
}

/// Words by which an operation-protection (MFA) refusal is recognised. The exact error is
/// unconfirmed (brief §0.6); the docs say sensitive calls then need an MFA-backed
/// `x-jdcloud-security-token`.
const OPERATION_PROTECTION_MARKERS: [&str; 5] = [
    "mfa",
    "operation protection",
    "operationprotection",
    "操作保护",
    "二次验证",
];

/// Whether an error is JD's operation protection asking for MFA.
pub fn is_operation_protection(code: Option<&str>, message: &str) -> bool {
    let text = format!("{} {}", code.unwrap_or_default(), message).to_lowercase();
    OPERATION_PROTECTION_MARKERS
        .iter()
        .any(|marker| text.contains(marker))
}

/// Turns an HTTP response into the call's `result` or a typed error. Tolerates missing fields
/// and non-JSON bodies (gateways answer with HTML).
pub fn parse_envelope(
    provider: &str,
    action: &str,
    response: RawResponse,
) -> Result<Envelope, ProviderError> {
    let status = response.status;
    let header_request_id = response
        .headers
        .get("x-jdcloud-request-id")
        .and_then(|value| value.to_str().ok())
        .map(str::to_string);
    let api_error =
        |code: Option<String>, message: String, request_id: Option<String>| ProviderError::Api {
            provider: provider.to_string(),
            status: Some(status.as_u16()),
            retryable: is_retryable(status, code.as_deref()),
            code,
            message,
            request_id,
        };
    let parsed: Option<Map<String, Value>> = serde_json::from_slice(&response.body).ok();
    let Some(object) = parsed else {
        return Err(api_error(
            None,
            non_json_message(action, &response),
            header_request_id,
        ));
    };
    let request_id = object
        .get("requestId")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or(header_request_id);
    let error = object.get("error").filter(|error| !error.is_null());
    if status.is_success()
        && error.is_none()
        && let Some(result) = object.get("result").and_then(Value::as_object)
    {
        return Ok(Envelope {
            request_id,
            result: result.clone(),
        });
    }
    let text = |key: &str| {
        error
            .and_then(|error| error.get(key))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let code = text("status");
    let message = failure_message(
        action,
        code.as_deref(),
        text("message"),
        "result",
        &response,
    );
    Err(api_error(code, message, request_id))
}

fn is_retryable(status: StatusCode, code: Option<&str>) -> bool {
    is_retryable_status(status) || code == Some("RESOURCE_EXHAUSTED")
}

/// One instance as `describeInstances` reports it (only the fields reimage uses).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InstanceInfo {
    pub instance_id: String,
    pub status: String,
    pub os_type_id: Option<String>,
    pub os_name: Option<String>,
    pub az: Option<String>,
    pub device_type: Option<String>,
    pub image_type: Option<String>,
    pub sys_raid_type_id: Option<String>,
    pub data_raid_type_id: Option<String>,
    pub name: Option<String>,
    /// `publicIp`, else `privateIp`.
    pub address: Option<String>,
}

/// One page of `describeInstances`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstancesPage {
    /// `None` when the answer leaves it out; paging then stops.
    pub total_count: Option<u64>,
    /// Entries, including any without an `instanceId` (counted for paging, then ignored).
    pub entries: usize,
    pub instances: Vec<InstanceInfo>,
}

fn text_field(entry: &Value, key: &str) -> Option<String> {
    entry
        .get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|value| !value.is_empty())
        .map(str::to_string)
}

pub fn parse_instances_page(result: &Map<String, Value>) -> InstancesPage {
    let entries = result
        .get("instances")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let instances = entries
        .iter()
        .filter_map(|entry| {
            Some(InstanceInfo {
                instance_id: text_field(entry, "instanceId")?,
                status: text_field(entry, "status").unwrap_or_default(),
                os_type_id: text_field(entry, "osTypeId"),
                os_name: text_field(entry, "osName"),
                az: text_field(entry, "az"),
                device_type: text_field(entry, "deviceType"),
                image_type: text_field(entry, "imageType"),
                sys_raid_type_id: text_field(entry, "sysRaidTypeId"),
                data_raid_type_id: text_field(entry, "dataRaidTypeId"),
                name: text_field(entry, "name"),
                address: text_field(entry, "publicIp").or_else(|| text_field(entry, "privateIp")),
            })
        })
        .collect();
    InstancesPage {
        total_count: result.get("totalCount").and_then(Value::as_u64),
        entries: entries.len(),
        instances,
    }
}

/// One entry of `describeOS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OsInfo {
    pub os_type_id: String,
    pub os_name: Option<String>,
    pub device_type: Option<String>,
}

pub fn parse_os_list(result: &Map<String, Value>) -> Vec<OsInfo> {
    result
        .get("oss")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(|entry| {
            Some(OsInfo {
                os_type_id: text_field(entry, "osTypeId")?,
                os_name: text_field(entry, "osName"),
                device_type: text_field(entry, "deviceType"),
            })
        })
        .collect()
}

/// JD's status word → the normalised status (brief §4.3). Only `running`, `stopped` and
/// `error` are confirmed; the rest are the likely lifecycle words, and any other word reads as
/// busy, so no reinstall starts from a state reimage does not understand.
pub fn map_status(raw: &str) -> ServerStatus {
    match raw.to_ascii_lowercase().as_str() {
        "running" => ServerStatus::Running,
        "stopped" => ServerStatus::Stopped,
        "installing" | "reinstalling" => ServerStatus::Installing,
        // A server in `error` needs JD's attention before anything else (brief §4.3).
        "error" => ServerStatus::InstallFailed,
        "destroying" | "destroyed" | "deleted" => ServerStatus::Gone,
        _ => ServerStatus::Busy,
    }
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;

    use super::*;
    use crate::provider::response::testing::{api_error, response};

    #[test]
    fn status_words() {
        for (raw, expected) in [
            ("running", ServerStatus::Running),
            ("Running", ServerStatus::Running),
            ("stopped", ServerStatus::Stopped),
            ("installing", ServerStatus::Installing),
            ("reinstalling", ServerStatus::Installing),
            ("error", ServerStatus::InstallFailed),
            ("destroyed", ServerStatus::Gone),
            ("stopping", ServerStatus::Busy),
            ("starting", ServerStatus::Busy),
            ("resetting_password", ServerStatus::Busy),
            ("melting", ServerStatus::Busy),
            ("", ServerStatus::Busy),
        ] {
            assert_eq!(map_status(raw), expected, "{raw}");
        }
    }

    #[test]
    fn success_envelope() {
        let envelope = parse_envelope(
            "jd",
            DESCRIBE_INSTANCES,
            response(200, r#"{"requestId":"r1","result":{"totalCount":0}}"#),
        )
        .unwrap();
        assert_eq!(envelope.request_id.as_deref(), Some("r1"));
        assert_eq!(envelope.result["totalCount"], 0);
        // The request id from the header when the body has none.
        let mut with_header = response(200, r#"{"result":{}}"#);
        with_header
            .headers
            .insert("x-jdcloud-request-id", HeaderValue::from_static("r2"));
        let envelope = parse_envelope("jd", DESCRIBE_INSTANCES, with_header).unwrap();
        assert_eq!(envelope.request_id.as_deref(), Some("r2"));
    }

    #[test]
    fn error_envelope_carries_status_word_message_and_request_id() {
        let (status, code, message, request_id, retryable) = api_error(parse_envelope(
            "jd",
            REINSTALL_INSTANCE,
            response(
                400,
                r#"{"requestId":"r9","error":{"code":400,"status":"FAILED_PRECONDITION","message":"instance is running"}}"#,
            ),
        ));
        assert_eq!(status, Some(400));
        assert_eq!(code.as_deref(), Some("FAILED_PRECONDITION"));
        assert!(message.contains("instance is running"), "{message}");
        assert_eq!(request_id.as_deref(), Some("r9"));
        assert!(!retryable);
        for (status, body) in [
            (429, "{}"),
            (503, "<html>busy</html>"),
            (
                400,
                r#"{"error":{"code":400,"status":"RESOURCE_EXHAUSTED","message":"slow"}}"#,
            ),
        ] {
            let (.., retryable) = api_error(parse_envelope(
                "jd",
                DESCRIBE_INSTANCES,
                response(status, body),
            ));
            assert!(retryable, "{status} {body}");
        }
        // An error object with HTTP 200 is still an error.
        let (_, code, ..) = api_error(parse_envelope(
            "jd",
            DESCRIBE_INSTANCES,
            response(
                200,
                r#"{"error":{"status":"NOT_FOUND","message":"no"},"result":{}}"#,
            ),
        ));
        assert_eq!(code.as_deref(), Some("NOT_FOUND"));
        let (_, _, message, ..) = api_error(parse_envelope(
            "jd",
            DESCRIBE_INSTANCES,
            response(200, r#"{"requestId":"x"}"#),
        ));
        assert!(message.contains("no `result`"), "{message}");
    }

    #[test]
    fn operation_protection_is_recognised() {
        assert!(is_operation_protection(
            Some("PERMISSION_DENIED"),
            "MFA authentication required"
        ));
        assert!(is_operation_protection(
            None,
            "Operation protection is enabled"
        ));
        assert!(is_operation_protection(None, "该操作已开启操作保护"));
        assert!(!is_operation_protection(
            Some("PERMISSION_DENIED"),
            "no permission"
        ));
    }

    #[test]
    fn pages_and_os_lists_tolerate_missing_fields() {
        let result: Map<String, Value> = serde_json::from_str(
            r#"{"totalCount": 3, "instances": [
                {"instanceId": "cps-1", "status": "running", "osTypeId": "os-a", "az": "cn-east-1a",
                 "sysRaidTypeId": "r1", "dataRaidTypeId": "", "deviceType": "cps.c.normal"},
                {"instanceId": "cps-2", "status": "stopped", "osTypeId": null},
                {"status": "running"}
            ]}"#,
        )
        .unwrap();
        let page = parse_instances_page(&result);
        assert_eq!((page.total_count, page.entries), (Some(3), 3));
        assert_eq!(page.instances.len(), 2);
        assert_eq!(page.instances[0].data_raid_type_id, None);
        assert_eq!(page.instances[1].os_type_id, None);
        assert_eq!(parse_instances_page(&Map::new()).entries, 0);
        let oss: Map<String, Value> = serde_json::from_str(
            r#"{"oss": [{"osTypeId": "os-a", "osName": "CentOS 7.9"}, {"osName": "no id"}]}"#,
        )
        .unwrap();
        assert_eq!(parse_os_list(&oss).len(), 1);
    }

    #[test]
    fn client_tokens_are_deterministic_and_distinct_per_step_and_instance() {
        let a = client_token("t", "cps-1", "reinstall");
        assert_eq!(a, client_token("t", "cps-1", "reinstall"));
        assert_eq!(a.len(), 32);
        assert_ne!(a, client_token("t", "cps-1", "stop"));
        assert_ne!(a, client_token("t", "cps-2", "reinstall"));
        assert_ne!(a, client_token("u", "cps-1", "reinstall"));
    }

    #[test]
    fn instance_ids_cannot_escape_their_path_segment() {
        let call = stop_instance("cn-east-1", "../x?y", "t");
        assert_eq!(
            call.path,
            "/v1/regions/cn-east-1/instances/..%2Fx%3Fy%3AstopInstance"
        );
    }
}
