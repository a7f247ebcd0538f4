//! ECS messages: which call (`changeos` or `reinstallos`, v1 or v2), its body, the server
//! list and the job that follows a call.

use base64::Engine;
use secrecy::ExposeSecret;
use serde_json::{Map, Value, json};

use super::{MODE_WITH_STOP_SERVER, USER_DATA_MAX_BYTES, text_field};
use crate::provider::sign::sdk_hmac::encode;
use crate::provider::{ResolvedAccess, ServerStatus};

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
