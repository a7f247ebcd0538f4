//! Zenlayer Cloud bare metal (`zenlayer-bmc`): `DescribeInstances` to observe and poll,
//! `ReinstallInstance` to reinstall, ZC2-HMAC-SHA256 signing or a bearer token.
//!
//! The brief is `shared/providers/zenlayer.md`; the rules reimage relies on:
//! - always send `imageId` (omitting it silently reinstalls the current image);
//! - `password` XOR `keyId`;
//! - no task id and no idempotency token: a reinstall is sent exactly once, and completion is
//!   judged from the instance status (`INSTALLING` → `RUNNING` with the desired image).

mod credentials;
mod reads;
mod reinstall;
mod requests;
pub mod settings;
mod status;
pub mod validate;
pub mod wire;

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::Url;

use credentials::resolve_credentials;
use requests::parse_endpoint;
pub use validate::validate_server;
use wire::{ApiVersion, Credentials};

use super::completion::InstallingSeen;
use super::config;
use super::http::{ProviderHttp, RetryPolicy};
use super::limits::{ApiFamily, RateLimit, RateLimits};
use super::{
    BoxFuture, Capabilities, Observation, Operation, OperationStatus, Provider, ProviderError,
    ReinstallRequest,
};
use crate::manifest::{DesiredProvider, ProviderType};

/// Zenlayer publishes no limits (brief §4 "Rate limiting": "actual limits unconfirmed"; its SDKs
/// only retry `REQUEST_LIMIT_EXCEEDED`). Every figure below is a guess, kept low; override them
/// per provider with `rate_limits` in the manifest.
const DEFAULT_RATE_LIMITS: [(ApiFamily, RateLimit); 3] = [
    // A guess: 5 `DescribeInstances` a second, 100 ids each.
    (ApiFamily::Read, RateLimit::new(300.0, 8)),
    // A guess, the same as reads (status polls are `DescribeInstances` too).
    (ApiFamily::Status, RateLimit::new(300.0, 8)),
    // A guess: one `ReinstallInstance` a second.
    (ApiFamily::Reinstall, RateLimit::new(60.0, 10)),
];

/// Environment variable pairs for access keys, in order of preference: the Terraform
/// provider's names, then the official CLI's.
const ENV_ACCESS_KEY_PAIRS: [(&str, &str); 2] = [
    (
        "ZENLAYERCLOUD_ACCESS_KEY_ID",
        "ZENLAYERCLOUD_ACCESS_KEY_PASSWORD",
    ),
    ("ZENLAYER_ACCESS_KEY_ID", "ZENLAYER_ACCESS_KEY_SECRET"),
];
const ENV_TOKEN: &str = "ZENLAYER_TOKEN";
const ENV_DOMAIN: &str = "ZENLAYERCLOUD_DOMAIN";
const ENV_SCHEME: &str = "ZENLAYERCLOUD_SCHEME";

const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(15);
/// The Terraform provider's default for BMC create/update.
const DEFAULT_INSTALL_TIMEOUT: Duration = Duration::from_secs(90 * 60);
/// A guess (brief §6: durations not documented), for the plan's estimate of the rollout
/// (`install_estimate` overrides it).
const DEFAULT_INSTALL_ESTIMATE: Duration = Duration::from_secs(30 * 60);

/// One configured Zenlayer bare-metal account.
#[derive(Debug)]
pub struct ZenlayerBmc {
    name: String,
    capabilities: Capabilities,
    endpoint: Url,
    /// Exactly the `Host` header the HTTP client sends, which the signature covers.
    signed_host: String,
    credentials: Credentials,
    api_version: ApiVersion,
    running_grace: Duration,
    http: ProviderHttp,
    /// Servers whose current install was seen `INSTALLING` at least once.
    installing_seen: InstallingSeen,
}

impl ZenlayerBmc {
    /// Builds the provider from its manifest entry, with credentials and endpoint defaults
    /// from the process environment.
    pub fn new(
        config: &DesiredProvider,
        endpoint_override: Option<&str>,
    ) -> Result<Self, ProviderError> {
        Self::with_env(config, endpoint_override, |name| std::env::var(name).ok())
    }

    /// Like [`ZenlayerBmc::new`], reading environment defaults through `env` (tests pass a
    /// map; changing the real environment races with other threads). Secret references of
    /// the `env:` kind still read the real environment.
    pub fn with_env(
        config: &DesiredProvider,
        endpoint_override: Option<&str>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ProviderError> {
        let name = config.name.clone();
        // The same rules `validate` reports, each at its place in the manifest.
        config::refuse_issues(&name, &super::check_config(&config.config))?;
        // Empty variables count as unset, like most SDKs treat them.
        let env = config::non_empty_env(env);

        let settings = &config.config;
        let configured =
            config::configured_endpoint(&name, endpoint_override, settings.endpoint.as_deref())?;
        let (endpoint_text, source) = match configured {
            Some((url, source)) => (url, source.to_string()),
            None => match env(ENV_DOMAIN) {
                Some(domain) => {
                    let scheme = env(ENV_SCHEME)
                        .unwrap_or_else(|| "https".to_string())
                        .to_ascii_lowercase();
                    (
                        format!("{scheme}://{}{}", domain.trim(), wire::SERVICE_PATH),
                        format!("{ENV_DOMAIN}/{ENV_SCHEME}"),
                    )
                }
                None => (
                    wire::DEFAULT_ENDPOINT.to_string(),
                    "the default".to_string(),
                ),
            },
        };
        let (endpoint, signed_host) =
            parse_endpoint(&endpoint_text).map_err(|(message, help)| {
                config::config_error(
                    &name,
                    format!("endpoint `{endpoint_text}` (from {source}) {message}"),
                    help,
                )
            })?;

        let credentials = resolve_credentials(&name, &settings.credentials, &env)?;

        // Checked above: no issues are left.
        let (options, _) = settings::ProviderOptions::read(&settings.options);

        let timing = config::Timing {
            start_grace: options.running_grace,
            ..config::Timing::defaults(
                DEFAULT_POLL_INTERVAL,
                DEFAULT_INSTALL_TIMEOUT,
                DEFAULT_INSTALL_ESTIMATE,
            )
        }
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
            reinstalls_failed_install: true,
        };

        Ok(Self {
            http: ProviderHttp::new(&name, RetryPolicy::default())?
                .with_request_timeout(config::request_timeout(config)?)
                .with_limits(RateLimits::new(
                    &name,
                    &DEFAULT_RATE_LIMITS,
                    &config.config.rate_limits,
                )),
            name,
            capabilities,
            endpoint,
            signed_host,
            credentials,
            api_version: options.api_version,
            running_grace: options.running_grace,
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

    pub fn api_version(&self) -> &'static str {
        self.api_version.as_str()
    }
}

impl Provider for ZenlayerBmc {
    fn name(&self) -> &str {
        &self.name
    }

    fn provider_type(&self) -> ProviderType {
        ProviderType::ZenlayerBmc
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
        Box::pin(self.describe(ApiFamily::Read, ids))
    }

    fn reinstall<'a>(
        &'a self,
        request: &'a ReinstallRequest,
    ) -> BoxFuture<'a, Result<Operation, ProviderError>> {
        Box::pin(self.start_reinstall(request))
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
