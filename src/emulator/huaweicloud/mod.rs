//! Huawei Cloud ECS, CloudDC and IAM, built from the brief (`providers/huaweicloud.md`) and
//! nothing else: real paths and bodies, SDK-HMAC-SHA256 verification (or `X-Auth-Token`),
//! the IAM project listing, ECS jobs, CloudDC batch reinstalls.
//!
//! Error bodies follow the brief's three shapes: the gateway's
//! `{"error_code", "error_msg", "request_id"}`, ECS's `{"error": {"code", "message"}}`,
//! CloudDC's `{"error_code", "error_msg"}`; a failed job query answers `{"code", "message"}`.
//! Codes the brief pins are used as written (`Ecs.0114` unknown server, `Ecs.0011` password,
//! `Ecs.0005` parameter, `APIGW.0301` bad signature). Every other code is the emulator's own
//! and carries `EMULATOR` in it, so nobody mistakes it for Huawei's (e.g. the 409s for a locked,
//! busy or running server, whose real codes are unconfirmed).

pub mod model;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::connect_info::ConnectInfo;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use base64::Engine;
use jiff::{SignedDuration, Timestamp};
use serde_json::{Map, Value, json};

use self::model::{
    ClouddcCallRecord, ClouddcInstall, ClouddcInstance, EcsCallRecord, EcsInstall, EcsJob,
    EcsServer, HuaweiImage, HuaweiInventory, HuaweiWorld, install_duration,
};
use super::faults::{self, Aftermath, Call, CallKind, Outcome, Refusal};
use super::server::{ConnectionHandle, Shared};
use crate::manifest::ProviderType;
use crate::provider::sign::sdk_hmac;

/// Clock skew accepted on `X-Sdk-Date` (the brief: unconfirmed, commonly 15 minutes).
const DATE_SKEW: SignedDuration = SignedDuration::from_mins(15);
const MAX_IDS_PER_READ: usize = 100;
const DEFAULT_CLOUDDC_BATCH_LIMIT: usize = 50;
const USER_DATA_MAX_BYTES: usize = 32 * 1024;
const PASSWORD_SPECIALS: &str = "!@$%^-_=+[{}]:,./?";

/// The routes of the three APIs, merged into the emulator's router.
pub fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/v3/projects", get(handle))
        .route("/v1/{project_id}/cloudservers/detail", get(handle))
        .route("/v1/{project_id}/cloudservers/{server_id}", get(handle))
        .route(
            "/v1/{project_id}/cloudservers/{server_id}/{action}",
            post(handle),
        )
        .route(
            "/v2/{project_id}/cloudservers/{server_id}/{action}",
            post(handle),
        )
        .route("/v1/{project_id}/jobs/{job_id}", get(handle))
        .route("/v1/{project_id}/instances", get(handle))
        .route("/v1/{project_id}/instances/reinstall", put(handle))
        .route(
            "/v1/{project_id}/instances/{instance_id}/status",
            get(handle),
        )
}

/// A failed call, with its body already shaped for the API that answers.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    body: Value,
    /// `Retry-After` of an injected 429, in seconds.
    retry_after: Option<u64>,
}

fn gateway_error(status: StatusCode, code: &str, message: impl Into<String>) -> ApiError {
    ApiError {
        status,
        body: json!({"error_code": code, "error_msg": message.into()}),
        retry_after: None,
    }
}

fn ecs_error(status: StatusCode, code: &str, message: impl Into<String>) -> ApiError {
    ApiError {
        status,
        body: json!({"error": {"code": code, "message": message.into()}}),
        retry_after: None,
    }
}

fn clouddc_error(status: StatusCode, code: &str, message: impl Into<String>) -> ApiError {
    ApiError {
        status,
        body: json!({"error_code": code, "error_msg": message.into()}),
        retry_after: None,
    }
}

fn unauthorized(message: impl Into<String>) -> ApiError {
    // The brief quotes the gateway's text; the code is its placeholder (unconfirmed).
    gateway_error(
        StatusCode::UNAUTHORIZED,
        "APIGW.0301",
        format!(
            "Incorrect IAM authentication information: {}",
            message.into()
        ),
    )
}

