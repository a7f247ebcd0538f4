//! JD Cloud physical servers (`jdcloud-cps`): `describeInstances` to observe and poll,
//! `describeOS` to check the desired OS, `stopInstance` then `reinstallInstance`, signed with
//! JDCLOUD2-HMAC-SHA256.
//!
//! The brief is `shared/providers/jdcloud.md`; the rules reimage relies on:
//! - a reinstall needs a `stopped` server: a running one is stopped first only when the manifest
//!   allows it (`options.allow_stop: true`), otherwise the plan blocks;
//! - the request repeats the storage layout (az, RAID ids, image type), read from the server
//!   itself unless the manifest changes it; `keepData` is `yes` unless `keep_data: false`;
//! - `clientToken` is deterministic per (plan, instance, step), so a retried stop or reinstall
//!   runs at most once at JD;
//! - completion is read from the instance: a stable status with the desired `osTypeId`.

pub mod settings;
pub mod validate;
pub mod wire;

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use reqwest::Url;
use reqwest::header::HeaderValue;
use secrecy::{ExposeSecret, SecretString};

use validate::ServerOptions;
pub use validate::validate_server;
use wire::{ApiCall, Credentials, InstanceInfo};

use super::config;
use super::http::{ProviderHttp, RetryPolicy};
use super::limits::{ApiFamily, RateLimit, RateLimits};
use super::response;
use super::{
    BoxFuture, Capabilities, FieldIssue, Observation, Observed, Operation, OperationStatus,
    Provider, ProviderError, ReinstallRequest, ReinstallReview, ResolvedAccess, ServerStatus,
};
use crate::manifest::{DesiredProvider, DesiredServer, ProviderType, SecretRef};

/// JD publishes no limits for CPS (brief §2: "Rate limiting (429) and limits: unconfirmed").
/// Every figure below is a guess, kept low; override them per provider with `rate_limits` in
/// the manifest.
const DEFAULT_RATE_LIMITS: [(ApiFamily, RateLimit); 5] = [
    // A guess: 5 `describeInstances` a second, 100 ids each.
    (ApiFamily::Read, RateLimit::new(300.0, 8)),
    // A guess, the same as reads (polls are `describeInstances` too).
    (ApiFamily::Status, RateLimit::new(300.0, 8)),
    // A guess: one `stopInstance` a second.
    (ApiFamily::Stop, RateLimit::new(60.0, 5)),
    // A guess: one `reinstallInstance` a second.
    (ApiFamily::Reinstall, RateLimit::new(60.0, 5)),
    // A guess: `describeOS` is called once per device type and plan.
    (ApiFamily::Catalogue, RateLimit::new(60.0, 2)),
];

/// The Packer plugin's names (brief §8); the region variable is reimage's own choice.
pub const ENV_ACCESS_KEY: &str = "JDCLOUD_ACCESS_KEY";
pub const ENV_SECRET_KEY: &str = "JDCLOUD_SECRET_KEY";
pub const ENV_REGION: &str = "JDCLOUD_REGION";

/// Brief §7: bare metal, "poll every 30 s".
const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(30);
/// Brief §7: "allow ≥ 60 min".
const DEFAULT_INSTALL_TIMEOUT: Duration = Duration::from_secs(90 * 60);
/// A guess (brief §7: durations are not documented), for the plan's estimate of the rollout
/// (`install_estimate` overrides it).
const DEFAULT_INSTALL_ESTIMATE: Duration = Duration::from_secs(30 * 60);
/// A guard against an API that keeps reporting more entries than it ever sends.
const MAX_PAGES: u32 = 100;

/// Keys of [`Observed::extra`]: the layout a reinstall repeats, and what the plan compares.
pub const EXTRA_AZ: &str = "az";
pub const EXTRA_DEVICE_TYPE: &str = "device_type";
pub const EXTRA_IMAGE_TYPE: &str = "image_type";
pub const EXTRA_SYS_RAID: &str = "sys_raid_type_id";
pub const EXTRA_DATA_RAID: &str = "data_raid_type_id";

