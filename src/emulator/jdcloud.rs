//! JD Cloud physical servers (CPS) OpenAPI, built from the brief (`providers/jdcloud.md`) and
//! nothing else: `/v1/regions/{regionId}/instances[/{id}[:action]]` and `/os`, the
//! `{requestId, result | error}` envelope, JDCLOUD2 and JDCLOUD3 signatures.
//!
//! Lifecycle: `running` →(stopInstance)→ `stopping` → `stopped` →(reinstallInstance)→
//! `installing` → `running` (or `error` when a failure was injected). A reinstall is refused
//! unless the server is `stopped`. A `clientToken` seen before returns the first result with no
//! side effect. Choices the brief leaves open (all **unconfirmed** against the real API):
//! - error `status` words are gRPC-style: 400 `INVALID_ARGUMENT`, 400 `FAILED_PRECONDITION`
//!   (wrong power state), 401 `UNAUTHENTICATED` (signature), 403 `PERMISSION_DENIED`
//!   (operation protection; the message says "MFA"), 404 `NOT_FOUND`, 429 `RESOURCE_EXHAUSTED`,
//!   500 `INTERNAL`;
//! - only accepted calls are remembered by their `clientToken`; a token reused for another
//!   call is refused (`INVALID_ARGUMENT`);
//! - the signature date may be 15 minutes off, and a nonce is refused when seen again within
//!   that window;
//! - `az` cannot change (a physical server does not move); a changed data RAID needs
//!   `keepData: no`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{LazyLock, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::faults::{self, Aftermath, CallKind, Outcome, Refusal};
use super::inventory::Inventory;
use super::server::{ConnectionHandle, Shared};
use super::world::World;
use crate::manifest::ProviderType;
use crate::provider::sign::jdcloud as sign;

/// The path prefix of the API; the emulator's endpoint for `jdcloud-cps` is its base URL.
pub const PATH_PREFIX: &str = "/v1/regions";
const SERVICE: &str = "cps";
const SKEW_SECONDS: i64 = 15 * 60;
const DEFAULT_PAGE_SIZE: usize = 10;
const MAX_PAGE_SIZE: usize = 100;
const DEFAULT_STOP_SECONDS: f64 = 1.0;
const MAX_CLIENT_TOKEN_CHARS: usize = 36;

// ---------------------------------------------------------------------------------------------
// Inventory

/// The `jdcloud:` section of the inventory.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct JdcloudInventory {
    /// Access keys accepted for signing (fake ones: this is an emulator).
    #[serde(default)]
    pub credentials: Vec<JdcloudCredential>,
    /// How long `stopping` lasts, in seconds (default 1).
    #[serde(default)]
    pub stop_seconds: Option<f64>,
    /// What `describeOS` lists.
    #[serde(default)]
    pub os: Vec<JdcloudOs>,
    #[serde(default)]
    pub servers: Vec<JdcloudServerSpec>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct JdcloudCredential {
    pub access_key: String,
    pub secret_key: String,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct JdcloudOs {
    pub os_type_id: String,
    pub os_name: String,
    #[serde(default)]
    pub os_type: Option<String>,
    #[serde(default)]
    pub os_version: Option<String>,
    /// The device type it is offered for; every device type when absent.
    #[serde(default)]
    pub device_type: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct JdcloudServerSpec {
    pub id: String,
    pub name: String,
    pub region: String,
    pub az: String,
    #[serde(default = "default_device_type")]
    pub device_type: String,
    #[serde(default = "default_status")]
    pub status: JdStatus,
    pub os_type_id: String,
    /// As describe answers write it (`Standard`).
    #[serde(default = "default_image_type")]
    pub image_type: String,
    pub sys_raid_type_id: String,
    #[serde(default)]
    pub data_raid_type_id: Option<String>,
    #[serde(default)]
    pub fail_next_install: bool,
    /// Stop and reinstall calls are refused as if operation protection (MFA) were on.
    #[serde(default)]
    pub operation_protection: bool,
    #[serde(default)]
    pub install_seconds: Option<f64>,
}

fn default_device_type() -> String {
    "cps.c.normal".to_string()
}

fn default_status() -> JdStatus {
    JdStatus::Running
}

fn default_image_type() -> String {
    "Standard".to_string()
}

/// The statuses the emulator uses, spelt as on the wire.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum JdStatus {
    Running,
    Stopping,
    Stopped,
    Starting,
    Installing,
    Error,
}

impl JdStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Stopping => "stopping",
            Self::Stopped => "stopped",
            Self::Starting => "starting",
            Self::Installing => "installing",
            Self::Error => "error",
        }
    }
}

