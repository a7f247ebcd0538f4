//! Refusing a stale plan: everything a saved plan was made against is checked again, and every
//! difference is named.

use crate::apply::ResumeScope;
use crate::error::{Error, Result};
use crate::plan::diff::{fingerprint, record_fingerprint};
use crate::plan::inputs::FIELD_ACCESS;
use crate::plan::inputs::digests_of;
use crate::plan::model::{ActionKind, Plan, ServerPlan};
use crate::provider::Observation;
use crate::provider::fleet::Fleet;
use crate::state::State;

/// Checks that nothing moved since the plan was made; names every difference.
///
/// On `--resume`, the state serial may have moved through this plan's own apply (recorded in
/// `state.applying`), and servers this plan already finished are not checked again.
pub async fn check_not_stale(
    plan: &Plan,
    manifest_digest: Option<&str>,
    state_name: &str,
    state: &State,
    fleet: &Fleet,
    resume: Option<&ResumeScope>,
) -> Result<()> {
    let mut differences = Vec::new();
    if plan.state.name != state_name {
        differences.push(format!(
            "the plan was made against the state named `{}`, this is `{state_name}`",
            plan.state.name
        ));
    }
    let resumed_own_apply = resume.is_some()
        && state.applying.as_ref().is_some_and(|applying| {
            applying.plan_id == plan.plan_id && applying.base_serial == plan.state.serial
        });
    if resume.is_some() && !resumed_own_apply {
        differences.push(format!(
            "`--resume` continues an interrupted apply of this plan, but the state shows {}",
            match &state.applying {
                Some(applying) => format!(
                    "an interrupted apply of another plan (`{}`)",
                    applying.plan_id
                ),
                None => "no interrupted apply".to_string(),
            }
        ));
    }
    if plan.state.lineage.as_deref() != Some(state.lineage.as_str()) {
        differences.push(format!(
            "state lineage is `{}`, the plan was made against `{}`",
            state.lineage,
            plan.state.lineage.as_deref().unwrap_or("(no state)")
        ));
    } else if plan.state.serial != state.serial && !resumed_own_apply {
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
    // A forgotten server is never observed (its provider may be gone from the manifest); its
    // record must be the one the plan showed.
    for server in plan
        .servers
        .iter()
        .filter(|server| server.action == ActionKind::Forget)
    {
        match state.servers.get(&server.name) {
            Some(record) if record_fingerprint(record) != server.observed_fingerprint => {
                differences.push(format!(
                    "the record of `{}` (to be forgotten) changed since the plan",
                    server.name
                ))
            }
            Some(_) => {}
            // Gone already: forgotten by this plan's interrupted apply, or by `state rm`.
            None if resumed_own_apply => {}
            None => differences.push(format!(
                "`{}` (to be forgotten) is no longer in the state",
                server.name
            )),
        }
    }
    let changing: Vec<&ServerPlan> = plan
        .servers
        .iter()
        .filter(|server| server.action.is_change() && server.action != ActionKind::Forget)
        .filter(|server| {
            resume.is_none_or(|scope| {
                !scope.finished.contains(&server.name) && !scope.stopped.contains(&server.name)
            })
        })
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
                for (field, digest) in digests.iter() {
                    if server.input_digests.get(field).as_ref() != Some(&digest) {
                        let what = if field == FIELD_ACCESS {
                            "access (a secret) changed".to_string()
                        } else {
                            format!("{field} changed")
                        };
                        differences
                            .push(format!("server `{}`: {what} since the plan", server.name));
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
