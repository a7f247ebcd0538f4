//! The JD Cloud emulator's model: the `jdcloud:` inventory section, the persisted world (servers,
//! client tokens, reinstall log) and how time moves it (stops and installs settling).

use std::collections::{BTreeMap, BTreeSet};

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::emulator::inventory::Inventory;

/// The `jdcloud:` section of the inventory.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct JdcloudInventory {
    /// Access keys accepted for signing (fake ones: this is an emulator).
    #[serde(default)]
    pub credentials: Vec<JdcloudCredential>,
    /// How long `stopping` lasts, in seconds (default 1).
    #[serde(default)]
    pub stop_seconds: Option<f64>,
    /// What `describeOS` lists.
    #[serde(default)]
    pub os: Vec<JdcloudOs>,
    #[serde(default)]
    pub servers: Vec<JdcloudServerSpec>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct JdcloudCredential {
    pub access_key: String,
    pub secret_key: String,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct JdcloudOs {
    pub os_type_id: String,
    pub os_name: String,
    #[serde(default)]
    pub os_type: Option<String>,
    #[serde(default)]
    pub os_version: Option<String>,
    /// The device type it is offered for; every device type when absent.
    #[serde(default)]
    pub device_type: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct JdcloudServerSpec {
    pub id: String,
    pub name: String,
    pub region: String,
    pub az: String,
    #[serde(default = "default_device_type")]
    pub device_type: String,
    #[serde(default = "default_status")]
    pub status: JdStatus,
    pub os_type_id: String,
    /// As describe answers write it (`Standard`).
    #[serde(default = "default_image_type")]
    pub image_type: String,
    pub sys_raid_type_id: String,
    #[serde(default)]
    pub data_raid_type_id: Option<String>,
    #[serde(default)]
    pub fail_next_install: bool,
    /// Stop and reinstall calls are refused as if operation protection (MFA) were on.
    #[serde(default)]
    pub operation_protection: bool,
    #[serde(default)]
    pub install_seconds: Option<f64>,
    /// The addresses describe answers give (`publicIp`, `privateIp`).
    #[serde(default)]
    pub public_ip: Option<String>,
    #[serde(default)]
    pub private_ip: Option<String>,
}

fn default_device_type() -> String {
    "cps.c.normal".to_string()
}

fn default_status() -> JdStatus {
    JdStatus::Running
}

fn default_image_type() -> String {
    "Standard".to_string()
}

/// The statuses the emulator uses, spelt as on the wire.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum JdStatus {
    Running,
    Stopping,
    Stopped,
    Starting,
    Installing,
    Error,
}

impl JdStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Stopping => "stopping",
            Self::Stopped => "stopped",
            Self::Starting => "starting",
            Self::Installing => "installing",
            Self::Error => "error",
        }
    }
}

/// Rules serde cannot express.
pub fn check_inventory(inventory: &JdcloudInventory) -> Result<(), String> {
    let mut ids = BTreeSet::new();
    for server in &inventory.servers {
        if !ids.insert(server.id.as_str()) {
            return Err(format!("jdcloud server id `{}` is listed twice", server.id));
        }
        if let Some(seconds) = server.install_seconds
            && !(seconds.is_finite() && seconds >= 0.0)
        {
            return Err(format!(
                "jdcloud server {} install_seconds must be ≥ 0, not {seconds}",
                server.id
            ));
        }
    }
    if let Some(seconds) = inventory.stop_seconds
        && !(seconds.is_finite() && seconds >= 0.0)
    {
        return Err(format!("jdcloud stop_seconds must be ≥ 0, not {seconds}"));
    }
    let mut keys = BTreeSet::new();
    for credential in &inventory.credentials {
        if !keys.insert(credential.access_key.as_str()) {
            return Err(format!(
                "jdcloud access key `{}` is listed twice",
                credential.access_key
            ));
        }
    }
    Ok(())
}

/// The JD part of the persisted world.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct JdcloudWorld {
    pub servers: Vec<JdcloudServer>,
    /// Accepted mutating calls by `clientToken`.
    pub tokens: BTreeMap<String, TokenRecord>,
    /// Calls answered from `tokens` without acting.
    pub token_replays: u64,
    pub reinstall_log: Vec<JdReinstallRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct JdcloudServer {
    pub id: String,
    pub name: String,
    pub region: String,
    pub az: String,
    pub device_type: String,
    pub status: JdStatus,
    pub os_type_id: String,
    pub image_type: String,
    pub sys_raid_type_id: String,
    pub data_raid_type_id: Option<String>,
    pub hostname: Option<String>,
    pub keypair_id: Option<String>,
    pub fail_next_install: bool,
    pub operation_protection: bool,
    pub install_seconds: Option<f64>,
    #[serde(default)]
    pub public_ip: Option<String>,
    #[serde(default)]
    pub private_ip: Option<String>,
    pub stop_count: u64,
    pub reinstall_count: u64,
    /// Reinstalls sent with `keepData: no`.
    pub data_wipe_count: u64,
    pub transition: Option<Transition>,
}

/// A state change under way, settled when its time has come.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Transition {
    pub done_at: Timestamp,
    /// `None` for a stop.
    pub install: Option<InstallTarget>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct InstallTarget {
    pub os_type_id: String,
    pub image_type: String,
    pub sys_raid_type_id: String,
    pub data_raid_type_id: Option<String>,
    pub hostname: Option<String>,
    pub keypair_id: Option<String>,
    pub ends_in_failure: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TokenRecord {
    pub action: String,
    pub instance_id: String,
    pub request_id: String,
    pub at: Timestamp,
}

/// One accepted reinstall. The password is never kept, nor the user data (only its digest).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct JdReinstallRecord {
    pub server_id: String,
    pub os_type_id: String,
    pub az: String,
    pub image_type: String,
    pub sys_raid_type_id: String,
    pub data_raid_type_id: Option<String>,
    pub keep_data: String,
    pub hostname: Option<String>,
    pub keypair_id: Option<String>,
    pub password_given: bool,
    /// SHA-256 of the decoded user data.
    pub user_data_sha256: Option<String>,
    pub client_token: Option<String>,
    pub request_id: String,
    pub signature_version: String,
    pub at: Timestamp,
}