/// Rules serde cannot express.
pub fn check_inventory(inventory: &JdcloudInventory) -> Result<(), String> {
    let mut ids = BTreeSet::new();
    for server in &inventory.servers {
        if !ids.insert(server.id.as_str()) {
            return Err(format!("jdcloud server id `{}` is listed twice", server.id));
        }
        if let Some(seconds) = server.install_seconds
            && !(seconds.is_finite() && seconds >= 0.0)
        {
            return Err(format!(
                "jdcloud server {} install_seconds must be ≥ 0, not {seconds}",
                server.id
            ));
        }
    }
    if let Some(seconds) = inventory.stop_seconds
        && !(seconds.is_finite() && seconds >= 0.0)
    {
        return Err(format!("jdcloud stop_seconds must be ≥ 0, not {seconds}"));
    }
    let mut keys = BTreeSet::new();
    for credential in &inventory.credentials {
        if !keys.insert(credential.access_key.as_str()) {
            return Err(format!(
                "jdcloud access key `{}` is listed twice",
                credential.access_key
            ));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// World

/// The JD part of the persisted world.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct JdcloudWorld {
    pub servers: Vec<JdcloudServer>,
    /// Accepted mutating calls by `clientToken`.
    pub tokens: BTreeMap<String, TokenRecord>,
    /// Calls answered from `tokens` without acting.
    pub token_replays: u64,
    pub reinstall_log: Vec<JdReinstallRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct JdcloudServer {
    pub id: String,
    pub name: String,
    pub region: String,
    pub az: String,
    pub device_type: String,
    pub status: JdStatus,
    pub os_type_id: String,
    pub image_type: String,
    pub sys_raid_type_id: String,
    pub data_raid_type_id: Option<String>,
    pub hostname: Option<String>,
    pub keypair_id: Option<String>,
    pub fail_next_install: bool,
    pub operation_protection: bool,
    pub install_seconds: Option<f64>,
    pub stop_count: u64,
    pub reinstall_count: u64,
    /// Reinstalls sent with `keepData: no`.
    pub data_wipe_count: u64,
    pub transition: Option<Transition>,
}

/// A state change under way, settled when its time has come.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Transition {
    pub done_at: Timestamp,
    /// `None` for a stop.
    pub install: Option<InstallTarget>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct InstallTarget {
    pub os_type_id: String,
    pub image_type: String,
    pub sys_raid_type_id: String,
    pub data_raid_type_id: Option<String>,
    pub hostname: Option<String>,
    pub keypair_id: Option<String>,
    pub ends_in_failure: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TokenRecord {
    pub action: String,
    pub instance_id: String,
    pub request_id: String,
    pub at: Timestamp,
}

/// One accepted reinstall. The password is never kept, nor the user data (only its digest).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct JdReinstallRecord {
    pub server_id: String,
    pub os_type_id: String,
    pub az: String,
    pub image_type: String,
    pub sys_raid_type_id: String,
    pub data_raid_type_id: Option<String>,
    pub keep_data: String,
    pub hostname: Option<String>,
    pub keypair_id: Option<String>,
    pub password_given: bool,
    /// SHA-256 of the decoded user data.
    pub user_data_sha256: Option<String>,
    pub client_token: Option<String>,
    pub request_id: String,
    pub signature_version: String,
    pub at: Timestamp,
}

impl JdcloudWorld {
    pub fn from_inventory(inventory: &JdcloudInventory) -> JdcloudWorld {
        JdcloudWorld {
            servers: inventory
                .servers
                .iter()
                .map(|spec| JdcloudServer {
                    id: spec.id.clone(),
                    name: spec.name.clone(),
                    region: spec.region.clone(),
                    az: spec.az.clone(),
                    device_type: spec.device_type.clone(),
                    status: spec.status,
                    os_type_id: spec.os_type_id.clone(),
                    image_type: spec.image_type.clone(),
                    sys_raid_type_id: spec.sys_raid_type_id.clone(),
                    data_raid_type_id: spec.data_raid_type_id.clone(),
                    hostname: None,
                    keypair_id: None,
                    fail_next_install: spec.fail_next_install,
                    operation_protection: spec.operation_protection,
                    install_seconds: spec.install_seconds,
                    stop_count: 0,
                    reinstall_count: 0,
                    data_wipe_count: 0,
                    transition: None,
                })
                .collect(),
            ..JdcloudWorld::default()
        }
    }

    /// Finishes every stop and install whose time has come. Returns whether anything changed.
    pub fn settle(&mut self, now: Timestamp) -> bool {
        let mut changed = false;
        for server in &mut self.servers {
            let Some(transition) = server
                .transition
                .take_if(|transition| transition.done_at <= now)
            else {
                continue;
            };
            changed = true;
            match transition.install {
                None => server.status = JdStatus::Stopped,
                Some(target) => {
                    // The record shows what was asked for even when the install failed: a
                    // client that reads only the OS id, not the status, must fail its tests.
                    server.os_type_id = target.os_type_id;
                    server.image_type = target.image_type;
                    server.sys_raid_type_id = target.sys_raid_type_id;
                    server.data_raid_type_id = target.data_raid_type_id;
                    server.hostname = target.hostname;
                    server.keypair_id = target.keypair_id;
                    server.status = if target.ends_in_failure {
                        JdStatus::Error
                    } else {
                        JdStatus::Running
                    };
                }
            }
        }
        changed
    }

    pub fn server(&self, id: &str) -> Option<&JdcloudServer> {
        self.servers.iter().find(|server| server.id == id)
    }

    fn server_mut(&mut self, id: &str) -> Option<&mut JdcloudServer> {
        self.servers.iter_mut().find(|server| server.id == id)
    }

    /// The admin view (`GET /_emulator/state`, key `jdcloud`).
    pub fn admin_state(&self) -> Value {
        let servers: Vec<Value> = self
            .servers
            .iter()
            .map(|server| {
                json!({
                    "id": server.id,
                    "name": server.name,
                    "status": server.status.as_str(),
                    "image": server.os_type_id,
                    "os_type_id": server.os_type_id,
                    "az": server.az,
                    "sys_raid_type_id": server.sys_raid_type_id,
                    "data_raid_type_id": server.data_raid_type_id,
                    "hostname": server.hostname,
                    "keypair_id": server.keypair_id,
                    "stop_count": server.stop_count,
                    "reinstall_count": server.reinstall_count,
                    "data_wipe_count": server.data_wipe_count,
                    "fail_next_install": server.fail_next_install,
                    "operation_protection": server.operation_protection,
                })
            })
            .collect();
        json!({
            "servers": servers,
            "reinstall_log": self.reinstall_log,
            "token_replays": self.token_replays,
        })
    }

    /// Sets the `fail_next_install` and `operation_protection` flags of these servers (the ids
    /// were checked by the caller).
    pub fn set_flags(&mut self, fail_next_install: &[String], operation_protection: &[String]) {
        for id in fail_next_install {
            if let Some(server) = self.server_mut(id) {
                server.fail_next_install = true;
            }
        }
        for id in operation_protection {
            if let Some(server) = self.server_mut(id) {
                server.operation_protection = true;
            }
        }
    }

    /// The servers each flag is set on (part of the answer to `POST /_emulator/faults`).
    pub fn flags_view(&self) -> Map<String, Value> {
        let armed = |pick: fn(&JdcloudServer) -> bool| -> Vec<&str> {
            self.servers
                .iter()
                .filter(|server| pick(server))
                .map(|server| server.id.as_str())
                .collect()
        };
        let mut view = Map::new();
        view.insert(
            "fail_next_install".into(),
            json!(armed(|server| server.fail_next_install)),
        );
        view.insert(
            "operation_protection".into(),
            json!(armed(|server| server.operation_protection)),
        );
        view
    }
}

// ---------------------------------------------------------------------------------------------
// API

#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    word: &'static str,
    message: String,
    /// `Retry-After` of a 429, in seconds (default 1).
    retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, word: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            word,
            message: message.into(),
            retry_after: None,
        }
    }

    /// An injected fault: 429 `RESOURCE_EXHAUSTED` or 500 `INTERNAL` in the JD envelope.
    fn injected(refusal: Refusal) -> ApiError {
        match refusal {
            Refusal::ServerError => ApiError::internal("internal error (injected by the emulator)"),
            Refusal::Throttled {
                retry_after_seconds,
            } => ApiError {
                retry_after: Some(retry_after_seconds),
                ..ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "RESOURCE_EXHAUSTED",
                    "too many requests (injected by the emulator)",
                )
            },
        }
    }

    fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", message)
    }

    fn unauthenticated(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", message)
    }

    fn precondition(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "FAILED_PRECONDITION", message)
    }

    fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND", message)
    }

    fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", message)
    }
}