fn internal(message: impl Into<String>) -> ApiError {
    gateway_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "EMULATOR.INTERNAL",
        message,
    )
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(connection): ConnectInfo<ConnectionHandle>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request_id = uuid::Uuid::new_v4().simple().to_string();
    let mut retry_after = None;
    let (status, mut body) = match handle_call(&shared, &method, &uri, &headers, &body, &request_id)
        .await
    {
        Ok((status, body, aftermath)) => {
            aftermath.apply(&connection).await;
            (status, body)
        }
        Err(error) => {
            retry_after = error.retry_after;
            tracing::debug!(status = %error.status, body = %error.body, "emulator: huaweicloud error");
            let mut body = error.body;
            if let Some(object) = body.as_object_mut()
                && object.contains_key("error_code")
            {
                object.insert("request_id".into(), json!(request_id));
            }
            (error.status, body)
        }
    };
    if body.is_null() {
        body = json!({});
    }
    let mut response = (status, axum::Json(body)).into_response();
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    if let Some(seconds) = retry_after {
        response
            .headers_mut()
            .insert(axum::http::header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

async fn handle_call(
    shared: &Shared,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    request_id: &str,
) -> Result<(StatusCode, Value, Aftermath), ApiError> {
    let inventory = &shared.inventory.huaweicloud;
    authenticate(inventory, method, uri, headers, body, Timestamp::now())?;
    let segments: Vec<&str> = uri.path().trim_matches('/').split('/').collect();
    let query = sdk_hmac::parse_query(uri.query().unwrap_or_default());
    let call = classify(shared, method, &segments, &query, body).await;
    faults::wait_latency(shared, &call).await;

    let now = Timestamp::now();
    let mut store = shared.world.lock().await;
    if store.world.settle(now) {
        store.save().map_err(|error| internal(error.to_string()))?;
    }
    if let Some(refusal) =
        faults::refusal(&mut store, shared, &call).map_err(|error| internal(error.to_string()))?
    {
        return Err(injected(refusal));
    }
    let served = |store: &mut super::world::WorldStore, (status, body)| {
        faults::aftermath(store, &call, Outcome::Served, &|_| None)
            .map(|aftermath| (status, body, aftermath))
            .map_err(|error| internal(error.to_string()))
    };

    if segments == ["v3", "projects"] {
        let answer = (StatusCode::OK, list_projects(inventory, &query));
        return served(&mut store, answer);
    }
    let (version, project) = match segments.as_slice() {
        [version, project, ..] => (*version, *project),
        _ => return Err(not_found(uri)),
    };
    check_project(inventory, headers, project)?;
    let rest = &segments[2..];
    let default_seconds = shared.inventory.default_install_seconds(None);
    let timing = Timing {
        now,
        override_seconds: shared.install_seconds_override,
        default_seconds,
    };
    // Only the calls that may act change the world: only they keep a copy to compare and to
    // restore (a copy per read made a big world's reads slow).
    let mutating = matches!(
        (method.as_str(), rest),
        ("POST", ["cloudservers", _, "changeos" | "reinstallos"])
            | ("PUT", ["instances", "reinstall"])
    );
    let before = mutating.then(|| store.world.huaweicloud.clone());
    let whole = &mut store.world;
    let world = &mut whole.huaweicloud;
    let shown = Shown {
        faults: &whole.faults,
        now,
    };
    let outcome = match (method.as_str(), version, rest) {
        ("GET", "v1", ["cloudservers", "detail"]) => list_servers(inventory, world, &query, shown),
        ("GET", "v1", ["cloudservers", server_id]) => {
            show_server(inventory, world, server_id, shown)
        }
        (
            "POST",
            "v1" | "v2",
            [
                "cloudservers",
                server_id,
                action @ ("changeos" | "reinstallos"),
            ],
        ) => change_or_reinstall(
            inventory, world, version, server_id, action, body, timing, request_id,
        ),
        ("GET", "v1", ["jobs", job_id]) => show_job(world, job_id, now),
        ("GET", "v1", ["instances"]) => list_instances(inventory, world, &query, shown),
        ("PUT", "v1", ["instances", "reinstall"]) => {
            reinstall_instances(inventory, world, body, timing, request_id)
        }
        ("GET", "v1", ["instances", instance_id, "status"]) => {
            instance_status(world, instance_id, shown)
        }
        _ => Err(not_found(uri)),
    };
    let changed = before.as_ref().is_some_and(|before| world != before);
    let answer = match outcome {
        Ok(answer) => answer,
        Err(error) => {
            if let Some(before) = before {
                store.world.huaweicloud = before;
            }
            return Err(error);
        }
    };
    if changed && let Err(error) = store.save() {
        if let Some(before) = before {
            store.world.huaweicloud = before;
        }
        return Err(internal(error.to_string()));
    }
    let Some(before) = before.filter(|_| call.kind.is_mutating()) else {
        return served(&mut store, answer);
    };
    let shown_before = |id: &str| {
        if call.providers.contains(&ProviderType::HuaweicloudEcs) {
            let server = before.ecs_servers.iter().find(|server| server.id == id);
            server.and_then(faults::record)
        } else {
            let instance = before
                .clouddc_instances
                .iter()
                .find(|instance| instance.id == id);
            instance.and_then(faults::record)
        }
    };
    let aftermath = faults::aftermath(&mut store, &call, Outcome::Acted, &shown_before)
        .map_err(|error| internal(error.to_string()))?;
    Ok((answer.0, answer.1, aftermath))
}

/// What reads show: the truth, or a server as it was before a call whose effect is late.
#[derive(Clone, Copy)]
struct Shown<'a> {
    faults: &'a faults::FaultBook,
    now: Timestamp,
}

impl Shown<'_> {
    fn ecs<'a>(&self, server: &'a EcsServer) -> Cow<'a, EcsServer> {
        faults::as_shown(
            self.faults,
            ProviderType::HuaweicloudEcs,
            &server.id,
            server,
            self.now,
        )
    }

    fn clouddc<'a>(&self, instance: &'a ClouddcInstance) -> Cow<'a, ClouddcInstance> {
        let provider = ProviderType::HuaweicloudClouddc;
        faults::as_shown(self.faults, provider, &instance.id, instance, self.now)
    }
}

