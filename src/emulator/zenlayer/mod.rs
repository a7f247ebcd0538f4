//! Zenlayer Cloud API 2.0, bare metal (`POST /api/v2/bmc`), built from the brief
//! (`providers/zenlayer.md`) and nothing else: envelope, headers, ZC2-HMAC-SHA256 verification,
//! `DescribeInstances`, `ReinstallInstance`, `DescribeImages`.
//!
//! Error codes the brief lists are sent as written there (upper snake case). Codes the brief
//! leaves open are the emulator's own and must not be relied on against the real API:
//! - HTTP 401 `AUTH_FAILED` (no or malformed `Authorization`, unknown access key or token,
//!   missing `Host`/`Content-Type`), `SIGNATURE_METHOD_UNSUPPORTED`, `SIGNATURE_EXPIRED`
//!   (missing, unreadable or skewed `X-ZC-Timestamp`), `SIGNATURE_MISMATCH`;
//! - HTTP 400 `INVALID_ACTION`, `INVALID_API_VERSION`, `INVALID_PARAMETER`,
//!   `UNSUPPORTED_BY_EMULATOR` (iPXE installs);
//! - HTTP 500 `INTERNAL_ERROR` (injected, or the world could not be saved).
//!
//! HTTP statuses are the emulator's choice too: 404 for unknown instances and images, 403 for
//! `OPERATION_DENIED_*`, 400 for other parameter errors. A client should match on codes.
//!
//! Files: `routes` (envelope, one call's way), `auth` (token or signature), `errors` (the
//! refusals), `handlers` (the actions). Its world and inventory sections live in the emulator's
//! `world` and `inventory`.

mod auth;
mod errors;
mod handlers;
mod routes;

pub use routes::handle;

/// The path the API is served under (the service is `bmc`).
pub const PATH: &str = "/api/v2/bmc";

/// Allowed clock difference for `X-ZC-Timestamp` (the brief: unconfirmed, emulator ±5 min).
const TIMESTAMP_SKEW_SECONDS: i64 = 300;

const API_VERSIONS: [&str; 2] = ["2022-11-20", "2026-02-01"];
const MAX_INSTANCE_IDS: usize = 100;
const DEFAULT_PAGE_SIZE: i64 = 20;
const MAX_PAGE_SIZE: i64 = 1000;
const MAX_HOSTNAME_CHARS: usize = 64;
const MAX_USER_DATA_BYTES: usize = 32 * 1024;
const PASSWORD_SPECIALS: &str = "~!@$^*-_=+";
