//! The JD Cloud API's front door: the `{requestId, result | error}` envelope, the path router,
//! and one call's way through authentication, the fault menu and the world.

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use serde_json::{Value, json};

use super::auth::authenticate;
use super::errors::ApiError;
use super::handlers::{
    Call, describe_instances, describe_os, filters, find, instance_json, parse_body, parse_query,
    reinstall_instance, stop_instance,
};
use super::{DEFAULT_STOP_SECONDS, PATH_PREFIX, PROVIDER};
use crate::emulator::faults::{self, Aftermath, CallKind, Outcome};
use crate::emulator::server::{ConnectionHandle, Shared};
use crate::provider::sign::jdcloud as sign;

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

fn save(store: &crate::emulator::world::WorldStore) -> Result<(), ApiError> {
    store.save().map_err(internal)
}
