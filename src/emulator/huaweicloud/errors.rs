//! Failed calls in the shape of the API that answers (gateway, ECS, CloudDC), injected faults.

use axum::http::{StatusCode, Uri};
use serde_json::{Value, json};

use crate::emulator::faults::Refusal;

/// A failed call, with its body already shaped for the API that answers.
#[derive(Debug)]
pub(super) struct ApiError {
    pub(super) status: StatusCode,
    pub(super) body: Value,
    /// `Retry-After` of an injected 429, in seconds.
    pub(super) retry_after: Option<u64>,
}

pub(super) fn gateway_error(
    status: StatusCode,
    code: &str,
    message: impl Into<String>,
) -> ApiError {
    ApiError {
        status,
        body: json!({"error_code": code, "error_msg": message.into()}),
        retry_after: None,
    }
}

pub(super) fn ecs_error(status: StatusCode, code: &str, message: impl Into<String>) -> ApiError {
    ApiError {
        status,
        body: json!({"error": {"code": code, "message": message.into()}}),
        retry_after: None,
    }
}

pub(super) fn clouddc_error(
    status: StatusCode,
    code: &str,
    message: impl Into<String>,
) -> ApiError {
    ApiError {
        status,
        body: json!({"error_code": code, "error_msg": message.into()}),
        retry_after: None,
    }
}

pub(super) fn unauthorized(message: impl Into<String>) -> ApiError {
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

pub(super) fn internal(message: impl Into<String>) -> ApiError {
    gateway_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "EMULATOR.INTERNAL",
        message,
    )
}

/// An injected fault in the gateway's shape: `APIGW.0308` throttling, or an internal error.
pub(super) fn injected(refusal: Refusal) -> ApiError {
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

pub(super) fn not_found(uri: &Uri) -> ApiError {
    gateway_error(
        StatusCode::NOT_FOUND,
        "APIGW.0101",
        format!("the API {} does not exist in the emulator", uri.path()),
    )
}

pub(super) fn parameter_error(api: Api, message: impl Into<String>) -> ApiError {
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
pub(super) enum Api {
    Ecs,
    Clouddc,
}
