//! `huaweicloud-ecs`: Elastic Cloud Servers on Huawei Cloud and Open Telekom Cloud.
//!
//! - observe: `GET /v1/{project}/cloudservers/detail?server_id=a,b,…` (≤ 100 ids per call);
//! - desired image ≠ current image → **change OS** (`/changeos`); same image with a reinstall
//!   trigger → **reinstall OS** (`/reinstallos`), which never changes the image (brief §0.1);
//! - v1 (image without Cloud-Init) or v2 (with Cloud-Init) by `options.cloud_init`;
//! - `mode: withStopServer` unless `options.with_stop_server: false`;
//! - completion: the job (`GET /v1/{project}/jobs/{id}`) until SUCCESS/FAIL, then the server
//!   must report the desired image id.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::Method;

use super::validate::EcsOptions;
use super::wire::{self, EcsCall, EcsVariant, JobState};
use super::{HuaweiClient, Service, Target, lock};
use crate::manifest::{DesiredProvider, DesiredServer, ProviderType};
use crate::provider::config;
use crate::provider::http::RetryPolicy;
use crate::provider::limits::ApiFamily;
use crate::provider::{
    BoxFuture, Capabilities, Observation, Observed, Operation, OperationStatus, Provider,
    ProviderError, ReinstallRequest, ReinstallReview, ServerStatus,
};

/// Brief §5.2: poll every 5 s; change OS takes 1–4 minutes; 30 minutes is a generous limit.
const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(5);
const DEFAULT_INSTALL_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Brief §5.2 (the OTC user guide FAQ): a reinstall takes about 1–2 minutes, a change of OS
/// about 1–4; the plan's estimate of the rollout takes the longer (`install_estimate`
/// overrides it).
const DEFAULT_INSTALL_ESTIMATE: Duration = Duration::from_secs(4 * 60);

/// `Observed.extra` keys the plan depends on.
pub const EXTRA_LOCKED: &str = "locked";
pub const EXTRA_TASK_STATE: &str = "task_state";

/// One configured ECS account/region.
#[derive(Debug)]
pub struct HuaweiEcs {
    client: HuaweiClient,
    capabilities: Capabilities,
    /// Servers seen rebuilding since their call, for operations tracked without a job id.
    rebuilding_seen: Mutex<HashSet<String>>,
    /// When each job was first seen to succeed: the server may show its new image a little
    /// later (brief §5.3: verify with GET server after the job), for up to the grace.
    job_success_seen: Mutex<HashMap<String, Instant>>,
}

impl HuaweiEcs {
    pub fn new(
        config: &DesiredProvider,
        endpoint_override: Option<&str>,
    ) -> Result<Self, ProviderError> {
        Self::with_env(config, endpoint_override, |name| std::env::var(name).ok())
    }

