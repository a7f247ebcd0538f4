//! Reading a provider's manifest entry, the parts every provider type does alike: durations
//! with defaults, which endpoint to use and whether it is safe, unknown option keys, and
//! credential look-ups (manifest references, else environment variables). Each provider keeps
//! its own keys, defaults and wording; only the mechanics live here.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::Url;
use secrecy::SecretString;

use super::rules::{allowed_keys_help, escape_pointer, issue};
use super::{FieldIssue, ProviderError};
use crate::manifest::model::ProviderConfig;
use crate::manifest::{DesiredProvider, SecretRef, secrets};

/// The help of an endpoint that uses plain http to another machine, for providers whose every
/// request carries credentials.
pub const PLAIN_HTTP_HELP: &str = "use https; plain http is only accepted for 127.0.0.0/8, ::1 \
                                   and localhost (a local emulator), since requests carry \
                                   credentials and passwords";

/// A configuration error of provider `provider`.
pub fn config_error(
    provider: &str,
    message: impl Into<String>,
    help: impl Into<String>,
) -> ProviderError {
    ProviderError::Config {
        provider: provider.to_string(),
        message: message.into(),
        help: help.into(),
    }
}

/// A duration setting such as `poll_interval`: seconds > 0, or `default` when not given.
pub fn positive_seconds(
    provider: &str,
    field: &str,
    value: Option<f64>,
    default: Duration,
) -> Result<Duration, ProviderError> {
    match value {
        None => Ok(default),
        Some(seconds) => Duration::try_from_secs_f64(seconds)
            .ok()
            .filter(|duration| !duration.is_zero())
            .ok_or_else(|| {
                config_error(
                    provider,
                    format!("`{field}` is {seconds}; it must be a number of seconds > 0"),
                    format!(
                        "omit `{field}` to use the default of {}s",
                        default.as_secs()
                    ),
                )
            }),
    }
}

/// The longest time one request may take (`request_timeout`), default
/// [`super::http::REQUEST_TIMEOUT`].
pub fn request_timeout(config: &DesiredProvider) -> Result<Duration, ProviderError> {
    positive_seconds(
        &config.name,
        "request_timeout",
        config.config.request_timeout,
        super::http::REQUEST_TIMEOUT,
    )
}

/// How a provider's operations are paced and bounded: each value from the provider entry
/// (`poll_interval`, `install_timeout`, `start_grace`, `stop_timeout`, read as
/// [`positive_seconds`] reads them), else the provider type's default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub poll_interval: Duration,
    pub install_timeout: Duration,
    /// How long one install usually takes: only the plan's estimate of the rollout uses it.
    pub install_estimate: Duration,
    pub start_grace: Duration,
    pub stop_timeout: Duration,
}

impl Timing {
    /// `poll_interval`, `install_timeout` and `install_estimate` as given; the grace and stop
    /// deadline default to [`super::DEFAULT_START_GRACE`] and [`super::DEFAULT_STOP_TIMEOUT`].
    pub fn defaults(
        poll_interval: Duration,
        install_timeout: Duration,
        install_estimate: Duration,
    ) -> Self {
        Timing {
            poll_interval,
            install_timeout,
            install_estimate,
            start_grace: super::DEFAULT_START_GRACE,
            stop_timeout: super::DEFAULT_STOP_TIMEOUT,
        }
    }

    /// The provider entry's values over these defaults.
    pub fn of(self, config: &DesiredProvider) -> Result<Timing, ProviderError> {
        let settings = &config.config;
        let read = |field: &str, value: Option<f64>, default: Duration| {
            positive_seconds(&config.name, field, value, default)
        };
        Ok(Timing {
            poll_interval: read("poll_interval", settings.poll_interval, self.poll_interval)?,
            install_timeout: read(
                "install_timeout",
                settings.install_timeout,
                self.install_timeout,
            )?,
            install_estimate: read(
                "install_estimate",
                settings.install_estimate,
                self.install_estimate,
            )?,
            start_grace: read("start_grace", settings.start_grace, self.start_grace)?,
            stop_timeout: read("stop_timeout", settings.stop_timeout, self.stop_timeout)?,
        })
    }
}

