//! Zenlayer Cloud API 2.0, bare metal (`POST /api/v2/bmc`), built from the brief
//! (`providers/zenlayer.md`) and nothing else: envelope, headers, ZC2-HMAC-SHA256 verification,
//! `DescribeInstances`, `ReinstallInstance`, `DescribeImages`.
//!
//! Error codes the brief lists are sent as written there (upper snake case). Codes the brief
//! leaves open are the emulator's own and must not be relied on against the real API:
//! - HTTP 401 `AUTH_FAILED` (no or malformed `Authorization`, unknown access key or token,
//!   missing `Host`/`Content-Type`), `SIGNATURE_METHOD_UNSUPPORTED`, `SIGNATURE_EXPIRED`
//!   (missing, unreadable or skewed `X-ZC-Timestamp`), `SIGNATURE_MISMATCH`;
//! - HTTP 400 `INVALID_ACTION`, `INVALID_API_VERSION`, `INVALID_PARAMETER`,
//!   `UNSUPPORTED_BY_EMULATOR` (iPXE installs);
//! - HTTP 500 `INTERNAL_ERROR` (injected, or the world could not be saved).
//!
//! HTTP statuses are the emulator's choice too: 404 for unknown instances and images, 403 for
//! `OPERATION_DENIED_*`, 400 for other parameter errors. A client should match on codes.

use std::borrow::Cow;

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use serde::Deserialize;
use serde_json::{Value, json};

use super::faults::{self, Aftermath, Call, CallKind, Outcome, Refusal};
use super::inventory::{InstanceStatus, Inventory, ZenlayerImage};
use super::server::{ConnectionHandle, Shared};
use super::world::{ReinstallRecord, World, ZenlayerServer};
use crate::manifest::ProviderType;
use crate::provider::sign::zc2;

/// The path the API is served under (the service is `bmc`).
pub const PATH: &str = "/api/v2/bmc";

/// Allowed clock difference for `X-ZC-Timestamp` (the brief: unconfirmed, emulator ±5 min).
const TIMESTAMP_SKEW_SECONDS: i64 = 300;

const API_VERSIONS: [&str; 2] = ["2022-11-20", "2026-02-01"];
const MAX_INSTANCE_IDS: usize = 100;
const DEFAULT_PAGE_SIZE: i64 = 20;
const MAX_PAGE_SIZE: i64 = 1000;
const MAX_HOSTNAME_CHARS: usize = 64;
const MAX_USER_DATA_BYTES: usize = 32 * 1024;
const PASSWORD_SPECIALS: &str = "~!@$^*-_=+";

/// A failed call: HTTP status, wire code, message.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// `Retry-After` of a 429, in seconds (default 1).
    retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// An injected fault, in the brief's shapes (§5: `REQUEST_LIMIT_EXCEEDED`, 5xx system error).
    fn injected(refusal: Refusal) -> ApiError {
        match refusal {
            Refusal::ServerError => ApiError::internal("internal error (injected by the emulator)"),
            Refusal::Throttled {
                retry_after_seconds,
            } => ApiError {
                retry_after: Some(retry_after_seconds),
                ..ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "REQUEST_LIMIT_EXCEEDED",
                    "request limit exceeded (injected by the emulator)",
                )
            },
        }
    }

    fn unauthorized(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, code, message)
    }

    fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    fn denied(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, code, message)
    }

    fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR", message)
    }
}

/// Handles one call to `POST /api/v2/bmc`.
pub async fn handle(
    shared: &Shared,
    connection: &ConnectionHandle,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    match handle_call(shared, headers, body, &request_id).await {
        Ok((fields, aftermath)) => {
            aftermath.apply(connection).await;
            success_response(&request_id, fields)
        }
        Err(error) => {
            tracing::debug!(code = error.code, message = %error.message, "emulator: zenlayer error");
            error_response(&request_id, error)
        }
    }
}

