//! ECS: server details and lists, change-OS and reinstall (v1, v2) as jobs, job queries.

use std::borrow::Cow;

use axum::http::StatusCode;
use base64::Engine;
use jiff::Timestamp;
use serde_json::{Map, Value, json};

use super::USER_DATA_MAX_BYTES;
use super::call::{Shown, Timing};
use super::errors::{Api, ApiError, ecs_error, parameter_error};
use super::model::{
    EcsCallRecord, EcsInstall, EcsJob, EcsServer, HuaweiInventory, HuaweiWorld, find_image,
    install_duration,
};
use super::params::{check_password, id_list, number, query_value};

fn vm_state(status: &str) -> &'static str {
    match status {
        "ACTIVE" | "REBUILD" | "REBOOT" | "HARD_REBOOT" | "MIGRATING" => "active",
        "SHUTOFF" => "stopped",
        "ERROR" => "error",
        "BUILD" => "building",
        "DELETED" | "SOFT_DELETED" => "deleted",
        "PAUSED" => "paused",
        "SUSPENDED" => "suspended",
        "SHELVED" | "SHELVED_OFFLOADED" => "shelved",
        "RESIZE" | "REVERT_RESIZE" | "VERIFY_RESIZE" => "resized",
        _ => "unknown",
    }
}

fn server_detail(inventory: &HuaweiInventory, server: &EcsServer) -> Value {
    let image = find_image(&inventory.ecs.images, &server.image_id);
    json!({
        "id": server.id,
        "name": server.name,
        "status": server.status,
        "locked": server.locked,
        "key_name": server.key_name,
        "image": {"id": server.image_id},
        "flavor": {"id": "s6.large.2", "name": "s6.large.2"},
        "metadata": {
            "image_name": image.map(|image| image.name.clone()),
            "metering.image_id": server.image_id,
            "os_type": image.map(|image| image.os_type.clone()),
        },
        "OS-EXT-STS:vm_state": vm_state(&server.status),
        "OS-EXT-STS:task_state": server.task_state,
        "OS-EXT-STS:power_state": if server.status == "ACTIVE" { 1 } else { 4 },
        "OS-EXT-SRV-ATTR:hostname": server.hostname,
        "OS-EXT-AZ:availability_zone": "emulator-az1",
        "fault": server.fault.as_ref().map(|message| json!({"code": 500, "message": message})),
    })
}

/// What ECS lists for an id it does not know (brief §3.2).
fn unknown_server(id: &str) -> Value {
    json!({
        "id": id,
        "name": null,
        "status": null,
        "locked": null,
        "image": null,
        "metadata": null,
        "OS-EXT-STS:task_state": null,
        "fault": {"code": 404, "message": "Ecs.0114: the server does not exist"},
    })
}

pub(super) fn list_servers(
    inventory: &HuaweiInventory,
    world: &HuaweiWorld,
    query: &[(String, String)],
    shown: Shown<'_>,
) -> Result<(StatusCode, Value), ApiError> {
    let limit = number(Api::Ecs, query, "limit")?.unwrap_or(25);
    if !(1..=1000).contains(&limit) {
        return Err(parameter_error(
            Api::Ecs,
            format!("limit must be 1 to 1000, not {limit}"),
        ));
    }
    if let Some(ids) = id_list(Api::Ecs, query, "server_id")? {
        // With server_id, every other filter is ignored (brief §3.2). An index: a world of many
        // servers is searched once per call, not once per id.
        let by_id: std::collections::HashMap<&str, &EcsServer> = world
            .ecs_servers
            .iter()
            .map(|server| (server.id.as_str(), server))
            .collect();
        let servers: Vec<Value> = ids
            .iter()
            .map(|id| match by_id.get(id.as_str()) {
                Some(server) => server_detail(inventory, &shown.ecs(server)),
                None => unknown_server(id),
            })
            .collect();
        return Ok((
            StatusCode::OK,
            json!({"count": servers.len(), "servers": servers}),
        ));
    }
    let offset = number(Api::Ecs, query, "offset")?.unwrap_or(1).max(1);
    let status = query_value(query, "status");
    let all: Vec<Cow<EcsServer>> = world
        .ecs_servers
        .iter()
        .map(|server| shown.ecs(server))
        .collect();
    let matching: Vec<&EcsServer> = all
        .iter()
        .map(|server| server.as_ref())
        .filter(|server| status.is_none_or(|status| server.status == status))
        .collect();
    let servers: Vec<Value> = matching
        .iter()
        .skip((offset - 1).saturating_mul(limit))
        .take(limit)
        .map(|server| server_detail(inventory, server))
        .collect();
    Ok((
        StatusCode::OK,
        json!({"count": matching.len(), "servers": servers}),
    ))
}

