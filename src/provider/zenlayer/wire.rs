//! Zenlayer Cloud API 2.0 messages for the `bmc` service, built and parsed from the brief
//! (`shared/providers/zenlayer.md`). Deliberately not shared with the emulator: a misreading
//! shared by both sides would pass every test unseen.

use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value, json};

use crate::provider::http::RawResponse;
use crate::provider::response::{failure_message, is_retryable_status, non_json_message};
use crate::provider::sign::zc2;
use crate::provider::{ProviderError, ResolvedAccess, ServerStatus};

/// The service name in the URL path and the `X-ZC-Service` header.
pub const SERVICE: &str = "bmc";
/// Sent and signed as is: the signature covers this exact value.
pub const CONTENT_TYPE: &str = "application/json";
/// Free text identifying the caller (Go SDK: ≤128 chars of `[0-9a-zA-Z-_ ,;.]`).
pub const REQUEST_CLIENT: &str = "reimage";
/// The single global endpoint; there are no regional hosts.
pub const DEFAULT_ENDPOINT: &str = "https://console.zenlayer.com/api/v2/bmc";
/// The path of the `bmc` service under a bare domain.
pub const SERVICE_PATH: &str = "/api/v2/bmc";
/// `DescribeInstances` accepts at most this many `instanceIds`.
pub const MAX_IDS_PER_CALL: usize = 100;
/// Page size asked for; with at most 100 ids one page normally holds everything.
pub const PAGE_SIZE: u32 = 100;

pub const DESCRIBE_INSTANCES: &str = "DescribeInstances";
pub const REINSTALL_INSTANCE: &str = "ReinstallInstance";

/// Code of a refused reinstall because one is already running (upper-snake form inferred by
/// the brief from the Go SDK's dotted `Operation.Denied.Instance.Status.Installing`).
pub const CODE_INSTALLING: &str = "OPERATION_DENIED_INSTANCE_STATUS_INSTALLING";
pub const CODE_RATE_LIMITED: &str = "REQUEST_LIMIT_EXCEEDED";

/// The `X-ZC-Version` of the `bmc` API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiVersion {
    /// Used by the Terraform provider; marked deprecated by the SDKs, but known to be served.
    V20221120,
    /// The current SDKs' version; its availability on the live endpoint is unconfirmed.
    V20260201,
}

impl ApiVersion {
    pub const ALLOWED: [&str; 2] = ["2022-11-20", "2026-02-01"];

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "2022-11-20" => Some(Self::V20221120),
            "2026-02-01" => Some(Self::V20260201),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::V20221120 => "2022-11-20",
            Self::V20260201 => "2026-02-01",
        }
    }
}

/// How requests are authenticated. Secrets stay wrapped; `Debug` prints them redacted.
#[derive(Debug, Clone)]
pub enum Credentials {
    /// ZC2-HMAC-SHA256 signing with an access key.
    AccessKey { id: String, password: SecretString },
    /// A personal access token sent as `Authorization: Bearer …`, without signature headers.
    Token(SecretString),
}

/// Every header of one request, in sending order, for the given body bytes.
/// `host` must be exactly the `Host` header the HTTP client sends (host, plus `:port` when it is
/// not the scheme's default), because the signature covers it.
pub fn request_headers(
    credentials: &Credentials,
    api_version: ApiVersion,
    action: &str,
    host: &str,
    unix_seconds: i64,
    body: &[u8],
) -> Vec<(&'static str, String)> {
    let mut headers = vec![
        ("content-type", CONTENT_TYPE.to_string()),
        ("x-zc-action", action.to_string()),
        ("x-zc-version", api_version.as_str().to_string()),
        ("x-zc-service", SERVICE.to_string()),
        ("x-zc-request-client", REQUEST_CLIENT.to_string()),
    ];
    match credentials {
        Credentials::AccessKey { id, password } => {
            let timestamp = unix_seconds.to_string();
            let authorization = zc2::authorization(
                id,
                password.expose_secret(),
                &timestamp,
                CONTENT_TYPE,
                host,
                body,
            );
            headers.push(("x-zc-timestamp", timestamp));
            headers.push(("x-zc-signature-method", zc2::ALGORITHM.to_string()));
            headers.push(("authorization", authorization));
        }
        Credentials::Token(token) => {
            headers.push(("authorization", format!("Bearer {}", token.expose_secret())));
        }
    }
    headers
}

