//! A refused EDIS call in the brief's `{"error", "code"}` shape.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::INVALID_PARAMETERS;

/// A refusal in the brief's shape.
#[derive(Debug)]
pub(super) struct ApiError {
    pub(super) status: StatusCode,
    pub(super) message: String,
    /// `Retry-After` of an injected 429, in seconds.
    pub(super) retry_after: Option<u64>,
}

impl ApiError {
    pub(super) fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            retry_after: None,
        }
    }

    pub(super) fn invalid(detail: &str) -> ApiError {
        tracing::debug!(detail, "emulator: edis: invalid parameters");
        ApiError::new(StatusCode::BAD_REQUEST, INVALID_PARAMETERS)
    }

    pub(super) fn into_response(self) -> Response {
        let body = json!({"error": self.message, "code": self.status.as_u16()});
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}
