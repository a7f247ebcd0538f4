//! The JD Cloud calls themselves: describe (instances, one instance, OS), stop and reinstall,
//! with their parameter checks and `clientToken` replays.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use base64::Engine as _;
use jiff::{SignedDuration, Timestamp};
use serde_json::{Map, Value, json};

use super::PROVIDER;
use super::errors::ApiError;
use super::model::{
    InstallTarget, JdReinstallRecord, JdStatus, JdcloudOs, JdcloudServer, JdcloudWorld,
    TokenRecord, Transition,
};
use super::{DEFAULT_PAGE_SIZE, MAX_CLIENT_TOKEN_CHARS, MAX_PAGE_SIZE};
use crate::emulator::faults;
use crate::emulator::inventory::Inventory;
use crate::emulator::server::Shared;
use crate::emulator::world::World;
use crate::provider::sign::jdcloud as sign;

pub(super) fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let (name, value) = part.split_once('=').unwrap_or((part, ""));
            (sign::decode(name), sign::decode(value))
        })
        .collect()
}

fn query_value<'a>(query: &'a [(String, String)], name: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

/// `filters.N.name` / `filters.N.values.M` → name → values.
pub(super) fn filters(query: &[(String, String)]) -> BTreeMap<String, Vec<String>> {
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    let mut values: BTreeMap<String, Vec<(u64, String)>> = BTreeMap::new();
    for (key, value) in query {
        let Some(rest) = key.strip_prefix("filters.") else {
            continue;
        };
        match rest.split('.').collect::<Vec<_>>().as_slice() {
            [index, "name"] => {
                names.insert(index.to_string(), value.clone());
            }
            [index, "values", position] => values
                .entry(index.to_string())
                .or_default()
                .push((position.parse().unwrap_or(u64::MAX), value.clone())),
            _ => {}
        }
    }
    names
        .into_iter()
        .map(|(index, name)| {
            let mut list = values.remove(&index).unwrap_or_default();
            list.sort();
            (name, list.into_iter().map(|(_, value)| value).collect())
        })
        .collect()
}

fn page_parameter(
    query: &[(String, String)],
    name: &str,
    default: usize,
    max: usize,
) -> Result<usize, ApiError> {
    match query_value(query, name) {
        None => Ok(default),
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|value| (1..=max).contains(value))
            .ok_or_else(|| {
                ApiError::invalid(format!("{name} must be between 1 and {max}, not `{text}`"))
            }),
    }
}

pub(super) fn describe_instances(
    inventory: &Inventory,
    world: &World,
    region: &str,
    query: &[(String, String)],
    now: Timestamp,
) -> Result<Value, ApiError> {
    let page_number = page_parameter(query, "pageNumber", 1, usize::MAX)?;
    let page_size = page_parameter(query, "pageSize", DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)?;
    let filters = filters(query);
    for (name, values) in &filters {
        if name != "instanceId" && name != "status" {
            return Err(ApiError::invalid(format!("unknown filter `{name}`")));
        }
        // The brief leaves the limit unconfirmed; the emulator holds clients to a page's worth.
        if values.len() > MAX_PAGE_SIZE {
            return Err(ApiError::invalid(format!(
                "filter `{name}` has {} values; at most {MAX_PAGE_SIZE} are allowed",
                values.len()
            )));
        }
    }
    // A set: a world of many servers is filtered in one pass, not once per id.
    let wanted: Option<std::collections::HashSet<&str>> = filters
        .get("instanceId")
        .map(|ids| ids.iter().map(String::as_str).collect());
    // What each server shows: the truth, or what it was before a call whose effect is late.
    let shown: Vec<std::borrow::Cow<JdcloudServer>> = world
        .jdcloud
        .servers
        .iter()
        .filter(|server| {
            wanted
                .as_ref()
                .is_none_or(|ids| ids.contains(server.id.as_str()))
        })
        .map(|server| faults::as_shown(&world.faults, PROVIDER, &server.id, server, now))
        .collect();
    let matching: Vec<&JdcloudServer> = shown
        .iter()
        .map(|server| server.as_ref())
        .filter(|server| server.region == region)
        .filter(|server| {
            filters
                .get("status")
                .is_none_or(|statuses| statuses.iter().any(|s| s == server.status.as_str()))
        })
        .filter(|server| query_value(query, "az").is_none_or(|az| server.az == az))
        .collect();
    let skip = (page_number - 1).saturating_mul(page_size);
    let instances: Vec<Value> = matching
        .iter()
        .skip(skip)
        .take(page_size)
        .map(|server| instance_json(inventory, server))
        .collect();
    Ok(json!({
        "instances": instances,
        "pageNumber": page_number,
        "pageSize": page_size,
        "totalCount": matching.len(),
    }))
}

