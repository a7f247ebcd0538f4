//! Huawei Cloud: `huaweicloud-ecs` (Elastic Cloud Server, also Open Telekom Cloud) and
//! `huaweicloud-clouddc` (CloudDC bare-metal instances).
//!
//! The brief is `shared/providers/huaweicloud.md`. What both types share lives here: the
//! configuration (credentials, region, endpoints, project id), SDK-HMAC-SHA256 signing or
//! `X-Auth-Token`, reads with retries, and the tolerant error parser. The types themselves are
//! in [`ecs`] and [`clouddc`]; request bodies and response parsing in [`wire`]; the manifest
//! rules in [`validate`].

pub mod clouddc;
pub mod ecs;
pub mod settings;
pub mod validate;
pub mod wire;

use std::collections::{BTreeMap, HashMap};
use std::sync::{LazyLock, Mutex};

use reqwest::header::{HeaderName, HeaderValue};
use reqwest::{Method, Url};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

pub use clouddc::HuaweiClouddc;
pub use ecs::HuaweiEcs;
pub use validate::validate_server;

use super::http::{ProviderHttp, RawResponse, RetryPolicy};
use super::limits::{ApiFamily, RateLimit, RateLimits};
use super::sign::sdk_hmac;
use super::{ProviderError, config, response};
use crate::manifest::{DesiredProvider, SecretRef};

/// ECS: Huawei documents 429 but no per-API quotas for ECS (brief §6.4: "Concrete per-API quotas
/// unconfirmed"). Every figure below is a guess, kept low; override them with `rate_limits` in
/// the manifest.
const DEFAULT_RATE_LIMITS: [(ApiFamily, RateLimit); 5] = [
    // A guess: 5 server lists a second, 100 ids each.
    (ApiFamily::Read, RateLimit::new(300.0, 8)),
    // A guess, the same as reads (job queries and server lists).
    (ApiFamily::Status, RateLimit::new(300.0, 8)),
    // A guess: one reinstall or change-OS call a second.
    (ApiFamily::Reinstall, RateLimit::new(60.0, 10)),
    // A guess: one stop a second.
    (ApiFamily::Stop, RateLimit::new(60.0, 5)),
    // A guess: IAM project lookups are made once and cached.
    (ApiFamily::Auth, RateLimit::new(30.0, 2)),
];

/// CloudDC bare metal: the reinstall and list figures are the ones issue 6 (the apply engine)
/// gave for Huawei bare metal; Huawei's CloudDC pages document 429 ("overloaded") but no figure
/// (brief §7), so they are unconfirmed. Override them with `rate_limits` in the manifest.
const CLOUDDC_DEFAULT_RATE_LIMITS: [(ApiFamily, RateLimit); 4] = [
    // From issue 6 (unconfirmed): list 500/min.
    (ApiFamily::Read, RateLimit::new(500.0, 8)),
    // The same figure as the list it polls with.
    (ApiFamily::Status, RateLimit::new(500.0, 8)),
    // From issue 6 (unconfirmed): reinstall 50/min.
    (ApiFamily::Reinstall, RateLimit::new(50.0, 5)),
    // A guess: IAM project lookups are made once and cached.
    (ApiFamily::Auth, RateLimit::new(30.0, 2)),
];

pub use settings::{COMMON_OPTION_KEYS, CREDENTIAL_KEYS};
/// The default base domain of Huawei Cloud hosts (`{service}.{region}.{domain}`).
pub const DEFAULT_BASE_DOMAIN: &str = "myhuaweicloud.com";

/// Environment variable families, in order of preference (brief §8): the Terraform provider's
/// `HW_*`, then the SDK's `HUAWEICLOUD_SDK_*`, then `OS_*`.
struct EnvFamily {
    access_key: &'static str,
    secret_key: &'static str,
    security_token: &'static str,
    auth_token: Option<&'static str>,
    project_id: &'static str,
    region: Option<&'static str>,
}

