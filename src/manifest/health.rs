//! Health gates: what the manifest says (`health:` on a server, a group of `policy.groups` or
//! `defaults`), the checks on it, and the gate it resolves to.
//!
//! A gate runs after a server's install succeeded and must pass before the server counts as
//! done (and before the next wave starts). The most specific `health:` applies as a whole:
//! the server's, else its group's, else `defaults.health`; `health: false` turns gates off for
//! that level and below it. Where none applies, a provider may offer one (EDIS's `ssh_probe`).

use std::path::Path;

use serde::{Deserialize, Serialize};

/// Seconds one attempt may take, when not given.
pub const DEFAULT_TIMEOUT_S: f64 = 5.0;
/// Seconds between two attempts, when not given.
pub const DEFAULT_INTERVAL_S: f64 = 10.0;
/// Attempts before the gate fails, when not given.
pub const DEFAULT_ATTEMPTS: u32 = 30;

/// `health:` as written: a check, or `false` for none.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(untagged)]
pub enum HealthSetting {
    Enabled(bool),
    Check(HealthSpec),
}

/// One check (exactly one of `tcp`, `http`, `command`) and how often to try it.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HealthSpec {
    /// `HOST:PORT`, or a port number alone (the server's address).
    #[serde(default)]
    pub tcp: Option<TcpSpec>,
    #[serde(default)]
    pub http: Option<HttpSpec>,
    /// A program and its arguments (a list), or a shell command line (a string, run by `sh -c`).
    #[serde(default)]
    pub command: Option<CommandSpec>,
    /// Seconds one attempt may take.
    #[serde(default)]
    pub timeout: Option<f64>,
    /// Seconds between the end of one attempt and the start of the next.
    #[serde(default)]
    pub interval: Option<f64>,
    /// Attempts before the gate fails.
    #[serde(default)]
    pub attempts: Option<u32>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(untagged)]
pub enum TcpSpec {
    Port(u16),
    Address(String),
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(untagged)]
pub enum HttpSpec {
    Url(String),
    Full {
        url: String,
        /// The expected status (default 200).
        #[serde(default)]
        status: Option<u16>,
        /// Text the response body must contain.
        #[serde(default)]
        body_contains: Option<String>,
    },
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(untagged)]
pub enum CommandSpec {
    Shell(String),
    Program(Vec<String>),
}

/// A gate, resolved: what to check, how often, and where it came from. In the desired state
/// and in plans. `{address}`, `{name}` and `{id}` in its target are filled in by the plan.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HealthGate {
    pub check: HealthCheck,
    /// Seconds one attempt may take.
    pub timeout_s: f64,
    /// Seconds between attempts.
    pub interval_s: f64,
    pub attempts: u32,
    /// Where it was written, e.g. `servers[web-1].health`, `providers.edis.options.ssh_probe`.
    pub source: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum HealthCheck {
    /// A TCP connection to `address` (`HOST:PORT`) is accepted.
    Tcp { address: String },
    /// A GET of `url` answers `status`, with `body_contains` in the body when given.
    Http {
        url: String,
        status: u16,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        body_contains: Option<String>,
    },
    /// The program exits 0. Run in `dir` (the manifest's folder) with the server's name, id
    /// and address in `REIMAGE_SERVER`, `REIMAGE_SERVER_ID` and `REIMAGE_SERVER_ADDRESS`.
    Command { argv: Vec<String>, dir: String },
}

impl HealthCheck {
    /// One line for plans and progress: `tcp 10.0.0.5:22`, `http GET … → 200`, `command …`.
    pub fn describe(&self) -> String {
        match self {
            Self::Tcp { address } => format!("tcp {address}"),
            Self::Http {
                url,
                status,
                body_contains,
            } => match body_contains {
                Some(text) => format!("http GET {url} → {status} with {text:?} in the body"),
                None => format!("http GET {url} → {status}"),
            },
            Self::Command { argv, .. } => format!("command {}", argv.join(" ")),
        }
    }

    /// Whether the check needs the server's address (`{address}` in its target).
    pub fn needs_address(&self) -> bool {
        match self {
            Self::Tcp { address } => address.contains(ADDRESS),
            Self::Http { url, .. } => url.contains(ADDRESS),
            Self::Command { argv, .. } => argv.iter().any(|arg| arg.contains(ADDRESS)),
        }
    }