pub(super) fn show_server(
    inventory: &HuaweiInventory,
    world: &HuaweiWorld,
    server_id: &str,
    shown: Shown<'_>,
) -> Result<(StatusCode, Value), ApiError> {
    let server = world
        .ecs_servers
        .iter()
        .find(|server| server.id == server_id)
        .ok_or_else(|| server_not_found(server_id))?;
    Ok((
        StatusCode::OK,
        json!({"server": server_detail(inventory, &shown.ecs(server))}),
    ))
}

fn server_not_found(server_id: &str) -> ApiError {
    ecs_error(
        StatusCode::NOT_FOUND,
        "Ecs.0114",
        format!("the ECS `{server_id}` does not exist"),
    )
}

/// The fields each of the four calls accepts (brief §4.1).
const CHANGE_FIELDS: [&str; 7] = [
    "adminpass",
    "keyname",
    "userid",
    "imageid",
    "mode",
    "isAutoPay",
    "metadata",
];
const REINSTALL_FIELDS: [&str; 5] = ["adminpass", "keyname", "userid", "mode", "metadata"];
const METADATA_FIELDS_V1: [&str; 3] = ["__system__encrypted", "__system__cmkid", "BYOL"];
const METADATA_FIELDS_V2: [&str; 4] = [
    "user_data",
    "__system__encrypted",
    "__system__cmkid",
    "BYOL",
];

