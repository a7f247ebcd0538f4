//! The Huawei Cloud APIs' front door: the router, and one call's way through authentication,
//! the fault menu, the world and the ECS, CloudDC or IAM handler.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::connect_info::ConnectInfo;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use jiff::Timestamp;
use serde_json::{Value, json};

use super::auth::{authenticate, check_project};
use super::call::{Shown, Timing};
use super::clouddc::{instance_status, list_instances, reinstall_instances};
use super::ecs::{change_or_reinstall, list_servers, show_job, show_server};
use super::errors::{ApiError, injected, internal, not_found};
use super::iam::list_projects;
use super::params::query_value;
use crate::emulator::faults::{self, Aftermath, Call, CallKind, Outcome};
use crate::emulator::server::{ConnectionHandle, Shared};
use crate::manifest::ProviderType;
use crate::provider::sign::sdk_hmac;

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
    let served = |store: &mut crate::emulator::world::WorldStore, (status, body)| {
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
