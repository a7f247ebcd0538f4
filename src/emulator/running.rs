//! The emulator's process side: binds, serves the APIs in the background, stops.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::Mutex;

use super::{EmulatorConfig, EmulatorError, edis, huaweicloud, inventory, server, world, zenlayer};
use crate::manifest::ProviderType;

/// A running emulator; it stops when dropped (or, waiting for it, with [`shutdown`]).
///
/// [`shutdown`]: RunningEmulator::shutdown
pub struct RunningEmulator {
    pub address: SocketAddr,
    /// Base URL of each API served, by provider type.
    pub endpoints: BTreeMap<ProviderType, String>,
    /// Where the world is persisted.
    pub world_file: PathBuf,
    shared: Arc<server::Shared>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// Loads the inventory and the saved world, binds, and serves in the background of the current
/// tokio runtime.
pub async fn start(config: EmulatorConfig) -> Result<RunningEmulator, EmulatorError> {
    if !config.listen.ip().is_loopback() {
        return Err(EmulatorError(format!(
            "refusing to listen on {}: the emulator accepts fake credentials and must only be \
             reachable from this machine; use a loopback address such as 127.0.0.1:0",
            config.listen
        )));
    }
    if let Some(seconds) = config.install_seconds
        && !(seconds.is_finite() && seconds >= 0.0)
    {
        return Err(EmulatorError(format!(
            "the install duration must be a number of seconds ≥ 0, not {seconds}"
        )));
    }
    let loaded = inventory::load(&config.inventory)?;
    let store = world::WorldStore::open(&config.data_dir, &loaded)?;
    let world_file = store.path().to_path_buf();
    let shared = Arc::new(server::Shared {
        inventory: loaded.inventory,
        install_seconds_override: config.install_seconds,
        world: Mutex::new(store),
        rate_windows: std::sync::Mutex::default(),
    });

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|error| EmulatorError(format!("cannot listen on {}: {error}", config.listen)))?;
    let address = listener
        .local_addr()
        .map_err(|error| EmulatorError(format!("cannot read the bound address: {error}")))?;
    let app = server::router(shared.clone())
        .into_make_service_with_connect_info::<server::ConnectionHandle>();
    let (shutdown, shutdown_signal) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let listener = server::AbortableListener { inner: listener };
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                // A dropped sender ends the server just as a sent signal does.
                let _ = shutdown_signal.await;
            })
            .await;
        if let Err(error) = served {
            tracing::error!(%error, "emulator: the server stopped");
        }
    });
    tracing::info!(%address, world = %world_file.display(), "emulator: listening");

    let mut endpoints = BTreeMap::new();
    endpoints.insert(
        ProviderType::ZenlayerBmc,
        format!("http://{address}{}", zenlayer::PATH),
    );
    endpoints.extend(huaweicloud::endpoints(address));
    endpoints.insert(
        ProviderType::EdisKvm,
        format!("http://{address}{}", edis::AUTH_PATH),
    );
    endpoints.insert(ProviderType::JdcloudCps, format!("http://{address}"));
    Ok(RunningEmulator {
        address,
        endpoints,
        world_file,
        shared,
        shutdown: Some(shutdown),
        task: Some(task),
    })
}

/// Serves until Ctrl-C: what `reimage emulator serve` runs. `on_ready` is called once the
/// emulator listens (to print the endpoints).
pub async fn serve_forever(
    config: EmulatorConfig,
    on_ready: impl FnOnce(&RunningEmulator),
) -> Result<(), EmulatorError> {
    let running = start(config).await?;
    on_ready(&running);
    tokio::signal::ctrl_c()
        .await
        .map_err(|error| EmulatorError(format!("cannot wait for Ctrl-C: {error}")))?;
    tracing::info!("emulator: stopping");
    running.shutdown().await;
    Ok(())
}

impl RunningEmulator {
    /// The emulator-only admin base URL (`/_emulator/state`, `/_emulator/faults`).
    pub fn admin_url(&self) -> String {
        format!("http://{}/_emulator", self.address)
    }

    /// Arms faults as `POST /_emulator/faults` does, from the same JSON (`--faults FILE`).
    pub async fn arm_faults(&self, request: &str) -> Result<serde_json::Value, EmulatorError> {
        let request: serde_json::Value = serde_json::from_str(request)
            .map_err(|error| EmulatorError(format!("the faults are not JSON: {error}")))?;
        server::arm_faults(&self.shared, request)
            .await
            .map_err(|(_, message)| EmulatorError(format!("faults: {message}")))
    }

    /// Stops serving and waits until open connections are finished.
    pub async fn shutdown(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for RunningEmulator {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}