fn find_os<'a>(inventory: &'a Inventory, os_type_id: &str) -> Option<&'a JdcloudOs> {
    inventory
        .jdcloud
        .os
        .iter()
        .find(|os| os.os_type_id == os_type_id)
}

fn raid_name(id: &str) -> String {
    // The emulator has no RAID catalogue; the name is derived for display only.
    id.rsplit('-').next().unwrap_or(id).to_ascii_uppercase()
}

pub(super) fn instance_json(inventory: &Inventory, server: &JdcloudServer) -> Value {
    let os = find_os(inventory, &server.os_type_id);
    json!({
        "instanceId": server.id,
        "region": server.region,
        "az": server.az,
        "deviceType": server.device_type,
        "name": server.name,
        "description": "",
        "status": server.status.as_str(),
        "imageType": server.image_type,
        "osTypeId": server.os_type_id,
        "osName": os.map(|os| os.os_name.clone()),
        "osType": os.and_then(|os| os.os_type.clone()),
        "osVersion": os.and_then(|os| os.os_version.clone()),
        "sysRaidTypeId": server.sys_raid_type_id,
        "sysRaidType": raid_name(&server.sys_raid_type_id),
        "dataRaidTypeId": server.data_raid_type_id,
        "dataRaidType": server.data_raid_type_id.as_deref().map(raid_name),
        "networkType": "basic",
        "privateIp": server.private_ip,
        "publicIp": server.public_ip,
        "keypairId": server.keypair_id,
        "agentStatus": "running",
    })
}

pub(super) fn describe_os(inventory: &Inventory, query: &[(String, String)]) -> Value {
    let device_type = query_value(query, "deviceType");
    let os_type = query_value(query, "osType");
    let oss: Vec<Value> = inventory
        .jdcloud
        .os
        .iter()
        .filter(|os| {
            device_type.is_none_or(|wanted| os.device_type.as_deref().is_none_or(|d| d == wanted))
        })
        .filter(|os| {
            os_type.is_none_or(|wanted| {
                os.os_type
                    .as_deref()
                    .is_some_and(|kind| kind.eq_ignore_ascii_case(wanted))
            })
        })
        .map(|os| {
            json!({
                "osTypeId": os.os_type_id,
                "osName": os.os_name,
                "osType": os.os_type,
                "osVersion": os.os_version,
                "deviceType": os.device_type.as_deref().or(device_type),
            })
        })
        .collect();
    json!({ "oss": oss })
}

/// PUT bodies are JSON objects; an empty body reads as `{}`. Extra fields (the Python SDK sends
/// `regionId`, `instanceId` and nulls) are ignored.
pub(super) fn parse_body(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::invalid("the body must be a JSON object")),
        Err(error) => Err(ApiError::invalid(format!("the body is not JSON: {error}"))),
    }
}

pub(super) fn find<'a>(
    world: &'a JdcloudWorld,
    region: &str,
    id: &str,
) -> Result<&'a JdcloudServer, ApiError> {
    world
        .servers
        .iter()
        .find(|server| server.id == id && server.region == region)
        .ok_or_else(|| ApiError::not_found(format!("instance `{id}` does not exist in {region}")))
}

pub(super) struct Call<'a> {
    pub(super) region: &'a str,
    pub(super) instance_id: &'a str,
    pub(super) request_id: &'a str,
    pub(super) now: Timestamp,
    pub(super) version: sign::Version,
}

/// The `clientToken` of a body (`null` or absent: none).
pub(super) fn client_token(parameters: &Map<String, Value>) -> Result<Option<String>, ApiError> {
    match parameters.get("clientToken") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(token)) if token.is_empty() => Ok(None),
        Some(Value::String(token)) if token.chars().count() <= MAX_CLIENT_TOKEN_CHARS => {
            Ok(Some(token.clone()))
        }
        Some(Value::String(_)) => Err(ApiError::invalid(format!(
            "clientToken is longer than {MAX_CLIENT_TOKEN_CHARS} characters"
        ))),
        Some(_) => Err(ApiError::invalid("clientToken must be a string")),
    }
}

