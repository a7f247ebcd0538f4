//! Form requests to EDIS: the auth URL, management calls carrying a ticket (reads retried and
//! renewed once on a 401), and the account password scrubbed from anything the server echoes.

use reqwest::Url;
use reqwest::header::{CONTENT_TYPE, HeaderValue};
use secrecy::ExposeSecret;

use super::wire::{self, Ticket};
use super::{CachedTicket, EdisKvm, settings};
use crate::provider::ProviderError;
use crate::provider::config;
use crate::provider::http::RawResponse;
use crate::provider::limits::ApiFamily;

impl EdisKvm {
    /// Removes secrets the server might echo from text meant for errors and logs.
    pub(super) fn scrub(&self, text: &str) -> String {
        let password = self.password.expose_secret();
        if password.is_empty() {
            text.to_string()
        } else {
            text.replace(password, "<redacted>")
        }
    }

    pub(super) fn scrub_error(&self, error: ProviderError) -> ProviderError {
        match error {
            ProviderError::Api {
                provider,
                status,
                code,
                message,
                request_id,
                retryable,
            } => ProviderError::Api {
                provider,
                status,
                code,
                message: self.scrub(&message),
                request_id,
                retryable,
            },
            ProviderError::Transport {
                provider,
                url,
                message,
                maybe_sent,
                retryable,
            } => ProviderError::Transport {
                provider,
                url,
                message: self.scrub(&message),
                maybe_sent,
                retryable,
            },
            other => other,
        }
    }

    pub(super) fn form_request(
        &self,
        url: Url,
        body: String,
    ) -> Result<reqwest::Request, ProviderError> {
        self.http
            .client()?
            .post(url)
            .header(
                CONTENT_TYPE,
                HeaderValue::from_static(wire::FORM_CONTENT_TYPE),
            )
            .body(body)
            .build()
            .map_err(|error| ProviderError::Config {
                provider: self.name.clone(),
                message: format!("cannot build a request: {error}"),
                help: "this is a bug in reimage; please report it".to_string(),
            })
    }

    /// The form of a management call: the ticket exactly as issued, then the call's fields.
    pub(super) fn ticket_form(ticket: &Ticket, fields: &[(&str, &str)]) -> String {
        let mut pairs: Vec<(&str, &str)> = vec![
            ("signature", ticket.signature.expose_secret()),
            ("kvm_id", &ticket.kvm_id),
            ("valid_until", &ticket.valid_until),
        ];
        pairs.extend_from_slice(fields);
        wire::form_encode(&pairs)
    }

    pub(super) fn management_url(
        &self,
        cached: &CachedTicket,
        path: &str,
    ) -> Result<Url, ProviderError> {
        cached
            .base
            .join(path)
            .map_err(|error| ProviderError::Config {
                provider: self.name.clone(),
                message: format!("cannot build the URL of {path}: {error}"),
                help: "this is a bug in reimage; please report it".to_string(),
            })
    }

    /// A management read (retried on 429/5xx), renewing the ticket once on a 401.
    pub(super) async fn management_read<T>(
        &self,
        family: ApiFamily,
        kvm_id: &str,
        path: &str,
        parse: fn(&str, &RawResponse) -> Result<T, ProviderError>,
    ) -> Result<T, ProviderError> {
        let ticket = self.ticket_for(kvm_id).await?;
        match self.read_with(family, &ticket, path, parse).await {
            Err(error) if wire::is_unauthorized(&error) => {
                let fresh = self.renew_after_rejection(kvm_id, &ticket).await?;
                self.read_with(family, &fresh, path, parse).await
            }
            other => other,
        }
    }

    async fn read_with<T>(
        &self,
        family: ApiFamily,
        cached: &CachedTicket,
        path: &str,
        parse: fn(&str, &RawResponse) -> Result<T, ProviderError>,
    ) -> Result<T, ProviderError> {
        let url = self.management_url(cached, path)?;
        let body = Self::ticket_form(&cached.ticket, &[]);
        self.http
            .send_read_with_retry(
                family,
                || self.form_request(url.clone(), body.clone()),
                |response| parse(&self.name, &response),
            )
            .await
            .map_err(|error| self.scrub_error(error))
    }
}

/// Parses and checks the auth URL; a bare host means the documented path.
pub(super) fn parse_auth_url(text: &str) -> Result<Url, (String, &'static str)> {
    let mut url = config::check_endpoint(text, settings::URL_HELP, settings::PLAIN_HTTP_HELP)?;
    if url.path() == "/" || url.path().is_empty() {
        url.set_path(wire::AUTH_PATH);
    }
    Ok(url)
}
