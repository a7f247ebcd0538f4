//! The provider seam: the only code that speaks HTTP to clouds.
//!
//! A provider type knows its API and nothing about plans. The engine batches ids to
//! [`Capabilities::observe_batch`], calls [`Provider::reinstall`] once per planned server and
//! polls the returned [`Operation`]s until they end.

#[cfg(test)]
mod captured_logs;
pub(crate) mod completion;
pub mod config;
pub mod edis;
pub mod fleet;
pub mod http;
pub mod huaweicloud;
pub mod jdcloud;
pub mod limits;
pub mod registry;
pub mod response;
pub mod rules;
pub mod sign;
pub mod zenlayer;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use secrecy::SecretString;

use crate::manifest::{DesiredProvider, DesiredServer, ProviderType};

pub use crate::model::{
    FieldIssue, Observation, Observed, Operation, OperationStatus, ReinstallReview, ServerStatus,
};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a provider type can do and which rules its inputs follow.
#[derive(Debug, Clone)]
pub struct Capabilities {
    /// Most ids one read call accepts.
    pub observe_batch: usize,
    /// False where the API cannot report the installed OS (EDIS).
    pub reports_image: bool,
    /// Default interval between status polls.
    pub poll_interval: Duration,
    /// Default limit for one install.
    pub install_timeout: Duration,
    /// How long one install usually takes (the plan's estimate of the rollout).
    pub install_estimate: Duration,
    /// Most servers one reinstall call accepts (1 where the API takes one id per call).
    pub reinstall_batch: usize,
    /// How long after a mutating call an install (or stop) may take to show at the provider.
    /// Until then, "no sign of it" proves nothing; after it, an unchanged server proves the
    /// call did not act.
    pub start_grace: Duration,
    /// Give up waiting for a requested stop after this long.
    pub stop_timeout: Duration,
    /// Whether the API accepts a reinstall of a server whose last install failed (an operator's
    /// explicit `--replace`); elsewhere such a server stays blocked.
    pub reinstalls_failed_install: bool,
}

/// Defaults shared by the provider types that document nothing better.
pub const DEFAULT_START_GRACE: Duration = Duration::from_secs(120);
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(600);

/// Access resolved for one provider call. The password never leaves this struct except into
/// the request body.
#[derive(Debug, Clone)]
pub enum ResolvedAccess {
    None,
    SshKeyId(String),
    Password(SecretString),
}

/// Everything one reinstall call needs.
#[derive(Debug, Clone)]
pub struct ReinstallRequest {
    pub server: String,
    pub cloud_id: String,
    pub image: String,
    pub hostname: Option<String>,
    pub user_data: Option<String>,
    pub access: ResolvedAccess,
    pub options: serde_json::Map<String, serde_json::Value>,
    /// Deterministic per (plan, server, step): an idempotency token where the API takes one.
    pub token: String,
    /// The image observed at plan time, when the provider reports one.
    pub previous_image: Option<String>,
}

/// A provider error, with the provider's code and request id where it gave them.
#[derive(Debug, Clone, thiserror::Error, miette::Diagnostic)]
pub enum ProviderError {
    #[error("{provider}: {message}{}", request_id_suffix(.request_id))]
    Api {
        provider: String,
        /// HTTP status, when the error came from a response.
        status: Option<u16>,
        code: Option<String>,
        message: String,
        request_id: Option<String>,
        /// Whether repeating the same read could succeed (429, 5xx, connection errors).
        retryable: bool,
    },
    #[error("{provider}: cannot reach {url}: {message}")]
    Transport {
        provider: String,
        url: String,
        message: String,
        /// True when the request may have reached the server (a timeout after sending).
        maybe_sent: bool,
        /// False when trying again cannot help: the server's certificate was refused, or its
        /// name does not exist.
        retryable: bool,
    },
    #[error("{provider}: {message}")]
    #[diagnostic(help("{help}"))]
    Config {
        provider: String,
        message: String,
        help: String,
    },
}

