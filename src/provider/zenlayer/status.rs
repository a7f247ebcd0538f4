//! Polling: where a reinstall stands, read from the instance (Zenlayer reports no task).

use std::time::Duration;

use super::ZenlayerBmc;
use crate::provider::completion::{self, SettledVerdict};
use crate::provider::limits::ApiFamily;
use crate::provider::{Observation, Operation, OperationStatus, ProviderError, ServerStatus};

impl ZenlayerBmc {
    pub(super) async fn poll_operations(
        &self,
        operations: &[Operation],
    ) -> Result<Vec<OperationStatus>, ProviderError> {
        let ids: Vec<String> = operations
            .iter()
            .map(|operation| operation.cloud_id.clone())
            .collect();
        let observations = self.describe(ApiFamily::Status, &ids).await?;
        let now_ms = jiff::Timestamp::now().as_millisecond();
        Ok(operations
            .iter()
            .map(|operation| {
                let observation = observations.get(&operation.cloud_id);
                let installing_now = matches!(
                    observation,
                    Some(Observation::Found(instance)) if instance.status == ServerStatus::Installing
                );
                operation_status(
                    operation,
                    observation,
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
    observation: Option<&Observation>,
    installing_seen: bool,
    now_ms: i64,
    running_grace: Duration,
) -> OperationStatus {
    let failed = |message: String| OperationStatus::Failed {
        message,
        request_id: operation.request_id.clone(),
    };
    let instance = match observation {
        Some(Observation::Found(instance)) => instance,
        Some(Observation::NotFound) | None => {
            return failed(format!(
                "instance `{}` disappeared during the install",
                operation.cloud_id
            ));
        }
    };
    match instance.status {
        ServerStatus::Installing => OperationStatus::InProgress {
            detail: "installing".to_string(),
        },
        ServerStatus::Running => match completion::judge_settled(
            operation,
            instance.image.as_deref(),
            installing_seen,
            now_ms,
            running_grace,
        ) {
            // Any proof will do: Zenlayer reports the image, so success is confirmed either way.
            SettledVerdict::Installed(_) => OperationStatus::Succeeded {
                image: operation.image.clone(),
                note: None,
            },
            SettledVerdict::OtherImage => failed(format!(
                "install ended with image {}, expected {}",
                instance.image.as_deref().unwrap_or("(none)"),
                operation.image
            )),
            SettledVerdict::NotStarted => OperationStatus::InProgress {
                detail: "RUNNING; waiting for the install to start".to_string(),
            },
        },
        ServerStatus::InstallFailed => failed(format!(
            "the install failed (status {}); Zenlayer says a failed install needs manual action \
             by their support: open a ticket quoting the instance id `{}`{}",
            instance.raw_status,
            operation.cloud_id,
            operation
                .request_id
                .as_deref()
                .map(|id| format!(" and request id `{id}`"))
                .unwrap_or_default()
        )),
        // Brief §7 lists "instance missing → error"; one in the recycle bin is as good as
        // missing and will not finish an install.
        ServerStatus::Gone => failed(format!(
            "instance `{}` is being recycled (status {})",
            operation.cloud_id, instance.raw_status
        )),
        _ => OperationStatus::InProgress {
            detail: format!("status {}", instance.raw_status),
        },
    }
}