/// One configured JD Cloud account and region.
#[derive(Debug)]
pub struct JdcloudCps {
    name: String,
    capabilities: Capabilities,
    /// Scheme, host and optional path prefix; API paths are appended.
    endpoint: Url,
    /// Exactly the `Host` header the HTTP client sends, which the signature covers.
    signed_host: String,
    region: String,
    credentials: Credentials,
    running_grace: Duration,
    http: ProviderHttp,
    /// Cloud ids whose current install was seen in progress at least once.
    installing_seen: Mutex<HashSet<String>>,
}

impl JdcloudCps {
    /// Builds the provider from its manifest entry, with credential and region defaults from
    /// the process environment.
    pub fn new(
        config: &DesiredProvider,
        endpoint_override: Option<&str>,
    ) -> Result<Self, ProviderError> {
        Self::with_env(config, endpoint_override, |name| std::env::var(name).ok())
    }

    /// Like [`JdcloudCps::new`], reading environment defaults through `env` (tests pass a map).
    /// Secret references of the `env:` kind still read the real environment.
    pub fn with_env(
        config: &DesiredProvider,
        endpoint_override: Option<&str>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ProviderError> {
        let name = config.name.clone();
        // The same rules `validate` reports, each at its place in the manifest.
        config::refuse_issues(&name, &super::check_config(&config.config))?;
        let env = config::non_empty_env(env);
        let settings = &config.config;

        let (endpoint_text, source) =
            config::configured_endpoint(&name, endpoint_override, settings.endpoint.as_deref())?
                .unwrap_or_else(|| (wire::DEFAULT_ENDPOINT.to_string(), "the default"));
        let (endpoint, signed_host) =
            parse_endpoint(&endpoint_text).map_err(|(message, help)| {
                config::config_error(
                    &name,
                    format!("endpoint `{endpoint_text}` (from {source}) {message}"),
                    help,
                )
            })?;

        let region = match settings.region.clone().or_else(|| env(ENV_REGION)) {
            Some(region) => region.trim().to_string(),
            None => {
                return Err(config::config_error(
                    &name,
                    "no region configured".to_string(),
                    format!(
                        "set `region:` on the provider (e.g. cn-east-1), or export {ENV_REGION}"
                    ),
                ));
            }
        };
        if let Some(problem) = settings::region_problem(&region) {
            return Err(config::config_error(&name, problem, settings::REGION_HELP));
        }

        let credentials = resolve_credentials(&name, &settings.credentials, &env)?;

        // Checked above: no issues are left.
        let (options, _) = settings::ProviderOptions::read(&settings.options);
        let running_grace = options.running_grace;

        let timing = config::Timing::defaults(
            DEFAULT_POLL_INTERVAL,
            DEFAULT_INSTALL_TIMEOUT,
            DEFAULT_INSTALL_ESTIMATE,
        )
        .of(config)?;
        let capabilities = Capabilities {
            observe_batch: wire::MAX_IDS_PER_CALL,
            reports_image: true,
            reinstall_batch: 1,
            poll_interval: timing.poll_interval,
            install_timeout: timing.install_timeout,
            install_estimate: timing.install_estimate,
            start_grace: timing.start_grace,
            stop_timeout: timing.stop_timeout,
            reinstalls_failed_install: false,
        };

        Ok(Self {
            http: ProviderHttp::new(&name, RetryPolicy::default())?
                .with_request_timeout(config::request_timeout(config)?)
                .with_limits(RateLimits::new(
                    &name,
                    &DEFAULT_RATE_LIMITS,
                    &settings.rate_limits,
                )),
            name,
            capabilities,
            endpoint,
            signed_host,
            region,
            credentials,
            running_grace,
            installing_seen: Mutex::new(HashSet::new()),
        })
    }

    /// Replaces the retry policy of reads (tests use millisecond delays).
    pub fn set_retry_policy(&mut self, policy: RetryPolicy) {
        self.http.set_retry_policy(policy);
    }

    pub fn endpoint(&self) -> &Url {
        &self.endpoint
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    /// The path as sent: the endpoint's prefix, then the API path.
    fn full_path(&self, call: &ApiCall) -> String {
        format!(
            "{}{}",
            self.endpoint.path().trim_end_matches('/'),
            call.path
        )
    }

    /// Builds and signs one request. Called again for every attempt, so each carries a fresh
    /// date and nonce.
    fn build_request(&self, call: &ApiCall) -> Result<reqwest::Request, ProviderError> {
        let datetime = sign_datetime_now();
        let nonce = uuid::Uuid::new_v4().to_string();
        self.build_request_with(call, &datetime, &nonce)
    }

    fn build_request_with(
        &self,
        call: &ApiCall,
        datetime: &str,
        nonce: &str,
    ) -> Result<reqwest::Request, ProviderError> {
        let full_path = self.full_path(call);
        let mut url = self.endpoint.clone();
        url.set_path(&full_path);
        url.set_query((!call.query.is_empty()).then_some(call.query.as_str()));
        let headers = wire::signed_headers(
            &self.credentials,
            &self.region,
            &self.signed_host,
            &full_path,
            call,
            datetime,
            nonce,
        );
        let mut builder = self.http.client()?.request(call.method.clone(), url);
        for (name, value) in headers {
            let mut value = HeaderValue::from_str(&value).map_err(|_| ProviderError::Config {
                provider: self.name.clone(),
                // The value is not quoted: it may be a credential.
                message: format!("the `{name}` header would hold characters HTTP does not allow"),
                help: "check the access key for stray newlines or non-ASCII characters".to_string(),
            })?;
            if name == "authorization" {
                value.set_sensitive(true);
            }
            builder = builder.header(name, value);
        }
        builder
            .body(call.body.clone())
            .build()
            .map_err(|error| ProviderError::Config {
                provider: self.name.clone(),
                message: format!("cannot build the {} request: {error}", call.action),
                help: format!("check the endpoint `{}`", self.endpoint),
            })
    }

    /// Sends a read (safe to repeat) with retries, re-signing every attempt.
    async fn read(
        &self,
        family: ApiFamily,
        call: &ApiCall,
    ) -> Result<wire::Envelope, ProviderError> {
        self.http
            .send_read_with_retry(
                family,
                || self.build_request(call),
                |response| wire::parse_envelope(&self.name, call.action, response),
            )
            .await
    }

    /// `describeInstances` for any number of ids: chunks of 100, every page followed.
    async fn describe(
        &self,
        family: ApiFamily,
        ids: &[String],
    ) -> Result<BTreeMap<String, Option<InstanceInfo>>, ProviderError> {
        let unique = super::unique_ids(ids);
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

    async fn observe_ids(
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
    async fn describe_one(&self, cloud_id: &str) -> Result<InstanceInfo, ProviderError> {
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
    async fn check_os(
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

    async fn stop_server(&self, cloud_id: &str, token: &str) -> Result<(), ProviderError> {
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

    async fn start_reinstall(
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
        // A new install starts: an install seen for an earlier one says nothing about it.
        self.seen_installing().remove(&request.cloud_id);
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

    async fn poll_operations(
        &self,
        operations: &[Operation],
    ) -> Result<Vec<OperationStatus>, ProviderError> {
        let ids: Vec<String> = operations
            .iter()
            .map(|operation| operation.cloud_id.clone())
            .collect();
        let described = self.describe(ApiFamily::Status, &ids).await?;
        let now_ms = jiff::Timestamp::now().as_millisecond();
        let mut seen = self.seen_installing();
        Ok(operations
            .iter()
            .map(|operation| {
                let instance = described.get(&operation.cloud_id).cloned().flatten();
                if let Some(instance) = &instance
                    && wire::map_status(&instance.status) == ServerStatus::Installing
                {
                    seen.insert(operation.cloud_id.clone());
                }
                operation_status(
                    operation,
                    instance.as_ref(),
                    seen.contains(&operation.cloud_id),
                    now_ms,
                    self.running_grace,
                )
            })
            .collect())
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

    fn seen_installing(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        // The set holds plain ids; a panic elsewhere cannot leave it inconsistent.
        self.installing_seen
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl ServerOptions {
    /// A data RAID change cannot keep data: it is allowed only with `keep_data: false`.
    fn keep_data_allowed_with(&self, desired: Option<&str>, observed: Option<&str>) -> bool {
        !self.keep_data || desired == observed
    }
}

impl Provider for JdcloudCps {
    fn name(&self) -> &str {
        &self.name
    }

    /// Every reinstall carries a `clientToken` derived from the plan step: JD answers a repeat
    /// with the first result and installs nothing more.
    fn resends_safely(&self) -> bool {
        true
    }

    fn provider_type(&self) -> ProviderType {
        ProviderType::JdcloudCps
    }

    fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    fn rate_limits(
        &self,
    ) -> BTreeMap<crate::provider::limits::ApiFamily, crate::provider::limits::RateLimit> {
        self.http.limits()
    }

    fn observe<'a>(
        &'a self,
        ids: &'a [String],
    ) -> BoxFuture<'a, Result<BTreeMap<String, Observation>, ProviderError>> {
        Box::pin(self.observe_ids(ids))
    }

    fn reinstall<'a>(
        &'a self,
        request: &'a ReinstallRequest,
    ) -> BoxFuture<'a, Result<Operation, ProviderError>> {
        Box::pin(self.start_reinstall(request))
    }

    fn check_desired<'a>(
        &'a self,
        servers: &'a [(&'a DesiredServer, &'a Observation)],
    ) -> BoxFuture<'a, Result<Vec<(String, FieldIssue)>, ProviderError>> {
        Box::pin(self.check_os(servers))
    }

    fn review_reinstall(&self, desired: &DesiredServer, observed: &Observed) -> ReinstallReview {
        review(desired, observed)
    }

    fn stop<'a>(
        &'a self,
        cloud_id: &'a str,
        token: &'a str,
    ) -> BoxFuture<'a, Result<(), ProviderError>> {
        Box::pin(self.stop_server(cloud_id, token))
    }

    fn poll<'a>(
        &'a self,
        operations: &'a [Operation],
    ) -> BoxFuture<'a, Result<Vec<OperationStatus>, ProviderError>> {
        Box::pin(self.poll_operations(operations))
    }
}

fn sign_datetime_now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y%m%dT%H%M%SZ")
        .to_string()
}

