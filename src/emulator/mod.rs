//! The built-in emulator of the providers' APIs: real HTTP on loopback, real signature checks,
//! async installs, fault injection. Placeholder: the real emulator replaces this file.

pub mod inventory;
pub mod world;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::manifest::ProviderType;

/// How to start an emulator.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    pub listen: SocketAddr,
    pub inventory: PathBuf,
    /// Where the world is persisted, so separate processes see one world.
    pub data_dir: PathBuf,
    /// Overrides the inventory's install duration.
    pub install_seconds: Option<f64>,
}

/// A running emulator; it stops when dropped.
pub struct RunningEmulator {
    pub address: SocketAddr,
    /// Base URL of each API served, by provider type.
    pub endpoints: BTreeMap<ProviderType, String>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("emulator: {0}")]
pub struct EmulatorError(pub String);

/// Starts serving in the background of the current tokio runtime.
pub async fn start(_config: EmulatorConfig) -> Result<RunningEmulator, EmulatorError> {
    Err(EmulatorError("not implemented".into()))
}

impl Drop for RunningEmulator {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}