/// What the fault menu sees of a call: provider type, kind and the servers it names. A job
/// query names the server of its job.
async fn classify(
    shared: &Shared,
    method: &Method,
    segments: &[&str],
    query: &[(String, String)],
    body: &[u8],
) -> Call {
    let ecs = ProviderType::HuaweicloudEcs;
    let clouddc = ProviderType::HuaweicloudClouddc;
    let listed = |key: &str| -> Vec<String> {
        query_value(query, key)
            .map(|text| {
                text.split(',')
                    .map(str::trim)
                    .filter(|id| !id.is_empty())
                    .map(|id| id.strip_prefix("srv-").unwrap_or(id).to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    let rest = segments.get(2..).unwrap_or_default();
    match (method.as_str(), rest) {
        _ if segments == ["v3", "projects"] => Call::huawei_iam(),
        ("GET", ["cloudservers", "detail"]) => Call::new(ecs, CallKind::Read, listed("server_id")),
        ("GET", ["cloudservers", id]) => Call::new(ecs, CallKind::Read, vec![id.to_string()]),
        ("POST", ["cloudservers", id, "changeos"]) => {
            Call::new(ecs, CallKind::ChangeOs, vec![id.to_string()])
        }
        ("POST", ["cloudservers", id, "reinstallos"]) => {
            Call::new(ecs, CallKind::Reinstall, vec![id.to_string()])
        }
        ("GET", ["jobs", job_id]) => {
            let store = shared.world.lock().await;
            let jobs = &store.world.huaweicloud.jobs;
            let server = jobs.iter().find(|job| job.job_id == *job_id);
            let ids = server.map(|job| vec![job.server_id.clone()]);
            Call::new(ecs, CallKind::Status, ids.unwrap_or_default())
        }
        ("GET", ["instances"]) => {
            let mut ids = listed("instance_id");
            ids.extend(listed("server_id"));
            Call::new(clouddc, CallKind::Read, ids)
        }
        ("PUT", ["instances", "reinstall"]) => {
            let parsed: Option<Value> = serde_json::from_slice(body).ok();
            let ids = parsed
                .as_ref()
                .and_then(|body| body.get("instance_id_set"))
                .and_then(Value::as_array)
                .map(|ids| {
                    ids.iter()
                        .filter_map(|id| id.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            Call::new(clouddc, CallKind::Reinstall, ids)
        }
        ("GET", ["instances", id, "status"]) => {
            Call::new(clouddc, CallKind::Status, vec![id.to_string()])
        }
        (_, ["instances", ..]) => Call::new(clouddc, CallKind::Other, Vec::new()),
        _ => Call::new(ecs, CallKind::Other, Vec::new()),
    }
}

/// An injected fault in the gateway's shape: `APIGW.0308` throttling, or an internal error.
fn injected(refusal: Refusal) -> ApiError {
    match refusal {
        Refusal::ServerError => internal("internal error (injected by the emulator)"),
        Refusal::Throttled {
            retry_after_seconds,
        } => ApiError {
            retry_after: Some(retry_after_seconds),
            ..gateway_error(
                StatusCode::TOO_MANY_REQUESTS,
                "APIGW.0308",
                "The throttling threshold has been reached (injected by the emulator)",
            )
        },
    }
}

fn not_found(uri: &Uri) -> ApiError {
    gateway_error(
        StatusCode::NOT_FOUND,
        "APIGW.0101",
        format!("the API {} does not exist in the emulator", uri.path()),
    )
}

#[derive(Debug, Clone, Copy)]
struct Timing {
    now: Timestamp,
    override_seconds: Option<f64>,
    default_seconds: f64,
}

fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

/// `X-Auth-Token` from the inventory, or an SDK-HMAC-SHA256 signature re-derived from the
/// received request with the `SignedHeaders` it declares (brief §9).
fn authenticate(
    inventory: &HuaweiInventory,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    now: Timestamp,
) -> Result<(), ApiError> {
    if let Some(token) = header_text(headers, "x-auth-token") {
        let known = inventory
            .tokens
            .iter()
            .any(|accepted| sdk_hmac::signatures_match(accepted, token.trim()));
        return if known {
            Ok(())
        } else {
            Err(unauthorized("the token is not valid"))
        };
    }
    let authorization = header_text(headers, "authorization")
        .ok_or_else(|| unauthorized("no Authorization or X-Auth-Token header"))?;
    let parsed = sdk_hmac::parse_authorization(authorization).ok_or_else(|| {
        unauthorized("the Authorization header is not `SDK-HMAC-SHA256 Access=…, SignedHeaders=…, Signature=…`")
    })?;
    let signed: Vec<&str> = parsed.signed_headers.split(';').collect();
    for required in ["host", "x-sdk-date"] {
        if !signed.contains(&required) {
            return Err(unauthorized(format!(
                "`{required}` must be a signed header"
            )));
        }
    }
    let date = header_text(headers, "x-sdk-date")
        .ok_or_else(|| unauthorized("the X-Sdk-Date header is missing"))?;
    let signed_at = jiff::civil::DateTime::strptime(sdk_hmac::DATE_FORMAT, date)
        .ok()
        .and_then(|civil| civil.to_zoned(jiff::tz::TimeZone::UTC).ok())
        .map(|zoned| zoned.timestamp())
        .ok_or_else(|| unauthorized(format!("X-Sdk-Date `{date}` is not YYYYMMDDTHHMMSSZ")))?;
    let skew = now.duration_since(signed_at);
    if skew.abs() > DATE_SKEW {
        return Err(unauthorized(format!(
            "the request is stale: X-Sdk-Date is {} s away from the emulator's clock (at most {} s)",
            skew.as_secs(),
            DATE_SKEW.as_secs()
        )));
    }
    let credential = inventory
        .credentials
        .iter()
        .find(|credential| credential.access_key == parsed.access_key)
        .ok_or_else(|| {
            unauthorized(format!(
                "the access key `{}` is not known",
                parsed.access_key
            ))
        })?;
    let mut received = Vec::with_capacity(signed.len());
    for name in &signed {
        let value = header_text(headers, name)
            .ok_or_else(|| unauthorized(format!("the signed header `{name}` is missing")))?;
        received.push((name.to_string(), value.to_string()));
    }
    let query = sdk_hmac::canonical_query(&sdk_hmac::parse_query(uri.query().unwrap_or_default()));
    let canonical = sdk_hmac::canonical_request(
        method.as_str(),
        uri.path(),
        &query,
        &received,
        &parsed.signed_headers,
        body,
    );
    let expected = sdk_hmac::signature(
        &credential.secret_key,
        &sdk_hmac::string_to_sign(date, &canonical),
    );
    if !sdk_hmac::signatures_match(&expected, &parsed.signature) {
        return Err(unauthorized("verify aksk signature fail"));
    }
    Ok(())
}

fn check_project(
    inventory: &HuaweiInventory,
    headers: &HeaderMap,
    project: &str,
) -> Result<(), ApiError> {
    if !inventory.projects.iter().any(|known| known.id == project) {
        return Err(gateway_error(
            StatusCode::FORBIDDEN,
            "EMULATOR.PROJECT_UNKNOWN",
            format!("project `{project}` is not known to these credentials"),
        ));
    }
    if let Some(header) = header_text(headers, "x-project-id")
        && header != project
    {
        return Err(gateway_error(
            StatusCode::FORBIDDEN,
            "EMULATOR.PROJECT_MISMATCH",
            format!("X-Project-Id `{header}` differs from the project `{project}` in the path"),
        ));
    }
    Ok(())
}

fn query_value<'a>(query: &'a [(String, String)], key: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(name, _)| name == key)
        .map(|(_, value)| value.as_str())
}

fn parameter_error(api: Api, message: impl Into<String>) -> ApiError {
    match api {
        Api::Ecs => ecs_error(StatusCode::BAD_REQUEST, "Ecs.0005", message),
        Api::Clouddc => clouddc_error(
            StatusCode::BAD_REQUEST,
            "CLOUDDC.EMULATOR.INVALID_PARAMETER",
            message,
        ),
    }
}

#[derive(Clone, Copy)]
enum Api {
    Ecs,
    Clouddc,
}

/// A comma-separated id list of at most 100 ids.
fn id_list(
    api: Api,
    query: &[(String, String)],
    key: &str,
) -> Result<Option<Vec<String>>, ApiError> {
    let Some(text) = query_value(query, key) else {
        return Ok(None);
    };
    let ids: Vec<String> = text
        .split(',')
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .map(str::to_string)
        .collect();
    if ids.len() > MAX_IDS_PER_READ {
        return Err(parameter_error(
            api,
            format!(
                "{key} holds {} ids; at most {MAX_IDS_PER_READ} are allowed",
                ids.len()
            ),
        ));
    }
    Ok(Some(ids))
}

fn number(api: Api, query: &[(String, String)], key: &str) -> Result<Option<usize>, ApiError> {
    query_value(query, key)
        .map(|text| {
            text.parse::<usize>().map_err(|_| {
                parameter_error(api, format!("{key} must be a whole number, not `{text}`"))
            })
        })
        .transpose()
}

// ---------------------------------------------------------------------------------------------
// IAM

fn list_projects(inventory: &HuaweiInventory, query: &[(String, String)]) -> Value {
    let name = query_value(query, "name");
    let projects: Vec<Value> = inventory
        .projects
        .iter()
        .filter(|project| name.is_none_or(|name| project.name == name))
        .map(|project| {
            json!({
                "id": project.id,
                "name": project.name,
                "domain_id": "emulator-domain",
                "enabled": true,
                "is_domain": false,
                "parent_id": "emulator-domain",
                "description": "",
            })
        })
        .collect();
    json!({"projects": projects, "links": {"self": "/v3/projects", "next": null, "previous": null}})
}

// ---------------------------------------------------------------------------------------------
// ECS

fn find_image<'a>(images: &'a [HuaweiImage], id: &str) -> Option<&'a HuaweiImage> {
    images.iter().find(|image| image.id == id)
}

fn vm_state(status: &str) -> &'static str {
    match status {
        "ACTIVE" | "REBUILD" | "REBOOT" | "HARD_REBOOT" | "MIGRATING" => "active",
        "SHUTOFF" => "stopped",
        "ERROR" => "error",
        "BUILD" => "building",
        "DELETED" | "SOFT_DELETED" => "deleted",
        "PAUSED" => "paused",
        "SUSPENDED" => "suspended",
        "SHELVED" | "SHELVED_OFFLOADED" => "shelved",
        "RESIZE" | "REVERT_RESIZE" | "VERIFY_RESIZE" => "resized",
        _ => "unknown",
    }
}

fn server_detail(inventory: &HuaweiInventory, server: &EcsServer) -> Value {
    let image = find_image(&inventory.ecs.images, &server.image_id);
    json!({
        "id": server.id,
        "name": server.name,
        "status": server.status,
        "locked": server.locked,
        "key_name": server.key_name,
        "image": {"id": server.image_id},
        "flavor": {"id": "s6.large.2", "name": "s6.large.2"},
        "metadata": {
            "image_name": image.map(|image| image.name.clone()),
            "metering.image_id": server.image_id,
            "os_type": image.map(|image| image.os_type.clone()),
        },
        "OS-EXT-STS:vm_state": vm_state(&server.status),
        "OS-EXT-STS:task_state": server.task_state,
        "OS-EXT-STS:power_state": if server.status == "ACTIVE" { 1 } else { 4 },
        "OS-EXT-SRV-ATTR:hostname": server.hostname,
        "OS-EXT-AZ:availability_zone": "emulator-az1",
        "fault": server.fault.as_ref().map(|message| json!({"code": 500, "message": message})),
    })
}

/// What ECS lists for an id it does not know (brief §3.2).
fn unknown_server(id: &str) -> Value {
    json!({
        "id": id,
        "name": null,
        "status": null,
        "locked": null,
        "image": null,
        "metadata": null,
        "OS-EXT-STS:task_state": null,
        "fault": {"code": 404, "message": "Ecs.0114: the server does not exist"},
    })
}

fn list_servers(
    inventory: &HuaweiInventory,
    world: &HuaweiWorld,
    query: &[(String, String)],
    shown: Shown<'_>,
) -> Result<(StatusCode, Value), ApiError> {
    let limit = number(Api::Ecs, query, "limit")?.unwrap_or(25);
    if !(1..=1000).contains(&limit) {
        return Err(parameter_error(
            Api::Ecs,
            format!("limit must be 1 to 1000, not {limit}"),
        ));
    }
    if let Some(ids) = id_list(Api::Ecs, query, "server_id")? {
        // With server_id, every other filter is ignored (brief §3.2). An index: a world of many
        // servers is searched once per call, not once per id.
        let by_id: std::collections::HashMap<&str, &EcsServer> = world
            .ecs_servers
            .iter()
            .map(|server| (server.id.as_str(), server))
            .collect();
        let servers: Vec<Value> = ids
            .iter()
            .map(|id| match by_id.get(id.as_str()) {
                Some(server) => server_detail(inventory, &shown.ecs(server)),
                None => unknown_server(id),
            })
            .collect();
        return Ok((
            StatusCode::OK,
            json!({"count": servers.len(), "servers": servers}),
        ));
    }
    let offset = number(Api::Ecs, query, "offset")?.unwrap_or(1).max(1);
    let status = query_value(query, "status");
    let all: Vec<Cow<EcsServer>> = world
        .ecs_servers
        .iter()
        .map(|server| shown.ecs(server))
        .collect();
    let matching: Vec<&EcsServer> = all
        .iter()
        .map(|server| server.as_ref())
        .filter(|server| status.is_none_or(|status| server.status == status))
        .collect();
    let servers: Vec<Value> = matching
        .iter()
        .skip((offset - 1).saturating_mul(limit))
        .take(limit)
        .map(|server| server_detail(inventory, server))
        .collect();
    Ok((
        StatusCode::OK,
        json!({"count": matching.len(), "servers": servers}),
    ))
}

fn show_server(
    inventory: &HuaweiInventory,
    world: &HuaweiWorld,
    server_id: &str,
    shown: Shown<'_>,
) -> Result<(StatusCode, Value), ApiError> {
    let server = world
        .ecs_servers
        .iter()
        .find(|server| server.id == server_id)
        .ok_or_else(|| server_not_found(server_id))?;
    Ok((
        StatusCode::OK,
        json!({"server": server_detail(inventory, &shown.ecs(server))}),
    ))
}

fn server_not_found(server_id: &str) -> ApiError {
    ecs_error(
        StatusCode::NOT_FOUND,
        "Ecs.0114",
        format!("the ECS `{server_id}` does not exist"),
    )
}

/// The fields each of the four calls accepts (brief §4.1).
const CHANGE_FIELDS: [&str; 7] = [
    "adminpass",
    "keyname",
    "userid",
    "imageid",
    "mode",
    "isAutoPay",
    "metadata",
];
const REINSTALL_FIELDS: [&str; 5] = ["adminpass", "keyname", "userid", "mode", "metadata"];
const METADATA_FIELDS_V1: [&str; 3] = ["__system__encrypted", "__system__cmkid", "BYOL"];
const METADATA_FIELDS_V2: [&str; 4] = [
    "user_data",
    "__system__encrypted",
    "__system__cmkid",
    "BYOL",
];

fn optional_string(fields: &Map<String, Value>, key: &str) -> Result<Option<String>, ApiError> {
    match fields.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) if text.is_empty() => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        // The value is not echoed: it could be a password.
        Some(_) => Err(parameter_error(
            Api::Ecs,
            format!("`{key}` must be a string"),
        )),
    }
}