/// Refuses a configuration with issues: the first one becomes the error (`validate` shows them
/// all, each at its place in the manifest).
pub fn refuse_issues(provider: &str, issues: &[FieldIssue]) -> Result<(), ProviderError> {
    match issues.first() {
        None => Ok(()),
        Some(first) => Err(config_error(
            provider,
            first.message.clone(),
            first.help.clone().unwrap_or_default(),
        )),
    }
}

/// Rules every provider type shares: the timing settings must be durations.
pub fn common_issues(config: &ProviderConfig) -> Vec<FieldIssue> {
    let mut issues = Vec::new();
    for (field, value) in [
        ("poll_interval", config.poll_interval),
        ("install_timeout", config.install_timeout),
        ("install_estimate", config.install_estimate),
        ("start_grace", config.start_grace),
        ("stop_timeout", config.stop_timeout),
        ("request_timeout", config.request_timeout),
    ] {
        if let Some(seconds) = value
            && !Duration::try_from_secs_f64(seconds).is_ok_and(|duration| !duration.is_zero())
        {
            issues.push(issue(
                &format!("/{field}"),
                &format!("`{field}` is {seconds}; it must be a number of seconds > 0"),
                Some(&format!("omit `{field}` to use the provider's default")),
            ));
        }
    }
    issues
}

/// An issue with the manifest's `endpoint`, when one is given (`emulator` is checked by the
/// loader, which knows whether an emulator section exists).
pub fn endpoint_issue(
    endpoint: Option<&str>,
    url_help: &'static str,
    plain_http_help: &'static str,
) -> Option<FieldIssue> {
    let text = endpoint.filter(|text| *text != "emulator")?;
    let (message, help) = check_endpoint(text, url_help, plain_http_help).err()?;
    Some(issue(
        "/endpoint",
        &format!("endpoint `{text}` {message}"),
        Some(help),
    ))
}

/// One issue per credential key outside `allowed`, with "did you mean". `kind` names the
/// provider type with its article ("a zenlayer-bmc").
pub fn credential_key_issues(
    references: &BTreeMap<String, SecretRef>,
    allowed: &[&str],
    kind: &str,
) -> Vec<FieldIssue> {
    references
        .keys()
        .filter(|key| !allowed.contains(&key.as_str()))
        .map(|key| {
            issue(
                &format!("/credentials/{}", escape_pointer(key)),
                &format!("unknown credential `{key}` for {kind} provider"),
                Some(&allowed_keys_help(key, allowed)),
            )
        })
        .collect()
}

/// The issue of a provider option key outside `allowed`, with "did you mean".
pub fn unknown_option_issue(key: &str, allowed: &[&str], provider_type: &str) -> FieldIssue {
    issue(
        &format!("/options/{}", escape_pointer(key)),
        &format!("unknown option `{key}` for a {provider_type} provider"),
        Some(&allowed_keys_help(key, allowed)),
    )
}

/// A provider option that is a number of seconds (`≥ 0`, or `> 0` unless `allow_zero`).
pub fn seconds_option(
    key: &str,
    value: &serde_json::Value,
    allow_zero: bool,
    help: &str,
) -> Result<Duration, FieldIssue> {
    value
        .as_f64()
        .and_then(|seconds| Duration::try_from_secs_f64(seconds).ok())
        .filter(|duration| allow_zero || !duration.is_zero())
        .ok_or_else(|| {
            issue(
                &format!("/options/{}", escape_pointer(key)),
                &format!(
                    "option `{key}` is {value}; it must be a number of seconds {}",
                    if allow_zero { "≥ 0" } else { "> 0" }
                ),
                Some(help),
            )
        })
}

/// The issue of a credential pair of which the manifest gives only one.
pub fn half_pair_issue(
    references: &BTreeMap<String, SecretRef>,
    first: &str,
    second: &str,
) -> Option<FieldIssue> {
    let (present, missing) = match (references.get(first), references.get(second)) {
        (Some(_), None) => (first, second),
        (None, Some(_)) => (second, first),
        _ => return None,
    };
    Some(issue(
        &format!("/credentials/{}", escape_pointer(present)),
        &format!("`{first}` and `{second}` must be given together: `{missing}` is missing"),
        Some("add the missing one, or remove both to use environment variables"),
    ))
}

