//! EDIS Global KVM VPS (`edis-kvm`): per-VPS session tickets from an e-mail/password login,
//! `set/reinstall` with no job id, and no way to read the installed OS.
//!
//! The brief is `shared/providers/edis.md`; what reimage relies on:
//! - `POST {auth}/kvm/v2/get/auth` (form: `email`, `pw`) returns, per VPS, an `api_host`, a
//!   `signature` and a `valid_until`. Tickets are cached per account, renewed before they
//!   expire and once when a call answers 401, which proves the call did nothing;
//! - every management call is a form POST to `{scheme}://{api_host}/kvm/v2/...` carrying the
//!   ticket exactly as issued; the scheme is the auth URL's (https, or http for a loopback
//!   emulator);
//! - the installed OS is unknown to EDIS's API ([`Capabilities::reports_image`] is false): the
//!   plan compares with reimage's own record, and an unrecorded VPS is blocked until adopted;
//! - completion is a heuristic ([`completion`]); success says it is not verifiable.

pub mod completion;
mod credentials;
mod reads;
mod reinstall;
mod requests;
pub mod settings;
mod status;
mod tickets;
pub mod validate;
pub mod wire;

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex as StdMutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::Url;
use secrecy::SecretString;

use completion::{Heuristic, Progress};
use credentials::resolve_credentials;
use requests::parse_auth_url;
pub use validate::validate_server;
use wire::Ticket;

use super::config;
use super::http::{ProviderHttp, RetryPolicy};
use super::limits::{ApiFamily, RateLimit, RateLimits};
use super::{
    BoxFuture, Capabilities, FieldIssue, Observation, Observed, Operation, OperationStatus,
    Provider, ProviderError, ReinstallRequest, ReinstallReview, ServerStatus,
};
use crate::manifest::health::HealthGate;
use crate::manifest::{DesiredProvider, DesiredServer, ProviderType};

/// EDIS documents no rate limits (brief §4: "Request ids, rate limits and 429 behaviour: none
/// documented"). The one call in flight per family is the brief's advice ("send calls serially
/// per account"); every rate below is a guess; override them with `rate_limits` in the
/// manifest.
const DEFAULT_RATE_LIMITS: [(ApiFamily, RateLimit); 5] = [
    // A guess: a login every two seconds at most (one login serves every VPS).
    (ApiFamily::Auth, RateLimit::new(30.0, 1)),
    // A guess: two power reads a second (EDIS reads one VPS per call).
    (ApiFamily::Read, RateLimit::new(120.0, 1)),
    // A guess, the same as reads.
    (ApiFamily::Status, RateLimit::new(120.0, 1)),
    // A guess: a reinstall every two seconds.
    (ApiFamily::Reinstall, RateLimit::new(30.0, 1)),
    // A guess, the same as reads: the turnkey image list, once per VPS that wants one.
    (ApiFamily::Catalogue, RateLimit::new(120.0, 1)),
];
/// Our own convention (brief §7): EDIS has no SDK whose variable names we could reuse.
const ENV_EMAIL: &str = "EDIS_EMAIL";
const ENV_PASSWORD: &str = "EDIS_PASSWORD";
const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(15);
/// Grace period + install + the SSH deadline's default, with room to spare.
const DEFAULT_INSTALL_TIMEOUT: Duration = Duration::from_secs(45 * 60);
/// A guess (brief §5: "Typical durations: unconfirmed"): a VPS install plus the completion
/// grace; the plan's estimate of the rollout uses it (`install_estimate` overrides it).
const DEFAULT_INSTALL_ESTIMATE: Duration = Duration::from_secs(10 * 60);
/// Brief §2.3: re-authenticate 60 s before `valid_until`. For tickets that live less than four
/// minutes (an emulator's), a quarter of their life is the margin instead.
const RENEW_MARGIN: Duration = Duration::from_secs(60);
/// A `valid_until` that cannot be read: the ticket is trusted this long, then renewed.
const UNREADABLE_EXPIRY_LIFETIME: Duration = Duration::from_secs(5 * 60);
/// The production auth host; management hosts it returns must lie in EDIS's domains.
const PRODUCTION_AUTH_HOST: &str = "session.edisglobal.com";

/// A ticket with the URL it is used at and when to renew it.
#[derive(Debug, Clone)]
struct CachedTicket {
    ticket: Ticket,
    base: Url,
    renew_at_ms: i64,
}

#[derive(Debug, Default)]
struct TicketCache {
    /// Whether an auth call has filled the cache (an empty account is a valid answer).
    filled: bool,
    tickets: BTreeMap<String, CachedTicket>,
}

/// One configured EDIS account.
#[derive(Debug)]
pub struct EdisKvm {
    name: String,
    capabilities: Capabilities,
    auth_url: Url,
    production: bool,
    email: SecretString,
    password: SecretString,
    http: ProviderHttp,
    heuristic: Heuristic,
    /// Server name → `HOST:PORT` to probe after an install.
    ssh_probes: BTreeMap<String, String>,
    /// The image names reinstalls may use, when the manifest lists them.
    images: Option<Vec<String>>,
    /// Held across an auth call, so concurrent callers wait for one login instead of each
    /// logging in.
    tickets: tokio::sync::Mutex<TicketCache>,
    /// Install progress by cloud id (only what this process has seen).
    progress: StdMutex<HashMap<String, Progress>>,
    auth_calls: AtomicU64,
}

