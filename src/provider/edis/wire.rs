//! The EDIS KVM management API on the wire (brief `shared/providers/edis.md`): form bodies,
//! the auth response with its per-VPS tickets, the power and image-list replies, and the
//! `{"error": "...", "code": N}` error shape.
//!
//! Nothing here does I/O; `mod.rs` sends what these functions build.

use reqwest::Url;
use secrecy::SecretString;
use serde_json::Value;

use crate::provider::config;
use crate::provider::http::RawResponse;
use crate::provider::response::is_retryable_status;
use crate::provider::{ProviderError, ServerStatus};

/// Production auth URL (brief §1: the auth host is fixed).
pub const DEFAULT_AUTH_URL: &str = "https://session.edisglobal.com/kvm/v2/get/auth";
pub const AUTH_PATH: &str = "/kvm/v2/get/auth";
pub const POWER_PATH: &str = "/kvm/v2/get/power";
pub const TURNKEY_IMAGES_PATH: &str = "/kvm/v2/get/turnkey_images";
pub const REINSTALL_PATH: &str = "/kvm/v2/set/reinstall";
pub const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded";
/// Management hosts returned by the production auth host must lie under one of these domains.
/// The brief shows `123456.edisglobal.com`; `edis.at` is EDIS's other domain (`api_rdns`).
/// A host elsewhere would receive the root password of a reinstall, so it is refused.
pub const PRODUCTION_DOMAINS: [&str; 2] = ["edisglobal.com", "edis.at"];
/// Brief §1: "if a returned value ever lacks a dot, append `.edisglobal.com`".
const BARE_HOST_SUFFIX: &str = ".edisglobal.com";

/// `application/x-www-form-urlencoded` as browsers write it (WHATWG URL standard): ASCII
/// letters, digits and `*-._` stay, a space becomes `+`, every other byte of the UTF-8 text is
/// `%XX`. So a password with `+`, `&` or `=` arrives intact (the brief warns that naive
/// clients break on exactly these).
pub fn form_encode(pairs: &[(&str, &str)]) -> String {
    let mut body = String::new();
    for (index, (name, value)) in pairs.iter().enumerate() {
        if index > 0 {
            body.push('&');
        }
        encode_component(name, &mut body);
        body.push('=');
        encode_component(value, &mut body);
    }
    body
}

fn encode_component(text: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                out.push(char::from(byte))
            }
            b' ' => out.push('+'),
            _ => {
                out.push('%');
                out.push(char::from(HEX[usize::from(byte >> 4)]));
                out.push(char::from(HEX[usize::from(byte & 0x0f)]));
            }
        }
    }
}

/// One VPS's ticket from the auth call (brief §2.1).
#[derive(Debug, Clone)]
pub struct Ticket {
    pub kvm_id: String,
    /// Exactly as returned; the management URL is built from it by [`management_base`].
    pub api_host: String,
    /// A bearer credential for this VPS until it expires: never printed.
    pub signature: SecretString,
    /// Exactly the text the auth call returned (an integer or an ISO time): echoed back as is.
    pub valid_until: String,
    /// When the ticket expires, in Unix seconds, where `valid_until` could be read.
    pub expires_at: Option<i64>,
    /// The portal label, the only human name of the VPS.
    pub description: Option<String>,
    /// `suspended` as returned (`"n"` when usable).
    pub suspended: String,
}

impl Ticket {
    /// Whether the brief's "do not reinstall a suspended VPS" applies. Only `"n"` (or `false`)
    /// counts as not suspended: an unknown value is taken for suspended, the safe reading.
    pub fn is_suspended(&self) -> bool {
        !matches!(self.suspended.as_str(), "n" | "N" | "false" | "0")
    }
}

/// Reads `valid_until` in either documented form: Unix seconds (current docs, an integer) or an
/// RFC 3339 time (older pages, e.g. `2025-01-12T15:30:00Z`).
pub fn parse_valid_until(text: &str) -> Option<i64> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<i64>() {
        return Some(seconds);
    }
    if let Ok(seconds) = text.parse::<f64>()
        && seconds.is_finite()
    {
        return Some(seconds as i64);
    }
    text.parse::<jiff::Timestamp>()
        .ok()
        .map(|time| time.as_second())
}