fn optional_string(fields: &Map<String, Value>, key: &str) -> Result<Option<String>, ApiError> {
    match fields.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) if text.is_empty() => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        // The value is not echoed: it could be a password.
        Some(_) => Err(parameter_error(
            Api::Ecs,
            format!("`{key}` must be a string"),
        )),
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) fn change_or_reinstall(
    inventory: &HuaweiInventory,
    world: &mut HuaweiWorld,
    version: &str,
    server_id: &str,
    action: &str,
    body: &[u8],
    timing: Timing,
    request_id: &str,
) -> Result<(StatusCode, Value), ApiError> {
    let change = action == "changeos";
    let v2 = version == "v2";
    let root_key = if change { "os-change" } else { "os-reinstall" };
    let parsed: Value = serde_json::from_slice(body)
        .map_err(|error| parameter_error(Api::Ecs, format!("the body is not JSON: {error}")))?;
    let root = parsed.as_object().filter(|root| root.len() == 1);
    let fields = root
        .and_then(|root| root.get(root_key))
        .and_then(Value::as_object)
        .ok_or_else(|| {
            parameter_error(
                Api::Ecs,
                format!("the body must be `{{\"{root_key}\": {{…}}}}`"),
            )
        })?;
    let allowed: &[&str] = if change {
        &CHANGE_FIELDS
    } else {
        &REINSTALL_FIELDS
    };
    if let Some(unknown) = fields.keys().find(|key| !allowed.contains(&key.as_str())) {
        return Err(parameter_error(
            Api::Ecs,
            format!("`{unknown}` is not a field of {root_key} ({version})"),
        ));
    }
    let adminpass = optional_string(fields, "adminpass")?;
    let keyname = optional_string(fields, "keyname")?;
    let userid = optional_string(fields, "userid")?;
    let mode = optional_string(fields, "mode")?;
    let imageid = optional_string(fields, "imageid")?;
    let metadata = match fields.get("metadata") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(metadata)) => metadata.clone(),
        Some(_) => return Err(parameter_error(Api::Ecs, "`metadata` must be an object")),
    };
    let metadata_allowed: &[&str] = if v2 {
        &METADATA_FIELDS_V2
    } else {
        &METADATA_FIELDS_V1
    };
    if let Some(unknown) = metadata
        .keys()
        .find(|key| !metadata_allowed.contains(&key.as_str()))
    {
        return Err(parameter_error(
            Api::Ecs,
            format!("`metadata.{unknown}` is not accepted by the {version} call"),
        ));
    }
    let user_data = optional_string(&metadata, "user_data")?;
    if let Some(mode) = &mode
        && mode != "withStopServer"
    {
        return Err(parameter_error(
            Api::Ecs,
            format!("`mode` must be `withStopServer`, not `{mode}`"),
        ));
    }
    if v2 {
        if adminpass.is_some() && keyname.is_some() {
            return Err(parameter_error(
                Api::Ecs,
                "`adminpass` and `keyname` cannot both be set",
            ));
        }
        if adminpass.is_none() && keyname.is_none() && user_data.is_none() {
            return Err(parameter_error(
                Api::Ecs,
                "without `adminpass` and `keyname`, `metadata.user_data` must be set",
            ));
        }
    } else if adminpass.is_none() && keyname.is_none() {
        return Err(parameter_error(
            Api::Ecs,
            "`adminpass` and `keyname` cannot both be empty",
        ));
    } else if adminpass.is_some() && keyname.is_some() {
        return Err(parameter_error(
            Api::Ecs,
            "`adminpass` and `keyname` cannot both be set",
        ));
    }
    if let Some(password) = &adminpass
        && let Err(problem) = check_password(password)
    {
        return Err(ecs_error(StatusCode::BAD_REQUEST, "Ecs.0011", problem));
    }
    if let Some(user_data) = &user_data {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(user_data)
            .map_err(|_| parameter_error(Api::Ecs, "`metadata.user_data` must be base64"))?;
        if decoded.len() > USER_DATA_MAX_BYTES {
            return Err(parameter_error(
                Api::Ecs,
                format!(
                    "decoded user data is {} bytes; at most {USER_DATA_MAX_BYTES}",
                    decoded.len()
                ),
            ));
        }
    }
    let server = world
        .ecs_servers
        .iter()
        .find(|server| server.id == server_id)
        .ok_or_else(|| server_not_found(server_id))?;
    let image_id = if change {
        let image_id = imageid.ok_or_else(|| parameter_error(Api::Ecs, "`imageid` is required"))?;
        if find_image(&inventory.ecs.images, &image_id).is_none() {
            return Err(parameter_error(
                Api::Ecs,
                format!("image `{image_id}` does not exist"),
            ));
        }
        image_id
    } else {
        // Reinstall never changes the image (brief §0.1).
        server.image_id.clone()
    };
    if server.locked {
        return Err(ecs_error(
            StatusCode::CONFLICT,
            "EMULATOR.ECS.LOCKED",
            format!("the ECS `{server_id}` is locked"),
        ));
    }
    if let Some(task_state) = &server.task_state {
        return Err(ecs_error(
            StatusCode::CONFLICT,
            "EMULATOR.ECS.BUSY",
            format!("the ECS `{server_id}` is busy (task state {task_state})"),
        ));
    }
    let status_after = match (server.status.as_str(), mode.is_some()) {
        ("ACTIVE", true) => "ACTIVE",
        ("ACTIVE", false) => {
            return Err(ecs_error(
                StatusCode::CONFLICT,
                "EMULATOR.ECS.NOT_STOPPED",
                "the ECS is running; stop it or pass mode withStopServer",
            ));
        }
        ("SHUTOFF", _) => "SHUTOFF",
        // A failed reinstall/change may be tried again; the server then comes back stopped.
        ("ERROR", _) => "SHUTOFF",
        (other, _) => {
            return Err(ecs_error(
                StatusCode::CONFLICT,
                "EMULATOR.ECS.BUSY",
                format!(
                    "the ECS is {other}; only ACTIVE, SHUTOFF or ERROR servers can be reinstalled"
                ),
            ));
        }
    };
    let server = world
        .ecs_server_mut(server_id)
        .ok_or_else(|| server_not_found(server_id))?;
    let duration = install_duration(
        timing.override_seconds,
        server.install_seconds,
        timing.default_seconds,
    );
    let done_at = timing.now.checked_add(duration).unwrap_or(Timestamp::MAX);
    let job_id = uuid::Uuid::new_v4().simple().to_string();
    let ends_in_failure = std::mem::take(&mut server.fail_next_install);
    server.install = Some(EcsInstall {
        job_id: job_id.clone(),
        image_id: image_id.clone(),
        key_name: keyname.clone(),
        status_after: status_after.to_string(),
        done_at,
        ends_in_failure,
    });
    server.status = "REBUILD".to_string();
    server.task_state = Some("rebuilding".to_string());
    server.reinstall_count += 1;
    world.jobs.push(EcsJob {
        job_id: job_id.clone(),
        job_type: if change { "changeOS" } else { "reinstallOS" }.to_string(),
        server_id: server_id.to_string(),
        begin: timing.now,
        done_at,
        ends_in_failure,
    });
    world.ecs_calls.push(EcsCallRecord {
        server_id: server_id.to_string(),
        call: action.to_string(),
        version: version.to_string(),
        image_id,
        mode,
        password_given: adminpass.is_some(),
        key_name: keyname,
        user_id: userid,
        user_data_given: user_data.is_some(),
        job_id: job_id.clone(),
        request_id: request_id.to_string(),
        at: timing.now,
    });
    tracing::info!(
        server = server_id,
        action,
        version,
        job_id,
        "emulator: ECS call accepted"
    );
    Ok((StatusCode::OK, json!({"job_id": job_id})))
}

