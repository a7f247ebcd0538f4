//! How a plan is written as JSON (plan files, `plan --json`, `show --json`): compact, so that a
//! plan of 50,000 servers stays small (at most about 1 KB per server). What a server's entry
//! would only repeat is left out, and restored exactly on reading:
//! - `desired` and `observed` do not repeat the server's name, provider and cloud id;
//! - a change's `after` is left out when it is what `desired` says (and written `null` when it
//!   is none while `desired` says otherwise);
//! - `observed_fingerprint` is left out when it is the fingerprint of `observed`;
//! - user data that several servers share is written once, in the plan's `user_data` list, and
//!   named by its place there (`{"shared": 0}`);
//! - empty lists, `false`, zero and absent values are left out.
//!
//! A plan therefore reads back equal to the plan that was written (tested below).

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::diff::fingerprint;
use super::inputs::InputDigests;
use super::model::{ActionKind, Change, Plan, Reason, ServerPlan, StateRef, Summary};
use super::pace::Pace;
use super::rollout::Wave;
use crate::manifest::health::{DesiredHealth, HealthGate};
use crate::manifest::{
    DesiredAccess, DesiredProvider, DesiredServer, EmbeddedEmulator, ProviderType, RemoteBackend,
    RolloutPolicy,
};
use crate::model::{Observation, Observed, ServerStatus};

mod server;
use server::*;

/// A text written in place, or as the index of a text in the plan's shared `user_data`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
enum Text<S> {
    Inline(S),
    Shared { shared: usize },
}

/// Texts several servers share, each with its index in the written list.
#[derive(Default)]
struct SharedTexts<'a> {
    index: HashMap<&'a str, usize>,
    list: Vec<&'a str>,
}

impl<'a> SharedTexts<'a> {
    /// The user data (desired, and recorded before a change) that more than one server holds.
    fn of(servers: &'a [ServerPlan]) -> Self {
        let mut seen: HashMap<&'a str, usize> = HashMap::new();
        let mut shared = SharedTexts::default();
        for server in servers {
            for text in user_data_texts(server) {
                let count = seen.entry(text).or_default();
                *count += 1;
                if *count == 2 {
                    shared.index.insert(text, shared.list.len());
                    shared.list.push(text);
                }
            }
        }
        shared
    }

    fn text(&self, text: &'a str) -> Text<&'a str> {
        match self.index.get(text) {
            Some(index) => Text::Shared { shared: *index },
            None => Text::Inline(text),
        }
    }
}

fn user_data_texts(server: &ServerPlan) -> impl Iterator<Item = &str> {
    server.desired.user_data.as_deref().into_iter().chain(
        server
            .changes
            .iter()
            .filter(|change| change.field == super::inputs::FIELD_USER_DATA)
            .flat_map(|change| [change.before.as_deref(), change.after.as_deref()])
            .flatten(),
    )
}

fn resolve(text: Text<String>, shared: &[String]) -> Result<String, String> {
    match text {
        Text::Inline(text) => Ok(text),
        Text::Shared { shared: index } => shared.get(index).cloned().ok_or_else(|| {
            format!(
                "`{{\"shared\": {index}}}` names no user data (the plan lists {})",
                shared.len()
            )
        }),
    }
}

/// What `desired` says a change's `after` is, for the fields it says it of.
fn desired_after<'a>(desired: &'a DesiredServer, field: &str) -> Option<Option<Cow<'a, str>>> {
    Some(match field {
        "image" => Some(Cow::Borrowed(desired.image.as_str())),
        "revision" => Some(Cow::Owned(desired.revision.to_string())),
        "hostname" => desired.hostname.as_deref().map(Cow::Borrowed),
        "ssh_key_id" => match &desired.access {
            DesiredAccess::SshKeyId { id } => Some(Cow::Borrowed(id.as_str())),
            _ => None,
        },
        "user_data" => desired.user_data.as_deref().map(Cow::Borrowed),
        "protect" => Some(Cow::Owned(desired.protect.to_string())),
        _ => return None,
    })
}

fn is_false(value: &bool) -> bool {
    !*value
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

fn is_no_access(access: &DesiredAccess) -> bool {
    *access == DesiredAccess::None
}

/// Reads a field that is present (even as `null`) as `Some`, so that `null` and absent differ.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(deserializer).map(Some)
}

/// The servers of a plan, written one by one against the plan's shared texts.
struct ServersOut<'a> {
    servers: &'a [ServerPlan],
    shared: &'a SharedTexts<'a>,
}

impl Serialize for ServersOut<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(
            self.servers
                .iter()
                .map(|server| server_out(server, self.shared)),
        )
    }
}

