//! The plan as data: what `plan` shows, what `-out` saves and what `apply` carries out.
//! Its JSON form is published as `schemas/plan.schema.json`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::rollout::Wave;
use crate::manifest::{
    DesiredProvider, DesiredServer, EmbeddedEmulator, ProviderType, RemoteBackend, RolloutPolicy,
};
use crate::provider::Observed;

pub const PLAN_FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Plan {
    pub format_version: u32,
    pub tool_version: String,
    pub plan_id: String,
    /// RFC 3339.
    pub created_at: String,
    /// Hex SHA-256 over the manifest files the plan was made from.
    pub manifest_digest: String,
    /// The state the plan was made against.
    pub state: StateRef,
    /// Providers as configured (credential references only), so a saved plan applies alone.
    pub providers: BTreeMap<String, DesiredProvider>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emulator: Option<EmbeddedEmulator>,
    /// Where the state the plan was made against lives: the local state file, or a
    /// description of the remote backend (never a secret).
    pub state_path: String,
    /// The shared backend holding that state (its URL as a reference), so that a saved plan
    /// applies on another machine; absent for the local file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<RemoteBackend>,
    /// One entry per server in scope, in manifest order.
    pub servers: Vec<ServerPlan>,
    /// The rollout policy the waves were made with.
    pub rollout: RolloutPolicy,
    /// The order apply starts the reinstalls in; apply starts nothing else.
    pub waves: Vec<Wave>,
    pub summary: Summary,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StateRef {
    /// `None` when no state existed yet.
    pub lineage: Option<String>,
    pub serial: u64,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum ActionKind {
    NoOp,
    Adopt,
    Reinstall,
    StopAndReinstall,
    Blocked,
}

impl ActionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoOp => "no-op",
            Self::Adopt => "adopt",
            Self::Reinstall => "reinstall",
            Self::StopAndReinstall => "stop-and-reinstall",
            Self::Blocked => "blocked",
        }
    }

    /// Whether apply touches the machine.
    pub fn is_destructive(self) -> bool {
        matches!(self, Self::Reinstall | Self::StopAndReinstall)
    }

    /// Whether apply has anything to do (touch the machine or record it).
    pub fn is_change(self) -> bool {
        matches!(self, Self::Adopt | Self::Reinstall | Self::StopAndReinstall)
    }
}

/// Why an action was chosen.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Reason {
    /// The observed image is not the desired one.
    ImageDiffers {
        observed: String,
        desired: String,
    },
    /// The provider cannot report the image; the one reimage recorded is not the desired one.
    RecordedImageDiffers {
        recorded: String,
        desired: String,
    },
    /// An install input differs from what reimage last applied.
    InputChanged {
        field: String,
        sensitive: bool,
    },
    RevisionRaised {
        recorded: u64,
        desired: u64,
    },
    ReplaceRequested,
    /// Never applied by reimage, and the observed image already matches.
    AdoptMatchingImage,
    /// The cloud id differs from the one recorded under this name: a different machine.
    CloudIdChanged {
        recorded: String,
    },
    /// Blocked: the provider does not know the id.
    UnknownCloudId,
    /// Blocked: the server's status does not allow a reinstall now.
    StatusForbids {
        status: String,
    },
    /// Blocked: `protect: true` and a reinstall would be needed.
    Protected,
    /// Blocked: the provider cannot report the OS and reimage has no record of it.
    UnknownCurrentOs,
    /// The last apply of this server failed; it is tried again.
    PreviousApplyFailed {
        message: String,
    },
    /// Blocked for a provider-specific reason (locked, must be stopped first, …).
    ProviderBlocked {
        message: String,
    },
}

impl Reason {
    /// A short sentence for humans.
    pub fn describe(&self) -> String {
        match self {
            Self::ImageDiffers { observed, desired } => {
                format!("image differs: observed `{observed}`, desired `{desired}`")
            }
            Self::RecordedImageDiffers { recorded, desired } => format!(
                "image differs: recorded by reimage `{recorded}` (the provider cannot report \
                 it), desired `{desired}`"
            ),
            Self::InputChanged {
                field,
                sensitive: true,
            } => {
                format!("{field} changed since the last apply (sensitive value)")
            }
            Self::InputChanged { field, .. } => format!("{field} changed since the last apply"),
            Self::RevisionRaised { recorded, desired } => {
                format!("revision raised from {recorded} to {desired}")
            }
            Self::ReplaceRequested => "reinstall requested with --replace".to_string(),
            Self::AdoptMatchingImage => {
                "not applied by reimage before; observed image already matches".to_string()
            }
            Self::CloudIdChanged { recorded } => {
                format!("cloud id differs from the recorded `{recorded}`: treated as a new machine")
            }
            Self::UnknownCloudId => "the provider does not know this cloud id".to_string(),
            Self::StatusForbids { status } => {
                format!("status `{status}` does not allow a reinstall now")
            }
            Self::Protected => {
                "protect: true, and a reinstall would be needed (remove `protect` to allow it)"
                    .to_string()
            }
            Self::UnknownCurrentOs => "unknown current OS: the provider does not report it and \
                 reimage has no record; record what it runs with `reimage state adopt NAME \
                 --image IMAGE`, or reinstall it with `--replace NAME`"
                .to_string(),
            Self::PreviousApplyFailed { message } => {
                format!("the last apply of this server failed: {message}")
            }
            Self::ProviderBlocked { message } => message.clone(),
        }
    }
}

/// One field's before → after, for display. Sensitive fields carry no values.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Change {
    pub field: String,
    pub before: Option<String>,
    pub after: Option<String>,
    #[serde(default)]
    pub sensitive: bool,
    /// Whether the value differs from what is on the machine now (for sensitive values, known
    /// from keyed digests).
    pub changed: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ServerPlan {
    pub name: String,
    pub provider: String,
    pub provider_type: ProviderType,
    pub cloud_id: String,
    pub action: ActionKind,
    pub reasons: Vec<Reason>,
    /// What the apply will wipe (e.g. `system disk`); empty unless destructive.
    #[serde(default)]
    pub wipes: Vec<String>,
    pub changes: Vec<Change>,
    /// Provider-specific lines to show (e.g. "stopped first").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// The desired inputs with secret references (never values).
    pub desired: DesiredServer,
    /// What the provider reported at plan time (`None` when the id was unknown).
    pub observed: Option<Observed>,
    /// Hex SHA-256 of the observed state; apply refuses the plan when it moved.
    pub observed_fingerprint: String,
    /// Keyed digests (HMAC-SHA256 with the state's key) of each install input.
    pub input_digests: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Summary {
    pub reinstall: usize,
    pub adopt: usize,
    pub unchanged: usize,
    pub blocked: usize,
}

impl Plan {
    pub fn has_changes(&self) -> bool {
        self.servers.iter().any(|s| s.action.is_change())
    }

    pub fn has_blocked(&self) -> bool {
        self.servers.iter().any(|s| s.action == ActionKind::Blocked)
    }
}

impl Summary {
    pub fn count(servers: &[ServerPlan]) -> Self {
        let mut summary = Summary::default();
        for server in servers {
            match server.action {
                ActionKind::NoOp => summary.unchanged += 1,
                ActionKind::Adopt => summary.adopt += 1,
                ActionKind::Reinstall | ActionKind::StopAndReinstall => summary.reinstall += 1,
                ActionKind::Blocked => summary.blocked += 1,
            }
        }
        summary
    }
}