pub(super) fn show_job(
    world: &HuaweiWorld,
    job_id: &str,
    now: Timestamp,
) -> Result<(StatusCode, Value), ApiError> {
    let Some(job) = world.jobs.iter().find(|job| job.job_id == job_id) else {
        // A failed job query answers with `code` and `message` (brief §5.1).
        return Err(ApiError {
            status: StatusCode::NOT_FOUND,
            body: json!({"code": "EMULATOR.JOB_NOT_FOUND", "message": format!("job `{job_id}` does not exist")}),
            retry_after: None,
        });
    };
    let status = job.status(now);
    let finished = matches!(status, "SUCCESS" | "FAIL");
    let (error_code, fail_reason, sub_message) = if status == "FAIL" {
        (
            Some("Ecs.EMULATOR.INSTALL_FAILED"),
            Some("the OS change failed (injected by the emulator)"),
            Some("Ecs.EMULATOR.INSTALL_FAILED: the system disk could not be rebuilt"),
        )
    } else {
        (None, None, None)
    };
    let end_time = finished.then(|| {
        job.done_at
            .strftime("%Y-%m-%dT%H:%M:%S.000+0000")
            .to_string()
    });
    let begin_time = job.begin.strftime("%Y-%m-%dT%H:%M:%S.000+0000").to_string();
    Ok((
        StatusCode::OK,
        json!({
            "status": status,
            "job_id": job.job_id,
            "job_type": job.job_type,
            "begin_time": begin_time,
            "end_time": end_time,
            "error_code": error_code,
            "fail_reason": fail_reason,
            "entities": {
                "server_id": job.server_id,
                "sub_jobs_total": 1,
                "sub_jobs": [{
                    "status": status,
                    "job_id": format!("{}-1", job.job_id),
                    "job_type": job.job_type,
                    "begin_time": begin_time,
                    "end_time": end_time,
                    "error_code": error_code,
                    "fail_reason": fail_reason,
                    "entities": {"server_id": job.server_id, "errorcode_message": sub_message},
                }],
            },
        }),
    ))
}
