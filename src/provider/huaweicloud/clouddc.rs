//! `huaweicloud-clouddc`: CloudDC bare-metal instances.
//!
//! - observe: `GET /v1/{project}/instances?instance_id=a,b,…` (≤ 100 ids, paginated by marker);
//! - reinstall: `PUT /v1/{project}/instances/reinstall` with at most 10 ids per call by default
//!   (the SDK's limit; `options.reinstall_batch` up to the API page's 50), one call per
//!   distinct (image, password); only `running` instances;
//! - completion per instance: `reinstall-succeed` + `running` + desired image = success;
//!   `reinstall-failed` or `error` = failure with the error code and message.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Duration;

use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};

use super::wire::{self, DcInstance};
use super::{HuaweiClient, Service, Target};
use crate::manifest::{DesiredProvider, DesiredServer, ProviderType};
use crate::provider::completion::{self, InstallingSeen, Proof, SettledVerdict};
use crate::provider::config;
use crate::provider::http::RetryPolicy;
use crate::provider::limits::ApiFamily;
use crate::provider::{
    BoxFuture, Capabilities, Observation, Observed, Operation, OperationStatus, Provider,
    ProviderError, ReinstallRequest, ReinstallReview, ResolvedAccess, ServerStatus,
};

const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(15);
/// Bare-metal durations are unconfirmed (brief §7.3: allow at least 60 minutes).
const DEFAULT_INSTALL_TIMEOUT: Duration = Duration::from_secs(90 * 60);
/// A guess (brief §7: bare-metal durations unconfirmed), for the plan's estimate of the
/// rollout (`install_estimate` overrides it).
const DEFAULT_INSTALL_ESTIMATE: Duration = Duration::from_secs(30 * 60);
const PAGE_SIZE: usize = 100;
/// A guard against an API that keeps handing out markers.
const MAX_PAGES: usize = 100;

pub const EXTRA_OPERATION_STATE: &str = "operation_state";
const SUCCEEDED: &str = "reinstall-succeed";
const FAILED: &str = "reinstall-failed";

/// One configured CloudDC account/region.
#[derive(Debug)]
pub struct HuaweiClouddc {
    client: HuaweiClient,
    capabilities: Capabilities,
    running_grace: Duration,
    /// Instances whose current reinstall was seen in progress at least once.
    processing_seen: InstallingSeen,
}

impl HuaweiClouddc {
    pub fn new(
        config: &DesiredProvider,
        endpoint_override: Option<&str>,
    ) -> Result<Self, ProviderError> {
        Self::with_env(config, endpoint_override, |name| std::env::var(name).ok())
    }

