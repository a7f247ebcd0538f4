//! Shared HTTP plumbing for providers: one client with timeouts, a retrying sender for reads and
//! a single-shot sender for mutating calls.
//!
//! Retries live here rather than in middleware because every provider signs its requests with a
//! timestamp: a retry must be built and signed afresh, which only the provider can do. The
//! provider hands [`ProviderHttp::send_read_with_retry`] a closure that builds and signs one
//! attempt, and a closure that classifies a response into a value or a [`ProviderError`]; errors
//! that say [`ProviderError::is_retryable`] are retried.

use std::time::{Duration, Instant};

use reqwest::header::{AUTHORIZATION, HeaderMap, RETRY_AFTER};
use reqwest::{Request, StatusCode};

use super::ProviderError;
use super::limits::{ApiFamily, RateLimits, WaitCause, WaitNotice};

/// Longest wait for a TCP/TLS connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest time for one request, from connecting to the end of the response body.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// The `User-Agent` every provider call carries.
pub fn user_agent() -> String {
    format!("reimage/{}", env!("CARGO_PKG_VERSION"))
}

/// When and how often a read is retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The backoff ceiling of the first retry; it doubles for each further retry.
    pub base_delay: Duration,
    /// The backoff ceiling never grows past this.
    pub max_delay: Duration,
    /// Attempts in total, the first one included.
    pub max_attempts: u32,
    /// A server's `Retry-After` is obeyed up to this long; a longer one is clamped so a
    /// misbehaving server cannot stall a run for hours.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(20),
            // Reads are idempotent, and a read that fails for good fails the whole plan: under
            // heavy transient errors (30% per call) eight tries leave a one-in-15,000 chance.
            max_attempts: 8,
            max_retry_after: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// The largest backoff before retry number `retry` (1 for the first retry):
    /// `min(max_delay, base_delay * 2^(retry-1))`.
    pub fn backoff_ceiling(&self, retry: u32) -> Duration {
        let doublings = retry.saturating_sub(1).min(31);
        self.base_delay
            .saturating_mul(1u32 << doublings)
            .min(self.max_delay)
    }

    /// "Full jitter": a uniformly random wait between zero and the ceiling, so that many
    /// clients throttled at once do not come back in lockstep.
    pub fn backoff(&self, retry: u32) -> Duration {
        self.backoff_ceiling(retry).mul_f64(random_fraction())
    }

    /// The wait before retry number `retry`, given the server's `Retry-After`, if any.
    pub fn delay_before(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        match retry_after {
            Some(wait) => wait.min(self.max_retry_after),
            None => self.backoff(retry),
        }
    }
}

/// A uniformly distributed number in `[0, 1)`. The random bits of a v4 UUID are enough for
/// jitter, which needs spread rather than cryptographic quality.
fn random_fraction() -> f64 {
    let bytes = uuid::Uuid::new_v4().into_bytes();
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[8..16]);
    // 53 bits fill an f64 mantissa exactly.
    (u64::from_le_bytes(word) >> 11) as f64 / (1u64 << 53) as f64
}

/// A response read to its end, ready to classify.
#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl RawResponse {
    /// `Retry-After` in its delta-seconds form. The HTTP-date form is ignored: no provider API
    /// we talk to is known to send it.
    pub fn retry_after(&self) -> Option<Duration> {
        let value = self.headers.get(RETRY_AFTER)?.to_str().ok()?;
        value.trim().parse::<u64>().ok().map(Duration::from_secs)
    }

    /// The body as text for error messages, cut to its first `limit` characters.
    pub fn body_excerpt(&self, limit: usize) -> String {
        let text = String::from_utf8_lossy(&self.body);
        let mut excerpt: String =
            crate::output::escape_control(&text.chars().take(limit).collect::<String>())
                .into_owned();
        if text.chars().nth(limit).is_some() {
            excerpt.push('…');
        }
        excerpt
    }
}

