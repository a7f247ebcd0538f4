//! The Zenlayer actions: `DescribeInstances`, `DescribeImages`, `ReinstallInstance`, with their
//! parameter checks (password, hostname, user data).

use std::borrow::Cow;

use axum::http::StatusCode;
use jiff::Timestamp;
use serde::Deserialize;
use serde_json::{Value, json};

use super::errors::ApiError;
use super::{
    DEFAULT_PAGE_SIZE, MAX_HOSTNAME_CHARS, MAX_INSTANCE_IDS, MAX_PAGE_SIZE, MAX_USER_DATA_BYTES,
    PASSWORD_SPECIALS,
};
use crate::emulator::faults;
use crate::emulator::inventory::{InstanceStatus, Inventory, ZenlayerImage};
use crate::emulator::server::Shared;
use crate::emulator::world::{ReinstallRecord, World, ZenlayerServer};
use crate::manifest::ProviderType;

/// The body is the action's parameters: a JSON object (an empty body reads as `{}`).
pub(super) fn parse_parameters(body: &[u8]) -> Result<Value, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(serde_json::Map::new()));
    }
    let value: Value = serde_json::from_slice(body).map_err(|error| {
        ApiError::bad_request(
            "INVALID_PARAMETER",
            format!("the body is not JSON: {error}"),
        )
    })?;
    if !value.is_object() {
        return Err(ApiError::bad_request(
            "INVALID_PARAMETER",
            "the body must be a JSON object",
        ));
    }
    Ok(value)
}

fn parameters_as<T: for<'de> Deserialize<'de>>(parameters: Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(parameters).map_err(|error| {
        let path = error.path().to_string();
        // serde quotes the offending value, which must not happen for a password.
        let message = if path.contains("password") {
            format!("parameter `{path}` must be a string")
        } else {
            format!("parameter `{path}`: {}", error.inner())
        };
        ApiError::bad_request("INVALID_PARAMETER", message)
    })
}

