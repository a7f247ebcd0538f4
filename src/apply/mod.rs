//! Apply: refuse a stale plan, then carry out exactly the plan's actions and record each outcome.
//!
//! Only servers the plan lists as `adopt` or `reinstall` are touched. A reinstall call is sent
//! once; it is never resent blindly. Each outcome is written to state as soon as it is known.

pub mod confirm;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use crate::digest::sha256_hex;
use crate::error::{Error, Result};
use crate::ops::fleet::Fleet;
use crate::ops::plan::{digests_of, password_of};
use crate::plan::diff::fingerprint;
use crate::plan::model::{ActionKind, Plan, ServerPlan};
use crate::plan::inputs::FIELD_ACCESS;
use crate::provider::{
    Observation, Operation, OperationStatus, Provider, ReinstallRequest, ResolvedAccess,
};
use crate::manifest::DesiredAccess;
use crate::state::{
    OperationKind, OperationRecord, Outcome, ServerRecord, State, StateLock, StateStore,
};

/// Reinstalls in flight at once (the rollout policy of a later release refines this).
pub const DEFAULT_MAX_PARALLEL: usize = 10;

/// Something worth telling the operator while an apply runs.
#[derive(Debug, Clone)]
pub enum Event {
    Adopted { server: String },
    ReinstallStarted { server: String, request_id: Option<String> },
    Waiting { server: String, detail: String, elapsed: Duration },
    Reinstalled { server: String, elapsed: Duration },
    Failed { server: String, message: String },
}

/// What happened, per server.
#[derive(Debug, Default, Clone)]
pub struct ApplySummary {
    pub adopted: Vec<String>,
    pub reinstalled: Vec<String>,
    /// (server, message)
    pub failed: Vec<(String, String)>,
    pub not_started: Vec<String>,
}

impl ApplySummary {
    pub fn succeeded(&self) -> bool {
        self.failed.is_empty() && self.not_started.is_empty()
    }
}

/// Checks that nothing moved since the plan was made; names every difference.
pub async fn check_not_stale(
    plan: &Plan,
    manifest_digest: Option<&str>,
    state: &State,
    fleet: &Fleet,
) -> Result<()> {
    let mut differences = Vec::new();
    if plan.state.lineage.as_deref() != Some(state.lineage.as_str()) {
        differences.push(format!(
            "state lineage is `{}`, the plan was made against `{}`",
            state.lineage,
            plan.state.lineage.as_deref().unwrap_or("(no state)")
        ));
    } else if plan.state.serial != state.serial {
        differences.push(format!(
            "state serial is {}, the plan was made at serial {} (another apply ran since)",
            state.serial, plan.state.serial
        ));
    }
    if let Some(digest) = manifest_digest
        && digest != plan.manifest_digest
    {
        differences.push("the manifest files changed since the plan was made".to_string());
    }
    let changing: Vec<&ServerPlan> = plan
        .servers
        .iter()
        .filter(|server| server.action.is_change())
        .collect();
    let desired: Vec<_> = changing.iter().map(|server| &server.desired).collect();
    let observed = fleet.observe(&desired).await?;
    for server in &changing {
        let now = observed
            .get(&server.name)
            .cloned()
            .unwrap_or(Observation::NotFound);
        if fingerprint(&now) != server.observed_fingerprint {
            differences.push(format!(
                "server `{}` changed at the provider since the plan ({})",
                server.name,
                describe_observation(&now)
            ));
        }
        match digests_of(state, &server.desired) {
            Ok(digests) => {
                for (field, digest) in &digests {
                    if server.input_digests.get(field) != Some(digest) {
                        let what = if field == FIELD_ACCESS {
                            "access (a secret) changed".to_string()
                        } else {
                            format!("{field} changed")
                        };
                        differences.push(format!(
                            "server `{}`: {what} since the plan",
                            server.name
                        ));
                    }
                }
            }
            Err(error) => differences.push(format!("server `{}`: {error}", server.name)),
        }
    }
    if differences.is_empty() {
        Ok(())
    } else {
        Err(Error::StalePlan { differences })
    }
}

fn describe_observation(observation: &Observation) -> String {
    match observation {
        Observation::NotFound => "now unknown to the provider".to_string(),
        Observation::Found(observed) => format!(
            "now {} with image {}",
            observed.raw_status,
            observed.image.as_deref().unwrap_or("(unknown)")
        ),
    }
}

/// Deterministic per (plan, server, step), so a retried or resumed step reuses its token.
pub fn step_token(plan_id: &str, server: &str, step: &str) -> String {
    sha256_hex(format!("{plan_id}/{server}/{step}").as_bytes())[..32].to_string()
}