/// `Ok(true)` when a call with this token was accepted before for the same instance and action
/// (answer as then, do nothing); an error when the token belongs to another call.
pub(super) fn replayed(
    world: &mut JdcloudWorld,
    token: Option<&str>,
    action: &str,
    instance_id: &str,
) -> Result<bool, ApiError> {
    let Some(record) = token.and_then(|token| world.tokens.get(token)) else {
        return Ok(false);
    };
    if record.action != action || record.instance_id != instance_id {
        return Err(ApiError::invalid(format!(
            "clientToken was already used for {} on `{}`",
            record.action, record.instance_id
        )));
    }
    world.token_replays += 1;
    tracing::info!(
        instance = instance_id,
        action,
        "emulator: jdcloud clientToken replayed"
    );
    Ok(true)
}

fn remember(world: &mut JdcloudWorld, token: Option<String>, action: &str, call: &Call<'_>) {
    if let Some(token) = token {
        world.tokens.insert(
            token,
            TokenRecord {
                action: action.to_string(),
                instance_id: call.instance_id.to_string(),
                request_id: call.request_id.to_string(),
                at: call.now,
            },
        );
    }
}

pub(super) fn operation_protection(server: &JdcloudServer, action: &str) -> Result<(), ApiError> {
    if server.operation_protection {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            format!(
                "MFA authentication required: operation protection is enabled for {action}; \
                 pass an MFA-backed x-jdcloud-security-token"
            ),
        ));
    }
    Ok(())
}

/// Returns whether it acted (`false` for a replay).
pub(super) fn stop_instance(
    world: &mut JdcloudWorld,
    call: &Call<'_>,
    parameters: &Map<String, Value>,
    stop_seconds: f64,
) -> Result<bool, ApiError> {
    let token = client_token(parameters)?;
    find(world, call.region, call.instance_id)?;
    if replayed(world, token.as_deref(), "stopInstance", call.instance_id)? {
        return Ok(false);
    }
    let server = world
        .server_mut(call.instance_id)
        .ok_or_else(|| ApiError::not_found("instance vanished"))?;
    operation_protection(server, "stopInstance")?;
    if server.status != JdStatus::Running {
        return Err(ApiError::precondition(format!(
            "only running instances can be stopped; `{}` is {}",
            server.id,
            server.status.as_str()
        )));
    }
    let duration = SignedDuration::try_from_secs_f64(stop_seconds).unwrap_or(SignedDuration::ZERO);
    server.status = JdStatus::Stopping;
    server.stop_count += 1;
    server.transition = Some(Transition {
        done_at: call.now.checked_add(duration).unwrap_or(Timestamp::MAX),
        install: None,
    });
    remember(world, token, "stopInstance", call);
    Ok(true)
}

fn required_text(spec: &Map<String, Value>, key: &str) -> Result<String, ApiError> {
    match spec.get(key) {
        Some(Value::String(text)) if !text.trim().is_empty() => Ok(text.clone()),
        // The value is not echoed: it may be the password.
        _ => Err(ApiError::invalid(format!(
            "instanceSpec.{key} is required (a non-empty string)"
        ))),
    }
}

fn optional_text(spec: &Map<String, Value>, key: &str) -> Result<Option<String>, ApiError> {
    match spec.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) if text.is_empty() => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(_) => Err(ApiError::invalid(format!(
            "instanceSpec.{key} must be a string"
        ))),
    }
}

/// The brief's "JD common rule" (unconfirmed): 8–30 characters with upper, lower and digits.
fn check_password(password: &str) -> Result<(), ApiError> {
    let length = password.chars().count();
    let ok = (8..=30).contains(&length)
        && password.chars().all(|c| c.is_ascii_graphic())
        && password.chars().any(|c| c.is_ascii_uppercase())
        && password.chars().any(|c| c.is_ascii_lowercase())
        && password.chars().any(|c| c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "instanceSpec.password must be 8-30 printable ASCII characters with upper case, \
             lower case and digits",
        ))
    }
}

