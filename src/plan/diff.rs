//! The diff: desired × observed × recorded → one action per server, with its reasons.
//!
//! Pure: no I/O, no clock, no randomness. Everything it needs is passed in, so that the same
//! inputs always give the same plan (property-tested below).

use std::collections::{BTreeMap, BTreeSet};

use super::inputs::{
    FIELD_ACCESS, FIELD_HOSTNAME, FIELD_OPTIONS, FIELD_USER_DATA, INPUT_FIELDS, InputDigests,
};
use super::model::{ActionKind, Change, Reason, ServerPlan};
use crate::digest::sha256_hex;
use crate::manifest::{DesiredAccess, DesiredServer, ProviderType};
use crate::model::{Observation, Observed, ReinstallReview, ServerStatus};
use crate::state::journal::StepCall;
use crate::state::{Outcome, ServerRecord};

/// Everything the diff looks at, besides what it takes over (see [`diff`]).
pub struct DiffInput<'a> {
    /// The servers in scope, in manifest order.
    pub servers: &'a [DesiredServer],
    /// What reimage last applied, by server name.
    pub recorded: &'a BTreeMap<String, ServerRecord>,
    /// Servers named with `--replace`.
    pub replace: &'a BTreeSet<String>,
    /// Whether a provider type can report the installed image.
    pub reports_image: &'a dyn Fn(ProviderType) -> bool,
    /// Whether a provider type's API takes a reinstall of a server whose last install failed.
    pub reinstalls_failed_install: &'a dyn Fn(ProviderType) -> bool,
    /// The provider's judgement of a wanted reinstall (stop first, blocked, extra wipes).
    pub review: &'a dyn Fn(&DesiredServer, &Observed) -> ReinstallReview,
    /// Whether records of servers no longer in `servers` are planned as `forget`. Only when
    /// `servers` is the whole manifest (not with `--target`).
    pub forget_removed: bool,
    /// Servers with a journaled step still in flight (an install may be running unwatched).
    pub in_flight: &'a BTreeMap<String, StepCall>,
}

/// Hex SHA-256 of what was observed; a saved plan is refused when this moved.
pub fn fingerprint(observation: &Observation) -> String {
    // Serialising a fixed struct gives a stable field order.
    let text = serde_json::to_string(observation).unwrap_or_default();
    sha256_hex(text.as_bytes())
}

/// Hex SHA-256 of a record; a `forget` is refused when the record moved since the plan.
pub fn record_fingerprint(record: &ServerRecord) -> String {
    let text = serde_json::to_string(record).unwrap_or_default();
    sha256_hex(text.as_bytes())
}

/// One action per server in scope (manifest order), then one `forget` per recorded server no
/// longer in the manifest (name order).
///
/// `observed` (what each provider reported, by server name; a missing entry counts as not
/// found) and `digests` (keyed digests of each server's desired install inputs, by server name)
/// are taken over: each entry moves into its server's plan, so a fleet's observations are never
/// held twice.
pub fn diff(
    input: &DiffInput<'_>,
    mut observed: BTreeMap<String, Observation>,
    mut digests: BTreeMap<String, InputDigests>,
) -> Vec<ServerPlan> {
    let mut plans: Vec<ServerPlan> = input
        .servers
        .iter()
        .map(|server| {
            let observation = observed
                .remove(&server.name)
                .unwrap_or(Observation::NotFound);
            let digests = digests.remove(&server.name).unwrap_or_default();
            plan_server(input, server, observation, digests)
        })
        .collect();
    if input.forget_removed {
        let in_manifest: BTreeSet<&str> = input.servers.iter().map(|s| s.name.as_str()).collect();
        for (name, record) in input.recorded {
            if !in_manifest.contains(name.as_str()) {
                plans.push(plan_forget(
                    name,
                    record,
                    input.in_flight.get(name).copied(),
                ));
            }
        }
    }
    plans
}

/// A server the manifest no longer has: its record is removed, the machine is never touched.
/// `desired` repeats the record, since the manifest has nothing for it.
fn plan_forget(name: &str, record: &ServerRecord, in_flight: Option<StepCall>) -> ServerPlan {
    let (action, reason) = match in_flight {
        Some(step) => (
            ActionKind::Blocked,
            Reason::StepInFlight {
                step: step.as_str().to_string(),
            },
        ),
        None => (
            ActionKind::Forget,
            Reason::NoLongerInManifest {
                protected: record.protected,
            },
        ),
    };
    ServerPlan {
        name: name.to_string(),
        provider: record.provider.clone(),
        provider_type: record.provider_type,
        cloud_id: record.cloud_id.clone(),
        action,
        reasons: vec![reason],
        wipes: Vec::new(),
        changes: Vec::new(),
        notes: Vec::new(),
        desired: DesiredServer {
            name: name.to_string(),
            provider: record.provider.clone(),
            provider_type: record.provider_type,
            cloud_id: record.cloud_id.clone(),
            image: record.image.clone(),
            revision: record.revision,
            access: match &record.ssh_key_id {
                Some(id) => DesiredAccess::SshKeyId { id: id.clone() },
                None => DesiredAccess::None,
            },
            hostname: record.hostname.clone(),
            user_data: record.user_data.clone(),
            protect: record.protected,
            group: None,
            address: None,
            health: Default::default(),
            options: serde_json::Map::new(),
        },
        observed: None,
        observed_fingerprint: record_fingerprint(record),
        input_digests: InputDigests::default(),
        health: None,
    }
}