async fn handle_call(
    shared: &Shared,
    headers: &HeaderMap,
    body: &Bytes,
    request_id: &str,
) -> Result<(serde_json::Map<String, Value>, Aftermath), ApiError> {
    let now = Timestamp::now();
    authenticate(&shared.inventory, headers, body, now)?;
    let action = header_text(headers, "x-zc-action").ok_or_else(|| {
        ApiError::bad_request("INVALID_ACTION", "the X-ZC-Action header is missing")
    })?;
    let version = header_text(headers, "x-zc-version").ok_or_else(|| {
        ApiError::bad_request("INVALID_API_VERSION", "the X-ZC-Version header is missing")
    })?;
    if !API_VERSIONS.contains(&version) {
        return Err(ApiError::bad_request(
            "INVALID_API_VERSION",
            format!(
                "API version `{version}` is not served; use one of {}",
                API_VERSIONS.join(", ")
            ),
        ));
    }
    let parameters = parse_parameters(body)?;
    let call = classify(action, &parameters);
    faults::wait_latency(shared, &call).await;

    let now = Timestamp::now();
    let mut store = shared.world.lock().await;
    if store.world.settle(now) {
        save(&store)?;
    }
    if let Some(refusal) = faults::refusal(&mut store, shared, &call).map_err(internal)? {
        return Err(ApiError::injected(refusal));
    }
    let served = |store: &mut super::world::WorldStore, fields| {
        let aftermath = faults::aftermath(store, &call, Outcome::Served, &|_| None);
        aftermath
            .map(|aftermath| (fields, aftermath))
            .map_err(internal)
    };
    match action {
        "DescribeInstances" => {
            let fields = describe_instances(&shared.inventory, &store.world, parameters, now)?;
            served(&mut store, fields)
        }
        "DescribeImages" => {
            let fields = describe_images(&shared.inventory, parameters)?;
            served(&mut store, fields)
        }
        "ReinstallInstance" => {
            let before = store.world.clone();
            let outcome = reinstall_instance(
                shared,
                &mut store.world,
                parameters,
                version,
                now,
                request_id,
            );
            if let Err(error) = outcome {
                store.world = before;
                return Err(error);
            }
            if let Err(error) = store.save() {
                store.world = before;
                return Err(internal(error));
            }
            let shown_before = |id: &str| before.zenlayer.server(id).and_then(faults::record);
            let aftermath = faults::aftermath(&mut store, &call, Outcome::Acted, &shown_before)
                .map_err(internal)?;
            Ok((serde_json::Map::new(), aftermath))
        }
        other => Err(ApiError::bad_request(
            "INVALID_ACTION",
            format!("the action `{other}` is not supported"),
        )),
    }
}

/// What the fault menu sees of a call: its kind and the instances it names.
fn classify(action: &str, parameters: &Value) -> Call {
    let strings = |value: Option<&Value>| -> Vec<String> {
        match value {
            Some(Value::String(id)) => vec![id.clone()],
            Some(Value::Array(ids)) => ids
                .iter()
                .filter_map(|id| id.as_str().map(str::to_string))
                .collect(),
            _ => Vec::new(),
        }
    };
    let (kind, ids) = match action {
        "DescribeInstances" => (CallKind::Read, strings(parameters.get("instanceIds"))),
        "ReinstallInstance" => (CallKind::Reinstall, strings(parameters.get("instanceId"))),
        _ => (CallKind::Other, Vec::new()),
    };
    Call::new(ProviderType::ZenlayerBmc, kind, ids)
}

fn internal(error: impl std::fmt::Display) -> ApiError {
    ApiError::internal(error.to_string())
}

fn save(store: &super::world::WorldStore) -> Result<(), ApiError> {
    store
        .save()
        .map_err(|error| ApiError::internal(error.to_string()))
}

fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

