//! Reads: one power read per VPS (EDIS has no batch read) into observations, and the image
//! names checked against EDIS's or the manifest's list.

use std::collections::BTreeMap;

use super::wire;
use super::{CachedTicket, EdisKvm};
use crate::manifest::DesiredServer;
use crate::manifest::diagnostics::did_you_mean;
use crate::provider::limits::ApiFamily;
use crate::provider::{FieldIssue, Observation, Observed, ProviderError, ServerStatus};

impl EdisKvm {
    pub(super) async fn power(
        &self,
        family: ApiFamily,
        kvm_id: &str,
    ) -> Result<wire::Power, ProviderError> {
        self.management_read(family, kvm_id, wire::POWER_PATH, wire::parse_power)
            .await
    }

    pub(super) async fn observe_ids(
        &self,
        ids: &[String],
    ) -> Result<BTreeMap<String, Observation>, ProviderError> {
        let unique: Vec<String> = ids
            .iter()
            .cloned()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let tickets = self.tickets_for(&unique).await?;
        // One power read per VPS (EDIS has no batch read), made together: the rate limits'
        // concurrency caps bound them, and one slow read does not hold up the rest.
        let reads = unique.iter().map(|id| async {
            let observation = match tickets.get(id) {
                None => Observation::NotFound,
                Some(cached) => Observation::Found(self.observe_one(cached).await?),
            };
            Ok::<_, ProviderError>((id.clone(), observation))
        });
        futures_util::future::join_all(reads)
            .await
            .into_iter()
            .collect()
    }

    async fn observe_one(&self, cached: &CachedTicket) -> Result<Observed, ProviderError> {
        let ticket = &cached.ticket;
        let mut extra = BTreeMap::new();
        if let Some(description) = &ticket.description {
            extra.insert("description".to_string(), description.clone());
        }
        extra.insert("suspended".to_string(), ticket.suspended.clone());
        let observed = |status, raw_status: String, extra| Observed {
            cloud_id: ticket.kvm_id.clone(),
            status,
            raw_status,
            // EDIS's API does not say which OS is installed (brief §0.6).
            image: None,
            image_name: None,
            hostname: None,
            address: None,
            extra,
        };
        // Brief §2.1/§5: a suspended VPS is not reinstalled; its power is not even asked.
        if ticket.is_suspended() {
            return Ok(observed(
                ServerStatus::Busy,
                format!("suspended ({})", ticket.suspended),
                extra,
            ));
        }
        let power = self.power(ApiFamily::Read, &ticket.kvm_id).await?;
        if let Some(traffic_suspended) = power.traffic_suspended {
            extra.insert(
                "traffic_suspended".to_string(),
                traffic_suspended.to_string(),
            );
        }
        Ok(observed(power.status(), power.text, extra))
    }

    /// Image names checked against what EDIS or the manifest lists (brief §0.4: the autoinstall
    /// list has no documented path; turnkey images have one).
    pub(super) async fn check_images(
        &self,
        servers: &[(&DesiredServer, &Observation)],
    ) -> Result<Vec<(String, FieldIssue)>, ProviderError> {
        let mut issues = Vec::new();
        let mut turnkey_lists: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (server, observation) in servers {
            if let Some(images) = &self.images
                && !images.contains(&server.image)
            {
                let help = match did_you_mean(&server.image, images.iter().map(String::as_str)) {
                    Some(close) => format!("did you mean `{close}`? listed: {}", images.join(", ")),
                    None => format!(
                        "listed in `providers.{}.options.images`: {}",
                        self.name,
                        images.join(", ")
                    ),
                };
                issues.push((
                    server.name.clone(),
                    FieldIssue {
                        pointer: "/os/image".to_string(),
                        message: format!(
                            "image `{}` is not in the provider's image list",
                            server.image
                        ),
                        help: Some(help),
                    },
                ));
                continue;
            }
            if !server.image.starts_with("turnkey-") {
                continue;
            }
            if !matches!(observation, Observation::Found(_)) {
                // The plan blocks an unknown id with its own reason.
                continue;
            }
            if !turnkey_lists.contains_key(&server.cloud_id) {
                let list = self
                    .management_read(
                        ApiFamily::Catalogue,
                        &server.cloud_id,
                        wire::TURNKEY_IMAGES_PATH,
                        wire::parse_image_list,
                    )
                    .await?;
                turnkey_lists.insert(server.cloud_id.clone(), list);
            }
            let list = turnkey_lists
                .get(&server.cloud_id)
                .cloned()
                .unwrap_or_default();
            if !list.contains(&server.image) {
                let help = match did_you_mean(&server.image, list.iter().map(String::as_str)) {
                    Some(close) => format!("did you mean `{close}`?"),
                    None => format!("EDIS lists: {}", list.join(", ")),
                };
                issues.push((
                    server.name.clone(),
                    FieldIssue {
                        pointer: "/os/image".to_string(),
                        message: format!(
                            "turnkey image `{}` is not offered for VPS `{}`",
                            server.image, server.cloud_id
                        ),
                        help: Some(help),
                    },
                ));
            }
        }
        Ok(issues)
    }
}
