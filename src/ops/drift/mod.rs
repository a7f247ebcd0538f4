//! Drift: how the fleet differs from what reimage recorded (not from the manifest). For a
//! scheduled CI job: `reimage plan --drift` reads every recorded server once, and lists, apart
//! from any drift, the changes the manifest asks for.
//!
//! Drift is: the image changed (or the server was reinstalled) outside reimage, the server is
//! gone, or a status that needs someone (a failed install at the provider, an install reimage
//! did not start, a last outcome that was unknown, failed, or whose health gate did not pass).
//! A server with an apply step still in flight is not drift: an apply is under way.

pub mod render;

use std::collections::BTreeMap;

use serde::Serialize;

use super::fleet::Fleet;
use crate::error::Result;
use crate::manifest::{DesiredAccess, DesiredServer, Manifest};
use crate::plan::model::{ActionKind, Plan};
use crate::provider::{Observation, ServerStatus};
use crate::state::{GateStatus, Outcome, ServerRecord, State, StateStore};

/// What `plan --drift` found.
#[derive(Debug, Clone, Serialize)]
pub struct DriftReport {
    /// RFC 3339.
    pub checked_at: String,
    /// The state's serial when it was read.
    pub state_serial: u64,
    /// Recorded servers that were read.
    pub checked: usize,
    pub drift: Vec<Drift>,
    /// Recorded servers that could not be read (their provider is not in the manifest).
    pub unchecked: Vec<Unchecked>,
    /// Recorded servers with an apply step in flight: not judged.
    pub in_flight: Vec<String>,
    /// What the manifest would change (`reimage plan` shows it): not drift.
    pub manifest_changes: Vec<ManifestChange>,
}

