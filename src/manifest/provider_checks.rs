//! Each configured provider checked the way `plan` builds it, so that `validate` knows what
//! `plan` knows:
//! 1. its type's rules ([`ProviderRules::check_config`]): errors, at the offending field;
//! 2. its credential references: one that cannot be read is a warning for `validate` (CI may
//!    set it later) and an error for `plan`, at the reference;
//! 3. a dry construction, without network: what it still refuses depends on the environment
//!    (the variables the clouds' SDKs read), reported at the provider like an unreadable
//!    secret.

use super::DesiredServer;
use super::desired::DesiredProvider;
use super::diagnostics::{ManifestDiagnostic, SourceFile, child_pointer};
use super::load::{LoadOptions, SecretCheck};
use super::model::ProviderConfig;
use super::secrets;
use crate::model::FieldIssue;
use secrecy::SecretString;

/// The rules of the provider types, as the manifest checks need them. The provider layer
/// implements it (its registry) and the operations layer hands it in through [`LoadOptions`], so
/// the manifest names no provider.
pub trait ProviderRules: Send + Sync + std::fmt::Debug {
    /// Checks a provider's manifest entry against its type's rules, without network or
    /// environment. Pointers are relative to the entry (e.g. `/credentials/acess_key`).
    fn check_config(&self, config: &ProviderConfig) -> Vec<FieldIssue>;

    /// Checks one server's inputs against its provider type's documented rules (no network).
    /// `password` is the resolved password when it could be read, so policy can be checked.
    fn check_server(
        &self,
        server: &DesiredServer,
        password: Option<&SecretString>,
    ) -> Vec<FieldIssue>;

    /// Builds the provider without network (`endpoint_override` replaces its endpoint) and
    /// says what it refuses in this environment.
    fn check_setup(
        &self,
        provider: &DesiredProvider,
        endpoint_override: Option<&str>,
    ) -> Result<(), SetupRefusal>;
}

/// Why a provider could not be built as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetupRefusal {
    pub message: String,
    /// Empty when there is nothing better to say than the message.
    pub help: String,
}

/// The endpoint value that means "the emulator started inside this process".
const EMBEDDED_ENDPOINT: &str = "emulator";

/// Stands in for the embedded emulator's address in the dry construction: nothing is sent.
const DRY_RUN_ENDPOINT: &str = "http://127.0.0.1:9";

/// Checks one provider; `desired` has its credential paths resolved against `file`.
pub(crate) fn check_provider(
    file: &SourceFile,
    desired: &DesiredProvider,
    options: &LoadOptions,
    out: &mut Vec<ManifestDiagnostic>,
) {
    let entry = child_pointer("/providers", &desired.name);
    let type_name = desired.config.provider_type.as_str();
    let issues = options.rules.check_config(&desired.config);
    for issue in &issues {
        let pointer = format!("{entry}{}", issue.pointer);
        let mut diagnostic = ManifestDiagnostic::error("provider-config", issue.message.clone());
        if let Some(help) = &issue.help {
            diagnostic = diagnostic.with_help(help.clone());
        }
        out.push(diagnostic.at(
            file,
            &pointer,
            file.value_span(&pointer),
            format!("not accepted by {type_name}"),
        ));
    }
    if !issues.is_empty() || !options.provider_setup {
        return;
    }

    let mut secrets_readable = true;
    for (key, reference) in &desired.config.credentials {
        let Err(error) = secrets::resolve(reference) else {
            continue;
        };
        secrets_readable = false;
        let pointer = format!("{}/{}", child_pointer(&entry, "credentials"), escape(key));
        let message = format!("credential `{key}` of provider `{}`: {error}", desired.name);
        let diagnostic = needed_now_or_later(options, "secret-unreadable", message);
        let diagnostic = match miette::Diagnostic::help(&error) {
            Some(help) => diagnostic.with_help(help.to_string()),
            None => diagnostic,
        };
        out.push(diagnostic.at(
            file,
            &pointer,
            file.value_span(&pointer),
            "cannot read this secret",
        ));
    }
    if !secrets_readable {
        return;
    }

    let endpoint_override =
        (desired.config.endpoint.as_deref() == Some(EMBEDDED_ENDPOINT)).then_some(DRY_RUN_ENDPOINT);
    if let Err(SetupRefusal { message, help }) =
        options.rules.check_setup(desired, endpoint_override)
    {
        let diagnostic = needed_now_or_later(
            options,
            "provider-setup",
            format!("provider `{}`: {message}", desired.name),
        );
        let diagnostic = if help.is_empty() {
            diagnostic
        } else {
            diagnostic.with_help(help)
        };
        out.push(diagnostic.at(
            file,
            &entry,
            file.spans.key_or_value(&entry),
            "cannot be set up as configured in this environment",
        ));
    }
}

fn escape(key: &str) -> String {
    super::yaml::escape_pointer_segment(key)
}

/// A problem that `plan` cannot get past but the environment of a later run may fix: an error
/// when the run needs it now, a warning for `validate`.
fn needed_now_or_later(options: &LoadOptions, code: &str, message: String) -> ManifestDiagnostic {
    match options.secrets {
        SecretCheck::Required => ManifestDiagnostic::error(code, message),
        SecretCheck::BestEffort => ManifestDiagnostic::warning(code, message),
    }
}
