//! Live providers for a manifest or plan, and batched, concurrent observation through them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use tokio::task::JoinSet;

use crate::emulator::{self, EmulatorConfig, RunningEmulator};
use crate::error::{Error, Result};
use crate::manifest::{DesiredProvider, DesiredServer, EmbeddedEmulator};
use crate::provider::{self, FieldIssue, Observation, Provider, ProviderError};

/// The reserved endpoint value that means "the emulator started inside this process".
pub const EMBEDDED_ENDPOINT: &str = "emulator";

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

    /// Observes the given servers: every provider at once, each batching ids to its API's
    /// limit and keeping to its own rate limits (which also cap its calls in flight), so a slow
    /// or throttled provider holds up only its own servers. Returns observations by server name.
    pub async fn observe(
        &self,
        servers: &[&DesiredServer],
    ) -> Result<BTreeMap<String, Observation>> {
        let mut ids_by_provider: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for server in servers {
            ids_by_provider
                .entry(server.provider.as_str())
                .or_default()
                .insert(server.cloud_id.as_str());
        }
        type Read = (
            String,
            std::result::Result<BTreeMap<String, Observation>, ProviderError>,
        );
        let mut tasks: JoinSet<Read> = JoinSet::new();
        for (provider_name, ids) in ids_by_provider {
            let provider = self.provider(provider_name)?;
            let batch = provider.capabilities().observe_batch.max(1);
            let ids: Vec<&str> = ids.into_iter().collect();
            for chunk in ids.chunks(batch) {
                let provider = provider.clone();
                let provider_name = provider_name.to_string();
                let chunk: Vec<String> = chunk.iter().map(|id| id.to_string()).collect();
                tasks.spawn(async move {
                    let observed = provider.observe(&chunk).await;
                    (provider_name, observed)
                });
            }
        }
        let mut by_id: HashMap<(String, String), Observation> = HashMap::new();
        while let Some(joined) = tasks.join_next().await {
            let (provider_name, observed) = joined.map_err(|error| Error::Io {
                message: format!("an observe task failed: {error}"),
            })?;
            // The first failure ends the plan; dropping the set cancels the other reads.
            for (id, observation) in observed? {
                by_id.insert((provider_name.clone(), id), observation);
            }
        }
        // Moved, not copied: a cloud id names one server of a provider (the manifest refuses
        // duplicates), and a fleet's observations are not held twice.
        let mut observations = BTreeMap::new();
        for server in servers {
            let key = (server.provider.clone(), server.cloud_id.clone());
            let observation = by_id.remove(&key).unwrap_or(Observation::NotFound);
            observations.insert(server.name.clone(), observation);
        }
        Ok(observations)
    }

    /// Lets each provider check what needs its catalogue (image names, OS ids), every provider
    /// at once, with the servers as just observed (so nothing is read twice). Returns each
    /// problem as (server name, issue).
    pub async fn check_desired(
        &self,
        servers: &[&DesiredServer],
        observed: &BTreeMap<String, Observation>,
    ) -> Result<Vec<(String, FieldIssue)>> {
        let not_found = Observation::NotFound;
        let mut by_provider: BTreeMap<&str, Vec<(&DesiredServer, &Observation)>> = BTreeMap::new();
        for server in servers {
            by_provider
                .entry(server.provider.as_str())
                .or_default()
                .push((server, observed.get(&server.name).unwrap_or(&not_found)));
        }
        let mut checks = Vec::new();
        for (name, servers) in by_provider {
            let provider = self.provider(name)?;
            checks.push(async move { provider.check_desired(&servers).await });
        }
        let mut problems = Vec::new();
        for found in futures_util::future::join_all(checks).await {
            problems.extend(found?);
        }
        Ok(problems)
    }
}