/// Checks the caller per brief §3: a bearer token from the inventory, or a ZC2-HMAC-SHA256
/// signature recomputed from the received `Content-Type` and `Host` values and the raw body.
fn authenticate(
    inventory: &Inventory,
    headers: &HeaderMap,
    body: &[u8],
    now: Timestamp,
) -> Result<(), ApiError> {
    let authorization = header_text(headers, "authorization").ok_or_else(|| {
        ApiError::unauthorized("AUTH_FAILED", "the Authorization header is missing")
    })?;
    if let Some(token) = authorization.strip_prefix("Bearer ") {
        let known = inventory
            .zenlayer
            .tokens
            .iter()
            .any(|accepted| zc2::signatures_match(accepted, token.trim()));
        return if known {
            Ok(())
        } else {
            Err(ApiError::unauthorized(
                "AUTH_FAILED",
                "the bearer token is not valid",
            ))
        };
    }
    let method = header_text(headers, "x-zc-signature-method").unwrap_or_default();
    if method != zc2::ALGORITHM {
        return Err(ApiError::unauthorized(
            "SIGNATURE_METHOD_UNSUPPORTED",
            format!(
                "X-ZC-Signature-Method must be `{}`, not `{method}`",
                zc2::ALGORITHM
            ),
        ));
    }
    let timestamp = header_text(headers, "x-zc-timestamp").ok_or_else(|| {
        ApiError::unauthorized("SIGNATURE_EXPIRED", "the X-ZC-Timestamp header is missing")
    })?;
    let seconds: i64 = timestamp.parse().map_err(|_| {
        ApiError::unauthorized(
            "SIGNATURE_EXPIRED",
            format!("X-ZC-Timestamp `{timestamp}` is not a number of Unix seconds"),
        )
    })?;
    let skew = now.as_second().saturating_sub(seconds);
    if skew.abs() > TIMESTAMP_SKEW_SECONDS {
        return Err(ApiError::unauthorized(
            "SIGNATURE_EXPIRED",
            format!(
                "X-ZC-Timestamp is {skew} s away from the emulator's clock (at most \
                 {TIMESTAMP_SKEW_SECONDS} s allowed)"
            ),
        ));
    }
    let parsed = zc2::parse_authorization(authorization).ok_or_else(|| {
        ApiError::unauthorized(
            "AUTH_FAILED",
            "the Authorization header is not `ZC2-HMAC-SHA256 Credential=…, \
             SignedHeaders=content-type;host, Signature=…`",
        )
    })?;
    if parsed.signed_headers != zc2::SIGNED_HEADERS {
        return Err(ApiError::unauthorized(
            "AUTH_FAILED",
            format!(
                "SignedHeaders must be `{}`, not `{}`",
                zc2::SIGNED_HEADERS,
                parsed.signed_headers
            ),
        ));
    }
    let credential = inventory
        .zenlayer
        .credentials
        .iter()
        .find(|credential| credential.access_key_id == parsed.access_key_id)
        .ok_or_else(|| {
            ApiError::unauthorized(
                "AUTH_FAILED",
                format!("the access key id `{}` is not known", parsed.access_key_id),
            )
        })?;
    let content_type = header_text(headers, "content-type").ok_or_else(|| {
        ApiError::unauthorized("AUTH_FAILED", "the Content-Type header is missing")
    })?;
    let host = header_text(headers, "host")
        .ok_or_else(|| ApiError::unauthorized("AUTH_FAILED", "the Host header is missing"))?;
    let canonical = zc2::canonical_request(content_type, host, body);
    let expected = zc2::signature(
        &credential.access_key_password,
        &zc2::string_to_sign(timestamp, &canonical),
    );
    if !zc2::signatures_match(&expected, &parsed.signature) {
        return Err(ApiError::unauthorized(
            "SIGNATURE_MISMATCH",
            format!(
                "the signature does not match (signed as content-type `{content_type}`, host \
                 `{host}`, {} body bytes)",
                body.len()
            ),
        ));
    }
    Ok(())
}

/// The body is the action's parameters: a JSON object (an empty body reads as `{}`).
fn parse_parameters(body: &[u8]) -> Result<Value, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(serde_json::Map::new()));
    }
    let value: Value = serde_json::from_slice(body).map_err(|error| {
        ApiError::bad_request(
            "INVALID_PARAMETER",
            format!("the body is not JSON: {error}"),
        )
    })?;
    if !value.is_object() {
        return Err(ApiError::bad_request(
            "INVALID_PARAMETER",
            "the body must be a JSON object",
        ));
    }
    Ok(value)
}

