//! Signed JD Cloud requests: the endpoint, JDCLOUD2-HMAC-SHA256 headers over each attempt, and
//! reads sent with retries.

use reqwest::Url;
use reqwest::header::HeaderValue;

use super::wire::{self, ApiCall};
use super::{JdcloudCps, settings};
use crate::provider::ProviderError;
use crate::provider::config;
use crate::provider::limits::ApiFamily;

impl JdcloudCps {
    /// The path as sent: the endpoint's prefix, then the API path.
    pub(super) fn full_path(&self, call: &ApiCall) -> String {
        format!(
            "{}{}",
            self.endpoint.path().trim_end_matches('/'),
            call.path
        )
    }

    /// Builds and signs one request. Called again for every attempt, so each carries a fresh
    /// date and nonce.
    pub(super) fn build_request(&self, call: &ApiCall) -> Result<reqwest::Request, ProviderError> {
        let datetime = sign_datetime_now();
        let nonce = uuid::Uuid::new_v4().to_string();
        self.build_request_with(call, &datetime, &nonce)
    }

    pub(super) fn build_request_with(
        &self,
        call: &ApiCall,
        datetime: &str,
        nonce: &str,
    ) -> Result<reqwest::Request, ProviderError> {
        let full_path = self.full_path(call);
        let mut url = self.endpoint.clone();
        url.set_path(&full_path);
        url.set_query((!call.query.is_empty()).then_some(call.query.as_str()));
        let headers = wire::signed_headers(
            &self.credentials,
            &self.region,
            &self.signed_host,
            &full_path,
            call,
            datetime,
            nonce,
        );
        let mut builder = self.http.client()?.request(call.method.clone(), url);
        for (name, value) in headers {
            let mut value = HeaderValue::from_str(&value).map_err(|_| ProviderError::Config {
                provider: self.name.clone(),
                // The value is not quoted: it may be a credential.
                message: format!("the `{name}` header would hold characters HTTP does not allow"),
                help: "check the access key for stray newlines or non-ASCII characters".to_string(),
            })?;
            if name == "authorization" {
                value.set_sensitive(true);
            }
            builder = builder.header(name, value);
        }
        builder
            .body(call.body.clone())
            .build()
            .map_err(|error| ProviderError::Config {
                provider: self.name.clone(),
                message: format!("cannot build the {} request: {error}", call.action),
                help: format!("check the endpoint `{}`", self.endpoint),
            })
    }

    /// Sends a read (safe to repeat) with retries, re-signing every attempt.
    pub(super) async fn read(
        &self,
        family: ApiFamily,
        call: &ApiCall,
    ) -> Result<wire::Envelope, ProviderError> {
        self.http
            .send_read_with_retry(
                family,
                || self.build_request(call),
                |response| wire::parse_envelope(&self.name, call.action, response),
            )
            .await
    }
}

fn sign_datetime_now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y%m%dT%H%M%SZ")
        .to_string()
}

/// Parses and checks an endpoint URL; returns it with the `Host` value the client will send
/// (brief §3: port omitted for 80/443).
pub(super) fn parse_endpoint(text: &str) -> Result<(Url, String), (String, &'static str)> {
    let url = config::check_endpoint(text, settings::URL_HELP, config::PLAIN_HTTP_HELP)?;
    let signed_host = config::signed_host(&url);
    Ok((url, signed_host))
}