/// The `error`/`code` shape of every documented failure (brief §4), or a generic message.
pub fn api_error(provider: &str, what: &str, response: &RawResponse) -> ProviderError {
    let status = response.status;
    let parsed: Option<Value> = serde_json::from_slice(&response.body).ok();
    let message = parsed
        .as_ref()
        .and_then(|body| body.get("error"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| {
            format!(
                "HTTP {} with an unexpected body: {}",
                status.as_u16(),
                response.body_excerpt(200)
            )
        });
    let code = parsed
        .as_ref()
        .and_then(|body| body.get("code"))
        .map(|code| match code {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        });
    ProviderError::Api {
        provider: provider.to_string(),
        status: Some(status.as_u16()),
        code,
        message: format!("{what}: {message} (HTTP {})", status.as_u16()),
        request_id: None,
        // The brief documents no rate limits; 429 and 5xx are the usual "try again later".
        retryable: is_retryable_status(status),
    }
}

/// Whether an error is the "signature is invalid or expired" refusal (HTTP 401).
pub fn is_unauthorized(error: &ProviderError) -> bool {
    matches!(
        error,
        ProviderError::Api {
            status: Some(401),
            ..
        }
    )
}

/// The JSON body of a 2xx response whose `status` is `success` (brief §4: "clients should also
/// check `status` in a 200 body").
fn success_body(
    provider: &str,
    what: &str,
    response: &RawResponse,
) -> Result<Value, ProviderError> {
    if !response.status.is_success() {
        return Err(api_error(provider, what, response));
    }
    let body: Value = serde_json::from_slice(&response.body).map_err(|_| ProviderError::Api {
        provider: provider.to_string(),
        status: Some(response.status.as_u16()),
        code: None,
        message: format!(
            "{what}: the answer is not JSON: {}",
            response.body_excerpt(200)
        ),
        request_id: None,
        retryable: false,
    })?;
    match body.get("status").and_then(Value::as_str) {
        Some("success") => Ok(body),
        other => Err(ProviderError::Api {
            provider: provider.to_string(),
            status: Some(response.status.as_u16()),
            code: None,
            message: format!(
                "{what}: the answer's status is {}, not \"success\": {}",
                other.map_or_else(|| "missing".to_string(), |text| format!("{text:?}")),
                response.body_excerpt(200)
            ),
            request_id: None,
            retryable: false,
        }),
    }
}

/// The tickets of an auth response, keyed by `kvm_id` (brief §2.1: `data` is an object keyed
/// by `kvm_id`; an array of entries is read too, defensively).
pub fn parse_auth(provider: &str, response: &RawResponse) -> Result<Vec<Ticket>, ProviderError> {
    let body = success_body(provider, "authentication", response)?;
    let entries: Vec<(Option<&str>, &Value)> = match body.get("data") {
        Some(Value::Object(map)) => map
            .iter()
            .map(|(key, entry)| (Some(key.as_str()), entry))
            .collect(),
        Some(Value::Array(list)) => list.iter().map(|entry| (None, entry)).collect(),
        Some(Value::Null) | None => Vec::new(),
        Some(other) => {
            return Err(malformed(provider, format!("`data` is {}", kind_of(other))));
        }
    };
    let mut tickets = Vec::with_capacity(entries.len());
    for (key, entry) in entries {
        let text = |field: &str| entry.get(field).and_then(Value::as_str).map(str::to_string);
        let Some(kvm_id) = text("kvm_id").or_else(|| key.map(str::to_string)) else {
            return Err(malformed(provider, "an entry has no `kvm_id`".to_string()));
        };
        let api_host = text("api_host")
            .filter(|host| !host.trim().is_empty())
            .ok_or_else(|| malformed(provider, format!("VPS `{kvm_id}` has no `api_host`")))?;
        let signature = text("signature")
            .filter(|signature| !signature.is_empty())
            .ok_or_else(|| malformed(provider, format!("VPS `{kvm_id}` has no `signature`")))?;
        let valid_until = match entry.get("valid_until") {
            Some(Value::Number(number)) => number.to_string(),
            Some(Value::String(text)) if !text.is_empty() => text.clone(),
            _ => {
                return Err(malformed(
                    provider,
                    format!("VPS `{kvm_id}` has no readable `valid_until`"),
                ));
            }
        };
        let suspended = match entry.get("suspended") {
            Some(Value::String(text)) => text.clone(),
            Some(Value::Bool(flag)) => flag.to_string(),
            // Not given at all: nothing says it is suspended.
            None | Some(Value::Null) => "n".to_string(),
            Some(other) => other.to_string(),
        };
        tickets.push(Ticket {
            expires_at: parse_valid_until(&valid_until),
            kvm_id,
            api_host,
            signature: SecretString::from(signature),
            valid_until,
            description: text("description"),
            suspended,
        });
    }
    Ok(tickets)
}

fn malformed(provider: &str, detail: String) -> ProviderError {
    ProviderError::Api {
        provider: provider.to_string(),
        status: None,
        code: None,
        message: format!("the authentication answer is not as documented: {detail}"),
        request_id: None,
        retryable: false,
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// `get/power`: the state text and whether traffic is suspended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Power {
    /// As returned, e.g. `server powered on`.
    pub text: String,
    pub traffic_suspended: Option<bool>,
}

impl Power {
    /// Only "powered on" is documented; "powered off" is the brief's guess for the other state.
    /// Anything else is `Unknown`, which the plan refuses to reinstall from.
    pub fn status(&self) -> ServerStatus {
        let text = self.text.to_ascii_lowercase();
        if text.contains("powered on") || text == "on" || text == "running" {
            ServerStatus::Running
        } else if text.contains("powered off") || text == "off" || text == "stopped" {
            ServerStatus::Stopped
        } else {
            ServerStatus::Unknown
        }
    }
}

pub fn parse_power(provider: &str, response: &RawResponse) -> Result<Power, ProviderError> {
    let body = success_body(provider, "power state", response)?;
    let text = match body.get("data") {
        Some(Value::String(text)) => text.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    };
    Ok(Power {
        text,
        traffic_suspended: body.get("traffic_suspended").and_then(Value::as_bool),
    })
}

pub fn parse_image_list(
    provider: &str,
    response: &RawResponse,
) -> Result<Vec<String>, ProviderError> {
    let body = success_body(provider, "turnkey images", response)?;
    Ok(body
        .get("data")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default())
}

/// Checks a reinstall answer: 200 `{"status":"success"}`.
pub fn parse_reinstall(provider: &str, response: &RawResponse) -> Result<(), ProviderError> {
    success_body(provider, "reinstall", response).map(|_| ())
}

/// The base URL of a VPS's management host: `api_host` as returned, reached with the auth URL's
/// scheme. Refuses anything but `host[:port]`, plain http to another machine, and (against the
/// production auth host) hosts outside EDIS's domains.
pub fn management_base(auth_url: &Url, api_host: &str, production: bool) -> Result<Url, String> {
    let host = api_host.trim();
    if host.is_empty()
        || host
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, '/' | '\\' | '@' | '?' | '#'))
    {
        return Err(format!("`api_host` {host:?} is not a host name"));
    }
    let (name, port) = split_port(host);
    let bare =
        !name.contains('.') && !name.starts_with('[') && !name.eq_ignore_ascii_case("localhost");
    let host = if bare {
        format!("{name}{BARE_HOST_SUFFIX}{port}")
    } else {
        host.to_string()
    };
    let url = Url::parse(&format!("{}://{host}/", auth_url.scheme()))
        .map_err(|error| format!("`api_host` {host:?} is not a host name: {error}"))?;
    if url.path() != "/" || url.query().is_some() || !url.username().is_empty() {
        return Err(format!("`api_host` {host:?} is not a plain host name"));
    }
    if url.scheme() == "http" && !config::is_loopback(&url) {
        return Err(format!(
            "`api_host` {host:?} is not this machine, and plain http is only used for a local \
             emulator"
        ));
    }
    if production {
        let domain = url.host_str().unwrap_or_default().to_ascii_lowercase();
        let inside = PRODUCTION_DOMAINS
            .iter()
            .any(|allowed| domain.ends_with(&format!(".{allowed}")));
        if !inside {
            return Err(format!(
                "`api_host` {host:?} is outside EDIS's domains ({}); reimage will not send a \
                 root password there",
                PRODUCTION_DOMAINS.join(", ")
            ));
        }
    }
    Ok(url)
}

