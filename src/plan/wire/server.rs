//! One server's entry on the wire: what it leaves out of a [`ServerPlan`] and how it is
//! restored on reading.

use super::*;

#[derive(Serialize)]
pub(super) struct ChangeOut<'a> {
    field: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    before: Option<Text<&'a str>>,
    /// `None`: what `desired` says; `Some(None)`: none, while `desired` says otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    after: Option<Option<Text<&'a str>>>,
    #[serde(skip_serializing_if = "is_false")]
    sensitive: bool,
    changed: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ChangeIn {
    field: String,
    #[serde(default)]
    before: Option<Text<String>>,
    #[serde(default, deserialize_with = "present")]
    after: Option<Option<Text<String>>>,
    #[serde(default)]
    sensitive: bool,
    changed: bool,
}

#[derive(Serialize)]
pub(super) struct DesiredOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    provider: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    provider_type: Option<ProviderType>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cloud_id: Option<&'a str>,
    image: &'a str,
    #[serde(skip_serializing_if = "is_zero")]
    revision: u64,
    #[serde(skip_serializing_if = "is_no_access")]
    access: &'a DesiredAccess,
    #[serde(skip_serializing_if = "Option::is_none")]
    hostname: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_data: Option<Text<&'a str>>,
    #[serde(skip_serializing_if = "is_false")]
    protect: bool,
    #[serde(skip_serializing_if = "serde_json::Map::is_empty")]
    options: &'a serde_json::Map<String, serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    group: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    address: Option<&'a str>,
    #[serde(skip_serializing_if = "DesiredHealth::is_unset")]
    health: &'a DesiredHealth,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DesiredIn {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    provider: Option<String>,
    #[serde(default)]
    provider_type: Option<ProviderType>,
    #[serde(default)]
    cloud_id: Option<String>,
    image: String,
    #[serde(default)]
    revision: u64,
    #[serde(default)]
    access: DesiredAccess,
    #[serde(default)]
    hostname: Option<String>,
    #[serde(default)]
    user_data: Option<Text<String>>,
    #[serde(default)]
    protect: bool,
    #[serde(default)]
    options: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    group: Option<String>,
    #[serde(default)]
    address: Option<String>,
    #[serde(default)]
    health: DesiredHealth,
}

#[derive(Serialize)]
pub(super) struct ObservedOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    cloud_id: Option<&'a str>,
    status: ServerStatus,
    raw_status: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    image: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    image_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hostname: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    address: Option<&'a str>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    extra: &'a BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ObservedIn {
    #[serde(default)]
    cloud_id: Option<String>,
    status: ServerStatus,
    raw_status: String,
    #[serde(default)]
    image: Option<String>,
    #[serde(default)]
    image_name: Option<String>,
    #[serde(default)]
    hostname: Option<String>,
    #[serde(default)]
    address: Option<String>,
    #[serde(default)]
    extra: BTreeMap<String, String>,
}

#[derive(Serialize)]
pub(super) struct ServerOut<'a> {
    name: &'a str,
    provider: &'a str,
    provider_type: ProviderType,
    cloud_id: &'a str,
    action: ActionKind,
    #[serde(skip_serializing_if = "<[Reason]>::is_empty")]
    reasons: &'a [Reason],
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    wipes: &'a [String],
    #[serde(skip_serializing_if = "Vec::is_empty")]
    changes: Vec<ChangeOut<'a>>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    notes: &'a [String],
    desired: DesiredOut<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    observed: Option<ObservedOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    observed_fingerprint: Option<&'a str>,
    #[serde(skip_serializing_if = "InputDigests::is_empty")]
    input_digests: &'a InputDigests,
    #[serde(skip_serializing_if = "Option::is_none")]
    health: Option<&'a HealthGate>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ServerIn {
    name: String,
    provider: String,
    provider_type: ProviderType,
    cloud_id: String,
    action: ActionKind,
    #[serde(default)]
    reasons: Vec<Reason>,
    #[serde(default)]
    wipes: Vec<String>,
    #[serde(default)]
    changes: Vec<ChangeIn>,
    #[serde(default)]
    notes: Vec<String>,
    desired: DesiredIn,
    #[serde(default)]
    observed: Option<ObservedIn>,
    #[serde(default)]
    observed_fingerprint: Option<String>,
    #[serde(default)]
    input_digests: InputDigests,
    #[serde(default)]
    health: Option<HealthGate>,
}

/// `value` when it differs from what it would be restored from.
pub(super) fn unless<'a>(value: &'a str, restored_from: &str) -> Option<&'a str> {
    (value != restored_from).then_some(value)
}