/// The `DescribeInstances` body for one chunk of ids (at most [`MAX_IDS_PER_CALL`]).
pub fn describe_instances_body(ids: &[String], page_num: u32, page_size: u32) -> Vec<u8> {
    let body = json!({
        "instanceIds": ids,
        "pageNum": page_num,
        "pageSize": page_size,
    });
    body.to_string().into_bytes()
}

/// Why a reinstall body could not be built. Never contains a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyError {
    pub message: String,
    pub help: String,
}

/// What goes into one `ReinstallInstance` call.
pub struct ReinstallInput<'a> {
    pub cloud_id: &'a str,
    pub image: &'a str,
    pub hostname: Option<&'a str>,
    pub user_data: Option<&'a str>,
    pub access: &'a ResolvedAccess,
    pub options: &'a Map<String, Value>,
}

/// The `ReinstallInstance` body, serialised once: these bytes are signed and sent.
/// Options must have passed [`super::validate::option_issues`]; anything else is refused here
/// too rather than guessed.
pub fn reinstall_body(input: &ReinstallInput<'_>) -> Result<Vec<u8>, BodyError> {
    if input.image.trim().is_empty() {
        return Err(BodyError {
            message: format!(
                "refusing to reinstall `{}` without an image id",
                input.cloud_id
            ),
            help: "Zenlayer reinstalls the image already on the machine when `imageId` is \
                   omitted; set `os.image` for this server"
                .to_string(),
        });
    }
    let mut body = Map::new();
    body.insert("instanceId".into(), Value::from(input.cloud_id));
    // Always explicit: an omitted imageId silently reinstalls the current image.
    body.insert("imageId".into(), Value::from(input.image));
    if let Some(hostname) = input.hostname {
        body.insert("hostname".into(), Value::from(hostname));
    }
    match input.access {
        ResolvedAccess::Password(password) => {
            // The only place the password leaves its wrapper: into the body that is signed and
            // sent. Zenlayer also makes it the machine's IPMI password.
            body.insert(
                "password".into(),
                Value::from(password.expose_secret().to_string()),
            );
        }
        ResolvedAccess::SshKeyId(key_id) => {
            body.insert("keyId".into(), Value::from(key_id.as_str()));
        }
        ResolvedAccess::None => {
            return Err(BodyError {
                message: format!(
                    "refusing to reinstall `{}` without a password or SSH key pair id",
                    input.cloud_id
                ),
                help: "Zenlayer takes exactly one of `password` and `keyId`; set \
                       `access.password` or `access.ssh_key_id` for this server"
                    .to_string(),
            });
        }
    }
    if let Some(user_data) = input.user_data {
        // The brief leaves the encoding unconfirmed (plain text vs base64). The docs describe
        // the field as the script text itself, so it is sent unchanged; if Zenlayer turns out
        // to expect base64, this is the one line to change.
        body.insert("userData".into(), Value::from(user_data));
    }
    for (key, value) in install_options(input.options)? {
        body.insert(key.into(), value);
    }
    Ok(Value::Object(body).to_string().into_bytes())
}

/// Provider options → `raidConfig`, `partitions`, `nic`, in that order.
fn install_options(options: &Map<String, Value>) -> Result<Vec<(&'static str, Value)>, BodyError> {
    let invalid = |key: &str, why: &str| BodyError {
        message: format!("option `{key}` {why}"),
        help: "run `reimage validate` to see every problem with this server's options".into(),
    };
    for key in options.keys() {
        if !super::validate::OPTION_KEYS.contains(&key.as_str()) {
            return Err(invalid(key, "is not a Zenlayer option"));
        }
    }
    let mut fields = Vec::new();
    if let Some(raid) = options.get("raid_type") {
        let raid_type = raid
            .as_u64()
            .filter(|value| [0, 1, 5, 10].contains(value))
            .ok_or_else(|| invalid("raid_type", "must be 0, 1, 5 or 10"))?;
        fields.push(("raidConfig", json!({ "raidType": raid_type })));
    }
    if let Some(partitions) = options.get("partitions") {
        let list = partitions
            .as_array()
            .ok_or_else(|| invalid("partitions", "must be a list"))?;
        let mut converted = Vec::with_capacity(list.len());
        for partition in list {
            let fs_path = partition.get("fs_path").and_then(Value::as_str);
            let fs_type = partition.get("fs_type").and_then(Value::as_str);
            let size = partition.get("size").and_then(Value::as_u64);
            match (fs_path, fs_type, size) {
                (Some(fs_path), Some(fs_type), Some(size)) => converted.push(json!({
                    "fsPath": fs_path,
                    "fsType": fs_type,
                    "size": size,
                })),
                _ => {
                    return Err(invalid(
                        "partitions",
                        "entries need `fs_path`, `fs_type` and an integer `size`",
                    ));
                }
            }
        }
        fields.push(("partitions", Value::Array(converted)));
    }
    if let Some(nic) = options.get("nic") {
        let wan_name = nic.get("wan_name").and_then(Value::as_str);
        let lan_name = nic.get("lan_name").and_then(Value::as_str);
        match (wan_name, lan_name) {
            (Some(wan_name), Some(lan_name)) => {
                fields.push(("nic", json!({ "wanName": wan_name, "lanName": lan_name })))
            }
            _ => return Err(invalid("nic", "needs `wan_name` and `lan_name`")),
        }
    }
    Ok(fields)
}