#[allow(clippy::too_many_arguments)]
fn change_or_reinstall(
    inventory: &HuaweiInventory,
    world: &mut HuaweiWorld,
    version: &str,
    server_id: &str,
    action: &str,
    body: &[u8],
    timing: Timing,
    request_id: &str,
) -> Result<(StatusCode, Value), ApiError> {
    let change = action == "changeos";
    let v2 = version == "v2";
    let root_key = if change { "os-change" } else { "os-reinstall" };
    let parsed: Value = serde_json::from_slice(body)
        .map_err(|error| parameter_error(Api::Ecs, format!("the body is not JSON: {error}")))?;
    let root = parsed.as_object().filter(|root| root.len() == 1);
    let fields = root
        .and_then(|root| root.get(root_key))
        .and_then(Value::as_object)
        .ok_or_else(|| {
            parameter_error(
                Api::Ecs,
                format!("the body must be `{{\"{root_key}\": {{…}}}}`"),
            )
        })?;
    let allowed: &[&str] = if change {
        &CHANGE_FIELDS
    } else {
        &REINSTALL_FIELDS
    };
    if let Some(unknown) = fields.keys().find(|key| !allowed.contains(&key.as_str())) {
        return Err(parameter_error(
            Api::Ecs,
            format!("`{unknown}` is not a field of {root_key} ({version})"),
        ));
    }
    let adminpass = optional_string(fields, "adminpass")?;
    let keyname = optional_string(fields, "keyname")?;
    let userid = optional_string(fields, "userid")?;
    let mode = optional_string(fields, "mode")?;
    let imageid = optional_string(fields, "imageid")?;
    let metadata = match fields.get("metadata") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(metadata)) => metadata.clone(),
        Some(_) => return Err(parameter_error(Api::Ecs, "`metadata` must be an object")),
    };
    let metadata_allowed: &[&str] = if v2 {
        &METADATA_FIELDS_V2
    } else {
        &METADATA_FIELDS_V1
    };
    if let Some(unknown) = metadata
        .keys()
        .find(|key| !metadata_allowed.contains(&key.as_str()))
    {
        return Err(parameter_error(
            Api::Ecs,
            format!("`metadata.{unknown}` is not accepted by the {version} call"),
        ));
    }
    let user_data = optional_string(&metadata, "user_data")?;
    if let Some(mode) = &mode
        && mode != "withStopServer"
    {
        return Err(parameter_error(
            Api::Ecs,
            format!("`mode` must be `withStopServer`, not `{mode}`"),
        ));
    }
    if v2 {
        if adminpass.is_some() && keyname.is_some() {
            return Err(parameter_error(
                Api::Ecs,
                "`adminpass` and `keyname` cannot both be set",
            ));
        }
        if adminpass.is_none() && keyname.is_none() && user_data.is_none() {
            return Err(parameter_error(
                Api::Ecs,
                "without `adminpass` and `keyname`, `metadata.user_data` must be set",
            ));
        }
    } else if adminpass.is_none() && keyname.is_none() {
        return Err(parameter_error(
            Api::Ecs,
            "`adminpass` and `keyname` cannot both be empty",
        ));
    } else if adminpass.is_some() && keyname.is_some() {
        return Err(parameter_error(
            Api::Ecs,
            "`adminpass` and `keyname` cannot both be set",
        ));
    }
    if let Some(password) = &adminpass
        && let Err(problem) = check_password(password)
    {
        return Err(ecs_error(StatusCode::BAD_REQUEST, "Ecs.0011", problem));
    }
    if let Some(user_data) = &user_data {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(user_data)
            .map_err(|_| parameter_error(Api::Ecs, "`metadata.user_data` must be base64"))?;
        if decoded.len() > USER_DATA_MAX_BYTES {
            return Err(parameter_error(
                Api::Ecs,
                format!(
                    "decoded user data is {} bytes; at most {USER_DATA_MAX_BYTES}",
                    decoded.len()
                ),
            ));
        }
    }
    let server = world
        .ecs_servers
        .iter()
        .find(|server| server.id == server_id)
        .ok_or_else(|| server_not_found(server_id))?;
    let image_id = if change {
        let image_id = imageid.ok_or_else(|| parameter_error(Api::Ecs, "`imageid` is required"))?;
        if find_image(&inventory.ecs.images, &image_id).is_none() {
            return Err(parameter_error(
                Api::Ecs,
                format!("image `{image_id}` does not exist"),
            ));
        }
        image_id
    } else {
        // Reinstall never changes the image (brief §0.1).
        server.image_id.clone()
    };
    if server.locked {
        return Err(ecs_error(
            StatusCode::CONFLICT,
            "EMULATOR.ECS.LOCKED",
            format!("the ECS `{server_id}` is locked"),
        ));
    }
    if let Some(task_state) = &server.task_state {
        return Err(ecs_error(
            StatusCode::CONFLICT,
            "EMULATOR.ECS.BUSY",
            format!("the ECS `{server_id}` is busy (task state {task_state})"),
        ));
    }
    let status_after = match (server.status.as_str(), mode.is_some()) {
        ("ACTIVE", true) => "ACTIVE",
        ("ACTIVE", false) => {
            return Err(ecs_error(
                StatusCode::CONFLICT,
                "EMULATOR.ECS.NOT_STOPPED",
                "the ECS is running; stop it or pass mode withStopServer",
            ));
        }
        ("SHUTOFF", _) => "SHUTOFF",
        // A failed reinstall/change may be tried again; the server then comes back stopped.
        ("ERROR", _) => "SHUTOFF",
        (other, _) => {
            return Err(ecs_error(
                StatusCode::CONFLICT,
                "EMULATOR.ECS.BUSY",
                format!(
                    "the ECS is {other}; only ACTIVE, SHUTOFF or ERROR servers can be reinstalled"
                ),
            ));
        }
    };
    let server = world
        .ecs_server_mut(server_id)
        .ok_or_else(|| server_not_found(server_id))?;
    let duration = install_duration(
        timing.override_seconds,
        server.install_seconds,
        timing.default_seconds,
    );
    let done_at = timing.now.checked_add(duration).unwrap_or(Timestamp::MAX);
    let job_id = uuid::Uuid::new_v4().simple().to_string();
    let ends_in_failure = std::mem::take(&mut server.fail_next_install);
    server.install = Some(EcsInstall {
        job_id: job_id.clone(),
        image_id: image_id.clone(),
        key_name: keyname.clone(),
        status_after: status_after.to_string(),
        done_at,
        ends_in_failure,
    });
    server.status = "REBUILD".to_string();
    server.task_state = Some("rebuilding".to_string());
    server.reinstall_count += 1;
    world.jobs.push(EcsJob {
        job_id: job_id.clone(),
        job_type: if change { "changeOS" } else { "reinstallOS" }.to_string(),
        server_id: server_id.to_string(),
        begin: timing.now,
        done_at,
        ends_in_failure,
    });
    world.ecs_calls.push(EcsCallRecord {
        server_id: server_id.to_string(),
        call: action.to_string(),
        version: version.to_string(),
        image_id,
        mode,
        password_given: adminpass.is_some(),
        key_name: keyname,
        user_id: userid,
        user_data_given: user_data.is_some(),
        job_id: job_id.clone(),
        request_id: request_id.to_string(),
        at: timing.now,
    });
    tracing::info!(
        server = server_id,
        action,
        version,
        job_id,
        "emulator: ECS call accepted"
    );
    Ok((StatusCode::OK, json!({"job_id": job_id})))
}

