//! Huawei Cloud ECS, CloudDC and IAM messages, built and parsed from the brief
//! (`shared/providers/huaweicloud.md`). Deliberately not shared with the emulator: a misreading
//! shared by both sides would pass every test unseen.

use base64::Engine;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value, json};

use crate::provider::http::RawResponse;
use crate::provider::response::is_retryable_status;
use crate::provider::sign::sdk_hmac::encode;
use crate::provider::{ProviderError, ResolvedAccess, ServerStatus};

/// `cloudservers/detail?server_id=` and CloudDC `instance_id=` take at most this many ids.
pub const MAX_IDS_PER_READ: usize = 100;
/// CloudDC batch reinstall: the SDK model allows 10 ids, the API page 50 (brief §0.4).
pub const CLOUDDC_SAFE_BATCH: usize = 10;
pub const CLOUDDC_DOCUMENTED_BATCH: usize = 50;
/// The only `mode` value: the platform stops a running server first.
pub const MODE_WITH_STOP_SERVER: &str = "withStopServer";
/// Decoded user data limit (brief §4.1).
pub const USER_DATA_MAX_BYTES: usize = 32 * 1024;

// ---------------------------------------------------------------------------------------------
// Responses and errors (both services, IAM)

/// The request id of a response: the `X-Request-Id` header, else a `request_id` in the body.
pub fn request_id(response: &RawResponse, body: Option<&Value>) -> Option<String> {
    response
        .headers
        .get("x-request-id")
        .and_then(|value| value.to_str().ok())
        .map(str::to_string)
        .or_else(|| {
            body.and_then(|body| body.get("request_id"))
                .and_then(Value::as_str)
                .map(str::to_string)
        })
}

/// Code and message of an error body, found the way the SDK's handler looks for them
/// (brief §6.2): `error_code`/`error_msg`, `errorCode`/`errorMsg`, `code`/`message`, then the
/// same pairs one level down (e.g. ECS's `{"error": {"code", "message"}}`).
pub fn error_fields(body: &Value) -> (Option<String>, Option<String>) {
    const PAIRS: [(&str, &str); 3] = [
        ("error_code", "error_msg"),
        ("errorCode", "errorMsg"),
        ("code", "message"),
    ];
    let text = |object: &Map<String, Value>, key: &str| -> Option<String> {
        match object.get(key)? {
            Value::String(text) if !text.is_empty() => Some(text.clone()),
            Value::Number(number) => Some(number.to_string()),
            _ => None,
        }
    };
    let find = |object: &Map<String, Value>| {
        PAIRS.iter().find_map(|(code_key, message_key)| {
            let code = text(object, code_key);
            let message = text(object, message_key);
            (code.is_some() || message.is_some()).then_some((code, message))
        })
    };
    let Some(object) = body.as_object() else {
        return (None, None);
    };
    if let Some(found) = find(object) {
        return found;
    }
    object
        .values()
        .filter_map(Value::as_object)
        .find_map(find)
        .unwrap_or((None, None))
}

/// Turns a non-2xx response into a typed error; 429 and 5xx are retryable.
pub fn error_from_response(provider: &str, what: &str, response: &RawResponse) -> ProviderError {
    let body: Option<Value> = serde_json::from_slice(&response.body).ok();
    let (code, message) = body.as_ref().map(error_fields).unwrap_or((None, None));
    let status = response.status;
    let detail = match (&code, message) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (None, Some(message)) => message,
        (Some(code), None) => code.clone(),
        (None, None) if response.body.is_empty() => "empty body".to_string(),
        (None, None) => response.body_excerpt(200),
    };
    let hint = if status.as_u16() == 401 {
        "; check the access key and secret key (or token), and the clock of this machine"
    } else if status.as_u16() == 429 {
        "; throttled by Huawei Cloud"
    } else {
        ""
    };
    ProviderError::Api {
        provider: provider.to_string(),
        status: Some(status.as_u16()),
        code,
        message: format!("{what}: HTTP {} ({detail}){hint}", status.as_u16()),
        request_id: request_id(response, body.as_ref()),
        retryable: is_retryable_status(status),
    }
}