/// A successful response: the request id and the action's `response` object.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    pub request_id: Option<String>,
    pub response: Map<String, Value>,
}

/// Turns an HTTP response into the action's result or a typed error. Tolerates missing fields
/// and non-JSON bodies (proxies and edges answer with HTML).
pub fn parse_envelope(
    provider: &str,
    action: &str,
    response: RawResponse,
) -> Result<Envelope, ProviderError> {
    let status = response.status;
    let api_error = |code: Option<String>,
                     message: String,
                     request_id: Option<String>,
                     retryable: bool| ProviderError::Api {
        provider: provider.to_string(),
        status: Some(status.as_u16()),
        code,
        message,
        request_id,
        retryable,
    };

    if status == StatusCode::FORBIDDEN
        && response
            .headers
            .get("cf-mitigated")
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.eq_ignore_ascii_case("challenge"))
    {
        return Err(api_error(
            None,
            format!(
                "{action}: Zenlayer's network edge answered with a browser challenge \
                 (HTTP 403, cf-mitigated: challenge); the request never reached the API. \
                 Try again later or from another network, or ask Zenlayer support to allow \
                 this client's address"
            ),
            None,
            false,
        ));
    }
    if status == StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS {
        return Err(api_error(
            None,
            format!(
                "{action}: blocked by Zenlayer's security policy (HTTP 451); contact Zenlayer \
                 support with this client's address"
            ),
            None,
            false,
        ));
    }

    let parsed: Option<Map<String, Value>> = serde_json::from_slice(&response.body).ok();
    let Some(object) = parsed else {
        let retryable = is_retryable_status(status);
        return Err(api_error(
            None,
            non_json_message(action, &response),
            None,
            retryable,
        ));
    };
    let text = |key: &str| object.get(key).and_then(Value::as_str).map(str::to_string);
    let inner = object.get("response").and_then(Value::as_object);
    let request_id = text("requestId").or_else(|| {
        inner
            .and_then(|inner| inner.get("requestId"))
            .and_then(Value::as_str)
            .map(str::to_string)
    });
    let code = text("code");

    if status.is_success()
        && code.is_none()
        && let Some(inner) = inner
    {
        return Ok(Envelope {
            request_id,
            response: inner.clone(),
        });
    }

    let retryable = is_retryable_status(status) || code.as_deref() == Some(CODE_RATE_LIMITED);
    let message = failure_message(
        action,
        code.as_deref(),
        text("message"),
        "response",
        &response,
    );
    Err(api_error(code, message, request_id, retryable))
}

/// One instance as `DescribeInstances` reports it (only the fields reimage uses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceInfo {
    pub instance_id: String,
    pub instance_status: String,
    pub image_id: Option<String>,
    pub image_name: Option<String>,
    pub hostname: Option<String>,
    /// `primaryPublicIpAddress`, else the first public, else the first private address.
    pub address: Option<String>,
}

/// One page of `DescribeInstances`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstancesPage {
    /// `None` when the answer leaves it out; the caller then stops paging.
    pub total_count: Option<u64>,
    /// Entries, including any without an `instanceId` (counted for paging, then ignored).
    pub entries: usize,
    pub instances: Vec<InstanceInfo>,
}

