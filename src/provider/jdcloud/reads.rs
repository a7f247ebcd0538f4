//! Reads: `describeInstances` (chunked, every page followed) into observations, and the
//! `describeOS` catalogue checks of the desired OS.

use std::collections::{BTreeMap, HashSet};

use super::review::os_issues;
use super::wire::{self, InstanceInfo};
use super::{
    EXTRA_AZ, EXTRA_DATA_RAID, EXTRA_DEVICE_TYPE, EXTRA_IMAGE_TYPE, EXTRA_SYS_RAID, JdcloudCps,
};
use crate::manifest::DesiredServer;
use crate::provider::limits::ApiFamily;
use crate::provider::{FieldIssue, Observation, Observed, ProviderError};

/// A guard against an API that keeps reporting more entries than it ever sends.
const MAX_PAGES: u32 = 100;

impl JdcloudCps {
    /// `describeInstances` for any number of ids: chunks of 100, every page followed.
    pub(super) async fn describe(
        &self,
        family: ApiFamily,
        ids: &[String],
    ) -> Result<BTreeMap<String, Option<InstanceInfo>>, ProviderError> {
        let unique = crate::provider::unique_ids(ids);
        let mut described = BTreeMap::new();
        for chunk in unique.chunks(wire::MAX_IDS_PER_CALL) {
            let asked: HashSet<&str> = chunk.iter().map(String::as_str).collect();
            let mut found: BTreeMap<String, InstanceInfo> = BTreeMap::new();
            let mut received = 0u64;
            for page_number in 1..=MAX_PAGES {
                let call = wire::describe_instances(&self.region, chunk, page_number);
                let envelope = self.read(family, &call).await?;
                let page = wire::parse_instances_page(&envelope.result);
                received += page.entries as u64;
                for instance in page.instances {
                    // The filter is the API's job, but an entry nobody asked for must not be
                    // mistaken for one that was.
                    if asked.contains(instance.instance_id.as_str()) {
                        found.insert(instance.instance_id.clone(), instance);
                    }
                }
                let more = page
                    .total_count
                    .is_some_and(|total| received < total && page.entries > 0);
                if !more {
                    break;
                }
                if page_number == MAX_PAGES {
                    tracing::warn!(
                        provider = %self.name,
                        pages = MAX_PAGES,
                        "describeInstances still reports more entries; stopped paging"
                    );
                }
            }
            for id in chunk {
                described.insert(id.clone(), found.remove(id));
            }
        }
        Ok(described)
    }

    pub(super) async fn observe_ids(
        &self,
        ids: &[String],
    ) -> Result<BTreeMap<String, Observation>, ProviderError> {
        Ok(self
            .describe(ApiFamily::Read, ids)
            .await?
            .into_iter()
            .map(|(id, instance)| {
                let observation = match instance {
                    Some(instance) => Observation::Found(observed(instance)),
                    None => Observation::NotFound,
                };
                (id, observation)
            })
            .collect())
    }

    /// Reads one instance right before a mutating call; unknown ids are errors.
    pub(super) async fn describe_one(&self, cloud_id: &str) -> Result<InstanceInfo, ProviderError> {
        let ids = [cloud_id.to_string()];
        self.describe(ApiFamily::Status, &ids)
            .await?
            .remove(cloud_id)
            .flatten()
            .ok_or_else(|| ProviderError::Api {
                provider: self.name.clone(),
                status: None,
                code: Some("NOT_FOUND".to_string()),
                message: format!(
                    "instance `{cloud_id}` is not known in region {} (describeInstances found \
                     nothing)",
                    self.region
                ),
                request_id: None,
                retryable: false,
            })
    }

    /// Checks each server's `osTypeId` (and optional `os_name`) against `describeOS` for its
    /// device type, as the plan's read observed it (one catalogue read per device type).
    pub(super) async fn check_os(
        &self,
        servers: &[(&DesiredServer, &Observation)],
    ) -> Result<Vec<(String, FieldIssue)>, ProviderError> {
        let mut catalogues: BTreeMap<Option<String>, Vec<wire::OsInfo>> = BTreeMap::new();
        let mut issues = Vec::new();
        for (server, observation) in servers {
            // An unknown id is the plan's business (it blocks the server), not the catalogue's.
            let Observation::Found(observed) = observation else {
                continue;
            };
            let device_type = observed.extra.get(EXTRA_DEVICE_TYPE).cloned();
            if !catalogues.contains_key(&device_type) {
                let call = wire::describe_os(&self.region, device_type.as_deref());
                let envelope = self.read(ApiFamily::Catalogue, &call).await?;
                catalogues.insert(device_type.clone(), wire::parse_os_list(&envelope.result));
            }
            let catalogue = catalogues
                .get(&device_type)
                .map(Vec::as_slice)
                .unwrap_or_default();
            issues.extend(
                os_issues(server, device_type.as_deref(), &self.region, catalogue)
                    .into_iter()
                    .map(|issue| (server.name.clone(), issue)),
            );
        }
        Ok(issues)
    }
}

pub(super) fn observed(instance: InstanceInfo) -> Observed {
    let mut extra = BTreeMap::new();
    for (key, value) in [
        (EXTRA_AZ, &instance.az),
        (EXTRA_DEVICE_TYPE, &instance.device_type),
        (EXTRA_IMAGE_TYPE, &instance.image_type),
        (EXTRA_SYS_RAID, &instance.sys_raid_type_id),
        (EXTRA_DATA_RAID, &instance.data_raid_type_id),
    ] {
        if let Some(value) = value {
            extra.insert(key.to_string(), value.clone());
        }
    }
    Observed {
        cloud_id: instance.instance_id,
        status: wire::map_status(&instance.status),
        raw_status: instance.status,
        image: instance.os_type_id,
        image_name: instance.os_name,
        // describeInstance has no hostname field (brief §0.4).
        hostname: None,
        address: instance.address,
        extra,
    }
}