impl JdcloudWorld {
    pub fn from_inventory(inventory: &JdcloudInventory) -> JdcloudWorld {
        JdcloudWorld {
            servers: inventory
                .servers
                .iter()
                .map(|spec| JdcloudServer {
                    id: spec.id.clone(),
                    name: spec.name.clone(),
                    region: spec.region.clone(),
                    az: spec.az.clone(),
                    device_type: spec.device_type.clone(),
                    status: spec.status,
                    os_type_id: spec.os_type_id.clone(),
                    image_type: spec.image_type.clone(),
                    sys_raid_type_id: spec.sys_raid_type_id.clone(),
                    data_raid_type_id: spec.data_raid_type_id.clone(),
                    hostname: None,
                    keypair_id: None,
                    fail_next_install: spec.fail_next_install,
                    operation_protection: spec.operation_protection,
                    install_seconds: spec.install_seconds,
                    public_ip: spec.public_ip.clone(),
                    private_ip: spec.private_ip.clone(),
                    stop_count: 0,
                    reinstall_count: 0,
                    data_wipe_count: 0,
                    transition: None,
                })
                .collect(),
            ..JdcloudWorld::default()
        }
    }

    /// Finishes every stop and install whose time has come. Returns whether anything changed.
    pub fn settle(&mut self, now: Timestamp) -> bool {
        let mut changed = false;
        for server in &mut self.servers {
            let Some(transition) = server
                .transition
                .take_if(|transition| transition.done_at <= now)
            else {
                continue;
            };
            changed = true;
            match transition.install {
                None => server.status = JdStatus::Stopped,
                Some(target) => {
                    // The record shows what was asked for even when the install failed: a
                    // client that reads only the OS id, not the status, must fail its tests.
                    server.os_type_id = target.os_type_id;
                    server.image_type = target.image_type;
                    server.sys_raid_type_id = target.sys_raid_type_id;
                    server.data_raid_type_id = target.data_raid_type_id;
                    server.hostname = target.hostname;
                    server.keypair_id = target.keypair_id;
                    server.status = if target.ends_in_failure {
                        JdStatus::Error
                    } else {
                        JdStatus::Running
                    };
                }
            }
        }
        changed
    }

    pub fn server(&self, id: &str) -> Option<&JdcloudServer> {
        self.servers.iter().find(|server| server.id == id)
    }

    pub(super) fn server_mut(&mut self, id: &str) -> Option<&mut JdcloudServer> {
        self.servers.iter_mut().find(|server| server.id == id)
    }

    /// The admin view (`GET /_emulator/state`, key `jdcloud`).
    pub fn admin_state(&self) -> Value {
        let servers: Vec<Value> = self
            .servers
            .iter()
            .map(|server| {
                json!({
                    "id": server.id,
                    "name": server.name,
                    "status": server.status.as_str(),
                    "image": server.os_type_id,
                    "os_type_id": server.os_type_id,
                    "az": server.az,
                    "sys_raid_type_id": server.sys_raid_type_id,
                    "data_raid_type_id": server.data_raid_type_id,
                    "hostname": server.hostname,
                    "keypair_id": server.keypair_id,
                    "stop_count": server.stop_count,
                    "reinstall_count": server.reinstall_count,
                    "data_wipe_count": server.data_wipe_count,
                    "fail_next_install": server.fail_next_install,
                    "operation_protection": server.operation_protection,
                })
            })
            .collect();
        json!({
            "servers": servers,
            "reinstall_log": self.reinstall_log,
            "token_replays": self.token_replays,
        })
    }

    /// Sets the `fail_next_install` and `operation_protection` flags of these servers (the ids
    /// were checked by the caller).
    pub fn set_flags(&mut self, fail_next_install: &[String], operation_protection: &[String]) {
        for id in fail_next_install {
            if let Some(server) = self.server_mut(id) {
                server.fail_next_install = true;
            }
        }
        for id in operation_protection {
            if let Some(server) = self.server_mut(id) {
                server.operation_protection = true;
            }
        }
    }

    /// The servers each flag is set on (part of the answer to `POST /_emulator/faults`).
    pub fn flags_view(&self) -> Map<String, Value> {
        let armed = |pick: fn(&JdcloudServer) -> bool| -> Vec<&str> {
            self.servers
                .iter()
                .filter(|server| pick(server))
                .map(|server| server.id.as_str())
                .collect()
        };
        let mut view = Map::new();
        view.insert(
            "fail_next_install".into(),
            json!(armed(|server| server.fail_next_install)),
        );
        view.insert(
            "operation_protection".into(),
            json!(armed(|server| server.operation_protection)),
        );
        view
    }
}

impl JdcloudServer {
    pub(super) fn install_duration(
        &self,
        inventory: &Inventory,
        override_seconds: Option<f64>,
    ) -> SignedDuration {
        let seconds = override_seconds
            .or(self.install_seconds)
            .unwrap_or_else(|| inventory.default_install_seconds(None));
        SignedDuration::try_from_secs_f64(seconds).unwrap_or(SignedDuration::ZERO)
    }
}