/// `host:port` → (`host`, `:port`); IPv6 literals keep their brackets.
fn split_port(host: &str) -> (&str, &str) {
    if host.starts_with('[') {
        return match host.find(']') {
            Some(end) => host.split_at(end + 1),
            None => (host, ""),
        };
    }
    match host.rfind(':') {
        Some(colon) => host.split_at(colon),
        None => (host, ""),
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;
    use crate::provider::response::testing::response;

    /// Expected values computed with Python's `urllib.parse.quote_plus(s, safe='*')` with `~`
    /// written `%7E` (WHATWG form encoding): an oracle independent of this code.
    #[test]
    fn form_encoding_keeps_awkward_passwords_intact() {
        let cases = [
            ("a+b&c=d", "a%2Bb%26c%3Dd"),
            ("P@ss w0rd+&=%", "P%40ss+w0rd%2B%26%3D%25"),
            ("Ünïcødé€", "%C3%9Cn%C3%AFc%C3%B8d%C3%A9%E2%82%AC"),
            ("user+tag@example.com", "user%2Btag%40example.com"),
            (
                "#cloud-config\nhostname: web-1\n",
                "%23cloud-config%0Ahostname%3A+web-1%0A",
            ),
            ("x~y*z-._", "x%7Ey*z-._"),
        ];
        for (value, expected) in cases {
            assert_eq!(form_encode(&[("pw", value)]), format!("pw={expected}"));
        }
        assert_eq!(
            form_encode(&[("email", "a+b@example.com"), ("pw", "x&pw=evil")]),
            "email=a%2Bb%40example.com&pw=x%26pw%3Devil"
        );
        assert_eq!(form_encode(&[]), "");
    }

    #[test]
    fn auth_data_keyed_by_kvm_id_is_read_with_valid_until_kept_verbatim() {
        let body = r#"{"status":"success","data":{
            "kvm_123456_789012":{"api_host":"123456.edisglobal.com","api_rdns":"dns-api.edis.at",
              "kvm_id":"kvm_123456_789012","valid_until":1737476000,
              "signature":"abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwx","suspended":"n",
              "description":"test-vps-1","lps":"01","lps_ispremium":false},
            "kvm_2":{"api_host":"2.edisglobal.com","valid_until":"2025-01-12T15:30:00Z",
              "signature":"s2","suspended":"y"}}}"#;
        let tickets = parse_auth("edis", &response(200, body)).unwrap();
        assert_eq!(tickets.len(), 2);
        assert_eq!(tickets[0].kvm_id, "kvm_123456_789012");
        assert_eq!(tickets[0].valid_until, "1737476000");
        assert_eq!(tickets[0].expires_at, Some(1_737_476_000));
        assert_eq!(tickets[0].description.as_deref(), Some("test-vps-1"));
        assert!(!tickets[0].is_suspended());
        assert_eq!(
            tickets[0].signature.expose_secret(),
            "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwx"
        );
        // The key names the VPS when the entry does not.
        assert_eq!(tickets[1].kvm_id, "kvm_2");
        assert_eq!(tickets[1].valid_until, "2025-01-12T15:30:00Z");
        assert_eq!(tickets[1].expires_at, Some(1_736_695_800));
        assert!(tickets[1].is_suspended());
        // The signature never prints.
        assert!(!format!("{tickets:?}").contains("abcdefghij"));
    }

    #[test]
    fn auth_errors_and_malformed_answers_are_errors_not_panics() {
        let refused = parse_auth(
            "edis",
            &response(401, r#"{"error":"Invalid credentials.","code":401}"#),
        )
        .unwrap_err();
        assert!(is_unauthorized(&refused));
        assert!(
            refused.to_string().contains("Invalid credentials."),
            "{refused}"
        );
        for body in [
            "not json",
            r#"{"status":"error"}"#,
            r#"{"status":"success","data":"x"}"#,
            r#"{"status":"success","data":{"k":{"signature":"s","valid_until":1}}}"#,
            r#"{"status":"success","data":{"k":{"api_host":"h","valid_until":1}}}"#,
            r#"{"status":"success","data":{"k":{"api_host":"h","signature":"s"}}}"#,
            r#"{"status":"success","data":[{"api_host":"h","signature":"s","valid_until":1}]}"#,
        ] {
            assert!(parse_auth("edis", &response(200, body)).is_err(), "{body}");
        }
        let empty = parse_auth("edis", &response(200, r#"{"status":"success","data":{}}"#));
        assert!(empty.unwrap().is_empty());
    }

    #[test]
    fn error_shapes_are_classified() {
        let cases = [
            (400, "Invalid parameters provided.", false),
            (403, "Access to this resource is denied.", false),
            (429, "slow down", true),
            (500, "boom", true),
        ];
        for (status, text, retryable) in cases {
            let body = format!(r#"{{"error":"{text}","code":{status}}}"#);
            let error = api_error("edis", "reinstall", &response(status, &body));
            assert_eq!(error.is_retryable(), retryable, "{status}");
            assert!(error.to_string().contains(text), "{error}");
            assert!(
                matches!(error, ProviderError::Api { code: Some(ref code), .. } if *code == status.to_string())
            );
        }
        let odd = api_error(
            "edis",
            "reinstall",
            &response(502, "<html>bad gateway</html>"),
        );
        assert!(odd.to_string().contains("bad gateway"), "{odd}");
    }

    #[test]
    fn power_texts_map_to_statuses() {
        let power = parse_power(
            "edis",
            &response(
                200,
                r#"{"status":"success","data":"server powered on","traffic_suspended":false}"#,
            ),
        )
        .unwrap();
        assert_eq!(power.status(), ServerStatus::Running);
        assert_eq!(power.traffic_suspended, Some(false));
        for (text, status) in [
            ("server powered off", ServerStatus::Stopped),
            ("Server Powered On", ServerStatus::Running),
            ("rebooting", ServerStatus::Unknown),
            ("", ServerStatus::Unknown),
        ] {
            let power = Power {
                text: text.to_string(),
                traffic_suspended: None,
            };
            assert_eq!(power.status(), status, "{text}");
        }
        assert!(parse_power("edis", &response(200, r#"{"status":"fail"}"#)).is_err());
    }

    #[test]
    fn management_hosts_use_the_auth_scheme_and_stay_where_they_belong() {
        let production = Url::parse(DEFAULT_AUTH_URL).unwrap();
        let base = management_base(&production, "123456.edisglobal.com", true).unwrap();
        assert_eq!(base.as_str(), "https://123456.edisglobal.com/");
        // A bare id gets EDIS's domain (brief §1, defensive).
        let base = management_base(&production, "123456", true).unwrap();
        assert_eq!(base.as_str(), "https://123456.edisglobal.com/");
        assert!(management_base(&production, "evil.example.com", true).is_err());
        assert!(management_base(&production, "edisglobal.com.evil.net", true).is_err());
        for bad in ["", "a b", "host/path", "user@host", "host?x", "host#f"] {
            assert!(management_base(&production, bad, true).is_err(), "{bad}");
        }

        let emulator = Url::parse("http://127.0.0.1:9000/kvm/v2/get/auth").unwrap();
        let base = management_base(&emulator, "127.0.0.1:9000", false).unwrap();
        assert_eq!(base.as_str(), "http://127.0.0.1:9000/");
        let base = management_base(&emulator, "localhost:9000", false).unwrap();
        assert_eq!(base.as_str(), "http://localhost:9000/");
        // Plain http never leaves this machine.
        assert!(management_base(&emulator, "10.0.0.1:9000", false).is_err());
        assert!(management_base(&emulator, "vps.example.com", false).is_err());
        let proxy = Url::parse("https://edis-proxy.example.org/kvm/v2/get/auth").unwrap();
        assert!(management_base(&proxy, "vps.example.com", false).is_ok());
    }

    #[test]
    fn valid_until_in_both_documented_forms() {
        assert_eq!(parse_valid_until("1737476000"), Some(1_737_476_000));
        assert_eq!(
            parse_valid_until("2025-01-12T15:30:00Z"),
            Some(1_736_695_800)
        );
        assert_eq!(parse_valid_until("soon"), None);
    }
}