fn plan_server(
    input: &DiffInput<'_>,
    server: &DesiredServer,
    observation: Observation,
    digests: InputDigests,
) -> ServerPlan {
    let mut plan = ServerPlan {
        name: server.name.clone(),
        provider: server.provider.clone(),
        provider_type: server.provider_type,
        cloud_id: server.cloud_id.clone(),
        action: ActionKind::NoOp,
        reasons: Vec::new(),
        wipes: Vec::new(),
        changes: Vec::new(),
        notes: Vec::new(),
        desired: server.clone(),
        observed: None,
        observed_fingerprint: fingerprint(&observation),
        input_digests: digests,
        health: None,
    };
    let observed = match observation {
        Observation::Found(observed) => observed,
        Observation::NotFound => {
            plan.action = ActionKind::Blocked;
            plan.reasons.push(Reason::UnknownCloudId);
            return plan;
        }
    };
    plan.observed = Some(observed.clone());
    let replace = input.replace.contains(&server.name);

    // A record under this name for another machine says nothing about this one.
    let record = match input.recorded.get(&server.name) {
        Some(record) if record.cloud_id != server.cloud_id => {
            plan.reasons.push(Reason::CloudIdChanged {
                recorded: record.cloud_id.clone(),
            });
            None
        }
        other => other,
    };
    // How the last attempt on this machine ended is shown; it is never a reason by itself.
    if let Some(note) = record.and_then(last_attempt_note) {
        plan.notes.push(note);
    }
    // After a reinstall whose outcome is unknown, the machine is not touched again until an
    // operator looks (`--replace` is that look), unless it plainly runs the desired image.
    if let Some(operation) = record
        .and_then(|record| record.last_operation.as_ref())
        .filter(|operation| operation.outcome == Outcome::Unknown)
        && !replace
    {
        let shows_desired = (input.reports_image)(server.provider_type)
            && observed.image.as_deref() == Some(server.image.as_str())
            && observed.status.allows_reinstall();
        if shows_desired {
            plan.action = ActionKind::Adopt;
            plan.reasons.push(Reason::UnknownOutcomeResolved);
        } else {
            plan.action = ActionKind::Blocked;
            plan.reasons.push(Reason::LastOutcomeUnknown {
                message: operation
                    .message
                    .clone()
                    .unwrap_or_else(|| "no details recorded".to_string()),
            });
        }
        return plan;
    }
    // A record of an attempt alone says nothing about what the machine runs.
    let record = record.filter(|record| !record.attempt_only);

    // A failed install needs the provider's attention first; where the API takes a reinstall
    // from that state, an operator's explicit `--replace` retries it.
    if observed.status == ServerStatus::InstallFailed {
        if replace && (input.reinstalls_failed_install)(server.provider_type) {
            plan.notes.push(format!(
                "the last install failed (status {}); --replace retries it",
                observed.raw_status
            ));
        } else {
            plan.action = ActionKind::Blocked;
            plan.reasons.push(Reason::StatusForbids {
                status: observed.raw_status.clone(),
            });
            if (input.reinstalls_failed_install)(server.provider_type) {
                plan.notes.push(format!(
                    "its last install failed; `--replace {}` retries it",
                    server.name
                ));
            }
            return plan;
        }
    }

    let mut triggers = Vec::new();
    let reports_image = (input.reports_image)(server.provider_type);
    if !reports_image {
        plan.notes
            .push(unreported_os_note(server.provider_type, record));
    }

    // The image on the machine now: as observed, or as recorded where the provider cannot tell.
    let current_image = if reports_image {
        observed.image.clone()
    } else {
        record.map(|record| record.image.clone())
    };
    match &current_image {
        Some(image) if *image != server.image && !reports_image => {
            triggers.push(Reason::RecordedImageDiffers {
                recorded: image.clone(),
                desired: server.image.clone(),
            })
        }
        Some(image) if *image != server.image => triggers.push(Reason::ImageDiffers {
            observed: image.clone(),
            desired: server.image.clone(),
        }),
        Some(_) => {}
        None if replace => {}
        None => {
            plan.action = ActionKind::Blocked;
            plan.reasons.push(Reason::UnknownCurrentOs);
            return plan;
        }
    }

    if let Some(record) = record {
        for field in INPUT_FIELDS {
            let recorded = record.input_digests.get(field).cloned().flatten();
            // Unknown (adopted) inputs never trigger a reinstall: adoption is never destructive.
            if let (Some(recorded), Some(desired)) = (recorded, digests.get(field))
                && recorded != desired
            {
                triggers.push(Reason::InputChanged {
                    field: field.to_string(),
                    sensitive: field == FIELD_ACCESS
                        && matches!(server.access, DesiredAccess::Password { .. }),
                });
            }
        }
        if server.revision > record.revision {
            triggers.push(Reason::RevisionRaised {
                recorded: record.revision,
                desired: server.revision,
            });
        }
    }
    if replace {
        triggers.push(Reason::ReplaceRequested);
    }

    // What the state says about protection: a flag removed in the same change that needs a
    // reinstall must not let that reinstall through.
    let recorded_protect = record.is_some_and(|record| record.protected);
    if triggers.is_empty() {
        if record.is_some() && recorded_protect != server.protect {
            plan.action = ActionKind::UpdateRecord;
            plan.reasons.push(Reason::ProtectionChanged {
                recorded: recorded_protect,
                desired: server.protect,
            });
            plan.changes.push(Change {
                field: "protect".to_string(),
                before: Some(recorded_protect.to_string()),
                after: Some(server.protect.to_string()),
                sensitive: false,
                changed: true,
            });
            return plan;
        }
        if record.is_none() {
            if observed.status.allows_reinstall() {
                plan.action = ActionKind::Adopt;
                plan.reasons.push(Reason::AdoptMatchingImage);
            } else {
                // Recording a machine in the middle of something else would record a guess.
                plan.action = ActionKind::Blocked;
                plan.reasons.push(Reason::StatusForbids {
                    status: observed.raw_status.clone(),
                });
            }
        }
        return plan;
    }

    plan.changes = changes(
        server,
        &observed,
        current_image.as_deref(),
        record,
        &triggers,
    );
    plan.reasons.extend(triggers);
    let retry_failed = replace && observed.status == ServerStatus::InstallFailed;
    if server.protect {
        plan.action = ActionKind::Blocked;
        plan.reasons.push(Reason::Protected);
    } else if recorded_protect {
        plan.action = ActionKind::Blocked;
        plan.reasons.push(Reason::ProtectionRemovedWithReinstall);
    } else if !observed.status.allows_reinstall() && !retry_failed {
        plan.action = ActionKind::Blocked;
        plan.reasons.push(Reason::StatusForbids {
            status: observed.raw_status.clone(),
        });
    } else {
        let review = (input.review)(server, &observed);
        plan.notes.extend(review.notes);
        if let Some(message) = review.blocked {
            plan.action = ActionKind::Blocked;
            plan.reasons.push(Reason::ProviderBlocked { message });
        } else {
            plan.action = if review.stop_first {
                ActionKind::StopAndReinstall
            } else {
                ActionKind::Reinstall
            };
            plan.wipes.push("system disk".to_string());
            plan.wipes.extend(review.extra_wipes);
        }
    }
    plan
}

