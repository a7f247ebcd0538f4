//! CloudDC: instance lists and status, batch reinstalls.

use std::borrow::Cow;

use axum::http::StatusCode;
use jiff::Timestamp;
use serde_json::{Value, json};

use super::DEFAULT_CLOUDDC_BATCH_LIMIT;
use super::call::{Shown, Timing};
use super::errors::{Api, ApiError, clouddc_error, parameter_error};
use super::model::{
    ClouddcCallRecord, ClouddcInstall, ClouddcInstance, HuaweiInventory, HuaweiWorld, find_image,
    install_duration,
};
use super::params::{check_password, id_list, number, query_value};

fn instance_json(inventory: &HuaweiInventory, instance: &ClouddcInstance) -> Value {
    let image = find_image(&inventory.clouddc.images, &instance.image_id);
    let created = instance.created_at.to_string();
    json!({
        "id": instance.id,
        "name": instance.name,
        "image": {
            "id": instance.image_id,
            "name": image.map(|image| image.name.clone()),
            "os_type": image.map(|image| image.os_type.clone()),
        },
        "state": instance.state,
        "operation_state": instance.operation_state,
        "error": instance.error.as_ref().map(|(code, message)| json!({
            "error_code": code, "error_msg": message, "error_type": "reinstall",
        })),
        "server_id": format!("srv-{}", instance.id),
        "vpc_id": null,
        "network_interfaces": [],
        "tags": [],
        "metadata": {},
        "user_data": null,
        "description": null,
        "created_at": created,
        "updated_at": created,
        "launched_at": created,
    })
}

pub(super) fn list_instances(
    inventory: &HuaweiInventory,
    world: &HuaweiWorld,
    query: &[(String, String)],
    shown: Shown<'_>,
) -> Result<(StatusCode, Value), ApiError> {
    let instance_ids = id_list(Api::Clouddc, query, "instance_id")?;
    let server_ids = id_list(Api::Clouddc, query, "server_id")?;
    if instance_ids.is_some() && server_ids.is_some() {
        return Err(parameter_error(
            Api::Clouddc,
            "instance_id and server_id are mutually exclusive",
        ));
    }
    // Values below 10 become 10 (brief §7.1).
    let mut limit = number(Api::Clouddc, query, "limit")?
        .unwrap_or(10)
        .clamp(10, 1000);
    if let Some(cap) = inventory.clouddc.max_page_size {
        limit = limit.min(cap);
    }
    let state = query_value(query, "instance_state");
    // Sets: a world of many instances is filtered in one pass, not once per id.
    let instance_ids: Option<std::collections::HashSet<String>> =
        instance_ids.map(|ids| ids.into_iter().collect());
    let server_ids: Option<std::collections::HashSet<String>> =
        server_ids.map(|ids| ids.into_iter().collect());
    let all: Vec<Cow<ClouddcInstance>> = world
        .clouddc_instances
        .iter()
        .filter(|instance| {
            instance_ids
                .as_ref()
                .is_none_or(|ids| ids.contains(&instance.id))
        })
        .filter(|instance| {
            server_ids
                .as_ref()
                .is_none_or(|ids| ids.contains(&format!("srv-{}", instance.id)))
        })
        .map(|instance| shown.clouddc(instance))
        .collect();
    let matching: Vec<&ClouddcInstance> = all
        .iter()
        .map(|instance| instance.as_ref())
        .filter(|instance| state.is_none_or(|state| instance.state == state))
        .collect();
    let start = match query_value(query, "marker") {
        None => 0,
        Some(marker) => matching
            .iter()
            .position(|instance| instance.id == marker)
            .map(|position| position + 1)
            .ok_or_else(|| {
                parameter_error(
                    Api::Clouddc,
                    format!("marker `{marker}` is not an instance"),
                )
            })?,
    };
    let page: Vec<&ClouddcInstance> = matching.iter().skip(start).take(limit).copied().collect();
    let more = start + page.len() < matching.len();
    let next_marker = if more {
        page.last().map(|instance| instance.id.clone())
    } else {
        None
    };
    let previous_marker = start
        .checked_sub(1)
        .and_then(|index| matching.get(index))
        .map(|instance| instance.id.clone());
    let instances: Vec<Value> = page
        .iter()
        .map(|instance| instance_json(inventory, instance))
        .collect();
    Ok((
        StatusCode::OK,
        json!({
            "instances": instances,
            "page_info": {
                "next_marker": next_marker,
                "previous_marker": previous_marker,
                "current_count": page.len(),
            },
            "count": matching.len(),
        }),
    ))
}

pub(super) fn instance_status(
    world: &HuaweiWorld,
    instance_id: &str,
    shown: Shown<'_>,
) -> Result<(StatusCode, Value), ApiError> {
    let instance = world
        .clouddc_instances
        .iter()
        .find(|instance| instance.id == instance_id)
        .ok_or_else(|| instance_not_found(instance_id))?;
    let instance = shown.clouddc(instance);
    Ok((
        StatusCode::OK,
        json!({
            "state": instance.state,
            "operation_state": instance.operation_state,
            "error": instance.error.as_ref().map(|(code, message)| json!({"error_code": code, "error_msg": message})),
        }),
    ))
}