/// Handles one call under `/v1/regions/`.
pub async fn handle(
    shared: &Shared,
    connection: &ConnectionHandle,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response {
    let request_id = uuid::Uuid::new_v4().simple().to_string();
    match handle_call(shared, method, uri, headers, body, &request_id).await {
        Ok((result, aftermath)) => {
            aftermath.apply(connection).await;
            respond(
                StatusCode::OK,
                &request_id,
                json!({"requestId": request_id, "result": result}),
            )
        }
        Err(error) => {
            tracing::debug!(word = error.word, message = %error.message, "emulator: jdcloud error");
            let mut response = respond(
                error.status,
                &request_id,
                json!({
                    "requestId": request_id,
                    "error": {
                        "code": error.status.as_u16(),
                        "status": error.word,
                        "message": error.message,
                    }
                }),
            );
            if error.status == StatusCode::TOO_MANY_REQUESTS {
                let seconds = error.retry_after.unwrap_or(1);
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            }
            response
        }
    }
}

fn respond(status: StatusCode, request_id: &str, body: Value) -> Response {
    let mut response = (status, axum::Json(body)).into_response();
    if let Ok(value) = HeaderValue::from_str(request_id) {
        response.headers_mut().insert("x-jdcloud-request-id", value);
    }
    response
}

/// What the path names.
enum Route {
    DescribeInstances,
    DescribeInstance(String),
    StopInstance(String),
    ReinstallInstance(String),
    DescribeOs,
}

/// `(region, route)` from a decoded path.
fn route(method: &Method, path: &str) -> Result<(String, Route), ApiError> {
    let rest = path
        .strip_prefix(PATH_PREFIX)
        .and_then(|rest| rest.strip_prefix('/'))
        .ok_or_else(|| ApiError::not_found(format!("no API at {path}")))?;
    let segments: Vec<&str> = rest.split('/').collect();
    let not_found = || ApiError::not_found(format!("no API at {method} {path}"));
    let get = method == Method::GET;
    let put = method == Method::PUT;
    let (region, route) = match segments.as_slice() {
        [region, "instances"] if get => (region, Route::DescribeInstances),
        [region, "os"] if get => (region, Route::DescribeOs),
        [region, "instances", id] if get && !id.contains(':') => {
            (region, Route::DescribeInstance(id.to_string()))
        }
        [region, "instances", target] if put => match target.split_once(':') {
            Some((id, "stopInstance")) => (region, Route::StopInstance(id.to_string())),
            Some((id, "reinstallInstance")) => (region, Route::ReinstallInstance(id.to_string())),
            _ => return Err(not_found()),
        },
        _ => return Err(not_found()),
    };
    if region.is_empty() {
        return Err(not_found());
    }
    Ok((region.to_string(), route))
}

async fn handle_call(
    shared: &Shared,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
    request_id: &str,
) -> Result<(Value, Aftermath), ApiError> {
    let signed_at = Timestamp::now();
    let path = sign::decode(uri.path());
    let (region, route) = route(method, &path)?;
    let version = authenticate(
        &shared.inventory,
        method,
        uri,
        headers,
        body,
        &region,
        signed_at,
    )?;
    let query = parse_query(uri.query().unwrap_or_default());
    let fault_call = classify(&route, &query);
    faults::wait_latency(shared, &fault_call).await;

    let now = Timestamp::now();
    let mut store = shared.world.lock().await;
    if store.world.settle(now) {
        save(&store)?;
    }
    if let Some(refusal) = faults::refusal(&mut store, shared, &fault_call).map_err(internal)? {
        return Err(ApiError::injected(refusal));
    }
    let inventory = &shared.inventory;
    let reinstall = matches!(route, Route::ReinstallInstance(_));
    let answer = match route {
        Route::DescribeInstances => {
            describe_instances(inventory, &store.world, &region, &query, now)?
        }
        Route::DescribeInstance(id) => {
            let server = find(&store.world.jdcloud, &region, &id)?;
            let shown = faults::as_shown(&store.world.faults, PROVIDER, &id, server, now);
            json!({ "instance": instance_json(inventory, &shown) })
        }
        Route::DescribeOs => describe_os(inventory, &query),
        Route::StopInstance(id) | Route::ReinstallInstance(id) => {
            let parameters = parse_body(body)?;
            let before = store.world.clone();
            let call = Call {
                region: &region,
                instance_id: &id,
                request_id,
                now,
                version,
            };
            let outcome = if reinstall {
                reinstall_instance(shared, &mut store.world.jdcloud, &call, &parameters)
            } else {
                let stop_seconds = inventory
                    .jdcloud
                    .stop_seconds
                    .unwrap_or(DEFAULT_STOP_SECONDS);
                stop_instance(&mut store.world.jdcloud, &call, &parameters, stop_seconds)
            };
            let acted = match outcome {
                Ok(acted) => acted,
                Err(error) => {
                    store.world = before;
                    return Err(error);
                }
            };
            if let Err(error) = store.save() {
                store.world = before;
                return Err(internal(error));
            }
            let outcome = if acted {
                Outcome::Acted
            } else {
                Outcome::Replayed
            };
            let shown_before = |id: &str| before.jdcloud.server(id).and_then(faults::record);
            let aftermath = faults::aftermath(&mut store, &fault_call, outcome, &shown_before)
                .map_err(internal)?;
            return Ok((json!({"success": true}), aftermath));
        }
    };
    let aftermath =
        faults::aftermath(&mut store, &fault_call, Outcome::Served, &|_| None).map_err(internal)?;
    Ok((answer, aftermath))
}

const PROVIDER: ProviderType = ProviderType::JdcloudCps;

/// What the fault menu sees of a call: its kind and the instances it names.
fn classify(route: &Route, query: &[(String, String)]) -> faults::Call {
    let (kind, ids) = match route {
        Route::DescribeInstances => (
            CallKind::Read,
            filters(query).remove("instanceId").unwrap_or_default(),
        ),
        Route::DescribeInstance(id) => (CallKind::Read, vec![id.clone()]),
        Route::StopInstance(id) => (CallKind::Stop, vec![id.clone()]),
        Route::ReinstallInstance(id) => (CallKind::Reinstall, vec![id.clone()]),
        Route::DescribeOs => (CallKind::Other, Vec::new()),
    };
    faults::Call::new(PROVIDER, kind, ids)
}

fn internal(error: impl std::fmt::Display) -> ApiError {
    ApiError::internal(error.to_string())
}

fn save(store: &super::world::WorldStore) -> Result<(), ApiError> {
    store.save().map_err(internal)
}

/// Nonces seen within the skew window, with their expiry (Unix seconds). Process-wide: nonces
/// are random UUIDs, so emulators in one process cannot collide by accident.
static NONCES: LazyLock<Mutex<HashMap<String, i64>>> = LazyLock::new(Default::default);

fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

/// Checks a JDCLOUD2 or JDCLOUD3 signature per brief §3 and §9 over the request as received;
/// returns the version used.
fn authenticate(
    inventory: &Inventory,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    region: &str,
    now: Timestamp,
) -> Result<sign::Version, ApiError> {
    let authorization = header_text(headers, "authorization")
        .ok_or_else(|| ApiError::unauthenticated("the Authorization header is missing"))?;
    let parsed = sign::parse_authorization(authorization).ok_or_else(|| {
        ApiError::unauthenticated(
            "the Authorization header is not `JDCLOUD2-HMAC-SHA256 (or JDCLOUD3-HMAC-SHA256) \
             Credential=AK/DATE/REGION/SERVICE/TERMINATOR, SignedHeaders=…, Signature=…`",
        )
    })?;
    let credential = inventory
        .jdcloud
        .credentials
        .iter()
        .find(|credential| credential.access_key == parsed.access_key)
        .ok_or_else(|| {
            ApiError::unauthenticated(format!(
                "the access key `{}` is not known",
                parsed.access_key
            ))
        })?;
    if parsed.service != SERVICE {
        return Err(ApiError::unauthenticated(format!(
            "the credential scope names service `{}`, not `{SERVICE}`",
            parsed.service
        )));
    }
    if parsed.region != region {
        return Err(ApiError::unauthenticated(format!(
            "the credential scope names region `{}`, but the request is for `{region}`",
            parsed.region
        )));
    }
    let signed = |name: &str| parsed.signed_headers.iter().any(|signed| signed == name);
    if !signed("host") {
        return Err(ApiError::unauthenticated(
            "SignedHeaders must include `host`",
        ));
    }
    // The documented algorithm signs date and nonce; the current Python SDK (JDCLOUD3) does not.
    if parsed.version == sign::Version::V2
        && !(signed(sign::DATE_HEADER) && signed(sign::NONCE_HEADER))
    {
        return Err(ApiError::unauthenticated(
            "JDCLOUD2 requires x-jdcloud-date and x-jdcloud-nonce in SignedHeaders",
        ));
    }
    let datetime = header_text(headers, sign::DATE_HEADER)
        .ok_or_else(|| ApiError::unauthenticated("the x-jdcloud-date header is missing"))?;
    let seconds = sign::parse_datetime(datetime).ok_or_else(|| {
        ApiError::unauthenticated(format!(
            "x-jdcloud-date `{datetime}` is not YYYYMMDDTHHMMSSZ"
        ))
    })?;
    let skew = now.as_second().saturating_sub(seconds);
    if skew.abs() > SKEW_SECONDS {
        return Err(ApiError::unauthenticated(format!(
            "x-jdcloud-date is {skew} s away from the emulator's clock (at most {SKEW_SECONDS} s)"
        )));
    }
    if datetime.get(..8) != Some(parsed.date.as_str()) {
        return Err(ApiError::unauthenticated(
            "the credential scope's date is not the date of x-jdcloud-date",
        ));
    }
    let nonce = header_text(headers, sign::NONCE_HEADER)
        .filter(|nonce| !nonce.trim().is_empty())
        .ok_or_else(|| ApiError::unauthenticated("the x-jdcloud-nonce header is missing"))?;

    let mut values: Vec<(String, String)> = Vec::new();
    for name in &parsed.signed_headers {
        let value = header_text(headers, name).ok_or_else(|| {
            ApiError::unauthenticated(format!("the signed header `{name}` is missing"))
        })?;
        values.push((name.clone(), value.to_string()));
    }
    let pairs: Vec<(&str, &str)> = values
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    let expected = sign::signature(
        &sign::Scope {
            version: parsed.version,
            datetime,
            region,
            service: SERVICE,
        },
        &credential.secret_key,
        &sign::Request {
            method: method.as_str(),
            path: uri.path(),
            query: uri.query().unwrap_or_default(),
            headers: &pairs,
            body,
        },
    );
    if !sign::signatures_match(&expected, &parsed.signature) {
        return Err(ApiError::unauthenticated(format!(
            "the signature does not match ({} over {} {} with headers {}, {} body bytes)",
            parsed.version.algorithm(),
            method,
            sign::canonical_uri(uri.path()),
            parsed.signed_headers.join(";"),
            body.len()
        )));
    }
    // Replay check last: a refused request must not burn its nonce.
    let mut nonces = NONCES
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let now_seconds = now.as_second();
    nonces.retain(|_, expiry| *expiry > now_seconds);
    if nonces
        .insert(nonce.to_string(), now_seconds + 2 * SKEW_SECONDS)
        .is_some()
    {
        return Err(ApiError::unauthenticated(
            "the x-jdcloud-nonce was already used (replayed request)",
        ));
    }
    Ok(parsed.version)
}

fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let (name, value) = part.split_once('=').unwrap_or((part, ""));
            (sign::decode(name), sign::decode(value))
        })
        .collect()
}