/// `instanceName` and `hostname` filters: exact, or a prefix when ending in `*`.
fn name_filter_matches(filter: &str, value: Option<&str>) -> bool {
    let value = value.unwrap_or_default();
    match filter.strip_suffix('*') {
        Some(prefix) => value.starts_with(prefix),
        None => value == filter,
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescribeInstancesRequest {
    instance_ids: Option<Vec<String>>,
    zone_id: Option<String>,
    instance_type_id: Option<String>,
    image_id: Option<String>,
    instance_status: Option<String>,
    instance_name: Option<String>,
    hostname: Option<String>,
    page_num: Option<i64>,
    page_size: Option<i64>,
}

pub(super) fn describe_instances(
    inventory: &Inventory,
    world: &World,
    parameters: Value,
    now: Timestamp,
) -> Result<serde_json::Map<String, Value>, ApiError> {
    let request: DescribeInstancesRequest = parameters_as(parameters)?;
    let instance_ids = request.instance_ids.unwrap_or_default();
    if instance_ids.len() > MAX_INSTANCE_IDS {
        return Err(ApiError::bad_request(
            "INVALID_PARAMETER",
            format!(
                "instanceIds holds {} ids; at most {MAX_INSTANCE_IDS} are allowed",
                instance_ids.len()
            ),
        ));
    }
    let page_num = request.page_num.unwrap_or(1);
    if page_num < 1 {
        return Err(ApiError::bad_request(
            "INVALID_PARAMETER",
            format!("pageNum must be 1 or more, not {page_num}"),
        ));
    }
    let page_size = request.page_size.unwrap_or(DEFAULT_PAGE_SIZE);
    if !(1..=MAX_PAGE_SIZE).contains(&page_size) {
        return Err(ApiError::bad_request(
            "INVALID_PARAMETER",
            format!("pageSize must be between 1 and {MAX_PAGE_SIZE}, not {page_size}"),
        ));
    }
    // A set: a world of many servers is filtered in one pass, not once per id.
    let wanted: std::collections::HashSet<&str> = instance_ids.iter().map(String::as_str).collect();
    // What each server shows: the truth, or what it was before a call whose effect is late.
    let shown: Vec<Cow<ZenlayerServer>> = world
        .zenlayer
        .servers
        .iter()
        // An empty list filters nothing, as an omitted one.
        .filter(|server| wanted.is_empty() || wanted.contains(server.id.as_str()))
        .map(|server| {
            faults::as_shown(
                &world.faults,
                ProviderType::ZenlayerBmc,
                &server.id,
                server,
                now,
            )
        })
        .collect();
    let matching: Vec<&ZenlayerServer> = shown
        .iter()
        .map(|server| server.as_ref())
        .filter(|server| {
            request
                .zone_id
                .as_deref()
                .is_none_or(|zone| server.zone_id.as_deref() == Some(zone))
        })
        .filter(|server| {
            request
                .instance_type_id
                .as_deref()
                .is_none_or(|kind| server.instance_type_id.as_deref() == Some(kind))
        })
        .filter(|server| {
            request
                .image_id
                .as_deref()
                .is_none_or(|image| server.image_id == image)
        })
        .filter(|server| {
            request
                .instance_status
                .as_deref()
                .is_none_or(|status| server.status.as_str().eq_ignore_ascii_case(status))
        })
        .filter(|server| {
            request
                .instance_name
                .as_deref()
                .is_none_or(|filter| name_filter_matches(filter, Some(&server.name)))
        })
        .filter(|server| {
            request
                .hostname
                .as_deref()
                .is_none_or(|filter| name_filter_matches(filter, server.hostname.as_deref()))
        })
        .collect();
    // Both are bounded above (page size ≤ 1000), so only a huge page number can overflow.
    let skip = usize::try_from(page_num - 1)
        .ok()
        .and_then(|pages| pages.checked_mul(page_size as usize))
        .unwrap_or(usize::MAX);
    let data_set: Vec<Value> = matching
        .iter()
        .skip(skip)
        .take(page_size as usize)
        .map(|server| instance_info(inventory, server))
        .collect();
    let mut fields = serde_json::Map::new();
    fields.insert("totalCount".into(), json!(matching.len()));
    fields.insert("dataSet".into(), Value::Array(data_set));
    Ok(fields)
}

fn instance_info(inventory: &Inventory, server: &ZenlayerServer) -> Value {
    let image_name = find_image(inventory, &server.image_id).map(|image| image.name.clone());
    json!({
        "instanceId": server.id,
        "instanceName": server.name,
        "hostname": server.hostname,
        "imageId": server.image_id,
        "imageName": image_name,
        "ipxeUrl": null,
        "instanceStatus": server.status.as_str(),
        "zoneId": server.zone_id,
        "instanceTypeId": server.instance_type_id,
        "keyId": server.key_id,
        "raidConfig": null,
        "partitions": null,
        "nic": null,
        "primaryPublicIpAddress": server.public_ip,
        "publicIpAddresses": server.public_ip.iter().collect::<Vec<_>>(),
        "privateIpAddresses": [],
        "createTime": server.created_at.to_string(),
        "expiredTime": null,
    })
}

fn find_image<'a>(inventory: &'a Inventory, image_id: &str) -> Option<&'a ZenlayerImage> {
    inventory
        .zenlayer
        .images
        .iter()
        .find(|image| image.id == image_id)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescribeImagesRequest {
    image_ids: Option<Vec<String>>,
    image_name: Option<String>,
    catalog: Option<String>,
    image_type: Option<String>,
    os_type: Option<String>,
    /// Every emulated image fits every machine model, so this filters nothing.
    #[allow(dead_code)]
    instance_type_id: Option<String>,
}

pub(super) fn describe_images(
    inventory: &Inventory,
    parameters: Value,
) -> Result<serde_json::Map<String, Value>, ApiError> {
    let request: DescribeImagesRequest = parameters_as(parameters)?;
    let image_ids = request.image_ids.unwrap_or_default();
    let images: Vec<Value> = inventory
        .zenlayer
        .images
        .iter()
        .filter(|image| image_ids.is_empty() || image_ids.contains(&image.id))
        .filter(|image| {
            request
                .image_name
                .as_deref()
                .is_none_or(|name| image.name == name)
        })
        .filter(|image| {
            request
                .catalog
                .as_deref()
                .is_none_or(|catalog| image.catalog.as_deref() == Some(catalog))
        })
        .filter(|image| {
            request
                .image_type
                .as_deref()
                .is_none_or(|kind| image.image_type == kind)
        })
        .filter(|image| {
            request
                .os_type
                .as_deref()
                .is_none_or(|os| image.os_type == os)
        })
        .map(|image| {
            json!({
                "imageId": image.id,
                "imageName": image.name,
                "catalog": image.catalog,
                "imageType": image.image_type,
                "osType": image.os_type,
            })
        })
        .collect();
    let mut fields = serde_json::Map::new();
    fields.insert("images".into(), Value::Array(images));
    Ok(fields)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReinstallInstanceRequest {
    instance_id: Option<String>,
    image_id: Option<String>,
    hostname: Option<String>,
    password: Option<String>,
    key_id: Option<String>,
    ssh_keys: Option<Vec<String>>,
    ipxe_url: Option<String>,
    user_data: Option<String>,
    // Accepted but not emulated: they leave no trace in DescribeInstances here.
    #[allow(dead_code)]
    raid_config: Option<Value>,
    #[allow(dead_code)]
    partitions: Option<Value>,
    #[allow(dead_code)]
    nic: Option<Value>,
}

/// Treats `""` like an absent field, as SDKs that send every field might.
fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|text| !text.is_empty())
}

