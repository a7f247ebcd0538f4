//! The project id every ECS and CloudDC call names: given, or looked up through IAM by the
//! region's name once per (IAM endpoint, caller, region) in this process.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

use super::{HuaweiClient, Target, lock, wire};
use crate::provider::ProviderError;
use crate::provider::limits::ApiFamily;

impl HuaweiClient {
    /// The project id: explicit, cached, or looked up through IAM by the region's name.
    pub async fn project_id(&self) -> Result<String, ProviderError> {
        if let Some(project) = &self.explicit_project {
            return Ok(project.clone());
        }
        if let Some(project) = lock(&self.resolved_project).clone() {
            return Ok(project);
        }
        let region = self.region.clone().ok_or_else(|| {
            self.config_error(
                "no project id and no region".to_string(),
                "set `region:` or `options.project_id`",
            )
        })?;
        let key = (
            self.iam_endpoint.to_string(),
            self.credentials.cache_identity(),
            region.clone(),
        );
        let _one_lookup = self.project_lookup.lock().await;
        if let Some(project) = lock(&self.resolved_project).clone() {
            return Ok(project);
        }
        if let Some(project) = lock(&PROJECT_CACHE).get(&key).cloned() {
            *lock(&self.resolved_project) = Some(project.clone());
            return Ok(project);
        }
        let query = vec![("name".to_string(), region.clone())];
        let (body, request_id) = self
            .read_json_as(
                ApiFamily::Auth,
                Target::Iam,
                "/v3/projects",
                &query,
                None,
                "IAM project lookup",
            )
            .await?;
        let project =
            wire::project_from_listing(&body, &region).map_err(|message| ProviderError::Api {
                provider: self.name.clone(),
                status: None,
                code: None,
                message,
                request_id,
                retryable: false,
            })?;
        lock(&PROJECT_CACHE).insert(key, project.clone());
        *lock(&self.resolved_project) = Some(project.clone());
        tracing::debug!(provider = %self.name, region, project, "resolved the project id through IAM");
        Ok(project)
    }
}

/// Project ids looked up through IAM, per (IAM endpoint, caller, region), shared by every
/// provider of this process (the SDK caches per AK and region the same way).
/// (IAM endpoint, caller identity, region) → project id.
type ProjectCache = HashMap<(String, String, String), String>;

static PROJECT_CACHE: LazyLock<Mutex<ProjectCache>> = LazyLock::new(|| Mutex::new(HashMap::new()));
