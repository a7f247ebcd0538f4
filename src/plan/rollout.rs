//! Waves: the order in which apply starts the plan's reinstalls. Pure.
//!
//! Per rollout group (in the order the groups first appear in the plan), a canary wave of the
//! group's first `canary` reinstalls, which must all succeed before anything else starts, then
//! a rolling wave of the rest with at most `max_parallel` in flight. Groups run one after the
//! other.

use serde::{Deserialize, Serialize};

use super::model::ServerPlan;
use crate::manifest::{Rollout, RolloutPolicy};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Wave {
    /// 1-based, in execution order.
    pub index: usize,
    /// The rollout group, when the servers name one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// A canary wave must succeed entirely, or the rollout stops.
    pub canary: bool,
    /// Servers in start order.
    pub servers: Vec<String>,
    /// Reinstalls in flight at once within the wave.
    pub max_parallel: usize,
    /// No new reinstall starts once this many have failed (across the apply).
    pub max_failures: Option<usize>,
}

/// The waves for the plan's destructive actions.
pub fn waves(servers: &[ServerPlan], policy: &RolloutPolicy) -> Vec<Wave> {
    // Groups in order of first appearance, each with its members in plan order; one pass, so
    // a fleet of many groups costs no more than one of few.
    let mut groups: Vec<(Option<String>, Vec<String>)> = Vec::new();
    let mut group_index: std::collections::HashMap<Option<String>, usize> =
        std::collections::HashMap::new();
    for server in servers
        .iter()
        .filter(|server| server.action.is_destructive())
    {
        let index = *group_index
            .entry(server.desired.group.clone())
            .or_insert_with(|| {
                groups.push((server.desired.group.clone(), Vec::new()));
                groups.len() - 1
            });
        groups[index].1.push(server.name.clone());
    }
    let mut waves = Vec::new();
    for (group, members) in groups {
        let rollout: Rollout = policy.for_group(group.as_deref());
        let canary = rollout.canary.min(members.len());
        let (first, rest) = members.split_at(canary);
        for (is_canary, names) in [(true, first), (false, rest)] {
            if names.is_empty() {
                continue;
            }
            waves.push(Wave {
                index: waves.len() + 1,
                group: group.clone(),
                canary: is_canary,
                servers: names.to_vec(),
                max_parallel: rollout.max_parallel.max(1).min(names.len().max(1)),
                max_failures: rollout.max_failures,
            });
        }
    }
    waves
}

/// Why a plan may not be applied as a whole under its policy (`max_reinstalls`), if so.
pub fn over_cap(servers: &[ServerPlan], policy: &RolloutPolicy) -> Vec<String> {
    let mut problems = Vec::new();
    let destructive: Vec<&ServerPlan> = servers
        .iter()
        .filter(|server| server.action.is_destructive())
        .collect();
    if let Some(cap) = policy.default.max_reinstalls
        && destructive.len() > cap
    {
        problems.push(format!(
            "the plan reinstalls {} servers, more than `max_reinstalls: {cap}` allows",
            destructive.len()
        ));
    }
    let mut per_group: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for server in &destructive {
        if let Some(group) = server.desired.group.as_deref() {
            *per_group.entry(group).or_default() += 1;
        }
    }
    for (group, rollout) in &policy.groups {
        let count = per_group.get(group.as_str()).copied().unwrap_or(0);
        if let Some(cap) = rollout.max_reinstalls
            && count > cap
        {
            problems.push(format!(
                "group `{group}` reinstalls {count} servers, more than its `max_reinstalls: {cap}` allows"
            ));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{DesiredAccess, DesiredServer, ProviderType};
    use crate::plan::model::ActionKind;
    use std::collections::BTreeMap;

    fn planned(name: &str, action: ActionKind, group: Option<&str>) -> ServerPlan {
        ServerPlan {
            name: name.into(),
            provider: "p".into(),
            provider_type: ProviderType::ZenlayerBmc,
            cloud_id: name.into(),
            action,
            reasons: vec![],
            wipes: vec![],
            changes: vec![],
            notes: vec![],
            desired: DesiredServer {
                group: group.map(str::to_string),
                address: None,
                health: Default::default(),
                name: name.into(),
                provider: "p".into(),
                provider_type: ProviderType::ZenlayerBmc,
                cloud_id: name.into(),
                image: "i".into(),
                revision: 0,
                access: DesiredAccess::None,
                hostname: None,
                user_data: None,
                protect: false,
                options: serde_json::Map::new(),
            },
            observed: None,
            observed_fingerprint: String::new(),
            input_digests: Default::default(),
            health: None,
        }
    }

    fn policy(canary: usize, max_parallel: usize) -> RolloutPolicy {
        RolloutPolicy {
            default: Rollout {
                canary,
                max_parallel,
                max_failures: Some(1),
                max_reinstalls: None,
            },
            groups: BTreeMap::new(),
        }
    }

    #[test]
    fn canary_then_rolling_and_only_destructive_servers() {
        let servers: Vec<ServerPlan> = (0..25)
            .map(|i| {
                let action = if i % 5 == 4 {
                    ActionKind::Adopt
                } else {
                    ActionKind::Reinstall
                };
                planned(&format!("s{i}"), action, None)
            })
            .collect();
        let waves = waves(&servers, &policy(2, 8));
        assert_eq!(waves.len(), 2);
        assert!(waves[0].canary);
        assert_eq!(waves[0].servers, ["s0", "s1"]);
        assert!(!waves[1].canary);
        assert_eq!(waves[1].servers.len(), 18);
        assert_eq!(waves[1].max_parallel, 8);
        assert!(!waves[1].servers.contains(&"s4".to_string()));
    }

    #[test]
    fn groups_get_their_own_waves_and_caps() {
        let mut policy = policy(1, 10);
        policy.groups.insert(
            "db".into(),
            Rollout {
                canary: 0,
                max_parallel: 1,
                max_failures: Some(1),
                max_reinstalls: Some(1),
            },
        );
        let servers = vec![
            planned("web1", ActionKind::Reinstall, None),
            planned("db1", ActionKind::Reinstall, Some("db")),
            planned("web2", ActionKind::StopAndReinstall, None),
            planned("db2", ActionKind::Reinstall, Some("db")),
        ];
        let waves = waves(&servers, &policy);
        let shape: Vec<(Option<&str>, bool, usize)> = waves
            .iter()
            .map(|w| (w.group.as_deref(), w.canary, w.servers.len()))
            .collect();
        assert_eq!(
            shape,
            [(None, true, 1), (None, false, 1), (Some("db"), false, 2)]
        );
        assert_eq!(over_cap(&servers, &policy).len(), 1);
    }

    #[test]
    fn no_reinstalls_no_waves() {
        let servers = vec![planned("a", ActionKind::NoOp, None)];
        assert!(waves(&servers, &policy(1, 1)).is_empty());
    }
}
