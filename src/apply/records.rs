//! What apply writes into the state for each outcome, and the provider request it sends.

use crate::error::Result;
use crate::manifest::{DesiredAccess, ProviderType};
use crate::plan::inputs::{digests_of, password_of};
use crate::plan::model::{Plan, ServerPlan};
use crate::provider::{Operation, ReinstallRequest, ResolvedAccess};
use crate::state::{
    GateStatus, HealthRecord, OperationKind, OperationRecord, Outcome, ServerRecord, State,
};

use super::step_token;

pub fn now_text() -> String {
    jiff::Timestamp::now().to_string()
}

pub fn timestamp_text(unix_ms: i64) -> String {
    jiff::Timestamp::from_millisecond(unix_ms)
        .map(|time| time.to_string())
        .unwrap_or_else(|_| now_text())
}

/// The request for one planned reinstall; resolves the password reference now.
pub fn reinstall_request(plan: &Plan, server: &ServerPlan) -> Result<ReinstallRequest> {
    let desired = &server.desired;
    let access = match &desired.access {
        DesiredAccess::None => ResolvedAccess::None,
        DesiredAccess::SshKeyId { id } => ResolvedAccess::SshKeyId(id.clone()),
        DesiredAccess::Password { .. } => match password_of(desired)? {
            Some(password) => ResolvedAccess::Password(password),
            None => ResolvedAccess::None,
        },
    };
    Ok(ReinstallRequest {
        server: server.name.clone(),
        cloud_id: server.cloud_id.clone(),
        image: desired.image.clone(),
        hostname: desired.hostname.clone(),
        user_data: desired.user_data.clone(),
        access,
        options: desired.options.clone(),
        token: step_token(&plan.plan_id, &server.name, "reinstall"),
        previous_image: server
            .observed
            .as_ref()
            .and_then(|observed| observed.image.clone()),
    })
}

fn ssh_key_of(server: &ServerPlan) -> Option<String> {
    match &server.desired.access {
        DesiredAccess::SshKeyId { id } => Some(id.clone()),
        _ => None,
    }
}

fn record_with(
    plan: &Plan,
    server: &ServerPlan,
    state: &State,
    image: String,
    operation: OperationRecord,
) -> Result<ServerRecord> {
    let digests = digests_of(state, &server.desired)?;
    Ok(ServerRecord {
        provider: server.provider.clone(),
        provider_type: server.provider_type,
        cloud_id: server.cloud_id.clone(),
        image,
        revision: server.desired.revision,
        input_digests: digests.into_iter().map(|(k, v)| (k, Some(v))).collect(),
        hostname: server.desired.hostname.clone(),
        user_data: server.desired.user_data.clone(),
        ssh_key_id: ssh_key_of(server),
        // Adoptions of protected servers record it; reinstalls only happen unprotected.
        protected: server.desired.protect,
        updated_at: operation.finished_at.clone(),
        attempt_only: false,
        last_operation: Some(OperationRecord {
            plan_id: plan.plan_id.clone(),
            ..operation
        }),
    })
}

/// Adoption: the inputs as desired now become the baseline, so a later change reinstalls.
pub fn adopted_record(plan: &Plan, server: &ServerPlan, state: &State) -> Result<ServerRecord> {
    let now = now_text();
    let image = server
        .observed
        .as_ref()
        .and_then(|observed| observed.image.clone())
        .unwrap_or_else(|| server.desired.image.clone());
    record_with(
        plan,
        server,
        state,
        image,
        OperationRecord {
            kind: OperationKind::Adopt,
            plan_id: plan.plan_id.clone(),
            outcome: Outcome::Succeeded,
            message: None,
            request_id: None,
            job_id: None,
            started_at: now.clone(),
            finished_at: now,
            health: None,
        },
    )
}

/// The record a successful reinstall will write, prepared before the call so that the journal
/// can carry it (a crash after the install finishes can then still be recorded exactly).
pub fn success_record(plan: &Plan, server: &ServerPlan, state: &State) -> Result<ServerRecord> {
    let now = now_text();
    let mut record = record_with(
        plan,
        server,
        state,
        server.desired.image.clone(),
        OperationRecord {
            kind: OperationKind::Reinstall,
            plan_id: plan.plan_id.clone(),
            outcome: Outcome::Succeeded,
            message: None,
            request_id: None,
            job_id: None,
            started_at: now.clone(),
            finished_at: now,
            health: None,
        },
    )?;
    // With a gate, the success recorded with the install says the gate is still to pass.
    if let (Some(gate), Some(operation)) = (&server.health, record.last_operation.as_mut()) {
        operation.health = Some(HealthRecord {
            status: GateStatus::Pending,
            check: gate.check.describe(),
            attempts: 0,
            message: None,
            finished_at: None,
        });
    }
    Ok(record)
}

/// Completes a prepared success record with the operation's ids and times.
pub fn finish_success(
    mut record: ServerRecord,
    operation: Option<&Operation>,
    note: Option<&str>,
) -> ServerRecord {
    let now = now_text();
    record.updated_at = now.clone();
    if let Some(last) = record.last_operation.as_mut() {
        last.finished_at = now;
        last.message = note.map(str::to_string);
        if let Some(operation) = operation {
            last.request_id = operation.request_id.clone();
            last.job_id = operation.job_id.clone();
            last.started_at = timestamp_text(operation.started_at_ms);
        }
    }
    record
}

/// Which server of which plan a step is about.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub plan_id: &'a str,
    pub server: &'a str,
    pub provider: &'a str,
    pub provider_type: ProviderType,
    pub cloud_id: &'a str,
    /// The image seen at plan time.
    pub previous_image: Option<&'a str>,
}

/// A reinstall that did not succeed keeps what was last applied, if anything, and records how
/// it ended; it never pretends the new inputs are on the machine. A server reimage never
/// applied gets a record that holds only this attempt ([`ServerRecord::attempt_only`]).
pub fn failed_record(
    target: &Target<'_>,
    state: &State,
    operation: Option<&Operation>,
    message: &str,
    outcome: Outcome,
) -> ServerRecord {
    let now = now_text();
    let mut record = match state.servers.get(target.server) {
        Some(record) if record.cloud_id == target.cloud_id => record.clone(),
        _ => ServerRecord {
            provider: target.provider.to_string(),
            provider_type: target.provider_type,
            cloud_id: target.cloud_id.to_string(),
            image: target.previous_image.unwrap_or_default().to_string(),
            revision: 0,
            input_digests: Default::default(),
            hostname: None,
            user_data: None,
            ssh_key_id: None,
            protected: false,
            last_operation: None,
            updated_at: now.clone(),
            attempt_only: true,
        },
    };
    record.last_operation = Some(OperationRecord {
        kind: OperationKind::Reinstall,
        plan_id: target.plan_id.to_string(),
        outcome,
        message: Some(message.to_string()),
        request_id: operation.and_then(|operation| operation.request_id.clone()),
        job_id: operation.and_then(|operation| operation.job_id.clone()),
        started_at: operation
            .map(|operation| timestamp_text(operation.started_at_ms))
            .unwrap_or_else(|| now.clone()),
        finished_at: now.clone(),
        health: None,
    });
    record.updated_at = now;
    record
}