fn request_id_suffix(request_id: &Option<String>) -> String {
    match request_id {
        Some(id) => format!(" (request id {id})"),
        None => String::new(),
    }
}

/// What a failed mutating call (stop, reinstall, change OS) tells about the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallFate {
    /// No byte left this machine (connection refused, the request could not be built): sending
    /// it again is harmless.
    NotSent,
    /// The provider throttled it (429): refused before acting; it may be sent again later.
    Throttled,
    /// The provider refused it before acting (a documented 4xx business error, or a check
    /// reimage made before sending): nothing happened, and the same call would be refused again.
    Refused,
    /// It may have acted (timeout or connection lost after sending, 5xx, an unreadable success):
    /// to be resolved with the provider, never guessed.
    Ambiguous,
}

impl ProviderError {
    /// The fate of a mutating call that ended in this error.
    pub fn call_fate(&self) -> CallFate {
        match self {
            Self::Transport { maybe_sent, .. } => {
                if *maybe_sent {
                    CallFate::Ambiguous
                } else {
                    CallFate::NotSent
                }
            }
            Self::Api {
                status: Some(429), ..
            } => CallFate::Throttled,
            // A 5xx (a gateway timeout in particular) or a success that could not be read.
            Self::Api {
                status: Some(status),
                ..
            } if *status >= 500 || (200..300).contains(status) => CallFate::Ambiguous,
            // Other 4xx, and checks made before sending (no status).
            Self::Api { .. } => CallFate::Refused,
            Self::Config { .. } => CallFate::Refused,
        }
    }

    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Api { retryable, .. } => *retryable,
            Self::Transport { retryable, .. } => *retryable,
            Self::Config { .. } => false,
        }
    }
}

/// One configured provider (an account/region of one provider type).
pub trait Provider: Send + Sync {
    fn name(&self) -> &str;
    fn provider_type(&self) -> ProviderType;
    fn capabilities(&self) -> &Capabilities;

