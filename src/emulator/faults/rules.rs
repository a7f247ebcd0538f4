//! The fault menu's vocabulary (call kinds, faults, selectors), the rule armed through
//! `POST /_emulator/faults`, and the checks that turn a request's rule into an armed one with a
//! message naming the offending field.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::manifest::ProviderType;

/// Every provider type the emulator serves, in the order error messages list them.
pub const PROVIDER_TYPES: [ProviderType; 5] = [
    ProviderType::ZenlayerBmc,
    ProviderType::HuaweicloudEcs,
    ProviderType::HuaweicloudClouddc,
    ProviderType::EdisKvm,
    ProviderType::JdcloudCps,
];

/// What an API call does, as far as faults are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallKind {
    Reinstall,
    ChangeOs,
    Stop,
    /// A read of server state (describe, list, show).
    Read,
    /// A job, task or operation status query.
    Status,
    /// A login, ticket or project lookup.
    Auth,
    /// Anything else (image and OS catalogues, unknown routes); only `*` selects it.
    Other,
}

impl CallKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reinstall => "reinstall",
            Self::ChangeOs => "change_os",
            Self::Stop => "stop",
            Self::Read => "read",
            Self::Status => "status",
            Self::Auth => "auth",
            Self::Other => "other",
        }
    }

    pub fn is_mutating(self) -> bool {
        matches!(self, Self::Reinstall | Self::ChangeOs | Self::Stop)
    }

    /// Reads and status queries: a client retries them a bounded number of times, so random
    /// refusals of them are capped (see [`super::book::MAX_RANDOM_REFUSALS_IN_A_ROW`]).
    pub fn is_read_like(self) -> bool {
        matches!(self, Self::Read | Self::Status)
    }
}

/// Which calls a rule applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallSelector {
    Any,
    Mutating,
    Kind(CallKind),
}

const CALL_WORDS: &str = "reinstall, change_os, stop, read, status, auth, mutating, *";

impl CallSelector {
    pub fn parse(word: &str) -> Option<CallSelector> {
        Some(match word {
            "*" => Self::Any,
            "mutating" => Self::Mutating,
            "reinstall" => Self::Kind(CallKind::Reinstall),
            "change_os" => Self::Kind(CallKind::ChangeOs),
            "stop" => Self::Kind(CallKind::Stop),
            "read" => Self::Kind(CallKind::Read),
            "status" => Self::Kind(CallKind::Status),
            "auth" => Self::Kind(CallKind::Auth),
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Any => "*",
            Self::Mutating => "mutating",
            Self::Kind(kind) => kind.as_str(),
        }
    }

    pub fn selects(self, kind: CallKind) -> bool {
        match self {
            Self::Any => true,
            Self::Mutating => kind.is_mutating(),
            Self::Kind(selected) => selected == kind,
        }
    }

    /// Whether some call this selects can act (what `late_status` needs).
    fn can_select_acting_calls(self) -> bool {
        match self {
            Self::Any | Self::Mutating => true,
            Self::Kind(kind) => kind.is_mutating(),
        }
    }
}

impl Serialize for CallSelector {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for CallSelector {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let word = String::deserialize(deserializer)?;
        CallSelector::parse(&word).ok_or_else(|| {
            serde::de::Error::custom(format!("unknown call `{word}`; allowed: {CALL_WORDS}"))
        })
    }
}

/// What happens to a matching call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum FaultKind {
    /// HTTP 500 in the API's error shape, before acting.
    #[serde(rename = "error_5xx")]
    Error5xx,
    /// HTTP 429 with `Retry-After`, before acting; `burst` in a row once fired.
    #[serde(rename = "throttle_429")]
    Throttle429,
    /// The call acts, then the connection is closed without an answer.
    #[serde(rename = "drop_after")]
    DropAfter,
    /// The call acts, then the answer waits `seconds`.
    #[serde(rename = "slow_after")]
    SlowAfter,
    /// The call acts, but reads of its servers show them as before for `seconds`.
    #[serde(rename = "late_status")]
    LateStatus,
    /// The call waits `seconds` before being handled.
    #[serde(rename = "latency")]
    Latency,
    /// Beyond `per_second` calls in any one-second window, 429 before acting.
    #[serde(rename = "rate_limit")]
    RateLimit,
}

const FAULT_WORDS: &str =
    "error_5xx, throttle_429, drop_after, slow_after, late_status, latency, rate_limit";

impl FaultKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Error5xx => "error_5xx",
            Self::Throttle429 => "throttle_429",
            Self::DropAfter => "drop_after",
            Self::SlowAfter => "slow_after",
            Self::LateStatus => "late_status",
            Self::Latency => "latency",
            Self::RateLimit => "rate_limit",
        }
    }

    fn parse(word: &str) -> Option<FaultKind> {
        [
            Self::Error5xx,
            Self::Throttle429,
            Self::DropAfter,
            Self::SlowAfter,
            Self::LateStatus,
            Self::Latency,
            Self::RateLimit,
        ]
        .into_iter()
        .find(|fault| fault.as_str() == word)
    }
}

