//! A failed Zenlayer call: HTTP status, wire code, message.

use axum::http::StatusCode;

use crate::emulator::faults::Refusal;

/// A failed call: HTTP status, wire code, message.
#[derive(Debug)]
pub struct ApiError {
    pub(super) status: StatusCode,
    pub(super) code: &'static str,
    pub(super) message: String,
    /// `Retry-After` of a 429, in seconds (default 1).
    pub(super) retry_after: Option<u64>,
}

impl ApiError {
    pub(super) fn new(
        status: StatusCode,
        code: &'static str,
        message: impl Into<String>,
    ) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// An injected fault, in the brief's shapes (§5: `REQUEST_LIMIT_EXCEEDED`, 5xx system error).
    pub(super) fn injected(refusal: Refusal) -> ApiError {
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

    pub(super) fn unauthorized(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, code, message)
    }

    pub(super) fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub(super) fn denied(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, code, message)
    }

    pub(super) fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR", message)
    }
}