pub(super) fn reinstall_instance(
    shared: &Shared,
    world: &mut JdcloudWorld,
    call: &Call<'_>,
    parameters: &Map<String, Value>,
) -> Result<bool, ApiError> {
    let token = client_token(parameters)?;
    find(world, call.region, call.instance_id)?;
    // A replay is answered before anything else: the first call's result, no second install.
    if replayed(
        world,
        token.as_deref(),
        "reinstallInstance",
        call.instance_id,
    )? {
        return Ok(false);
    }
    let spec = parameters
        .get("instanceSpec")
        .and_then(Value::as_object)
        .ok_or_else(|| ApiError::invalid("instanceSpec is required (an object)"))?;
    let az = required_text(spec, "az")?;
    let image_type = required_text(spec, "imageType")?;
    let os_type_id = required_text(spec, "osTypeId")?;
    let sys_raid_type_id = required_text(spec, "sysRaidTypeId")?;
    let keep_data = required_text(spec, "keepData")?;
    let password = required_text(spec, "password")?;
    let data_raid_type_id = optional_text(spec, "dataRaidTypeId")?;
    let hostname = optional_text(spec, "hostname")?;
    let keypair_id = optional_text(spec, "keypairId")?;
    let user_data = optional_text(spec, "userData")?
        .map(|encoded| {
            base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .map_err(|_| ApiError::invalid("instanceSpec.userData must be base64"))
        })
        .transpose()?;
    if !["standard", "standard_app"].contains(&image_type.to_ascii_lowercase().as_str()) {
        return Err(ApiError::invalid(format!(
            "instanceSpec.imageType must be standard or standard_app, not `{image_type}`"
        )));
    }
    if keep_data != "yes" && keep_data != "no" {
        return Err(ApiError::invalid(format!(
            "instanceSpec.keepData must be yes or no, not `{keep_data}`"
        )));
    }
    check_password(&password)?;

    let server = world
        .server_mut(call.instance_id)
        .ok_or_else(|| ApiError::not_found("instance vanished"))?;
    operation_protection(server, "reinstallInstance")?;
    if server.status != JdStatus::Stopped {
        return Err(ApiError::precondition(format!(
            "only stopped instances can be reinstalled; `{}` is {}",
            server.id,
            server.status.as_str()
        )));
    }
    if az != server.az {
        return Err(ApiError::invalid(format!(
            "instanceSpec.az `{az}` is not the instance's az `{}`",
            server.az
        )));
    }
    let os = find_os(&shared.inventory, &os_type_id)
        .filter(|os| {
            os.device_type
                .as_deref()
                .is_none_or(|d| d == server.device_type)
        })
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "osTypeId `{os_type_id}` is not offered for device type {}",
                server.device_type
            ))
        })?;
    if keep_data == "yes" && data_raid_type_id != server.data_raid_type_id {
        return Err(ApiError::invalid(
            "changing dataRaidTypeId rebuilds the data disks; it needs keepData: no",
        ));
    }
    let duration = server.install_duration(&shared.inventory, shared.install_seconds_override);
    let target = InstallTarget {
        os_type_id: os.os_type_id.clone(),
        // Answers write the capitalised form (brief §0.5).
        image_type: if image_type.eq_ignore_ascii_case("standard_app") {
            "Standard_app".to_string()
        } else {
            "Standard".to_string()
        },
        sys_raid_type_id: sys_raid_type_id.clone(),
        data_raid_type_id: data_raid_type_id.clone(),
        hostname: hostname.clone(),
        keypair_id: keypair_id.clone(),
        ends_in_failure: std::mem::take(&mut server.fail_next_install),
    };
    server.status = JdStatus::Installing;
    server.reinstall_count += 1;
    if keep_data == "no" {
        server.data_wipe_count += 1;
    }
    server.transition = Some(Transition {
        done_at: call.now.checked_add(duration).unwrap_or(Timestamp::MAX),
        install: Some(target),
    });
    tracing::info!(
        server = call.instance_id,
        os_type_id = %os_type_id,
        request_id = call.request_id,
        "emulator: jdcloud reinstall accepted"
    );
    world.reinstall_log.push(JdReinstallRecord {
        server_id: call.instance_id.to_string(),
        os_type_id,
        az,
        image_type,
        sys_raid_type_id,
        data_raid_type_id,
        keep_data,
        hostname,
        keypair_id,
        password_given: true,
        user_data_sha256: user_data.map(|bytes| crate::digest::sha256_hex(&bytes)),
        client_token: token.clone(),
        request_id: call.request_id.to_string(),
        signature_version: call.version.algorithm().to_string(),
        at: call.now,
    });
    remember(world, token, "reinstallInstance", call);
    Ok(true)
}