fn parameters_as<T: for<'de> Deserialize<'de>>(parameters: Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(parameters).map_err(|error| {
        let path = error.path().to_string();
        // serde quotes the offending value, which must not happen for a password.
        let message = if path.contains("password") {
            format!("parameter `{path}` must be a string")
        } else {
            format!("parameter `{path}`: {}", error.inner())
        };
        ApiError::bad_request("INVALID_PARAMETER", message)
    })
}

/// `instanceName` and `hostname` filters: exact, or a prefix when ending in `*`.
fn name_filter_matches(filter: &str, value: Option<&str>) -> bool {
    let value = value.unwrap_or_default();
    match filter.strip_suffix('*') {
        Some(prefix) => value.starts_with(prefix),
        None => value == filter,
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescribeInstancesRequest {
    instance_ids: Option<Vec<String>>,
    zone_id: Option<String>,
    instance_type_id: Option<String>,
    image_id: Option<String>,
    instance_status: Option<String>,
    instance_name: Option<String>,
    hostname: Option<String>,
    page_num: Option<i64>,
    page_size: Option<i64>,
}

fn describe_instances(
    inventory: &Inventory,
    world: &World,
    parameters: Value,
    now: Timestamp,
) -> Result<serde_json::Map<String, Value>, ApiError> {
    let request: DescribeInstancesRequest = parameters_as(parameters)?;
    let instance_ids = request.instance_ids.unwrap_or_default();
    if instance_ids.len() > MAX_INSTANCE_IDS {
        return Err(ApiError::bad_request(
            "INVALID_PARAMETER",
            format!(
                "instanceIds holds {} ids; at most {MAX_INSTANCE_IDS} are allowed",
                instance_ids.len()
            ),
        ));
    }
    let page_num = request.page_num.unwrap_or(1);
    if page_num < 1 {
        return Err(ApiError::bad_request(
            "INVALID_PARAMETER",
            format!("pageNum must be 1 or more, not {page_num}"),
        ));
    }
    let page_size = request.page_size.unwrap_or(DEFAULT_PAGE_SIZE);
    if !(1..=MAX_PAGE_SIZE).contains(&page_size) {
        return Err(ApiError::bad_request(
            "INVALID_PARAMETER",
            format!("pageSize must be between 1 and {MAX_PAGE_SIZE}, not {page_size}"),
        ));
    }
    // A set: a world of many servers is filtered in one pass, not once per id.
    let wanted: std::collections::HashSet<&str> = instance_ids.iter().map(String::as_str).collect();
    // What each server shows: the truth, or what it was before a call whose effect is late.
    let shown: Vec<Cow<ZenlayerServer>> = world
        .zenlayer
        .servers
        .iter()
        // An empty list filters nothing, as an omitted one.
        .filter(|server| wanted.is_empty() || wanted.contains(server.id.as_str()))
        .map(|server| {
            faults::as_shown(
                &world.faults,
                ProviderType::ZenlayerBmc,
                &server.id,
                server,
                now,
            )
        })
        .collect();
    let matching: Vec<&ZenlayerServer> = shown
        .iter()
        .map(|server| server.as_ref())
        .filter(|server| {
            request
                .zone_id
                .as_deref()
                .is_none_or(|zone| server.zone_id.as_deref() == Some(zone))
        })
        .filter(|server| {
            request
                .instance_type_id
                .as_deref()
                .is_none_or(|kind| server.instance_type_id.as_deref() == Some(kind))
        })
        .filter(|server| {
            request
                .image_id
                .as_deref()
                .is_none_or(|image| server.image_id == image)
        })
        .filter(|server| {
            request
                .instance_status
                .as_deref()
                .is_none_or(|status| server.status.as_str().eq_ignore_ascii_case(status))
        })
        .filter(|server| {
            request
                .instance_name
                .as_deref()
                .is_none_or(|filter| name_filter_matches(filter, Some(&server.name)))
        })
        .filter(|server| {
            request
                .hostname
                .as_deref()
                .is_none_or(|filter| name_filter_matches(filter, server.hostname.as_deref()))
        })
        .collect();
    // Both are bounded above (page size ≤ 1000), so only a huge page number can overflow.
    let skip = usize::try_from(page_num - 1)
        .ok()
        .and_then(|pages| pages.checked_mul(page_size as usize))
        .unwrap_or(usize::MAX);
    let data_set: Vec<Value> = matching
        .iter()
        .skip(skip)
        .take(page_size as usize)
        .map(|server| instance_info(inventory, server))
        .collect();
    let mut fields = serde_json::Map::new();
    fields.insert("totalCount".into(), json!(matching.len()));
    fields.insert("dataSet".into(), Value::Array(data_set));
    Ok(fields)
}

fn instance_info(inventory: &Inventory, server: &ZenlayerServer) -> Value {
    let image_name = find_image(inventory, &server.image_id).map(|image| image.name.clone());
    json!({
        "instanceId": server.id,
        "instanceName": server.name,
        "hostname": server.hostname,
        "imageId": server.image_id,
        "imageName": image_name,
        "ipxeUrl": null,
        "instanceStatus": server.status.as_str(),
        "zoneId": server.zone_id,
        "instanceTypeId": server.instance_type_id,
        "keyId": server.key_id,
        "raidConfig": null,
        "partitions": null,
        "nic": null,
        "primaryPublicIpAddress": server.public_ip,
        "publicIpAddresses": server.public_ip.iter().collect::<Vec<_>>(),
        "privateIpAddresses": [],
        "createTime": server.created_at.to_string(),
        "expiredTime": null,
    })
}

fn find_image<'a>(inventory: &'a Inventory, image_id: &str) -> Option<&'a ZenlayerImage> {
    inventory
        .zenlayer
        .images
        .iter()
        .find(|image| image.id == image_id)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescribeImagesRequest {
    image_ids: Option<Vec<String>>,
    image_name: Option<String>,
    catalog: Option<String>,
    image_type: Option<String>,
    os_type: Option<String>,
    /// Every emulated image fits every machine model, so this filters nothing.
    #[allow(dead_code)]
    instance_type_id: Option<String>,
}

fn describe_images(
    inventory: &Inventory,
    parameters: Value,
) -> Result<serde_json::Map<String, Value>, ApiError> {
    let request: DescribeImagesRequest = parameters_as(parameters)?;
    let image_ids = request.image_ids.unwrap_or_default();
    let images: Vec<Value> = inventory
        .zenlayer
        .images
        .iter()
        .filter(|image| image_ids.is_empty() || image_ids.contains(&image.id))
        .filter(|image| {
            request
                .image_name
                .as_deref()
                .is_none_or(|name| image.name == name)
        })
        .filter(|image| {
            request
                .catalog
                .as_deref()
                .is_none_or(|catalog| image.catalog.as_deref() == Some(catalog))
        })
        .filter(|image| {
            request
                .image_type
                .as_deref()
                .is_none_or(|kind| image.image_type == kind)
        })
        .filter(|image| {
            request
                .os_type
                .as_deref()
                .is_none_or(|os| image.os_type == os)
        })
        .map(|image| {
            json!({
                "imageId": image.id,
                "imageName": image.name,
                "catalog": image.catalog,
                "imageType": image.image_type,
                "osType": image.os_type,
            })
        })
        .collect();
    let mut fields = serde_json::Map::new();
    fields.insert("images".into(), Value::Array(images));
    Ok(fields)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReinstallInstanceRequest {
    instance_id: Option<String>,
    image_id: Option<String>,
    hostname: Option<String>,
    password: Option<String>,
    key_id: Option<String>,
    ssh_keys: Option<Vec<String>>,
    ipxe_url: Option<String>,
    user_data: Option<String>,
    // Accepted but not emulated: they leave no trace in DescribeInstances here.
    #[allow(dead_code)]
    raid_config: Option<Value>,
    #[allow(dead_code)]
    partitions: Option<Value>,
    #[allow(dead_code)]
    nic: Option<Value>,
}

/// Treats `""` like an absent field, as SDKs that send every field might.
fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|text| !text.is_empty())
}