    /// The check with `{address}`, `{name}` and `{id}` filled in.
    pub fn filled(&self, name: &str, id: &str, address: Option<&str>) -> HealthCheck {
        let fill = |text: &str| {
            let text = text.replace("{name}", name).replace("{id}", id);
            match address {
                Some(address) => text.replace(ADDRESS, &host_for_url(address)),
                None => text,
            }
        };
        match self {
            Self::Tcp { address } => Self::Tcp {
                address: fill(address),
            },
            Self::Http {
                url,
                status,
                body_contains,
            } => Self::Http {
                url: fill(url),
                status: *status,
                body_contains: body_contains.clone(),
            },
            Self::Command { argv, dir } => Self::Command {
                argv: argv.iter().map(|arg| fill(arg)).collect(),
                dir: dir.clone(),
            },
        }
    }
}

impl HealthGate {
    /// `tcp 10.0.0.5:22, up to 30 attempts 10s apart (5s each)`.
    pub fn describe(&self) -> String {
        format!(
            "{}, up to {} attempt(s) {}s apart ({}s each)",
            self.check.describe(),
            self.attempts,
            self.interval_s,
            self.timeout_s
        )
    }
}

/// The placeholder for the server's address.
pub const ADDRESS: &str = "{address}";

/// An IPv6 address goes in brackets inside `HOST:PORT` and URLs.
fn host_for_url(address: &str) -> String {
    if address.contains(':') && !address.starts_with('[') {
        format!("[{address}]")
    } else {
        address.to_string()
    }
}

/// The health of a server as the manifest resolves it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum DesiredHealth {
    /// The manifest says nothing: a provider's own gate (EDIS `ssh_probe`) may apply.
    #[default]
    Unset,
    /// `health: false`: no gate, not even a provider's.
    Off,
    Gate(HealthGate),
}

impl DesiredHealth {
    pub fn is_unset(&self) -> bool {
        matches!(self, Self::Unset)
    }
}

/// One problem with a `health:` block: the pointer below it and what is wrong.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthIssue {
    /// Relative to the `health` key, e.g. `/tcp`.
    pub pointer: String,
    pub message: String,
    pub help: String,
}

fn issue(pointer: &str, message: impl Into<String>, help: impl Into<String>) -> HealthIssue {
    HealthIssue {
        pointer: pointer.to_string(),
        message: message.into(),
        help: help.into(),
    }
}

const CHECK_HELP: &str = "give exactly one of `tcp: \"{address}:22\"` (or `tcp: 22`), `http: {url: \
                          \"http://{address}/health\", status: 200}` or `command: [\"./check.sh\"]`";

/// Resolves one `health:` block written in a file in `dir`, labelled `source`.
pub fn resolve(
    setting: &HealthSetting,
    dir: &Path,
    source: &str,
) -> Result<DesiredHealth, Vec<HealthIssue>> {
    let spec = match setting {
        HealthSetting::Enabled(false) => return Ok(DesiredHealth::Off),
        HealthSetting::Enabled(true) => {
            return Err(vec![issue(
                "",
                "`health: true` names no check",
                format!("{CHECK_HELP}; `health: false` turns gates off"),
            )]);
        }
        HealthSetting::Check(spec) => spec,
    };
    let mut issues = Vec::new();
    let given = [
        spec.tcp.is_some(),
        spec.http.is_some(),
        spec.command.is_some(),
    ]
    .iter()
    .filter(|given| **given)
    .count();
    if given != 1 {
        issues.push(issue(
            "",
            if given == 0 {
                "`health` has no check".to_string()
            } else {
                "`health` has more than one check".to_string()
            },
            CHECK_HELP,
        ));
    }
    let timeout_s = seconds(
        spec.timeout,
        DEFAULT_TIMEOUT_S,
        "/timeout",
        false,
        &mut issues,
    );
    let interval_s = seconds(
        spec.interval,
        DEFAULT_INTERVAL_S,
        "/interval",
        true,
        &mut issues,
    );
    let attempts = spec.attempts.unwrap_or(DEFAULT_ATTEMPTS);
    if attempts == 0 {
        issues.push(issue(
            "/attempts",
            "`attempts` must be at least 1",
            "how many times the check is tried before the gate fails, e.g. `attempts: 30`",
        ));
    }
    let check = if let Some(tcp) = &spec.tcp {
        tcp_check(tcp, &mut issues)
    } else if let Some(http) = &spec.http {
        http_check(http, &mut issues)
    } else if let Some(command) = &spec.command {
        command_check(command, dir, &mut issues)
    } else {
        None
    };
    match check {
        Some(check) if issues.is_empty() => Ok(DesiredHealth::Gate(HealthGate {
            check,
            timeout_s,
            interval_s,
            attempts,
            source: source.to_string(),
        })),
        _ => Err(issues),
    }
}

