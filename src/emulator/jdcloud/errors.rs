//! A failed JD Cloud call: HTTP status, gRPC-style status word, message (and `Retry-After`).

use axum::http::StatusCode;

use crate::emulator::faults::Refusal;

#[derive(Debug)]
pub(super) struct ApiError {
    pub(super) status: StatusCode,
    pub(super) word: &'static str,
    pub(super) message: String,
    /// `Retry-After` of a 429, in seconds (default 1).
    pub(super) retry_after: Option<u64>,
}

impl ApiError {
    pub(super) fn new(
        status: StatusCode,
        word: &'static str,
        message: impl Into<String>,
    ) -> ApiError {
        ApiError {
            status,
            word,
            message: message.into(),
            retry_after: None,
        }
    }

    /// An injected fault: 429 `RESOURCE_EXHAUSTED` or 500 `INTERNAL` in the JD envelope.
    pub(super) fn injected(refusal: Refusal) -> ApiError {
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

    pub(super) fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", message)
    }

    pub(super) fn unauthenticated(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", message)
    }

    pub(super) fn precondition(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "FAILED_PRECONDITION", message)
    }

    pub(super) fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND", message)
    }

    pub(super) fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", message)
    }
}
