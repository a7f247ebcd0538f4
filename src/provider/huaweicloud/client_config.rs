//! Reading what both Huawei types share from the manifest and the environment: region,
//! service and IAM endpoints, credentials, project id and rate limits.

use std::sync::Mutex;

use reqwest::Url;
use serde_json::Value;

use super::credentials::resolve_credentials;
use super::{
    CLOUDDC_DEFAULT_RATE_LIMITS, DEFAULT_BASE_DOMAIN, DEFAULT_RATE_LIMITS, ENV_AUTH_URL,
    ENV_BASE_DOMAIN, ENV_FAMILIES, ENV_IAM_ENDPOINT, HuaweiClient, ParsedConfig, Service, settings,
};
use crate::manifest::DesiredProvider;
use crate::provider::ProviderError;
use crate::provider::config;
use crate::provider::http::{ProviderHttp, RetryPolicy};
use crate::provider::limits::{ApiFamily, RateLimit, RateLimits};

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
        config::refuse_issues(&name, &crate::provider::check_config(&config.config))?;
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
}

/// Parses and checks an endpoint URL (https, or http to loopback only).
fn parse_endpoint(text: &str) -> Result<Url, (String, String)> {
    config::check_endpoint(text, settings::URL_HELP, settings::PLAIN_HTTP_HELP)
        .map_err(|(message, help)| (message, help.to_string()))
}
