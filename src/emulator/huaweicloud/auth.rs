//! `X-Auth-Token` or SDK-HMAC-SHA256 (brief §9), and the project a call names.

use axum::http::{HeaderMap, Method, StatusCode, Uri};
use jiff::Timestamp;

use super::DATE_SKEW;
use super::errors::{ApiError, gateway_error, unauthorized};
use super::model::HuaweiInventory;
use crate::provider::sign::sdk_hmac;

fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

/// `X-Auth-Token` from the inventory, or an SDK-HMAC-SHA256 signature re-derived from the
/// received request with the `SignedHeaders` it declares (brief §9).
pub(super) fn authenticate(
    inventory: &HuaweiInventory,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    now: Timestamp,
) -> Result<(), ApiError> {
    if let Some(token) = header_text(headers, "x-auth-token") {
        let known = inventory
            .tokens
            .iter()
            .any(|accepted| sdk_hmac::signatures_match(accepted, token.trim()));
        return if known {
            Ok(())
        } else {
            Err(unauthorized("the token is not valid"))
        };
    }
    let authorization = header_text(headers, "authorization")
        .ok_or_else(|| unauthorized("no Authorization or X-Auth-Token header"))?;
    let parsed = sdk_hmac::parse_authorization(authorization).ok_or_else(|| {
        unauthorized("the Authorization header is not `SDK-HMAC-SHA256 Access=…, SignedHeaders=…, Signature=…`")
    })?;
    let signed: Vec<&str> = parsed.signed_headers.split(';').collect();
    for required in ["host", "x-sdk-date"] {
        if !signed.contains(&required) {
            return Err(unauthorized(format!(
                "`{required}` must be a signed header"
            )));
        }
    }
    let date = header_text(headers, "x-sdk-date")
        .ok_or_else(|| unauthorized("the X-Sdk-Date header is missing"))?;
    let signed_at = jiff::civil::DateTime::strptime(sdk_hmac::DATE_FORMAT, date)
        .ok()
        .and_then(|civil| civil.to_zoned(jiff::tz::TimeZone::UTC).ok())
        .map(|zoned| zoned.timestamp())
        .ok_or_else(|| unauthorized(format!("X-Sdk-Date `{date}` is not YYYYMMDDTHHMMSSZ")))?;
    let skew = now.duration_since(signed_at);
    if skew.abs() > DATE_SKEW {
        return Err(unauthorized(format!(
            "the request is stale: X-Sdk-Date is {} s away from the emulator's clock (at most {} s)",
            skew.as_secs(),
            DATE_SKEW.as_secs()
        )));
    }
    let credential = inventory
        .credentials
        .iter()
        .find(|credential| credential.access_key == parsed.access_key)
        .ok_or_else(|| {
            unauthorized(format!(
                "the access key `{}` is not known",
                parsed.access_key
            ))
        })?;
    let mut received = Vec::with_capacity(signed.len());
    for name in &signed {
        let value = header_text(headers, name)
            .ok_or_else(|| unauthorized(format!("the signed header `{name}` is missing")))?;
        received.push((name.to_string(), value.to_string()));
    }
    let query = sdk_hmac::canonical_query(&sdk_hmac::parse_query(uri.query().unwrap_or_default()));
    let canonical = sdk_hmac::canonical_request(
        method.as_str(),
        uri.path(),
        &query,
        &received,
        &parsed.signed_headers,
        body,
    );
    let expected = sdk_hmac::signature(
        &credential.secret_key,
        &sdk_hmac::string_to_sign(date, &canonical),
    );
    if !sdk_hmac::signatures_match(&expected, &parsed.signature) {
        return Err(unauthorized("verify aksk signature fail"));
    }
    Ok(())
}

pub(super) fn check_project(
    inventory: &HuaweiInventory,
    headers: &HeaderMap,
    project: &str,
) -> Result<(), ApiError> {
    if !inventory.projects.iter().any(|known| known.id == project) {
        return Err(gateway_error(
            StatusCode::FORBIDDEN,
            "EMULATOR.PROJECT_UNKNOWN",
            format!("project `{project}` is not known to these credentials"),
        ));
    }
    if let Some(header) = header_text(headers, "x-project-id")
        && header != project
    {
        return Err(gateway_error(
            StatusCode::FORBIDDEN,
            "EMULATOR.PROJECT_MISMATCH",
            format!("X-Project-Id `{header}` differs from the project `{project}` in the path"),
        ));
    }
    Ok(())
}