/// A line for the plan when the last attempt on this machine did not succeed.
fn last_attempt_note(record: &ServerRecord) -> Option<String> {
    let operation = record.last_operation.as_ref()?;
    let how = match operation.outcome {
        Outcome::Succeeded => return None,
        Outcome::Failed => "failed",
        Outcome::Unknown => "ended with an unknown outcome",
        Outcome::Refused => "was refused by the provider (nothing happened)",
        Outcome::GateFailed => "installed the OS, but its health gate did not pass",
    };
    Some(format!(
        "the last apply of this server (plan {}) {how}: {}",
        operation.plan_id,
        operation
            .message
            .as_deref()
            .unwrap_or("no details recorded")
    ))
}

/// Says where the "before" image of a provider that cannot report the OS comes from.
fn unreported_os_note(provider_type: ProviderType, record: Option<&ServerRecord>) -> String {
    let vendor = match provider_type {
        ProviderType::EdisKvm => "EDIS",
        other => other.as_str(),
    };
    match record {
        Some(record) => {
            let adopted = record
                .last_operation
                .as_ref()
                .is_some_and(|operation| operation.kind == crate::state::OperationKind::Adopt);
            format!(
                "current OS not reported by {vendor}; last applied by reimage: {}{}",
                record.image,
                if adopted {
                    " (recorded by adoption)"
                } else {
                    ""
                }
            )
        }
        None => format!("current OS not reported by {vendor}; never applied by reimage"),
    }
}

