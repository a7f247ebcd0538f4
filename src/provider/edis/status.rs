//! Polling: the power-state heuristic of [`super::completion`] per reinstall, with the progress
//! this process has seen.

use std::collections::HashMap;

use super::EdisKvm;
use super::completion::{self, PowerVerdict, Progress};
use crate::provider::limits::ApiFamily;
use crate::provider::{Operation, OperationStatus, ProviderError};

impl EdisKvm {
    pub(super) fn progress(&self) -> std::sync::MutexGuard<'_, HashMap<String, Progress>> {
        // Plain data: a panic elsewhere cannot leave it inconsistent.
        self.progress
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(super) async fn poll_operations(
        &self,
        operations: &[Operation],
    ) -> Result<Vec<OperationStatus>, ProviderError> {
        futures_util::future::join_all(operations.iter().map(|operation| self.poll_one(operation)))
            .await
            .into_iter()
            .collect()
    }

    async fn poll_one(&self, operation: &Operation) -> Result<OperationStatus, ProviderError> {
        let ids = [operation.cloud_id.clone()];
        if !self
            .tickets_for(&ids)
            .await?
            .contains_key(&operation.cloud_id)
        {
            return Ok(OperationStatus::Failed {
                message: format!(
                    "VPS `{}` disappeared from the account during the install",
                    operation.cloud_id
                ),
                request_id: None,
            });
        }
        let power = self.power(ApiFamily::Status, &operation.cloud_id).await?;
        let now_ms = jiff::Timestamp::now().as_millisecond();
        let elapsed_ms = now_ms.saturating_sub(operation.started_at_ms);
        let (verdict, progress) = {
            let mut all = self.progress();
            let progress = all.entry(operation.cloud_id.clone()).or_default();
            let verdict = completion::judge_power(
                &self.heuristic,
                progress,
                elapsed_ms,
                now_ms,
                power.status(),
                &power.text,
            );
            (verdict, progress.clone())
        };
        if let PowerVerdict::Waiting(detail) = verdict {
            return Ok(OperationStatus::InProgress { detail });
        }
        // An `ssh_probe` is not checked here: it is this server's health gate, which the engine
        // runs after this success (see `health_gate`).
        Ok(OperationStatus::Succeeded {
            image: operation.image.clone(),
            note: Some(completion::success_note(&progress)),
        })
    }
}
