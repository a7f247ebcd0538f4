//! Huawei Cloud ECS, CloudDC and IAM messages, built and parsed from the brief
//! (`shared/providers/huaweicloud.md`). Deliberately not shared with the emulator: a misreading
//! shared by both sides would pass every test unseen. The ECS calls live in [`ecs`]; what both
//! services and IAM share, and CloudDC's few messages, here.

mod ecs;

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value, json};

pub use ecs::{
    BodyError, Cloud, EcsBodyInput, EcsCall, EcsServer, EcsVariant, JobState, ecs_action_path,
    ecs_body, ecs_detail_path, ecs_job_path, job_id_of, map_ecs_status, parse_ecs_servers,
    parse_job,
};

use crate::provider::http::RawResponse;
use crate::provider::response::is_retryable_status;
use crate::provider::sign::sdk_hmac::encode;
use crate::provider::{ProviderError, ServerStatus};

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