    /// Reads the given ids (at most `observe_batch`). Every id gets an entry in the result.
    fn observe<'a>(
        &'a self,
        ids: &'a [String],
    ) -> BoxFuture<'a, Result<BTreeMap<String, Observation>, ProviderError>>;

    /// Starts one reinstall. Never retried by the caller without checking status first.
    fn reinstall<'a>(
        &'a self,
        request: &'a ReinstallRequest,
    ) -> BoxFuture<'a, Result<Operation, ProviderError>>;

    /// Starts several reinstalls (at most `reinstall_batch`) in as few calls as the API allows.
    /// One result per request, in order. The default sends them one by one.
    fn reinstall_batch<'a>(
        &'a self,
        requests: &'a [ReinstallRequest],
    ) -> BoxFuture<'a, Vec<Result<Operation, ProviderError>>> {
        Box::pin(async move {
            let mut results = Vec::with_capacity(requests.len());
            for request in requests {
                results.push(self.reinstall(request).await);
            }
            results
        })
    }

    /// Checks desired inputs that need the provider's catalogue (e.g. that an image or OS name
    /// exists) before anything is planned, given each server as just observed (nothing is read
    /// twice). Returns problems per server name; the default finds none. Called once per plan
    /// with every server of this provider.
    fn check_desired<'a>(
        &'a self,
        _servers: &'a [(&'a DesiredServer, &'a Observation)],
    ) -> BoxFuture<'a, Result<Vec<(String, FieldIssue)>, ProviderError>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    /// Judges a reinstall the diff wants (stop first, blocked, extra wipes, notes).
    /// Pure: it may only look at its arguments.
    fn review_reinstall(&self, _desired: &DesiredServer, _observed: &Observed) -> ReinstallReview {
        ReinstallReview::default()
    }

    /// The health gate this provider offers for a server whose manifest gives none (EDIS's
    /// `ssh_probe`): run by the engine after the install like any manifest gate.
    fn health_gate(&self, _server: &DesiredServer) -> Option<crate::manifest::health::HealthGate> {
        None
    }

    /// True where the API takes an idempotency token built from [`ReinstallRequest::token`]:
    /// resending the very same request can then never install twice, so a lost response may be
    /// answered by asking again instead of waiting for signs of the install.
    fn resends_safely(&self) -> bool {
        false
    }

    /// How long after a reinstall call whose response was lost an install may still take to
    /// show at the provider. Until then, "no sign of an install" proves nothing.
    fn start_grace(&self) -> Duration {
        self.capabilities().start_grace
    }

    /// Requests with the same key may share one batch call (CloudDC: one image and one password
    /// per call). The engine groups by it before cutting batches of `reinstall_batch`. The key
    /// lives only in memory.
    fn batch_key(&self, _request: &ReinstallRequest) -> String {
        String::new()
    }

    /// Asks the provider to stop a server before a reinstall (`stop-and-reinstall`). `token`
    /// is deterministic per (plan, server, step) for APIs with idempotency tokens. The engine
    /// then observes until the server reads `Stopped`.
    fn stop<'a>(
        &'a self,
        cloud_id: &'a str,
        _token: &'a str,
    ) -> BoxFuture<'a, Result<(), ProviderError>> {
        Box::pin(async move {
            Err(ProviderError::Config {
                provider: self.name().to_string(),
                message: format!(
                    "cannot stop `{cloud_id}`: {} has no stop call",
                    self.provider_type()
                ),
                help: "stop the server by hand, then plan again".to_string(),
            })
        })
    }

    /// Announces this provider's waits (rate limits, throttling) to `waits` from now on: the
    /// run that builds the provider hands in the sink its progress display listens to.
    fn report_waits_to(&self, waits: &limits::WaitSink);

    /// The rate limits this provider runs with, per API family (the plan's pace is worked out
    /// from them).
    fn rate_limits(&self) -> BTreeMap<limits::ApiFamily, limits::RateLimit> {
        BTreeMap::new()
    }

    /// Reports where each operation stands (batched where the API allows).
    fn poll<'a>(
        &'a self,
        operations: &'a [Operation],
    ) -> BoxFuture<'a, Result<Vec<OperationStatus>, ProviderError>>;
}

/// `ids` without repeats, in their first order (a set, so a long list costs no more than a short
/// one).
pub fn unique_ids(ids: &[String]) -> Vec<String> {
    let mut seen = std::collections::HashSet::with_capacity(ids.len());
    ids.iter()
        .filter(|id| seen.insert(id.as_str()))
        .cloned()
        .collect()
}

/// Checks one server's inputs against its provider type's documented rules (no network).
/// `password` is the resolved password when it could be read, so policy can be checked.
pub fn validate_server(server: &DesiredServer, password: Option<&SecretString>) -> Vec<FieldIssue> {
    use crate::manifest::ProviderRules;
    registry::RULES.check_server(server, password)
}

/// Checks a provider's manifest entry against its type's rules, without network or
/// environment: credential keys and pairs, options and their values, the endpoint's scheme.
/// Pointers are relative to the entry (e.g. `/credentials/acess_key`). Construction refuses
/// the same issues, so `validate` and `plan` cannot disagree.
pub fn check_config(config: &crate::manifest::model::ProviderConfig) -> Vec<FieldIssue> {
    use crate::manifest::ProviderRules;
    registry::RULES.check_config(config)
}

/// Builds a live provider from its configuration. `endpoint_override` replaces the configured
/// endpoint (used for the embedded emulator). Dispatched by the [`registry`]; its waits are
/// announced nowhere (see [`registry::build`] for a provider whose waits are shown).
pub fn build(
    config: &DesiredProvider,
    endpoint_override: Option<&str>,
) -> Result<Box<dyn Provider>, ProviderError> {
    registry::build(config, endpoint_override, &limits::WaitSink::none())
}
