//! Making a plan: scope the servers, observe them, digest their inputs, run the pure diff.

use std::collections::{BTreeMap, BTreeSet};

pub use crate::plan::inputs::{digests_of, password_of};

use super::fleet::Fleet;
use crate::error::{Error, Result};
use crate::manifest::{DesiredServer, Manifest};
use crate::output::escape_control;
use crate::plan::diff::{DiffInput, diff};
use crate::plan::gates;
use crate::plan::model::{
    ActionKind, PLAN_FORMAT_VERSION, Plan, Reason, ServerPlan, StateRef, Summary,
};
use crate::provider::ReinstallReview;
use crate::state::journal::servers_in_flight;
use crate::state::{HealthRecord, State, StateStore};

/// How long a saved plan may be applied after it was made, unless `--plan-ttl` says otherwise.
pub const DEFAULT_PLAN_TTL: jiff::SignedDuration = jiff::SignedDuration::from_hours(24);

#[derive(Debug, Clone)]
pub struct PlanOptions {
    /// Only these servers (all when empty).
    pub targets: Vec<String>,
    /// Reinstall these even when nothing changed.
    pub replace: Vec<String>,
    /// Command-line overrides of the rollout, laid over the default and every group.
    pub rollout: crate::manifest::model::RolloutSpec,
    /// How long the plan may be applied (`expires_at` = `created_at` + this).
    pub ttl: jiff::SignedDuration,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            targets: Vec::new(),
            replace: Vec::new(),
            rollout: Default::default(),
            ttl: DEFAULT_PLAN_TTL,
        }
    }
}

/// The providers' refusals of desired inputs (catalogue checks), all reported together.
fn refused_inputs(problems: Vec<(String, crate::provider::FieldIssue)>) -> Result<()> {
    let problems: Vec<String> = problems
        .into_iter()
        .map(|(server, issue)| {
            let mut line = format!("server `{server}`, `{}`: {}", issue.pointer, issue.message);
            if let Some(help) = issue.help {
                line.push_str(&format!(" ({help})"));
            }
            escape_control(&line).into_owned()
        })
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::usage(
            format!(
                "the providers refused {} input(s):\n  - {}",
                problems.len(),
                problems.join("\n  - ")
            ),
            "fix the manifest; nothing was planned or changed",
        ))
    }
}

fn check_names(manifest: &Manifest, names: &[String], flag: &str) -> Result<()> {
    let known: BTreeSet<&str> = manifest.servers.iter().map(|s| s.name.as_str()).collect();
    for name in names {
        if !known.contains(name.as_str()) {
            let mut help = format!(
                "`{flag}` takes a server name from the manifest; known: {}",
                known
                    .iter()
                    .take(20)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            if known.len() > 20 {
                help.push_str(", …");
            }
            return Err(Error::usage(
                format!("no server named `{name}` in the manifest ({flag} {name})"),
                help,
            ));
        }
    }
    Ok(())
}

/// Plans the manifest against `state` (read from `store`, whose name and journal the plan
/// also takes into account).
pub async fn make_plan(
    manifest: &Manifest,
    state: &State,
    store: &dyn StateStore,
    fleet: &Fleet,
    options: &PlanOptions,
) -> Result<Plan> {
    let created_at = jiff::Timestamp::now();
    let expires_at = created_at.checked_add(options.ttl).map_err(|error| {
        Error::usage(
            format!("`--plan-ttl {}` is out of range: {error}", options.ttl),
            "give a duration such as `24h`, `30m` or `7d`",
        )
    })?;
    let in_flight = servers_in_flight(
        &store
            .journal()
            .read()
            .map_err(|error| Error::State(error.into()))?,
    );
    let commit = manifest
        .files
        .first()
        .and_then(|file| super::git::head_commit(file));
    check_names(manifest, &options.targets, "--target")?;
    check_names(manifest, &options.replace, "--replace")?;
    let targets: BTreeSet<&str> = options.targets.iter().map(String::as_str).collect();
    // The whole manifest is planned as it is; only `--target` copies out the servers it names.
    let servers: std::borrow::Cow<'_, [DesiredServer]> = if targets.is_empty() {
        std::borrow::Cow::Borrowed(&manifest.servers)
    } else {
        manifest
            .servers
            .iter()
            .filter(|server| targets.contains(server.name.as_str()))
            .cloned()
            .collect()
    };
    let scoped: Vec<&DesiredServer> = servers.iter().collect();
    let (observed, problems) = fleet.observe_and_check(&scoped).await?;
    refused_inputs(problems)?;
    let mut digests = BTreeMap::new();
    for server in servers.iter() {
        digests.insert(server.name.clone(), digests_of(state, server)?);
    }
    let replace: BTreeSet<String> = options.replace.iter().cloned().collect();
    let mut reports_image = BTreeMap::new();
    let mut reinstalls_failed = BTreeMap::new();
    for server in servers.iter() {
        let capabilities = fleet.provider(&server.provider)?.capabilities().clone();
        reports_image.insert(server.provider_type, capabilities.reports_image);
        reinstalls_failed.insert(server.provider_type, capabilities.reinstalls_failed_install);
    }
    let planned = diff(
        &DiffInput {
            servers: &servers,
            recorded: &state.servers,
            replace: &replace,
            reports_image: &|provider_type| {
                reports_image.get(&provider_type).copied().unwrap_or(true)
            },
            reinstalls_failed_install: &|provider_type| {
                reinstalls_failed
                    .get(&provider_type)
                    .copied()
                    .unwrap_or(false)
            },
            review: &|desired, observed| match fleet.provider(&desired.provider) {
                Ok(provider) => provider.review_reinstall(desired, observed),
                Err(_) => ReinstallReview::default(),
            },
            forget_removed: options.targets.is_empty(),
            in_flight: &in_flight,
        },
        observed,
        digests,
    );
    let planned = with_gates(planned, fleet, state)?;
    let mut rollout = manifest.policy.clone();
    rollout.default = rollout.default.overlaid(&options.rollout);
    for group in rollout.groups.values_mut() {
        *group = group.overlaid(&options.rollout);
    }
    let waves = crate::plan::rollout::waves(&planned, &rollout);
    let pace = crate::plan::pace::estimate(&planned, &waves, &pace_figures(fleet, &planned)?);
    Ok(Plan {
        format_version: PLAN_FORMAT_VERSION,
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        plan_id: uuid::Uuid::now_v7().to_string(),
        created_at: created_at.to_string(),
        expires_at: expires_at.to_string(),
        commit,
        manifest_digest: manifest.digest.clone(),
        state: StateRef {
            name: store.name(),
            lineage: Some(state.lineage.clone()),
            serial: state.serial,
        },
        providers: manifest.providers.clone(),
        emulator: manifest.emulator.clone(),
        state_path: store.location(),
        backend: manifest.backend.clone(),
        summary: Summary::count(&planned),
        servers: planned,
        rollout,
        waves,
        pace,
    })
}