pub fn parse_instances_page(response: &Map<String, Value>) -> InstancesPage {
    let entries = response
        .get("dataSet")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let text = |entry: &Value, key: &str| {
        entry
            .get(key)
            .and_then(Value::as_str)
            .filter(|value| !value.is_empty())
            .map(str::to_string)
    };
    let instances = entries
        .iter()
        .filter_map(|entry| {
            Some(InstanceInfo {
                instance_id: text(entry, "instanceId")?,
                instance_status: text(entry, "instanceStatus").unwrap_or_default(),
                image_id: text(entry, "imageId"),
                image_name: text(entry, "imageName"),
                hostname: text(entry, "hostname"),
                address: text(entry, "primaryPublicIpAddress").or_else(|| {
                    ["publicIpAddresses", "privateIpAddresses"]
                        .iter()
                        .find_map(|key| {
                            entry.get(*key)?.as_array()?.iter().find_map(|address| {
                                address
                                    .as_str()
                                    .filter(|text| !text.is_empty())
                                    .map(str::to_string)
                            })
                        })
                }),
            })
        })
        .collect();
    InstancesPage {
        total_count: response.get("totalCount").and_then(Value::as_u64),
        entries: entries.len(),
        instances,
    }
}

/// Zenlayer's status word → the normalised status (case-insensitive: the docs write
/// `Running` where the API says `RUNNING`).
pub fn map_status(raw: &str) -> ServerStatus {
    match raw.to_ascii_uppercase().as_str() {
        "RUNNING" => ServerStatus::Running,
        "STOPPED" => ServerStatus::Stopped,
        "INSTALLING" => ServerStatus::Installing,
        "INSTALL_FAILED" => ServerStatus::InstallFailed,
        "RECYCLE" | "RECYCLING" => ServerStatus::Gone,
        // CREATE_FAILED is Busy rather than failed-install: no reinstall can start from it and
        // it is not an install reimage started.
        "PENDING" | "CREATING" | "BOOTING" | "STOPPING" | "CREATE_FAILED" => ServerStatus::Busy,
        _ => ServerStatus::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;

    use super::*;
    use crate::provider::response::testing::{api_error, response};

    #[test]
    fn status_words_map_case_insensitively() {
        let cases = [
            ("RUNNING", ServerStatus::Running),
            ("Running", ServerStatus::Running),
            ("STOPPED", ServerStatus::Stopped),
            ("INSTALLING", ServerStatus::Installing),
            ("install_failed", ServerStatus::InstallFailed),
            ("RECYCLE", ServerStatus::Gone),
            ("RECYCLING", ServerStatus::Gone),
            ("PENDING", ServerStatus::Busy),
            ("CREATING", ServerStatus::Busy),
            ("BOOTING", ServerStatus::Busy),
            ("STOPPING", ServerStatus::Busy),
            ("CREATE_FAILED", ServerStatus::Busy),
            ("MELTING", ServerStatus::Unknown),
            ("", ServerStatus::Unknown),
        ];
        for (raw, expected) in cases {
            assert_eq!(map_status(raw), expected, "{raw}");
        }
    }

    #[test]
    fn success_envelope_gives_the_response_and_request_id() {
        let envelope = parse_envelope(
            "zl",
            DESCRIBE_INSTANCES,
            response(
                200,
                r#"{"requestId":"T1","response":{"requestId":"T1","totalCount":0}}"#,
            ),
        )
        .unwrap();
        assert_eq!(envelope.request_id.as_deref(), Some("T1"));
        assert_eq!(envelope.response["totalCount"], 0);

        // Only the inner request id: still found.
        let envelope = parse_envelope(
            "zl",
            DESCRIBE_INSTANCES,
            response(200, r#"{"response":{"requestId":"T2"}}"#),
        )
        .unwrap();
        assert_eq!(envelope.request_id.as_deref(), Some("T2"));
    }

    #[test]
    fn error_envelope_carries_code_message_status_and_request_id() {
        let (status, code, message, request_id, retryable) = api_error(parse_envelope(
            "zl",
            REINSTALL_INSTANCE,
            response(
                400,
                r#"{"requestId":"T9","code":"INVALID_IMAGE_NOT_FOUND","message":"image not found"}"#,
            ),
        ));
        assert_eq!(status, Some(400));
        assert_eq!(code.as_deref(), Some("INVALID_IMAGE_NOT_FOUND"));
        assert!(message.contains("image not found") && message.contains("INVALID_IMAGE_NOT_FOUND"));
        assert_eq!(request_id.as_deref(), Some("T9"));
        assert!(!retryable);
    }

    #[test]
    fn throttling_and_server_errors_are_retryable() {
        let (.., retryable) = api_error(parse_envelope(
            "zl",
            DESCRIBE_INSTANCES,
            response(400, r#"{"code":"REQUEST_LIMIT_EXCEEDED","message":"slow"}"#),
        ));
        assert!(retryable);
        let (.., retryable) = api_error(parse_envelope(
            "zl",
            DESCRIBE_INSTANCES,
            response(429, "{}"),
        ));
        assert!(retryable);
        let (.., retryable) = api_error(parse_envelope(
            "zl",
            DESCRIBE_INSTANCES,
            response(502, "<html>bad gateway</html>"),
        ));
        assert!(retryable);
        // An error body with HTTP 200 is still an error.
        let (status, code, ..) = api_error(parse_envelope(
            "zl",
            DESCRIBE_INSTANCES,
            response(200, r#"{"code":"INVALID_ZONE_NOT_FOUND","message":"no"}"#),
        ));
        assert_eq!(
            (status, code.as_deref()),
            (Some(200), Some("INVALID_ZONE_NOT_FOUND"))
        );
    }

    #[test]
    fn non_json_bodies_show_the_status_and_an_excerpt() {
        let long = format!("<html>{}</html>", "x".repeat(500));
        let (status, code, message, ..) = api_error(parse_envelope(
            "zl",
            DESCRIBE_INSTANCES,
            response(404, &long),
        ));
        assert_eq!((status, code), (Some(404), None));
        assert!(message.contains("HTTP 404"), "{message}");
        assert!(message.contains("<html>xxx"), "{message}");
        assert!(message.len() < 300, "{message}");
    }

    #[test]
    fn edge_challenges_and_legal_blocks_are_named() {
        let mut challenged = response(403, "<html>Just a moment...</html>");
        challenged
            .headers
            .insert("cf-mitigated", HeaderValue::from_static("challenge"));
        let (_, _, message, _, retryable) =
            api_error(parse_envelope("zl", DESCRIBE_INSTANCES, challenged));
        assert!(message.contains("challenge") && message.contains("never reached the API"));
        assert!(!retryable);

        let (_, _, message, ..) =
            api_error(parse_envelope("zl", DESCRIBE_INSTANCES, response(451, "")));
        assert!(message.contains("security policy") && message.contains("451"));

        // A plain 403 is an ordinary API error.
        let (_, code, ..) = api_error(parse_envelope(
            "zl",
            DESCRIBE_INSTANCES,
            response(403, r#"{"code":"AUTH_FAILED","message":"bad signature"}"#),
        ));
        assert_eq!(code.as_deref(), Some("AUTH_FAILED"));
    }

    #[test]
    fn instance_pages_tolerate_missing_fields() {
        let response: Map<String, Value> = serde_json::from_str(
            r#"{"totalCount": 3, "dataSet": [
                {"instanceId": "i-1", "instanceStatus": "RUNNING", "imageId": "img-1",
                 "imageName": "Ubuntu 24.04", "hostname": "web-1"},
                {"instanceId": "i-2", "instanceStatus": "STOPPED", "imageId": null},
                {"instanceStatus": "RUNNING"}
            ]}"#,
        )
        .unwrap();
        let page = parse_instances_page(&response);
        assert_eq!(page.total_count, Some(3));
        assert_eq!(page.entries, 3);
        assert_eq!(page.instances.len(), 2);
        assert_eq!(
            page.instances[0].image_name.as_deref(),
            Some("Ubuntu 24.04")
        );
        assert_eq!(page.instances[1].image_id, None);

        let empty = parse_instances_page(&Map::new());
        assert_eq!((empty.total_count, empty.entries), (None, 0));
    }

    #[test]
    fn token_credentials_send_a_bearer_header_without_signature_headers() {
        let headers = request_headers(
            &Credentials::Token(SecretString::from("tok-123".to_string())),
            ApiVersion::V20221120,
            DESCRIBE_INSTANCES,
            "console.zenlayer.com",
            1_700_000_000,
            b"{}",
        );
        let names: Vec<&str> = headers.iter().map(|(name, _)| *name).collect();
        assert!(!names.contains(&"x-zc-timestamp"));
        assert!(!names.contains(&"x-zc-signature-method"));
        assert!(headers.contains(&("authorization", "Bearer tok-123".to_string())));
        assert!(headers.contains(&("x-zc-service", "bmc".to_string())));
    }
}