fn reinstall_instance(
    shared: &Shared,
    world: &mut World,
    parameters: Value,
    version: &str,
    now: Timestamp,
    request_id: &str,
) -> Result<(), ApiError> {
    let request: ReinstallInstanceRequest = parameters_as(parameters)?;
    let instance_id = non_empty(request.instance_id)
        .ok_or_else(|| ApiError::bad_request("INVALID_PARAMETER", "instanceId is required"))?;
    let password = non_empty(request.password);
    let key_id = non_empty(request.key_id);
    let requested_image_id = non_empty(request.image_id);
    let hostname = non_empty(request.hostname);
    if password.is_some() && key_id.is_some() {
        return Err(ApiError::bad_request(
            "INVALID_PARAMETER_INSTANCE_LOGIN_CONFLICT",
            "pass either password or keyId, not both",
        ));
    }
    if let Some(password) = &password
        && let Err(problem) = check_password(password)
    {
        return Err(ApiError::bad_request(
            "INVALID_PARAMETER_VALUE_PASSWORD_MALFORMED",
            problem,
        ));
    }
    if let Some(hostname) = &hostname {
        check_hostname(hostname)?;
    }
    if let Some(user_data) = &request.user_data
        && user_data.len() > MAX_USER_DATA_BYTES
    {
        return Err(ApiError::bad_request(
            "INVALID_PARAMETER",
            format!(
                "userData is {} bytes; at most {MAX_USER_DATA_BYTES} are allowed",
                user_data.len()
            ),
        ));
    }
    if request.ssh_keys.is_some() && version != "2022-11-20" {
        return Err(ApiError::bad_request(
            "INVALID_PARAMETER",
            format!("sshKeys is not accepted by API version {version}"),
        ));
    }
    if non_empty(request.ipxe_url).is_some() {
        return Err(ApiError::bad_request(
            "UNSUPPORTED_BY_EMULATOR",
            "iPXE installs are not emulated",
        ));
    }
    let server = world.zenlayer.server_mut(&instance_id).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "INVALID_INSTANCE_NOT_FOUND",
            format!("instance `{instance_id}` does not exist"),
        )
    })?;
    check_status_allows_reinstall(server.status)?;
    let image_id = match &requested_image_id {
        Some(image_id) => {
            if find_image(&shared.inventory, image_id).is_none() {
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    "INVALID_IMAGE_NOT_FOUND",
                    format!("image `{image_id}` does not exist"),
                ));
            }
            image_id.clone()
        }
        // The real API reinstalls the current image when imageId is omitted (brief §0.2).
        None => server.image_id.clone(),
    };
    // The documented default hostname is literally `hostname` (brief §6).
    let new_hostname = hostname.clone().unwrap_or_else(|| "hostname".to_string());
    let duration = server.install_duration(&shared.inventory, shared.install_seconds_override);
    server.begin_install(
        image_id.clone(),
        Some(new_hostname),
        key_id.clone(),
        now,
        duration,
    );
    tracing::info!(
        server = %instance_id,
        image = %image_id,
        request_id,
        "emulator: zenlayer reinstall accepted"
    );
    let installing_at_call = world
        .zenlayer
        .servers
        .iter()
        .filter(|server| server.install.is_some())
        .count();
    world.zenlayer.peak_installing = world.zenlayer.peak_installing.max(installing_at_call);
    world.zenlayer.reinstall_log.push(ReinstallRecord {
        installing_at_call,
        server_id: instance_id,
        requested_image_id,
        image_id,
        hostname,
        password_given: password.is_some(),
        key_id,
        at: now,
        request_id: request_id.to_string(),
    });
    Ok(())
}

