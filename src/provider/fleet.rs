//! The providers one run talks to, and batched, concurrent observation through them. Built by
//! the operations layer (which also starts the embedded emulator when a provider uses it); the
//! apply engine and the planners use it as it is.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use tokio::task::JoinSet;

use super::limits::{WaitNotice, WaitSink};
use super::{FieldIssue, Observation, Provider, ProviderError};
use crate::error::{Error, Result};
use crate::manifest::DesiredServer;

/// The configured providers by name, the sink their waits are announced to, and whatever must
/// live as long as they do (the embedded emulator they talk to).
pub struct Fleet {
    providers: BTreeMap<String, Arc<dyn Provider>>,
    waits: WaitSink,
    _keep_alive: Option<Box<dyn std::any::Any + Send + Sync>>,
}

impl Fleet {
    /// The providers by name; `waits` is the sink they were built to announce waits to.
    pub fn new(providers: BTreeMap<String, Arc<dyn Provider>>, waits: WaitSink) -> Fleet {
        Fleet {
            providers,
            waits,
            _keep_alive: None,
        }
    }

    /// Keeps `guard` (e.g. the embedded emulator) alive as long as the fleet.
    pub fn keeping_alive(mut self, guard: Box<dyn std::any::Any + Send + Sync>) -> Fleet {
        self._keep_alive = Some(guard);
        self
    }

    /// Every wait the fleet's providers make from now on (rate limits, throttling, retries).
    pub fn waits(&self) -> tokio::sync::broadcast::Receiver<WaitNotice> {
        self.waits.subscribe()
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
        Ok(self.observe_with(servers, false).await?.0)
    }

    /// [`Self::observe`], then each provider checks what needs its catalogue (image names, OS
    /// ids) against its servers as just read (nothing is read twice): each provider as soon
    /// as its own reads are done, so a catalogue look-up never waits for a slower provider.
    /// Returns the observations by server name and every problem as (server name, issue).
    pub async fn observe_and_check(
        &self,
        servers: &[&DesiredServer],
    ) -> Result<(BTreeMap<String, Observation>, Vec<(String, FieldIssue)>)> {
        self.observe_with(servers, true).await
    }

    async fn observe_with(
        &self,
        servers: &[&DesiredServer],
        check: bool,
    ) -> Result<(BTreeMap<String, Observation>, Vec<(String, FieldIssue)>)> {
        let mut by_provider: BTreeMap<&str, Vec<&DesiredServer>> = BTreeMap::new();
        for server in servers {
            by_provider
                .entry(server.provider.as_str())
                .or_default()
                .push(server);
        }
        let mut providers = Vec::new();
        for (name, members) in by_provider {
            let provider = self.provider(name)?;
            providers.push(async move {
                let mut by_id = read_provider(provider.clone(), &members).await?;
                // Moved, not copied: a cloud id names one server of a provider (the manifest
                // refuses duplicates), and a fleet's observations are not held twice.
                let observed: Vec<(&DesiredServer, Observation)> = members
                    .iter()
                    .map(|server| {
                        let observation = by_id
                            .remove(server.cloud_id.as_str())
                            .unwrap_or(Observation::NotFound);
                        (*server, observation)
                    })
                    .collect();
                let problems = if check {
                    let pairs: Vec<(&DesiredServer, &Observation)> = observed
                        .iter()
                        .map(|(server, observation)| (*server, observation))
                        .collect();
                    provider.check_desired(&pairs).await?
                } else {
                    Vec::new()
                };
                Ok::<_, Error>((observed, problems))
            });
        }
        // The first failure ends the plan; the other providers' reads are dropped with it.
        let mut observations = BTreeMap::new();
        let mut problems = Vec::new();
        for (observed, found) in futures_util::future::try_join_all(providers).await? {
            for (server, observation) in observed {
                observations.insert(server.name.clone(), observation);
            }
            problems.extend(found);
        }
        Ok((observations, problems))
    }
}