/// The endpoint given for this run: the override (the embedded emulator), else the manifest's
/// `endpoint`, with where it came from. `None` when neither is given: the provider then uses
/// its default. `endpoint: emulator` without a running emulator is an error.
pub fn configured_endpoint(
    provider: &str,
    endpoint_override: Option<&str>,
    configured: Option<&str>,
) -> Result<Option<(String, &'static str)>, ProviderError> {
    match (endpoint_override, configured) {
        (Some(url), _) => Ok(Some((url.to_string(), "the endpoint override"))),
        (None, Some("emulator")) => Err(config_error(
            provider,
            "`endpoint: emulator` needs the embedded emulator, which was not started",
            "add an `emulator:` section to the manifest, or set a real endpoint",
        )),
        (None, Some(url)) => Ok(Some((url.to_string(), "`endpoint` in the manifest"))),
        (None, None) => Ok(None),
    }
}

/// Parses and checks an endpoint URL: https, or plain http only to this machine; a host; no
/// user info, query or fragment. Errors are `(what is wrong, help)`: `url_help` says how to
/// write the URL, `plain_http_help` why plain http to another machine is refused.
pub fn check_endpoint(
    text: &str,
    url_help: &'static str,
    plain_http_help: &'static str,
) -> Result<Url, (String, &'static str)> {
    let url =
        Url::parse(text.trim()).map_err(|error| (format!("is not a URL: {error}"), url_help))?;
    if url.host_str().is_none_or(str::is_empty) {
        return Err(("has no host".to_string(), url_help));
    }
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(&url) => {}
        "http" => {
            return Err((
                "uses plain http to a host that is not this machine".to_string(),
                plain_http_help,
            ));
        }
        other => return Err((format!("has scheme `{other}`"), url_help)),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err((
            "contains user info".to_string(),
            "put credentials under `credentials:`, never in the URL",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(("has a query or fragment".to_string(), url_help));
    }
    Ok(url)
}

/// Whether a URL's host is this machine (127.0.0.0/8, ::1, localhost).
pub fn is_loopback(url: &Url) -> bool {
    // The url crate has normalised the host (`127.1` → `127.0.0.1`, IPv6 in brackets), so
    // parsing its text is enough.
    let Some(host) = url.host_str() else {
        return false;
    };
    if let Some(ipv6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return ipv6
            .parse::<std::net::Ipv6Addr>()
            .is_ok_and(|address| address.is_loopback());
    }
    match host.parse::<std::net::Ipv4Addr>() {
        Ok(address) => address.is_loopback(),
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    }
}

/// The `Host` header the HTTP client sends for `url`, which signatures cover: `host[:port]`.
/// The url crate drops a port equal to the scheme's default, as does the HTTP client when it
/// writes the header: the two agree.
pub fn signed_host(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    }
}

/// The error for a provider option key outside `allowed`, listing them.
pub fn unknown_option(
    provider: &str,
    provider_type: &str,
    key: &str,
    allowed: &[&str],
) -> ProviderError {
    config_error(
        provider,
        format!("unknown option `{key}` for a {provider_type} provider"),
        format!("allowed provider options: {}", allowed.join(", ")),
    )
}

/// Environment look-ups in which an empty or blank variable counts as unset, as the SDKs treat
/// them.
pub fn non_empty_env(env: impl Fn(&str) -> Option<String>) -> impl Fn(&str) -> Option<String> {
    move |key| env(key).filter(|value| !value.trim().is_empty())
}

/// Refuses credential keys outside `allowed`. `kind` names the provider type with its article
/// ("a zenlayer-bmc"); `help` is given the unknown key.
pub fn check_credential_keys(
    provider: &str,
    kind: &str,
    references: &BTreeMap<String, SecretRef>,
    allowed: &[&str],
    help: impl FnOnce(&str) -> String,
) -> Result<(), ProviderError> {
    match references
        .keys()
        .find(|key| !allowed.contains(&key.as_str()))
    {
        Some(unknown) => Err(config_error(
            provider,
            format!("unknown credential `{unknown}` for {kind} provider"),
            help(unknown),
        )),
        None => Ok(()),
    }
}

