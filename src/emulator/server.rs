//! The HTTP side: the axum app, the emulator-only admin endpoints, and a listener whose
//! connections can be cut on purpose (the "connection dropped after the reinstall" fault).

use std::collections::BTreeMap;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use axum::Router;
use axum::body::Bytes;
use axum::extract::connect_info::{ConnectInfo, Connected};
use axum::extract::{Json, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use jiff::Timestamp;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;

use super::inventory::Inventory;
use super::jdcloud;
use super::world::WorldStore;
use super::zenlayer;

/// What every request handler shares.
#[derive(Debug)]
pub struct Shared {
    pub inventory: Inventory,
    /// The caller's install duration, which wins over the inventory's.
    pub install_seconds_override: Option<f64>,
    /// One lock for the whole world: requests are few, and a single order of changes keeps the
    /// persisted file consistent.
    pub world: Mutex<WorldStore>,
}

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(zenlayer::PATH, post(zenlayer_bmc))
        .merge(super::huaweicloud::routes())
        .route("/kvm/v2/{kind}/{action}", post(edis_kvm))
        .route("/v1/regions/{region_id}/instances", any(jdcloud_cps))
        .route(
            "/v1/regions/{region_id}/instances/{instance}",
            any(jdcloud_cps),
        )
        .route("/v1/regions/{region_id}/os", any(jdcloud_cps))
        .route("/_emulator/state", get(admin_state))
        .route("/_emulator/faults", post(admin_faults))
        .fallback(not_found)
        .with_state(shared)
}

async fn zenlayer_bmc(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(connection): ConnectInfo<ConnectionHandle>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    zenlayer::handle(&shared, &connection, &headers, &body).await
}

async fn edis_kvm(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(connection): ConnectInfo<ConnectionHandle>,
    axum::extract::Path((kind, action)): axum::extract::Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    super::edis::handle(&shared, &connection, &kind, &action, &headers, &body).await
}

async fn jdcloud_cps(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(connection): ConnectInfo<ConnectionHandle>,
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    jdcloud::handle(&shared, &connection, &method, &uri, &headers, &body).await
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(json!({
            "code": "NOT_FOUND",
            "message": format!("the emulator serves {} and /_emulator/", zenlayer::PATH),
        })),
    )
        .into_response()
}

