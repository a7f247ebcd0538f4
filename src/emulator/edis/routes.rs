//! The EDIS API's front door: the `{"error", "code"}` refusal, and one call's way through the
//! body checks, the fault menu and the world to its action.

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use serde_json::{Value, json};

use super::auth::{auth, ticket_vps};
use super::errors::ApiError;
use super::form::{decode_form, field};
use super::handlers::reinstall;
use crate::emulator::faults::{self, Aftermath, Call, CallKind, Outcome, Refusal};
use crate::emulator::server::{ConnectionHandle, Shared};
use crate::manifest::ProviderType;

/// Handles `POST /kvm/v2/{kind}/{action}`.
pub async fn handle(
    shared: &Shared,
    connection: &ConnectionHandle,
    kind: &str,
    action: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response {
    match handle_call(shared, kind, action, headers, body).await {
        Ok((value, aftermath)) => {
            aftermath.apply(connection).await;
            (StatusCode::OK, axum::Json(value)).into_response()
        }
        Err(error) => error.into_response(),
    }
}

async fn handle_call(
    shared: &Shared,
    kind: &str,
    action: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<(Value, Aftermath), ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    if !content_type
        .to_ascii_lowercase()
        .starts_with("application/x-www-form-urlencoded")
    {
        return Err(ApiError::invalid("the body is not form-encoded"));
    }
    let host = headers
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .ok_or_else(|| ApiError::invalid("no Host header"))?
        .to_string();
    let form = decode_form(body).ok_or_else(|| ApiError::invalid("malformed form body"))?;
    let call = classify(kind, action, &form);
    faults::wait_latency(shared, &call).await;
    let now = Timestamp::now();
    let inventory = &shared.inventory.edis;

    let mut store = shared.world.lock().await;
    if store.world.settle(now) {
        save(&store)?;
    }
    if let Some(refusal) = faults::refusal(&mut store, shared, &call).map_err(internal)? {
        return Err(injected(refusal));
    }

    // Only EDIS's part of the world can change here: only it is kept for a refusal to restore
    // (a copy of the whole world per call made a big world's reads slow).
    let before = store.world.edis.clone();
    let whole = &mut store.world;
    let world = &mut whole.edis;
    let outcome = match (kind, action) {
        ("get", "auth") => auth(inventory, world, &form, &host, now),
        ("get", "power") => ticket_vps(world, &form, &[], &host, now).map(|vps| {
            let power = faults::as_shown(&whole.faults, PROVIDER, &vps.kvm_id, &*vps, now).power;
            json!({"status": "success", "data": power.text(), "traffic_suspended": false})
        }),
        ("get", "turnkey_images") => ticket_vps(world, &form, &[], &host, now)
            .map(|_| json!({"status": "success", "data": inventory.turnkey_images})),
        ("set", "reinstall") => reinstall(shared, world, &form, &host, now),
        _ => Err(ApiError::new(StatusCode::NOT_FOUND, "Not found.")),
    };
    // A refused call changes nothing but the counters.
    let counters = (world.auth_count, world.unauthorized_count);
    let value = match outcome {
        Ok(value) => value,
        Err(error) => {
            store.world.edis = before;
            (
                store.world.edis.auth_count,
                store.world.edis.unauthorized_count,
            ) = counters;
            save(&store)?;
            return Err(error);
        }
    };
    // A read that got through changed nothing: the world file is not rewritten for it.
    if call.kind != CallKind::Read {
        save(&store)?;
    }
    let acted = call.kind == CallKind::Reinstall;
    let outcome = if acted {
        Outcome::Acted
    } else {
        Outcome::Served
    };
    let shown_before = |id: &str| {
        let vps = before.vps.iter().find(|vps| vps.kvm_id == id);
        vps.and_then(faults::record)
    };
    let aftermath =
        faults::aftermath(&mut store, &call, outcome, &shown_before).map_err(internal)?;
    Ok((value, aftermath))
}

const PROVIDER: ProviderType = ProviderType::EdisKvm;

/// What the fault menu sees of a call: its kind and the VPS it names (`kvm_id`).
fn classify(kind: &str, action: &str, form: &[(String, String)]) -> Call {
    let ids = field(form, "kvm_id")
        .filter(|id| !id.is_empty())
        .map(|id| vec![id.to_string()])
        .unwrap_or_default();
    let kind = match (kind, action) {
        ("get", "auth") => CallKind::Auth,
        ("get", "power") => CallKind::Read,
        ("set", "reinstall") => CallKind::Reinstall,
        _ => CallKind::Other,
    };
    Call::new(PROVIDER, kind, ids)
}

/// An injected fault in the brief's shape (`{"error": "...", "code": N}`).
fn injected(refusal: Refusal) -> ApiError {
    match refusal {
        Refusal::ServerError => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal error (injected by the emulator).",
        ),
        Refusal::Throttled {
            retry_after_seconds,
        } => ApiError {
            retry_after: Some(retry_after_seconds),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many requests (injected by the emulator).",
            )
        },
    }
}

fn internal(error: impl std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, error.to_string())
}

fn save(store: &crate::emulator::world::WorldStore) -> Result<(), ApiError> {
    store
        .save()
        .map_err(|error| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, error.to_string()))
}