fn now_text() -> String {
    jiff::Timestamp::now().to_string()
}

/// Carries out the plan's changes and records every outcome in state.
pub async fn execute(
    plan: &Plan,
    fleet: &Fleet,
    store: &dyn StateStore,
    lock: &dyn StateLock,
    state: &mut State,
    max_parallel: usize,
    report: &(dyn Fn(Event) + Sync),
) -> Result<ApplySummary> {
    let mut summary = ApplySummary::default();
    for server in plan
        .servers
        .iter()
        .filter(|server| server.action == ActionKind::Adopt)
    {
        let record = adopted_record(plan, server, state)?;
        state.servers.insert(server.name.clone(), record);
        store.write(lock, state)?;
        summary.adopted.push(server.name.clone());
        report(Event::Adopted {
            server: server.name.clone(),
        });
    }

    let semaphore = Arc::new(tokio::sync::Semaphore::new(max_parallel.max(1)));
    let mut tasks: JoinSet<(String, std::result::Result<Operation, String>, Option<Operation>)> =
        JoinSet::new();
    let (events_sender, mut events) = tokio::sync::mpsc::unbounded_channel::<Event>();
    for server in plan
        .servers
        .iter()
        .filter(|server| server.action.is_destructive())
    {
        let provider = fleet.provider(&server.provider)?;
        let request = match reinstall_request(plan, server) {
            Ok(request) => request,
            Err(error) => {
                summary.failed.push((server.name.clone(), error.to_string()));
                continue;
            }
        };
        let semaphore = semaphore.clone();
        let events = events_sender.clone();
        tasks.spawn(async move {
            let _permit = semaphore.acquire_owned().await;
            let name = request.server.clone();
            let (result, operation) = reinstall_and_wait(provider, request, events).await;
            (name, result, operation)
        });
    }
    drop(events_sender);

    loop {
        tokio::select! {
            Some(event) = events.recv() => report(event),
            joined = tasks.join_next() => {
                let Some(joined) = joined else { break };
                let (name, result, operation) = joined.map_err(|error| Error::Io {
                    message: format!("a reinstall task failed: {error}"),
                })?;
                let Some(server) = plan.servers.iter().find(|server| server.name == name) else {
                    continue;
                };
                match result {
                    Ok(operation) => {
                        let record = reinstalled_record(plan, server, state, &operation)?;
                        state.servers.insert(name.clone(), record);
                        store.write(lock, state)?;
                        summary.reinstalled.push(name);
                    }
                    Err(message) => {
                        let record = failed_record(plan, server, state, operation.as_ref(), &message);
                        state.servers.insert(name.clone(), record);
                        store.write(lock, state)?;
                        report(Event::Failed { server: name.clone(), message: message.clone() });
                        summary.failed.push((name, message));
                    }
                }
            }
        }
    }
    while let Ok(event) = events.try_recv() {
        report(event);
    }
    Ok(summary)
}