/// `GET /_emulator/state`: every server as it is now (installs settled first) and the log.
async fn admin_state(State(shared): State<Arc<Shared>>) -> Response {
    let mut store = shared.world.lock().await;
    if store.world.settle(Timestamp::now())
        && let Err(error) = store.save()
    {
        return admin_error(StatusCode::INTERNAL_SERVER_ERROR, error.to_string());
    }
    let world = &store.world;
    let servers: Vec<Value> = world
        .zenlayer
        .servers
        .iter()
        .map(|server| {
            json!({
                "id": server.id,
                "name": server.name,
                "status": server.status.as_str(),
                "image_id": server.image_id,
                "hostname": server.hostname,
                "key_id": server.key_id,
                "reinstall_count": server.reinstall_count,
                "fail_next_install": server.fail_next_install,
                "install_started_at": server.install.as_ref().map(|install| install.install_started_at),
                "install_done_at": server.install.as_ref().map(|install| install.install_done_at),
            })
        })
        .collect();
    axum::Json(json!({
        "world_file": store.path().display().to_string(),
        "inventory_digest": world.inventory_digest,
        "zenlayer": {
            "servers": servers,
            "reinstall_log": world.zenlayer.reinstall_log,
            "faults": world.zenlayer.faults,
            "peak_installing": world.zenlayer.peak_installing,
        },
        "huaweicloud": world.huaweicloud.state_view(),
        "edis": world.edis.admin_view(),
        "jdcloud": world.jdcloud.admin_state(),
    }))
    .into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultsRequest {
    #[serde(default)]
    zenlayer: Option<ZenlayerFaultsRequest>,
    #[serde(default)]
    huaweicloud: Option<super::huaweicloud::model::FaultsRequest>,
    edis: Option<super::edis::EdisFaultsRequest>,
    jdcloud: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ZenlayerFaultsRequest {
    /// Servers whose next install ends `INSTALL_FAILED`.
    #[serde(default)]
    fail_next_install: Vec<String>,
    /// Replaces the armed count when given.
    #[serde(default)]
    status_429_next: Option<u32>,
    #[serde(default)]
    status_500_next: Option<u32>,
    /// Added to the armed set.
    #[serde(default)]
    drop_connection_after_reinstall: Vec<String>,
    /// Share of reads answered 500, from now on.
    #[serde(default)]
    read_500_rate: Option<f64>,
    /// Share of reads answered 429, from now on.
    #[serde(default)]
    read_429_rate: Option<f64>,
}

/// `POST /_emulator/faults`: arms faults; answers with the faults now armed.
async fn admin_faults(
    State(shared): State<Arc<Shared>>,
    request: Result<Json<FaultsRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(request) = match request {
        Ok(request) => request,
        Err(rejection) => return admin_error(StatusCode::BAD_REQUEST, rejection.body_text()),
    };
    let mut store = shared.world.lock().await;
    let before = store.world.clone();
    if let Some(faults) = request.zenlayer {
        let world = &mut store.world.zenlayer;
        let unknown: Vec<&String> = faults
            .fail_next_install
            .iter()
            .chain(&faults.drop_connection_after_reinstall)
            .filter(|id| world.server(id).is_none())
            .collect();
        if !unknown.is_empty() {
            return admin_error(
                StatusCode::BAD_REQUEST,
                format!("unknown zenlayer server ids: {unknown:?}"),
            );
        }
        for id in &faults.fail_next_install {
            if let Some(server) = world.server_mut(id) {
                server.fail_next_install = true;
            }
        }
        if let Some(count) = faults.status_429_next {
            world.faults.status_429_next = count;
        }
        if let Some(count) = faults.status_500_next {
            world.faults.status_500_next = count;
        }
        for rate in [faults.read_500_rate, faults.read_429_rate]
            .into_iter()
            .flatten()
        {
            if !(0.0..=1.0).contains(&rate) {
                return admin_error(
                    StatusCode::BAD_REQUEST,
                    format!("a read fault rate must be between 0 and 1, not {rate}"),
                );
            }
        }
        if let Some(rate) = faults.read_500_rate {
            world.faults.read_500_rate = rate;
        }
        if let Some(rate) = faults.read_429_rate {
            world.faults.read_429_rate = rate;
        }
        world
            .faults
            .drop_connection_after_reinstall
            .extend(faults.drop_connection_after_reinstall);
    }
    if let Some(faults) = request.huaweicloud
        && let Err(message) = store.world.huaweicloud.arm_faults(faults)
    {
        store.world = before;
        return admin_error(StatusCode::BAD_REQUEST, message);
    }
    if let Some(faults) = request.edis
        && let Err(message) = store.world.edis.arm_faults(faults)
    {
        store.world = before;
        return admin_error(StatusCode::BAD_REQUEST, message);
    }
    let jdcloud_armed = match request.jdcloud {
        Some(faults) => match store.world.jdcloud.arm_faults(faults) {
            Ok(armed) => Some(armed),
            Err(message) => {
                store.world = before;
                return admin_error(StatusCode::BAD_REQUEST, message);
            }
        },
        None => None,
    };
    if let Err(error) = store.save() {
        store.world = before;
        return admin_error(StatusCode::INTERNAL_SERVER_ERROR, error.to_string());
    }
    let failing: BTreeMap<&str, bool> = store
        .world
        .zenlayer
        .servers
        .iter()
        .filter(|server| server.fail_next_install)
        .map(|server| (server.id.as_str(), true))
        .collect();
    axum::Json(json!({
        "zenlayer": {
            "fail_next_install": failing.keys().collect::<Vec<_>>(),
            "status_429_next": store.world.zenlayer.faults.status_429_next,
            "status_500_next": store.world.zenlayer.faults.status_500_next,
            "drop_connection_after_reinstall": store.world.zenlayer.faults.drop_connection_after_reinstall,
        },
        "huaweicloud": store.world.huaweicloud.faults,
        "edis": store.world.edis.faults,
        "jdcloud": jdcloud_armed,
    }))
    .into_response()
}

fn admin_error(status: StatusCode, message: String) -> Response {
    (
        status,
        axum::Json(json!({"code": "EMULATOR_ADMIN_ERROR", "message": message})),
    )
        .into_response()
}

/// Lets a handler cut the connection its request came on.
#[derive(Debug, Clone)]
pub struct ConnectionHandle {
    aborted: Arc<AtomicBool>,
}

impl ConnectionHandle {
    /// Makes every further read and write on the connection fail, so hyper drops it without
    /// sending the response.
    pub fn abort(&self) {
        self.aborted.store(true, Ordering::SeqCst);
    }
}

impl Connected<axum::serve::IncomingStream<'_, AbortableListener>> for ConnectionHandle {
    fn connect_info(stream: axum::serve::IncomingStream<'_, AbortableListener>) -> Self {
        ConnectionHandle {
            aborted: stream.io().aborted.clone(),
        }
    }
}

/// A TCP listener whose connections carry an abort switch.
pub struct AbortableListener {
    pub inner: TcpListener,
}

impl axum::serve::Listener for AbortableListener {
    type Io = AbortableStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.inner.accept().await {
                Ok((stream, remote)) => {
                    let io = AbortableStream {
                        stream,
                        aborted: Arc::new(AtomicBool::new(false)),
                    };
                    return (io, remote);
                }
                Err(error) => {
                    // Usually too many open files: wait rather than spin.
                    tracing::warn!(%error, "emulator: accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

pub struct AbortableStream {
    stream: TcpStream,
    aborted: Arc<AtomicBool>,
}

impl AbortableStream {
    fn check(&self) -> io::Result<()> {
        if self.aborted.load(Ordering::SeqCst) {
            Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "connection dropped by an emulator fault",
            ))
        } else {
            Ok(())
        }
    }
}

impl AsyncRead for AbortableStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.check()?;
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for AbortableStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.check()?;
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.check()?;
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.check()?;
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
