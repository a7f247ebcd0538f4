//! The Zenlayer API's front door: errors and the response envelope, and one call's way through
//! authentication, the fault menu and the world to its action.

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use serde_json::{Value, json};

use super::API_VERSIONS;
use super::auth::{authenticate, header_text};
use super::errors::ApiError;
use super::handlers::{describe_images, describe_instances, parse_parameters, reinstall_instance};
use crate::emulator::faults::{self, Aftermath, Call, CallKind, Outcome};
use crate::emulator::server::{ConnectionHandle, Shared};
use crate::manifest::ProviderType;

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
    let served = |store: &mut crate::emulator::world::WorldStore, fields| {
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

fn save(store: &crate::emulator::world::WorldStore) -> Result<(), ApiError> {
    store
        .save()
        .map_err(|error| ApiError::internal(error.to_string()))
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
