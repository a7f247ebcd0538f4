//! ZC2-HMAC-SHA256 (Zenlayer Cloud API 2.0).
//!
//! Canonical request: `POST\n/\n\ncontent-type:{ct}\nhost:{host}\n\ncontent-type;host\n{hex sha256(body)}`
//! (the canonical URI is always `/`, the query always empty); string to sign:
//! `ZC2-HMAC-SHA256\n{unix seconds}\n{hex sha256(canonical request)}`; signature: hex
//! HMAC-SHA256 keyed with the access key password, no key derivation.

pub use super::signatures_match;
use crate::digest::{hmac_sha256, sha256_hex};

pub const ALGORITHM: &str = "ZC2-HMAC-SHA256";
pub const SIGNED_HEADERS: &str = "content-type;host";

pub fn canonical_request(content_type: &str, host: &str, body: &[u8]) -> String {
    format!(
        "POST\n/\n\ncontent-type:{content_type}\nhost:{host}\n\n{SIGNED_HEADERS}\n{}",
        sha256_hex(body)
    )
}

pub fn string_to_sign(timestamp: &str, canonical_request: &str) -> String {
    format!(
        "{ALGORITHM}\n{timestamp}\n{}",
        sha256_hex(canonical_request.as_bytes())
    )
}

pub fn signature(access_key_password: &str, string_to_sign: &str) -> String {
    hex::encode(hmac_sha256(
        access_key_password.as_bytes(),
        string_to_sign.as_bytes(),
    ))
}

/// The `Authorization` header value for one request.
pub fn authorization(
    access_key_id: &str,
    access_key_password: &str,
    timestamp: &str,
    content_type: &str,
    host: &str,
    body: &[u8],
) -> String {
    let canonical = canonical_request(content_type, host, body);
    let to_sign = string_to_sign(timestamp, &canonical);
    format!(
        "{ALGORITHM} Credential={access_key_id}, SignedHeaders={SIGNED_HEADERS}, Signature={}",
        signature(access_key_password, &to_sign)
    )
}

/// The parts of a received `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedAuthorization {
    pub access_key_id: String,
    pub signed_headers: String,
    pub signature: String,
}

/// Parses `ZC2-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…`.
pub fn parse_authorization(header: &str) -> Option<ParsedAuthorization> {
    let rest = header.strip_prefix(ALGORITHM)?.trim_start();
    let mut access_key_id = None;
    let mut signed_headers = None;
    let mut signature = None;
    for part in rest.split(',') {
        let (name, value) = part.trim().split_once('=')?;
        match name {
            "Credential" => access_key_id = Some(value.to_string()),
            "SignedHeaders" => signed_headers = Some(value.to_string()),
            "Signature" => signature = Some(value.to_string()),
            _ => return None,
        }
    }
    Some(ParsedAuthorization {
        access_key_id: access_key_id?,
        signed_headers: signed_headers?,
        signature: signature?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every Zenlayer vector from `tests/vectors/signing-vectors.json` (made by the official
    /// Python SDK's signer) plus the worked example of the official signature page.
    #[test]
    fn official_vectors() {
        let vectors: serde_json::Value =
            serde_json::from_str(include_str!("../../../tests/vectors/signing-vectors.json"))
                .unwrap();
        let section = &vectors["ZC2-HMAC-SHA256 (Zenlayer Cloud API 2.0)"];
        let list = section["vectors"].as_array().unwrap();
        assert!(list.len() >= 2);
        for vector in list {
            let inputs = &vector["inputs"];
            let outputs = &vector["outputs"];
            let headers = outputs["headers_sent"].as_object().unwrap();
            let body = inputs["body"].as_str().unwrap().as_bytes();
            let timestamp = inputs["timestamp"].as_i64().unwrap().to_string();
            let content_type = headers["Content-Type"].as_str().unwrap();
            let host = headers["host"].as_str().unwrap();
            let canonical = canonical_request(content_type, host, body);
            assert_eq!(canonical, outputs["canonical_request"].as_str().unwrap());
            assert_eq!(
                string_to_sign(&timestamp, &canonical),
                outputs["string_to_sign"].as_str().unwrap()
            );
            let header = authorization(
                inputs["access_key_id"].as_str().unwrap(),
                inputs["access_key_password"].as_str().unwrap(),
                &timestamp,
                content_type,
                host,
                body,
            );
            assert_eq!(
                header,
                outputs["authorization"].as_str().unwrap(),
                "{}",
                vector["name"]
            );
            let parsed = parse_authorization(&header).unwrap();
            assert_eq!(parsed.signed_headers, SIGNED_HEADERS);
        }
        let doc = &section["doc_example_crosscheck"];
        let canonical = canonical_request(
            doc["content_type"].as_str().unwrap(),
            doc["host"].as_str().unwrap(),
            doc["body"].as_str().unwrap().as_bytes(),
        );
        let to_sign = string_to_sign(&doc["timestamp"].as_i64().unwrap().to_string(), &canonical);
        assert_eq!(to_sign, doc["string_to_sign"].as_str().unwrap());
        assert_eq!(
            signature(doc["access_key_password"].as_str().unwrap(), &to_sign),
            doc["signature"].as_str().unwrap()
        );
    }

    #[test]
    fn malformed_authorization_headers_are_refused() {
        assert!(parse_authorization("Bearer x").is_none());
        assert!(parse_authorization("ZC2-HMAC-SHA256 Credential=a").is_none());
        assert!(parse_authorization("ZC2-HMAC-SHA256 Credential=a, Foo=b, Signature=c").is_none());
    }
}