fn show_job(
    world: &HuaweiWorld,
    job_id: &str,
    now: Timestamp,
) -> Result<(StatusCode, Value), ApiError> {
    let Some(job) = world.jobs.iter().find(|job| job.job_id == job_id) else {
        // A failed job query answers with `code` and `message` (brief §5.1).
        return Err(ApiError {
            status: StatusCode::NOT_FOUND,
            body: json!({"code": "EMULATOR.JOB_NOT_FOUND", "message": format!("job `{job_id}` does not exist")}),
            retry_after: None,
        });
    };
    let status = job.status(now);
    let finished = matches!(status, "SUCCESS" | "FAIL");
    let (error_code, fail_reason, sub_message) = if status == "FAIL" {
        (
            Some("Ecs.EMULATOR.INSTALL_FAILED"),
            Some("the OS change failed (injected by the emulator)"),
            Some("Ecs.EMULATOR.INSTALL_FAILED: the system disk could not be rebuilt"),
        )
    } else {
        (None, None, None)
    };
    let end_time = finished.then(|| {
        job.done_at
            .strftime("%Y-%m-%dT%H:%M:%S.000+0000")
            .to_string()
    });
    let begin_time = job.begin.strftime("%Y-%m-%dT%H:%M:%S.000+0000").to_string();
    Ok((
        StatusCode::OK,
        json!({
            "status": status,
            "job_id": job.job_id,
            "job_type": job.job_type,
            "begin_time": begin_time,
            "end_time": end_time,
            "error_code": error_code,
            "fail_reason": fail_reason,
            "entities": {
                "server_id": job.server_id,
                "sub_jobs_total": 1,
                "sub_jobs": [{
                    "status": status,
                    "job_id": format!("{}-1", job.job_id),
                    "job_type": job.job_type,
                    "begin_time": begin_time,
                    "end_time": end_time,
                    "error_code": error_code,
                    "fail_reason": fail_reason,
                    "entities": {"server_id": job.server_id, "errorcode_message": sub_message},
                }],
            },
        }),
    ))
}