/// A 2xx response as JSON with its request id; anything else as a typed error.
pub fn parse_json_response(
    provider: &str,
    what: &str,
    response: RawResponse,
) -> Result<(Value, Option<String>), ProviderError> {
    if !response.status.is_success() {
        return Err(error_from_response(provider, what, &response));
    }
    match serde_json::from_slice::<Value>(&response.body) {
        Ok(body) if body.is_object() => {
            let id = request_id(&response, Some(&body));
            Ok((body, id))
        }
        _ => Err(ProviderError::Api {
            provider: provider.to_string(),
            status: Some(response.status.as_u16()),
            code: None,
            message: format!(
                "{what}: the answer is not a JSON object: {}",
                response.body_excerpt(200)
            ),
            request_id: request_id(&response, None),
            retryable: false,
        }),
    }
}

/// `projects[0].id` of `GET /v3/projects?name=REGION`; exactly one project must match.
pub fn project_from_listing(body: &Value, region: &str) -> Result<String, String> {
    let projects: Vec<&Value> = body
        .get("projects")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter(|project| {
                    project
                        .get("name")
                        .and_then(Value::as_str)
                        .is_none_or(|name| name == region)
                })
                .collect()
        })
        .unwrap_or_default();
    match projects.as_slice() {
        [project] => project
            .get("id")
            .and_then(Value::as_str)
            .filter(|id| !id.is_empty())
            .map(str::to_string)
            .ok_or_else(|| format!("IAM listed the project of `{region}` without an id")),
        [] => Err(format!(
            "IAM knows no project named `{region}` for these credentials; check the region, or \
             set `options.project_id`"
        )),
        _ => Err(format!(
            "IAM lists {} projects named `{region}`; set `options.project_id` to pick one",
            projects.len()
        )),
    }
}

fn text_field(value: &Value, key: &str) -> Option<String> {
    value
        .get(key)
        .and_then(Value::as_str)
        .filter(|text| !text.is_empty())
        .map(str::to_string)
}

// ---------------------------------------------------------------------------------------------
// ECS

/// Which call moves a server to its desired image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EcsCall {
    /// `changeos`: to another image (carries `imageid`).
    ChangeOs,
    /// `reinstallos`: the same image again (no image id accepted).
    ReinstallOs,
}

impl EcsCall {
    pub fn path_segment(self) -> &'static str {
        match self {
            Self::ChangeOs => "changeos",
            Self::ReinstallOs => "reinstallos",
        }
    }

    fn body_root(self) -> &'static str {
        match self {
            Self::ChangeOs => "os-change",
            Self::ReinstallOs => "os-reinstall",
        }
    }
}

/// v1 (image without Cloud-Init) or v2 (image with Cloud-Init).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EcsVariant {
    V1WithoutCloudInit,
    V2WithCloudInit,
}

impl EcsVariant {
    pub fn from_cloud_init(cloud_init: bool) -> Self {
        if cloud_init {
            Self::V2WithCloudInit
        } else {
            Self::V1WithoutCloudInit
        }
    }

    pub fn version(self) -> &'static str {
        match self {
            Self::V1WithoutCloudInit => "v1",
            Self::V2WithCloudInit => "v2",
        }
    }
}

/// Huawei Cloud and Open Telekom Cloud validate the same calls differently (brief §0.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cloud {
    Huawei,
    OpenTelekom,
}

impl Cloud {
    pub const ALLOWED: [&str; 2] = ["huaweicloud", "otc"];

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "huaweicloud" => Some(Self::Huawei),
            "otc" => Some(Self::OpenTelekom),
            _ => None,
        }
    }
}