/// Which provider types a rule applies to: `"*"`, one type, or (from the legacy keys, which
/// arm Huawei's two APIs at once) a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderSelector {
    Any,
    Only(Vec<ProviderType>),
}

impl ProviderSelector {
    /// The first of `providers` this selects, if any.
    pub fn first_selected(&self, providers: &[ProviderType]) -> Option<ProviderType> {
        match self {
            Self::Any => providers.first().copied(),
            Self::Only(selected) => providers
                .iter()
                .find(|provider| selected.contains(provider))
                .copied(),
        }
    }

    /// The provider types whose servers `ids` may name.
    pub fn types(&self) -> Vec<ProviderType> {
        match self {
            Self::Any => PROVIDER_TYPES.to_vec(),
            Self::Only(selected) => selected.clone(),
        }
    }

    fn parse_one(word: &str) -> Result<ProviderType, String> {
        PROVIDER_TYPES
            .into_iter()
            .find(|provider| provider.as_str() == word)
            .ok_or_else(|| {
                let allowed: Vec<&str> = PROVIDER_TYPES.iter().map(|p| p.as_str()).collect();
                format!(
                    "unknown provider `{word}`; allowed: {}, *",
                    allowed.join(", ")
                )
            })
    }
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum ProviderRepr {
    One(String),
    Many(Vec<String>),
}

impl Serialize for ProviderSelector {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Any => serializer.serialize_str("*"),
            Self::Only(types) if types.len() == 1 => serializer.serialize_str(types[0].as_str()),
            Self::Only(types) => {
                let words: Vec<&str> = types.iter().map(|p| p.as_str()).collect();
                words.serialize(serializer)
            }
        }
    }
}

impl<'de> Deserialize<'de> for ProviderSelector {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let repr = ProviderRepr::deserialize(deserializer).map_err(|_| {
            serde::de::Error::custom("expected a provider type, a list of them, or \"*\"")
        })?;
        let words = match repr {
            ProviderRepr::One(word) if word == "*" => return Ok(Self::Any),
            ProviderRepr::One(word) => vec![word],
            ProviderRepr::Many(words) => words,
        };
        if words.is_empty() {
            return Err(serde::de::Error::custom("the list of providers is empty"));
        }
        words
            .iter()
            .map(|word| ProviderSelector::parse_one(word))
            .collect::<Result<Vec<_>, _>>()
            .map(Self::Only)
            .map_err(serde::de::Error::custom)
    }
}

/// An armed rule, as persisted in the world and shown by the admin endpoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Unique within a world; keys the rule's rate-limit windows and bursts.
    pub id: u64,
    pub provider: ProviderSelector,
    pub call: CallSelector,
    pub fault: FaultKind,
    /// Probability per matching call.
    pub rate: f64,
    /// Fire at most this many times (for `throttle_429`: bursts); `None`: unlimited.
    pub count: Option<u64>,
    /// Only calls naming one of these server ids; empty: any call.
    pub ids: Vec<String>,
    pub seconds: Option<f64>,
    pub burst: u32,
    pub per_second: Option<u32>,
    /// How many times it fired so far.
    pub fired: u64,
    /// The legacy key (`zenlayer.status_429_next`, …) this rule stands for, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub legacy: Option<String>,
}

impl Rule {
    /// A rule firing on every matching call, without limits (legacy keys build on it).
    pub fn always(provider: ProviderSelector, call: CallSelector, fault: FaultKind) -> Rule {
        Rule {
            id: 0,
            provider,
            call,
            fault,
            rate: 1.0,
            count: None,
            ids: Vec::new(),
            seconds: None,
            burst: 1,
            per_second: None,
            fired: 0,
            legacy: None,
        }
    }

    pub fn exhausted(&self) -> bool {
        self.count.is_some_and(|count| self.fired >= count)
    }

    /// How many more times it may fire (`None`: unlimited).
    pub fn remaining(&self) -> Option<u64> {
        self.count.map(|count| count.saturating_sub(self.fired))
    }

    /// The provider type a call is matched as, when this rule selects the call.
    pub fn selects(&self, call: &super::Call) -> Option<ProviderType> {
        if !self.call.selects(call.kind) {
            return None;
        }
        if !self.ids.is_empty() && !call.ids.iter().any(|id| self.ids.contains(id)) {
            return None;
        }
        self.provider.first_selected(call.providers)
    }

    /// `Retry-After` of its 429s, in whole seconds (`seconds` rounded up, default 1).
    pub fn retry_after_seconds(&self) -> u64 {
        self.seconds.map_or(1, |seconds| seconds.ceil() as u64)
    }

    pub fn duration(&self) -> std::time::Duration {
        std::time::Duration::try_from_secs_f64(self.seconds.unwrap_or(0.0)).unwrap_or_default()
    }
}

