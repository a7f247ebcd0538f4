//! Live providers for a manifest or plan, and batched, concurrent observation through them.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::task::JoinSet;

use crate::emulator::{self, EmulatorConfig, RunningEmulator};
use crate::error::{Error, Result};
use crate::manifest::{DesiredProvider, DesiredServer, EmbeddedEmulator};
use crate::provider::{self, Observation, Provider, ProviderError};

/// The reserved endpoint value that means "the emulator started inside this process".
pub const EMBEDDED_ENDPOINT: &str = "emulator";

/// Read calls in flight at once per provider.
const OBSERVE_CONCURRENCY: usize = 4;

/// The providers a run talks to (and the embedded emulator, kept alive as long as they are).
pub struct Fleet {
    providers: BTreeMap<String, Arc<dyn Provider>>,
    _emulator: Option<RunningEmulator>,
}

impl Fleet {
    /// Builds every configured provider; starts the embedded emulator first when one uses it.
    pub async fn connect(
        providers: &BTreeMap<String, DesiredProvider>,
        emulator: Option<&EmbeddedEmulator>,
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
            let provider = provider::build(config, override_endpoint.as_deref())?;
            built.insert(name.clone(), Arc::from(provider));
        }
        Ok(Fleet {
            providers: built,
            _emulator: running,
        })
    }

    pub fn provider(&self, name: &str) -> Result<Arc<dyn Provider>> {
        self.providers.get(name).cloned().ok_or_else(|| {
            Error::usage(
                format!("provider `{name}` is not configured"),
                "check the server's `provider` field",
            )
        })
    }

    /// Observes the given servers: ids batched to each provider's limit, a few calls in
    /// flight per provider. Returns observations by server name.
    pub async fn observe(
        &self,
        servers: &[&DesiredServer],
    ) -> Result<BTreeMap<String, Observation>> {
        let mut ids_by_provider: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for server in servers {
            ids_by_provider
                .entry(server.provider.as_str())
                .or_default()
                .push(server.cloud_id.clone());
        }
        let mut by_id: BTreeMap<(String, String), Observation> = BTreeMap::new();
        for (provider_name, mut ids) in ids_by_provider {
            ids.sort();
            ids.dedup();
            let provider = self.provider(provider_name)?;
            let batch = provider.capabilities().observe_batch.max(1);
            let chunks: Vec<Vec<String>> = ids.chunks(batch).map(<[String]>::to_vec).collect();
            let semaphore = Arc::new(tokio::sync::Semaphore::new(OBSERVE_CONCURRENCY));
            let mut tasks: JoinSet<
                std::result::Result<BTreeMap<String, Observation>, ProviderError>,
            > = JoinSet::new();
            for chunk in chunks {
                let provider = provider.clone();
                let semaphore = semaphore.clone();
                tasks.spawn(async move {
                    let _permit = semaphore.acquire_owned().await;
                    provider.observe(&chunk).await
                });
            }
            while let Some(joined) = tasks.join_next().await {
                let observed = joined.map_err(|error| Error::Io {
                    message: format!("an observe task failed: {error}"),
                })??;
                for (id, observation) in observed {
                    by_id.insert((provider_name.to_string(), id), observation);
                }
            }
        }
        Ok(servers
            .iter()
            .map(|server| {
                let observation = by_id
                    .get(&(server.provider.clone(), server.cloud_id.clone()))
                    .cloned()
                    .unwrap_or(Observation::NotFound);
                (server.name.clone(), observation)
            })
            .collect())
    }
}
