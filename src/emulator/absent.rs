//! A build without the `emulator` feature: the emulator's entry points keep their signatures,
//! and starting one refuses with [`NOT_BUILT`], so callers compile unchanged and users read why.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;

use super::{EmulatorConfig, EmulatorError, NOT_BUILT};
use crate::manifest::ProviderType;

/// Never exists in this build ([`start`] always refuses); the fields match the real one's.
pub struct RunningEmulator {
    pub address: SocketAddr,
    pub endpoints: BTreeMap<ProviderType, String>,
    pub world_file: PathBuf,
    never: Infallible,
}

/// Refuses: this build has no emulator.
pub async fn start(_config: EmulatorConfig) -> Result<RunningEmulator, EmulatorError> {
    Err(EmulatorError(NOT_BUILT.to_string()))
}

impl RunningEmulator {
    pub fn admin_url(&self) -> String {
        match self.never {}
    }

    pub async fn arm_faults(&self, _request: &str) -> Result<serde_json::Value, EmulatorError> {
        match self.never {}
    }

    pub async fn shutdown(self) {
        match self.never {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn starting_says_the_build_has_no_emulator_and_how_to_get_one() {
        // Irrefutable: `RunningEmulator` cannot exist in this build, so `start` cannot succeed.
        let Err(error) = start(EmulatorConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            inventory: PathBuf::from("inventory.yaml"),
            data_dir: PathBuf::from("data"),
            install_seconds: None,
        })
        .await;
        assert_eq!(
            error.to_string(),
            "emulator: this build has no emulator; rebuild with --features emulator"
        );
    }
}