/// The HTTP client of one configured provider.
#[derive(Debug, Clone)]
pub struct ProviderHttp {
    provider: String,
    /// Built on first use: setting up TLS (loading root certificates) is the costly part of
    /// a provider, and `validate` builds providers only to check their configuration.
    client: std::sync::Arc<std::sync::OnceLock<Result<reqwest::Client, String>>>,
    /// Longest time for one request (`request_timeout` in the manifest).
    request_timeout: Duration,
    retry: RetryPolicy,
    limits: std::sync::Arc<RateLimits>,
}

impl ProviderHttp {
    /// A client with reimage's timeouts and user agent, for the provider named `provider`
    /// (the name is used in errors and logs).
    pub fn new(provider: &str, retry: RetryPolicy) -> Result<Self, ProviderError> {
        Ok(Self {
            provider: provider.to_string(),
            client: std::sync::Arc::new(std::sync::OnceLock::new()),
            request_timeout: REQUEST_TIMEOUT,
            retry,
            limits: std::sync::Arc::new(RateLimits::unlimited(provider)),
        })
    }

    /// Bounds each request to `timeout`, from connecting to the end of the answer.
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Applies rate limits per API family (see [`RateLimits::new`]).
    pub fn with_limits(mut self, limits: RateLimits) -> Self {
        self.limits = std::sync::Arc::new(limits);
        self
    }

    /// Announces this client's waits to `waits` from now on.
    pub fn report_waits_to(&self, waits: &super::limits::WaitSink) {
        self.limits.report_waits_to(waits);
    }

    /// The rate limit of each limited API family.
    pub fn limits(&self) -> std::collections::BTreeMap<ApiFamily, super::limits::RateLimit> {
        self.limits.limits()
    }