fn seconds(
    value: Option<f64>,
    default: f64,
    pointer: &str,
    allow_zero: bool,
    issues: &mut Vec<HealthIssue>,
) -> f64 {
    let Some(value) = value else {
        return default;
    };
    let fine =
        value.is_finite() && value <= 86_400.0 && (value > 0.0 || allow_zero && value == 0.0);
    if !fine {
        let least = if allow_zero { "0" } else { "more than 0" };
        issues.push(issue(
            pointer,
            format!(
                "`{}` must be a number of seconds from {least} to 86400",
                &pointer[1..]
            ),
            "e.g. `timeout: 5`, `interval: 10`",
        ));
        return default;
    }
    value
}

/// `HOST:PORT` with a port from 1 to 65535; the host may be `{address}`.
pub fn check_host_port(text: &str) -> Result<(), String> {
    let (host, port) = text
        .rsplit_once(':')
        .ok_or_else(|| format!("`{text}` is not HOST:PORT"))?;
    if !port.parse::<u16>().is_ok_and(|port| port > 0) {
        return Err(format!("`{text}` has no port from 1 to 65535"));
    }
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host.contains(char::is_whitespace) || host.contains('/') {
        return Err(format!("`{text}` has no host"));
    }
    Ok(())
}

fn tcp_check(tcp: &TcpSpec, issues: &mut Vec<HealthIssue>) -> Option<HealthCheck> {
    let address = match tcp {
        TcpSpec::Port(0) => {
            issues.push(issue(
                "/tcp",
                "`tcp` port 0 is not a port",
                "give a port from 1 to 65535",
            ));
            return None;
        }
        TcpSpec::Port(port) => format!("{ADDRESS}:{port}"),
        TcpSpec::Address(text) => text.trim().to_string(),
    };
    if let Err(problem) = check_host_port(&address) {
        issues.push(issue(
            "/tcp",
            format!("`tcp`: {problem}"),
            "write `HOST:PORT`, e.g. `\"{address}:22\"` or `\"10.0.0.5:22\"`, or a port alone",
        ));
        return None;
    }
    Some(HealthCheck::Tcp { address })
}

fn http_check(http: &HttpSpec, issues: &mut Vec<HealthIssue>) -> Option<HealthCheck> {
    let (url, status, body_contains) = match http {
        HttpSpec::Url(url) => (url.trim(), None, None),
        HttpSpec::Full {
            url,
            status,
            body_contains,
        } => (url.trim(), *status, body_contains.clone()),
    };
    let status = status.unwrap_or(200);
    let mut fine = true;
    if !(url.starts_with("http://") || url.starts_with("https://"))
        || url.contains(char::is_whitespace)
    {
        issues.push(issue(
            "/http/url",
            format!("`http.url` `{url}` is not an http:// or https:// URL"),
            "e.g. `url: \"http://{address}:8080/health\"`",
        ));
        fine = false;
    }
    if !(100..=599).contains(&status) {
        issues.push(issue(
            "/http/status",
            format!("`http.status` {status} is not an HTTP status"),
            "give the status the check expects, from 100 to 599 (default 200)",
        ));
        fine = false;
    }
    fine.then(|| HealthCheck::Http {
        url: url.to_string(),
        status,
        body_contains,
    })
}

