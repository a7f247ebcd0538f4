//! Session tickets: one login (`get/auth`) serves every VPS of the account; tickets are cached,
//! renewed before they expire and once after a 401.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use secrecy::ExposeSecret;

use super::wire::{self, Ticket};
use super::{
    CachedTicket, ENV_EMAIL, ENV_PASSWORD, EdisKvm, RENEW_MARGIN, TicketCache,
    UNREADABLE_EXPIRY_LIFETIME,
};
use crate::provider::ProviderError;
use crate::provider::http::RawResponse;
use crate::provider::limits::ApiFamily;

impl EdisKvm {
    /// Logs in and replaces every cached ticket (brief §2.3: one auth call refreshes all VPSs).
    pub(super) async fn authenticate(&self, cache: &mut TicketCache) -> Result<(), ProviderError> {
        self.auth_calls.fetch_add(1, Ordering::SeqCst);
        let body = wire::form_encode(&[
            ("email", self.email.expose_secret()),
            ("pw", self.password.expose_secret()),
        ]);
        let tickets = self
            .http
            .send_read_with_retry(
                ApiFamily::Auth,
                || self.form_request(self.auth_url.clone(), body.clone()),
                |response| self.classify_auth(response),
            )
            .await
            .map_err(|error| self.scrub_error(error))?;
        let issued_ms = jiff::Timestamp::now().as_millisecond();
        let mut fresh = BTreeMap::new();
        for ticket in tickets {
            let base = wire::management_base(&self.auth_url, &ticket.api_host, self.production)
                .map_err(|message| ProviderError::Api {
                    provider: self.name.clone(),
                    status: None,
                    code: None,
                    message: format!("VPS `{}`: {message}", ticket.kvm_id),
                    request_id: None,
                    retryable: false,
                })?;
            let renew_at_ms = renew_at(issued_ms, ticket.expires_at);
            fresh.insert(
                ticket.kvm_id.clone(),
                CachedTicket {
                    ticket,
                    base,
                    renew_at_ms,
                },
            );
        }
        tracing::debug!(provider = %self.name, vps = fresh.len(), "EDIS tickets issued");
        cache.tickets = fresh;
        cache.filled = true;
        Ok(())
    }

    fn classify_auth(&self, response: RawResponse) -> Result<Vec<Ticket>, ProviderError> {
        if matches!(response.status.as_u16(), 401 | 403) {
            let refused = wire::api_error(&self.name, "login", &response);
            let detail = match refused {
                ProviderError::Api { message, .. } => message,
                other => other.to_string(),
            };
            return Err(ProviderError::Config {
                provider: self.name.clone(),
                message: format!(
                    "EDIS refused the e-mail and password: {}",
                    self.scrub(&detail)
                ),
                help: format!(
                    "check `credentials.email`/`credentials.password` (or {ENV_EMAIL}/\
                     {ENV_PASSWORD}): they are the client-area login; API access must also be \
                     enabled once in the KVM portal"
                ),
            });
        }
        wire::parse_auth(&self.name, &response)
    }

    /// Tickets for `ids`, logging in first when any is missing or due for renewal. Ids the
    /// account does not have are absent from the result.
    pub(super) async fn tickets_for(
        &self,
        ids: &[String],
    ) -> Result<BTreeMap<String, CachedTicket>, ProviderError> {
        let mut cache = self.tickets.lock().await;
        let now_ms = jiff::Timestamp::now().as_millisecond();
        let stale = !cache.filled
            || ids.iter().any(|id| {
                cache
                    .tickets
                    .get(id)
                    .is_none_or(|cached| now_ms >= cached.renew_at_ms)
            });
        if stale {
            self.authenticate(&mut cache).await?;
        }
        Ok(ids
            .iter()
            .filter_map(|id| {
                cache
                    .tickets
                    .get(id)
                    .map(|cached| (id.clone(), cached.clone()))
            })
            .collect())
    }

    pub(super) async fn ticket_for(&self, kvm_id: &str) -> Result<CachedTicket, ProviderError> {
        let ids = [kvm_id.to_string()];
        self.tickets_for(&ids)
            .await?
            .remove(kvm_id)
            .ok_or_else(|| ProviderError::Api {
                provider: self.name.clone(),
                status: None,
                code: None,
                message: format!("the account has no VPS `{kvm_id}` (the login did not list it)"),
                request_id: None,
                retryable: false,
            })
    }

    /// After a 401 with `rejected`: logs in again, unless another caller already did.
    pub(super) async fn renew_after_rejection(
        &self,
        kvm_id: &str,
        rejected: &CachedTicket,
    ) -> Result<CachedTicket, ProviderError> {
        let mut cache = self.tickets.lock().await;
        let already_renewed = cache.tickets.get(kvm_id).is_some_and(|cached| {
            cached.ticket.signature.expose_secret() != rejected.ticket.signature.expose_secret()
        });
        if !already_renewed {
            tracing::info!(provider = %self.name, kvm_id, "EDIS refused the ticket (401); logging in again");
            self.authenticate(&mut cache).await?;
        }
        cache
            .tickets
            .get(kvm_id)
            .cloned()
            .ok_or_else(|| ProviderError::Api {
                provider: self.name.clone(),
                status: None,
                code: None,
                message: format!("the account no longer lists VPS `{kvm_id}`"),
                request_id: None,
                retryable: false,
            })
    }
}

/// When to renew a ticket issued at `issued_ms` that expires at `expires_at` (Unix seconds).
pub(super) fn renew_at(issued_ms: i64, expires_at: Option<i64>) -> i64 {
    let unreadable_lifetime_ms = UNREADABLE_EXPIRY_LIFETIME.as_millis() as i64;
    let Some(expires_ms) = expires_at.and_then(|seconds| seconds.checked_mul(1000)) else {
        return issued_ms.saturating_add(unreadable_lifetime_ms);
    };
    let lifetime_ms = expires_ms.saturating_sub(issued_ms).max(0);
    let margin_ms = (RENEW_MARGIN.as_millis() as i64).min(lifetime_ms / 4);
    expires_ms.saturating_sub(margin_ms)
}
