//! The Huawei Cloud part of the emulator's inventory and world: ECS servers and their jobs,
//! CloudDC instances, IAM projects, faults. Installs settle lazily by time, like the rest of
//! the world.

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

/// ECS statuses the inventory may start a server in (brief §5.3).
pub const ECS_STATUSES: [&str; 18] = [
    "BUILD",
    "REBOOT",
    "HARD_REBOOT",
    "REBUILD",
    "MIGRATING",
    "RESIZE",
    "ACTIVE",
    "SHUTOFF",
    "REVERT_RESIZE",
    "VERIFY_RESIZE",
    "ERROR",
    "DELETED",
    "SHELVED",
    "SHELVED_OFFLOADED",
    "UNKNOWN",
    "PAUSED",
    "SUSPENDED",
    "SOFT_DELETED",
];
/// CloudDC instance states (brief §7.2).
pub const CLOUDDC_STATES: [&str; 6] = [
    "pending",
    "running",
    "stopped",
    "shutting-down",
    "terminated",
    "error",
];

// ---------------------------------------------------------------------------------------------
// Inventory

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HuaweiInventory {
    /// Access keys accepted for SDK-HMAC-SHA256 (fake ones: this is an emulator).
    #[serde(default)]
    pub credentials: Vec<HuaweiCredential>,
    /// IAM tokens accepted as `X-Auth-Token`.
    #[serde(default)]
    pub tokens: Vec<String>,
    /// IAM projects; a project's name is its region.
    #[serde(default)]
    pub projects: Vec<HuaweiProject>,
    #[serde(default)]
    pub ecs: EcsInventory,
    #[serde(default)]
    pub clouddc: ClouddcInventory,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HuaweiCredential {
    pub access_key: String,
    pub secret_key: String,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HuaweiProject {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HuaweiImage {
    pub id: String,
    pub name: String,
    /// `Linux` (default) or `Windows`.
    #[serde(default = "default_os_type")]
    pub os_type: String,
}

fn default_os_type() -> String {
    "Linux".to_string()
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EcsInventory {
    #[serde(default)]
    pub images: Vec<HuaweiImage>,
    #[serde(default)]
    pub servers: Vec<EcsServerSpec>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EcsServerSpec {
    pub id: String,
    pub name: String,
    /// The image installed at the start (need not be in `images`).
    pub image: String,
    #[serde(default = "default_ecs_status")]
    pub status: String,
    #[serde(default)]
    pub locked: bool,
    /// `OS-EXT-STS:task_state` (e.g. `rebooting`): another operation is running.
    #[serde(default)]
    pub task_state: Option<String>,
    #[serde(default)]
    pub hostname: Option<String>,
    #[serde(default)]
    pub fail_next_install: bool,
    #[serde(default)]
    pub install_seconds: Option<f64>,
}

fn default_ecs_status() -> String {
    "ACTIVE".to_string()
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClouddcInventory {
    #[serde(default)]
    pub images: Vec<HuaweiImage>,
    #[serde(default)]
    pub instances: Vec<ClouddcInstanceSpec>,
    /// Most ids one batch reinstall accepts (default 50, the API page's limit).
    #[serde(default)]
    pub reinstall_batch_limit: Option<usize>,
    /// Caps the page size of the list call (to exercise pagination).
    #[serde(default)]
    pub max_page_size: Option<usize>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClouddcInstanceSpec {
    pub id: String,
    pub name: String,
    pub image: String,
    #[serde(default = "default_clouddc_state")]
    pub state: String,
    #[serde(default)]
    pub fail_next_install: bool,
    #[serde(default)]
    pub install_seconds: Option<f64>,
}

fn default_clouddc_state() -> String {
    "running".to_string()
}

/// Rules serde cannot express.
pub fn check_inventory(inventory: &HuaweiInventory) -> Result<(), String> {
    let mut seen = std::collections::BTreeSet::new();
    for server in &inventory.ecs.servers {
        if !seen.insert(server.id.as_str()) {
            return Err(format!(
                "huaweicloud ecs server `{}` is listed twice",
                server.id
            ));
        }
        if !ECS_STATUSES.contains(&server.status.as_str()) {
            return Err(format!(
                "huaweicloud ecs server `{}`: status `{}` is not one of {}",
                server.id,
                server.status,
                ECS_STATUSES.join(", ")
            ));
        }
        check_seconds(&server.id, server.install_seconds)?;
    }
    for instance in &inventory.clouddc.instances {
        if !seen.insert(instance.id.as_str()) {
            return Err(format!("huaweicloud id `{}` is listed twice", instance.id));
        }
        if !CLOUDDC_STATES.contains(&instance.state.as_str()) {
            return Err(format!(
                "huaweicloud clouddc instance `{}`: state `{}` is not one of {}",
                instance.id,
                instance.state,
                CLOUDDC_STATES.join(", ")
            ));
        }
        check_seconds(&instance.id, instance.install_seconds)?;
    }
    if inventory.clouddc.reinstall_batch_limit == Some(0) {
        return Err("huaweicloud clouddc reinstall_batch_limit must be at least 1".to_string());
    }
    if inventory.clouddc.max_page_size == Some(0) {
        return Err("huaweicloud clouddc max_page_size must be at least 1".to_string());
    }
    Ok(())
}

fn check_seconds(id: &str, seconds: Option<f64>) -> Result<(), String> {
    match seconds {
        Some(seconds) if !(seconds.is_finite() && seconds >= 0.0) => Err(format!(
            "huaweicloud `{id}` install_seconds must be a number of seconds ≥ 0, not {seconds}"
        )),
        _ => Ok(()),
    }
}

// ---------------------------------------------------------------------------------------------
// World

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HuaweiWorld {
    pub ecs_servers: Vec<EcsServer>,
    pub jobs: Vec<EcsJob>,
    /// Every accepted changeos/reinstallos call, oldest first.
    pub ecs_calls: Vec<EcsCallRecord>,
    pub clouddc_instances: Vec<ClouddcInstance>,
    /// Every accepted batch reinstall call, oldest first.
    pub clouddc_calls: Vec<ClouddcCallRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EcsServer {
    pub id: String,
    pub name: String,
    pub image_id: String,
    pub status: String,
    pub locked: bool,
    pub task_state: Option<String>,
    pub hostname: Option<String>,
    pub key_name: Option<String>,
    pub fault: Option<String>,
    pub fail_next_install: bool,
    pub install_seconds: Option<f64>,
    pub reinstall_count: u64,
    pub install: Option<EcsInstall>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EcsInstall {
    pub job_id: String,
    pub image_id: String,
    pub key_name: Option<String>,
    /// The status to return to (ACTIVE stays ACTIVE, SHUTOFF stays SHUTOFF).
    pub status_after: String,
    pub done_at: Timestamp,
    pub ends_in_failure: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EcsJob {
    pub job_id: String,
    pub job_type: String,
    pub server_id: String,
    pub begin: Timestamp,
    pub done_at: Timestamp,
    pub ends_in_failure: bool,
}

impl EcsJob {
    /// `INIT` for the first fifth, then `RUNNING`, then `SUCCESS`/`FAIL`.
    pub fn status(&self, now: Timestamp) -> &'static str {
        if now >= self.done_at {
            return if self.ends_in_failure {
                "FAIL"
            } else {
                "SUCCESS"
            };
        }
        let total = self.done_at.duration_since(self.begin);
        let elapsed = now.duration_since(self.begin);
        if elapsed.as_secs_f64() < total.as_secs_f64() / 5.0 {
            "INIT"
        } else {
            "RUNNING"
        }
    }
}

/// One accepted ECS call. Passwords are never kept, only whether one was given.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EcsCallRecord {
    pub server_id: String,
    /// `changeos` or `reinstallos`.
    pub call: String,
    /// `v1` or `v2`.
    pub version: String,
    pub image_id: String,
    pub mode: Option<String>,
    pub password_given: bool,
    pub key_name: Option<String>,
    pub user_id: Option<String>,
    pub user_data_given: bool,
    pub job_id: String,
    pub request_id: String,
    pub at: Timestamp,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClouddcInstance {
    pub id: String,
    pub name: String,
    pub image_id: String,
    pub state: String,
    pub operation_state: Option<String>,
    pub error: Option<(String, String)>,
    pub fail_next_install: bool,
    pub install_seconds: Option<f64>,
    pub reinstall_count: u64,
    pub install: Option<ClouddcInstall>,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClouddcInstall {
    pub image_id: String,
    pub done_at: Timestamp,
    pub ends_in_failure: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClouddcCallRecord {
    pub instance_ids: Vec<String>,
    pub image_id: Option<String>,
    pub password_given: bool,
    pub request_id: String,
    pub at: Timestamp,
}

impl HuaweiWorld {
    pub fn from_inventory(inventory: &HuaweiInventory, now: Timestamp) -> HuaweiWorld {
        HuaweiWorld {
            ecs_servers: inventory
                .ecs
                .servers
                .iter()
                .map(|spec| EcsServer {
                    id: spec.id.clone(),
                    name: spec.name.clone(),
                    image_id: spec.image.clone(),
                    status: spec.status.clone(),
                    locked: spec.locked,
                    task_state: spec.task_state.clone(),
                    hostname: spec.hostname.clone(),
                    key_name: None,
                    fault: None,
                    fail_next_install: spec.fail_next_install,
                    install_seconds: spec.install_seconds,
                    reinstall_count: 0,
                    install: None,
                })
                .collect(),
            clouddc_instances: inventory
                .clouddc
                .instances
                .iter()
                .map(|spec| ClouddcInstance {
                    id: spec.id.clone(),
                    name: spec.name.clone(),
                    image_id: spec.image.clone(),
                    state: spec.state.clone(),
                    operation_state: None,
                    error: None,
                    fail_next_install: spec.fail_next_install,
                    install_seconds: spec.install_seconds,
                    reinstall_count: 0,
                    install: None,
                    created_at: now,
                })
                .collect(),
            ..HuaweiWorld::default()
        }
    }

    /// Finishes every install whose time has come. Returns whether anything changed.
    pub fn settle(&mut self, now: Timestamp) -> bool {
        let mut changed = false;
        for server in &mut self.ecs_servers {
            let Some(install) = server.install.take_if(|install| install.done_at <= now) else {
                continue;
            };
            changed = true;
            server.task_state = None;
            if install.ends_in_failure {
                server.status = "ERROR".to_string();
                server.fault = Some(format!(
                    "the OS change of job {} failed (injected by the emulator)",
                    install.job_id
                ));
            } else {
                server.image_id = install.image_id;
                server.key_name = install.key_name;
                server.status = install.status_after;
                server.fault = None;
            }
        }
        for instance in &mut self.clouddc_instances {
            let Some(install) = instance.install.take_if(|install| install.done_at <= now) else {
                continue;
            };
            changed = true;
            if install.ends_in_failure {
                instance.state = "error".to_string();
                instance.operation_state = Some("reinstall-failed".to_string());
                instance.error = Some((
                    "CLOUDDC.EMULATOR.INSTALL_FAILED".to_string(),
                    "the reinstall failed (injected by the emulator)".to_string(),
                ));
            } else {
                instance.image_id = install.image_id;
                instance.state = "running".to_string();
                instance.operation_state = Some("reinstall-succeed".to_string());
                instance.error = None;
            }
        }
        changed
    }

    pub fn ecs_server_mut(&mut self, id: &str) -> Option<&mut EcsServer> {
        self.ecs_servers.iter_mut().find(|server| server.id == id)
    }

    pub fn clouddc_instance_mut(&mut self, id: &str) -> Option<&mut ClouddcInstance> {
        self.clouddc_instances
            .iter_mut()
            .find(|instance| instance.id == id)
    }

    /// Makes the next install of these ECS servers or CloudDC instances fail (the ids were
    /// checked by the caller).
    pub fn fail_next_install(&mut self, ids: &[String]) {
        for id in ids {
            if let Some(server) = self.ecs_server_mut(id) {
                server.fail_next_install = true;
            }
            if let Some(instance) = self.clouddc_instance_mut(id) {
                instance.fail_next_install = true;
            }
        }
    }

    /// What `GET /_emulator/state` shows under `huaweicloud`.
    pub fn state_view(&self) -> serde_json::Value {
        let ecs: Vec<serde_json::Value> = self
            .ecs_servers
            .iter()
            .map(|server| {
                serde_json::json!({
                    "id": server.id,
                    "name": server.name,
                    "status": server.status,
                    "image": server.image_id,
                    "locked": server.locked,
                    "task_state": server.task_state,
                    "reinstall_count": server.reinstall_count,
                    "fail_next_install": server.fail_next_install,
                    "job_id": server.install.as_ref().map(|install| install.job_id.clone()),
                })
            })
            .collect();
        let clouddc: Vec<serde_json::Value> = self
            .clouddc_instances
            .iter()
            .map(|instance| {
                serde_json::json!({
                    "id": instance.id,
                    "name": instance.name,
                    "status": instance.state,
                    "operation_state": instance.operation_state,
                    "image": instance.image_id,
                    "reinstall_count": instance.reinstall_count,
                    "fail_next_install": instance.fail_next_install,
                })
            })
            .collect();
        serde_json::json!({
            "ecs": {"servers": ecs, "calls": self.ecs_calls, "jobs": self.jobs},
            "clouddc": {"servers": clouddc, "calls": self.clouddc_calls},
        })
    }
}

/// How long an install takes: the caller's override, then the item's own, then the default.
pub fn install_duration(
    override_seconds: Option<f64>,
    own_seconds: Option<f64>,
    default_seconds: f64,
) -> SignedDuration {
    let seconds = override_seconds.or(own_seconds).unwrap_or(default_seconds);
    SignedDuration::try_from_secs_f64(seconds).unwrap_or(SignedDuration::ZERO)
}

/// The image of that id, if the inventory offers it.
pub fn find_image<'a>(images: &'a [HuaweiImage], id: &str) -> Option<&'a HuaweiImage> {
    images.iter().find(|image| image.id == id)
}
