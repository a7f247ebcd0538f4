//! A bearer token from the inventory, or a ZC2-HMAC-SHA256 signature (brief §3).

use axum::http::HeaderMap;
use jiff::Timestamp;

use super::TIMESTAMP_SKEW_SECONDS;
use super::errors::ApiError;
use crate::emulator::inventory::Inventory;
use crate::provider::sign::zc2;

pub(super) fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

/// Checks the caller per brief §3: a bearer token from the inventory, or a ZC2-HMAC-SHA256
/// signature recomputed from the received `Content-Type` and `Host` values and the raw body.
pub(super) fn authenticate(
    inventory: &Inventory,
    headers: &HeaderMap,
    body: &[u8],
    now: Timestamp,
) -> Result<(), ApiError> {
    let authorization = header_text(headers, "authorization").ok_or_else(|| {
        ApiError::unauthorized("AUTH_FAILED", "the Authorization header is missing")
    })?;
    if let Some(token) = authorization.strip_prefix("Bearer ") {
        let known = inventory
            .zenlayer
            .tokens
            .iter()
            .any(|accepted| zc2::signatures_match(accepted, token.trim()));
        return if known {
            Ok(())
        } else {
            Err(ApiError::unauthorized(
                "AUTH_FAILED",
                "the bearer token is not valid",
            ))
        };
    }
    let method = header_text(headers, "x-zc-signature-method").unwrap_or_default();
    if method != zc2::ALGORITHM {
        return Err(ApiError::unauthorized(
            "SIGNATURE_METHOD_UNSUPPORTED",
            format!(
                "X-ZC-Signature-Method must be `{}`, not `{method}`",
                zc2::ALGORITHM
            ),
        ));
    }
    let timestamp = header_text(headers, "x-zc-timestamp").ok_or_else(|| {
        ApiError::unauthorized("SIGNATURE_EXPIRED", "the X-ZC-Timestamp header is missing")
    })?;
    let seconds: i64 = timestamp.parse().map_err(|_| {
        ApiError::unauthorized(
            "SIGNATURE_EXPIRED",
            format!("X-ZC-Timestamp `{timestamp}` is not a number of Unix seconds"),
        )
    })?;
    let skew = now.as_second().saturating_sub(seconds);
    if skew.abs() > TIMESTAMP_SKEW_SECONDS {
        return Err(ApiError::unauthorized(
            "SIGNATURE_EXPIRED",
            format!(
                "X-ZC-Timestamp is {skew} s away from the emulator's clock (at most \
                 {TIMESTAMP_SKEW_SECONDS} s allowed)"
            ),
        ));
    }
    let parsed = zc2::parse_authorization(authorization).ok_or_else(|| {
        ApiError::unauthorized(
            "AUTH_FAILED",
            "the Authorization header is not `ZC2-HMAC-SHA256 Credential=…, \
             SignedHeaders=content-type;host, Signature=…`",
        )
    })?;
    if parsed.signed_headers != zc2::SIGNED_HEADERS {
        return Err(ApiError::unauthorized(
            "AUTH_FAILED",
            format!(
                "SignedHeaders must be `{}`, not `{}`",
                zc2::SIGNED_HEADERS,
                parsed.signed_headers
            ),
        ));
    }
    let credential = inventory
        .zenlayer
        .credentials
        .iter()
        .find(|credential| credential.access_key_id == parsed.access_key_id)
        .ok_or_else(|| {
            ApiError::unauthorized(
                "AUTH_FAILED",
                format!("the access key id `{}` is not known", parsed.access_key_id),
            )
        })?;
    let content_type = header_text(headers, "content-type").ok_or_else(|| {
        ApiError::unauthorized("AUTH_FAILED", "the Content-Type header is missing")
    })?;
    let host = header_text(headers, "host")
        .ok_or_else(|| ApiError::unauthorized("AUTH_FAILED", "the Host header is missing"))?;
    let canonical = zc2::canonical_request(content_type, host, body);
    let expected = zc2::signature(
        &credential.access_key_password,
        &zc2::string_to_sign(timestamp, &canonical),
    );
    if !zc2::signatures_match(&expected, &parsed.signature) {
        return Err(ApiError::unauthorized(
            "SIGNATURE_MISMATCH",
            format!(
                "the signature does not match (signed as content-type `{content_type}`, host \
                 `{host}`, {} body bytes)",
                body.len()
            ),
        ));
    }
    Ok(())
}