#[derive(Serialize)]
struct PlanOut<'a> {
    format_version: u32,
    tool_version: &'a str,
    plan_id: &'a str,
    created_at: &'a str,
    expires_at: &'a str,
    commit: &'a Option<String>,
    manifest_digest: &'a str,
    state: &'a StateRef,
    providers: &'a BTreeMap<String, DesiredProvider>,
    #[serde(skip_serializing_if = "Option::is_none")]
    emulator: &'a Option<EmbeddedEmulator>,
    state_path: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    backend: &'a Option<RemoteBackend>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    user_data: &'a Vec<&'a str>,
    servers: ServersOut<'a>,
    rollout: &'a RolloutPolicy,
    waves: &'a [Wave],
    #[serde(skip_serializing_if = "Option::is_none")]
    pace: &'a Option<Pace>,
    summary: &'a Summary,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanIn {
    format_version: u32,
    tool_version: String,
    plan_id: String,
    created_at: String,
    expires_at: String,
    commit: Option<String>,
    manifest_digest: String,
    state: StateRef,
    providers: BTreeMap<String, DesiredProvider>,
    #[serde(default)]
    emulator: Option<EmbeddedEmulator>,
    state_path: String,
    #[serde(default)]
    backend: Option<RemoteBackend>,
    #[serde(default)]
    user_data: Vec<String>,
    servers: Vec<ServerIn>,
    rollout: RolloutPolicy,
    waves: Vec<Wave>,
    #[serde(default)]
    pace: Option<Pace>,
    summary: Summary,
}