/// `POST /{v1|v2}/{project}/cloudservers/{id}/{changeos|reinstallos}`.
pub fn ecs_action_path(
    project: &str,
    server_id: &str,
    call: EcsCall,
    variant: EcsVariant,
) -> String {
    format!(
        "/{}/{}/cloudservers/{}/{}",
        variant.version(),
        encode(project),
        encode(server_id),
        call.path_segment()
    )
}

pub fn ecs_detail_path(project: &str) -> String {
    format!("/v1/{}/cloudservers/detail", encode(project))
}

pub fn ecs_job_path(project: &str, job_id: &str) -> String {
    format!("/v1/{}/jobs/{}", encode(project), encode(job_id))
}

/// Why a request body could not be built. Never contains a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyError {
    pub message: String,
    pub help: String,
}

fn body_error(message: impl Into<String>, help: impl Into<String>) -> BodyError {
    BodyError {
        message: message.into(),
        help: help.into(),
    }
}

/// What goes into one ECS change-OS / reinstall-OS call.
pub struct EcsBodyInput<'a> {
    pub call: EcsCall,
    pub variant: EcsVariant,
    pub cloud: Cloud,
    pub image: &'a str,
    pub access: &'a ResolvedAccess,
    pub user_id: Option<&'a str>,
    pub user_data: Option<&'a str>,
    pub with_stop_server: bool,
}

/// The body of one of the four ECS calls, serialised once: these bytes are signed and sent.
/// The credential rules of brief §4.1 are enforced here as well as at `validate`.
pub fn ecs_body(input: &EcsBodyInput<'_>) -> Result<Vec<u8>, BodyError> {
    let v2 = input.variant == EcsVariant::V2WithCloudInit;
    let mut fields = Map::new();
    match input.access {
        ResolvedAccess::Password(password) => {
            if input.cloud == Cloud::OpenTelekom && !v2 {
                return Err(body_error(
                    "Open Telekom Cloud takes no password for images without Cloud-Init",
                    "use `access.ssh_key_id` and `options.user_id`",
                ));
            }
            // The only place the password leaves its wrapper: the body that is signed and sent.
            fields.insert(
                "adminpass".into(),
                Value::from(password.expose_secret().to_string()),
            );
        }
        ResolvedAccess::SshKeyId(key_name) => {
            fields.insert("keyname".into(), Value::from(key_name.as_str()));
            match input.user_id {
                Some(user_id) => {
                    fields.insert("userid".into(), Value::from(user_id));
                }
                // Brief §4.1: `userid` is required when `keyname` is used.
                None => {
                    return Err(body_error(
                        "ECS needs `userid` with `keyname`",
                        "set `options.user_id` (the IAM user id that owns the key pair)",
                    ));
                }
            }
        }
        ResolvedAccess::None => {
            if !(v2 && input.user_data.is_some()) {
                return Err(body_error(
                    "a password or a key pair is required",
                    "set `access.password` or `access.ssh_key_id` (only a Cloud-Init image with \
                     user data may go without)",
                ));
            }
        }
    }
    if input.call == EcsCall::ChangeOs {
        if input.image.trim().is_empty() {
            return Err(body_error(
                "changing the OS needs an image id",
                "set `os.image` to an IMS image id",
            ));
        }
        fields.insert("imageid".into(), Value::from(input.image));
    }
    if input.with_stop_server {
        fields.insert("mode".into(), Value::from(MODE_WITH_STOP_SERVER));
    }
    if let Some(user_data) = input.user_data {
        if !v2 {
            return Err(body_error(
                "user data needs an image with Cloud-Init",
                "set `options.cloud_init: true` if the image has Cloud-Init, or remove \
                 `user_data`",
            ));
        }
        if user_data.len() > USER_DATA_MAX_BYTES {
            return Err(body_error(
                format!("user data is {} bytes; at most 32 KB", user_data.len()),
                "shrink the user data",
            ));
        }
        let encoded = base64::engine::general_purpose::STANDARD.encode(user_data.as_bytes());
        fields.insert("metadata".into(), json!({ "user_data": encoded }));
    }
    let mut root = Map::new();
    root.insert(input.call.body_root().into(), Value::Object(fields));
    Ok(Value::Object(root).to_string().into_bytes())
}