impl EdisKvm {
    /// Builds the provider from its manifest entry, with credentials from the process
    /// environment when the manifest gives none.
    pub fn new(
        config: &DesiredProvider,
        endpoint_override: Option<&str>,
    ) -> Result<Self, ProviderError> {
        Self::with_env(config, endpoint_override, |name| std::env::var(name).ok())
    }

    /// Like [`EdisKvm::new`], reading `EDIS_EMAIL`/`EDIS_PASSWORD` through `env` (tests pass a
    /// map). Secret references of the `env:` kind still read the real environment.
    pub fn with_env(
        config: &DesiredProvider,
        endpoint_override: Option<&str>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ProviderError> {
        let name = config.name.clone();
        // The same rules `validate` reports, each at its place in the manifest.
        config::refuse_issues(&name, &super::check_config(&config.config))?;
        let settings = &config.config;
        let (text, source) =
            config::configured_endpoint(&name, endpoint_override, settings.endpoint.as_deref())?
                .unwrap_or_else(|| (wire::DEFAULT_AUTH_URL.to_string(), "the default"));
        let auth_url = parse_auth_url(&text).map_err(|(message, help)| {
            config::config_error(
                &name,
                format!("auth URL `{text}` (from {source}) {message}"),
                help,
            )
        })?;
        let production = auth_url
            .host_str()
            .is_some_and(|host| host.eq_ignore_ascii_case(PRODUCTION_AUTH_HOST));

        let (email, password) = resolve_credentials(&name, &settings.credentials, &env)?;
        // Checked above: no issues are left.
        let (options, _) = settings::ProviderOptions::read(&settings.options);

        let timing = config::Timing::defaults(
            DEFAULT_POLL_INTERVAL,
            DEFAULT_INSTALL_TIMEOUT,
            DEFAULT_INSTALL_ESTIMATE,
        )
        .of(config)?;
        let capabilities = Capabilities {
            // One auth call covers the account; each VPS then needs one power read.
            observe_batch: 50,
            reports_image: false,
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
            auth_url,
            production,
            email,
            password,
            heuristic: options.heuristic,
            ssh_probes: options.ssh_probes,
            images: options.images,
            tickets: tokio::sync::Mutex::new(TicketCache::default()),
            progress: StdMutex::new(HashMap::new()),
            auth_calls: AtomicU64::new(0),
        })
    }

    /// Replaces the retry policy of reads (tests use millisecond delays).
    pub fn set_retry_policy(&mut self, policy: RetryPolicy) {
        self.http.set_retry_policy(policy);
    }

    pub fn auth_url(&self) -> &Url {
        &self.auth_url
    }

    /// How many auth calls this provider has made (tests check renewal with it).
    pub fn auth_calls(&self) -> u64 {
        self.auth_calls.load(Ordering::SeqCst)
    }
}

impl Provider for EdisKvm {
    fn name(&self) -> &str {
        &self.name
    }

    fn provider_type(&self) -> ProviderType {
        ProviderType::EdisKvm
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
        Box::pin(self.check_images(servers))
    }

    fn review_reinstall(&self, desired: &DesiredServer, observed: &Observed) -> ReinstallReview {
        let mut review = ReinstallReview::default();
        if observed
            .extra
            .get("suspended")
            .is_some_and(|value| !matches!(value.as_str(), "n" | "N" | "false" | "0"))
        {
            review.blocked = Some("the VPS is suspended at EDIS; it cannot be reinstalled".into());
        }
        review.notes.push(match self.ssh_probes.get(&desired.name) {
            Some(address) => format!(
                "EDIS reports no install progress: done when the VPS is on again after {}s and \
                 SSH at {address} answers (the health gate from `ssh_probe`)",
                self.heuristic.grace.as_secs()
            ),
            None => format!(
                "EDIS reports no install progress: done when the VPS is on again after {}s (set \
                 `providers.{}.options.ssh_probe.{}` to also wait for SSH)",
                self.heuristic.grace.as_secs(),
                self.name,
                desired.name
            ),
        });
        if observed.status == ServerStatus::Stopped {
            review.notes.push(
                "the VPS is powered off now; completion waits for it to be on again".to_string(),
            );
        }
        if observed.extra.get("traffic_suspended").map(String::as_str) == Some("true") {
            review.notes.push(
                "EDIS reports the VPS's traffic as suspended: an SSH probe cannot reach it"
                    .to_string(),
            );
        }
        review
    }

    fn poll<'a>(
        &'a self,
        operations: &'a [Operation],
    ) -> BoxFuture<'a, Result<Vec<OperationStatus>, ProviderError>> {
        Box::pin(self.poll_operations(operations))
    }

    fn health_gate(&self, server: &DesiredServer) -> Option<HealthGate> {
        let address = self.ssh_probes.get(&server.name)?;
        Some(completion::probe_gate(
            address,
            &self.heuristic,
            &format!("providers.{}.options.ssh_probe", self.name),
        ))
    }
}

#[cfg(test)]
mod tests;
