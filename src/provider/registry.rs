//! The provider types there are: one line per type. Building a provider, checking its manifest
//! entry and its servers' inputs are all dispatched from [`KINDS`]; a test holds both JSON
//! schemas' `type` enums to it. Adding a provider type is its folder plus one line here (and
//! its variant of [`ProviderType`]).

use secrecy::SecretString;

use super::limits::WaitSink;
use super::{FieldIssue, Provider, ProviderError, edis, huaweicloud, jdcloud, zenlayer};
use crate::manifest::model::ProviderConfig;
use crate::manifest::{DesiredProvider, DesiredServer, ProviderRules, ProviderType, SetupRefusal};

type Build = fn(&DesiredProvider, Option<&str>) -> Result<Box<dyn Provider>, ProviderError>;
type CheckConfig = fn(&ProviderConfig) -> Vec<FieldIssue>;
type CheckServer = fn(&DesiredServer, Option<&SecretString>) -> Vec<FieldIssue>;

/// One provider type: how it is built and which rules its inputs follow.
pub struct ProviderKind {
    pub provider_type: ProviderType,
    /// Builds a live provider; `endpoint_override` replaces the configured endpoint.
    pub build: Build,
    /// The type's own rules for its manifest entry (credential keys, options).
    pub check_config: CheckConfig,
    /// The type's documented rules for one server's inputs (no network).
    pub check_server: CheckServer,
}

macro_rules! kind {
    ($type:ident, $module:ident :: $provider:ident) => {
        ProviderKind {
            provider_type: ProviderType::$type,
            build: |config, endpoint| Ok(Box::new($module::$provider::new(config, endpoint)?)),
            check_config: $module::settings::check_config,
            check_server: $module::validate_server,
        }
    };
}

/// Every provider type, in the order the schemas list them.
pub const KINDS: &[ProviderKind] = &[
    kind!(ZenlayerBmc, zenlayer::ZenlayerBmc),
    kind!(HuaweicloudEcs, huaweicloud::HuaweiEcs),
    kind!(HuaweicloudClouddc, huaweicloud::HuaweiClouddc),
    kind!(JdcloudCps, jdcloud::JdcloudCps),
    kind!(EdisKvm, edis::EdisKvm),
];

/// The registry's entry for `provider_type`; `None` only for a type nobody registered (which
/// the registry's test forbids).
pub fn kind(provider_type: ProviderType) -> Option<&'static ProviderKind> {
    KINDS
        .iter()
        .find(|kind| kind.provider_type == provider_type)
}

fn unregistered(provider_type: ProviderType) -> ProviderError {
    ProviderError::Config {
        provider: provider_type.to_string(),
        message: format!("provider type `{provider_type}` is not registered"),
        help: "this build of reimage does not support it".to_string(),
    }
}

/// Builds a live provider from its configuration; it announces its waits to `waits`.
pub fn build(
    config: &DesiredProvider,
    endpoint_override: Option<&str>,
    waits: &WaitSink,
) -> Result<Box<dyn Provider>, ProviderError> {
    let provider_type = config.config.provider_type;
    let kind = kind(provider_type).ok_or_else(|| unregistered(provider_type))?;
    let provider = (kind.build)(config, endpoint_override)?;
    provider.report_waits_to(waits);
    Ok(provider)
}

/// The registry as the manifest checks see it (handed to them by the operations layer).
#[derive(Debug)]
pub struct Rules;

/// The one instance of [`Rules`].
pub static RULES: Rules = Rules;

impl ProviderRules for Rules {
    fn check_config(&self, config: &ProviderConfig) -> Vec<FieldIssue> {
        let mut issues = super::config::common_issues(config);
        match kind(config.provider_type) {
            Some(kind) => issues.extend((kind.check_config)(config)),
            None => issues.push(FieldIssue {
                pointer: "/type".to_string(),
                message: unregistered(config.provider_type).to_string(),
                help: None,
            }),
        }
        issues
    }

    fn check_server(
        &self,
        server: &DesiredServer,
        password: Option<&SecretString>,
    ) -> Vec<FieldIssue> {
        match kind(server.provider_type) {
            Some(kind) => (kind.check_server)(server, password),
            None => Vec::new(),
        }
    }

    fn check_setup(
        &self,
        provider: &DesiredProvider,
        endpoint_override: Option<&str>,
    ) -> Result<(), SetupRefusal> {
        match build(provider, endpoint_override, &WaitSink::none()) {
            Ok(_) => Ok(()),
            Err(ProviderError::Config { message, help, .. }) => Err(SetupRefusal { message, help }),
            Err(other) => Err(SetupRefusal {
                message: other.to_string(),
                help: String::new(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema_types(text: &str, pointer: &str) -> Vec<String> {
        let schema: serde_json::Value = serde_json::from_str(text).unwrap();
        schema
            .pointer(pointer)
            .and_then(|value| value.as_array())
            .unwrap_or_else(|| panic!("no enum at {pointer}"))
            .iter()
            .map(|value| value.as_str().unwrap().to_string())
            .collect()
    }

    fn registered() -> Vec<String> {
        KINDS
            .iter()
            .map(|kind| kind.provider_type.as_str().to_string())
            .collect()
    }

    /// The manifest schema's `type` enum is the registry, in its order.
    #[test]
    fn manifest_schema_lists_the_registered_types() {
        let types = schema_types(
            include_str!("../../schemas/manifest.schema.json"),
            "/$defs/provider/properties/type/enum",
        );
        assert_eq!(types, registered());
    }

    /// The plan schema's `provider_type` enum is the registry, in its order.
    #[test]
    fn plan_schema_lists_the_registered_types() {
        let types = schema_types(
            include_str!("../../schemas/plan.schema.json"),
            "/$defs/provider_type/enum",
        );
        assert_eq!(types, registered());
    }

    /// Each type is registered once, and its name reads back as the same type (so the enum's
    /// serde names and the registry cannot drift apart).
    #[test]
    fn each_type_is_registered_once_under_its_own_name() {
        for (index, kind) in KINDS.iter().enumerate() {
            let parsed: ProviderType =
                serde_json::from_value(serde_json::json!(kind.provider_type.as_str())).unwrap();
            assert_eq!(parsed, kind.provider_type);
            assert!(
                KINDS[index + 1..]
                    .iter()
                    .all(|other| other.provider_type != kind.provider_type),
                "{} registered twice",
                kind.provider_type
            );
        }
    }

    /// Every variant of the enum has its line in the registry.
    #[test]
    fn every_provider_type_is_registered() {
        // An exhaustive match: a new variant fails to compile here until it is listed.
        let listed = |provider_type: ProviderType| match provider_type {
            ProviderType::ZenlayerBmc
            | ProviderType::HuaweicloudEcs
            | ProviderType::HuaweicloudClouddc
            | ProviderType::JdcloudCps
            | ProviderType::EdisKvm => provider_type,
        };
        for provider_type in [
            ProviderType::ZenlayerBmc,
            ProviderType::HuaweicloudEcs,
            ProviderType::HuaweicloudClouddc,
            ProviderType::JdcloudCps,
            ProviderType::EdisKvm,
        ] {
            assert!(kind(listed(provider_type)).is_some(), "{provider_type}");
        }
    }
}