fn reinstall_request(plan: &Plan, server: &ServerPlan) -> Result<ReinstallRequest> {
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

/// Sends the reinstall once, then polls until it ends or times out.
async fn reinstall_and_wait(
    provider: Arc<dyn Provider>,
    request: ReinstallRequest,
    events: tokio::sync::mpsc::UnboundedSender<Event>,
) -> (std::result::Result<Operation, String>, Option<Operation>) {
    let started = Instant::now();
    let operation = match provider.reinstall(&request).await {
        Ok(operation) => operation,
        Err(error) => {
            let mut message = format!("reinstall call failed: {error}");
            if matches!(error, crate::provider::ProviderError::Transport { maybe_sent: true, .. }) {
                message.push_str(
                    "; the call may have reached the provider: check the server before applying again",
                );
            }
            return (Err(message), None);
        }
    };
    let _ = events.send(Event::ReinstallStarted {
        server: request.server.clone(),
        request_id: operation.request_id.clone(),
    });
    let capabilities = provider.capabilities().clone();
    let mut last_detail = String::new();
    loop {
        if started.elapsed() > capabilities.install_timeout {
            return (
                Err(format!(
                    "timed out after {}s waiting for the install (it may still be running at the provider)",
                    capabilities.install_timeout.as_secs()
                )),
                Some(operation),
            );
        }
        tokio::time::sleep(capabilities.poll_interval).await;
        let statuses = match provider.poll(std::slice::from_ref(&operation)).await {
            Ok(statuses) => statuses,
            Err(error) if error.is_retryable() => {
                last_detail = format!("status read failed, will retry: {error}");
                continue;
            }
            Err(error) => return (Err(format!("status read failed: {error}")), Some(operation)),
        };
        match statuses.into_iter().next() {
            Some(OperationStatus::Succeeded { .. }) => {
                let _ = events.send(Event::Reinstalled {
                    server: request.server.clone(),
                    elapsed: started.elapsed(),
                });
                return (Ok(operation), None);
            }
            Some(OperationStatus::Failed { message, request_id }) => {
                let message = match request_id {
                    Some(id) => format!("{message} (request id {id})"),
                    None => message,
                };
                return (Err(message), Some(operation));
            }
            Some(OperationStatus::InProgress { detail }) => {
                if detail != last_detail {
                    let _ = events.send(Event::Waiting {
                        server: request.server.clone(),
                        detail: detail.clone(),
                        elapsed: started.elapsed(),
                    });
                    last_detail = detail;
                }
            }
            None => {
                return (
                    Err("the provider returned no status for the operation".to_string()),
                    Some(operation),
                );
            }
        }
    }
}

fn ssh_key_of(server: &ServerPlan) -> Option<String> {
    match &server.desired.access {
        DesiredAccess::SshKeyId { id } => Some(id.clone()),
        _ => None,
    }
}

fn adopted_record(plan: &Plan, server: &ServerPlan, state: &State) -> Result<ServerRecord> {
    // The inputs as desired now become the baseline: a later change to them reinstalls.
    let digests = digests_of(state, &server.desired)?;
    let now = now_text();
    let image = server
        .observed
        .as_ref()
        .and_then(|observed| observed.image.clone())
        .unwrap_or_else(|| server.desired.image.clone());
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
        last_operation: Some(OperationRecord {
            kind: OperationKind::Adopt,
            plan_id: plan.plan_id.clone(),
            outcome: Outcome::Succeeded,
            message: None,
            request_id: None,
            job_id: None,
            started_at: now.clone(),
            finished_at: now.clone(),
        }),
        updated_at: now,
    })
}

fn reinstalled_record(
    plan: &Plan,
    server: &ServerPlan,
    state: &State,
    operation: &Operation,
) -> Result<ServerRecord> {
    let digests = digests_of(state, &server.desired)?;
    let now = now_text();
    Ok(ServerRecord {
        provider: server.provider.clone(),
        provider_type: server.provider_type,
        cloud_id: server.cloud_id.clone(),
        image: server.desired.image.clone(),
        revision: server.desired.revision,
        input_digests: digests.into_iter().map(|(k, v)| (k, Some(v))).collect(),
        hostname: server.desired.hostname.clone(),
        user_data: server.desired.user_data.clone(),
        ssh_key_id: ssh_key_of(server),
        last_operation: Some(OperationRecord {
            kind: OperationKind::Reinstall,
            plan_id: plan.plan_id.clone(),
            outcome: Outcome::Succeeded,
            message: None,
            request_id: operation.request_id.clone(),
            job_id: operation.job_id.clone(),
            started_at: timestamp_text(operation.started_at_ms),
            finished_at: now.clone(),
        }),
        updated_at: now,
    })
}

/// A failed reinstall keeps what was last applied (if anything) and records the failure.
fn failed_record(
    plan: &Plan,
    server: &ServerPlan,
    state: &State,
    operation: Option<&Operation>,
    message: &str,
) -> ServerRecord {
    let now = now_text();
    let mut record = match state.servers.get(&server.name) {
        Some(record) if record.cloud_id == server.cloud_id => record.clone(),
        _ => ServerRecord {
            provider: server.provider.clone(),
            provider_type: server.provider_type,
            cloud_id: server.cloud_id.clone(),
            image: server
                .observed
                .as_ref()
                .and_then(|observed| observed.image.clone())
                .unwrap_or_default(),
            revision: 0,
            input_digests: BTreeMap::new(),
            hostname: None,
            user_data: None,
            ssh_key_id: None,
            last_operation: None,
            updated_at: now.clone(),
        },
    };
    record.last_operation = Some(OperationRecord {
        kind: OperationKind::Reinstall,
        plan_id: plan.plan_id.clone(),
        outcome: Outcome::Failed,
        message: Some(message.to_string()),
        request_id: operation.and_then(|operation| operation.request_id.clone()),
        job_id: operation.and_then(|operation| operation.job_id.clone()),
        started_at: operation
            .map(|operation| timestamp_text(operation.started_at_ms))
            .unwrap_or_else(|| now.clone()),
        finished_at: now.clone(),
    });
    record.updated_at = now;
    record
}

fn timestamp_text(unix_ms: i64) -> String {
    jiff::Timestamp::from_millisecond(unix_ms)
        .map(|time| time.to_string())
        .unwrap_or_else(|_| now_text())
}
