//! Polling: where a reinstall stands, read from the instance (JD reports no job).

use std::time::Duration;

use super::JdcloudCps;
use super::wire::{self, InstanceInfo};
use crate::provider::completion::{self, Proof, SettledVerdict};
use crate::provider::limits::ApiFamily;
use crate::provider::{Operation, OperationStatus, ProviderError, ServerStatus};

impl JdcloudCps {
    pub(super) async fn poll_operations(
        &self,
        operations: &[Operation],
    ) -> Result<Vec<OperationStatus>, ProviderError> {
        let ids: Vec<String> = operations
            .iter()
            .map(|operation| operation.cloud_id.clone())
            .collect();
        let described = self.describe(ApiFamily::Status, &ids).await?;
        let now_ms = jiff::Timestamp::now().as_millisecond();
        Ok(operations
            .iter()
            .map(|operation| {
                let instance = described.get(&operation.cloud_id).cloned().flatten();
                let installing_now = instance.as_ref().is_some_and(|instance| {
                    wire::map_status(&instance.status) == ServerStatus::Installing
                });
                operation_status(
                    operation,
                    instance.as_ref(),
                    self.installing_seen
                        .record(&operation.cloud_id, installing_now),
                    now_ms,
                    self.running_grace,
                )
            })
            .collect())
    }
}

/// Where one reinstall stands, from the instance as observed now (brief §7).
pub(super) fn operation_status(
    operation: &Operation,
    instance: Option<&InstanceInfo>,
    installing_seen: bool,
    now_ms: i64,
    running_grace: Duration,
) -> OperationStatus {
    let failed = |message: String| OperationStatus::Failed {
        message,
        request_id: operation.request_id.clone(),
    };
    let Some(instance) = instance else {
        return failed(format!(
            "instance `{}` disappeared during the install",
            operation.cloud_id
        ));
    };
    // The OS type id is JD's image: a moved one proves the install ran.
    let os = instance.os_type_id.as_deref();
    match wire::map_status(&instance.status) {
        ServerStatus::Installing => OperationStatus::InProgress {
            detail: instance.status.clone(),
        },
        ServerStatus::Running | ServerStatus::Stopped => {
            match completion::judge_settled(operation, os, installing_seen, now_ms, running_grace) {
                SettledVerdict::Installed(proof) => OperationStatus::Succeeded {
                    image: operation.image.clone(),
                    note: (proof == Proof::GraceOver).then(|| {
                        "the install was never seen in progress and the osTypeId did not change; \
                         JD reports no job, so completion is inferred from the status alone"
                            .to_string()
                    }),
                },
                SettledVerdict::OtherImage => failed(format!(
                    "the install ended ({}) with osTypeId {}, expected {}",
                    instance.status,
                    os.unwrap_or("(none)"),
                    operation.image
                )),
                SettledVerdict::NotStarted => OperationStatus::InProgress {
                    detail: format!("{}; waiting for the install to start", instance.status),
                },
            }
        }
        ServerStatus::InstallFailed => failed(format!(
            "the server went to status `{}` during the install; JD Cloud support must look at \
             instance `{}`{}",
            instance.status,
            operation.cloud_id,
            operation
                .request_id
                .as_deref()
                .map(|id| format!(" (reinstall request id `{id}`)"))
                .unwrap_or_default()
        )),
        ServerStatus::Gone => failed(format!(
            "instance `{}` is being destroyed (status {})",
            operation.cloud_id, instance.status
        )),
        _ => OperationStatus::InProgress {
            detail: format!("status {}", instance.status),
        },
    }
}
