//! Loading the manifest with the provider registry's rules handed in: the manifest layer checks
//! provider-specific inputs without naming any provider.

use crate::manifest::{LoadOptions, SecretCheck};

/// How a command loads its manifest: `secrets` says whether an unreadable secret is an error;
/// `provider_setup` also builds each provider without network, as `plan` will.
pub fn load_options(secrets: SecretCheck, provider_setup: bool) -> LoadOptions {
    LoadOptions {
        secrets,
        provider_setup,
        rules: &crate::provider::registry::RULES,
    }
}

/// `validate`: every check that needs no network, provider rules included; an unreadable secret
/// or a provider this environment cannot set up is a warning (CI may provide it later).
pub fn validate(
    paths: &[std::path::PathBuf],
) -> Result<crate::manifest::Loaded, crate::manifest::ManifestErrors> {
    crate::manifest::load(paths, &load_options(SecretCheck::BestEffort, true))
}
