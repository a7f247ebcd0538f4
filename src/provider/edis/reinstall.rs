//! `set/reinstall`, sent once (only a 429, which refuses before acting, is sent again), with a
//! fresh ticket taken after the rate limiter grants the call.

use secrecy::ExposeSecret;

use super::wire;
use super::{CachedTicket, EdisKvm};
use crate::provider::http::RawResponse;
use crate::provider::limits::ApiFamily;
use crate::provider::{Operation, ProviderError, ReinstallRequest, ResolvedAccess};

impl EdisKvm {
    pub(super) async fn start_reinstall(
        &self,
        request: &ReinstallRequest,
    ) -> Result<Operation, ProviderError> {
        let password = match &request.access {
            ResolvedAccess::Password(password) => password,
            _ => {
                return Err(ProviderError::Config {
                    provider: self.name.clone(),
                    message: format!(
                        "server `{}`: EDIS needs a root password for a reinstall",
                        request.server
                    ),
                    help: "set `access.password` for this server".to_string(),
                });
            }
        };
        let mut fields: Vec<(&str, &str)> = vec![
            ("image", &request.image),
            ("password", password.expose_secret()),
        ];
        if let Some(user_data) = &request.user_data {
            fields.push(("cloudinit_user_data", user_data));
        }
        let ticket = self.ticket_for(&request.cloud_id).await?;
        if ticket.ticket.is_suspended() {
            return Err(ProviderError::Api {
                provider: self.name.clone(),
                status: None,
                code: None,
                message: format!(
                    "VPS `{}` is suspended; EDIS VPSs are not reinstalled while suspended",
                    request.cloud_id
                ),
                request_id: None,
                retryable: false,
            });
        }
        // A new install starts: nothing seen for an earlier one applies.
        self.progress().remove(&request.cloud_id);
        let started_at_ms = jiff::Timestamp::now().as_millisecond();
        let answer = match self.send_reinstall(&request.cloud_id, &fields).await {
            // A 401 is a refusal before anything was done: the one case where sending the
            // reinstall again is safe.
            Ok((used, response)) if response.status.as_u16() == 401 => {
                self.renew_after_rejection(&request.cloud_id, &used).await?;
                self.send_reinstall(&request.cloud_id, &fields).await
            }
            other => other,
        };
        let (ticket, response) = answer.map_err(|error| self.scrub_error(error))?;
        let status = response.status;
        wire::parse_reinstall(&self.name, &response).map_err(|error| {
            let error = self.scrub_error(error);
            // A 5xx, or a 2xx that is not the documented success, does not prove that nothing
            // started: the caller must look before trying again (brief §4: no idempotency).
            if status.is_server_error() || status.is_success() {
                ProviderError::Transport {
                    provider: self.name.clone(),
                    url: format!(
                        "{}{}",
                        ticket.base,
                        wire::REINSTALL_PATH.trim_start_matches('/')
                    ),
                    message: format!(
                        "{error}; the reinstall of `{}` may have started: look at the VPS \
                         (VNC console) before trying again",
                        request.cloud_id
                    ),
                    maybe_sent: true,
                    retryable: false,
                }
            } else {
                error
            }
        })?;
        Ok(Operation {
            server: request.server.clone(),
            cloud_id: request.cloud_id.clone(),
            image: request.image.clone(),
            // EDIS returns neither a job id nor a request id.
            job_id: None,
            request_id: None,
            started_at_ms,
            previous_image: request.previous_image.clone(),
        })
    }

    /// Sends the reinstall once (only a 429, which refuses before acting, is sent again). The
    /// ticket is taken after the rate limiter grants the call, renewed if it is inside its
    /// margin: a ticket attached before a long queue could expire in it. Returns the ticket
    /// used with the answer.
    async fn send_reinstall(
        &self,
        kvm_id: &str,
        fields: &[(&str, &str)],
    ) -> Result<(CachedTicket, RawResponse), ProviderError> {
        let retry = self.http.retry_policy().clone();
        let mut attempt = 1;
        loop {
            let permit = self.http.acquire(ApiFamily::Reinstall).await;
            let ticket = self.ticket_for(kvm_id).await?;
            let url = self.management_url(&ticket, wire::REINSTALL_PATH)?;
            let request = self.form_request(url, Self::ticket_form(&ticket.ticket, fields))?;
            let response = self.http.send_permitted(permit, request).await?;
            // EDIS documents no 429; this is HTTP's meaning, unconfirmed for EDIS (brief §4).
            if response.status.as_u16() != 429 || attempt >= retry.max_attempts.max(1) {
                return Ok((ticket, response));
            }
            tokio::time::sleep(retry.delay_before(attempt, response.retry_after())).await;
            attempt += 1;
        }
    }
}
