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