pub(super) fn server_out<'a>(server: &'a ServerPlan, shared: &SharedTexts<'a>) -> ServerOut<'a> {
    let desired = &server.desired;
    let changes = server
        .changes
        .iter()
        .map(|change| {
            let text = |text: &'a str| {
                if change.field == crate::plan::inputs::FIELD_USER_DATA {
                    shared.text(text)
                } else {
                    Text::Inline(text)
                }
            };
            let before = change.before.as_deref().map(text);
            let after = match desired_after(desired, &change.field) {
                Some(said) if said.as_deref() == change.after.as_deref() => None,
                Some(_) => Some(change.after.as_deref().map(text)),
                None => change.after.as_deref().map(|after| Some(text(after))),
            };
            ChangeOut {
                field: &change.field,
                before,
                after,
                sensitive: change.sensitive,
                changed: change.changed,
            }
        })
        .collect();
    let fingerprint_shown = match &server.observed {
        Some(observed)
            if fingerprint(&Observation::Found(observed.clone()))
                == server.observed_fingerprint =>
        {
            None
        }
        _ => Some(server.observed_fingerprint.as_str()),
    };
    ServerOut {
        name: &server.name,
        provider: &server.provider,
        provider_type: server.provider_type,
        cloud_id: &server.cloud_id,
        action: server.action,
        reasons: &server.reasons,
        wipes: &server.wipes,
        changes,
        notes: &server.notes,
        desired: DesiredOut {
            name: unless(&desired.name, &server.name),
            provider: unless(&desired.provider, &server.provider),
            provider_type: (desired.provider_type != server.provider_type)
                .then_some(desired.provider_type),
            cloud_id: unless(&desired.cloud_id, &server.cloud_id),
            image: &desired.image,
            revision: desired.revision,
            access: &desired.access,
            hostname: desired.hostname.as_deref(),
            user_data: desired.user_data.as_deref().map(|text| shared.text(text)),
            protect: desired.protect,
            options: &desired.options,
            group: desired.group.as_deref(),
            address: desired.address.as_deref(),
            health: &desired.health,
        },
        observed: server.observed.as_ref().map(|observed| ObservedOut {
            cloud_id: unless(&observed.cloud_id, &server.cloud_id),
            status: observed.status,
            raw_status: &observed.raw_status,
            image: observed.image.as_deref(),
            image_name: observed.image_name.as_deref(),
            hostname: observed.hostname.as_deref(),
            address: observed.address.as_deref(),
            extra: &observed.extra,
        }),
        observed_fingerprint: fingerprint_shown,
        input_digests: &server.input_digests,
        health: server.health.as_ref(),
    }
}

pub(super) fn server_in(wire: ServerIn, shared: &[String]) -> Result<ServerPlan, String> {
    let context = |message: String| format!("server `{}`: {message}", wire.name);
    let desired = DesiredServer {
        name: wire.desired.name.unwrap_or_else(|| wire.name.clone()),
        provider: wire
            .desired
            .provider
            .unwrap_or_else(|| wire.provider.clone()),
        provider_type: wire.desired.provider_type.unwrap_or(wire.provider_type),
        cloud_id: wire
            .desired
            .cloud_id
            .unwrap_or_else(|| wire.cloud_id.clone()),
        image: wire.desired.image,
        revision: wire.desired.revision,
        access: wire.desired.access,
        hostname: wire.desired.hostname,
        user_data: wire
            .desired
            .user_data
            .map(|text| resolve(text, shared))
            .transpose()
            .map_err(context)?,
        protect: wire.desired.protect,
        options: wire.desired.options,
        group: wire.desired.group,
        address: wire.desired.address,
        health: wire.desired.health,
    };
    let mut changes = Vec::with_capacity(wire.changes.len());
    for change in wire.changes {
        let after = match change.after {
            Some(after) => after
                .map(|text| resolve(text, shared))
                .transpose()
                .map_err(context)?,
            None => desired_after(&desired, &change.field)
                .flatten()
                .map(Cow::into_owned),
        };
        changes.push(Change {
            before: change
                .before
                .map(|text| resolve(text, shared))
                .transpose()
                .map_err(context)?,
            field: change.field,
            after,
            sensitive: change.sensitive,
            changed: change.changed,
        });
    }
    let observed = wire.observed.map(|observed| Observed {
        cloud_id: observed.cloud_id.unwrap_or_else(|| wire.cloud_id.clone()),
        status: observed.status,
        raw_status: observed.raw_status,
        image: observed.image,
        image_name: observed.image_name,
        hostname: observed.hostname,
        address: observed.address,
        extra: observed.extra,
    });
    let observed_fingerprint = match (wire.observed_fingerprint, &observed) {
        (Some(written), _) => written,
        (None, Some(observed)) => fingerprint(&Observation::Found(observed.clone())),
        (None, None) => {
            return Err(context(
                "`observed_fingerprint` is missing (it may be left out only beside `observed`)"
                    .to_string(),
            ));
        }
    };
    Ok(ServerPlan {
        name: wire.name,
        provider: wire.provider,
        provider_type: wire.provider_type,
        cloud_id: wire.cloud_id,
        action: wire.action,
        reasons: wire.reasons,
        wipes: wire.wipes,
        changes,
        notes: wire.notes,
        desired,
        observed,
        observed_fingerprint,
        input_digests: wire.input_digests,
        health: wire.health,
    })
}

impl Serialize for ServerPlan {
    /// One server on its own: every text in place.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        server_out(self, &SharedTexts::default()).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for ServerPlan {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        server_in(ServerIn::deserialize(deserializer)?, &[]).map_err(serde::de::Error::custom)
    }
}
