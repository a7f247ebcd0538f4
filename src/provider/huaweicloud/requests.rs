//! Requests to Huawei's gateway: SDK-HMAC-SHA256 signing (or `X-Auth-Token`), reads with
//! retries, calls that change something sent exactly once.

use reqwest::Method;
use reqwest::header::{HeaderName, HeaderValue};
use secrecy::ExposeSecret;
use serde_json::Value;

use super::credentials::Credentials;
use super::{CONTENT_TYPE_BODY, CONTENT_TYPE_READ, HuaweiClient, Target, wire};
use crate::provider::config;
use crate::provider::http::RawResponse;
use crate::provider::limits::ApiFamily;
use crate::provider::sign::sdk_hmac;
use crate::provider::{ProviderError, response};

impl HuaweiClient {
    pub(super) fn config_error(&self, message: String, help: &str) -> ProviderError {
        ProviderError::Config {
            provider: self.name.clone(),
            message,
            help: help.to_string(),
        }
    }

    /// Builds and signs one request. `path` is the API path (ids already encoded with
    /// [`sdk_hmac::encode`]); `project` goes into `X-Project-Id` (none for IAM).
    pub fn build_request(
        &self,
        target: Target,
        method: Method,
        path: &str,
        query: &[(String, String)],
        body: Option<&[u8]>,
        project: Option<&str>,
    ) -> Result<reqwest::Request, ProviderError> {
        self.build_request_at(
            target,
            method,
            path,
            query,
            body,
            project,
            jiff::Timestamp::now(),
        )
    }

    #[allow(clippy::too_many_arguments)]
    pub fn build_request_at(
        &self,
        target: Target,
        method: Method,
        path: &str,
        query: &[(String, String)],
        body: Option<&[u8]>,
        project: Option<&str>,
        now: jiff::Timestamp,
    ) -> Result<reqwest::Request, ProviderError> {
        let base = match target {
            Target::Service => &self.endpoint,
            Target::Iam => &self.iam_endpoint,
        };
        let mut url = base.clone();
        let full_path = format!("{}{path}", base.path().trim_end_matches('/'));
        url.set_path(&full_path);
        let canonical_query = sdk_hmac::canonical_query(query);
        url.set_query((!canonical_query.is_empty()).then_some(canonical_query.as_str()));
        let host = config::signed_host(&url);
        let content_type = if body.is_some() {
            CONTENT_TYPE_BODY
        } else {
            CONTENT_TYPE_READ
        };
        let mut headers: Vec<(String, String)> = vec![
            ("Content-Type".to_string(), content_type.to_string()),
            ("Host".to_string(), host),
        ];
        if let Some(project) = project {
            headers.push(("X-Project-Id".to_string(), project.to_string()));
        }
        let mut sensitive: Vec<(String, String)> = Vec::new();
        match &self.credentials {
            Credentials::AccessKey {
                access_key,
                secret_key,
                security_token,
            } => {
                headers.push((
                    "X-Sdk-Date".to_string(),
                    now.strftime(sdk_hmac::DATE_FORMAT).to_string(),
                ));
                if let Some(token) = security_token {
                    headers.push((
                        "X-Security-Token".to_string(),
                        token.expose_secret().to_string(),
                    ));
                }
                let authorization = sdk_hmac::sign(
                    access_key,
                    secret_key.expose_secret(),
                    method.as_str(),
                    url.path(),
                    &canonical_query,
                    &headers,
                    body.unwrap_or_default(),
                );
                sensitive.push(("Authorization".to_string(), authorization));
            }
            Credentials::Token(token) => {
                sensitive.push((
                    "X-Auth-Token".to_string(),
                    token.expose_secret().to_string(),
                ));
            }
        }
        let mut builder = self.http.client()?.request(method.clone(), url);
        for (name, value, is_sensitive) in headers
            .into_iter()
            .map(|(name, value)| (name, value, false))
            .chain(
                sensitive
                    .into_iter()
                    .map(|(name, value)| (name, value, true)),
            )
        {
            let header_name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                self.config_error(format!("bad header name `{name}`"), "this is a bug")
            })?;
            let mut header_value = HeaderValue::from_str(&value).map_err(|_| {
                // The value is not quoted: it may be a credential.
                self.config_error(
                    format!("the `{name}` header would hold characters HTTP does not allow"),
                    "check the credentials, project id and ids for stray newlines or \
                     non-ASCII characters",
                )
            })?;
            header_value.set_sensitive(is_sensitive || name == "X-Security-Token");
            builder = builder.header(header_name, header_value);
        }
        if let Some(body) = body {
            builder = builder.body(body.to_vec());
        }
        builder.build().map_err(|error| {
            self.config_error(
                format!("cannot build the request: {error}"),
                "check the endpoint",
            )
        })
    }

    /// A GET with retries (429, 5xx, transport), re-signed every attempt. Returns the JSON body
    /// and the request id.
    pub async fn read_json(
        &self,
        family: ApiFamily,
        target: Target,
        path: &str,
        query: &[(String, String)],
        what: &str,
    ) -> Result<(Value, Option<String>), ProviderError> {
        let project = match target {
            Target::Service => Some(self.project_id().await?),
            Target::Iam => None,
        };
        self.read_json_as(family, target, path, query, project.as_deref(), what)
            .await
    }

    /// [`HuaweiClient::read_json`] with the project header given (none for IAM).
    pub(super) async fn read_json_as(
        &self,
        family: ApiFamily,
        target: Target,
        path: &str,
        query: &[(String, String)],
        project: Option<&str>,
        what: &str,
    ) -> Result<(Value, Option<String>), ProviderError> {
        self.http
            .send_read_with_retry(
                family,
                || self.build_request(target, Method::GET, path, query, None, project),
                |response| wire::parse_json_response(&self.name, what, response),
            )
            .await
    }

    /// Sends a call that changes something exactly once (never retried).
    pub async fn send_once(
        &self,
        family: ApiFamily,
        method: Method,
        path: &str,
        body: &[u8],
    ) -> Result<RawResponse, ProviderError> {
        let project = self.project_id().await?;
        let request = self.build_request(
            Target::Service,
            method,
            path,
            &[],
            Some(body),
            Some(&project),
        )?;
        self.http.send_once(family, request).await
    }

    /// A reinstall call whose answer does not prove it was refused: report it as "may have been
    /// sent", so the caller checks the server instead of calling again.
    pub fn ambiguous(&self, error: ProviderError, what: &str) -> ProviderError {
        response::maybe_started(
            &self.name,
            self.endpoint.as_str(),
            &error,
            &format!("{what} may have started: check the server before trying again"),
        )
    }
}
