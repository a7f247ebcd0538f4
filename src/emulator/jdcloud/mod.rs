//! JD Cloud physical servers (CPS) OpenAPI, built from the brief (`providers/jdcloud.md`) and
//! nothing else: `/v1/regions/{regionId}/instances[/{id}[:action]]` and `/os`, the
//! `{requestId, result | error}` envelope, JDCLOUD2 and JDCLOUD3 signatures.
//!
//! Lifecycle: `running` →(stopInstance)→ `stopping` → `stopped` →(reinstallInstance)→
//! `installing` → `running` (or `error` when a failure was injected). A reinstall is refused
//! unless the server is `stopped`. A `clientToken` seen before returns the first result with no
//! side effect. Choices the brief leaves open (all **unconfirmed** against the real API):
//! - error `status` words are gRPC-style: 400 `INVALID_ARGUMENT`, 400 `FAILED_PRECONDITION`
//!   (wrong power state), 401 `UNAUTHENTICATED` (signature), 403 `PERMISSION_DENIED`
//!   (operation protection; the message says "MFA"), 404 `NOT_FOUND`, 429 `RESOURCE_EXHAUSTED`,
//!   500 `INTERNAL`;
//! - only accepted calls are remembered by their `clientToken`; a token reused for another
//!   call is refused (`INVALID_ARGUMENT`);
//! - the signature date may be 15 minutes off, and a nonce is refused when seen again within
//!   that window;
//! - `az` cannot change (a physical server does not move); a changed data RAID needs
//!   `keepData: no`.
//!
//! Files: `routes` (envelope, router, one call's way), `auth` (signatures), `errors` (the
//! refusals), `handlers` (the calls), `model` (inventory section and world).

mod auth;
mod errors;
mod handlers;
pub mod model;
mod routes;

#[cfg(test)]
mod tests;

use crate::manifest::ProviderType;

pub use model::{JdcloudInventory, JdcloudWorld, check_inventory};
pub use routes::handle;

/// The path prefix of the API; the emulator's endpoint for `jdcloud-cps` is its base URL.
pub const PATH_PREFIX: &str = "/v1/regions";
const SERVICE: &str = "cps";
const SKEW_SECONDS: i64 = 15 * 60;
const DEFAULT_PAGE_SIZE: usize = 10;
const MAX_PAGE_SIZE: usize = 100;
const DEFAULT_STOP_SECONDS: f64 = 1.0;
const MAX_CLIENT_TOKEN_CHARS: usize = 36;
const PROVIDER: ProviderType = ProviderType::JdcloudCps;