/// What the pace of each provider with a reinstall in the plan depends on: its rate limits,
/// batch sizes, poll interval and install estimate.
fn pace_figures(
    fleet: &Fleet,
    planned: &[crate::plan::model::ServerPlan],
) -> Result<BTreeMap<String, crate::plan::pace::ProviderFigures>> {
    use crate::provider::limits::ApiFamily;
    let mut figures = BTreeMap::new();
    for server in planned
        .iter()
        .filter(|server| server.action.is_destructive())
    {
        if figures.contains_key(&server.provider) {
            continue;
        }
        let provider = fleet.provider(&server.provider)?;
        let capabilities = provider.capabilities();
        let limits = provider.rate_limits();
        let rate = |family: ApiFamily| {
            limits
                .get(&family)
                .map(|limit| limit.per_minute)
                .filter(|per_minute| per_minute.is_finite())
        };
        figures.insert(
            server.provider.clone(),
            crate::plan::pace::ProviderFigures {
                reinstall_per_minute: rate(ApiFamily::Reinstall),
                reinstall_batch: capabilities.reinstall_batch,
                status_per_minute: rate(ApiFamily::Status),
                poll_batch: capabilities.observe_batch,
                poll_interval: capabilities.poll_interval,
                install_estimate: capabilities.install_estimate,
            },
        );
    }
    Ok(figures)
}

/// Gives each planned reinstall its health gate (blocking a server whose gate cannot run), and
/// notes a server whose last gate did not pass.
fn with_gates(
    mut planned: Vec<ServerPlan>,
    fleet: &Fleet,
    state: &State,
) -> Result<Vec<ServerPlan>> {
    for server in &mut planned {
        if let Some(note) = state
            .servers
            .get(&server.name)
            .and_then(|record| record.last_operation.as_ref())
            .and_then(|operation| operation.health.as_ref())
            .and_then(HealthRecord::attention)
        {
            server.notes.push(note);
        }
        if !server.action.is_destructive() {
            continue;
        }
        let provider = fleet.provider(&server.provider)?;
        let offered = provider.health_gate(&server.desired);
        match gates::resolve(&server.desired, server.observed.as_ref(), offered) {
            Ok(gate) => server.health = gate,
            Err(message) => {
                server.action = ActionKind::Blocked;
                server.wipes.clear();
                server
                    .reasons
                    .push(Reason::HealthGateUnresolved { message });
            }
        }
    }
    Ok(planned)
}

/// Reads the state, or starts a new one (new lineage and digest key) when there is none yet.
/// Returns whether it is new: the caller writes a new state once there is something to keep
/// (a plan was made), so that a run that fails before that leaves no state behind.
pub fn read_or_init_state(store: &dyn crate::state::StateStore) -> Result<(State, bool)> {
    match store.read()? {
        Some(state) => Ok((state, false)),
        None => Ok((State::new(), true)),
    }
}

/// The error for a plan with blocked servers, naming each with its reasons.
pub fn blocked_error(plan: &Plan) -> Option<Error> {
    let details: Vec<String> = plan
        .servers
        .iter()
        .filter(|server| server.action == crate::plan::ActionKind::Blocked)
        .map(|server| {
            let reasons: Vec<String> = server.reasons.iter().map(|r| r.describe()).collect();
            let line = format!(
                "  - {} (id `{}`): {}",
                server.name,
                server.cloud_id,
                reasons.join("; ")
            );
            escape_control(&line).into_owned()
        })
        .collect();
    if details.is_empty() {
        None
    } else {
        Some(Error::Blocked {
            count: details.len(),
            details,
        })
    }
}