const ENV_FAMILIES: [EnvFamily; 3] = [
    EnvFamily {
        access_key: "HW_ACCESS_KEY",
        secret_key: "HW_SECRET_KEY",
        security_token: "HW_SECURITY_TOKEN",
        auth_token: Some("HW_AUTH_TOKEN"),
        project_id: "HW_PROJECT_ID",
        region: Some("HW_REGION_NAME"),
    },
    EnvFamily {
        access_key: "HUAWEICLOUD_SDK_AK",
        secret_key: "HUAWEICLOUD_SDK_SK",
        security_token: "HUAWEICLOUD_SDK_SECURITY_TOKEN",
        auth_token: None,
        project_id: "HUAWEICLOUD_SDK_PROJECT_ID",
        region: None,
    },
    EnvFamily {
        access_key: "OS_ACCESS_KEY",
        secret_key: "OS_SECRET_KEY",
        security_token: "OS_SECURITY_TOKEN",
        auth_token: Some("OS_AUTH_TOKEN"),
        project_id: "OS_PROJECT_ID",
        region: Some("OS_REGION_NAME"),
    },
];
const ENV_BASE_DOMAIN: &str = "HW_CLOUD";
const ENV_IAM_ENDPOINT: &str = "HUAWEICLOUD_SDK_IAM_ENDPOINT";
const ENV_AUTH_URL: &str = "HW_AUTH_URL";

/// `Content-Type` of reads (the SDK sends it on GET too) and of calls with a body.
pub const CONTENT_TYPE_READ: &str = "application/json";
pub const CONTENT_TYPE_BODY: &str = "application/json;charset=utf-8";

/// How requests are authenticated. Secrets stay wrapped; `Debug` prints them redacted.
#[derive(Debug, Clone)]
pub enum Credentials {
    /// SDK-HMAC-SHA256 with an access key; `security_token` for temporary (STS) keys.
    AccessKey {
        access_key: String,
        secret_key: SecretString,
        security_token: Option<SecretString>,
    },
    /// An IAM token sent as `X-Auth-Token`, unsigned.
    Token(SecretString),
}

impl Credentials {
    /// What identifies the caller in the project-id cache (never the secret itself).
    fn cache_identity(&self) -> String {
        match self {
            Self::AccessKey { access_key, .. } => format!("ak:{access_key}"),
            Self::Token(token) => format!(
                "token:{}",
                crate::digest::sha256_hex(token.expose_secret().as_bytes())
            ),
        }
    }
}

/// The two API families on Huawei's gateway that reimage speaks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Ecs,
    Clouddc,
}

impl Service {
    pub fn host_label(self) -> &'static str {
        match self {
            Self::Ecs => "ecs",
            Self::Clouddc => "clouddc",
        }
    }

    fn provider_type(self) -> &'static str {
        match self {
            Self::Ecs => "huaweicloud-ecs",
            Self::Clouddc => "huaweicloud-clouddc",
        }
    }
}

/// The connection settings and HTTP client one configured provider uses.
#[derive(Debug)]
pub struct HuaweiClient {
    name: String,
    service: Service,
    endpoint: Url,
    iam_endpoint: Url,
    region: Option<String>,
    credentials: Credentials,
    /// Given in the manifest or the environment; otherwise looked up through IAM once.
    explicit_project: Option<String>,
    resolved_project: Mutex<Option<String>>,
    /// Held while the project is looked up: reads made together (a plan reads every chunk of
    /// ids at once) wait for one lookup instead of each making its own.
    project_lookup: tokio::sync::Mutex<()>,
    http: ProviderHttp,
}

/// Project ids looked up through IAM, per (IAM endpoint, caller, region), shared by every
/// provider of this process (the SDK caches per AK and region the same way).
/// (IAM endpoint, caller identity, region) → project id.
type ProjectCache = HashMap<(String, String, String), String>;

static PROJECT_CACHE: LazyLock<Mutex<ProjectCache>> = LazyLock::new(|| Mutex::new(HashMap::new()));

/// Provider options read by the shared part, and the ones left for the type itself.
pub struct ParsedConfig {
    pub client: HuaweiClient,
    /// Options not consumed by the shared part, for the type to check.
    pub type_options: serde_json::Map<String, Value>,
}