/// Reads the credential `key` from its reference. Errors name the reference (an environment
/// variable or a file path), never a value; `what` names the credential's owner, e.g.
/// "Zenlayer".
pub fn resolve_credential(
    provider: &str,
    what: &str,
    key: &str,
    reference: &SecretRef,
) -> Result<SecretString, ProviderError> {
    secrets::resolve(reference).map_err(|error| {
        config_error(
            provider,
            format!("credential `{key}`: {error}"),
            format!("make `{reference}` hold the {what} {key}"),
        )
    })
}

/// The error for a credential pair of which the manifest gives only one.
pub fn half_pair(provider: &str, first: &str, second: &str) -> ProviderError {
    config_error(
        provider,
        format!("`{first}` and `{second}` must be given together"),
        "add the missing one, or remove both to use environment variables",
    )
}

/// A pair of environment variables that go together (an access key and its secret): both
/// values, none when neither is set, an error naming them when only one is.
pub fn env_pair(
    provider: &str,
    env: &dyn Fn(&str) -> Option<String>,
    first: &str,
    second: &str,
) -> Result<Option<(String, String)>, ProviderError> {
    match (env(first), env(second)) {
        (Some(first), Some(second)) => Ok(Some((first, second))),
        (None, None) => Ok(None),
        _ => Err(config_error(
            provider,
            format!("only one of {first} and {second} is set"),
            "set both, or neither",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Result<Url, String> {
        check_endpoint(text, "URL HELP", "HTTP HELP")
            .map_err(|(message, help)| format!("{message} / {help}"))
    }

    #[test]
    fn endpoints_are_https_or_loopback_http() {
        assert!(check("https://api.example.com/x").is_ok());
        for loopback in [
            "http://127.0.0.1:8080",
            "http://127.1",
            "http://[::1]:9",
            "http://LOCALHOST",
        ] {
            assert!(check(loopback).is_ok(), "{loopback}");
        }
        assert_eq!(
            check("http://api.example.com").unwrap_err(),
            "uses plain http to a host that is not this machine / HTTP HELP"
        );
        assert!(
            check("ftp://x.example")
                .unwrap_err()
                .contains("has scheme `ftp`")
        );
        assert!(
            check("https://u:p@x.example")
                .unwrap_err()
                .contains("user info")
        );
        assert!(
            check("https://x.example/?a=1")
                .unwrap_err()
                .contains("query")
        );
        assert!(check("not a url").unwrap_err().ends_with("/ URL HELP"));
    }

    #[test]
    fn signed_hosts_keep_only_non_default_ports() {
        let host = |text: &str| signed_host(&Url::parse(text).unwrap());
        assert_eq!(host("https://a.example:443/x"), "a.example");
        assert_eq!(host("https://a.example:8443/x"), "a.example:8443");
        assert_eq!(host("http://[::1]:80"), "[::1]");
    }

    #[test]
    fn durations_default_or_must_be_positive() {
        let default = Duration::from_secs(15);
        assert_eq!(
            positive_seconds("p", "poll_interval", None, default).unwrap(),
            default
        );
        assert_eq!(
            positive_seconds("p", "poll_interval", Some(1.5), default).unwrap(),
            Duration::from_millis(1500)
        );
        for bad in [0.0, -1.0, f64::NAN] {
            let error = positive_seconds("p", "poll_interval", Some(bad), default).unwrap_err();
            assert!(
                error
                    .to_string()
                    .contains("must be a number of seconds > 0")
            );
        }
    }

    #[test]
    fn env_pairs_are_both_neither_or_an_error() {
        let env = non_empty_env(|key: &str| match key {
            "A" => Some("a".to_string()),
            "B" => Some("b".to_string()),
            "BLANK" => Some("  ".to_string()),
            _ => None,
        });
        assert_eq!(
            env_pair("p", &env, "A", "B").unwrap(),
            Some(("a".to_string(), "b".to_string()))
        );
        assert_eq!(env_pair("p", &env, "X", "BLANK").unwrap(), None);
        let error = env_pair("p", &env, "A", "BLANK").unwrap_err();
        assert!(error.to_string().contains("only one of A and BLANK is set"));
    }
}