fn query_value<'a>(query: &'a [(String, String)], name: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

/// `filters.N.name` / `filters.N.values.M` → name → values.
fn filters(query: &[(String, String)]) -> BTreeMap<String, Vec<String>> {
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    let mut values: BTreeMap<String, Vec<(u64, String)>> = BTreeMap::new();
    for (key, value) in query {
        let Some(rest) = key.strip_prefix("filters.") else {
            continue;
        };
        match rest.split('.').collect::<Vec<_>>().as_slice() {
            [index, "name"] => {
                names.insert(index.to_string(), value.clone());
            }
            [index, "values", position] => values
                .entry(index.to_string())
                .or_default()
                .push((position.parse().unwrap_or(u64::MAX), value.clone())),
            _ => {}
        }
    }
    names
        .into_iter()
        .map(|(index, name)| {
            let mut list = values.remove(&index).unwrap_or_default();
            list.sort();
            (name, list.into_iter().map(|(_, value)| value).collect())
        })
        .collect()
}

fn page_parameter(
    query: &[(String, String)],
    name: &str,
    default: usize,
    max: usize,
) -> Result<usize, ApiError> {
    match query_value(query, name) {
        None => Ok(default),
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|value| (1..=max).contains(value))
            .ok_or_else(|| {
                ApiError::invalid(format!("{name} must be between 1 and {max}, not `{text}`"))
            }),
    }
}

