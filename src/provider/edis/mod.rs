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
pub mod settings;
pub mod validate;
pub mod wire;

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex as StdMutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::Url;
use reqwest::header::{CONTENT_TYPE, HeaderValue};
use secrecy::{ExposeSecret, SecretString};

use completion::{Heuristic, PowerVerdict, Progress};
pub use validate::validate_server;
use wire::Ticket;

use super::config;
use super::http::{ProviderHttp, RawResponse, RetryPolicy};
use super::limits::{ApiFamily, RateLimit, RateLimits};
use super::{
    BoxFuture, Capabilities, FieldIssue, Observation, Observed, Operation, OperationStatus,
    Provider, ProviderError, ReinstallRequest, ReinstallReview, ResolvedAccess, ServerStatus,
};
use crate::manifest::diagnostics::did_you_mean;
use crate::manifest::health::HealthGate;
use crate::manifest::{DesiredProvider, DesiredServer, ProviderType, SecretRef};

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

    /// Removes secrets the server might echo from text meant for errors and logs.
    fn scrub(&self, text: &str) -> String {
        let password = self.password.expose_secret();
        if password.is_empty() {
            text.to_string()
        } else {
            text.replace(password, "<redacted>")
        }
    }

    fn scrub_error(&self, error: ProviderError) -> ProviderError {
        match error {
            ProviderError::Api {
                provider,
                status,
                code,
                message,
                request_id,
                retryable,
            } => ProviderError::Api {
                provider,
                status,
                code,
                message: self.scrub(&message),
                request_id,
                retryable,
            },
            ProviderError::Transport {
                provider,
                url,
                message,
                maybe_sent,
                retryable,
            } => ProviderError::Transport {
                provider,
                url,
                message: self.scrub(&message),
                maybe_sent,
                retryable,
            },
            other => other,
        }
    }

    fn form_request(&self, url: Url, body: String) -> Result<reqwest::Request, ProviderError> {
        self.http
            .client()?
            .post(url)
            .header(
                CONTENT_TYPE,
                HeaderValue::from_static(wire::FORM_CONTENT_TYPE),
            )
            .body(body)
            .build()
            .map_err(|error| ProviderError::Config {
                provider: self.name.clone(),
                message: format!("cannot build a request: {error}"),
                help: "this is a bug in reimage; please report it".to_string(),
            })
    }

    /// Logs in and replaces every cached ticket (brief §2.3: one auth call refreshes all VPSs).
    async fn authenticate(&self, cache: &mut TicketCache) -> Result<(), ProviderError> {
        self.auth_calls.fetch_add(1, Ordering::SeqCst);
        let body = wire::form_encode(&[
            ("email", self.email.expose_secret()),
            ("pw", self.password.expose_secret()),
        ]);
        let tickets = self
            .http
            .send_read_with_retry(
                ApiFamily::Auth,
                || self.form_request(self.auth_url.clone(), body.clone()),
                |response| self.classify_auth(response),
            )
            .await
            .map_err(|error| self.scrub_error(error))?;
        let issued_ms = jiff::Timestamp::now().as_millisecond();
        let mut fresh = BTreeMap::new();
        for ticket in tickets {
            let base = wire::management_base(&self.auth_url, &ticket.api_host, self.production)
                .map_err(|message| ProviderError::Api {
                    provider: self.name.clone(),
                    status: None,
                    code: None,
                    message: format!("VPS `{}`: {message}", ticket.kvm_id),
                    request_id: None,
                    retryable: false,
                })?;
            let renew_at_ms = renew_at(issued_ms, ticket.expires_at);
            fresh.insert(
                ticket.kvm_id.clone(),
                CachedTicket {
                    ticket,
                    base,
                    renew_at_ms,
                },
            );
        }
        tracing::debug!(provider = %self.name, vps = fresh.len(), "EDIS tickets issued");
        cache.tickets = fresh;
        cache.filled = true;
        Ok(())
    }

    fn classify_auth(&self, response: RawResponse) -> Result<Vec<Ticket>, ProviderError> {
        if matches!(response.status.as_u16(), 401 | 403) {
            let refused = wire::api_error(&self.name, "login", &response);
            let detail = match refused {
                ProviderError::Api { message, .. } => message,
                other => other.to_string(),
            };
            return Err(ProviderError::Config {
                provider: self.name.clone(),
                message: format!(
                    "EDIS refused the e-mail and password: {}",
                    self.scrub(&detail)
                ),
                help: format!(
                    "check `credentials.email`/`credentials.password` (or {ENV_EMAIL}/\
                     {ENV_PASSWORD}): they are the client-area login; API access must also be \
                     enabled once in the KVM portal"
                ),
            });
        }
        wire::parse_auth(&self.name, &response)
    }

    /// Tickets for `ids`, logging in first when any is missing or due for renewal. Ids the
    /// account does not have are absent from the result.
    async fn tickets_for(
        &self,
        ids: &[String],
    ) -> Result<BTreeMap<String, CachedTicket>, ProviderError> {
        let mut cache = self.tickets.lock().await;
        let now_ms = jiff::Timestamp::now().as_millisecond();
        let stale = !cache.filled
            || ids.iter().any(|id| {
                cache
                    .tickets
                    .get(id)
                    .is_none_or(|cached| now_ms >= cached.renew_at_ms)
            });
        if stale {
            self.authenticate(&mut cache).await?;
        }
        Ok(ids
            .iter()
            .filter_map(|id| {
                cache
                    .tickets
                    .get(id)
                    .map(|cached| (id.clone(), cached.clone()))
            })
            .collect())
    }

    async fn ticket_for(&self, kvm_id: &str) -> Result<CachedTicket, ProviderError> {
        let ids = [kvm_id.to_string()];
        self.tickets_for(&ids)
            .await?
            .remove(kvm_id)
            .ok_or_else(|| ProviderError::Api {
                provider: self.name.clone(),
                status: None,
                code: None,
                message: format!("the account has no VPS `{kvm_id}` (the login did not list it)"),
                request_id: None,
                retryable: false,
            })
    }

    /// After a 401 with `rejected`: logs in again, unless another caller already did.
    async fn renew_after_rejection(
        &self,
        kvm_id: &str,
        rejected: &CachedTicket,
    ) -> Result<CachedTicket, ProviderError> {
        let mut cache = self.tickets.lock().await;
        let already_renewed = cache.tickets.get(kvm_id).is_some_and(|cached| {
            cached.ticket.signature.expose_secret() != rejected.ticket.signature.expose_secret()
        });
        if !already_renewed {
            tracing::info!(provider = %self.name, kvm_id, "EDIS refused the ticket (401); logging in again");
            self.authenticate(&mut cache).await?;
        }
        cache
            .tickets
            .get(kvm_id)
            .cloned()
            .ok_or_else(|| ProviderError::Api {
                provider: self.name.clone(),
                status: None,
                code: None,
                message: format!("the account no longer lists VPS `{kvm_id}`"),
                request_id: None,
                retryable: false,
            })
    }

    /// The form of a management call: the ticket exactly as issued, then the call's fields.
    fn ticket_form(ticket: &Ticket, fields: &[(&str, &str)]) -> String {
        let mut pairs: Vec<(&str, &str)> = vec![
            ("signature", ticket.signature.expose_secret()),
            ("kvm_id", &ticket.kvm_id),
            ("valid_until", &ticket.valid_until),
        ];
        pairs.extend_from_slice(fields);
        wire::form_encode(&pairs)
    }

    fn management_url(&self, cached: &CachedTicket, path: &str) -> Result<Url, ProviderError> {
        cached
            .base
            .join(path)
            .map_err(|error| ProviderError::Config {
                provider: self.name.clone(),
                message: format!("cannot build the URL of {path}: {error}"),
                help: "this is a bug in reimage; please report it".to_string(),
            })
    }

    /// A management read (retried on 429/5xx), renewing the ticket once on a 401.
    async fn management_read<T>(
        &self,
        family: ApiFamily,
        kvm_id: &str,
        path: &str,
        parse: fn(&str, &RawResponse) -> Result<T, ProviderError>,
    ) -> Result<T, ProviderError> {
        let ticket = self.ticket_for(kvm_id).await?;
        match self.read_with(family, &ticket, path, parse).await {
            Err(error) if wire::is_unauthorized(&error) => {
                let fresh = self.renew_after_rejection(kvm_id, &ticket).await?;
                self.read_with(family, &fresh, path, parse).await
            }
            other => other,
        }
    }

    async fn read_with<T>(
        &self,
        family: ApiFamily,
        cached: &CachedTicket,
        path: &str,
        parse: fn(&str, &RawResponse) -> Result<T, ProviderError>,
    ) -> Result<T, ProviderError> {
        let url = self.management_url(cached, path)?;
        let body = Self::ticket_form(&cached.ticket, &[]);
        self.http
            .send_read_with_retry(
                family,
                || self.form_request(url.clone(), body.clone()),
                |response| parse(&self.name, &response),
            )
            .await
            .map_err(|error| self.scrub_error(error))
    }

    async fn power(&self, family: ApiFamily, kvm_id: &str) -> Result<wire::Power, ProviderError> {
        self.management_read(family, kvm_id, wire::POWER_PATH, wire::parse_power)
            .await
    }

    async fn observe_ids(
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

    async fn start_reinstall(
        &self,
        request: &ReinstallRequest,
    ) -> Result<Operation, ProviderError> {
        let password = match &request.access {
            ResolvedAccess::Password(password) => password,
            _ => {
                return Err(ProviderError::Config {
                    provider: self.name.clone(),
                    message: format!(
                        "server `{}`: EDIS needs a root password for a reinstall",
                        request.server
                    ),
                    help: "set `access.password` for this server".to_string(),
                });
            }
        };
        let mut fields: Vec<(&str, &str)> = vec![
            ("image", &request.image),
            ("password", password.expose_secret()),
        ];
        if let Some(user_data) = &request.user_data {
            fields.push(("cloudinit_user_data", user_data));
        }
        let ticket = self.ticket_for(&request.cloud_id).await?;
        if ticket.ticket.is_suspended() {
            return Err(ProviderError::Api {
                provider: self.name.clone(),
                status: None,
                code: None,
                message: format!(
                    "VPS `{}` is suspended; EDIS VPSs are not reinstalled while suspended",
                    request.cloud_id
                ),
                request_id: None,
                retryable: false,
            });
        }
        // A new install starts: nothing seen for an earlier one applies.
        self.progress().remove(&request.cloud_id);
        let started_at_ms = jiff::Timestamp::now().as_millisecond();
        let answer = match self.send_reinstall(&request.cloud_id, &fields).await {
            // A 401 is a refusal before anything was done: the one case where sending the
            // reinstall again is safe.
            Ok((used, response)) if response.status.as_u16() == 401 => {
                self.renew_after_rejection(&request.cloud_id, &used).await?;
                self.send_reinstall(&request.cloud_id, &fields).await
            }
            other => other,
        };
        let (ticket, response) = answer.map_err(|error| self.scrub_error(error))?;
        let status = response.status;
        wire::parse_reinstall(&self.name, &response).map_err(|error| {
            let error = self.scrub_error(error);
            // A 5xx, or a 2xx that is not the documented success, does not prove that nothing
            // started: the caller must look before trying again (brief §4: no idempotency).
            if status.is_server_error() || status.is_success() {
                ProviderError::Transport {
                    provider: self.name.clone(),
                    url: format!(
                        "{}{}",
                        ticket.base,
                        wire::REINSTALL_PATH.trim_start_matches('/')
                    ),
                    message: format!(
                        "{error}; the reinstall of `{}` may have started: look at the VPS \
                         (VNC console) before trying again",
                        request.cloud_id
                    ),
                    maybe_sent: true,
                    retryable: false,
                }
            } else {
                error
            }
        })?;
        Ok(Operation {
            server: request.server.clone(),
            cloud_id: request.cloud_id.clone(),
            image: request.image.clone(),
            // EDIS returns neither a job id nor a request id.
            job_id: None,
            request_id: None,
            started_at_ms,
            previous_image: request.previous_image.clone(),
        })
    }

    /// Sends the reinstall once (only a 429, which refuses before acting, is sent again). The
    /// ticket is taken after the rate limiter grants the call, renewed if it is inside its
    /// margin: a ticket attached before a long queue could expire in it. Returns the ticket
    /// used with the answer.
    async fn send_reinstall(
        &self,
        kvm_id: &str,
        fields: &[(&str, &str)],
    ) -> Result<(CachedTicket, RawResponse), ProviderError> {
        let retry = self.http.retry_policy().clone();
        let mut attempt = 1;
        loop {
            let permit = self.http.acquire(ApiFamily::Reinstall).await;
            let ticket = self.ticket_for(kvm_id).await?;
            let url = self.management_url(&ticket, wire::REINSTALL_PATH)?;
            let request = self.form_request(url, Self::ticket_form(&ticket.ticket, fields))?;
            let response = self.http.send_permitted(permit, request).await?;
            // EDIS documents no 429; this is HTTP's meaning, unconfirmed for EDIS (brief §4).
            if response.status.as_u16() != 429 || attempt >= retry.max_attempts.max(1) {
                return Ok((ticket, response));
            }
            tokio::time::sleep(retry.delay_before(attempt, response.retry_after())).await;
            attempt += 1;
        }
    }

    fn progress(&self) -> std::sync::MutexGuard<'_, HashMap<String, Progress>> {
        // Plain data: a panic elsewhere cannot leave it inconsistent.
        self.progress
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    async fn poll_operations(
        &self,
        operations: &[Operation],
    ) -> Result<Vec<OperationStatus>, ProviderError> {
        futures_util::future::join_all(operations.iter().map(|operation| self.poll_one(operation)))
            .await
            .into_iter()
            .collect()
    }

    async fn poll_one(&self, operation: &Operation) -> Result<OperationStatus, ProviderError> {
        let ids = [operation.cloud_id.clone()];
        if !self
            .tickets_for(&ids)
            .await?
            .contains_key(&operation.cloud_id)
        {
            return Ok(OperationStatus::Failed {
                message: format!(
                    "VPS `{}` disappeared from the account during the install",
                    operation.cloud_id
                ),
                request_id: None,
            });
        }
        let power = self.power(ApiFamily::Status, &operation.cloud_id).await?;
        let now_ms = jiff::Timestamp::now().as_millisecond();
        let elapsed_ms = now_ms.saturating_sub(operation.started_at_ms);
        let (verdict, progress) = {
            let mut all = self.progress();
            let progress = all.entry(operation.cloud_id.clone()).or_default();
            let verdict = completion::judge_power(
                &self.heuristic,
                progress,
                elapsed_ms,
                now_ms,
                power.status(),
                &power.text,
            );
            (verdict, progress.clone())
        };
        if let PowerVerdict::Waiting(detail) = verdict {
            return Ok(OperationStatus::InProgress { detail });
        }
        // An `ssh_probe` is not checked here: it is this server's health gate, which the engine
        // runs after this success (see `health_gate`).
        Ok(OperationStatus::Succeeded {
            image: operation.image.clone(),
            note: Some(completion::success_note(&progress)),
        })
    }

    /// Image names checked against what EDIS or the manifest lists (brief §0.4: the autoinstall
    /// list has no documented path; turnkey images have one).
    async fn check_images(
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

/// When to renew a ticket issued at `issued_ms` that expires at `expires_at` (Unix seconds).
fn renew_at(issued_ms: i64, expires_at: Option<i64>) -> i64 {
    let unreadable_lifetime_ms = UNREADABLE_EXPIRY_LIFETIME.as_millis() as i64;
    let Some(expires_ms) = expires_at.and_then(|seconds| seconds.checked_mul(1000)) else {
        return issued_ms.saturating_add(unreadable_lifetime_ms);
    };
    let lifetime_ms = expires_ms.saturating_sub(issued_ms).max(0);
    let margin_ms = (RENEW_MARGIN.as_millis() as i64).min(lifetime_ms / 4);
    expires_ms.saturating_sub(margin_ms)
}

/// Parses and checks the auth URL; a bare host means the documented path.
fn parse_auth_url(text: &str) -> Result<Url, (String, &'static str)> {
    let mut url = config::check_endpoint(text, settings::URL_HELP, settings::PLAIN_HTTP_HELP)?;
    if url.path() == "/" || url.path().is_empty() {
        url.set_path(wire::AUTH_PATH);
    }
    Ok(url)
}

/// The e-mail and password: from the manifest's references, else `EDIS_EMAIL`/`EDIS_PASSWORD`.
fn resolve_credentials(
    provider: &str,
    references: &BTreeMap<String, SecretRef>,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<(SecretString, SecretString), ProviderError> {
    let resolve = |key: &str, reference: &SecretRef| {
        config::resolve_credential(provider, "EDIS client-area", key, reference)
    };
    match (references.get("email"), references.get("password")) {
        (Some(email), Some(password)) => {
            Ok((resolve("email", email)?, resolve("password", password)?))
        }
        (Some(_), None) | (None, Some(_)) => Err(config::config_error(
            provider,
            "`credentials.email` and `credentials.password` must be given together".to_string(),
            format!("add the missing one, or remove both to use {ENV_EMAIL} and {ENV_PASSWORD}"),
        )),
        (None, None) => {
            let env = config::non_empty_env(env);
            match (env(ENV_EMAIL), env(ENV_PASSWORD)) {
                (Some(email), Some(password)) => Ok((
                    SecretString::from(email.trim().to_string()),
                    SecretString::from(password),
                )),
                _ => Err(config::config_error(
                    provider,
                    "no EDIS credentials found".to_string(),
                    format!(
                        "set `credentials.email` and `credentials.password` (e.g. `{{env: \
                         NAME}}` or `{{file: PATH}}`) in the manifest, or export {ENV_EMAIL} and \
                         {ENV_PASSWORD}"
                    ),
                )),
            }
        }
    }
}

#[cfg(test)]
mod tests;