/// Reads the given servers of one provider: one task per batch of its API's ids per call, all
/// at once (the provider's rate limits pace them). Returns observations by cloud id.
async fn read_provider(
    provider: Arc<dyn Provider>,
    servers: &[&DesiredServer],
) -> Result<HashMap<String, Observation>> {
    let ids: BTreeSet<&str> = servers
        .iter()
        .map(|server| server.cloud_id.as_str())
        .collect();
    let ids: Vec<&str> = ids.into_iter().collect();
    let batch = provider.capabilities().observe_batch.max(1);
    let mut tasks: JoinSet<std::result::Result<BTreeMap<String, Observation>, ProviderError>> =
        JoinSet::new();
    for chunk in ids.chunks(batch) {
        let provider = provider.clone();
        let chunk: Vec<String> = chunk.iter().map(|id| id.to_string()).collect();
        tasks.spawn(async move { provider.observe(&chunk).await });
    }
    let mut by_id = HashMap::with_capacity(ids.len());
    while let Some(joined) = tasks.join_next().await {
        let observed = joined.map_err(|error| Error::Io {
            message: format!("an observe task failed: {error}"),
        })??;
        by_id.extend(observed);
    }
    Ok(by_id)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::manifest::{DesiredAccess, ProviderType};
    use crate::provider::{
        BoxFuture, Capabilities, Observed, Operation, OperationStatus, ReinstallRequest,
        ServerStatus,
    };

    /// A provider whose reads only end once every provider's reads have begun.
    struct Meeting {
        name: String,
        capabilities: Capabilities,
        everyone: Arc<tokio::sync::Barrier>,
    }

    impl Provider for Meeting {
        fn name(&self) -> &str {
            &self.name
        }

        fn provider_type(&self) -> ProviderType {
            ProviderType::ZenlayerBmc
        }

        fn capabilities(&self) -> &Capabilities {
            &self.capabilities
        }

        fn report_waits_to(&self, _waits: &crate::provider::limits::WaitSink) {}

        fn observe<'a>(
            &'a self,
            ids: &'a [String],
        ) -> BoxFuture<'a, std::result::Result<BTreeMap<String, Observation>, ProviderError>>
        {
            Box::pin(async move {
                // Generous: a loaded machine is slow, and read one after another the providers
                // would never meet at all.
                tokio::time::timeout(Duration::from_secs(60), self.everyone.wait())
                    .await
                    .map_err(|_| ProviderError::Config {
                        provider: self.name.clone(),
                        message: "read alone: the other providers were not read at the same time"
                            .to_string(),
                        help: String::new(),
                    })?;
                Ok(ids
                    .iter()
                    .map(|id| {
                        let observed = Observed {
                            cloud_id: id.clone(),
                            status: ServerStatus::Running,
                            raw_status: "RUNNING".into(),
                            image: Some("img".into()),
                            image_name: None,
                            hostname: None,
                            address: None,
                            extra: BTreeMap::new(),
                        };
                        (id.clone(), Observation::Found(observed))
                    })
                    .collect())
            })
        }

        fn reinstall<'a>(
            &'a self,
            _request: &'a ReinstallRequest,
        ) -> BoxFuture<'a, std::result::Result<Operation, ProviderError>> {
            Box::pin(async { unreachable!("plans never reinstall") })
        }

        fn poll<'a>(
            &'a self,
            _operations: &'a [Operation],
        ) -> BoxFuture<'a, std::result::Result<Vec<OperationStatus>, ProviderError>> {
            Box::pin(async { unreachable!("plans never poll") })
        }
    }

    fn server(name: &str, provider: &str) -> DesiredServer {
        DesiredServer {
            group: None,
            name: name.into(),
            provider: provider.into(),
            provider_type: ProviderType::ZenlayerBmc,
            cloud_id: format!("id-{name}"),
            image: "img".into(),
            revision: 0,
            access: DesiredAccess::None,
            hostname: None,
            user_data: None,
            protect: false,
            options: serde_json::Map::new(),
            address: None,
            health: Default::default(),
        }
    }

    #[tokio::test]
    async fn every_provider_is_read_at_once() {
        let everyone = Arc::new(tokio::sync::Barrier::new(3));
        let providers: BTreeMap<String, Arc<dyn Provider>> = ["a", "b", "c"]
            .into_iter()
            .map(|name| {
                let provider: Arc<dyn Provider> = Arc::new(Meeting {
                    name: name.to_string(),
                    capabilities: Capabilities {
                        observe_batch: 100,
                        reports_image: true,
                        poll_interval: Duration::from_secs(1),
                        install_timeout: Duration::from_secs(60),
                        install_estimate: Duration::from_secs(60),
                        reinstall_batch: 1,
                        start_grace: Duration::from_secs(1),
                        stop_timeout: Duration::from_secs(1),
                        reinstalls_failed_install: false,
                    },
                    everyone: everyone.clone(),
                });
                (name.to_string(), provider)
            })
            .collect();
        let fleet = Fleet::new(providers, WaitSink::none());
        let servers = [server("s1", "a"), server("s2", "b"), server("s3", "c")];
        let scoped: Vec<&DesiredServer> = servers.iter().collect();
        let (observed, problems) = fleet.observe_and_check(&scoped).await.unwrap();
        assert_eq!(observed.len(), 3);
        assert!(
            observed
                .values()
                .all(|o| matches!(o, Observation::Found(_)))
        );
        assert!(problems.is_empty());
    }
}