// ---------------------------------------------------------------------------------------------
// CloudDC

fn instance_json(inventory: &HuaweiInventory, instance: &ClouddcInstance) -> Value {
    let image = find_image(&inventory.clouddc.images, &instance.image_id);
    let created = instance.created_at.to_string();
    json!({
        "id": instance.id,
        "name": instance.name,
        "image": {
            "id": instance.image_id,
            "name": image.map(|image| image.name.clone()),
            "os_type": image.map(|image| image.os_type.clone()),
        },
        "state": instance.state,
        "operation_state": instance.operation_state,
        "error": instance.error.as_ref().map(|(code, message)| json!({
            "error_code": code, "error_msg": message, "error_type": "reinstall",
        })),
        "server_id": format!("srv-{}", instance.id),
        "vpc_id": null,
        "network_interfaces": [],
        "tags": [],
        "metadata": {},
        "user_data": null,
        "description": null,
        "created_at": created,
        "updated_at": created,
        "launched_at": created,
    })
}

fn list_instances(
    inventory: &HuaweiInventory,
    world: &HuaweiWorld,
    query: &[(String, String)],
    shown: Shown<'_>,
) -> Result<(StatusCode, Value), ApiError> {
    let instance_ids = id_list(Api::Clouddc, query, "instance_id")?;
    let server_ids = id_list(Api::Clouddc, query, "server_id")?;
    if instance_ids.is_some() && server_ids.is_some() {
        return Err(parameter_error(
            Api::Clouddc,
            "instance_id and server_id are mutually exclusive",
        ));
    }
    // Values below 10 become 10 (brief §7.1).
    let mut limit = number(Api::Clouddc, query, "limit")?
        .unwrap_or(10)
        .clamp(10, 1000);
    if let Some(cap) = inventory.clouddc.max_page_size {
        limit = limit.min(cap);
    }
    let state = query_value(query, "instance_state");
    // Sets: a world of many instances is filtered in one pass, not once per id.
    let instance_ids: Option<std::collections::HashSet<String>> =
        instance_ids.map(|ids| ids.into_iter().collect());
    let server_ids: Option<std::collections::HashSet<String>> =
        server_ids.map(|ids| ids.into_iter().collect());
    let all: Vec<Cow<ClouddcInstance>> = world
        .clouddc_instances
        .iter()
        .filter(|instance| {
            instance_ids
                .as_ref()
                .is_none_or(|ids| ids.contains(&instance.id))
        })
        .filter(|instance| {
            server_ids
                .as_ref()
                .is_none_or(|ids| ids.contains(&format!("srv-{}", instance.id)))
        })
        .map(|instance| shown.clouddc(instance))
        .collect();
    let matching: Vec<&ClouddcInstance> = all
        .iter()
        .map(|instance| instance.as_ref())
        .filter(|instance| state.is_none_or(|state| instance.state == state))
        .collect();
    let start = match query_value(query, "marker") {
        None => 0,
        Some(marker) => matching
            .iter()
            .position(|instance| instance.id == marker)
            .map(|position| position + 1)
            .ok_or_else(|| {
                parameter_error(
                    Api::Clouddc,
                    format!("marker `{marker}` is not an instance"),
                )
            })?,
    };
    let page: Vec<&ClouddcInstance> = matching.iter().skip(start).take(limit).copied().collect();
    let more = start + page.len() < matching.len();
    let next_marker = if more {
        page.last().map(|instance| instance.id.clone())
    } else {
        None
    };
    let previous_marker = start
        .checked_sub(1)
        .and_then(|index| matching.get(index))
        .map(|instance| instance.id.clone());
    let instances: Vec<Value> = page
        .iter()
        .map(|instance| instance_json(inventory, instance))
        .collect();
    Ok((
        StatusCode::OK,
        json!({
            "instances": instances,
            "page_info": {
                "next_marker": next_marker,
                "previous_marker": previous_marker,
                "current_count": page.len(),
            },
            "count": matching.len(),
        }),
    ))
}