/// One entry of `cloudservers/detail`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EcsServer {
    pub id: String,
    /// `None` for an id ECS does not know (all fields null but `id` and `fault`).
    pub status: Option<String>,
    pub image_id: Option<String>,
    pub image_name: Option<String>,
    pub hostname: Option<String>,
    pub locked: bool,
    pub task_state: Option<String>,
    pub fault: Option<String>,
}

/// `{"servers": [ServerDetail…]}`, tolerating missing and null fields.
pub fn parse_ecs_servers(body: &Value) -> Vec<EcsServer> {
    let Some(list) = body.get("servers").and_then(Value::as_array) else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|server| {
            let id = text_field(server, "id")?;
            let metadata = server.get("metadata");
            let image_id = server
                .get("image")
                .and_then(|image| text_field(image, "id"))
                .or_else(|| metadata.and_then(|m| text_field(m, "metering.image_id")));
            let fault = server.get("fault").and_then(|fault| {
                text_field(fault, "message")
                    .or_else(|| text_field(fault, "code"))
                    .or_else(|| fault.as_str().map(str::to_string))
            });
            Some(EcsServer {
                id,
                status: text_field(server, "status"),
                image_id,
                image_name: metadata.and_then(|m| text_field(m, "image_name")),
                hostname: text_field(server, "OS-EXT-SRV-ATTR:hostname"),
                locked: server
                    .get("locked")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
                task_state: text_field(server, "OS-EXT-STS:task_state"),
                fault,
            })
        })
        .collect()
}

/// ECS status words (brief §5.3) → reimage's statuses.
pub fn map_ecs_status(status: &str) -> ServerStatus {
    match status.to_ascii_uppercase().as_str() {
        "ACTIVE" => ServerStatus::Running,
        "SHUTOFF" => ServerStatus::Stopped,
        "REBUILD" => ServerStatus::Installing,
        // A failed reinstall/change leaves the server in ERROR; it needs attention first.
        "ERROR" => ServerStatus::InstallFailed,
        "DELETED" | "SOFT_DELETED" => ServerStatus::Gone,
        "BUILD" | "REBOOT" | "HARD_REBOOT" | "MIGRATING" | "RESIZE" | "REVERT_RESIZE"
        | "VERIFY_RESIZE" | "SHELVED" | "SHELVED_OFFLOADED" | "PAUSED" | "SUSPENDED" => {
            ServerStatus::Busy
        }
        _ => ServerStatus::Unknown,
    }
}

/// `{"job_id": "…"}` of an accepted ECS call.
pub fn job_id_of(body: &Value) -> Option<String> {
    text_field(body, "job_id")
}

/// Where an ECS job stands (brief §5.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobState {
    Pending(String),
    Success,
    Fail(String),
}

/// Reads `GET /v1/{project}/jobs/{job_id}`; on `FAIL` the message carries `error_code`,
/// `fail_reason` and every sub-job's message.
pub fn parse_job(body: &Value) -> JobState {
    let status = text_field(body, "status").unwrap_or_default();
    match status.to_ascii_uppercase().as_str() {
        "SUCCESS" => JobState::Success,
        "FAIL" => {
            let mut parts = Vec::new();
            if let Some(code) = text_field(body, "error_code") {
                parts.push(code);
            }
            if let Some(reason) = text_field(body, "fail_reason") {
                parts.push(reason);
            }
            let sub_jobs = body
                .get("entities")
                .and_then(|entities| entities.get("sub_jobs"))
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for sub_job in &sub_jobs {
                let mut sub = Vec::new();
                if let Some(code) = text_field(sub_job, "error_code") {
                    sub.push(code);
                }
                if let Some(reason) = text_field(sub_job, "fail_reason") {
                    sub.push(reason);
                }
                if let Some(message) = sub_job
                    .get("entities")
                    .and_then(|entities| text_field(entities, "errorcode_message"))
                {
                    sub.push(message);
                }
                if !sub.is_empty() {
                    parts.push(format!("sub-job: {}", sub.join(": ")));
                }
            }
            if parts.is_empty() {
                parts.push("no reason given".to_string());
            }
            JobState::Fail(parts.join("; "))
        }
        "" => JobState::Pending("job status not reported yet".to_string()),
        other => JobState::Pending(format!("job {other}")),
    }
}

