//! One fault menu for every emulated API (`POST /_emulator/faults`).
//!
//! Each API does three things only: it classifies a request into a [`Call`] (provider type,
//! call kind, server ids), it asks before acting ([`wait_latency`], then [`refusal`] under the
//! world lock) and after acting ([`aftermath`]), and it answers a [`Refusal`] in its own error
//! shape. Everything else lives here:
//!
//! - [`rules`]: call kinds, faults, selectors, the armed [`rules::Rule`] and its checks;
//! - [`book`]: the persisted state (rules, generator, bursts, late views, counts) and every
//!   decision;
//! - [`generator`]: the seeded generator deciding `rate`;
//! - [`rate_limit`]: the in-memory sliding windows of `rate_limit`;
//! - [`admin`]: arming rules from a request (new shape and the legacy per-provider keys, see
//!   [`legacy`]) and the state views (`counts`, `faults_fired`).

pub mod admin;
pub mod book;
pub mod generator;
pub mod legacy;
pub mod rate_limit;
pub mod rules;

#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde::de::DeserializeOwned;
use serde_json::Value;

pub use self::book::FaultBook;
pub use self::rate_limit::RateWindows;
pub use self::rules::CallKind;
use super::EmulatorError;
use super::server::{ConnectionHandle, Shared};
use super::world::{World, WorldStore};
use crate::manifest::ProviderType;

/// One API call as the fault menu sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// The provider types the call belongs to; the first is where it is counted. Only Huawei's
    /// IAM project lookup, shared by ECS and CloudDC, has two.
    pub providers: &'static [ProviderType],
    pub kind: CallKind,
    /// The servers the call names (empty for a list of everything, a login, a catalogue).
    pub ids: Vec<String>,
}

impl Call {
    pub fn new(provider: ProviderType, kind: CallKind, ids: Vec<String>) -> Call {
        Call {
            providers: Self::one(provider),
            kind,
            ids,
        }
    }

    /// Huawei's IAM project lookup, which both ECS and CloudDC rules select.
    pub fn huawei_iam() -> Call {
        Call {
            providers: &[
                ProviderType::HuaweicloudEcs,
                ProviderType::HuaweicloudClouddc,
            ],
            kind: CallKind::Auth,
            ids: Vec::new(),
        }
    }

    fn one(provider: ProviderType) -> &'static [ProviderType] {
        match provider {
            ProviderType::ZenlayerBmc => &[ProviderType::ZenlayerBmc],
            ProviderType::HuaweicloudEcs => &[ProviderType::HuaweicloudEcs],
            ProviderType::HuaweicloudClouddc => &[ProviderType::HuaweicloudClouddc],
            ProviderType::JdcloudCps => &[ProviderType::JdcloudCps],
            ProviderType::EdisKvm => &[ProviderType::EdisKvm],
        }
    }
}

/// How a call that got through [`refusal`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A mutating call that changed the world (counted).
    Acted,
    /// A mutating call answered from its idempotency token without acting (counted as replayed).
    Replayed,
    /// Any other call that was answered normally (a read, a login).
    Served,
}

/// An injected refusal before acting; the API answers it in its own error shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// HTTP 500.
    ServerError,
    /// HTTP 429 with `Retry-After`.
    Throttled { retry_after_seconds: u64 },
}

/// What to do with the answer of a call that acted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[must_use = "the aftermath of a call must be applied before answering"]
pub struct Aftermath {
    /// Close the connection without answering (`drop_after`).
    pub drop_connection: bool,
    /// Wait this long before answering (`slow_after`).
    pub delay: Duration,
}

impl Aftermath {
    /// Waits, then cuts the connection if asked: the answer the handler returns next is then
    /// never written. Call it with the world unlocked.
    pub async fn apply(self, connection: &ConnectionHandle) {
        if !self.delay.is_zero() {
            tracing::info!(
                seconds = self.delay.as_secs_f64(),
                "emulator: fault: answering late"
            );
            tokio::time::sleep(self.delay).await;
        }
        if self.drop_connection {
            tracing::info!("emulator: fault: dropping the connection without an answer");
            connection.abort();
        }
    }
}

/// Waits out the `latency` rules that select this call. Takes the world lock only briefly.
pub async fn wait_latency(shared: &Shared, call: &Call) {
    let delay = {
        let mut store = shared.world.lock().await;
        let (delay, changed) = store.world.faults.latency(call);
        if changed && let Err(error) = store.save() {
            tracing::warn!(%error, "emulator: cannot save the faults fired");
        }
        delay
    };
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
}

/// With the world locked, right before acting: whether the call is refused (and how).
pub fn refusal(
    store: &mut WorldStore,
    shared: &Shared,
    call: &Call,
) -> Result<Option<Refusal>, EmulatorError> {
    let mut windows = shared
        .rate_windows
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let (refusal, changed) = store
        .world
        .faults
        .before(call, &mut windows, Instant::now());
    drop(windows);
    if changed {
        store.save()?;
    }
    if let Some(refusal) = refusal {
        tracing::info!(?refusal, kind = call.kind.as_str(), ids = ?call.ids, "emulator: fault: refusing a call");
    }
    Ok(refusal)
}

/// With the world locked, after a call succeeded: counts it and decides what happens to its
/// answer. `shown_before` gives the API's record of a named server as it was before the call,
/// serialised (kept for `late_status`).
pub fn aftermath(
    store: &mut WorldStore,
    call: &Call,
    outcome: Outcome,
    shown_before: &dyn Fn(&str) -> Option<Value>,
) -> Result<Aftermath, EmulatorError> {
    let (aftermath, changed) =
        store
            .world
            .faults
            .after(call, outcome, Timestamp::now(), shown_before);
    if changed {
        store.save()?;
    }
    Ok(aftermath)
}

/// The record a read of server `id` shows: the truth, or the record from before an acting call
/// while a `late_status` fault holds it.
pub fn as_shown<'a, T: Clone + DeserializeOwned>(
    book: &FaultBook,
    provider: ProviderType,
    id: &str,
    real: &'a T,
    now: Timestamp,
) -> Cow<'a, T> {
    match book
        .late_view(provider, id, now)
        .and_then(|shown| serde_json::from_value::<T>(shown.clone()).ok())
    {
        Some(shown) => Cow::Owned(shown),
        None => Cow::Borrowed(real),
    }
}

/// A serialised record (for [`aftermath`]'s `shown_before`).
pub fn record<T: serde::Serialize>(record: &T) -> Option<Value> {
    serde_json::to_value(record).ok()
}

/// The ids of every server of one provider type in the world, in inventory order.
pub fn server_ids(world: &World, provider: ProviderType) -> Vec<String> {
    match provider {
        ProviderType::ZenlayerBmc => world
            .zenlayer
            .servers
            .iter()
            .map(|server| server.id.clone())
            .collect(),
        ProviderType::HuaweicloudEcs => world
            .huaweicloud
            .ecs_servers
            .iter()
            .map(|server| server.id.clone())
            .collect(),
        ProviderType::HuaweicloudClouddc => world
            .huaweicloud
            .clouddc_instances
            .iter()
            .map(|instance| instance.id.clone())
            .collect(),
        ProviderType::EdisKvm => world
            .edis
            .vps
            .iter()
            .map(|vps| vps.kvm_id.clone())
            .collect(),
        ProviderType::JdcloudCps => world
            .jdcloud
            .servers
            .iter()
            .map(|server| server.id.clone())
            .collect(),
    }
}
