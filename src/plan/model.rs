//! The plan as data: what `plan` shows, what `-out` saves and what `apply` carries out.
//! Its JSON form is published as `schemas/plan.schema.json`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::rollout::Wave;
use crate::manifest::{
    DesiredProvider, DesiredServer, EmbeddedEmulator, ProviderType, RemoteBackend, RolloutPolicy,
};
use crate::model::Observed;

/// Version 2 added the artifact bindings (`expires_at`, `commit`, `state.name`), the
/// `update-record` and `forget` actions and their summary counts; version 3 is compact (what a
/// server's entry would repeat is left out, shared user data is written once: see
/// [`super::wire`]) and adds the rollout's `pace`.
pub const PLAN_FORMAT_VERSION: u32 = 3;

/// Written and read as JSON by [`super::wire`].
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub format_version: u32,
    pub tool_version: String,
    pub plan_id: String,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339: apply refuses the plan after this time (`plan --plan-ttl`, default 24h).
    pub expires_at: String,
    /// The git commit (full hex) of the repository holding the manifest, or `None` when the
    /// manifest is not in a git repository with a commit. `apply --require-commit` checks it.
    pub commit: Option<String>,
    /// Hex SHA-256 over the manifest files the plan was made from.
    pub manifest_digest: String,
    /// The state the plan was made against.
    pub state: StateRef,
    /// Providers as configured (credential references only), so a saved plan applies alone.
    pub providers: BTreeMap<String, DesiredProvider>,
    pub emulator: Option<EmbeddedEmulator>,
    /// Where the state the plan was made against lives: the local state file, or a
    /// description of the remote backend (never a secret).
    pub state_path: String,
    /// The shared backend holding that state (its URL as a reference), so that a saved plan
    /// applies on another machine; absent for the local file.
    pub backend: Option<RemoteBackend>,
    /// One entry per server in scope, in manifest order.
    pub servers: Vec<ServerPlan>,
    /// The rollout policy the waves were made with.
    pub rollout: RolloutPolicy,
    /// The order apply starts the reinstalls in; apply starts nothing else.
    pub waves: Vec<Wave>,
    /// The pace the rollout will have under the providers' rate limits (absent without
    /// reinstalls).
    pub pace: Option<super::pace::Pace>,
    pub summary: Summary,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StateRef {
    /// The state's name in its backend (`default` unless the backend names it).
    pub name: String,
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
    /// Only the state's record changes (the `protect` flag); the machine is not touched.
    UpdateRecord,
    /// In the state but no longer in the manifest: the record is removed, the machine is not
    /// touched.
    Forget,
    Blocked,
}