// ---------------------------------------------------------------------------------------------
// CloudDC

pub fn clouddc_list_path(project: &str) -> String {
    format!("/v1/{}/instances", encode(project))
}

pub fn clouddc_reinstall_path(project: &str) -> String {
    format!("/v1/{}/instances/reinstall", encode(project))
}

/// `PUT /v1/{project}/instances/reinstall` body for one (image, password) group.
pub fn clouddc_reinstall_body(image: &str, password: &SecretString, ids: &[&str]) -> Vec<u8> {
    let mut body = Map::new();
    // Always explicit: an omitted image id keeps the current image.
    body.insert("image_id".into(), Value::from(image));
    body.insert(
        "password".into(),
        Value::from(password.expose_secret().to_string()),
    );
    body.insert("instance_id_set".into(), json!(ids));
    Value::Object(body).to_string().into_bytes()
}

/// One CloudDC instance as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DcInstance {
    pub id: String,
    pub name: Option<String>,
    pub state: String,
    pub operation_state: Option<String>,
    pub image_id: Option<String>,
    pub image_name: Option<String>,
    pub error: Option<String>,
}

/// One page of `GET /v1/{project}/instances`: instances and the next marker.
pub fn parse_clouddc_page(body: &Value) -> (Vec<DcInstance>, Option<String>) {
    let instances = body
        .get("instances")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|instance| {
                    let id = text_field(instance, "id")?;
                    let image = instance.get("image");
                    let error = instance.get("error").and_then(|error| {
                        let code = text_field(error, "error_code");
                        let message = text_field(error, "error_msg");
                        match (code, message) {
                            (Some(code), Some(message)) => Some(format!("{code}: {message}")),
                            (Some(one), None) | (None, Some(one)) => Some(one),
                            (None, None) => None,
                        }
                    });
                    Some(DcInstance {
                        id,
                        name: text_field(instance, "name"),
                        state: text_field(instance, "state").unwrap_or_default(),
                        operation_state: text_field(instance, "operation_state"),
                        image_id: image.and_then(|image| text_field(image, "id")),
                        image_name: image.and_then(|image| text_field(image, "name")),
                        error,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let next = body
        .get("page_info")
        .and_then(|info| text_field(info, "next_marker"));
    (instances, next)
}

/// CloudDC `state` (+ `operation_state`) → reimage's statuses (brief §7.2).
pub fn map_clouddc_status(state: &str, operation_state: Option<&str>) -> ServerStatus {
    let operation = operation_state.unwrap_or_default();
    if operation.ends_with("-failed") && operation.contains("install") {
        return ServerStatus::InstallFailed;
    }
    match state {
        "running" => ServerStatus::Running,
        "stopped" => ServerStatus::Stopped,
        "pending" if operation.ends_with("-processing") && operation.contains("install") => {
            ServerStatus::Installing
        }
        "pending" | "shutting-down" => ServerStatus::Busy,
        "terminated" => ServerStatus::Gone,
        "error" => ServerStatus::InstallFailed,
        _ => ServerStatus::Unknown,
    }
}

/// The ids a batch reinstall accepted (`{"instances": [{"id"}]}`).
pub fn accepted_ids(body: &Value) -> Option<Vec<String>> {
    body.get("instances").and_then(Value::as_array).map(|list| {
        list.iter()
            .filter_map(|instance| text_field(instance, "id"))
            .collect()
    })
}