/// Every input the reinstall will send, with what is there now.
fn changes(
    server: &DesiredServer,
    observed: &Observed,
    current_image: Option<&str>,
    record: Option<&ServerRecord>,
    triggers: &[Reason],
) -> Vec<Change> {
    let input_changed = |field: &str| {
        triggers
            .iter()
            .any(|reason| matches!(reason, Reason::InputChanged { field: changed, .. } if changed == field))
    };
    let mut changes = vec![Change {
        field: "image".to_string(),
        before: current_image.map(str::to_string),
        after: Some(server.image.clone()),
        sensitive: false,
        changed: current_image != Some(server.image.as_str()),
    }];
    if let Some(record) = record
        && server.revision != record.revision
    {
        changes.push(Change {
            field: "revision".to_string(),
            before: Some(record.revision.to_string()),
            after: Some(server.revision.to_string()),
            sensitive: false,
            changed: true,
        });
    }
    let hostname_before = match record {
        Some(record) => record.hostname.clone(),
        None => observed.hostname.clone(),
    };
    if server.hostname.is_some() || hostname_before.is_some() {
        changes.push(Change {
            field: FIELD_HOSTNAME.to_string(),
            // A hostname the manifest does not set is not managed: nothing changes it.
            changed: server.hostname.is_some() && hostname_before != server.hostname,
            before: hostname_before,
            after: server.hostname.clone(),
            sensitive: false,
        });
    }
    match &server.access {
        DesiredAccess::Password { .. } => changes.push(Change {
            field: "password".to_string(),
            before: None,
            after: None,
            sensitive: true,
            changed: record.is_none() || input_changed(FIELD_ACCESS),
        }),
        DesiredAccess::SshKeyId { id } => {
            let before = record.and_then(|record| record.ssh_key_id.clone());
            changes.push(Change {
                field: "ssh_key_id".to_string(),
                changed: before.as_deref() != Some(id.as_str()),
                before,
                after: Some(id.clone()),
                sensitive: false,
            });
        }
        DesiredAccess::None => {}
    }
    let user_data_before = record.and_then(|record| record.user_data.clone());
    if server.user_data.is_some() || user_data_before.is_some() {
        changes.push(Change {
            field: FIELD_USER_DATA.to_string(),
            changed: user_data_before != server.user_data,
            before: user_data_before,
            after: server.user_data.clone(),
            sensitive: false,
        });
    }
    if !server.options.is_empty() || input_changed(FIELD_OPTIONS) {
        changes.push(Change {
            field: FIELD_OPTIONS.to_string(),
            before: None,
            after: Some(super::inputs::canonical_json(&serde_json::Value::Object(
                server.options.clone(),
            ))),
            sensitive: false,
            changed: input_changed(FIELD_OPTIONS),
        });
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::SecretRef;
    use crate::model::ServerStatus;
    use crate::plan::inputs::input_digests;
    use crate::state::{OperationKind, OperationRecord, Outcome};
    use proptest::prelude::*;

    const KEY: &[u8] = b"test-key";

    fn server(name: &str, image: &str) -> DesiredServer {
        DesiredServer {
            group: None,
            address: None,
            health: Default::default(),
            name: name.into(),
            provider: "zl".into(),
            provider_type: ProviderType::ZenlayerBmc,
            cloud_id: format!("id-{name}"),
            image: image.into(),
            revision: 0,
            access: DesiredAccess::SshKeyId { id: "key-1".into() },
            hostname: Some(name.into()),
            user_data: Some("#cloud-config\n".into()),
            protect: false,
            options: serde_json::Map::new(),
        }
    }

    fn observed(server: &DesiredServer, image: &str, status: ServerStatus) -> Observation {
        Observation::Found(Observed {
            cloud_id: server.cloud_id.clone(),
            status,
            raw_status: format!("{status:?}").to_uppercase(),
            image: Some(image.into()),
            image_name: None,
            hostname: server.hostname.clone(),
            address: None,
            extra: BTreeMap::new(),
        })
    }

    fn record_of(server: &DesiredServer) -> ServerRecord {
        ServerRecord {
            provider: server.provider.clone(),
            provider_type: server.provider_type,
            cloud_id: server.cloud_id.clone(),
            image: server.image.clone(),
            revision: server.revision,
            input_digests: input_digests(KEY, server, None)
                .into_iter()
                .map(|(field, digest)| (field, Some(digest)))
                .collect(),
            hostname: server.hostname.clone(),
            user_data: server.user_data.clone(),
            ssh_key_id: Some("key-1".into()),
            protected: server.protect,
            last_operation: Some(OperationRecord {
                kind: OperationKind::Reinstall,
                plan_id: "p".into(),
                outcome: Outcome::Succeeded,
                message: None,
                request_id: None,
                job_id: None,
                started_at: "t".into(),
                finished_at: "t".into(),
                health: None,
            }),
            updated_at: "t".into(),
            attempt_only: false,
        }
    }

    struct World {
        servers: Vec<DesiredServer>,
        observed: BTreeMap<String, Observation>,
        recorded: BTreeMap<String, ServerRecord>,
        replace: BTreeSet<String>,
        forget_removed: bool,
        in_flight: BTreeMap<String, StepCall>,
    }

    impl World {
        fn new(servers: Vec<DesiredServer>) -> Self {
            World {
                servers,
                observed: BTreeMap::new(),
                recorded: BTreeMap::new(),
                replace: BTreeSet::new(),
                forget_removed: true,
                in_flight: BTreeMap::new(),
            }
        }

        fn plan(&self) -> Vec<ServerPlan> {
            let digests = self
                .servers
                .iter()
                .map(|server| (server.name.clone(), input_digests(KEY, server, None)))
                .collect();
            diff(
                &DiffInput {
                    servers: &self.servers,
                    recorded: &self.recorded,
                    replace: &self.replace,
                    reports_image: &|provider_type| provider_type != ProviderType::EdisKvm,
                    reinstalls_failed_install: &|provider_type| {
                        provider_type == ProviderType::ZenlayerBmc
                    },
                    review: &|_, observed| {
                        if observed.extra.get("locked").map(String::as_str) == Some("true") {
                            ReinstallReview {
                                blocked: Some("locked".into()),
                                ..Default::default()
                            }
                        } else if observed.status == ServerStatus::Running
                            && observed.extra.contains_key("needs_stop")
                        {
                            ReinstallReview {
                                stop_first: true,
                                extra_wipes: vec!["DATA DISKS".into()],
                                notes: vec!["stopped first".into()],
                                ..Default::default()
                            }
                        } else {
                            ReinstallReview::default()
                        }
                    },
                    forget_removed: self.forget_removed,
                    in_flight: &self.in_flight,
                },
                self.observed.clone(),
                digests,
            )
        }

        fn only(&self) -> ServerPlan {
            self.plan().remove(0)
        }
    }

    fn applied_world(server: DesiredServer) -> World {
        let mut world = World::new(vec![server.clone()]);
        world.observed.insert(
            server.name.clone(),
            observed(&server, &server.image, ServerStatus::Running),
        );
        world
            .recorded
            .insert(server.name.clone(), record_of(&server));
        world
    }

    #[test]
    fn image_difference_reinstalls_and_wipes_the_system_disk() {
        let server = server("a", "new");
        let mut world = World::new(vec![server.clone()]);
        world
            .observed
            .insert("a".into(), observed(&server, "old", ServerStatus::Running));
        let plan = world.only();
        assert_eq!(plan.action, ActionKind::Reinstall);
        assert_eq!(plan.wipes, vec!["system disk"]);
        assert!(plan.reasons.contains(&Reason::ImageDiffers {
            observed: "old".into(),
            desired: "new".into()
        }));
    }

    #[test]
    fn unrecorded_matching_server_is_adopted_not_reinstalled() {
        let server = server("a", "img");
        let mut world = World::new(vec![server.clone()]);
        world
            .observed
            .insert("a".into(), observed(&server, "img", ServerStatus::Running));
        let plan = world.only();
        assert_eq!(plan.action, ActionKind::Adopt);
        assert_eq!(plan.reasons, vec![Reason::AdoptMatchingImage]);
    }

    #[test]
    fn adopted_record_with_unknown_inputs_never_reinstalls() {
        let server = server("a", "img");
        let mut world = applied_world(server.clone());
        let record = world.recorded.get_mut("a").unwrap();
        for digest in record.input_digests.values_mut() {
            *digest = None;
        }
        assert_eq!(world.only().action, ActionKind::NoOp);
    }

    #[test]
    fn changed_hostname_user_data_and_revision_are_reasons() {
        let mut server = server("a", "img");
        let mut world = applied_world(server.clone());
        server.hostname = Some("other".into());
        server.user_data = Some("#cloud-config\npackages: [htop]\n".into());
        server.revision = 2;
        world.servers = vec![server];
        let plan = world.only();
        assert_eq!(plan.action, ActionKind::Reinstall);
        for field in [FIELD_HOSTNAME, FIELD_USER_DATA] {
            assert!(plan.reasons.contains(&Reason::InputChanged {
                field: field.into(),
                sensitive: false
            }));
        }
        assert!(plan.reasons.contains(&Reason::RevisionRaised {
            recorded: 0,
            desired: 2
        }));
        let hostname = plan.changes.iter().find(|c| c.field == "hostname").unwrap();
        assert_eq!(hostname.before.as_deref(), Some("a"));
        assert_eq!(hostname.after.as_deref(), Some("other"));
    }

    #[test]
    fn changed_password_is_a_sensitive_reason_without_values() {
        let mut server = server("a", "img");
        server.access = DesiredAccess::Password {
            secret: SecretRef::Env("PW".into()),
        };
        let mut world = applied_world(server.clone());
        let record = world.recorded.get_mut("a").unwrap();
        let old = input_digests(KEY, &server, Some(&"Old-pass1!".to_string().into()));
        record
            .input_digests
            .insert(FIELD_ACCESS.into(), old.get(FIELD_ACCESS));
        let plan = world.only();
        assert!(plan.reasons.contains(&Reason::InputChanged {
            field: FIELD_ACCESS.into(),
            sensitive: true
        }));
        let password = plan.changes.iter().find(|c| c.field == "password").unwrap();
        assert!(password.sensitive && password.changed);
        assert_eq!(
            (password.before.clone(), password.after.clone()),
            (None, None)
        );
    }

    #[test]
    fn replace_forces_a_reinstall_of_an_unchanged_server() {
        let server = server("a", "img");
        let mut world = applied_world(server);
        world.replace.insert("a".into());
        let plan = world.only();
        assert_eq!(plan.action, ActionKind::Reinstall);
        assert_eq!(plan.reasons, vec![Reason::ReplaceRequested]);
    }

    #[test]
    fn unknown_ids_busy_and_protected_servers_are_blocked() {
        let server = server("a", "new");
        let world = World::new(vec![server.clone()]);
        assert_eq!(world.only().reasons, vec![Reason::UnknownCloudId]);

        let mut busy = World::new(vec![server.clone()]);
        busy.observed.insert(
            "a".into(),
            observed(&server, "old", ServerStatus::Installing),
        );
        let plan = busy.only();
        assert_eq!(plan.action, ActionKind::Blocked);
        assert!(matches!(
            plan.reasons.last(),
            Some(Reason::StatusForbids { .. })
        ));

        let mut protected = server.clone();
        protected.protect = true;
        let mut guarded = World::new(vec![protected.clone()]);
        guarded.observed.insert(
            "a".into(),
            observed(&protected, "old", ServerStatus::Running),
        );
        let plan = guarded.only();
        assert_eq!(plan.action, ActionKind::Blocked);
        assert_eq!(plan.reasons.last(), Some(&Reason::Protected));
    }

    #[test]
    fn provider_without_image_reports_is_blocked_until_recorded_or_replaced() {
        let mut server = server("a", "img");
        server.provider_type = ProviderType::EdisKvm;
        let mut world = World::new(vec![server.clone()]);
        world.observed.insert(
            "a".into(),
            observed(&server, "ignored", ServerStatus::Running),
        );
        assert_eq!(world.only().reasons, vec![Reason::UnknownCurrentOs]);
        world.replace.insert("a".into());
        assert_eq!(world.only().action, ActionKind::Reinstall);
        world.replace.clear();
        world.recorded.insert("a".into(), record_of(&server));
        assert_eq!(world.only().action, ActionKind::NoOp);
    }

    #[test]
    fn a_provider_without_image_reports_says_where_the_before_image_comes_from() {
        let mut edis = server("a", "img-new");
        edis.provider_type = ProviderType::EdisKvm;
        let mut world = World::new(vec![edis.clone()]);
        world.observed.insert(
            "a".into(),
            observed(&edis, "ignored", ServerStatus::Running),
        );
        let plan = world.only();
        assert_eq!(plan.action, ActionKind::Blocked);
        assert_eq!(
            plan.notes,
            vec!["current OS not reported by EDIS; never applied by reimage"]
        );

        let mut record = record_of(&edis);
        record.image = "img-old".into();
        world.recorded.insert("a".into(), record.clone());
        let plan = world.only();
        assert_eq!(plan.action, ActionKind::Reinstall);
        // The comparison is with the record, never with what the provider said.
        assert!(plan.reasons.contains(&Reason::RecordedImageDiffers {
            recorded: "img-old".into(),
            desired: "img-new".into()
        }));
        assert_eq!(
            plan.notes,
            vec!["current OS not reported by EDIS; last applied by reimage: img-old"]
        );

        record.last_operation.as_mut().unwrap().kind = OperationKind::Adopt;
        record.image = "img-new".into();
        world.recorded.insert("a".into(), record);
        let plan = world.only();
        assert_eq!(plan.action, ActionKind::NoOp);
        assert_eq!(
            plan.notes,
            vec![
                "current OS not reported by EDIS; last applied by reimage: img-new (recorded by adoption)"
            ]
        );

        // Providers that report the image get no such note.
        let zenlayer = applied_world(server("z", "img"));
        assert!(zenlayer.only().notes.is_empty());
    }

    #[test]
    fn a_record_for_another_cloud_id_is_ignored() {
        let server = server("a", "img");
        let mut world = applied_world(server);
        world.recorded.get_mut("a").unwrap().cloud_id = "other".into();
        let plan = world.only();
        assert_eq!(plan.action, ActionKind::Adopt);
        assert!(matches!(plan.reasons[0], Reason::CloudIdChanged { .. }));
    }

    #[test]
    fn an_unknown_outcome_blocks_until_checked_unless_the_desired_image_shows() {
        let server = server("a", "new");
        let mut world = applied_world(server.clone());
        let operation = world
            .recorded
            .get_mut("a")
            .unwrap()
            .last_operation
            .as_mut()
            .unwrap();
        operation.outcome = Outcome::Unknown;
        world
            .observed
            .insert("a".into(), observed(&server, "old", ServerStatus::Running));
        let plan = world.only();
        assert_eq!(plan.action, ActionKind::Blocked);
        assert!(matches!(plan.reasons[0], Reason::LastOutcomeUnknown { .. }));
        world.replace.insert("a".into());
        assert_eq!(world.only().action, ActionKind::Reinstall);
        world.replace.clear();
        world
            .observed
            .insert("a".into(), observed(&server, "new", ServerStatus::Running));
        let plan = world.only();
        assert_eq!(plan.action, ActionKind::Adopt);
        assert_eq!(plan.reasons, [Reason::UnknownOutcomeResolved]);
    }

    #[test]
    fn a_failed_or_refused_last_apply_is_shown_but_is_no_reason_to_reinstall() {
        for outcome in [Outcome::Failed, Outcome::Refused] {
            let server = server("a", "img");
            let mut world = applied_world(server);
            let operation = world
                .recorded
                .get_mut("a")
                .unwrap()
                .last_operation
                .as_mut()
                .unwrap();
            operation.outcome = outcome;
            operation.message = Some("status forbids it".into());
            let plan = world.only();
            assert_eq!(plan.action, ActionKind::NoOp, "{outcome:?}");
            assert!(plan.reasons.is_empty());
            assert!(
                plan.notes
                    .iter()
                    .any(|note| note.contains("status forbids it")),
                "{:?}",
                plan.notes
            );
        }
    }

    #[test]
    fn a_record_of_an_attempt_alone_is_treated_as_never_applied() {
        let server = server("a", "img");
        let mut world = applied_world(server);
        let record = world.recorded.get_mut("a").unwrap();
        record.attempt_only = true;
        record.image = String::new();
        record.input_digests.clear();
        record.last_operation.as_mut().unwrap().outcome = Outcome::Refused;
        // The observed image matches: adopted, not reinstalled for the refusal.
        let plan = world.only();
        assert_eq!(plan.action, ActionKind::Adopt);
    }

    #[test]
    fn a_failed_install_is_retried_only_with_replace_where_the_api_allows_it() {
        let server = server("a", "img");
        let mut world = applied_world(server.clone());
        world.observed.insert(
            "a".into(),
            observed(&server, "old", ServerStatus::InstallFailed),
        );
        let plan = world.only();
        assert_eq!(plan.action, ActionKind::Blocked);
        assert!(plan.notes.iter().any(|note| note.contains("--replace a")));
        world.replace.insert("a".into());
        let plan = world.only();
        assert_eq!(plan.action, ActionKind::Reinstall);
        assert!(plan.notes.iter().any(|note| note.contains("retries it")));
        // A provider whose API refuses it stays blocked even with --replace.
        let mut other = server.clone();
        other.provider_type = ProviderType::JdcloudCps;
        let mut world = applied_world(other.clone());
        world.observed.insert(
            "a".into(),
            observed(&other, "old", ServerStatus::InstallFailed),
        );
        world.replace.insert("a".into());
        assert_eq!(world.only().action, ActionKind::Blocked);
    }

    #[test]
    fn install_failed_and_busy_unrecorded_servers_are_blocked_not_adopted() {
        let server = server("a", "img");
        let mut world = World::new(vec![server.clone()]);
        world.observed.insert(
            "a".into(),
            observed(&server, "img", ServerStatus::InstallFailed),
        );
        assert_eq!(world.only().action, ActionKind::Blocked);
        world.observed.insert(
            "a".into(),
            observed(&server, "img", ServerStatus::Installing),
        );
        let plan = world.only();
        assert_eq!(plan.action, ActionKind::Blocked);
        assert!(matches!(plan.reasons[0], Reason::StatusForbids { .. }));
    }

    #[test]
    fn provider_review_can_block_or_ask_to_stop_first() {
        let server = server("a", "new");
        let mut world = World::new(vec![server.clone()]);
        let mut seen = observed(&server, "old", ServerStatus::Running);
        if let Observation::Found(observed) = &mut seen {
            observed.extra.insert("needs_stop".into(), "true".into());
        }
        world.observed.insert("a".into(), seen.clone());
        let plan = world.only();
        assert_eq!(plan.action, ActionKind::StopAndReinstall);
        assert_eq!(plan.wipes, vec!["system disk", "DATA DISKS"]);
        assert_eq!(plan.notes, vec!["stopped first"]);
        if let Observation::Found(observed) = &mut seen {
            observed.extra.insert("locked".into(), "true".into());
        }
        world.observed.insert("a".into(), seen);
        let plan = world.only();
        assert_eq!(plan.action, ActionKind::Blocked);
        assert_eq!(
            plan.reasons.last(),
            Some(&Reason::ProviderBlocked {
                message: "locked".into()
            })
        );
    }

    fn protected_world(image_now: &str) -> World {
        let mut applied = server("a", "img");
        applied.protect = true;
        let mut world = applied_world(applied);
        // The reviewed change removes `protect`.
        world.servers[0].protect = false;
        world.servers[0].image = image_now.into();
        world
    }

    #[test]
    fn removing_protect_in_the_change_that_reinstalls_is_blocked() {
        let world = protected_world("img-new");
        let plan = world.only();
        assert_eq!(plan.action, ActionKind::Blocked);
        assert_eq!(
            plan.reasons.last(),
            Some(&Reason::ProtectionRemovedWithReinstall)
        );
        assert!(plan.wipes.is_empty());
        let reason = plan.reasons.last().unwrap().describe();
        assert!(reason.contains("its own reviewed change"), "{reason}");
        // `--replace` is a reinstall too.
        let mut replaced = protected_world("img");
        replaced.replace.insert("a".into());
        assert_eq!(
            replaced.only().reasons.last(),
            Some(&Reason::ProtectionRemovedWithReinstall)
        );
    }

    #[test]
    fn removing_protect_alone_updates_the_record_without_touching_the_machine() {
        let plan = protected_world("img").only();
        assert_eq!(plan.action, ActionKind::UpdateRecord);
        assert!(plan.action.is_change() && !plan.action.is_destructive());
        assert_eq!(
            plan.reasons,
            vec![Reason::ProtectionChanged {
                recorded: true,
                desired: false
            }]
        );
        assert_eq!(plan.changes.len(), 1);
        assert_eq!(plan.changes[0].field, "protect");
        assert_eq!(plan.changes[0].before.as_deref(), Some("true"));
        assert_eq!(plan.changes[0].after.as_deref(), Some("false"));
        assert!(plan.wipes.is_empty());

        // Once the record says unprotected, the reinstall goes through.
        let mut world = protected_world("img-new");
        world.recorded.get_mut("a").unwrap().protected = false;
        assert_eq!(world.only().action, ActionKind::Reinstall);
    }

    #[test]
    fn adding_protect_is_recorded_and_a_protected_adoption_keeps_it() {
        let mut world = applied_world(server("a", "img"));
        world.servers[0].protect = true;
        let plan = world.only();
        assert_eq!(plan.action, ActionKind::UpdateRecord);
        assert_eq!(
            plan.reasons,
            vec![Reason::ProtectionChanged {
                recorded: false,
                desired: true
            }]
        );
        // A protected server with a change pending stays blocked as before.
        world.servers[0].image = "img-new".into();
        assert_eq!(world.only().reasons.last(), Some(&Reason::Protected));
    }

    #[test]
    fn recorded_servers_no_longer_in_the_manifest_are_forgotten() {
        let kept = server("kept", "img");
        let mut world = applied_world(kept);
        let mut gone = record_of(&server("gone", "img-old"));
        gone.protected = true;
        world.recorded.insert("gone".into(), gone.clone());
        let plans = world.plan();
        assert_eq!(plans.len(), 2);
        assert_eq!(plans[0].action, ActionKind::NoOp);
        let forget = &plans[1];
        assert_eq!(forget.name, "gone");
        assert_eq!(forget.action, ActionKind::Forget);
        assert!(!forget.action.is_destructive() && forget.action.is_change());
        assert_eq!(
            forget.reasons,
            vec![Reason::NoLongerInManifest { protected: true }]
        );
        assert!(forget.reasons[0].describe().starts_with(
            "no longer in the manifest: will be forgotten (the machine is not touched)"
        ));
        assert!(forget.wipes.is_empty() && forget.observed.is_none());
        assert_eq!(forget.observed_fingerprint, record_fingerprint(&gone));
        assert_eq!(forget.cloud_id, gone.cloud_id);
        let summary = crate::plan::Summary::count(&plans);
        assert_eq!((summary.forget, summary.reinstall), (1, 0));

        // Out of scope (`--target`): nothing is forgotten.
        world.forget_removed = false;
        assert_eq!(world.plan().len(), 1);

        // A step still in flight for it: blocked, never silently dropped.
        world.forget_removed = true;
        world.in_flight.insert("gone".into(), StepCall::Reinstall);
        let blocked = world.plan().remove(1);
        assert_eq!(blocked.action, ActionKind::Blocked);
        assert_eq!(
            blocked.reasons,
            vec![Reason::StepInFlight {
                step: "reinstall".into()
            }]
        );
    }

    proptest! {
        /// A world where every server was applied and nothing moved plans as all no-op.
        #[test]
        fn plan_of_an_unchanged_world_is_all_no_op(
            specs in proptest::collection::vec(
                ("[a-z]{1,8}", "[a-z0-9-]{1,12}", proptest::option::of("[a-z]{1,10}"),
                 proptest::option::of(".{0,40}"), 0u64..5, any::<bool>()),
                0..12)
        ) {
            let mut world = World::new(Vec::new());
            let mut seen = BTreeSet::new();
            for (name, image, hostname, user_data, revision, protect) in specs {
                if !seen.insert(name.clone()) { continue; }
                let mut server = server(&name, &image);
                server.hostname = hostname;
                server.user_data = user_data;
                server.revision = revision;
                server.protect = protect;
                world.observed.insert(name.clone(), observed(&server, &image, ServerStatus::Running));
                world.recorded.insert(name.clone(), record_of(&server));
                world.servers.push(server);
            }
            for plan in world.plan() {
                prop_assert_eq!(plan.action, ActionKind::NoOp, "{:?}", plan.reasons);
                prop_assert!(plan.reasons.is_empty());
            }
        }

        /// The diff is a function: the same inputs give the same plan.
        #[test]
        fn diff_is_deterministic(image in "[a-z]{1,6}", observed_image in "[a-z]{1,6}") {
            let server = server("a", &image);
            let mut world = World::new(vec![server.clone()]);
            world.observed.insert("a".into(), observed(&server, &observed_image, ServerStatus::Running));
            prop_assert_eq!(world.plan(), world.plan());
        }
    }
}