impl ActionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoOp => "no-op",
            Self::Adopt => "adopt",
            Self::Reinstall => "reinstall",
            Self::StopAndReinstall => "stop-and-reinstall",
            Self::UpdateRecord => "update-record",
            Self::Forget => "forget",
            Self::Blocked => "blocked",
        }
    }

    /// Whether apply touches the machine.
    pub fn is_destructive(self) -> bool {
        matches!(self, Self::Reinstall | Self::StopAndReinstall)
    }

    /// Whether apply has anything to do (touch the machine or change the state).
    pub fn is_change(self) -> bool {
        matches!(
            self,
            Self::Adopt
                | Self::Reinstall
                | Self::StopAndReinstall
                | Self::UpdateRecord
                | Self::Forget
        )
    }

    /// Whether apply changes only the state (never calls a provider for it).
    pub fn is_record_only(self) -> bool {
        matches!(self, Self::Adopt | Self::UpdateRecord | Self::Forget)
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
    /// Blocked: whether the last apply's reinstall of this server ran could not be
    /// established; it is not reinstalled again until an operator looks.
    LastOutcomeUnknown {
        message: String,
    },
    /// Adopted: the last apply's outcome was unknown, and the server now runs the desired
    /// image.
    UnknownOutcomeResolved,
    /// Blocked: the state records the server as protected, and this change both removes
    /// `protect` and needs a reinstall.
    ProtectionRemovedWithReinstall,
    /// `protect` differs from what the state records; only the record changes.
    ProtectionChanged {
        recorded: bool,
        desired: bool,
    },
    /// In the state, no longer in the manifest: forgotten.
    NoLongerInManifest {
        /// The record said `protect: true`.
        protected: bool,
    },
    /// Blocked: a journaled step for the server is still in flight.
    StepInFlight {
        step: String,
    },
    /// Blocked: the provider cannot report the OS and reimage has no record of it.
    UnknownCurrentOs,
    /// Blocked for a provider-specific reason (locked, must be stopped first, …).
    ProviderBlocked {
        message: String,
    },
    /// Blocked: the server's health gate cannot be run as written (no address for it).
    HealthGateUnresolved {
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
                "protect: true, and a reinstall would be needed (remove `protect` in its own \
                 reviewed change and apply it first, then reinstall)"
                    .to_string()
            }
            Self::LastOutcomeUnknown { message } => format!(
                "the last apply's outcome for this server is unknown ({message}); it is not \
                 reinstalled again until checked: record what it runs with `reimage state \
                 adopt NAME --image IMAGE`, or reinstall it anyway with `--replace NAME`"
            ),
            Self::UnknownOutcomeResolved => "the last apply's outcome was unknown; the server \
                 now runs the desired image, so it is recorded as it is"
                .to_string(),
            Self::ProtectionRemovedWithReinstall => "protected in the state (applied with \
                 `protect: true`), and this change removes `protect` while it needs a reinstall: \
                 remove the protection in its own reviewed change first and apply it (that only \
                 updates the record; the machine is not touched), then reinstall in a later change"
                .to_string(),
            Self::ProtectionChanged { desired: false, .. } => {
                "`protect` removed: the record is updated (the machine is not touched); a \
                 reinstall can be planned in a later change"
                    .to_string()
            }
            Self::ProtectionChanged { desired: true, .. } => {
                "`protect: true` added: recorded in the state (the machine is not touched)"
                    .to_string()
            }
            Self::NoLongerInManifest { protected } => format!(
                "no longer in the manifest: will be forgotten (the machine is not touched){}",
                if *protected {
                    "; it was recorded as protected"
                } else {
                    ""
                }
            ),
            Self::StepInFlight { step } => format!(
                "no longer in the manifest, but a `{step}` step of an earlier apply is still in \
                 flight: run `reimage apply` (or `reimage plan`) again once it has settled"
            ),
            Self::UnknownCurrentOs => "unknown current OS: the provider does not report it and \
                 reimage has no record; record what it runs with `reimage state adopt NAME \
                 --image IMAGE`, or reinstall it with `--replace NAME`"
                .to_string(),
            Self::ProviderBlocked { message } => message.clone(),
            Self::HealthGateUnresolved { message } => message.clone(),
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

/// Written and read as JSON by [`super::wire`].
#[derive(Debug, Clone, PartialEq)]
pub struct ServerPlan {
    pub name: String,
    pub provider: String,
    pub provider_type: ProviderType,
    pub cloud_id: String,
    pub action: ActionKind,
    pub reasons: Vec<Reason>,
    /// What the apply will wipe (e.g. `system disk`); empty unless destructive.
    pub wipes: Vec<String>,
    pub changes: Vec<Change>,
    /// Provider-specific lines to show (e.g. "stopped first").
    pub notes: Vec<String>,
    /// The desired inputs with secret references (never values). For `forget`, what the state
    /// recorded (the server is no longer in the manifest).
    pub desired: DesiredServer,
    /// What the provider reported at plan time (`None` when the id was unknown).
    pub observed: Option<Observed>,
    /// Hex SHA-256 of the observed state; apply refuses the plan when it moved. For `forget`
    /// (never observed), of the record that will be removed.
    pub observed_fingerprint: String,
    /// Keyed digests (HMAC-SHA256 with the state's key) of each install input.
    pub input_digests: super::inputs::InputDigests,
    /// The health gate that must pass after the install (reinstalls only), its target filled
    /// in as apply will run it.
    pub health: Option<crate::manifest::health::HealthGate>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Summary {
    pub reinstall: usize,
    pub adopt: usize,
    /// Records updated without touching the machine (`protect` changed).
    pub update_record: usize,
    /// Records removed (servers no longer in the manifest); machines not touched.
    pub forget: usize,
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
                ActionKind::UpdateRecord => summary.update_record += 1,
                ActionKind::Forget => summary.forget += 1,
                ActionKind::Blocked => summary.blocked += 1,
            }
        }
        summary
    }
}
