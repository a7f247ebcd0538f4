//! Reads: `DescribeInstances` (chunked, every page followed) into observations.

use std::collections::{BTreeMap, HashSet};

use super::{ZenlayerBmc, wire};
use crate::provider::limits::ApiFamily;
use crate::provider::{Observation, Observed, ProviderError};

/// A guard against an API that keeps reporting more entries than it ever sends.
const MAX_PAGES: u32 = 100;

impl ZenlayerBmc {
    /// `DescribeInstances` for any number of ids: chunks of 100, every page followed.
    pub(super) async fn describe(
        &self,
        family: ApiFamily,
        ids: &[String],
    ) -> Result<BTreeMap<String, Observation>, ProviderError> {
        let unique = crate::provider::unique_ids(ids);
        let mut observations = BTreeMap::new();
        for chunk in unique.chunks(wire::MAX_IDS_PER_CALL) {
            let asked: HashSet<&str> = chunk.iter().map(String::as_str).collect();
            let mut found: BTreeMap<String, Observed> = BTreeMap::new();
            let mut received = 0u64;
            for page_num in 1..=MAX_PAGES {
                let body = wire::describe_instances_body(chunk, page_num, wire::PAGE_SIZE);
                let envelope = self.read(family, wire::DESCRIBE_INSTANCES, body).await?;
                let page = wire::parse_instances_page(&envelope.response);
                received += page.entries as u64;
                for instance in page.instances {
                    // The filter is the API's job, but an entry nobody asked for must not be
                    // mistaken for one that was.
                    if asked.contains(instance.instance_id.as_str()) {
                        found.insert(instance.instance_id.clone(), observed(instance));
                    }
                }
                let more = page
                    .total_count
                    .is_some_and(|total| received < total && page.entries > 0);
                if !more {
                    break;
                }
                if page_num == MAX_PAGES {
                    tracing::warn!(
                        provider = %self.name,
                        pages = MAX_PAGES,
                        "DescribeInstances still reports more entries; stopped paging"
                    );
                }
            }
            for id in chunk {
                let observation = match found.remove(id) {
                    Some(instance) => Observation::Found(instance),
                    None => Observation::NotFound,
                };
                observations.insert(id.clone(), observation);
            }
        }
        Ok(observations)
    }
}

pub(super) fn observed(instance: wire::InstanceInfo) -> Observed {
    Observed {
        cloud_id: instance.instance_id,
        status: wire::map_status(&instance.instance_status),
        raw_status: instance.instance_status,
        image: instance.image_id,
        image_name: instance.image_name,
        hostname: instance.hostname,
        address: instance.address,
        extra: Default::default(),
    }
}