fn check_status_allows_reinstall(status: InstanceStatus) -> Result<(), ApiError> {
    let code = match status {
        InstanceStatus::Running | InstanceStatus::Stopped => return Ok(()),
        InstanceStatus::Installing => "OPERATION_DENIED_INSTANCE_STATUS_INSTALLING",
        InstanceStatus::Creating => "OPERATION_DENIED_INSTANCE_CREATING",
        InstanceStatus::Recycle | InstanceStatus::Recycling => "OPERATION_DENIED_INSTANCE_RECYCLED",
        InstanceStatus::Pending
        | InstanceStatus::CreateFailed
        | InstanceStatus::InstallFailed
        | InstanceStatus::Booting
        | InstanceStatus::Stopping => "OPERATION_DENIED_INSTANCE_STATUS",
    };
    Err(ApiError::denied(
        code,
        format!(
            "the instance is {}; only STOPPED or RUNNING instances can be reinstalled",
            status.as_str()
        ),
    ))
}

/// 8–16 characters from letters, digits and `~!@$^*-_=+`, with at least one of each class.
fn check_password(password: &str) -> Result<(), String> {
    let length = password.chars().count();
    if !(8..=16).contains(&length) {
        return Err(format!(
            "the password must be 8 to 16 characters, not {length}"
        ));
    }
    // The offending character is not named: error messages end up in logs.
    if !password
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || PASSWORD_SPECIALS.contains(c))
    {
        return Err(format!(
            "the password may only hold letters, digits and {PASSWORD_SPECIALS}"
        ));
    }
    let classes = [
        password.chars().any(|c| c.is_ascii_uppercase()),
        password.chars().any(|c| c.is_ascii_lowercase()),
        password.chars().any(|c| c.is_ascii_digit()),
        password.chars().any(|c| PASSWORD_SPECIALS.contains(c)),
    ];
    if classes.contains(&false) {
        return Err(format!(
            "the password must hold an upper-case letter, a lower-case letter, a digit and one \
             of {PASSWORD_SPECIALS}"
        ));
    }
    Ok(())
}