fn instance_not_found(instance_id: &str) -> ApiError {
    clouddc_error(
        StatusCode::NOT_FOUND,
        "CLOUDDC.EMULATOR.INSTANCE_NOT_FOUND",
        format!("instance `{instance_id}` does not exist"),
    )
}

pub(super) fn reinstall_instances(
    inventory: &HuaweiInventory,
    world: &mut HuaweiWorld,
    body: &[u8],
    timing: Timing,
    request_id: &str,
) -> Result<(StatusCode, Value), ApiError> {
    let parsed: Value = serde_json::from_slice(body)
        .map_err(|error| parameter_error(Api::Clouddc, format!("the body is not JSON: {error}")))?;
    let fields = parsed
        .as_object()
        .ok_or_else(|| parameter_error(Api::Clouddc, "the body must be a JSON object"))?;
    if let Some(unknown) = fields
        .keys()
        .find(|key| !["image_id", "password", "instance_id_set"].contains(&key.as_str()))
    {
        return Err(parameter_error(
            Api::Clouddc,
            format!("`{unknown}` is not a field of the reinstall call"),
        ));
    }
    let password = match fields.get("password") {
        Some(Value::String(password)) if !password.is_empty() => password.clone(),
        _ => {
            return Err(parameter_error(
                Api::Clouddc,
                "`password` (a string) is required",
            ));
        }
    };
    if let Err(problem) = check_password(&password) {
        return Err(clouddc_error(
            StatusCode::BAD_REQUEST,
            "CLOUDDC.EMULATOR.PASSWORD_POLICY",
            problem,
        ));
    }
    let image_id = match fields.get("image_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) if text.is_empty() => None,
        Some(Value::String(text)) => Some(text.clone()),
        Some(_) => return Err(parameter_error(Api::Clouddc, "`image_id` must be a string")),
    };
    if let Some(image_id) = &image_id
        && find_image(&inventory.clouddc.images, image_id).is_none()
    {
        return Err(parameter_error(
            Api::Clouddc,
            format!("image `{image_id}` does not exist"),
        ));
    }
    let ids: Vec<String> = match fields.get("instance_id_set") {
        Some(Value::Array(list)) => list
            .iter()
            .map(|id| id.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| parameter_error(Api::Clouddc, "`instance_id_set` must hold strings"))?,
        _ => {
            return Err(parameter_error(
                Api::Clouddc,
                "`instance_id_set` (a list) is required",
            ));
        }
    };
    let limit = inventory
        .clouddc
        .reinstall_batch_limit
        .unwrap_or(DEFAULT_CLOUDDC_BATCH_LIMIT);
    if ids.is_empty() || ids.len() > limit {
        return Err(parameter_error(
            Api::Clouddc,
            format!(
                "`instance_id_set` holds {} ids; 1 to {limit} are allowed",
                ids.len()
            ),
        ));
    }
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    if unique.len() != ids.len() {
        return Err(parameter_error(
            Api::Clouddc,
            "`instance_id_set` lists an id twice",
        ));
    }
    // All or nothing: every instance must exist and be running (brief §7.3).
    for id in &ids {
        let instance = world
            .clouddc_instances
            .iter()
            .find(|instance| &instance.id == id)
            .ok_or_else(|| instance_not_found(id))?;
        if instance.state != "running" {
            return Err(clouddc_error(
                StatusCode::BAD_REQUEST,
                "CLOUDDC.EMULATOR.STATE_NOT_RUNNING",
                format!(
                    "instance `{id}` is {}; only running instances can be reinstalled",
                    instance.state
                ),
            ));
        }
    }
    for id in &ids {
        if let Some(instance) = world.clouddc_instance_mut(id) {
            let duration = install_duration(
                timing.override_seconds,
                instance.install_seconds,
                timing.default_seconds,
            );
            instance.install = Some(ClouddcInstall {
                image_id: image_id
                    .clone()
                    .unwrap_or_else(|| instance.image_id.clone()),
                done_at: timing.now.checked_add(duration).unwrap_or(Timestamp::MAX),
                ends_in_failure: std::mem::take(&mut instance.fail_next_install),
            });
            instance.state = "pending".to_string();
            instance.operation_state = Some("reinstall-processing".to_string());
            instance.error = None;
            instance.reinstall_count += 1;
        }
    }
    world.clouddc_calls.push(ClouddcCallRecord {
        instance_ids: ids.clone(),
        image_id,
        password_given: true,
        request_id: request_id.to_string(),
        at: timing.now,
    });
    tracing::info!(
        instances = ids.len(),
        "emulator: CloudDC batch reinstall accepted"
    );
    let accepted: Vec<Value> = ids.iter().map(|id| json!({"id": id})).collect();
    Ok((StatusCode::ACCEPTED, json!({"instances": accepted})))
}