fn describe_instances(
    inventory: &Inventory,
    world: &World,
    region: &str,
    query: &[(String, String)],
    now: Timestamp,
) -> Result<Value, ApiError> {
    let page_number = page_parameter(query, "pageNumber", 1, usize::MAX)?;
    let page_size = page_parameter(query, "pageSize", DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)?;
    let filters = filters(query);
    for (name, values) in &filters {
        if name != "instanceId" && name != "status" {
            return Err(ApiError::invalid(format!("unknown filter `{name}`")));
        }
        // The brief leaves the limit unconfirmed; the emulator holds clients to a page's worth.
        if values.len() > MAX_PAGE_SIZE {
            return Err(ApiError::invalid(format!(
                "filter `{name}` has {} values; at most {MAX_PAGE_SIZE} are allowed",
                values.len()
            )));
        }
    }
    // A set: a world of many servers is filtered in one pass, not once per id.
    let wanted: Option<std::collections::HashSet<&str>> = filters
        .get("instanceId")
        .map(|ids| ids.iter().map(String::as_str).collect());
    // What each server shows: the truth, or what it was before a call whose effect is late.
    let shown: Vec<std::borrow::Cow<JdcloudServer>> = world
        .jdcloud
        .servers
        .iter()
        .filter(|server| {
            wanted
                .as_ref()
                .is_none_or(|ids| ids.contains(server.id.as_str()))
        })
        .map(|server| faults::as_shown(&world.faults, PROVIDER, &server.id, server, now))
        .collect();
    let matching: Vec<&JdcloudServer> = shown
        .iter()
        .map(|server| server.as_ref())
        .filter(|server| server.region == region)
        .filter(|server| {
            filters
                .get("status")
                .is_none_or(|statuses| statuses.iter().any(|s| s == server.status.as_str()))
        })
        .filter(|server| query_value(query, "az").is_none_or(|az| server.az == az))
        .collect();
    let skip = (page_number - 1).saturating_mul(page_size);
    let instances: Vec<Value> = matching
        .iter()
        .skip(skip)
        .take(page_size)
        .map(|server| instance_json(inventory, server))
        .collect();
    Ok(json!({
        "instances": instances,
        "pageNumber": page_number,
        "pageSize": page_size,
        "totalCount": matching.len(),
    }))
}

