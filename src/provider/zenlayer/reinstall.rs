//! `ReinstallInstance`, sent exactly once (no idempotency token), and how its refusals and
//! unclear answers are explained.

use super::{ZenlayerBmc, wire};
use crate::provider::limits::ApiFamily;
use crate::provider::response;
use crate::provider::{Operation, ProviderError, ReinstallRequest};

impl ZenlayerBmc {
    pub(super) async fn start_reinstall(
        &self,
        request: &ReinstallRequest,
    ) -> Result<Operation, ProviderError> {
        let body = wire::reinstall_body(&wire::ReinstallInput {
            cloud_id: &request.cloud_id,
            image: &request.image,
            hostname: request.hostname.as_deref(),
            user_data: request.user_data.as_deref(),
            access: &request.access,
            options: &request.options,
        })
        .map_err(|error| ProviderError::Config {
            provider: self.name.clone(),
            message: format!("server `{}`: {}", request.server, error.message),
            help: error.help,
        })?;
        // Built (and signed) before the first send, so a request that cannot be built fails
        // before anything is sent.
        let first_request = self.build_request(wire::REINSTALL_INSTANCE, &body)?;
        self.installing_seen.forget(&request.cloud_id);
        // Sent once (a reinstall wipes a disk and the API takes no idempotency token); only a
        // 429, which refuses before acting, is sent again.
        let mut first_request = Some(first_request);
        let response = self
            .http
            .send_mutation(ApiFamily::Reinstall, || match first_request.take() {
                Some(request) => Ok(request),
                None => self.build_request(wire::REINSTALL_INSTANCE, &body),
            })
            .await?;
        let status = response.status;
        let envelope = wire::parse_envelope(&self.name, wire::REINSTALL_INSTANCE, response)
            .map_err(|error| {
                // A server error (a gateway timeout in particular) or an unreadable success
                // does not prove the install did not start: report it as "may have been
                // sent", so the caller checks the instance instead of calling again.
                if status.is_server_error() || status.is_success() {
                    self.ambiguous_reinstall(error, &request.cloud_id)
                } else {
                    explain_reinstall_error(error, &request.cloud_id)
                }
            })?;
        Ok(Operation {
            server: request.server.clone(),
            cloud_id: request.cloud_id.clone(),
            image: request.image.clone(),
            // ReinstallInstance returns no task id; progress is read from the instance.
            job_id: None,
            request_id: envelope.request_id,
            started_at_ms: jiff::Timestamp::now().as_millisecond(),
            previous_image: request.previous_image.clone(),
        })
    }

    fn ambiguous_reinstall(&self, error: ProviderError, cloud_id: &str) -> ProviderError {
        response::maybe_started(
            &self.name,
            self.endpoint.as_str(),
            &error,
            &format!(
                "the reinstall of `{cloud_id}` may have started: check the instance status \
                 before trying again"
            ),
        )
    }
}

/// Names the one reinstall refusal that means "nothing to do but wait".
fn explain_reinstall_error(error: ProviderError, cloud_id: &str) -> ProviderError {
    match error {
        ProviderError::Api {
            provider,
            status,
            code: Some(code),
            message,
            request_id,
            retryable,
        } if code == wire::CODE_INSTALLING => ProviderError::Api {
            provider,
            status,
            message: format!(
                "an install is already in progress on `{cloud_id}` ({code}); wait for it to \
                 finish, then plan again (Zenlayer said: {message})"
            ),
            code: Some(code),
            request_id,
            retryable,
        },
        other => other,
    }
}