fn instance_status(
    world: &HuaweiWorld,
    instance_id: &str,
    shown: Shown<'_>,
) -> Result<(StatusCode, Value), ApiError> {
    let instance = world
        .clouddc_instances
        .iter()
        .find(|instance| instance.id == instance_id)
        .ok_or_else(|| instance_not_found(instance_id))?;
    let instance = shown.clouddc(instance);
    Ok((
        StatusCode::OK,
        json!({
            "state": instance.state,
            "operation_state": instance.operation_state,
            "error": instance.error.as_ref().map(|(code, message)| json!({"error_code": code, "error_msg": message})),
        }),
    ))
}

fn instance_not_found(instance_id: &str) -> ApiError {
    clouddc_error(
        StatusCode::NOT_FOUND,
        "CLOUDDC.EMULATOR.INSTANCE_NOT_FOUND",
        format!("instance `{instance_id}` does not exist"),
    )
}

fn reinstall_instances(
    inventory: &HuaweiInventory,
    world: &mut HuaweiWorld,
    body: &[u8],
    timing: Timing,
    request_id: &str,
) -> Result<(StatusCode, Value), ApiError> {
    let parsed: Value = serde_json::from_slice(body)
        .map_err(|error| parameter_error(Api::Clouddc, format!("the body is not JSON: {error}")))?;
    let fields = parsed
        .as_object()
        .ok_or_else(|| parameter_error(Api::Clouddc, "the body must be a JSON object"))?;
    if let Some(unknown) = fields
        .keys()
        .find(|key| !["image_id", "password", "instance_id_set"].contains(&key.as_str()))
    {
        return Err(parameter_error(
            Api::Clouddc,
            format!("`{unknown}` is not a field of the reinstall call"),
        ));
    }
    let password = match fields.get("password") {
        Some(Value::String(password)) if !password.is_empty() => password.clone(),
        _ => {
            return Err(parameter_error(
                Api::Clouddc,
                "`password` (a string) is required",
            ));
        }
    };
    if let Err(problem) = check_password(&password) {
        return Err(clouddc_error(
            StatusCode::BAD_REQUEST,
            "CLOUDDC.EMULATOR.PASSWORD_POLICY",
            problem,
        ));
    }
    let image_id = match fields.get("image_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) if text.is_empty() => None,
        Some(Value::String(text)) => Some(text.clone()),
        Some(_) => return Err(parameter_error(Api::Clouddc, "`image_id` must be a string")),
    };
    if let Some(image_id) = &image_id
        && find_image(&inventory.clouddc.images, image_id).is_none()
    {
        return Err(parameter_error(
            Api::Clouddc,
            format!("image `{image_id}` does not exist"),
        ));
    }
    let ids: Vec<String> = match fields.get("instance_id_set") {
        Some(Value::Array(list)) => list
            .iter()
            .map(|id| id.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| parameter_error(Api::Clouddc, "`instance_id_set` must hold strings"))?,
        _ => {
            return Err(parameter_error(
                Api::Clouddc,
                "`instance_id_set` (a list) is required",
            ));
        }
    };
    let limit = inventory
        .clouddc
        .reinstall_batch_limit
        .unwrap_or(DEFAULT_CLOUDDC_BATCH_LIMIT);
    if ids.is_empty() || ids.len() > limit {
        return Err(parameter_error(
            Api::Clouddc,
            format!(
                "`instance_id_set` holds {} ids; 1 to {limit} are allowed",
                ids.len()
            ),
        ));
    }
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    if unique.len() != ids.len() {
        return Err(parameter_error(
            Api::Clouddc,
            "`instance_id_set` lists an id twice",
        ));
    }
    // All or nothing: every instance must exist and be running (brief §7.3).
    for id in &ids {
        let instance = world
            .clouddc_instances
            .iter()
            .find(|instance| &instance.id == id)
            .ok_or_else(|| instance_not_found(id))?;
        if instance.state != "running" {
            return Err(clouddc_error(
                StatusCode::BAD_REQUEST,
                "CLOUDDC.EMULATOR.STATE_NOT_RUNNING",
                format!(
                    "instance `{id}` is {}; only running instances can be reinstalled",
                    instance.state
                ),
            ));
        }
    }
    for id in &ids {
        if let Some(instance) = world.clouddc_instance_mut(id) {
            let duration = install_duration(
                timing.override_seconds,
                instance.install_seconds,
                timing.default_seconds,
            );
            instance.install = Some(ClouddcInstall {
                image_id: image_id
                    .clone()
                    .unwrap_or_else(|| instance.image_id.clone()),
                done_at: timing.now.checked_add(duration).unwrap_or(Timestamp::MAX),
                ends_in_failure: std::mem::take(&mut instance.fail_next_install),
            });
            instance.state = "pending".to_string();
            instance.operation_state = Some("reinstall-processing".to_string());
            instance.error = None;
            instance.reinstall_count += 1;
        }
    }
    world.clouddc_calls.push(ClouddcCallRecord {
        instance_ids: ids.clone(),
        image_id,
        password_given: true,
        request_id: request_id.to_string(),
        at: timing.now,
    });
    tracing::info!(
        instances = ids.len(),
        "emulator: CloudDC batch reinstall accepted"
    );
    let accepted: Vec<Value> = ids.iter().map(|id| json!({"id": id})).collect();
    Ok((StatusCode::ACCEPTED, json!({"instances": accepted})))
}