impl HuaweiClient {
    /// Reads the shared configuration. `type_option_keys` are the options the type accepts
    /// besides [`COMMON_OPTION_KEYS`]; any other key is refused with the allowed list.
    pub fn from_config(
        service: Service,
        config: &DesiredProvider,
        endpoint_override: Option<&str>,
        type_option_keys: &[&str],
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<ParsedConfig, ProviderError> {
        let name = config.name.clone();
        // The same rules `validate` reports, each at its place in the manifest.
        config::refuse_issues(&name, &super::check_config(&config.config))?;
        let config_error = |message: String, help: String| ProviderError::Config {
            provider: name.clone(),
            message,
            help,
        };
        // Empty variables count as unset, as the SDKs treat them.
        let env = config::non_empty_env(env);
        let settings = &config.config;

        // Checked above: no issues are left.
        let (common, _) = settings::CommonOptions::read(
            &settings.options,
            type_option_keys,
            service.provider_type(),
        );
        let type_options: serde_json::Map<String, Value> = settings
            .options
            .iter()
            .filter(|(key, _)| type_option_keys.contains(&key.as_str()))
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        let project_option = common.project_id;
        let iam_option = common.iam_endpoint;
        let domain_option = common.base_domain;

        let region = settings
            .region
            .clone()
            .filter(|region| !region.trim().is_empty())
            .or_else(|| {
                ENV_FAMILIES
                    .iter()
                    .filter_map(|family| family.region)
                    .find_map(&env)
            })
            .map(|region| region.trim().to_string());
        if let Some(region) = &region
            && let Some(problem) = settings::region_problem(region)
        {
            return Err(config_error(
                problem,
                "use a region id such as `cn-north-4` or `eu-de`".to_string(),
            ));
        }
        let base_domain = domain_option
            .or_else(|| env(ENV_BASE_DOMAIN))
            .unwrap_or_else(|| DEFAULT_BASE_DOMAIN.to_string());

        let configured =
            config::configured_endpoint(&name, endpoint_override, settings.endpoint.as_deref())?;
        let (endpoint_text, source) = match configured {
            Some((url, source)) => (url, source.to_string()),
            None => {
                let Some(region) = &region else {
                    return Err(config_error(
                        "no region and no endpoint".to_string(),
                        format!(
                            "set `region:` for this provider (or HW_REGION_NAME / OS_REGION_NAME), \
                             or `endpoint:` (https://{}.REGION.{base_domain})",
                            service.host_label()
                        ),
                    ));
                };
                let variable = format!(
                    "HUAWEICLOUD_SDK_REGION_{}_{}",
                    service.host_label().to_ascii_uppercase(),
                    region.to_ascii_uppercase().replace('-', "_")
                );
                match env(&variable) {
                    // The SDK accepts several comma-separated endpoints; the first one is used.
                    Some(list) => (
                        list.split(',')
                            .next()
                            .unwrap_or_default()
                            .trim()
                            .to_string(),
                        variable,
                    ),
                    None => (
                        format!("https://{}.{region}.{base_domain}", service.host_label()),
                        "the region and base domain".to_string(),
                    ),
                }
            }
        };
        let endpoint = parse_endpoint(&endpoint_text).map_err(|(message, help)| {
            config_error(
                format!("endpoint `{endpoint_text}` (from {source}) {message}"),
                help,
            )
        })?;

        let (iam_text, iam_source) = if let Some(url) = iam_option {
            (url, "option `iam_endpoint`".to_string())
        } else if let Some(url) = env(ENV_IAM_ENDPOINT) {
            (url, ENV_IAM_ENDPOINT.to_string())
        } else if let Some(url) = env(ENV_AUTH_URL) {
            // Terraform's auth URL names the IAM API root, e.g. `https://iam.x.com:443/v3`.
            let trimmed = url.trim().trim_end_matches('/');
            (
                trimmed.strip_suffix("/v3").unwrap_or(trimmed).to_string(),
                ENV_AUTH_URL.to_string(),
            )
        } else if let Some(url) = endpoint_override {
            // The embedded emulator serves IAM on the same listener.
            (url.to_string(), "the endpoint override".to_string())
        } else {
            (
                format!("https://iam.{base_domain}"),
                "the base domain".to_string(),
            )
        };
        let iam_endpoint = parse_endpoint(&iam_text).map_err(|(message, help)| {
            config_error(
                format!("IAM endpoint `{iam_text}` (from {iam_source}) {message}"),
                help,
            )
        })?;

        let credentials = resolve_credentials(&name, &settings.credentials, &env)?;
        let explicit_project = project_option.or_else(|| {
            ENV_FAMILIES
                .iter()
                .find_map(|family| env(family.project_id))
                .map(|id| id.trim().to_string())
        });
        if let Some(project) = &explicit_project
            && let Some(problem) = settings::project_id_problem(project)
        {
            return Err(config_error(
                problem,
                "a Huawei project id is 32 hexadecimal characters, shown under My Credentials \
                 in the console"
                    .to_string(),
            ));
        }
        if explicit_project.is_none() && region.is_none() {
            return Err(config_error(
                "no project id and no region to look it up by".to_string(),
                "set `region:` (the project is looked up through IAM by its name) or \
                 `options.project_id`"
                    .to_string(),
            ));
        }

        let defaults: &[(ApiFamily, RateLimit)] = match service {
            Service::Ecs => &DEFAULT_RATE_LIMITS,
            Service::Clouddc => &CLOUDDC_DEFAULT_RATE_LIMITS,
        };
        let http = ProviderHttp::new(&name, RetryPolicy::default())?
            .with_request_timeout(config::request_timeout(config)?)
            .with_limits(RateLimits::new(&name, defaults, &settings.rate_limits));
        Ok(ParsedConfig {
            client: HuaweiClient {
                name,
                service,
                endpoint,
                iam_endpoint,
                region,
                credentials,
                explicit_project,
                resolved_project: Mutex::new(None),
                project_lookup: tokio::sync::Mutex::new(()),
                http,
            },
            type_options,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn service(&self) -> Service {
        self.service
    }

    pub fn endpoint(&self) -> &Url {
        &self.endpoint
    }

    pub fn iam_endpoint(&self) -> &Url {
        &self.iam_endpoint
    }

    pub fn region(&self) -> Option<&str> {
        self.region.as_deref()
    }

    pub fn set_retry_policy(&mut self, policy: RetryPolicy) {
        self.http.set_retry_policy(policy);
    }

    pub fn http(&self) -> &ProviderHttp {
        &self.http
    }

    fn config_error(&self, message: String, help: &str) -> ProviderError {
        ProviderError::Config {
            provider: self.name.clone(),
            message,
            help: help.to_string(),
        }
    }

    /// The project id: explicit, cached, or looked up through IAM by the region's name.
    pub async fn project_id(&self) -> Result<String, ProviderError> {
        if let Some(project) = &self.explicit_project {
            return Ok(project.clone());
        }
        if let Some(project) = lock(&self.resolved_project).clone() {
            return Ok(project);
        }
        let region = self.region.clone().ok_or_else(|| {
            self.config_error(
                "no project id and no region".to_string(),
                "set `region:` or `options.project_id`",
            )
        })?;
        let key = (
            self.iam_endpoint.to_string(),
            self.credentials.cache_identity(),
            region.clone(),
        );
        let _one_lookup = self.project_lookup.lock().await;
        if let Some(project) = lock(&self.resolved_project).clone() {
            return Ok(project);
        }
        if let Some(project) = lock(&PROJECT_CACHE).get(&key).cloned() {
            *lock(&self.resolved_project) = Some(project.clone());
            return Ok(project);
        }
        let query = vec![("name".to_string(), region.clone())];
        let (body, request_id) = self
            .read_json_as(
                ApiFamily::Auth,
                Target::Iam,
                "/v3/projects",
                &query,
                None,
                "IAM project lookup",
            )
            .await?;
        let project =
            wire::project_from_listing(&body, &region).map_err(|message| ProviderError::Api {
                provider: self.name.clone(),
                status: None,
                code: None,
                message,
                request_id,
                retryable: false,
            })?;
        lock(&PROJECT_CACHE).insert(key, project.clone());
        *lock(&self.resolved_project) = Some(project.clone());
        tracing::debug!(provider = %self.name, region, project, "resolved the project id through IAM");
        Ok(project)
    }

    /// Builds and signs one request. `path` is the API path (ids already encoded with
    /// [`sdk_hmac::encode`]); `project` goes into `X-Project-Id` (none for IAM).
    pub fn build_request(
        &self,
        target: Target,
        method: Method,
        path: &str,
        query: &[(String, String)],
        body: Option<&[u8]>,
        project: Option<&str>,
    ) -> Result<reqwest::Request, ProviderError> {
        self.build_request_at(
            target,
            method,
            path,
            query,
            body,
            project,
            jiff::Timestamp::now(),
        )
    }

    #[allow(clippy::too_many_arguments)]
    pub fn build_request_at(
        &self,
        target: Target,
        method: Method,
        path: &str,
        query: &[(String, String)],
        body: Option<&[u8]>,
        project: Option<&str>,
        now: jiff::Timestamp,
    ) -> Result<reqwest::Request, ProviderError> {
        let base = match target {
            Target::Service => &self.endpoint,
            Target::Iam => &self.iam_endpoint,
        };
        let mut url = base.clone();
        let full_path = format!("{}{path}", base.path().trim_end_matches('/'));
        url.set_path(&full_path);
        let canonical_query = sdk_hmac::canonical_query(query);
        url.set_query((!canonical_query.is_empty()).then_some(canonical_query.as_str()));
        let host = config::signed_host(&url);
        let content_type = if body.is_some() {
            CONTENT_TYPE_BODY
        } else {
            CONTENT_TYPE_READ
        };
        let mut headers: Vec<(String, String)> = vec![
            ("Content-Type".to_string(), content_type.to_string()),
            ("Host".to_string(), host),
        ];
        if let Some(project) = project {
            headers.push(("X-Project-Id".to_string(), project.to_string()));
        }
        let mut sensitive: Vec<(String, String)> = Vec::new();
        match &self.credentials {
            Credentials::AccessKey {
                access_key,
                secret_key,
                security_token,
            } => {
                headers.push((
                    "X-Sdk-Date".to_string(),
                    now.strftime(sdk_hmac::DATE_FORMAT).to_string(),
                ));
                if let Some(token) = security_token {
                    headers.push((
                        "X-Security-Token".to_string(),
                        token.expose_secret().to_string(),
                    ));
                }
                let authorization = sdk_hmac::sign(
                    access_key,
                    secret_key.expose_secret(),
                    method.as_str(),
                    url.path(),
                    &canonical_query,
                    &headers,
                    body.unwrap_or_default(),
                );
                sensitive.push(("Authorization".to_string(), authorization));
            }
            Credentials::Token(token) => {
                sensitive.push((
                    "X-Auth-Token".to_string(),
                    token.expose_secret().to_string(),
                ));
            }
        }
        let mut builder = self.http.client()?.request(method.clone(), url);
        for (name, value, is_sensitive) in headers
            .into_iter()
            .map(|(name, value)| (name, value, false))
            .chain(
                sensitive
                    .into_iter()
                    .map(|(name, value)| (name, value, true)),
            )
        {
            let header_name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                self.config_error(format!("bad header name `{name}`"), "this is a bug")
            })?;
            let mut header_value = HeaderValue::from_str(&value).map_err(|_| {
                // The value is not quoted: it may be a credential.
                self.config_error(
                    format!("the `{name}` header would hold characters HTTP does not allow"),
                    "check the credentials, project id and ids for stray newlines or \
                     non-ASCII characters",
                )
            })?;
            header_value.set_sensitive(is_sensitive || name == "X-Security-Token");
            builder = builder.header(header_name, header_value);
        }
        if let Some(body) = body {
            builder = builder.body(body.to_vec());
        }
        builder.build().map_err(|error| {
            self.config_error(
                format!("cannot build the request: {error}"),
                "check the endpoint",
            )
        })
    }

    /// A GET with retries (429, 5xx, transport), re-signed every attempt. Returns the JSON body
    /// and the request id.
    pub async fn read_json(
        &self,
        family: ApiFamily,
        target: Target,
        path: &str,
        query: &[(String, String)],
        what: &str,
    ) -> Result<(Value, Option<String>), ProviderError> {
        let project = match target {
            Target::Service => Some(self.project_id().await?),
            Target::Iam => None,
        };
        self.read_json_as(family, target, path, query, project.as_deref(), what)
            .await
    }

    /// [`HuaweiClient::read_json`] with the project header given (none for IAM).
    async fn read_json_as(
        &self,
        family: ApiFamily,
        target: Target,
        path: &str,
        query: &[(String, String)],
        project: Option<&str>,
        what: &str,
    ) -> Result<(Value, Option<String>), ProviderError> {
        self.http
            .send_read_with_retry(
                family,
                || self.build_request(target, Method::GET, path, query, None, project),
                |response| wire::parse_json_response(&self.name, what, response),
            )
            .await
    }

    /// Sends a call that changes something exactly once (never retried).
    pub async fn send_once(
        &self,
        family: ApiFamily,
        method: Method,
        path: &str,
        body: &[u8],
    ) -> Result<RawResponse, ProviderError> {
        let project = self.project_id().await?;
        let request = self.build_request(
            Target::Service,
            method,
            path,
            &[],
            Some(body),
            Some(&project),
        )?;
        self.http.send_once(family, request).await
    }

    /// A reinstall call whose answer does not prove it was refused: report it as "may have been
    /// sent", so the caller checks the server instead of calling again.
    pub fn ambiguous(&self, error: ProviderError, what: &str) -> ProviderError {
        response::maybe_started(
            &self.name,
            self.endpoint.as_str(),
            &error,
            &format!("{what} may have started: check the server before trying again"),
        )
    }
}

/// Which host a request goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// ECS or CloudDC.
    Service,
    Iam,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Plain values inside: a panic elsewhere cannot leave them inconsistent.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Parses and checks an endpoint URL (https, or http to loopback only).
fn parse_endpoint(text: &str) -> Result<Url, (String, String)> {
    config::check_endpoint(text, settings::URL_HELP, settings::PLAIN_HTTP_HELP)
        .map_err(|(message, help)| (message, help.to_string()))
}

/// Credentials from the manifest, else from the environment (`HW_*`, `HUAWEICLOUD_SDK_*`,
/// `OS_*`, in that order; in each family an access key pair before a token).
fn resolve_credentials(
    provider: &str,
    references: &BTreeMap<String, SecretRef>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Credentials, ProviderError> {
    let resolve = |key: &str, reference: &SecretRef| {
        config::resolve_credential(provider, "Huawei Cloud", key, reference)
    };
    let access_key = references.get("access_key");
    let secret_key = references.get("secret_key");
    let security_token = references.get("security_token");
    let auth_token = references.get("auth_token");
    match (access_key, secret_key, auth_token) {
        (Some(access), Some(secret), None) => Ok(Credentials::AccessKey {
            access_key: resolve("access_key", access)?
                .expose_secret()
                .trim()
                .to_string(),
            secret_key: resolve("secret_key", secret)?,
            security_token: security_token
                .map(|reference| resolve("security_token", reference))
                .transpose()?,
        }),
        (None, None, Some(token)) if security_token.is_none() => {
            Ok(Credentials::Token(resolve("auth_token", token)?))
        }
        (None, None, Some(_)) => Err(config::config_error(
            provider,
            "`security_token` goes with an access key, not with `auth_token`".to_string(),
            "remove `security_token`, or use `access_key` + `secret_key`".to_string(),
        )),
        (Some(_), _, Some(_)) | (_, Some(_), Some(_)) => Err(config::config_error(
            provider,
            "both an access key and an auth token are configured".to_string(),
            "keep either `access_key` + `secret_key` (signing) or `auth_token`".to_string(),
        )),
        (Some(_), None, None) | (None, Some(_), None) => {
            Err(config::half_pair(provider, "access_key", "secret_key"))
        }
        (None, None, None) if security_token.is_some() => Err(config::config_error(
            provider,
            "`security_token` alone is not a credential".to_string(),
            "add `access_key` and `secret_key` (temporary ones, from STS)".to_string(),
        )),
        (None, None, None) => credentials_from_env(provider, env),
    }
}

fn credentials_from_env(
    provider: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Credentials, ProviderError> {
    for family in &ENV_FAMILIES {
        if let Some((access_key, secret_key)) =
            config::env_pair(provider, env, family.access_key, family.secret_key)?
        {
            return Ok(Credentials::AccessKey {
                access_key: access_key.trim().to_string(),
                secret_key: SecretString::from(secret_key),
                security_token: env(family.security_token).map(SecretString::from),
            });
        }
        if let Some(token) = family.auth_token.and_then(env) {
            return Ok(Credentials::Token(SecretString::from(token)));
        }
    }
    Err(ProviderError::Config {
        provider: provider.to_string(),
        message: "no Huawei Cloud credentials found".to_string(),
        help: "set `credentials.access_key` and `credentials.secret_key` (or \
               `credentials.auth_token`) in the manifest, or export HW_ACCESS_KEY and \
               HW_SECRET_KEY (or HUAWEICLOUD_SDK_AK/HUAWEICLOUD_SDK_SK, OS_ACCESS_KEY/\
               OS_SECRET_KEY, HW_AUTH_TOKEN)"
            .to_string(),
    })
}

#[cfg(test)]
mod tests;
