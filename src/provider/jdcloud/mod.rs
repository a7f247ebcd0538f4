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

mod credentials;
mod mutations;
mod reads;
mod requests;
mod review;
pub mod settings;
mod status;
pub mod validate;
pub mod wire;

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::Url;

use credentials::resolve_credentials;
use requests::parse_endpoint;
pub use review::review;
pub use validate::validate_server;
use wire::Credentials;

use super::completion::InstallingSeen;
use super::config;
use super::http::{ProviderHttp, RetryPolicy};
use super::limits::{ApiFamily, RateLimit, RateLimits};
use super::{
    BoxFuture, Capabilities, FieldIssue, Observation, Observed, Operation, OperationStatus,
    Provider, ProviderError, ReinstallRequest, ReinstallReview,
};
use crate::manifest::{DesiredProvider, DesiredServer, ProviderType};

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
    /// Servers whose current install was seen in progress at least once.
    installing_seen: InstallingSeen,
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
            installing_seen: InstallingSeen::default(),
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

    fn report_waits_to(&self, waits: &crate::provider::limits::WaitSink) {
        self.http.report_waits_to(waits);
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

#[cfg(test)]
mod tests;