impl Serialize for Plan {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let shared = SharedTexts::of(&self.servers);
        PlanOut {
            format_version: self.format_version,
            tool_version: &self.tool_version,
            plan_id: &self.plan_id,
            created_at: &self.created_at,
            expires_at: &self.expires_at,
            commit: &self.commit,
            manifest_digest: &self.manifest_digest,
            state: &self.state,
            providers: &self.providers,
            emulator: &self.emulator,
            state_path: &self.state_path,
            backend: &self.backend,
            user_data: &shared.list,
            servers: ServersOut {
                servers: &self.servers,
                shared: &shared,
            },
            rollout: &self.rollout,
            waves: &self.waves,
            pace: &self.pace,
            summary: &self.summary,
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Plan {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = PlanIn::deserialize(deserializer)?;
        let shared = wire.user_data;
        let servers = wire
            .servers
            .into_iter()
            .map(|server| server_in(server, &shared))
            .collect::<Result<Vec<_>, _>>()
            .map_err(serde::de::Error::custom)?;
        Ok(Plan {
            format_version: wire.format_version,
            tool_version: wire.tool_version,
            plan_id: wire.plan_id,
            created_at: wire.created_at,
            expires_at: wire.expires_at,
            commit: wire.commit,
            manifest_digest: wire.manifest_digest,
            state: wire.state,
            providers: wire.providers,
            emulator: wire.emulator,
            state_path: wire.state_path,
            backend: wire.backend,
            servers,
            rollout: wire.rollout,
            waves: wire.waves,
            pace: wire.pace,
            summary: wire.summary,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::SecretRef;
    use crate::plan::inputs::input_digests;
    use crate::plan::model::PLAN_FORMAT_VERSION;

    const USER_DATA: &str = "#cloud-config\npackages: [nginx, curl, htop, jq]\n";

    fn desired(name: &str) -> DesiredServer {
        DesiredServer {
            group: None,
            name: name.into(),
            provider: "zl".into(),
            provider_type: ProviderType::ZenlayerBmc,
            cloud_id: format!("id-{name}"),
            image: "img-new".into(),
            revision: 0,
            access: DesiredAccess::SshKeyId {
                id: "key-ops".into(),
            },
            hostname: Some(format!("{name}.example.net")),
            user_data: Some(USER_DATA.into()),
            protect: false,
            options: serde_json::Map::new(),
            address: None,
            health: Default::default(),
        }
    }

    fn observed(server: &DesiredServer) -> Observed {
        Observed {
            cloud_id: server.cloud_id.clone(),
            status: ServerStatus::Running,
            raw_status: "RUNNING".into(),
            image: Some("img-old".into()),
            image_name: Some("Old".into()),
            hostname: None,
            address: None,
            extra: BTreeMap::new(),
        }
    }

    fn change(field: &str, before: Option<&str>, after: Option<&str>) -> Change {
        Change {
            field: field.into(),
            before: before.map(str::to_string),
            after: after.map(str::to_string),
            sensitive: false,
            changed: true,
        }
    }

    /// A reinstall as the diff makes it: every `after` is what `desired` says.
    fn reinstall(name: &str) -> ServerPlan {
        let desired = desired(name);
        let observed = observed(&desired);
        ServerPlan {
            name: desired.name.clone(),
            provider: desired.provider.clone(),
            provider_type: desired.provider_type,
            cloud_id: desired.cloud_id.clone(),
            action: ActionKind::Reinstall,
            reasons: vec![Reason::ImageDiffers {
                observed: "img-old".into(),
                desired: "img-new".into(),
            }],
            wipes: vec!["system disk".into()],
            changes: vec![
                change("image", Some("img-old"), Some("img-new")),
                change("hostname", None, desired.hostname.as_deref()),
                change("ssh_key_id", None, Some("key-ops")),
                change("user_data", Some(USER_DATA), Some(USER_DATA)),
            ],
            notes: Vec::new(),
            observed_fingerprint: fingerprint(&Observation::Found(observed.clone())),
            observed: Some(observed),
            input_digests: input_digests(b"key", &desired, None),
            health: None,
            desired,
        }
    }

    fn plan(servers: Vec<ServerPlan>) -> Plan {
        Plan {
            format_version: PLAN_FORMAT_VERSION,
            tool_version: "0.0.0".into(),
            plan_id: "plan-1".into(),
            created_at: "2026-01-01T00:00:00Z".into(),
            expires_at: "2026-01-02T00:00:00Z".into(),
            commit: None,
            manifest_digest: "0".repeat(64),
            state: StateRef {
                name: "default".into(),
                lineage: None,
                serial: 0,
            },
            providers: BTreeMap::new(),
            emulator: None,
            state_path: "state.json".into(),
            backend: None,
            summary: Summary::count(&servers),
            servers,
            rollout: RolloutPolicy::default(),
            waves: Vec::new(),
            pace: None,
        }
    }

    #[test]
    fn a_plan_reads_back_equal_and_shared_user_data_is_written_once() {
        let mut odd = reinstall("odd");
        // What `desired` would not say: kept as written.
        odd.changes[1].after = None;
        odd.changes
            .push(change("options", None, Some("{\"raid_type\":1}")));
        odd.changes.push(Change {
            field: "password".into(),
            before: None,
            after: None,
            sensitive: true,
            changed: true,
        });
        odd.desired.access = DesiredAccess::Password {
            secret: SecretRef::Env("PW".into()),
        };
        odd.desired.user_data = Some("#cloud-config\nonly: odd\n".into());
        odd.desired.group = Some("db".into());
        odd.desired.revision = 2;
        odd.desired.protect = true;
        // A health gate, an address the manifest gives and one the provider reports.
        let gate = crate::manifest::health::HealthGate {
            check: crate::manifest::health::HealthCheck::Tcp {
                address: "203.0.113.10:22".into(),
            },
            timeout_s: 5.0,
            interval_s: 10.0,
            attempts: 30,
            source: "defaults.health".into(),
        };
        odd.desired.address = Some("203.0.113.10".into());
        odd.desired.health = crate::manifest::health::DesiredHealth::Gate(gate.clone());
        odd.health = Some(gate);
        odd.observed.as_mut().unwrap().address = Some("198.51.100.7".into());
        odd.observed_fingerprint = fingerprint(&Observation::Found(odd.observed.clone().unwrap()));
        // A fingerprint that is not of `observed` (as for a `forget`) is kept.
        let mut gone = reinstall("gone");
        gone.action = ActionKind::Forget;
        gone.observed = None;
        gone.observed_fingerprint = "f".repeat(64);
        gone.changes.clear();
        gone.input_digests = InputDigests::default();
        let mut moved = reinstall("moved");
        moved.observed.as_mut().unwrap().cloud_id = "another-id".into();
        moved.observed_fingerprint = "a".repeat(64);
        let original = plan(vec![reinstall("a"), reinstall("b"), odd, gone, moved]);

        let text = serde_json::to_string(&original).unwrap();
        assert_eq!(text.matches("packages: [nginx").count(), 1, "{text}");
        let back: Plan = serde_json::from_str(&text).unwrap();
        assert_eq!(back, original);
        // Writing it again gives the very same bytes (a signature covers them).
        assert_eq!(serde_json::to_string(&back).unwrap(), text);

        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        let first = &json["servers"][0];
        assert_eq!(
            first["desired"]["user_data"],
            serde_json::json!({"shared": 0})
        );
        assert!(first["desired"].get("name").is_none(), "{first}");
        assert!(first.get("observed_fingerprint").is_none(), "{first}");
        assert!(first["changes"][0].get("after").is_none(), "{first}");
        assert_eq!(
            json["servers"][2]["changes"][1]["after"],
            serde_json::Value::Null
        );
        assert_eq!(json["servers"][3]["observed_fingerprint"], "f".repeat(64));
        assert_eq!(json["servers"][4]["observed"]["cloud_id"], "another-id");
    }

    #[test]
    fn a_typical_server_takes_less_than_a_kilobyte() {
        let servers: Vec<ServerPlan> = (0..100)
            .map(|index| reinstall(&format!("server-{index:05}")))
            .collect();
        let text = serde_json::to_string(&plan(servers)).unwrap();
        let per_server = text.len() / 100;
        assert!(per_server < 1024, "{per_server} bytes per server");
    }

    #[test]
    fn a_shared_text_that_is_not_listed_is_a_clear_error() {
        let text = serde_json::to_string(&plan(vec![reinstall("a"), reinstall("b")])).unwrap();
        let broken = text.replacen("\"user_data\":[", "\"user_data\":[\"x\",", 1);
        let broken = broken.replace("{\"shared\":0}", "{\"shared\":7}");
        let error = serde_json::from_str::<Plan>(&broken)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("server `a`") && error.contains("names no user data"),
            "{error}"
        );
    }
}
