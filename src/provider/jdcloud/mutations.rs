//! The calls that change a server, each sent once with a `clientToken` from the plan step:
//! `stopInstance` and `reinstallInstance`, and how their refusals are explained.

use super::JdcloudCps;
use super::validate::ServerOptions;
use super::wire;
use crate::provider::limits::ApiFamily;
use crate::provider::response;
use crate::provider::{Operation, ProviderError, ReinstallRequest, ResolvedAccess, ServerStatus};

impl JdcloudCps {
    pub(super) async fn stop_server(
        &self,
        cloud_id: &str,
        token: &str,
    ) -> Result<(), ProviderError> {
        // Already stopping or stopped (a resumed apply): nothing to send.
        let instance = self.describe_one(cloud_id).await?;
        match wire::map_status(&instance.status) {
            ServerStatus::Stopped => return Ok(()),
            _ if instance.status.eq_ignore_ascii_case("stopping") => return Ok(()),
            _ => {}
        }
        let client_token = wire::client_token(token, cloud_id, "stop");
        let call = wire::stop_instance(&self.region, cloud_id, &client_token);
        let request = self.build_request(&call)?;
        // Never retried blindly; a retry by the caller reuses the token, so JD runs it once.
        let response = self.http.send_once(ApiFamily::Stop, request).await?;
        wire::parse_envelope(&self.name, call.action, response)
            .map_err(|error| self.explain_mutation_error(error, wire::STOP_INSTANCE, cloud_id))?;
        Ok(())
    }

    pub(super) async fn start_reinstall(
        &self,
        request: &ReinstallRequest,
    ) -> Result<Operation, ProviderError> {
        let config_error = |message: String, help: &str| ProviderError::Config {
            provider: self.name.clone(),
            message: format!("server `{}`: {message}", request.server),
            help: help.to_string(),
        };
        let ResolvedAccess::Password(password) = &request.access else {
            return Err(config_error(
                format!(
                    "refusing to reinstall `{}` without a password",
                    request.cloud_id
                ),
                "JD Cloud's reinstallInstance requires a password; set `access.password`",
            ));
        };
        if request.image.trim().is_empty() {
            return Err(config_error(
                format!(
                    "refusing to reinstall `{}` without an osTypeId",
                    request.cloud_id
                ),
                "set `os.image` to the osTypeId to install",
            ));
        }
        let options = ServerOptions::read(&request.options);
        // The layout is read now, not from the plan: it is what JD will be asked to repeat.
        let instance = self.describe_one(&request.cloud_id).await?;
        let az = options.az.clone().or(instance.az.clone()).ok_or_else(|| {
            config_error(
                format!("JD reports no availability zone for `{}`", request.cloud_id),
                "set `options.az` for this server",
            )
        })?;
        let sys_raid = options
            .sys_raid_type_id
            .clone()
            .or(instance.sys_raid_type_id.clone())
            .ok_or_else(|| {
                config_error(
                    format!("JD reports no system RAID type for `{}`", request.cloud_id),
                    "set `options.sys_raid_type_id` for this server",
                )
            })?;
        // JD writes `Standard` in answers and `standard` in requests (brief §0.5).
        let image_type = options
            .image_type
            .clone()
            .or(instance.image_type.as_deref().map(str::to_ascii_lowercase))
            .unwrap_or_else(|| "standard".to_string());
        let data_raid = options
            .data_raid_type_id
            .clone()
            .or(instance.data_raid_type_id.clone());
        if !options
            .keep_data_allowed_with(data_raid.as_deref(), instance.data_raid_type_id.as_deref())
        {
            return Err(config_error(
                format!(
                    "changing the data RAID of `{}` rebuilds its data disks, which cannot keep \
                     their data",
                    request.cloud_id
                ),
                "set `keep_data: false` to confirm the data disks are wiped",
            ));
        }
        let spec = wire::InstanceSpec {
            az: &az,
            image_type: &image_type,
            os_type_id: &request.image,
            sys_raid_type_id: &sys_raid,
            data_raid_type_id: data_raid.as_deref(),
            keep_data: options.keep_data,
            password,
            hostname: request.hostname.as_deref(),
            user_data: request.user_data.as_deref(),
            keypair_id: options.keypair_id.as_deref(),
        };
        let client_token = wire::client_token(&request.token, &request.cloud_id, "reinstall");
        let call = wire::reinstall_instance(&self.region, &request.cloud_id, &client_token, &spec);
        let http_request = self.build_request(&call)?;
        self.installing_seen.forget(&request.cloud_id);
        // Sent once; a retry by the caller carries the same clientToken, so JD runs it at most
        // once (brief §0.7).
        let response = self
            .http
            .send_once(ApiFamily::Reinstall, http_request)
            .await?;
        let status = response.status;
        let envelope =
            wire::parse_envelope(&self.name, call.action, response).map_err(|error| {
                if status.is_server_error() || status.is_success() {
                    self.ambiguous_reinstall(error, &request.cloud_id)
                } else {
                    self.explain_mutation_error(error, wire::REINSTALL_INSTANCE, &request.cloud_id)
                }
            })?;
        if envelope
            .result
            .get("success")
            .and_then(serde_json::Value::as_bool)
            == Some(false)
        {
            return Err(ProviderError::Api {
                provider: self.name.clone(),
                status: Some(status.as_u16()),
                code: None,
                message: format!(
                    "reinstallInstance of `{}` answered success: false",
                    request.cloud_id
                ),
                request_id: envelope.request_id,
                retryable: false,
            });
        }
        Ok(Operation {
            server: request.server.clone(),
            cloud_id: request.cloud_id.clone(),
            image: request.image.clone(),
            // reinstallInstance returns no job id; progress is read from the instance.
            job_id: None,
            request_id: envelope.request_id,
            started_at_ms: jiff::Timestamp::now().as_millisecond(),
            previous_image: request.previous_image.clone(),
        })
    }

    /// A 5xx or an unreadable success does not prove the reinstall did not start.
    fn ambiguous_reinstall(&self, error: ProviderError, cloud_id: &str) -> ProviderError {
        response::maybe_started(
            &self.name,
            self.endpoint.as_str(),
            &error,
            &format!(
                "the reinstall of `{cloud_id}` may have started: check the instance before \
                 trying again (a retry of the same plan step reuses its clientToken, so JD runs \
                 it at most once)"
            ),
        )
    }

    /// Names the refusals an operator can act on: operation protection (MFA) and a server that
    /// is not stopped.
    fn explain_mutation_error(
        &self,
        error: ProviderError,
        action: &str,
        cloud_id: &str,
    ) -> ProviderError {
        let ProviderError::Api {
            provider,
            status,
            code,
            message,
            request_id,
            retryable,
        } = error
        else {
            return error;
        };
        let message = if wire::is_operation_protection(code.as_deref(), &message) {
            format!(
                "JD Cloud operation protection (MFA) refused {action} on `{cloud_id}`: the \
                 account requires multi-factor authentication for this operation, which an \
                 unattended API client cannot give. Turn off operation protection for \
                 {action} for the user whose access key reimage uses (or use a user without \
                 it), then apply again. Nothing was changed. JD said: {message}"
            )
        } else if action == wire::REINSTALL_INSTANCE
            && code.as_deref() == Some("FAILED_PRECONDITION")
        {
            format!(
                "JD Cloud reinstalls only stopped servers and `{cloud_id}` is not stopped: \
                 plan again, and the plan stops it first where `options.allow_stop: true`. \
                 JD said: {message}"
            )
        } else {
            message
        };
        ProviderError::Api {
            provider,
            status,
            code,
            message,
            request_id,
            retryable,
        }
    }
}