fn command_check(
    command: &CommandSpec,
    dir: &Path,
    issues: &mut Vec<HealthIssue>,
) -> Option<HealthCheck> {
    let mut argv = match command {
        CommandSpec::Shell(line) if !line.trim().is_empty() => {
            vec!["sh".to_string(), "-c".to_string(), line.clone()]
        }
        CommandSpec::Program(argv) if argv.first().is_some_and(|p| !p.trim().is_empty()) => {
            argv.clone()
        }
        _ => {
            issues.push(issue(
                "/command",
                "`command` is empty",
                "give a program and its arguments, e.g. `[\"./check.sh\", \"--quick\"]`, or a \
                 shell line",
            ));
            return None;
        }
    };
    // A relative program path (`./check.sh`) is relative to the manifest, like other paths.
    if argv[0].contains('/') && !Path::new(&argv[0]).is_absolute() {
        argv[0] = std::path::absolute(dir.join(&argv[0]))
            .unwrap_or_else(|_| dir.join(&argv[0]))
            .to_string_lossy()
            .into_owned();
    }
    Some(HealthCheck::Command {
        argv,
        dir: dir.to_string_lossy().into_owned(),
    })
}

/// Checks a server's `address:`: a host name or IP address, without a port.
pub fn check_address(text: &str) -> Result<(), String> {
    let host = text.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty()
        || host.contains(char::is_whitespace)
        || host.contains('/')
        || host.contains(['{', '}'])
    {
        return Err(format!("`{text}` is not a host name or IP address"));
    }
    if !host.contains("::") && host.matches(':').count() == 1 {
        return Err(format!(
            "`{text}` has a port: give the host alone (ports go in the health check)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolved(yaml_like: serde_json::Value) -> Result<DesiredHealth, Vec<HealthIssue>> {
        let setting: HealthSetting = serde_json::from_value(yaml_like).unwrap();
        resolve(&setting, Path::new("/m"), "servers[web-1].health")
    }

    #[test]
    fn each_kind_of_check_resolves_with_defaults() {
        let DesiredHealth::Gate(gate) = resolved(serde_json::json!({"tcp": 22})).unwrap() else {
            panic!("gate")
        };
        assert_eq!(
            gate.check,
            HealthCheck::Tcp {
                address: "{address}:22".into()
            }
        );
        assert_eq!(
            (gate.timeout_s, gate.interval_s, gate.attempts),
            (5.0, 10.0, 30)
        );
        let DesiredHealth::Gate(gate) = resolved(serde_json::json!({
            "http": {"url": "http://{address}:8080/h", "status": 204, "body_contains": "ok"},
            "timeout": 2, "interval": 0, "attempts": 3
        }))
        .unwrap() else {
            panic!("gate")
        };
        assert_eq!(
            gate.check.describe(),
            "http GET http://{address}:8080/h → 204 with \"ok\" in the body"
        );
        assert_eq!((gate.interval_s, gate.attempts), (0.0, 3));
        let DesiredHealth::Gate(gate) =
            resolved(serde_json::json!({"command": ["./check.sh", "{name}"]})).unwrap()
        else {
            panic!("gate")
        };
        assert_eq!(
            gate.check,
            HealthCheck::Command {
                argv: vec!["/m/check.sh".into(), "{name}".into()],
                dir: "/m".into()
            }
        );
        let DesiredHealth::Gate(gate) =
            resolved(serde_json::json!({"command": "test -n \"$X\""})).unwrap()
        else {
            panic!("gate")
        };
        assert!(
            matches!(gate.check, HealthCheck::Command { ref argv, .. } if argv[..2] == ["sh", "-c"])
        );
        assert_eq!(
            resolved(serde_json::json!(false)).unwrap(),
            DesiredHealth::Off
        );
    }

    #[test]
    fn bad_blocks_name_the_field() {
        let pointers = |value| {
            resolved(value)
                .unwrap_err()
                .into_iter()
                .map(|issue| issue.pointer)
                .collect::<Vec<_>>()
        };
        assert_eq!(pointers(serde_json::json!(true)), [""]);
        assert_eq!(pointers(serde_json::json!({"timeout": 3})), [""]);
        assert_eq!(
            pointers(serde_json::json!({"tcp": 22, "command": "true"})),
            [""]
        );
        assert_eq!(pointers(serde_json::json!({"tcp": "nohost"})), ["/tcp"]);
        assert_eq!(pointers(serde_json::json!({"tcp": 0})), ["/tcp"]);
        assert_eq!(
            pointers(serde_json::json!({"http": {"url": "ftp://x", "status": 42}})),
            ["/http/url", "/http/status"]
        );
        assert_eq!(
            pointers(serde_json::json!({"command": [], "attempts": 0, "timeout": 0})),
            ["/timeout", "/attempts", "/command"]
        );
    }

    #[test]
    fn placeholders_are_filled_and_ipv6_goes_in_brackets() {
        let check = HealthCheck::Http {
            url: "http://{address}:80/{name}/{id}".into(),
            status: 200,
            body_contains: None,
        };
        assert!(check.needs_address());
        assert_eq!(
            check.filled("web-1", "i-1", Some("::1")).describe(),
            "http GET http://[::1]:80/web-1/i-1 → 200"
        );
        let tcp = HealthCheck::Tcp {
            address: "10.0.0.1:22".into(),
        };
        assert!(!tcp.needs_address());
    }

    #[test]
    fn addresses_are_hosts_without_ports() {
        for good in ["10.0.0.5", "web-1.example.net", "::1", "[2001:db8::1]"] {
            assert!(check_address(good).is_ok(), "{good}");
        }
        for bad in ["", "10.0.0.5:22", "a b", "http://x", "{address}"] {
            assert!(check_address(bad).is_err(), "{bad}");
        }
    }

    fn load_manifest(
        text: &str,
    ) -> Result<crate::manifest::Loaded, crate::manifest::ManifestErrors> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("reimage.yaml");
        std::fs::write(&path, text).unwrap();
        crate::manifest::load(
            &[path],
            &crate::manifest::LoadOptions {
                secrets: crate::manifest::SecretCheck::BestEffort,
                provider_setup: false,
                rules: &crate::provider::registry::RULES,
            },
        )
    }

    const FLEET: &str = r#"version: 1
providers:
  zl: {type: zenlayer-bmc}
defaults:
  os: {image: img-1}
  access: {ssh_key_id: key-1}
  health: {tcp: 22, attempts: 3}
policy:
  groups:
    web: {health: {http: "http://{address}/health"}}
    quiet: {health: false}
servers:
  - {name: a, id: "1"}
  - {name: b, id: "2", group: web, address: 203.0.113.7}
  - {name: c, id: "3", group: web, health: {command: "true", interval: 0}}
  - {name: d, id: "4", group: quiet}
"#;

    #[test]
    fn the_most_specific_health_block_applies_whole() {
        let loaded = load_manifest(FLEET).unwrap();
        let by_name = |name: &str| {
            loaded
                .manifest
                .servers
                .iter()
                .find(|server| server.name == name)
                .unwrap()
                .clone()
        };
        let gate = |name: &str| match by_name(name).health {
            DesiredHealth::Gate(gate) => gate,
            other => panic!("{name}: {other:?}"),
        };
        assert_eq!(gate("a").source, "defaults.health");
        assert_eq!(gate("a").attempts, 3);
        assert_eq!(gate("b").source, "policy.groups.web.health");
        assert_eq!(
            gate("b").attempts,
            DEFAULT_ATTEMPTS,
            "the group's block is whole"
        );
        assert_eq!(by_name("b").address.as_deref(), Some("203.0.113.7"));
        assert_eq!(gate("c").source, "servers[c].health");
        assert_eq!(by_name("d").health, DesiredHealth::Off);
    }

    #[test]
    fn a_bad_health_block_is_reported_once_at_its_field() {
        let text = FLEET
            .replace("{tcp: 22, attempts: 3}", "{tcp: \"no-port\"}")
            .replace("address: 203.0.113.7", "address: \"203.0.113.7:22\"");
        let errors = load_manifest(&text).unwrap_err().diagnostics;
        let health: Vec<_> = errors
            .iter()
            .filter(|d| d.code == "manifest::health")
            .collect();
        assert_eq!(health.len(), 1, "{errors:#?}");
        assert_eq!(health[0].pointer.as_deref(), Some("/defaults/health/tcp"));
        assert_eq!(health[0].line, Some(7));
        let address: Vec<_> = errors
            .iter()
            .filter(|d| d.code == "manifest::bad-address")
            .collect();
        assert_eq!(address.len(), 1);
        assert!(
            address[0].message.contains("has a port"),
            "{}",
            address[0].message
        );
    }
}