fn observed(instance: InstanceInfo) -> Observed {
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

/// The plan's judgement of a reinstall (pure): stop first or block, and what else is wiped.
pub fn review(desired: &DesiredServer, observed: &Observed) -> ReinstallReview {
    let options = ServerOptions::read(&desired.options);
    let mut review = ReinstallReview::default();
    let current = |key: &str| observed.extra.get(key).map(String::as_str);
    match observed.status {
        ServerStatus::Running if options.allow_stop => {
            review.stop_first = true;
            review.notes.push(
                "the server is running: reimage stops it (stopInstance) and waits for `stopped` \
                 before reinstalling, since JD Cloud reinstalls only stopped servers"
                    .to_string(),
            );
        }
        ServerStatus::Running => {
            review.blocked = Some(
                "the server is running and JD Cloud reinstalls only stopped servers; set \
                 `options.allow_stop: true` to let reimage stop it first, or stop it yourself"
                    .to_string(),
            );
        }
        _ => {}
    }
    if !options.keep_data {
        review.extra_wipes.push("DATA DISKS".to_string());
        review.notes.push(
            "KEEP_DATA IS FALSE: ALL DATA DISKS OF THIS SERVER WILL BE WIPED (keepData: no)"
                .to_string(),
        );
    }
    if let Some(desired_raid) = options.sys_raid_type_id.as_deref()
        && current(EXTRA_SYS_RAID) != Some(desired_raid)
    {
        review.extra_wipes.push(format!(
            "system RAID rebuilt ({} -> {desired_raid})",
            current(EXTRA_SYS_RAID).unwrap_or("unknown")
        ));
    }
    if let Some(desired_raid) = options.data_raid_type_id.as_deref()
        && current(EXTRA_DATA_RAID) != Some(desired_raid)
    {
        let before = current(EXTRA_DATA_RAID).unwrap_or("unknown");
        if options.keep_data {
            review.blocked.get_or_insert(format!(
                "the data RAID would change ({before} -> {desired_raid}), which rebuilds the data \
                 disks and cannot keep their data; set `options.keep_data: false` to confirm \
                 they are wiped"
            ));
        } else {
            review
                .extra_wipes
                .push(format!("data RAID rebuilt ({before} -> {desired_raid})"));
        }
    }
    if let Some(az) = options.az.as_deref()
        && current(EXTRA_AZ) != Some(az)
    {
        review.notes.push(format!(
            "availability zone in the request: {az} (JD reports {})",
            current(EXTRA_AZ).unwrap_or("none")
        ));
    }
    if let Some(image_type) = options.image_type.as_deref()
        && current(EXTRA_IMAGE_TYPE)
            .map(str::to_ascii_lowercase)
            .as_deref()
            != Some(image_type)
    {
        review.notes.push(format!(
            "image type: {} -> {image_type}",
            current(EXTRA_IMAGE_TYPE).unwrap_or("unknown")
        ));
    }
    review
}

/// Problems of one server's desired OS against the catalogue of its device type.
fn os_issues(
    server: &DesiredServer,
    device_type: Option<&str>,
    region: &str,
    catalogue: &[wire::OsInfo],
) -> Vec<FieldIssue> {
    let device = device_type.unwrap_or("(unknown device type)");
    let same_name = |a: &str, b: &str| a.trim().eq_ignore_ascii_case(b.trim());
    let options = ServerOptions::read(&server.options);
    let Some(entry) = catalogue.iter().find(|os| os.os_type_id == server.image) else {
        let by_name = options.os_name.as_deref().and_then(|name| {
            catalogue.iter().find(|os| {
                os.os_name
                    .as_deref()
                    .is_some_and(|os_name| same_name(os_name, name))
            })
        });
        let help = match by_name {
            Some(os) => format!(
                "`{}` is named `{}`: did you mean `os.image: {}`?",
                os.os_type_id,
                os.os_name.as_deref().unwrap_or_default(),
                os.os_type_id
            ),
            None => format!("offered for {device}: {}", catalogue_list(catalogue)),
        };
        return vec![FieldIssue {
            pointer: "/os/image".to_string(),
            message: format!(
                "unknown OS: osTypeId `{}` is not offered for device type {device} in {region} \
                 (describeOS)",
                server.image
            ),
            help: Some(help),
        }];
    };
    match (options.os_name.as_deref(), entry.os_name.as_deref()) {
        (Some(wanted), Some(actual)) if !same_name(wanted, actual) => vec![FieldIssue {
            pointer: "/options/os_name".to_string(),
            message: format!(
                "`os_name` is `{wanted}`, but osTypeId `{}` is `{actual}`",
                server.image
            ),
            help: Some(
                "fix whichever is wrong: `os.image` is what gets installed, `os_name` only \
                 double-checks it"
                    .to_string(),
            ),
        }],
        (Some(wanted), None) => vec![FieldIssue {
            pointer: "/options/os_name".to_string(),
            message: format!(
                "`os_name` is `{wanted}`, but describeOS gives no name for `{}`",
                server.image
            ),
            help: Some("remove `os_name`, or check the osTypeId".to_string()),
        }],
        _ => Vec::new(),
    }
}

fn catalogue_list(catalogue: &[wire::OsInfo]) -> String {
    if catalogue.is_empty() {
        return "nothing".to_string();
    }
    let mut shown: Vec<String> = catalogue
        .iter()
        .take(10)
        .map(|os| match &os.os_name {
            Some(name) => format!("`{}` ({name})", os.os_type_id),
            None => format!("`{}`", os.os_type_id),
        })
        .collect();
    if catalogue.len() > 10 {
        shown.push(format!("and {} more", catalogue.len() - 10));
    }
    shown.join(", ")
}

/// Where one reinstall stands, from the instance as observed now (brief §7).
fn operation_status(
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
    let elapsed_ms = now_ms.saturating_sub(operation.started_at_ms);
    let grace_over = i128::from(elapsed_ms) > running_grace.as_millis() as i128;
    let os = instance.os_type_id.as_deref();
    // An OS id that moved from the planned one to the desired one proves the install ran.
    let image_moved = operation.previous_image.as_deref().is_some_and(|previous| {
        previous != operation.image && os == Some(operation.image.as_str())
    });
    match wire::map_status(&instance.status) {
        ServerStatus::Installing => OperationStatus::InProgress {
            detail: instance.status.clone(),
        },
        ServerStatus::Running | ServerStatus::Stopped
            if installing_seen || image_moved || grace_over =>
        {
            if os == Some(operation.image.as_str()) {
                let note = (!installing_seen && !image_moved).then(|| {
                    "the install was never seen in progress and the osTypeId did not change; \
                     JD reports no job, so completion is inferred from the status alone"
                        .to_string()
                });
                OperationStatus::Succeeded {
                    image: operation.image.clone(),
                    note,
                }
            } else {
                failed(format!(
                    "the install ended ({}) with osTypeId {}, expected {}",
                    instance.status,
                    os.unwrap_or("(none)"),
                    operation.image
                ))
            }
        }
        ServerStatus::Running | ServerStatus::Stopped => OperationStatus::InProgress {
            detail: format!("{}; waiting for the install to start", instance.status),
        },
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

/// Parses and checks an endpoint URL; returns it with the `Host` value the client will send
/// (brief §3: port omitted for 80/443).
fn parse_endpoint(text: &str) -> Result<(Url, String), (String, &'static str)> {
    let url = config::check_endpoint(text, settings::URL_HELP, config::PLAIN_HTTP_HELP)?;
    let signed_host = config::signed_host(&url);
    Ok((url, signed_host))
}

/// Credentials from the manifest, else from `JDCLOUD_ACCESS_KEY` / `JDCLOUD_SECRET_KEY`.
fn resolve_credentials(
    provider: &str,
    references: &BTreeMap<String, SecretRef>,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<Credentials, ProviderError> {
    let resolve = |key: &str, reference: &SecretRef| {
        config::resolve_credential(provider, "JD Cloud", key, reference)
    };
    match (references.get("access_key"), references.get("secret_key")) {
        (Some(access_key), Some(secret_key)) => Ok(Credentials {
            access_key: resolve("access_key", access_key)?
                .expose_secret()
                .trim()
                .to_string(),
            secret_key: resolve("secret_key", secret_key)?,
        }),
        (Some(_), None) | (None, Some(_)) => {
            Err(config::half_pair(provider, "access_key", "secret_key"))
        }
        (None, None) => match config::env_pair(provider, env, ENV_ACCESS_KEY, ENV_SECRET_KEY)? {
            Some((access_key, secret_key)) => Ok(Credentials {
                access_key: access_key.trim().to_string(),
                secret_key: SecretString::from(secret_key),
            }),
            None => Err(config::config_error(
                provider,
                "no JD Cloud credentials found",
                format!(
                    "set `credentials.access_key` and `credentials.secret_key` in the manifest \
                     (as {{env: NAME}} or {{file: PATH}}), or export {ENV_ACCESS_KEY} and \
                     {ENV_SECRET_KEY}"
                ),
            )),
        },
    }
}

#[cfg(test)]
mod tests;
