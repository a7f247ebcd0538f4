//! Reading provider answers into errors, the parts the provider types do alike: which HTTP
//! statuses are worth another try, the message of a failed call, and the error for a call that
//! may have acted although its answer says otherwise.

use reqwest::StatusCode;

use super::ProviderError;
use super::http::RawResponse;

/// How much of an unexpected body an error message quotes.
pub const EXCERPT_CHARS: usize = 200;

/// Whether HTTP itself says "try again later": 429 or a server error.
pub fn is_retryable_status(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

/// The message of an answer that is not JSON (proxies and gateways answer with HTML).
pub fn non_json_message(action: &str, response: &RawResponse) -> String {
    format!(
        "{action}: unexpected non-JSON answer (HTTP {}): {}",
        response.status.as_u16(),
        response.body_excerpt(EXCERPT_CHARS)
    )
}

/// The message of a call that did not succeed, from the error `code` and `message` of a JSON
/// envelope, else from the body. `object` names what a successful answer carries (e.g.
/// `response`), for a 2xx answer without it.
pub fn failure_message(
    action: &str,
    code: Option<&str>,
    message: Option<String>,
    object: &str,
    response: &RawResponse,
) -> String {
    let status = response.status;
    // The provider's words reach a terminal: no control or bidi characters from them.
    let code = code.map(|code| crate::output::escape_control(code).into_owned());
    let code = code.as_deref();
    let message = message.map(|message| crate::output::escape_control(&message).into_owned());
    match (code, message) {
        (Some(code), Some(message)) => format!(
            "{action} failed with {code} (HTTP {}): {message}",
            status.as_u16()
        ),
        (Some(code), None) => format!("{action} failed with {code} (HTTP {})", status.as_u16()),
        (None, Some(message)) => format!("{action} failed (HTTP {}): {message}", status.as_u16()),
        (None, None) if status.is_success() => format!(
            "{action}: the answer has no `{object}` object (HTTP {}): {}",
            status.as_u16(),
            response.body_excerpt(EXCERPT_CHARS)
        ),
        (None, None) => format!(
            "{action} failed (HTTP {}): {}",
            status.as_u16(),
            response.body_excerpt(EXCERPT_CHARS)
        ),
    }
}

/// A call that changes something, whose answer does not prove it was refused (a server error,
/// an unreadable success): reported as "may have been sent", so the caller looks before trying
/// again. `consequence` follows the error's own words, e.g. "the reinstall of `x` may have
/// started: check …".
pub fn maybe_started(
    provider: &str,
    url: &str,
    error: &ProviderError,
    consequence: &str,
) -> ProviderError {
    let detail = match error {
        ProviderError::Api {
            message,
            request_id: Some(request_id),
            ..
        } => format!("{message} (request id {request_id})"),
        ProviderError::Api { message, .. } => message.clone(),
        other => other.to_string(),
    };
    ProviderError::Transport {
        provider: provider.to_string(),
        url: url.to_string(),
        message: format!("{detail}; {consequence}"),
        maybe_sent: true,
        // Only reinstall calls end here, and those are never sent again blindly.
        retryable: false,
    }
}

/// Helpers for the tests of the providers' response parsers.
#[cfg(test)]
pub(crate) mod testing {
    use reqwest::StatusCode;
    use reqwest::header::HeaderMap;

    use crate::provider::ProviderError;
    use crate::provider::http::RawResponse;

    /// A response with `status`, no headers and `body`.
    pub fn response(status: u16, body: &str) -> RawResponse {
        RawResponse {
            status: StatusCode::from_u16(status).unwrap(),
            headers: HeaderMap::new(),
            body: body.as_bytes().to_vec(),
        }
    }

    /// The status, code, message, request id and retryability of an API error.
    pub fn api_error<T: std::fmt::Debug>(
        result: Result<T, ProviderError>,
    ) -> (Option<u16>, Option<String>, String, Option<String>, bool) {
        match result {
            Err(ProviderError::Api {
                status,
                code,
                message,
                request_id,
                retryable,
                ..
            }) => (status, code, message, request_id, retryable),
            other => panic!("expected an API error, got {other:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::response;
    use super::*;

    #[test]
    fn retryable_statuses() {
        for status in [429, 500, 502, 503] {
            assert!(is_retryable_status(StatusCode::from_u16(status).unwrap()));
        }
        for status in [200, 400, 401, 403, 404] {
            assert!(!is_retryable_status(StatusCode::from_u16(status).unwrap()));
        }
    }

    #[test]
    fn failure_messages_use_what_the_answer_gives() {
        let bad = response(400, "<html>no</html>");
        assert_eq!(
            failure_message("Act", Some("E1"), Some("bad".into()), "result", &bad),
            "Act failed with E1 (HTTP 400): bad"
        );
        assert_eq!(
            failure_message("Act", Some("E1"), None, "result", &bad),
            "Act failed with E1 (HTTP 400)"
        );
        assert_eq!(
            failure_message("Act", None, None, "result", &bad),
            "Act failed (HTTP 400): <html>no</html>"
        );
        assert_eq!(
            failure_message("Act", None, None, "result", &response(200, "{}")),
            "Act: the answer has no `result` object (HTTP 200): {}"
        );
        assert_eq!(
            non_json_message("Act", &bad),
            "Act: unexpected non-JSON answer (HTTP 400): <html>no</html>"
        );
    }

    #[test]
    fn maybe_started_keeps_the_request_id_and_says_it_may_have_been_sent() {
        let error = ProviderError::Api {
            provider: "p".into(),
            status: Some(504),
            code: None,
            message: "gateway timeout".into(),
            request_id: Some("req-1".into()),
            retryable: true,
        };
        match maybe_started("p", "https://x.example/", &error, "it may have started") {
            ProviderError::Transport {
                message,
                maybe_sent,
                ..
            } => {
                assert!(maybe_sent);
                assert_eq!(
                    message,
                    "gateway timeout (request id req-1); it may have started"
                );
            }
            other => panic!("{other:?}"),
        }
    }
}
