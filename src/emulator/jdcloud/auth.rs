//! JDCLOUD2 and JDCLOUD3 signature checks (brief §3, §9): access key, date skew, nonce replay.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

use axum::http::{HeaderMap, Method, Uri};
use jiff::Timestamp;

use super::errors::ApiError;
use super::{SERVICE, SKEW_SECONDS};
use crate::emulator::inventory::Inventory;
use crate::provider::sign::jdcloud as sign;

/// Nonces seen within the skew window, with their expiry (Unix seconds). Process-wide: nonces
/// are random UUIDs, so emulators in one process cannot collide by accident.
static NONCES: LazyLock<Mutex<HashMap<String, i64>>> = LazyLock::new(Default::default);

fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

/// Checks a JDCLOUD2 or JDCLOUD3 signature per brief §3 and §9 over the request as received;
/// returns the version used.
pub(super) fn authenticate(
    inventory: &Inventory,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    region: &str,
    now: Timestamp,
) -> Result<sign::Version, ApiError> {
    let authorization = header_text(headers, "authorization")
        .ok_or_else(|| ApiError::unauthenticated("the Authorization header is missing"))?;
    let parsed = sign::parse_authorization(authorization).ok_or_else(|| {
        ApiError::unauthenticated(
            "the Authorization header is not `JDCLOUD2-HMAC-SHA256 (or JDCLOUD3-HMAC-SHA256) \
             Credential=AK/DATE/REGION/SERVICE/TERMINATOR, SignedHeaders=…, Signature=…`",
        )
    })?;
    let credential = inventory
        .jdcloud
        .credentials
        .iter()
        .find(|credential| credential.access_key == parsed.access_key)
        .ok_or_else(|| {
            ApiError::unauthenticated(format!(
                "the access key `{}` is not known",
                parsed.access_key
            ))
        })?;
    if parsed.service != SERVICE {
        return Err(ApiError::unauthenticated(format!(
            "the credential scope names service `{}`, not `{SERVICE}`",
            parsed.service
        )));
    }
    if parsed.region != region {
        return Err(ApiError::unauthenticated(format!(
            "the credential scope names region `{}`, but the request is for `{region}`",
            parsed.region
        )));
    }
    let signed = |name: &str| parsed.signed_headers.iter().any(|signed| signed == name);
    if !signed("host") {
        return Err(ApiError::unauthenticated(
            "SignedHeaders must include `host`",
        ));
    }
    // The documented algorithm signs date and nonce; the current Python SDK (JDCLOUD3) does not.
    if parsed.version == sign::Version::V2
        && !(signed(sign::DATE_HEADER) && signed(sign::NONCE_HEADER))
    {
        return Err(ApiError::unauthenticated(
            "JDCLOUD2 requires x-jdcloud-date and x-jdcloud-nonce in SignedHeaders",
        ));
    }
    let datetime = header_text(headers, sign::DATE_HEADER)
        .ok_or_else(|| ApiError::unauthenticated("the x-jdcloud-date header is missing"))?;
    let seconds = sign::parse_datetime(datetime).ok_or_else(|| {
        ApiError::unauthenticated(format!(
            "x-jdcloud-date `{datetime}` is not YYYYMMDDTHHMMSSZ"
        ))
    })?;
    let skew = now.as_second().saturating_sub(seconds);
    if skew.abs() > SKEW_SECONDS {
        return Err(ApiError::unauthenticated(format!(
            "x-jdcloud-date is {skew} s away from the emulator's clock (at most {SKEW_SECONDS} s)"
        )));
    }
    if datetime.get(..8) != Some(parsed.date.as_str()) {
        return Err(ApiError::unauthenticated(
            "the credential scope's date is not the date of x-jdcloud-date",
        ));
    }
    let nonce = header_text(headers, sign::NONCE_HEADER)
        .filter(|nonce| !nonce.trim().is_empty())
        .ok_or_else(|| ApiError::unauthenticated("the x-jdcloud-nonce header is missing"))?;

    let mut values: Vec<(String, String)> = Vec::new();
    for name in &parsed.signed_headers {
        let value = header_text(headers, name).ok_or_else(|| {
            ApiError::unauthenticated(format!("the signed header `{name}` is missing"))
        })?;
        values.push((name.clone(), value.to_string()));
    }
    let pairs: Vec<(&str, &str)> = values
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    let expected = sign::signature(
        &sign::Scope {
            version: parsed.version,
            datetime,
            region,
            service: SERVICE,
        },
        &credential.secret_key,
        &sign::Request {
            method: method.as_str(),
            path: uri.path(),
            query: uri.query().unwrap_or_default(),
            headers: &pairs,
            body,
        },
    );
    if !sign::signatures_match(&expected, &parsed.signature) {
        return Err(ApiError::unauthenticated(format!(
            "the signature does not match ({} over {} {} with headers {}, {} body bytes)",
            parsed.version.algorithm(),
            method,
            sign::canonical_uri(uri.path()),
            parsed.signed_headers.join(";"),
            body.len()
        )));
    }
    // Replay check last: a refused request must not burn its nonce.
    let mut nonces = NONCES
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let now_seconds = now.as_second();
    nonces.retain(|_, expiry| *expiry > now_seconds);
    if nonces
        .insert(nonce.to_string(), now_seconds + 2 * SKEW_SECONDS)
        .is_some()
    {
        return Err(ApiError::unauthenticated(
            "the x-jdcloud-nonce was already used (replayed request)",
        ));
    }
    Ok(parsed.version)
}
