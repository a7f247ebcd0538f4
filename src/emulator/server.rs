//! The HTTP side: the axum app, the emulator-only admin endpoints, and a listener whose
//! connections can be cut on purpose (the "connection dropped after the reinstall" fault).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::connect_info::{ConnectInfo, Connected};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use jiff::Timestamp;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;

use super::faults;
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
    /// The `rate_limit` windows (not persisted). Locked only while the world is.
    pub rate_windows: std::sync::Mutex<super::faults::RateWindows>,
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

/// `GET /_emulator/state`: every server as it is now (installs settled first), the logs, the
/// calls that acted on each server (`counts`) and the faults fired.
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
    let mut huaweicloud = world.huaweicloud.state_view();
    let mut jdcloud = world.jdcloud.admin_state();
    let mut edis = world.edis.admin_view();
    for (view, family) in [
        (&mut huaweicloud, "huaweicloud"),
        (&mut jdcloud, "jdcloud"),
        (&mut edis, "edis"),
    ] {
        if let Some(view) = view.as_object_mut() {
            view.insert("faults".into(), faults::legacy::view(&world.faults, family));
        }
    }
    axum::Json(json!({
        "world_file": store.path().display().to_string(),
        "inventory_digest": world.inventory_digest,
        "zenlayer": {
            "servers": servers,
            "reinstall_log": world.zenlayer.reinstall_log,
            "faults": faults::legacy::view(&world.faults, "zenlayer"),
            "peak_installing": world.zenlayer.peak_installing,
        },
        "huaweicloud": huaweicloud,
        "edis": edis,
        "jdcloud": jdcloud,
        "counts": faults::admin::counts_view(world),
        "faults_fired": faults::admin::fired_view(world),
        "fault_rules": world.faults.rules,
        "fault_seed": world.faults.generator.seed,
    }))
    .into_response()
}

/// `POST /_emulator/faults`: arms faults (see [`faults`]); answers with what is now armed. An
/// invalid request is answered 400 naming the field, and changes nothing.
async fn admin_faults(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let request: Value = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(error) => {
            return admin_error(
                StatusCode::BAD_REQUEST,
                format!("the faults request is not JSON: {error}"),
            );
        }
    };
    match arm_faults(&shared, request).await {
        Ok(armed) => axum::Json(armed).into_response(),
        Err((status, message)) => admin_error(status, message),
    }
}

/// Arms a faults request atomically: on any error the world is as before.
pub async fn arm_faults(shared: &Shared, request: Value) -> Result<Value, (StatusCode, String)> {
    let mut store = shared.world.lock().await;
    let before = store.world.clone();
    let armed = {
        let mut windows = shared
            .rate_windows
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        faults::admin::arm(&mut store.world, request, &mut windows)
    };
    let armed = match armed {
        Ok(armed) => armed,
        Err(message) => {
            store.world = before;
            return Err((StatusCode::BAD_REQUEST, message));
        }
    };
    if let Err(error) = store.save() {
        store.world = before;
        return Err((StatusCode::INTERNAL_SERVER_ERROR, error.to_string()));
    }
    Ok(armed)
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