fn find_os<'a>(inventory: &'a Inventory, os_type_id: &str) -> Option<&'a JdcloudOs> {
    inventory
        .jdcloud
        .os
        .iter()
        .find(|os| os.os_type_id == os_type_id)
}

fn raid_name(id: &str) -> String {
    // The emulator has no RAID catalogue; the name is derived for display only.
    id.rsplit('-').next().unwrap_or(id).to_ascii_uppercase()
}

fn instance_json(inventory: &Inventory, server: &JdcloudServer) -> Value {
    let os = find_os(inventory, &server.os_type_id);
    json!({
        "instanceId": server.id,
        "region": server.region,
        "az": server.az,
        "deviceType": server.device_type,
        "name": server.name,
        "description": "",
        "status": server.status.as_str(),
        "imageType": server.image_type,
        "osTypeId": server.os_type_id,
        "osName": os.map(|os| os.os_name.clone()),
        "osType": os.and_then(|os| os.os_type.clone()),
        "osVersion": os.and_then(|os| os.os_version.clone()),
        "sysRaidTypeId": server.sys_raid_type_id,
        "sysRaidType": raid_name(&server.sys_raid_type_id),
        "dataRaidTypeId": server.data_raid_type_id,
        "dataRaidType": server.data_raid_type_id.as_deref().map(raid_name),
        "networkType": "basic",
        "keypairId": server.keypair_id,
        "agentStatus": "running",
    })
}

fn describe_os(inventory: &Inventory, query: &[(String, String)]) -> Value {
    let device_type = query_value(query, "deviceType");
    let os_type = query_value(query, "osType");
    let oss: Vec<Value> = inventory
        .jdcloud
        .os
        .iter()
        .filter(|os| {
            device_type.is_none_or(|wanted| os.device_type.as_deref().is_none_or(|d| d == wanted))
        })
        .filter(|os| {
            os_type.is_none_or(|wanted| {
                os.os_type
                    .as_deref()
                    .is_some_and(|kind| kind.eq_ignore_ascii_case(wanted))
            })
        })
        .map(|os| {
            json!({
                "osTypeId": os.os_type_id,
                "osName": os.os_name,
                "osType": os.os_type,
                "osVersion": os.os_version,
                "deviceType": os.device_type.as_deref().or(device_type),
            })
        })
        .collect();
    json!({ "oss": oss })
}