impl DriftReport {
    pub fn has_drift(&self) -> bool {
        !self.drift.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Drift {
    pub server: String,
    pub provider: String,
    pub cloud_id: String,
    pub kind: DriftKind,
    /// What reimage recorded, where a value differs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recorded: Option<String>,
    /// What the provider reports now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed: Option<String>,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftKind {
    /// The provider reports another image than reimage installed.
    ImageChanged,
    /// The hostname moved: the server was likely reinstalled outside reimage.
    HostnameChanged,
    /// An install runs that reimage did not start.
    ReinstallingOutside,
    /// The provider no longer knows the server.
    Gone,
    /// A status that needs someone: at the provider, or the last outcome reimage recorded.
    NeedsAttention,
}

#[derive(Debug, Clone, Serialize)]
pub struct Unchecked {
    pub server: String,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ManifestChange {
    pub server: String,
    pub action: String,
    pub reasons: Vec<String>,
}

/// Compares one record with what its provider reports now (pure).
pub fn judge(name: &str, record: &ServerRecord, observation: &Observation) -> Vec<Drift> {
    let drift = |kind, recorded: Option<&str>, observed: Option<&str>, message: String| Drift {
        server: name.to_string(),
        provider: record.provider.clone(),
        cloud_id: record.cloud_id.clone(),
        kind,
        recorded: recorded.map(str::to_string),
        observed: observed.map(str::to_string),
        message,
    };
    let mut found = Vec::new();
    let observed = match observation {
        Observation::NotFound => {
            return vec![drift(
                DriftKind::Gone,
                None,
                None,
                format!(
                    "gone: the provider no longer knows id `{}`",
                    record.cloud_id
                ),
            )];
        }
        Observation::Found(observed) => observed,
    };
    match observed.status {
        ServerStatus::Gone => found.push(drift(
            DriftKind::Gone,
            None,
            Some(&observed.raw_status),
            format!("being deleted at the provider (`{}`)", observed.raw_status),
        )),
        ServerStatus::Installing => found.push(drift(
            DriftKind::ReinstallingOutside,
            None,
            Some(&observed.raw_status),
            format!(
                "an install is running that reimage did not start (`{}`)",
                observed.raw_status
            ),
        )),
        ServerStatus::InstallFailed => found.push(drift(
            DriftKind::NeedsAttention,
            None,
            Some(&observed.raw_status),
            format!(
                "the provider reports a failed install (`{}`)",
                observed.raw_status
            ),
        )),
        _ => {}
    }
    // A record that only keeps a failed first attempt says nothing about the machine's image.
    if !record.attempt_only
        && observed.status != ServerStatus::Installing
        && let Some(image) = observed.image.as_deref()
        && image != record.image
    {
        found.push(drift(
            DriftKind::ImageChanged,
            Some(&record.image),
            Some(image),
            format!(
                "image changed outside reimage: recorded `{}`, observed `{image}`",
                record.image
            ),
        ));
    }
    if let (Some(recorded), Some(now)) = (&record.hostname, &observed.hostname)
        && recorded != now
        && !record.attempt_only
    {
        found.push(drift(
            DriftKind::HostnameChanged,
            Some(recorded),
            Some(now),
            format!(
                "hostname changed outside reimage (reinstalled elsewhere?): recorded `{recorded}`, \
                 observed `{now}`"
            ),
        ));
    }
    if let Some(operation) = &record.last_operation {
        let attention = match (operation.outcome, &operation.health) {
            (Outcome::Unknown, _) => Some("the last apply's outcome is unknown"),
            (Outcome::Failed, _) => Some("the last apply's install failed"),
            (Outcome::GateFailed, _) => Some("the last apply's health gate did not pass"),
            (Outcome::Succeeded, Some(health)) if health.status == GateStatus::Pending => {
                Some("the last apply's health gate never finished")
            }
            _ => None,
        };
        if let Some(what) = attention {
            found.push(drift(
                DriftKind::NeedsAttention,
                None,
                None,
                format!(
                    "{what} (plan {}): {}",
                    operation.plan_id,
                    operation
                        .message
                        .as_deref()
                        .unwrap_or("no details recorded")
                ),
            ));
        }
    }
    found
}

/// Reads the fleet and compares it with `state`; `plan` (made from the same reads) gives the
/// manifest's changes and the observations of the servers it covers.
pub async fn check(
    manifest: &Manifest,
    state: &State,
    store: &dyn StateStore,
    fleet: &Fleet,
    plan: &Plan,
) -> Result<DriftReport> {
    let in_flight = crate::state::journal::servers_in_flight(
        &store
            .journal()
            .read()
            .map_err(|error| crate::error::Error::State(error.into()))?,
    );
    let mut observations: BTreeMap<String, Observation> = plan
        .servers
        .iter()
        .filter(|server| server.action != ActionKind::Forget)
        .filter(|server| {
            state
                .servers
                .get(&server.name)
                .is_some_and(|record| record.cloud_id == server.cloud_id)
        })
        .map(|server| {
            let observation = match &server.observed {
                Some(observed) => Observation::Found(observed.clone()),
                None => Observation::NotFound,
            };
            (server.name.clone(), observation)
        })
        .collect();
    // Records the plan did not read (no longer in the manifest, or another id under the name).
    let mut unchecked = Vec::new();
    let mut others: Vec<DesiredServer> = Vec::new();
    for (name, record) in &state.servers {
        if observations.contains_key(name) {
            continue;
        }
        if !manifest.providers.contains_key(&record.provider) {
            unchecked.push(Unchecked {
                server: name.clone(),
                reason: format!(
                    "provider `{}` is not in the manifest: it cannot be read",
                    record.provider
                ),
            });
            continue;
        }
        others.push(record_as_server(name, record));
    }
    if !others.is_empty() {
        let refs: Vec<&DesiredServer> = others.iter().collect();
        observations.extend(fleet.observe(&refs).await?);
    }
    let mut report = DriftReport {
        checked_at: jiff::Timestamp::now().to_string(),
        state_serial: state.serial,
        checked: 0,
        drift: Vec::new(),
        unchecked,
        in_flight: Vec::new(),
        manifest_changes: plan
            .servers
            .iter()
            .filter(|server| server.action.is_change() || server.action == ActionKind::Blocked)
            .map(|server| ManifestChange {
                server: server.name.clone(),
                action: server.action.as_str().to_string(),
                reasons: server
                    .reasons
                    .iter()
                    .map(|reason| reason.describe())
                    .collect(),
            })
            .collect(),
    };
    for (name, observation) in &observations {
        let Some(record) = state.servers.get(name) else {
            continue;
        };
        if in_flight.contains_key(name) {
            report.in_flight.push(name.clone());
            continue;
        }
        report.checked += 1;
        report.drift.extend(judge(name, record, observation));
    }
    Ok(report)
}

/// A recorded server in the shape the fleet reads.
fn record_as_server(name: &str, record: &ServerRecord) -> DesiredServer {
    DesiredServer {
        name: name.to_string(),
        provider: record.provider.clone(),
        provider_type: record.provider_type,
        cloud_id: record.cloud_id.clone(),
        image: record.image.clone(),
        revision: record.revision,
        access: DesiredAccess::None,
        hostname: record.hostname.clone(),
        user_data: None,
        protect: record.protected,
        options: Default::default(),
        group: None,
        address: None,
        health: Default::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::ProviderType;
    use crate::provider::Observed;
    use crate::state::{HealthRecord, OperationKind, OperationRecord};

    fn record() -> ServerRecord {
        ServerRecord {
            provider: "zl".into(),
            provider_type: ProviderType::ZenlayerBmc,
            cloud_id: "1".into(),
            image: "img-new".into(),
            revision: 0,
            input_digests: BTreeMap::new(),
            hostname: Some("web-1".into()),
            user_data: None,
            ssh_key_id: None,
            protected: false,
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

    fn seen(status: ServerStatus, image: &str, hostname: &str) -> Observation {
        Observation::Found(Observed {
            cloud_id: "1".into(),
            status,
            raw_status: format!("{status:?}").to_uppercase(),
            image: Some(image.into()),
            image_name: None,
            hostname: Some(hostname.into()),
            address: None,
            extra: Default::default(),
        })
    }

    fn kinds(found: Vec<Drift>) -> Vec<DriftKind> {
        found.into_iter().map(|drift| drift.kind).collect()
    }

    #[test]
    fn a_server_as_recorded_has_no_drift() {
        let found = judge(
            "web-1",
            &record(),
            &seen(ServerStatus::Running, "img-new", "web-1"),
        );
        assert_eq!(found, vec![]);
        // Stopped is not drift.
        assert!(
            judge(
                "web-1",
                &record(),
                &seen(ServerStatus::Stopped, "img-new", "web-1")
            )
            .is_empty()
        );
    }

    #[test]
    fn each_kind_of_drift_is_named() {
        let web =
            |status, image, host| kinds(judge("web-1", &record(), &seen(status, image, host)));
        assert_eq!(
            web(ServerStatus::Running, "img-old", "web-1"),
            [DriftKind::ImageChanged]
        );
        assert_eq!(
            web(ServerStatus::Running, "img-new", "other"),
            [DriftKind::HostnameChanged]
        );
        assert_eq!(
            web(ServerStatus::Installing, "img-old", "web-1"),
            [DriftKind::ReinstallingOutside]
        );
        assert_eq!(
            web(ServerStatus::InstallFailed, "img-new", "web-1"),
            [DriftKind::NeedsAttention]
        );
        assert_eq!(
            kinds(judge("web-1", &record(), &Observation::NotFound)),
            [DriftKind::Gone]
        );
        let mut failed_gate = record();
        let operation = failed_gate.last_operation.as_mut().unwrap();
        operation.outcome = Outcome::GateFailed;
        operation.message = Some("tcp x:22 failed".into());
        let found = judge(
            "web-1",
            &failed_gate,
            &seen(ServerStatus::Running, "img-new", "web-1"),
        );
        assert_eq!(kinds(found.clone()), [DriftKind::NeedsAttention]);
        assert!(found[0].message.contains("health gate did not pass"));
        let mut pending = record();
        pending.last_operation.as_mut().unwrap().health = Some(HealthRecord {
            status: GateStatus::Pending,
            check: "tcp x:22".into(),
            attempts: 0,
            message: None,
            finished_at: None,
        });
        assert_eq!(
            kinds(judge(
                "web-1",
                &pending,
                &seen(ServerStatus::Running, "img-new", "web-1")
            )),
            [DriftKind::NeedsAttention]
        );
        // A record of a failed first attempt says nothing of the image on the machine.
        let mut attempt = record();
        attempt.attempt_only = true;
        attempt.last_operation.as_mut().unwrap().outcome = Outcome::Refused;
        assert!(
            judge(
                "web-1",
                &attempt,
                &seen(ServerStatus::Running, "img-old", "x")
            )
            .is_empty()
        );
    }
}