pub(super) fn reinstall_instance(
    shared: &Shared,
    world: &mut World,
    parameters: Value,
    version: &str,
    now: Timestamp,
    request_id: &str,
) -> Result<(), ApiError> {
    let request: ReinstallInstanceRequest = parameters_as(parameters)?;
    let instance_id = non_empty(request.instance_id)
        .ok_or_else(|| ApiError::bad_request("INVALID_PARAMETER", "instanceId is required"))?;
    let password = non_empty(request.password);
    let key_id = non_empty(request.key_id);
    let requested_image_id = non_empty(request.image_id);
    let hostname = non_empty(request.hostname);
    if password.is_some() && key_id.is_some() {
        return Err(ApiError::bad_request(
            "INVALID_PARAMETER_INSTANCE_LOGIN_CONFLICT",
            "pass either password or keyId, not both",
        ));
    }
    if let Some(password) = &password
        && let Err(problem) = check_password(password)
    {
        return Err(ApiError::bad_request(
            "INVALID_PARAMETER_VALUE_PASSWORD_MALFORMED",
            problem,
        ));
    }
    if let Some(hostname) = &hostname {
        check_hostname(hostname)?;
    }
    if let Some(user_data) = &request.user_data
        && user_data.len() > MAX_USER_DATA_BYTES
    {
        return Err(ApiError::bad_request(
            "INVALID_PARAMETER",
            format!(
                "userData is {} bytes; at most {MAX_USER_DATA_BYTES} are allowed",
                user_data.len()
            ),
        ));
    }
    if request.ssh_keys.is_some() && version != "2022-11-20" {
        return Err(ApiError::bad_request(
            "INVALID_PARAMETER",
            format!("sshKeys is not accepted by API version {version}"),
        ));
    }
    if non_empty(request.ipxe_url).is_some() {
        return Err(ApiError::bad_request(
            "UNSUPPORTED_BY_EMULATOR",
            "iPXE installs are not emulated",
        ));
    }
    let server = world.zenlayer.server_mut(&instance_id).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "INVALID_INSTANCE_NOT_FOUND",
            format!("instance `{instance_id}` does not exist"),
        )
    })?;
    check_status_allows_reinstall(server.status)?;
    let image_id = match &requested_image_id {
        Some(image_id) => {
            if find_image(&shared.inventory, image_id).is_none() {
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    "INVALID_IMAGE_NOT_FOUND",
                    format!("image `{image_id}` does not exist"),
                ));
            }
            image_id.clone()
        }
        // The real API reinstalls the current image when imageId is omitted (brief §0.2).
        None => server.image_id.clone(),
    };
    // The documented default hostname is literally `hostname` (brief §6).
    let new_hostname = hostname.clone().unwrap_or_else(|| "hostname".to_string());
    let duration = server.install_duration(&shared.inventory, shared.install_seconds_override);
    server.begin_install(
        image_id.clone(),
        Some(new_hostname),
        key_id.clone(),
        now,
        duration,
    );
    tracing::info!(
        server = %instance_id,
        image = %image_id,
        request_id,
        "emulator: zenlayer reinstall accepted"
    );
    let installing_at_call = world
        .zenlayer
        .servers
        .iter()
        .filter(|server| server.install.is_some())
        .count();
    world.zenlayer.peak_installing = world.zenlayer.peak_installing.max(installing_at_call);
    world.zenlayer.reinstall_log.push(ReinstallRecord {
        installing_at_call,
        server_id: instance_id,
        requested_image_id,
        image_id,
        hostname,
        password_given: password.is_some(),
        key_id,
        at: now,
        request_id: request_id.to_string(),
    });
    Ok(())
}

