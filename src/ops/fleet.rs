//! Connecting a run's providers: the embedded emulator started first when one uses it, then each
//! provider built through the registry, announcing its waits to the sink handed in.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::emulator::{self, EmulatorConfig};
use crate::error::{Error, Result};
use crate::manifest::{DesiredProvider, EmbeddedEmulator};
use crate::provider::limits::WaitSink;
use crate::provider::{Provider, registry};

pub use crate::provider::fleet::Fleet;

/// The reserved endpoint value that means "the emulator started inside this process".
pub const EMBEDDED_ENDPOINT: &str = "emulator";

/// Builds every configured provider; starts the embedded emulator first when one uses it. The
/// only place the operations layer reaches into the emulator.
pub async fn connect(
    providers: &BTreeMap<String, DesiredProvider>,
    emulator: Option<&EmbeddedEmulator>,
    waits: &WaitSink,
) -> Result<Fleet> {
    let wants_emulator = providers
        .values()
        .any(|provider| provider.config.endpoint.as_deref() == Some(EMBEDDED_ENDPOINT));
    let running = match (wants_emulator, emulator) {
        (false, _) => None,
        (true, None) => {
            return Err(Error::usage(
                "a provider uses `endpoint: emulator` but the manifest has no `emulator` section",
                "add `emulator: {inventory: FILE}` to the manifest",
            ));
        }
        (true, Some(settings)) => Some(
            emulator::start(EmulatorConfig {
                listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
                inventory: settings.inventory.clone(),
                data_dir: settings.data_dir.clone(),
                install_seconds: settings.install_seconds,
            })
            .await?,
        ),
    };
    let mut built: BTreeMap<String, Arc<dyn Provider>> = BTreeMap::new();
    for (name, config) in providers {
        let override_endpoint = match &running {
            Some(emulator) if config.config.endpoint.as_deref() == Some(EMBEDDED_ENDPOINT) => {
                let endpoint = emulator
                    .endpoints
                    .get(&config.config.provider_type)
                    .cloned()
                    .ok_or_else(|| {
                        Error::usage(
                            format!(
                                "the built-in emulator does not serve `{}` yet",
                                config.config.provider_type
                            ),
                            "use a real endpoint for this provider",
                        )
                    })?;
                Some(endpoint)
            }
            _ => None,
        };
        let provider = registry::build(config, override_endpoint.as_deref(), waits)?;
        built.insert(name.clone(), Arc::from(provider));
    }
    let fleet = Fleet::new(built, waits.clone());
    Ok(match running {
        Some(running) => fleet.keeping_alive(Box::new(running)),
        None => fleet,
    })
}