/// PUT bodies are JSON objects; an empty body reads as `{}`. Extra fields (the Python SDK sends
/// `regionId`, `instanceId` and nulls) are ignored.
fn parse_body(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::invalid("the body must be a JSON object")),
        Err(error) => Err(ApiError::invalid(format!("the body is not JSON: {error}"))),
    }
}

fn find<'a>(
    world: &'a JdcloudWorld,
    region: &str,
    id: &str,
) -> Result<&'a JdcloudServer, ApiError> {
    world
        .servers
        .iter()
        .find(|server| server.id == id && server.region == region)
        .ok_or_else(|| ApiError::not_found(format!("instance `{id}` does not exist in {region}")))
}

struct Call<'a> {
    region: &'a str,
    instance_id: &'a str,
    request_id: &'a str,
    now: Timestamp,
    version: sign::Version,
}

/// The `clientToken` of a body (`null` or absent: none).
fn client_token(parameters: &Map<String, Value>) -> Result<Option<String>, ApiError> {
    match parameters.get("clientToken") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(token)) if token.is_empty() => Ok(None),
        Some(Value::String(token)) if token.chars().count() <= MAX_CLIENT_TOKEN_CHARS => {
            Ok(Some(token.clone()))
        }
        Some(Value::String(_)) => Err(ApiError::invalid(format!(
            "clientToken is longer than {MAX_CLIENT_TOKEN_CHARS} characters"
        ))),
        Some(_) => Err(ApiError::invalid("clientToken must be a string")),
    }
}

/// `Ok(true)` when a call with this token was accepted before for the same instance and action
/// (answer as then, do nothing); an error when the token belongs to another call.
fn replayed(
    world: &mut JdcloudWorld,
    token: Option<&str>,
    action: &str,
    instance_id: &str,
) -> Result<bool, ApiError> {
    let Some(record) = token.and_then(|token| world.tokens.get(token)) else {
        return Ok(false);
    };
    if record.action != action || record.instance_id != instance_id {
        return Err(ApiError::invalid(format!(
            "clientToken was already used for {} on `{}`",
            record.action, record.instance_id
        )));
    }
    world.token_replays += 1;
    tracing::info!(
        instance = instance_id,
        action,
        "emulator: jdcloud clientToken replayed"
    );
    Ok(true)
}

fn remember(world: &mut JdcloudWorld, token: Option<String>, action: &str, call: &Call<'_>) {
    if let Some(token) = token {
        world.tokens.insert(
            token,
            TokenRecord {
                action: action.to_string(),
                instance_id: call.instance_id.to_string(),
                request_id: call.request_id.to_string(),
                at: call.now,
            },
        );
    }
}

fn operation_protection(server: &JdcloudServer, action: &str) -> Result<(), ApiError> {
    if server.operation_protection {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            format!(
                "MFA authentication required: operation protection is enabled for {action}; \
                 pass an MFA-backed x-jdcloud-security-token"
            ),
        ));
    }
    Ok(())
}

/// Returns whether it acted (`false` for a replay).
fn stop_instance(
    world: &mut JdcloudWorld,
    call: &Call<'_>,
    parameters: &Map<String, Value>,
    stop_seconds: f64,
) -> Result<bool, ApiError> {
    let token = client_token(parameters)?;
    find(world, call.region, call.instance_id)?;
    if replayed(world, token.as_deref(), "stopInstance", call.instance_id)? {
        return Ok(false);
    }
    let server = world
        .server_mut(call.instance_id)
        .ok_or_else(|| ApiError::not_found("instance vanished"))?;
    operation_protection(server, "stopInstance")?;
    if server.status != JdStatus::Running {
        return Err(ApiError::precondition(format!(
            "only running instances can be stopped; `{}` is {}",
            server.id,
            server.status.as_str()
        )));
    }
    let duration = SignedDuration::try_from_secs_f64(stop_seconds).unwrap_or(SignedDuration::ZERO);
    server.status = JdStatus::Stopping;
    server.stop_count += 1;
    server.transition = Some(Transition {
        done_at: call.now.checked_add(duration).unwrap_or(Timestamp::MAX),
        install: None,
    });
    remember(world, token, "stopInstance", call);
    Ok(true)
}

fn required_text(spec: &Map<String, Value>, key: &str) -> Result<String, ApiError> {
    match spec.get(key) {
        Some(Value::String(text)) if !text.trim().is_empty() => Ok(text.clone()),
        // The value is not echoed: it may be the password.
        _ => Err(ApiError::invalid(format!(
            "instanceSpec.{key} is required (a non-empty string)"
        ))),
    }
}

fn optional_text(spec: &Map<String, Value>, key: &str) -> Result<Option<String>, ApiError> {
    match spec.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) if text.is_empty() => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(_) => Err(ApiError::invalid(format!(
            "instanceSpec.{key} must be a string"
        ))),
    }
}

/// The brief's "JD common rule" (unconfirmed): 8–30 characters with upper, lower and digits.
fn check_password(password: &str) -> Result<(), ApiError> {
    let length = password.chars().count();
    let ok = (8..=30).contains(&length)
        && password.chars().all(|c| c.is_ascii_graphic())
        && password.chars().any(|c| c.is_ascii_uppercase())
        && password.chars().any(|c| c.is_ascii_lowercase())
        && password.chars().any(|c| c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "instanceSpec.password must be 8-30 printable ASCII characters with upper case, \
             lower case and digits",
        ))
    }
}