    /// The HTTP client, set up on first use.
    pub fn client(&self) -> Result<&reqwest::Client, ProviderError> {
        let built = self.client.get_or_init(|| {
            reqwest::Client::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .timeout(REQUEST_TIMEOUT)
                .user_agent(user_agent())
                .build()
                .map_err(|error| error_chain(&error))
        });
        built.as_ref().map_err(|message| ProviderError::Config {
            provider: self.provider.clone(),
            message: format!("cannot set up the HTTP client: {message}"),
            help: "this is a problem with the local TLS setup, not with the manifest".to_string(),
        })
    }

    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.retry
    }

    pub fn set_retry_policy(&mut self, retry: RetryPolicy) {
        self.retry = retry;
    }

    /// Sends one request exactly once, for calls that change something (a reinstall wipes a
    /// disk, so it is never repeated blindly). On failure, [`ProviderError::Transport`] says
    /// whether the request may have reached the server: only a failed connection proves it did
    /// not.
    pub async fn send_once(
        &self,
        family: ApiFamily,
        request: Request,
    ) -> Result<RawResponse, ProviderError> {
        let permit = self.limits.acquire(family).await;
        self.send_permitted(permit, request).await
    }

    /// Waits for the rate limiter's grant for one call of `family`. For requests whose
    /// credentials can expire while queued (EDIS tickets): take the grant first, then build
    /// the request, then [`Self::send_permitted`].
    pub async fn acquire(&self, family: ApiFamily) -> super::limits::CallPermit {
        self.limits.acquire(family).await
    }

    /// Sends one request under a grant already held, exactly once. A 429 slows the family
    /// down (the caller decides whether to send again).
    pub async fn send_permitted(
        &self,
        permit: super::limits::CallPermit,
        request: Request,
    ) -> Result<RawResponse, ProviderError> {
        let family = permit.family();
        tracing::debug!(
            provider = %self.provider,
            family = family.as_str(),
            request = %describe_request(&request),
            "sending (no retry)"
        );
        let response = self.execute(request).await;
        drop(permit);
        if let Ok(response) = &response
            && response.status == StatusCode::TOO_MANY_REQUESTS
        {
            let pause = response
                .retry_after()
                .map_or(self.retry.base_delay, |wait| {
                    wait.min(self.retry.max_retry_after)
                });
            self.limits.throttled(family, pause);
        }
        response
    }

    /// Sends a call that changes something. It is resent only when the provider answered 429
    /// (throttled: refused before acting, so nothing happened), each time built and signed
    /// afresh after the rate limiter granted the call (a signature or ticket made before a long
    /// queue could expire in it); any other answer or failure is returned as is, and a
    /// transport failure says whether the request may have reached the server.
    pub async fn send_mutation<Build>(
        &self,
        family: ApiFamily,
        mut build: Build,
    ) -> Result<RawResponse, ProviderError>
    where
        Build: FnMut() -> Result<Request, ProviderError>,
    {
        let max_attempts = self.retry.max_attempts.max(1);
        let mut attempt = 1;
        loop {
            let permit = self.limits.acquire(family).await;
            let response = self.send_permitted(permit, build()?).await?;
            if response.status != StatusCode::TOO_MANY_REQUESTS || attempt >= max_attempts {
                return Ok(response);
            }
            // `send_permitted` slowed the family down already; this call waits its turn again.
            let retry_after = response.retry_after();
            let delay = self.retry.delay_before(attempt, retry_after);
            tracing::warn!(
                provider = %self.provider,
                attempt,
                retry_in_ms = delay.as_millis() as u64,
                "throttled (429) before acting; sending again"
            );
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    /// Sends a read, retrying throttling (429), server errors (5xx) and transport failures with
    /// capped exponential backoff and full jitter, obeying `Retry-After`.
    ///
    /// `build` is called before every attempt and must build and sign the request afresh:
    /// signatures embed timestamps, so a replayed request could be refused. `classify` turns a
    /// response into the result; when it returns a retryable error the read is tried again,
    /// until [`RetryPolicy::max_attempts`] is reached and the last error is returned.
    pub async fn send_read_with_retry<T, Build, Classify>(
        &self,
        family: ApiFamily,
        mut build: Build,
        mut classify: Classify,
    ) -> Result<T, ProviderError>
    where
        Build: FnMut() -> Result<Request, ProviderError>,
        Classify: FnMut(RawResponse) -> Result<T, ProviderError>,
    {
        let max_attempts = self.retry.max_attempts.max(1);
        let mut attempt = 1;
        loop {
            let permit = self.limits.acquire(family).await;
            let request = build()?;
            let description = describe_request(&request);
            tracing::debug!(
                provider = %self.provider,
                family = family.as_str(),
                attempt,
                request = %description,
                "sending"
            );
            let started = Instant::now();
            let (error, retry_after) = match self.execute(request).await {
                Ok(response) => {
                    let retry_after = response.retry_after();
                    match classify(response) {
                        Ok(value) => return Ok(value),
                        Err(error) => (error, retry_after),
                    }
                }
                Err(error) => (error, None),
            };
            drop(permit);
            if !error.is_retryable() || is_refused_credentials(&error) || attempt >= max_attempts {
                return Err(error);
            }
            let delay = self.retry.delay_before(attempt, retry_after);
            let throttled = matches!(
                &error,
                ProviderError::Api {
                    status: Some(429),
                    ..
                }
            ) || retry_after.is_some();
            if throttled {
                // Every call of the family waits and slows down, not only this one.
                self.limits.throttled(family, delay);
            } else {
                self.limits.announce(WaitNotice {
                    provider: self.provider.clone(),
                    family,
                    cause: WaitCause::Retrying,
                    wait: delay,
                    slowed_to_per_minute: None,
                });
            }
            tracing::warn!(
                provider = %self.provider,
                request = %description,
                attempt,
                max_attempts,
                elapsed_ms = started.elapsed().as_millis() as u64,
                retry_in_ms = delay.as_millis() as u64,
                retry_after_s = retry_after.map(|wait| wait.as_secs()),
                error = %error,
                "read failed, retrying"
            );
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    async fn execute(&self, mut request: Request) -> Result<RawResponse, ProviderError> {
        let url = redacted_url(request.url());
        request.timeout_mut().get_or_insert(self.request_timeout);
        let response = self
            .client()?
            .execute(request)
            .await
            .map_err(|error| self.transport_error(&url, &error))?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .bytes()
            .await
            .map_err(|error| self.transport_error(&url, &error))?;
        Ok(RawResponse {
            status,
            headers,
            body: body.to_vec(),
        })
    }

    fn transport_error(&self, url: &str, error: &reqwest::Error) -> ProviderError {
        let chain = error_chain(error);
        let permanent = permanent_failure(&chain);
        let message = match (error.is_timeout(), permanent) {
            (true, _) => format!("timed out: {chain}"),
            (false, Some(what)) => format!("{chain} ({what}; not retried)"),
            (false, None) => chain,
        };
        ProviderError::Transport {
            provider: self.provider.clone(),
            url: url.to_string(),
            message,
            // A connect error (refused, DNS, TLS handshake, connect timeout) means no byte of
            // the request left this machine; anything later may have reached the server.
            maybe_sent: !error.is_connect(),
            retryable: permanent.is_none(),
        }
    }
}

/// 401 and 403 say the credentials were refused: asking again with the same ones cannot help,
/// whatever a provider's classifier thought.
fn is_refused_credentials(error: &ProviderError) -> bool {
    matches!(
        error,
        ProviderError::Api {
            status: Some(401 | 403),
            ..
        }
    )
}

/// Whether a transport failure, read from its error chain, cannot go away by trying again, and
/// what it is: the server's TLS certificate was refused, or its host name does not exist. A
/// temporary DNS failure ("try again") stays retryable.
fn permanent_failure(chain: &str) -> Option<&'static str> {
    let lower = chain.to_ascii_lowercase();
    // rustls: "invalid peer certificate: UnknownIssuer / Expired / NotValidForName …".
    if lower.contains("invalid peer certificate") || lower.contains("certificate verify failed") {
        return Some("the server's TLS certificate is not trusted");
    }
    let name_unknown = [
        "name or service not known",
        "no address associated with hostname",
        "nodename nor servname provided",
        "name does not resolve",
        "no such host is known",
    ];
    if lower.contains("dns error") && name_unknown.iter().any(|words| lower.contains(words)) {
        return Some("the host name does not exist");
    }
    None
}

/// An error with its causes, `outer: inner: innermost`, so "connection refused" is not hidden
/// behind reqwest's generic "error sending request".
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The URL without user info or query, which could carry credentials in some APIs.
fn redacted_url(url: &reqwest::Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    if shown.query().is_some() {
        shown.set_query(Some("…"));
    }
    shown.to_string()
}

/// A one-line description of a request for logs: method, URL and headers, with the
/// `Authorization` value (and any header whose name suggests a secret) replaced. Bodies are
/// never logged: they can hold passwords.
pub fn describe_request(request: &Request) -> String {
    let mut text = format!("{} {}", request.method(), redacted_url(request.url()));
    for (name, value) in request.headers() {
        let lower = name.as_str();
        let shown = if name == AUTHORIZATION
            || lower.contains("token")
            || lower.contains("secret")
            || lower.contains("password")
            || lower.contains("signature")
        {
            "<redacted>"
        } else {
            value.to_str().unwrap_or("<binary>")
        };
        text.push_str(&format!(" {lower}={shown}"));
    }
    text
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use axum::Router;
    use axum::http::StatusCode as AxumStatus;
    use axum::response::IntoResponse;
    use axum::routing::post;

    use super::*;

    fn fast_policy(max_attempts: u32) -> RetryPolicy {
        RetryPolicy {
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
            max_attempts,
            max_retry_after: Duration::from_secs(5),
        }
    }

    /// Serves `answer(n)` for the n-th request (1-based) on 127.0.0.1:0.
    async fn serve<F>(answer: F) -> (SocketAddr, Arc<AtomicU32>)
    where
        F: Fn(u32) -> axum::response::Response + Clone + Send + Sync + 'static,
    {
        let hits = Arc::new(AtomicU32::new(0));
        let counter = hits.clone();
        let app = Router::new().route(
            "/",
            post(move || {
                let answer = answer.clone();
                let counter = counter.clone();
                async move { answer(counter.fetch_add(1, Ordering::SeqCst) + 1) }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (address, hits)
    }

    /// Classifies like a provider would: 2xx is success, 429/5xx retryable.
    fn classify(response: RawResponse) -> Result<String, ProviderError> {
        if response.status.is_success() {
            return Ok(String::from_utf8_lossy(&response.body).into_owned());
        }
        Err(ProviderError::Api {
            provider: "test".into(),
            status: Some(response.status.as_u16()),
            code: None,
            message: response.body_excerpt(200),
            request_id: None,
            retryable: response.status == StatusCode::TOO_MANY_REQUESTS
                || response.status.is_server_error(),
        })
    }

    #[test]
    fn backoff_ceiling_doubles_up_to_the_cap() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.backoff_ceiling(1), Duration::from_secs(1));
        assert_eq!(policy.backoff_ceiling(2), Duration::from_secs(2));
        assert_eq!(policy.backoff_ceiling(4), Duration::from_secs(8));
        assert_eq!(policy.backoff_ceiling(5), Duration::from_secs(16));
        assert_eq!(policy.backoff_ceiling(6), Duration::from_secs(20));
        assert_eq!(policy.backoff_ceiling(400), Duration::from_secs(20));
        for retry in 1..10 {
            for _ in 0..50 {
                assert!(policy.backoff(retry) <= policy.backoff_ceiling(retry));
            }
        }
    }

    #[test]
    fn jitter_spreads_over_the_interval() {
        let samples: Vec<f64> = (0..200).map(|_| random_fraction()).collect();
        assert!(samples.iter().all(|value| (0.0..1.0).contains(value)));
        assert!(samples.iter().any(|value| *value < 0.25));
        assert!(samples.iter().any(|value| *value > 0.75));
    }

    #[test]
    fn retry_after_is_obeyed_but_clamped() {
        let policy = fast_policy(3);
        assert_eq!(
            policy.delay_before(1, Some(Duration::from_secs(2))),
            Duration::from_secs(2)
        );
        assert_eq!(
            policy.delay_before(1, Some(Duration::from_secs(3600))),
            Duration::from_secs(5)
        );
        assert!(policy.delay_before(1, None) <= Duration::from_millis(1));
    }

    #[test]
    fn user_agent_names_the_tool_and_version() {
        assert_eq!(
            user_agent(),
            format!("reimage/{}", env!("CARGO_PKG_VERSION"))
        );
    }

    #[test]
    fn request_descriptions_redact_authorization() {
        let http = ProviderHttp::new("test", RetryPolicy::default()).unwrap();
        let request = http
            .client()
            .unwrap()
            .post("https://user:pw@example.com/api?key=abc")
            .header(
                "Authorization",
                "ZC2-HMAC-SHA256 Credential=id, Signature=deadbeef",
            )
            .header("X-ZC-Action", "DescribeInstances")
            .body("{\"password\":\"Hunter2!\"}")
            .build()
            .unwrap();
        let text = describe_request(&request);
        assert!(text.contains("x-zc-action=DescribeInstances"), "{text}");
        assert!(text.contains("authorization=<redacted>"), "{text}");
        for secret in ["deadbeef", "Hunter2", "pw@", "key=abc"] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
    }

    #[test]
    fn certificate_and_unknown_host_failures_are_permanent() {
        let permanent = [
            "error sending request for url (https://127.0.0.1:1/): client error (Connect): \
             invalid peer certificate: UnknownIssuer",
            "client error (Connect): invalid peer certificate: Expired",
            "client error (Connect): dns error: failed to lookup address information: Name or \
             service not known",
            "dns error: failed to lookup address information: No address associated with hostname",
        ];
        for chain in permanent {
            assert!(permanent_failure(chain).is_some(), "{chain}");
        }
        let transient = [
            "client error (Connect): tcp connect error: Connection refused (os error 111)",
            "dns error: failed to lookup address information: Temporary failure in name resolution",
            "operation timed out",
            "connection closed before message completed",
        ];
        for chain in transient {
            assert_eq!(permanent_failure(chain), None, "{chain}");
        }
    }

    /// A real TLS handshake with a certificate no root vouches for: refused once, not five
    /// times with backoff.
    #[tokio::test]
    async fn an_untrusted_certificate_is_not_retried() {
        use tokio_rustls::rustls::ServerConfig;
        use tokio_rustls::rustls::pki_types::pem::PemObject;
        use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

        let certificate = CertificateDer::from_pem_slice(include_bytes!(
            "../../tests/fixtures/untrusted-tls.crt"
        ))
        .unwrap();
        let key =
            PrivateKeyDer::from_pem_slice(include_bytes!("../../tests/fixtures/untrusted-tls.key"))
                .unwrap();
        let config = ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![certificate], key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let handshakes = Arc::new(AtomicU32::new(0));
        let counter = handshakes.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                let _ = acceptor.accept(stream).await;
            }
        });
        let http = ProviderHttp::new("test", fast_policy(5)).unwrap();
        let error = http
            .send_read_with_retry(
                ApiFamily::Read,
                || {
                    http.client()?
                        .post(format!("https://{address}/"))
                        .build()
                        .map_err(|error| ProviderError::Config {
                            provider: "test".into(),
                            message: error.to_string(),
                            help: String::new(),
                        })
                },
                classify,
            )
            .await
            .unwrap_err();
        assert!(!error.is_retryable(), "{error:?}");
        assert!(
            matches!(
                &error,
                ProviderError::Transport {
                    maybe_sent: false,
                    ..
                }
            ),
            "{error:?}"
        );
        assert!(error.to_string().contains("certificate"), "{error}");
        assert_eq!(handshakes.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn throttled_read_is_retried_after_retry_after_and_resigned() {
        let (address, hits) = serve(|n| {
            if n == 1 {
                (
                    AxumStatus::TOO_MANY_REQUESTS,
                    [("retry-after", "1")],
                    "slow down",
                )
                    .into_response()
            } else {
                (AxumStatus::OK, "done").into_response()
            }
        })
        .await;
        let http = ProviderHttp::new("test", fast_policy(5)).unwrap();
        let builds = AtomicU32::new(0);
        let started = Instant::now();
        let body = http
            .send_read_with_retry(
                ApiFamily::Read,
                || {
                    let n = builds.fetch_add(1, Ordering::SeqCst);
                    // A different "signature" per attempt proves each attempt is built anew.
                    http.client()
                        .unwrap()
                        .post(format!("http://{address}/"))
                        .header("x-attempt", n.to_string())
                        .build()
                        .map_err(|error| ProviderError::Config {
                            provider: "test".into(),
                            message: error.to_string(),
                            help: String::new(),
                        })
                },
                classify,
            )
            .await
            .unwrap();
        assert_eq!(body, "done");
        assert_eq!(hits.load(Ordering::SeqCst), 2);
        assert_eq!(builds.load(Ordering::SeqCst), 2);
        // The 1 ms backoff would have been far shorter: the server's Retry-After won.
        assert!(started.elapsed() >= Duration::from_secs(1));
    }

    #[tokio::test]
    async fn server_errors_are_retried_until_the_attempts_run_out() {
        let (address, hits) =
            serve(|_| (AxumStatus::SERVICE_UNAVAILABLE, "down").into_response()).await;
        let http = ProviderHttp::new("test", fast_policy(3)).unwrap();
        let error = http
            .send_read_with_retry(
                ApiFamily::Read,
                || {
                    Ok(http
                        .client()
                        .unwrap()
                        .post(format!("http://{address}/"))
                        .build()
                        .unwrap())
                },
                classify,
            )
            .await
            .unwrap_err();
        assert_eq!(hits.load(Ordering::SeqCst), 3);
        assert!(matches!(
            error,
            ProviderError::Api {
                status: Some(503),
                ..
            }
        ));
    }

    #[tokio::test]
    async fn client_errors_are_not_retried() {
        let (address, hits) = serve(|_| (AxumStatus::BAD_REQUEST, "bad").into_response()).await;
        let http = ProviderHttp::new("test", fast_policy(5)).unwrap();
        let result = http
            .send_read_with_retry(
                ApiFamily::Read,
                || {
                    Ok(http
                        .client()
                        .unwrap()
                        .post(format!("http://{address}/"))
                        .build()
                        .unwrap())
                },
                classify,
            )
            .await;
        assert!(result.is_err());
        assert_eq!(hits.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn refused_credentials_are_not_retried_even_when_classified_retryable() {
        for status in [AxumStatus::UNAUTHORIZED, AxumStatus::FORBIDDEN] {
            let (address, hits) = serve(move |_| (status, "denied").into_response()).await;
            let http = ProviderHttp::new("test", fast_policy(5)).unwrap();
            let error = http
                .send_read_with_retry(
                    ApiFamily::Read,
                    || {
                        Ok(http
                            .client()
                            .unwrap()
                            .post(format!("http://{address}/"))
                            .build()
                            .unwrap())
                    },
                    |response| -> Result<String, ProviderError> {
                        Err(ProviderError::Api {
                            provider: "test".into(),
                            status: Some(response.status.as_u16()),
                            code: None,
                            message: "denied".into(),
                            request_id: None,
                            retryable: true,
                        })
                    },
                )
                .await
                .unwrap_err();
            assert!(error.to_string().contains("denied"));
            assert_eq!(hits.load(Ordering::SeqCst), 1, "{status}");
        }
    }

    /// A port that was just free: connecting to it is refused.
    async fn closed_port() -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        drop(listener);
        address
    }

    #[tokio::test]
    async fn connection_errors_are_retried_for_reads() {
        let address = closed_port().await;
        let http = ProviderHttp::new("test", fast_policy(3)).unwrap();
        let builds = AtomicU32::new(0);
        let error = http
            .send_read_with_retry(
                ApiFamily::Read,
                || {
                    builds.fetch_add(1, Ordering::SeqCst);
                    Ok(http
                        .client()
                        .unwrap()
                        .post(format!("http://{address}/"))
                        .build()
                        .unwrap())
                },
                classify,
            )
            .await
            .unwrap_err();
        assert_eq!(builds.load(Ordering::SeqCst), 3);
        assert!(matches!(
            error,
            ProviderError::Transport {
                maybe_sent: false,
                ..
            }
        ));
    }

    #[tokio::test]
    async fn send_once_never_retries_and_reports_connect_errors_as_not_sent() {
        let address = closed_port().await;
        let http = ProviderHttp::new("test", fast_policy(5)).unwrap();
        let request = http
            .client()
            .unwrap()
            .post(format!("http://{address}/"))
            .build()
            .unwrap();
        match http.send_once(ApiFamily::Reinstall, request).await {
            Err(ProviderError::Transport {
                maybe_sent,
                message,
                ..
            }) => {
                assert!(!maybe_sent);
                assert!(!message.is_empty());
            }
            other => panic!("expected a transport error, got {other:?}"),
        }

        let (address, hits) =
            serve(|_| (AxumStatus::SERVICE_UNAVAILABLE, "down").into_response()).await;
        let request = http
            .client()
            .unwrap()
            .post(format!("http://{address}/"))
            .build()
            .unwrap();
        let response = http.send_once(ApiFamily::Reinstall, request).await.unwrap();
        assert_eq!(response.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(hits.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_request_that_times_out_may_have_been_sent() {
        let app = Router::new().route(
            "/",
            post(|| async {
                tokio::time::sleep(Duration::from_millis(500)).await;
                "late"
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let http = ProviderHttp::new("test", fast_policy(1)).unwrap();
        let request = http
            .client()
            .unwrap()
            .post(format!("http://{address}/"))
            .timeout(Duration::from_millis(50))
            .build()
            .unwrap();
        match http.send_once(ApiFamily::Reinstall, request).await {
            Err(ProviderError::Transport {
                maybe_sent,
                message,
                ..
            }) => {
                assert!(maybe_sent);
                assert!(message.contains("timed out"), "{message}");
            }
            other => panic!("expected a transport error, got {other:?}"),
        }
    }

    #[test]
    fn body_excerpt_is_cut_by_characters() {
        let response = RawResponse {
            status: StatusCode::BAD_GATEWAY,
            headers: HeaderMap::new(),
            body: "é".repeat(300).into_bytes(),
        };
        let excerpt = response.body_excerpt(200);
        assert_eq!(excerpt.chars().count(), 201);
        assert!(excerpt.ends_with('…'));
    }
}