    pub fn with_env(
        config: &DesiredProvider,
        endpoint_override: Option<&str>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ProviderError> {
        let parsed = HuaweiClient::from_config(
            Service::Clouddc,
            config,
            endpoint_override,
            &super::settings::CLOUDDC_OPTION_KEYS,
            &env,
        )?;
        // Checked when the client was read: no issues are left.
        let (options, _) = super::settings::ClouddcOptions::read(&parsed.type_options);
        let reinstall_batch = options.reinstall_batch;
        let running_grace = options.running_grace;
        let timing = config::Timing::defaults(
            DEFAULT_POLL_INTERVAL,
            DEFAULT_INSTALL_TIMEOUT,
            DEFAULT_INSTALL_ESTIMATE,
        )
        .of(config)?;
        let capabilities = Capabilities {
            observe_batch: wire::MAX_IDS_PER_READ,
            reports_image: true,
            reinstall_batch,
            poll_interval: timing.poll_interval,
            install_timeout: timing.install_timeout,
            install_estimate: timing.install_estimate,
            start_grace: timing.start_grace,
            stop_timeout: timing.stop_timeout,
            reinstalls_failed_install: false,
        };
        Ok(Self {
            client: parsed.client,
            capabilities,
            running_grace,
            processing_seen: InstallingSeen::default(),
        })
    }

    pub fn client(&self) -> &HuaweiClient {
        &self.client
    }

    pub fn set_retry_policy(&mut self, policy: RetryPolicy) {
        self.client.set_retry_policy(policy);
    }

    /// Lists the given instances: chunks of 100 ids, every page followed.
    async fn list(
        &self,
        family: ApiFamily,
        ids: &[String],
    ) -> Result<BTreeMap<String, Option<DcInstance>>, ProviderError> {
        let unique: Vec<String> = ids
            .iter()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .cloned()
            .collect();
        let project = self.client.project_id().await?;
        let path = wire::clouddc_list_path(&project);
        let mut result = BTreeMap::new();
        for chunk in unique.chunks(wire::MAX_IDS_PER_READ) {
            let asked: HashSet<&str> = chunk.iter().map(String::as_str).collect();
            let mut found: BTreeMap<String, DcInstance> = BTreeMap::new();
            let mut marker: Option<String> = None;
            for page in 1..=MAX_PAGES {
                let mut query = vec![
                    ("instance_id".to_string(), chunk.join(",")),
                    ("limit".to_string(), PAGE_SIZE.to_string()),
                ];
                if let Some(marker) = &marker {
                    query.push(("marker".to_string(), marker.clone()));
                }
                let (body, _) = self
                    .client
                    .read_json(family, Target::Service, &path, &query, "listing instances")
                    .await?;
                let (instances, next) = wire::parse_clouddc_page(&body);
                let new_entries = instances.len();
                for instance in instances {
                    if asked.contains(instance.id.as_str()) {
                        found.insert(instance.id.clone(), instance);
                    }
                }
                match next {
                    Some(next) if new_entries > 0 && Some(&next) != marker.as_ref() => {
                        marker = Some(next);
                    }
                    _ => break,
                }
                if page == MAX_PAGES {
                    tracing::warn!(provider = %self.client.name(), "CloudDC keeps paging; stopped");
                }
            }
            for id in chunk {
                result.insert(id.clone(), found.remove(id));
            }
        }
        Ok(result)
    }

    async fn describe(
        &self,
        family: ApiFamily,
        ids: &[String],
    ) -> Result<BTreeMap<String, Observation>, ProviderError> {
        Ok(self
            .list(family, ids)
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

    async fn reinstall_many(
        &self,
        requests: &[ReinstallRequest],
    ) -> Vec<Result<Operation, ProviderError>> {
        let mut results: Vec<Option<Result<Operation, ProviderError>>> =
            (0..requests.len()).map(|_| None).collect();
        // Groups of request indexes sharing (image, password): one call each (brief §7.3).
        let mut groups: Vec<(String, SecretString, Vec<usize>)> = Vec::new();
        for (index, request) in requests.iter().enumerate() {
            let password = match &request.access {
                ResolvedAccess::Password(password) => password,
                _ => {
                    results[index] = Some(Err(self.config_error(
                        request,
                        "CloudDC needs a password for a reinstall",
                        "set `access.password` for this server",
                    )));
                    continue;
                }
            };
            if request.image.trim().is_empty() {
                results[index] = Some(Err(self.config_error(
                    request,
                    "refusing to reinstall without an image id",
                    "CloudDC keeps the current image when `image_id` is empty; set `os.image`",
                )));
                continue;
            }
            match groups.iter_mut().find(|(image, secret, _)| {
                *image == request.image && secret.expose_secret() == password.expose_secret()
            }) {
                Some((_, _, members)) => members.push(index),
                None => groups.push((request.image.clone(), password.clone(), vec![index])),
            }
        }
        let batch = self.capabilities.reinstall_batch.max(1);
        for (image, password, members) in &groups {
            for chunk in members.chunks(batch) {
                let outcome = self.send_reinstall(requests, image, password, chunk).await;
                for (index, result) in chunk.iter().zip(outcome) {
                    results[*index] = Some(result);
                }
            }
        }
        results
            .into_iter()
            .map(|result| {
                result.unwrap_or_else(|| {
                    Err(ProviderError::Config {
                        provider: self.client.name().to_string(),
                        message: "a reinstall request was not handled".to_string(),
                        help: "this is a bug in reimage".to_string(),
                    })
                })
            })
            .collect()
    }

    fn config_error(&self, request: &ReinstallRequest, message: &str, help: &str) -> ProviderError {
        ProviderError::Config {
            provider: self.client.name().to_string(),
            message: format!("server `{}`: {message}", request.server),
            help: help.to_string(),
        }
    }

    /// One `PUT instances/reinstall` for the requests at `indexes` (one image, one password).
    async fn send_reinstall(
        &self,
        requests: &[ReinstallRequest],
        image: &str,
        password: &SecretString,
        indexes: &[usize],
    ) -> Vec<Result<Operation, ProviderError>> {
        let ids: Vec<&str> = indexes
            .iter()
            .map(|index| requests[*index].cloud_id.as_str())
            .collect();
        let what = format!("the reinstall of {}", ids.join(", "));
        let every = |error: ProviderError| indexes.iter().map(|_| Err(error.clone())).collect();
        let body = wire::clouddc_reinstall_body(image, password, &ids);
        let project = match self.client.project_id().await {
            Ok(project) => project,
            Err(error) => return every(error),
        };
        for id in &ids {
            self.processing_seen.forget(id);
        }
        // Exactly once: a reinstall wipes disks.
        let response = match self
            .client
            .send_once(
                ApiFamily::Reinstall,
                Method::PUT,
                &wire::clouddc_reinstall_path(&project),
                &body,
            )
            .await
        {
            Ok(response) => response,
            Err(error) => return every(error),
        };
        let status = response.status;
        let (body, request_id) =
            match wire::parse_json_response(self.client.name(), &what, response) {
                Ok(parsed) => parsed,
                Err(error) if status.is_server_error() || status.is_success() => {
                    return every(self.client.ambiguous(error, &what));
                }
                Err(error) => return every(error),
            };
        let accepted: Option<Vec<String>> = wire::accepted_ids(&body);
        let started_at_ms = jiff::Timestamp::now().as_millisecond();
        tracing::info!(
            provider = %self.client.name(),
            instances = ids.len(),
            request_id = request_id.as_deref().unwrap_or(""),
            "CloudDC accepted a batch reinstall"
        );
        indexes
            .iter()
            .map(|index| {
                let request = &requests[*index];
                let listed = accepted
                    .as_ref()
                    .is_some_and(|list| list.contains(&request.cloud_id));
                if !listed {
                    let error = ProviderError::Api {
                        provider: self.client.name().to_string(),
                        status: Some(status.as_u16()),
                        code: None,
                        message: format!(
                            "the batch call was accepted but `{}` is not listed in its answer",
                            request.cloud_id
                        ),
                        request_id: request_id.clone(),
                        retryable: false,
                    };
                    return Err(self
                        .client
                        .ambiguous(error, &format!("the reinstall of `{}`", request.cloud_id)));
                }
                Ok(Operation {
                    server: request.server.clone(),
                    cloud_id: request.cloud_id.clone(),
                    image: request.image.clone(),
                    job_id: None,
                    request_id: request_id.clone(),
                    started_at_ms,
                    previous_image: request.previous_image.clone(),
                })
            })
            .collect()
    }

    async fn poll_operations(
        &self,
        operations: &[Operation],
    ) -> Result<Vec<OperationStatus>, ProviderError> {
        let ids: Vec<String> = operations.iter().map(|op| op.cloud_id.clone()).collect();
        let instances = self.list(ApiFamily::Status, &ids).await?;
        let now_ms = jiff::Timestamp::now().as_millisecond();
        Ok(operations
            .iter()
            .map(|operation| {
                let instance = instances.get(&operation.cloud_id).and_then(Option::as_ref);
                let processing_now = instance.is_some_and(|instance| {
                    wire::map_clouddc_status(&instance.state, instance.operation_state.as_deref())
                        == ServerStatus::Installing
                });
                operation_status(
                    operation,
                    instance,
                    self.processing_seen
                        .record(&operation.cloud_id, processing_now),
                    now_ms,
                    self.running_grace,
                )
            })
            .collect())
    }
}

fn observed(instance: DcInstance) -> Observed {
    let mut extra = BTreeMap::new();
    if let Some(operation_state) = &instance.operation_state {
        extra.insert(EXTRA_OPERATION_STATE.to_string(), operation_state.clone());
    }
    if let Some(error) = &instance.error
        && (instance.state == "error" || instance.operation_state.as_deref() == Some(FAILED))
    {
        extra.insert("error".to_string(), error.clone());
    }
    Observed {
        status: wire::map_clouddc_status(&instance.state, instance.operation_state.as_deref()),
        cloud_id: instance.id,
        raw_status: instance.state,
        image: instance.image_id,
        image_name: instance.image_name,
        // CloudDC has no hostname field; `name` is only a label (brief §7.1).
        hostname: None,
        address: None,
        extra,
    }
}

/// Where one reinstall stands (brief §7.2).
fn operation_status(
    operation: &Operation,
    instance: Option<&DcInstance>,
    processing_seen: bool,
    now_ms: i64,
    running_grace: Duration,
) -> OperationStatus {
    let failed = |message: String| OperationStatus::Failed {
        message,
        request_id: operation.request_id.clone(),
    };
    let Some(instance) = instance else {
        return failed(format!(
            "instance `{}` disappeared during the reinstall",
            operation.cloud_id
        ));
    };
    let operation_state = instance.operation_state.as_deref().unwrap_or_default();
    if operation_state == FAILED || instance.state == "error" {
        return failed(format!(
            "CloudDC reports the reinstall of `{}` failed (state {}, operation state {}): {}",
            operation.cloud_id,
            instance.state,
            if operation_state.is_empty() {
                "none"
            } else {
                operation_state
            },
            instance.error.as_deref().unwrap_or("no error code given")
        ));
    }
    // `reinstall-succeed` may be left from an earlier reinstall until this one shows, so it
    // proves nothing by itself: the shared completion rules decide.
    if instance.state == "running" && operation_state == SUCCEEDED {
        let image = instance.image_id.as_deref();
        return match completion::judge_settled(
            operation,
            image,
            processing_seen,
            now_ms,
            running_grace,
        ) {
            SettledVerdict::Installed(proof) => OperationStatus::Succeeded {
                image: operation.image.clone(),
                note: (proof == Proof::GraceOver).then(|| {
                    format!(
                        "completed per `{SUCCEEDED}`, though the reinstall was never seen in \
                         progress"
                    )
                }),
            },
            SettledVerdict::OtherImage => failed(format!(
                "the reinstall ended with image {}, expected {}",
                image.unwrap_or("(none)"),
                operation.image
            )),
            SettledVerdict::NotStarted => OperationStatus::InProgress {
                detail: "waiting for the reinstall to start".to_string(),
            },
        };
    }
    OperationStatus::InProgress {
        detail: if operation_state.is_empty() {
            instance.state.clone()
        } else {
            format!("{} ({operation_state})", instance.state)
        },
    }
}

/// The plan's judgement of one CloudDC reinstall (pure): only `running` instances.
pub fn review(_desired: &DesiredServer, observed: &Observed) -> ReinstallReview {
    let mut review = ReinstallReview::default();
    if observed.raw_status != "running" {
        review.blocked = Some(format!(
            "CloudDC reinstalls only running instances; this one is `{}`: start it, then plan \
             again",
            observed.raw_status
        ));
    } else {
        review.notes.push(
            "CloudDC reinstalls in batches of servers sharing image and password".to_string(),
        );
    }
    review
}

impl Provider for HuaweiClouddc {
    fn name(&self) -> &str {
        self.client.name()
    }

    fn provider_type(&self) -> ProviderType {
        ProviderType::HuaweicloudClouddc
    }

    fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    fn report_waits_to(&self, waits: &crate::provider::limits::WaitSink) {
        self.client.http().report_waits_to(waits);
    }

    fn rate_limits(
        &self,
    ) -> BTreeMap<crate::provider::limits::ApiFamily, crate::provider::limits::RateLimit> {
        self.client.http().limits()
    }

    /// One call carries one image and one password (brief §7.3): the engine groups by both
    /// before cutting batches, so 25 servers with two passwords take 4 calls, not 5. The
    /// password enters only as a digest, and the key never leaves memory.
    fn batch_key(&self, request: &ReinstallRequest) -> String {
        let password = match &request.access {
            ResolvedAccess::Password(password) => password.expose_secret(),
            _ => "",
        };
        crate::digest::sha256_hex(format!("{}\0{password}", request.image).as_bytes())
    }

    fn observe<'a>(
        &'a self,
        ids: &'a [String],
    ) -> BoxFuture<'a, Result<BTreeMap<String, Observation>, ProviderError>> {
        Box::pin(self.describe(ApiFamily::Read, ids))
    }

    fn reinstall<'a>(
        &'a self,
        request: &'a ReinstallRequest,
    ) -> BoxFuture<'a, Result<Operation, ProviderError>> {
        Box::pin(async move {
            self.reinstall_many(std::slice::from_ref(request))
                .await
                .into_iter()
                .next()
                .unwrap_or_else(|| {
                    Err(ProviderError::Config {
                        provider: self.client.name().to_string(),
                        message: "no result for the reinstall".to_string(),
                        help: "this is a bug in reimage".to_string(),
                    })
                })
        })
    }

    fn reinstall_batch<'a>(
        &'a self,
        requests: &'a [ReinstallRequest],
    ) -> BoxFuture<'a, Vec<Result<Operation, ProviderError>>> {
        Box::pin(self.reinstall_many(requests))
    }

    fn review_reinstall(&self, desired: &DesiredServer, observed: &Observed) -> ReinstallReview {
        review(desired, observed)
    }

    fn poll<'a>(
        &'a self,
        operations: &'a [Operation],
    ) -> BoxFuture<'a, Result<Vec<OperationStatus>, ProviderError>> {
        Box::pin(self.poll_operations(operations))
    }
}
