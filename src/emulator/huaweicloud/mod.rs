//! Huawei Cloud ECS, CloudDC and IAM, built from the brief (`providers/huaweicloud.md`) and
//! nothing else: real paths and bodies, SDK-HMAC-SHA256 verification (or `X-Auth-Token`),
//! the IAM project listing, ECS jobs, CloudDC batch reinstalls.
//!
//! Error bodies follow the brief's three shapes: the gateway's
//! `{"error_code", "error_msg", "request_id"}`, ECS's `{"error": {"code", "message"}}`,
//! CloudDC's `{"error_code", "error_msg"}`; a failed job query answers `{"code", "message"}`.
//! Codes the brief pins are used as written (`Ecs.0114` unknown server, `Ecs.0011` password,
//! `Ecs.0005` parameter, `APIGW.0301` bad signature). Every other code is the emulator's own
//! and carries `EMULATOR` in it, so nobody mistakes it for Huawei's (e.g. the 409s for a locked,
//! busy or running server, whose real codes are unconfirmed).
//!
//! Files: `routes` (router, one call's way), `auth` (token or signature, project), `call` (a
//! handler's timing and view), `errors` (the three error shapes), `params` (shared parameter
//! checks), one handler file per API (`iam`, `ecs`, `clouddc`), `model` (inventory and world).

mod auth;
mod call;
mod clouddc;
mod ecs;
mod errors;
mod iam;
pub mod model;
mod params;
mod routes;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use jiff::SignedDuration;

use crate::manifest::ProviderType;

pub use routes::routes;

/// Clock skew accepted on `X-Sdk-Date` (the brief: unconfirmed, commonly 15 minutes).
const DATE_SKEW: SignedDuration = SignedDuration::from_mins(15);
const MAX_IDS_PER_READ: usize = 100;
const DEFAULT_CLOUDDC_BATCH_LIMIT: usize = 50;
const USER_DATA_MAX_BYTES: usize = 32 * 1024;
const PASSWORD_SPECIALS: &str = "!@$%^-_=+[{}]:,./?";

/// The endpoint printed for both services: the emulator's root (the APIs have distinct paths).
pub fn endpoints(address: std::net::SocketAddr) -> BTreeMap<ProviderType, String> {
    let base = format!("http://{address}");
    BTreeMap::from([
        (ProviderType::HuaweicloudEcs, base.clone()),
        (ProviderType::HuaweicloudClouddc, base),
    ])
}