/// One rule of a `POST /_emulator/faults` request, before its checks.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleRequest {
    #[serde(default)]
    provider: Option<ProviderSelector>,
    #[serde(default)]
    call: Option<CallSelector>,
    #[serde(default)]
    fault: Option<String>,
    #[serde(default)]
    rate: Option<f64>,
    #[serde(default)]
    count: Option<u64>,
    #[serde(default)]
    ids: Option<Vec<String>>,
    #[serde(default)]
    seconds: Option<f64>,
    #[serde(default)]
    burst: Option<u32>,
    #[serde(default)]
    per_second: Option<u32>,
}

impl RuleRequest {
    /// Checks the rule; `at` names it in messages (`rules[2]`); `known_ids` lists the servers
    /// of a provider type. The armed rule's id is set by the caller.
    pub fn check(
        self,
        at: &str,
        known_ids: &dyn Fn(ProviderType) -> Vec<String>,
    ) -> Result<Rule, String> {
        let provider = self
            .provider
            .ok_or_else(|| format!("{at}.provider is required (a provider type or \"*\")"))?;
        let call = self
            .call
            .ok_or_else(|| format!("{at}.call is required; allowed: {CALL_WORDS}"))?;
        let word = self
            .fault
            .ok_or_else(|| format!("{at}.fault is required; allowed: {FAULT_WORDS}"))?;
        let fault = FaultKind::parse(&word)
            .ok_or_else(|| format!("{at}.fault: unknown fault `{word}`; allowed: {FAULT_WORDS}"))?;
        let rate = self.rate.unwrap_or(1.0);
        if !(rate.is_finite() && (0.0..=1.0).contains(&rate)) {
            return Err(format!("{at}.rate must be between 0 and 1, not {rate}"));
        }
        if self.count == Some(0) {
            return Err(format!(
                "{at}.count must be at least 1 (leave it out for no limit)"
            ));
        }
        let needs_seconds = matches!(
            fault,
            FaultKind::SlowAfter | FaultKind::LateStatus | FaultKind::Latency
        );
        let takes_seconds =
            needs_seconds || matches!(fault, FaultKind::Throttle429 | FaultKind::RateLimit);
        match self.seconds {
            None if needs_seconds => {
                return Err(format!(
                    "{at}.seconds is required for {} (the delay, in seconds)",
                    fault.as_str()
                ));
            }
            Some(_) if !takes_seconds => {
                return Err(format!(
                    "{at}.seconds is not used by {}; remove it",
                    fault.as_str()
                ));
            }
            Some(seconds) if !(seconds.is_finite() && (0.0..=3600.0).contains(&seconds)) => {
                return Err(format!(
                    "{at}.seconds must be between 0 and 3600, not {seconds}"
                ));
            }
            _ => {}
        }
        let burst = match (self.burst, fault) {
            (None, _) => 1,
            (Some(0), _) => return Err(format!("{at}.burst must be at least 1")),
            (Some(burst), FaultKind::Throttle429) => burst,
            (Some(_), _) => {
                return Err(format!(
                    "{at}.burst is only used by throttle_429; remove it"
                ));
            }
        };
        match (self.per_second, fault) {
            (None, FaultKind::RateLimit) => {
                return Err(format!(
                    "{at}.per_second is required for rate_limit (calls allowed per second)"
                ));
            }
            (Some(0), FaultKind::RateLimit) => {
                return Err(format!("{at}.per_second must be at least 1"));
            }
            (Some(_), fault) if fault != FaultKind::RateLimit => {
                return Err(format!(
                    "{at}.per_second is only used by rate_limit; remove it"
                ));
            }
            _ => {}
        }
        if fault == FaultKind::LateStatus && !call.can_select_acting_calls() {
            return Err(format!(
                "{at}.call: late_status delays what reads show after a call that acts; use \
                 reinstall, change_os, stop, mutating or *, not `{}`",
                call.as_str()
            ));
        }
        let ids = self.ids.unwrap_or_default();
        let types = provider.types();
        let known: Vec<String> = types.iter().flat_map(|p| known_ids(*p)).collect();
        if let Some(unknown) = ids.iter().find(|id| !known.contains(id)) {
            let names: Vec<&str> = types.iter().map(|p| p.as_str()).collect();
            return Err(format!(
                "{at}.ids: `{unknown}` is not a server of {} in the inventory",
                names.join(" or ")
            ));
        }
        Ok(Rule {
            id: 0,
            provider,
            call,
            fault,
            rate,
            count: self.count,
            ids,
            seconds: self.seconds,
            burst,
            per_second: self.per_second,
            fired: 0,
            legacy: None,
        })
    }
}

/// Parses one rule from JSON, naming the field of a type error (`rules[0].rate: …`).
pub fn parse_rule(at: &str, value: Value) -> Result<RuleRequest, String> {
    serde_path_to_error::deserialize(value).map_err(|error| {
        let path = error.path().to_string();
        let field = if path == "." || path.is_empty() {
            at.to_string()
        } else {
            format!("{at}.{path}")
        };
        format!("{field}: {}", error.inner())
    })
}
