//! Zenlayer Cloud bare metal (`zenlayer-bmc`): `DescribeInstances` to observe and poll,
//! `ReinstallInstance` to reinstall, ZC2-HMAC-SHA256 signing or a bearer token.
//!
//! The brief is `shared/providers/zenlayer.md`; the rules reimage relies on:
//! - always send `imageId` (omitting it silently reinstalls the current image);
//! - `password` XOR `keyId`;
//! - no task id and no idempotency token: a reinstall is sent exactly once, and completion is
//!   judged from the instance status (`INSTALLING` → `RUNNING` with the desired image).

pub mod settings;
pub mod validate;
pub mod wire;

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use reqwest::Url;
use reqwest::header::HeaderValue;
use secrecy::{ExposeSecret, SecretString};

pub use validate::validate_server;
use wire::{ApiVersion, Credentials};

use super::config;
use super::http::{ProviderHttp, RetryPolicy};
use super::limits::{ApiFamily, RateLimit, RateLimits};
use super::response;
use super::{
    BoxFuture, Capabilities, Observation, Observed, Operation, OperationStatus, Provider,
    ProviderError, ReinstallRequest, ServerStatus,
};
use crate::manifest::{DesiredProvider, ProviderType, SecretRef};

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
/// A guard against an API that keeps reporting more entries than it ever sends.
const MAX_PAGES: u32 = 100;

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
    /// Cloud ids whose current install was seen `INSTALLING` at least once.
    installing_seen: Mutex<HashSet<String>>,
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

    pub fn api_version(&self) -> &'static str {
        self.api_version.as_str()
    }

    /// Builds and signs one request over exactly `body`. Called again for every attempt, so
    /// each carries a fresh timestamp.
    fn build_request(&self, action: &str, body: &[u8]) -> Result<reqwest::Request, ProviderError> {
        self.build_request_at(action, body, jiff::Timestamp::now().as_second())
    }

    fn build_request_at(
        &self,
        action: &str,
        body: &[u8],
        unix_seconds: i64,
    ) -> Result<reqwest::Request, ProviderError> {
        let headers = wire::request_headers(
            &self.credentials,
            self.api_version,
            action,
            &self.signed_host,
            unix_seconds,
            body,
        );
        let mut builder = self.http.client()?.post(self.endpoint.clone());
        for (name, value) in headers {
            let mut value = HeaderValue::from_str(&value).map_err(|_| ProviderError::Config {
                provider: self.name.clone(),
                // The value is not quoted: it may be a credential.
                message: format!("the `{name}` header would hold characters HTTP does not allow"),
                help: "check the credentials for stray newlines or non-ASCII characters"
                    .to_string(),
            })?;
            if name == "authorization" {
                value.set_sensitive(true);
            }
            builder = builder.header(name, value);
        }
        builder
            .body(body.to_vec())
            .build()
            .map_err(|error| ProviderError::Config {
                provider: self.name.clone(),
                message: format!("cannot build the {action} request: {error}"),
                help: format!("check the endpoint `{}`", self.endpoint),
            })
    }

    /// Sends a read action (safe to repeat) with retries, re-signing every attempt.
    async fn read(
        &self,
        family: ApiFamily,
        action: &str,
        body: Vec<u8>,
    ) -> Result<wire::Envelope, ProviderError> {
        self.http
            .send_read_with_retry(
                family,
                || self.build_request(action, &body),
                |response| wire::parse_envelope(&self.name, action, response),
            )
            .await
    }

    /// `DescribeInstances` for any number of ids: chunks of 100, every page followed.
    async fn describe(
        &self,
        family: ApiFamily,
        ids: &[String],
    ) -> Result<BTreeMap<String, Observation>, ProviderError> {
        let unique = super::unique_ids(ids);
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

    async fn start_reinstall(
        &self,
        request: &ReinstallRequest,
    ) -> Result<Operation, ProviderError> {
        let body = wire::reinstall_body(&wire::ReinstallInput {
            cloud_id: &request.cloud_id,
            image: &request.image,
            hostname: request.hostname.as_deref(),
            user_data: request.user_data.as_deref(),
            access: &request.access,
            options: &request.options,
        })
        .map_err(|error| ProviderError::Config {
            provider: self.name.clone(),
            message: format!("server `{}`: {}", request.server, error.message),
            help: error.help,
        })?;
        // Built (and signed) before the first send, so a request that cannot be built fails
        // before anything is sent.
        let first_request = self.build_request(wire::REINSTALL_INSTANCE, &body)?;
        // A new install starts: an INSTALLING seen for an earlier one says nothing about it.
        self.seen_installing().remove(&request.cloud_id);
        // Sent once (a reinstall wipes a disk and the API takes no idempotency token); only a
        // 429, which refuses before acting, is sent again.
        let mut first_request = Some(first_request);
        let response = self
            .http
            .send_mutation(ApiFamily::Reinstall, || match first_request.take() {
                Some(request) => Ok(request),
                None => self.build_request(wire::REINSTALL_INSTANCE, &body),
            })
            .await?;
        let status = response.status;
        let envelope = wire::parse_envelope(&self.name, wire::REINSTALL_INSTANCE, response)
            .map_err(|error| {
                // A server error (a gateway timeout in particular) or an unreadable success
                // does not prove the install did not start: report it as "may have been
                // sent", so the caller checks the instance instead of calling again.
                if status.is_server_error() || status.is_success() {
                    self.ambiguous_reinstall(error, &request.cloud_id)
                } else {
                    explain_reinstall_error(error, &request.cloud_id)
                }
            })?;
        Ok(Operation {
            server: request.server.clone(),
            cloud_id: request.cloud_id.clone(),
            image: request.image.clone(),
            // ReinstallInstance returns no task id; progress is read from the instance.
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
        let observations = self.describe(ApiFamily::Status, &ids).await?;
        let now_ms = jiff::Timestamp::now().as_millisecond();
        let mut seen = self.seen_installing();
        Ok(operations
            .iter()
            .map(|operation| {
                let observation = observations.get(&operation.cloud_id);
                if let Some(Observation::Found(instance)) = observation
                    && instance.status == ServerStatus::Installing
                {
                    seen.insert(operation.cloud_id.clone());
                }
                operation_status(
                    operation,
                    observation,
                    seen.contains(&operation.cloud_id),
                    now_ms,
                    self.running_grace,
                )
            })
            .collect())
    }

    fn ambiguous_reinstall(&self, error: ProviderError, cloud_id: &str) -> ProviderError {
        response::maybe_started(
            &self.name,
            self.endpoint.as_str(),
            &error,
            &format!(
                "the reinstall of `{cloud_id}` may have started: check the instance status \
                 before trying again"
            ),
        )
    }

    fn seen_installing(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        // The set holds plain ids; a panic elsewhere cannot leave it inconsistent.
        self.installing_seen
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
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

fn observed(instance: wire::InstanceInfo) -> Observed {
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

/// Where one reinstall stands, from the instance as observed now (brief §7).
fn operation_status(
    operation: &Operation,
    observation: Option<&Observation>,
    installing_seen: bool,
    now_ms: i64,
    running_grace: Duration,
) -> OperationStatus {
    let failed = |message: String| OperationStatus::Failed {
        message,
        request_id: operation.request_id.clone(),
    };
    let instance = match observation {
        Some(Observation::Found(instance)) => instance,
        Some(Observation::NotFound) | None => {
            return failed(format!(
                "instance `{}` disappeared during the install",
                operation.cloud_id
            ));
        }
    };
    let elapsed_ms = now_ms.saturating_sub(operation.started_at_ms);
    let grace_over = i128::from(elapsed_ms) > running_grace.as_millis() as i128;
    // An image that moved from the one seen at plan time to the desired one proves the install
    // ran, even if every poll missed the INSTALLING window.
    let image_moved = operation.previous_image.as_deref().is_some_and(|previous| {
        previous != operation.image && instance.image.as_deref() == Some(operation.image.as_str())
    });
    match instance.status {
        ServerStatus::Installing => OperationStatus::InProgress {
            detail: "installing".to_string(),
        },
        ServerStatus::Running if installing_seen || grace_over || image_moved => {
            let image = instance.image.as_deref().unwrap_or("(none)");
            if image == operation.image {
                OperationStatus::Succeeded {
                    image: operation.image.clone(),
                    note: None,
                }
            } else {
                failed(format!(
                    "install ended with image {image}, expected {}",
                    operation.image
                ))
            }
        }
        ServerStatus::Running => OperationStatus::InProgress {
            detail: "RUNNING; waiting for the install to start".to_string(),
        },
        ServerStatus::InstallFailed => failed(format!(
            "the install failed (status {}); Zenlayer says a failed install needs manual action \
             by their support: open a ticket quoting the instance id `{}`{}",
            instance.raw_status,
            operation.cloud_id,
            operation
                .request_id
                .as_deref()
                .map(|id| format!(" and request id `{id}`"))
                .unwrap_or_default()
        )),
        // Brief §7 lists "instance missing → error"; one in the recycle bin is as good as
        // missing and will not finish an install.
        ServerStatus::Gone => failed(format!(
            "instance `{}` is being recycled (status {})",
            operation.cloud_id, instance.raw_status
        )),
        _ => OperationStatus::InProgress {
            detail: format!("status {}", instance.raw_status),
        },
    }
}

/// Names the one reinstall refusal that means "nothing to do but wait".
fn explain_reinstall_error(error: ProviderError, cloud_id: &str) -> ProviderError {
    match error {
        ProviderError::Api {
            provider,
            status,
            code: Some(code),
            message,
            request_id,
            retryable,
        } if code == wire::CODE_INSTALLING => ProviderError::Api {
            provider,
            status,
            message: format!(
                "an install is already in progress on `{cloud_id}` ({code}); wait for it to \
                 finish, then plan again (Zenlayer said: {message})"
            ),
            code: Some(code),
            request_id,
            retryable,
        },
        other => other,
    }
}

/// Parses and checks an endpoint URL; returns it with the `Host` value the client will send.
fn parse_endpoint(text: &str) -> Result<(Url, String), (String, &'static str)> {
    let mut url = config::check_endpoint(text, settings::URL_HELP, config::PLAIN_HTTP_HELP)?;
    // A bare domain (as in ZENLAYERCLOUD_DOMAIN) means the service's usual path.
    if url.path() == "/" || url.path().is_empty() {
        url.set_path(wire::SERVICE_PATH);
    }
    let signed_host = config::signed_host(&url);
    Ok((url, signed_host))
}

/// Credentials from the manifest, else from the usual environment variables.
fn resolve_credentials(
    provider: &str,
    references: &BTreeMap<String, SecretRef>,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<Credentials, ProviderError> {
    let resolve = |key: &str, reference: &SecretRef| {
        config::resolve_credential(provider, "Zenlayer", key, reference)
    };
    let key_id = references.get("access_key_id");
    let key_password = references.get("access_key_password");
    let token = references.get("token");
    match (key_id, key_password, token) {
        (Some(id), Some(password), None) => Ok(Credentials::AccessKey {
            id: resolve("access_key_id", id)?.expose_secret().to_string(),
            password: resolve("access_key_password", password)?,
        }),
        (None, None, Some(token)) => Ok(Credentials::Token(resolve("token", token)?)),
        (Some(_), _, Some(_)) | (_, Some(_), Some(_)) => Err(config::config_error(
            provider,
            "both an access key and a token are configured",
            "keep either `access_key_id` + `access_key_password` or `token`",
        )),
        (Some(_), None, None) | (None, Some(_), None) => Err(config::half_pair(
            provider,
            "access_key_id",
            "access_key_password",
        )),
        (None, None, None) => credentials_from_env(provider, env),
    }
}

fn credentials_from_env(
    provider: &str,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<Credentials, ProviderError> {
    for (id_var, password_var) in ENV_ACCESS_KEY_PAIRS {
        if let Some((id, password)) = config::env_pair(provider, env, id_var, password_var)? {
            return Ok(Credentials::AccessKey {
                id: id.trim().to_string(),
                password: SecretString::from(password),
            });
        }
    }
    if let Some(token) = env(ENV_TOKEN) {
        return Ok(Credentials::Token(SecretString::from(token)));
    }
    Err(ProviderError::Config {
        provider: provider.to_string(),
        message: "no Zenlayer credentials found".to_string(),
        help: format!(
            "set `credentials.access_key_id` and `credentials.access_key_password` (or \
             `credentials.token`) in the manifest, or export {} and {}, or {} and {}, or {}",
            ENV_ACCESS_KEY_PAIRS[0].0,
            ENV_ACCESS_KEY_PAIRS[0].1,
            ENV_ACCESS_KEY_PAIRS[1].0,
            ENV_ACCESS_KEY_PAIRS[1].1,
            ENV_TOKEN
        ),
    })
}

#[cfg(test)]
mod tests;