fn check_hostname(hostname: &str) -> Result<(), ApiError> {
    let length = hostname.chars().count();
    if length > MAX_HOSTNAME_CHARS {
        return Err(ApiError::bad_request(
            "INVALID_PARAMETER_HOSTNAME_EXCEED",
            format!(
                "the hostname is {length} characters; at most {MAX_HOSTNAME_CHARS} are allowed"
            ),
        ));
    }
    if !hostname
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
    {
        return Err(ApiError::bad_request(
            "INVALID_PARAMETER_HOSTNAME_MALFORMED",
            "the hostname may only hold letters, digits, `-` and `.`",
        ));
    }
    Ok(())
}

fn success_response(request_id: &str, mut fields: serde_json::Map<String, Value>) -> Response {
    fields.insert("requestId".into(), json!(request_id));
    let body = json!({"requestId": request_id, "response": Value::Object(fields)});
    with_request_id(StatusCode::OK, request_id, body)
}

fn error_response(request_id: &str, error: ApiError) -> Response {
    let body = json!({"requestId": request_id, "code": error.code, "message": error.message});
    let mut response = with_request_id(error.status, request_id, body);
    if error.status == StatusCode::TOO_MANY_REQUESTS {
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(error.retry_after.unwrap_or(1)),
        );
    }
    response
}

fn with_request_id(status: StatusCode, request_id: &str, body: Value) -> Response {
    let mut response = (status, axum::Json(body)).into_response();
    if let Ok(value) = HeaderValue::from_str(request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_policy() {
        assert!(check_password("Abcdef1!").is_ok());
        assert!(check_password("Abcdefg1").is_err(), "no special");
        assert!(check_password("abcdef1!").is_err(), "no upper case");
        assert!(check_password("Ab1!").is_err(), "too short");
        assert!(check_password("Abcdefghijklmn1!x").is_err(), "too long");
        assert!(
            check_password("Abcdef1#").is_err(),
            "# is not an allowed special"
        );
    }

    #[test]
    fn hostname_rules() {
        assert!(check_hostname("web-01.example").is_ok());
        assert_eq!(
            check_hostname(&"a".repeat(65)).unwrap_err().code,
            "INVALID_PARAMETER_HOSTNAME_EXCEED"
        );
        assert_eq!(
            check_hostname("web_01").unwrap_err().code,
            "INVALID_PARAMETER_HOSTNAME_MALFORMED"
        );
    }
}