fn reinstall_instance(
    shared: &Shared,
    world: &mut JdcloudWorld,
    call: &Call<'_>,
    parameters: &Map<String, Value>,
) -> Result<bool, ApiError> {
    let token = client_token(parameters)?;
    find(world, call.region, call.instance_id)?;
    // A replay is answered before anything else: the first call's result, no second install.
    if replayed(
        world,
        token.as_deref(),
        "reinstallInstance",
        call.instance_id,
    )? {
        return Ok(false);
    }
    let spec = parameters
        .get("instanceSpec")
        .and_then(Value::as_object)
        .ok_or_else(|| ApiError::invalid("instanceSpec is required (an object)"))?;
    let az = required_text(spec, "az")?;
    let image_type = required_text(spec, "imageType")?;
    let os_type_id = required_text(spec, "osTypeId")?;
    let sys_raid_type_id = required_text(spec, "sysRaidTypeId")?;
    let keep_data = required_text(spec, "keepData")?;
    let password = required_text(spec, "password")?;
    let data_raid_type_id = optional_text(spec, "dataRaidTypeId")?;
    let hostname = optional_text(spec, "hostname")?;
    let keypair_id = optional_text(spec, "keypairId")?;
    let user_data = optional_text(spec, "userData")?
        .map(|encoded| {
            base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .map_err(|_| ApiError::invalid("instanceSpec.userData must be base64"))
        })
        .transpose()?;
    if !["standard", "standard_app"].contains(&image_type.to_ascii_lowercase().as_str()) {
        return Err(ApiError::invalid(format!(
            "instanceSpec.imageType must be standard or standard_app, not `{image_type}`"
        )));
    }
    if keep_data != "yes" && keep_data != "no" {
        return Err(ApiError::invalid(format!(
            "instanceSpec.keepData must be yes or no, not `{keep_data}`"
        )));
    }
    check_password(&password)?;

    let server = world
        .server_mut(call.instance_id)
        .ok_or_else(|| ApiError::not_found("instance vanished"))?;
    operation_protection(server, "reinstallInstance")?;
    if server.status != JdStatus::Stopped {
        return Err(ApiError::precondition(format!(
            "only stopped instances can be reinstalled; `{}` is {}",
            server.id,
            server.status.as_str()
        )));
    }
    if az != server.az {
        return Err(ApiError::invalid(format!(
            "instanceSpec.az `{az}` is not the instance's az `{}`",
            server.az
        )));
    }
    let os = find_os(&shared.inventory, &os_type_id)
        .filter(|os| {
            os.device_type
                .as_deref()
                .is_none_or(|d| d == server.device_type)
        })
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "osTypeId `{os_type_id}` is not offered for device type {}",
                server.device_type
            ))
        })?;
    if keep_data == "yes" && data_raid_type_id != server.data_raid_type_id {
        return Err(ApiError::invalid(
            "changing dataRaidTypeId rebuilds the data disks; it needs keepData: no",
        ));
    }
    let duration = server.install_duration(&shared.inventory, shared.install_seconds_override);
    let target = InstallTarget {
        os_type_id: os.os_type_id.clone(),
        // Answers write the capitalised form (brief §0.5).
        image_type: if image_type.eq_ignore_ascii_case("standard_app") {
            "Standard_app".to_string()
        } else {
            "Standard".to_string()
        },
        sys_raid_type_id: sys_raid_type_id.clone(),
        data_raid_type_id: data_raid_type_id.clone(),
        hostname: hostname.clone(),
        keypair_id: keypair_id.clone(),
        ends_in_failure: std::mem::take(&mut server.fail_next_install),
    };
    server.status = JdStatus::Installing;
    server.reinstall_count += 1;
    if keep_data == "no" {
        server.data_wipe_count += 1;
    }
    server.transition = Some(Transition {
        done_at: call.now.checked_add(duration).unwrap_or(Timestamp::MAX),
        install: Some(target),
    });
    tracing::info!(
        server = call.instance_id,
        os_type_id = %os_type_id,
        request_id = call.request_id,
        "emulator: jdcloud reinstall accepted"
    );
    world.reinstall_log.push(JdReinstallRecord {
        server_id: call.instance_id.to_string(),
        os_type_id,
        az,
        image_type,
        sys_raid_type_id,
        data_raid_type_id,
        keep_data,
        hostname,
        keypair_id,
        password_given: true,
        user_data_sha256: user_data.map(|bytes| crate::digest::sha256_hex(&bytes)),
        client_token: token.clone(),
        request_id: call.request_id.to_string(),
        signature_version: call.version.algorithm().to_string(),
        at: call.now,
    });
    remember(world, token, "reinstallInstance", call);
    Ok(true)
}

impl JdcloudServer {
    fn install_duration(
        &self,
        inventory: &Inventory,
        override_seconds: Option<f64>,
    ) -> SignedDuration {
        let seconds = override_seconds
            .or(self.install_seconds)
            .unwrap_or_else(|| inventory.default_install_seconds(None));
        SignedDuration::try_from_secs_f64(seconds).unwrap_or(SignedDuration::ZERO)
    }
}

#[cfg(test)]
mod tests;
