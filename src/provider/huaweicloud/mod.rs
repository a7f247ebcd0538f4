//! Huawei Cloud: `huaweicloud-ecs` (Elastic Cloud Server, also Open Telekom Cloud) and
//! `huaweicloud-clouddc` (CloudDC bare-metal instances).
//!
//! The brief is `shared/providers/huaweicloud.md`. What both types share lives here: the
//! configuration (credentials, region, endpoints, project id), SDK-HMAC-SHA256 signing or
//! `X-Auth-Token`, reads with retries, and the tolerant error parser. The types themselves are
//! in [`ecs`] and [`clouddc`]; request bodies and response parsing in [`wire`]; the manifest
//! rules in [`validate`].

mod client_config;
pub mod clouddc;
mod credentials;
pub mod ecs;
mod project;
mod requests;
pub mod settings;
pub mod validate;
pub mod wire;

use std::sync::Mutex;

use reqwest::Url;
use serde_json::Value;

pub use clouddc::HuaweiClouddc;
pub use credentials::Credentials;
pub use ecs::HuaweiEcs;
pub use validate::validate_server;

use super::http::{ProviderHttp, RetryPolicy};
use super::limits::{ApiFamily, RateLimit};

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

/// Provider options read by the shared part, and the ones left for the type itself.
pub struct ParsedConfig {
    pub client: HuaweiClient,
    /// Options not consumed by the shared part, for the type to check.
    pub type_options: serde_json::Map<String, Value>,
}

impl HuaweiClient {
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

#[cfg(test)]
mod tests;
