//! What a handler is given besides the world: the call's timing, and the world as reads show it.

use std::borrow::Cow;

use jiff::Timestamp;

use super::model::{ClouddcInstance, EcsServer};
use crate::emulator::faults;
use crate::manifest::ProviderType;

/// What reads show: the truth, or a server as it was before a call whose effect is late.
#[derive(Clone, Copy)]
pub(super) struct Shown<'a> {
    pub(super) faults: &'a faults::FaultBook,
    pub(super) now: Timestamp,
}

impl Shown<'_> {
    pub(super) fn ecs<'a>(&self, server: &'a EcsServer) -> Cow<'a, EcsServer> {
        faults::as_shown(
            self.faults,
            ProviderType::HuaweicloudEcs,
            &server.id,
            server,
            self.now,
        )
    }

    pub(super) fn clouddc<'a>(&self, instance: &'a ClouddcInstance) -> Cow<'a, ClouddcInstance> {
        let provider = ProviderType::HuaweicloudClouddc;
        faults::as_shown(self.faults, provider, &instance.id, instance, self.now)
    }
}

/// The time of a call and how long the installs it starts take.
#[derive(Debug, Clone, Copy)]
pub(super) struct Timing {
    pub(super) now: Timestamp,
    pub(super) override_seconds: Option<f64>,
    pub(super) default_seconds: f64,
}