    /// Like [`HuaweiEcs::new`], reading environment defaults through `env` (tests pass a map).
    pub fn with_env(
        config: &DesiredProvider,
        endpoint_override: Option<&str>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ProviderError> {
        let parsed = HuaweiClient::from_config(Service::Ecs, config, endpoint_override, &[], &env)?;
        let timing = config::Timing::defaults(
            DEFAULT_POLL_INTERVAL,
            DEFAULT_INSTALL_TIMEOUT,
            DEFAULT_INSTALL_ESTIMATE,
        )
        .of(config)?;
        let capabilities = Capabilities {
            observe_batch: wire::MAX_IDS_PER_READ,
            reports_image: true,
            // One server per changeos/reinstallos call.
            reinstall_batch: 1,
            poll_interval: timing.poll_interval,
            install_timeout: timing.install_timeout,
            install_estimate: timing.install_estimate,
            start_grace: timing.start_grace,
            stop_timeout: timing.stop_timeout,
            reinstalls_failed_install: true,
        };
        Ok(Self {
            client: parsed.client,
            capabilities,
            rebuilding_seen: Mutex::new(HashSet::new()),
            job_success_seen: Mutex::new(HashMap::new()),
        })
    }

    pub fn client(&self) -> &HuaweiClient {
        &self.client
    }

    /// Replaces the retry policy of reads (tests use millisecond delays).
    pub fn set_retry_policy(&mut self, policy: RetryPolicy) {
        self.client.set_retry_policy(policy);
    }

    /// `cloudservers/detail` for any number of ids, in chunks of 100.
    async fn describe(
        &self,
        family: ApiFamily,
        ids: &[String],
    ) -> Result<BTreeMap<String, Observation>, ProviderError> {
        let unique: Vec<String> = ids
            .iter()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .cloned()
            .collect();
        let project = self.client.project_id().await?;
        let mut observations = BTreeMap::new();
        for chunk in unique.chunks(wire::MAX_IDS_PER_READ) {
            let asked: HashSet<&str> = chunk.iter().map(String::as_str).collect();
            let query = vec![
                ("limit".to_string(), wire::MAX_IDS_PER_READ.to_string()),
                ("server_id".to_string(), chunk.join(",")),
            ];
            let (body, _) = self
                .client
                .read_json(
                    family,
                    Target::Service,
                    &wire::ecs_detail_path(&project),
                    &query,
                    "listing servers",
                )
                .await?;
            let mut found: BTreeMap<String, wire::EcsServer> = wire::parse_ecs_servers(&body)
                .into_iter()
                // The filter is the API's job, but an entry nobody asked for must not be
                // mistaken for one that was.
                .filter(|server| asked.contains(server.id.as_str()))
                .map(|server| (server.id.clone(), server))
                .collect();
            for id in chunk {
                let observation = match found.remove(id) {
                    // An unknown id comes back with every field null but `id` and `fault`.
                    Some(server) if server.status.is_some() => Observation::Found(observed(server)),
                    _ => Observation::NotFound,
                };
                observations.insert(id.clone(), observation);
            }
        }
        Ok(observations)
    }

    async fn start_reinstall(
        &self,
        request: &ReinstallRequest,
    ) -> Result<Operation, ProviderError> {
        let config_error = |message: String, help: String| ProviderError::Config {
            provider: self.client.name().to_string(),
            message: format!("server `{}`: {message}", request.server),
            help,
        };
        let (options, issues) = EcsOptions::read(&request.options);
        if let Some(issue) = issues.into_iter().next() {
            return Err(config_error(
                format!("`{}`: {}", issue.pointer, issue.message),
                issue.help.unwrap_or_default(),
            ));
        }
        let call = choose_call(request.previous_image.as_deref(), &request.image);
        let variant = EcsVariant::from_cloud_init(options.cloud_init);
        let body = wire::ecs_body(&wire::EcsBodyInput {
            call,
            variant,
            cloud: options.cloud,
            image: &request.image,
            access: &request.access,
            user_id: options.user_id.as_deref(),
            user_data: request.user_data.as_deref(),
            with_stop_server: options.with_stop_server,
        })
        .map_err(|error| config_error(error.message, error.help))?;
        let project = self.client.project_id().await?;
        let path = wire::ecs_action_path(&project, &request.cloud_id, call, variant);
        let what = format!(
            "{} ({}) of `{}`",
            call.path_segment(),
            variant.version(),
            request.cloud_id
        );
        // Exactly once: a reinstall wipes a disk.
        let response = self
            .client
            .send_once(ApiFamily::Reinstall, Method::POST, &path, &body)
            .await?;
        let status = response.status;
        let parsed = wire::parse_json_response(self.client.name(), &what, response);
        let (body, request_id) = match parsed {
            Ok(parsed) => parsed,
            // A server error (a gateway timeout in particular) or an unreadable success does
            // not prove the call was refused.
            Err(error) if status.is_server_error() || status.is_success() => {
                return Err(self.client.ambiguous(error, &what));
            }
            Err(error) => return Err(error),
        };
        let Some(job_id) = wire::job_id_of(&body) else {
            let error = ProviderError::Api {
                provider: self.client.name().to_string(),
                status: Some(status.as_u16()),
                code: None,
                message: format!("{what}: accepted without a job id"),
                request_id,
                retryable: false,
            };
            return Err(self.client.ambiguous(error, &what));
        };
        tracing::info!(
            provider = %self.client.name(),
            server = %request.server,
            call = call.path_segment(),
            version = variant.version(),
            job_id,
            "ECS accepted the call"
        );
        Ok(Operation {
            server: request.server.clone(),
            cloud_id: request.cloud_id.clone(),
            image: request.image.clone(),
            job_id: Some(job_id),
            request_id,
            started_at_ms: jiff::Timestamp::now().as_millisecond(),
            previous_image: request.previous_image.clone(),
        })
    }

    async fn poll_operations(
        &self,
        operations: &[Operation],
    ) -> Result<Vec<OperationStatus>, ProviderError> {
        let project = self.client.project_id().await?;
        let mut statuses: Vec<Option<OperationStatus>> = vec![None; operations.len()];
        let mut finished_jobs = Vec::new();
        // Installs whose call's answer was lost have no job id: the server itself tells.
        let mut without_job = Vec::new();
        for (index, operation) in operations.iter().enumerate() {
            let failed = |message: String, request_id: Option<String>| OperationStatus::Failed {
                message,
                request_id: request_id.or_else(|| operation.request_id.clone()),
            };
            let Some(job_id) = &operation.job_id else {
                without_job.push(index);
                continue;
            };
            let read = self
                .client
                .read_json(
                    ApiFamily::Status,
                    Target::Service,
                    &wire::ecs_job_path(&project, job_id),
                    &[],
                    &format!("reading job {job_id}"),
                )
                .await;
            let (body, request_id) = match read {
                Ok(read) => read,
                Err(error) if error.is_retryable() => return Err(error),
                Err(error) => {
                    statuses[index] = Some(failed(error.to_string(), None));
                    continue;
                }
            };
            statuses[index] = match wire::parse_job(&body) {
                JobState::Pending(detail) => Some(OperationStatus::InProgress { detail }),
                JobState::Fail(reason) => Some(failed(
                    format!("ECS job {job_id} failed: {reason}"),
                    request_id,
                )),
                JobState::Success => {
                    finished_jobs.push(index);
                    None
                }
            };
        }
        if !finished_jobs.is_empty() || !without_job.is_empty() {
            let ids: Vec<String> = finished_jobs
                .iter()
                .chain(&without_job)
                .map(|index| operations[*index].cloud_id.clone())
                .collect();
            let observed = self.describe(ApiFamily::Status, &ids).await?;
            let mut succeeded = lock(&self.job_success_seen);
            for index in finished_jobs {
                let operation = &operations[index];
                let since = operation
                    .job_id
                    .as_ref()
                    .map(|job| *succeeded.entry(job.clone()).or_insert_with(Instant::now))
                    .unwrap_or_else(Instant::now);
                statuses[index] = Some(after_success(
                    operation,
                    observed.get(&operation.cloud_id),
                    since.elapsed() <= self.capabilities.start_grace,
                ));
            }
            drop(succeeded);
            let mut seen = lock(&self.rebuilding_seen);
            for index in without_job {
                let operation = &operations[index];
                let observation = observed.get(&operation.cloud_id);
                if let Some(Observation::Found(server)) = observation
                    && is_rebuilding(server)
                {
                    seen.insert(operation.cloud_id.clone());
                }
                statuses[index] = Some(from_server(
                    operation,
                    observation,
                    seen.contains(&operation.cloud_id),
                ));
            }
        }
        Ok(statuses
            .into_iter()
            .map(|status| {
                status.unwrap_or_else(|| OperationStatus::InProgress {
                    detail: "waiting".to_string(),
                })
            })
            .collect())
    }
}

/// Change OS unless the image observed at plan time is the desired one. When unsure (nothing
/// observed), change OS: it names the image explicitly, while reinstall OS would rebuild
/// whatever is installed now.
pub fn choose_call(previous_image: Option<&str>, desired_image: &str) -> EcsCall {
    if previous_image == Some(desired_image) {
        EcsCall::ReinstallOs
    } else {
        EcsCall::ChangeOs
    }
}

/// The server is busy with a rebuild (or another task that the call started, such as the
/// stop of `withStopServer`).
fn is_rebuilding(server: &Observed) -> bool {
    server.status == ServerStatus::Installing || server.extra.contains_key(EXTRA_TASK_STATE)
}

/// Where an install tracked without a job id stands, from the server alone (brief §5.3): busy
/// while rebuilding; `ERROR` is a failure; done once it is idle on the desired image after it
/// was seen rebuilding or its image moved there. Before any sign, it is waiting (the engine's
/// deadlines bound the wait).
fn from_server(
    operation: &Operation,
    observation: Option<&Observation>,
    seen_rebuilding: bool,
) -> OperationStatus {
    let Some(Observation::Found(server)) = observation else {
        return OperationStatus::Failed {
            message: format!("`{}` disappeared during the install", operation.cloud_id),
            request_id: operation.request_id.clone(),
        };
    };
    if is_rebuilding(server) {
        return OperationStatus::InProgress {
            detail: format!(
                "server {}{}",
                server.raw_status,
                server
                    .extra
                    .get(EXTRA_TASK_STATE)
                    .map(|task| format!(" ({task})"))
                    .unwrap_or_default()
            ),
        };
    }
    if server.status == ServerStatus::InstallFailed {
        return OperationStatus::Failed {
            message: format!(
                "`{}` is in ERROR{}",
                operation.cloud_id,
                server
                    .extra
                    .get("fault")
                    .map(|fault| format!(": {fault}"))
                    .unwrap_or_default()
            ),
            request_id: operation.request_id.clone(),
        };
    }
    let on_desired = server.image.as_deref() == Some(operation.image.as_str());
    let image_moved = operation.previous_image.as_deref() != Some(operation.image.as_str());
    match (on_desired, seen_rebuilding || image_moved) {
        (true, true) => OperationStatus::Succeeded {
            image: operation.image.clone(),
            note: None,
        },
        (false, true) if seen_rebuilding => OperationStatus::Failed {
            message: format!(
                "the rebuild of `{}` ended on image {} (status {}), expected {}",
                operation.cloud_id,
                server.image.as_deref().unwrap_or("(none)"),
                server.raw_status,
                operation.image
            ),
            request_id: operation.request_id.clone(),
        },
        _ => OperationStatus::InProgress {
            detail: format!(
                "waiting for the rebuild to show (server {})",
                server.raw_status
            ),
        },
    }
}

/// A job said SUCCESS: only a server that now reports the desired image counts as done. Within
/// the grace after the job ended (`within_grace`), another image is the server not showing the
/// change yet; after it, the install failed.
fn after_success(
    operation: &Operation,
    observation: Option<&Observation>,
    within_grace: bool,
) -> OperationStatus {
    let failed = |message: String| OperationStatus::Failed {
        message,
        request_id: operation.request_id.clone(),
    };
    match observation {
        Some(Observation::Found(server)) if server.status == ServerStatus::Installing => {
            OperationStatus::InProgress {
                detail: format!("job done, server still {}", server.raw_status),
            }
        }
        Some(Observation::Found(server)) if server.image.as_deref() == Some(&operation.image) => {
            OperationStatus::Succeeded {
                image: operation.image.clone(),
                note: None,
            }
        }
        Some(Observation::Found(server)) if within_grace => OperationStatus::InProgress {
            detail: format!(
                "job done; the server still reports image {} (status {})",
                server.image.as_deref().unwrap_or("(none)"),
                server.raw_status
            ),
        },
        Some(Observation::Found(server)) => failed(format!(
            "the ECS job succeeded but `{}` reports image {} (status {}), expected {}",
            operation.cloud_id,
            server.image.as_deref().unwrap_or("(none)"),
            server.raw_status,
            operation.image
        )),
        _ => failed(format!(
            "`{}` disappeared during the install",
            operation.cloud_id
        )),
    }
}

fn observed(server: wire::EcsServer) -> Observed {
    let raw_status = server.status.unwrap_or_default();
    let mut extra = BTreeMap::new();
    extra.insert(EXTRA_LOCKED.to_string(), server.locked.to_string());
    if let Some(task_state) = server.task_state {
        extra.insert(EXTRA_TASK_STATE.to_string(), task_state);
    }
    if let Some(fault) = server.fault
        && raw_status.eq_ignore_ascii_case("ERROR")
    {
        extra.insert("fault".to_string(), fault);
    }
    Observed {
        cloud_id: server.id,
        status: wire::map_ecs_status(&raw_status),
        raw_status,
        image: server.image_id,
        image_name: server.image_name,
        // Not reported: ECS cannot set a hostname during a reinstall, so reimage does not
        // manage it (validation refuses `hostname`), and showing it would read as a change.
        hostname: None,
        address: None,
        extra,
    }
}

/// The plan's judgement of one ECS reinstall (pure).
pub fn review(desired: &DesiredServer, observed: &Observed) -> ReinstallReview {
    let (options, _) = EcsOptions::read(&desired.options);
    let mut review = ReinstallReview::default();
    if observed.extra.get(EXTRA_LOCKED).map(String::as_str) == Some("true") {
        review.blocked = Some(
            "the server is locked at ECS (`locked: true`); unlock it in the console or with the \
             unlock API, then plan again"
                .to_string(),
        );
        return review;
    }
    if let Some(task_state) = observed.extra.get(EXTRA_TASK_STATE) {
        review.blocked = Some(format!(
            "the server is busy (task state `{task_state}`); ECS fails a reinstall while another \
             operation runs: wait, then plan again"
        ));
        return review;
    }
    if observed.status == ServerStatus::Running && !options.with_stop_server {
        review.blocked = Some(
            "the server is running and `options.with_stop_server` is false; ECS only changes or \
             reinstalls a stopped server: stop it, or drop that option"
                .to_string(),
        );
        return review;
    }
    let call = choose_call(observed.image.as_deref(), &desired.image);
    let variant = EcsVariant::from_cloud_init(options.cloud_init);
    let cloud_init = if options.cloud_init {
        "image with Cloud-Init"
    } else {
        "image without Cloud-Init"
    };
    review.notes.push(match call {
        EcsCall::ChangeOs => format!(
            "the OS is changed with changeos ({}, {cloud_init})",
            variant.version()
        ),
        EcsCall::ReinstallOs => format!(
            "the OS is reinstalled from the current image with reinstallos ({}, {cloud_init})",
            variant.version()
        ),
    });
    if observed.status == ServerStatus::Running && options.with_stop_server {
        review
            .notes
            .push("the server is stopped before the reinstall (mode withStopServer)".to_string());
    }
    review
}

impl Provider for HuaweiEcs {
    fn name(&self) -> &str {
        self.client.name()
    }

    fn provider_type(&self) -> ProviderType {
        ProviderType::HuaweicloudEcs
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
        Box::pin(self.start_reinstall(request))
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
