//! Signed Zenlayer requests: the endpoint, ZC2-HMAC-SHA256 (or bearer) headers over each
//! attempt, and reads sent with retries.

use reqwest::Url;
use reqwest::header::HeaderValue;

use super::{ZenlayerBmc, settings, wire};
use crate::provider::ProviderError;
use crate::provider::config;
use crate::provider::limits::ApiFamily;

impl ZenlayerBmc {
    /// Builds and signs one request over exactly `body`. Called again for every attempt, so
    /// each carries a fresh timestamp.
    pub(super) fn build_request(
        &self,
        action: &str,
        body: &[u8],
    ) -> Result<reqwest::Request, ProviderError> {
        self.build_request_at(action, body, jiff::Timestamp::now().as_second())
    }

    pub(super) fn build_request_at(
        &self,
        action: &str,
        body: &[u8],
        unix_seconds: i64,
    ) -> Result<reqwest::Request, ProviderError> {
        let headers = wire::request_headers(
            &self.credentials,
            self.api_version,
            action,
            &self.signed_host,
            unix_seconds,
            body,
        );
        let mut builder = self.http.client()?.post(self.endpoint.clone());
        for (name, value) in headers {
            let mut value = HeaderValue::from_str(&value).map_err(|_| ProviderError::Config {
                provider: self.name.clone(),
                // The value is not quoted: it may be a credential.
                message: format!("the `{name}` header would hold characters HTTP does not allow"),
                help: "check the credentials for stray newlines or non-ASCII characters"
                    .to_string(),
            })?;
            if name == "authorization" {
                value.set_sensitive(true);
            }
            builder = builder.header(name, value);
        }
        builder
            .body(body.to_vec())
            .build()
            .map_err(|error| ProviderError::Config {
                provider: self.name.clone(),
                message: format!("cannot build the {action} request: {error}"),
                help: format!("check the endpoint `{}`", self.endpoint),
            })
    }

    /// Sends a read action (safe to repeat) with retries, re-signing every attempt.
    pub(super) async fn read(
        &self,
        family: ApiFamily,
        action: &str,
        body: Vec<u8>,
    ) -> Result<wire::Envelope, ProviderError> {
        self.http
            .send_read_with_retry(
                family,
                || self.build_request(action, &body),
                |response| wire::parse_envelope(&self.name, action, response),
            )
            .await
    }
}

/// Parses and checks an endpoint URL; returns it with the `Host` value the client will send.
pub(super) fn parse_endpoint(text: &str) -> Result<(Url, String), (String, &'static str)> {
    let mut url = config::check_endpoint(text, settings::URL_HELP, config::PLAIN_HTTP_HELP)?;
    // A bare domain (as in ZENLAYERCLOUD_DOMAIN) means the service's usual path.
    if url.path() == "/" || url.path().is_empty() {
        url.set_path(wire::SERVICE_PATH);
    }
    let signed_host = config::signed_host(&url);
    Ok((url, signed_host))
}