fn check_status_allows_reinstall(status: InstanceStatus) -> Result<(), ApiError> {
    let code = match status {
        InstanceStatus::Running | InstanceStatus::Stopped => return Ok(()),
        InstanceStatus::Installing => "OPERATION_DENIED_INSTANCE_STATUS_INSTALLING",
        InstanceStatus::Creating => "OPERATION_DENIED_INSTANCE_CREATING",
        InstanceStatus::Recycle | InstanceStatus::Recycling => "OPERATION_DENIED_INSTANCE_RECYCLED",
        InstanceStatus::Pending
        | InstanceStatus::CreateFailed
        | InstanceStatus::InstallFailed
        | InstanceStatus::Booting
        | InstanceStatus::Stopping => "OPERATION_DENIED_INSTANCE_STATUS",
    };
    Err(ApiError::denied(
        code,
        format!(
            "the instance is {}; only STOPPED or RUNNING instances can be reinstalled",
            status.as_str()
        ),
    ))
}

/// 8–16 characters from letters, digits and `~!@$^*-_=+`, with at least one of each class.
fn check_password(password: &str) -> Result<(), String> {
    let length = password.chars().count();
    if !(8..=16).contains(&length) {
        return Err(format!(
            "the password must be 8 to 16 characters, not {length}"
        ));
    }
    // The offending character is not named: error messages end up in logs.
    if !password
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || PASSWORD_SPECIALS.contains(c))
    {
        return Err(format!(
            "the password may only hold letters, digits and {PASSWORD_SPECIALS}"
        ));
    }
    let classes = [
        password.chars().any(|c| c.is_ascii_uppercase()),
        password.chars().any(|c| c.is_ascii_lowercase()),
        password.chars().any(|c| c.is_ascii_digit()),
        password.chars().any(|c| PASSWORD_SPECIALS.contains(c)),
    ];
    if classes.contains(&false) {
        return Err(format!(
            "the password must hold an upper-case letter, a lower-case letter, a digit and one \
             of {PASSWORD_SPECIALS}"
        ));
    }
    Ok(())
}

fn check_hostname(hostname: &str) -> Result<(), ApiError> {
    let length = hostname.chars().count();
    if length > MAX_HOSTNAME_CHARS {
        return Err(ApiError::bad_request(
            "INVALID_PARAMETER_HOSTNAME_EXCEED",
            format!(
                "the hostname is {length} characters; at most {MAX_HOSTNAME_CHARS} are allowed"
            ),
        ));
    }
    if !hostname
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
    {
        return Err(ApiError::bad_request(
            "INVALID_PARAMETER_HOSTNAME_MALFORMED",
            "the hostname may only hold letters, digits, `-` and `.`",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_policy() {
        assert!(check_password("Abcdef1!").is_ok());
        assert!(check_password("Abcdefg1").is_err(), "no special");
        assert!(check_password("abcdef1!").is_err(), "no upper case");
        assert!(check_password("Ab1!").is_err(), "too short");
        assert!(check_password("Abcdefghijklmn1!x").is_err(), "too long");
        assert!(
            check_password("Abcdef1#").is_err(),
            "# is not an allowed special"
        );
    }

    #[test]
    fn hostname_rules() {
        assert!(check_hostname("web-01.example").is_ok());
        assert_eq!(
            check_hostname(&"a".repeat(65)).unwrap_err().code,
            "INVALID_PARAMETER_HOSTNAME_EXCEED"
        );
        assert_eq!(
            check_hostname("web_01").unwrap_err().code,
            "INVALID_PARAMETER_HOSTNAME_MALFORMED"
        );
    }
}
