//! The built-in emulator of the providers' APIs: real HTTP on loopback, real signature checks,
//! time-based installs, fault injection, a world persisted between processes.
//!
//! - `running`: starting and stopping the emulator ([`start`], [`RunningEmulator`]);
//! - `inventory`: the YAML file describing the world at its beginning;
//! - `world`: the world's state and its persistence (`data_dir/world.json`);
//! - `server`: the axum app and the emulator-only admin endpoints under `/_emulator/`;
//! - `faults`: the one fault menu every API goes through (`POST /_emulator/faults`);
//! - one folder per emulated API, each split into routes, auth, model (its world) and
//!   handlers: `zenlayer` (Zenlayer bare metal, `POST /api/v2/bmc`), `huaweicloud` (ECS and
//!   CloudDC), `edis` (EDIS KVM), `jdcloud` (JD Cloud physical servers, `/v1/regions/…`).
//!
//! The emulator builds and parses API messages on its own, from the providers' briefs. It
//! shares only the signing code with the clients (pinned by the official vectors), so that a
//! misreading of an API cannot hide by being shared by both sides, and the YAML loader (for the
//! inventory's error locations).
//!
//! All of it sits behind the cargo feature `emulator` (on by default), which brings in axum.
//! Without it, [`start`] keeps its signature and refuses with [`NOT_BUILT`], so the
//! `emulator` command and a manifest's `endpoint: emulator` fail with a clear error.

#[cfg(feature = "emulator")]
pub mod edis;
#[cfg(feature = "emulator")]
pub mod faults;
#[cfg(feature = "emulator")]
pub mod huaweicloud;
#[cfg(feature = "emulator")]
pub mod inventory;
#[cfg(feature = "emulator")]
pub mod jdcloud;
#[cfg(feature = "emulator")]
pub mod server;
#[cfg(feature = "emulator")]
pub mod world;
#[cfg(feature = "emulator")]
pub mod zenlayer;

#[cfg(feature = "emulator")]
mod running;
#[cfg(feature = "emulator")]
pub use running::{RunningEmulator, serve_forever, start};

// Also compiled into the tests of the full build, so that its answer is checked on every run.
#[cfg(any(test, not(feature = "emulator")))]
#[cfg_attr(feature = "emulator", allow(dead_code))]
mod absent;
#[cfg(not(feature = "emulator"))]
pub use absent::{RunningEmulator, start};

#[cfg(all(test, feature = "emulator"))]
mod tests;

use std::net::SocketAddr;
use std::path::PathBuf;

/// What a build without the `emulator` feature answers wherever the emulator is asked for.
pub const NOT_BUILT: &str = "this build has no emulator; rebuild with --features emulator";

/// How to start an emulator.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// A loopback address; port 0 picks a free port.
    pub listen: SocketAddr,
    pub inventory: PathBuf,
    /// Where the world is persisted, so separate processes see one world.
    pub data_dir: PathBuf,
    /// Overrides every install duration of the inventory (default, per server), in seconds.
    pub install_seconds: Option<f64>,
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("emulator: {0}")]
pub struct EmulatorError(pub String);