/// 8–26 characters; at least three classes; only letters, digits and the listed specials; not
/// containing `root`/`administrator` or their reverse. The offending characters are never named.
fn check_password(password: &str) -> Result<(), String> {
    let length = password.chars().count();
    if !(8..=26).contains(&length) {
        return Err(format!(
            "the password must be 8 to 26 characters, not {length}"
        ));
    }
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
    if classes.iter().filter(|present| **present).count() < 3 {
        return Err("the password must hold at least three of: upper case, lower case, digits, special characters".to_string());
    }
    let lower = password.to_ascii_lowercase();
    for name in ["root", "administrator"] {
        let reversed: String = name.chars().rev().collect();
        if lower.contains(name) || lower.contains(&reversed) {
            return Err("the password must not contain the user name or its reverse".to_string());
        }
    }
    Ok(())
}

/// The endpoint printed for both services: the emulator's root (the APIs have distinct paths).
pub fn endpoints(address: std::net::SocketAddr) -> BTreeMap<crate::manifest::ProviderType, String> {
    let base = format!("http://{address}");
    BTreeMap::from([
        (crate::manifest::ProviderType::HuaweicloudEcs, base.clone()),
        (crate::manifest::ProviderType::HuaweicloudClouddc, base),
    ])
}

#[cfg(test)]
mod tests;
