//! The EDIS emulator's model: the `edis:` inventory section, and the persisted world (VPS, tickets,
//! reinstall log) with how time moves it (installs settling).

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EdisInventory {
    /// Client-area logins accepted by `get/auth` (fake ones: this is an emulator).
    #[serde(default)]
    pub accounts: Vec<EdisAccount>,
    /// Ticket lifetime in seconds (default 3600); short values let tests cover renewal.
    #[serde(default)]
    pub ticket_ttl_seconds: Option<f64>,
    /// How `valid_until` is written: Unix seconds (current docs) or an ISO time (older pages).
    #[serde(default)]
    pub valid_until_format: ValidUntilFormat,
    /// Autoinstall image names `set/reinstall` accepts (the real list's path is unconfirmed).
    #[serde(default)]
    pub images: Vec<String>,
    /// Served by `get/turnkey_images`, and accepted by `set/reinstall` too.
    #[serde(default)]
    pub turnkey_images: Vec<String>,
    #[serde(default)]
    pub vps: Vec<EdisVpsSpec>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EdisAccount {
    pub email: String,
    pub password: String,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ValidUntilFormat {
    #[default]
    Epoch,
    Iso,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EdisVpsSpec {
    pub kvm_id: String,
    /// The portal label.
    #[serde(default)]
    pub description: Option<String>,
    /// The owning account's e-mail; default: the first account.
    #[serde(default)]
    pub account: Option<String>,
    #[serde(default = "default_power")]
    pub power: Power,
    #[serde(default)]
    pub suspended: bool,
    /// What is installed at the start. The real API cannot tell; the emulator shows it only
    /// through `/_emulator/state`.
    #[serde(default)]
    pub image: Option<String>,
    /// Install duration for this VPS, in seconds.
    #[serde(default)]
    pub install_seconds: Option<f64>,
    /// The host name its `api_host` carries: `127.0.0.1` (default) or `localhost`.
    #[serde(default)]
    pub api_host: Option<String>,
}

fn default_power() -> Power {
    Power::On
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Power {
    On,
    Off,
}

impl Power {
    /// The `data` text of `get/power` ("powered off" is the brief's guess for the other state).
    pub(super) fn text(self) -> &'static str {
        match self {
            Power::On => "server powered on",
            Power::Off => "server powered off",
        }
    }
}

/// Rules serde cannot express; `Err` is a message for the inventory's author.
pub fn check_inventory(inventory: &EdisInventory) -> Result<(), String> {
    if let Some(ttl) = inventory.ticket_ttl_seconds
        && !(ttl.is_finite() && ttl > 0.0)
    {
        return Err(format!("edis ticket_ttl_seconds must be > 0, not {ttl}"));
    }
    let mut emails = std::collections::BTreeSet::new();
    for account in &inventory.accounts {
        if !emails.insert(account.email.to_ascii_lowercase()) {
            return Err(format!("edis account `{}` is listed twice", account.email));
        }
    }
    let mut ids = std::collections::BTreeSet::new();
    for vps in &inventory.vps {
        if !ids.insert(vps.kvm_id.as_str()) {
            return Err(format!("edis kvm_id `{}` is listed twice", vps.kvm_id));
        }
        if let Some(account) = &vps.account
            && !emails.contains(&account.to_ascii_lowercase())
        {
            return Err(format!(
                "edis VPS `{}` names account `{account}`, which is not in `accounts`",
                vps.kvm_id
            ));
        }
        if vps.account.is_none() && inventory.accounts.is_empty() {
            return Err(format!(
                "edis VPS `{}` has no account to belong to",
                vps.kvm_id
            ));
        }
        if let Some(host) = &vps.api_host
            && host != "127.0.0.1"
            && host != "localhost"
        {
            return Err(format!(
                "edis VPS `{}`: api_host must be `127.0.0.1` or `localhost` (the emulator \
                 listens on loopback), not `{host}`",
                vps.kvm_id
            ));
        }
        if let Some(seconds) = vps.install_seconds
            && !(seconds.is_finite() && seconds >= 0.0)
        {
            return Err(format!(
                "edis VPS `{}` install_seconds must be ≥ 0, not {seconds}",
                vps.kvm_id
            ));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// World

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EdisWorld {
    pub vps: Vec<EdisVps>,
    /// Tickets issued and not yet expired (pruned at each login).
    pub tickets: Vec<IssuedTicket>,
    pub auth_count: u64,
    /// Management calls refused with 401 (bad, expired or revoked ticket, wrong host).
    pub unauthorized_count: u64,
    pub reinstall_log: Vec<EdisReinstallRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EdisVps {
    pub kvm_id: String,
    pub description: Option<String>,
    pub account: String,
    pub power: Power,
    pub suspended: bool,
    pub image: Option<String>,
    pub install_seconds: Option<f64>,
    pub api_host_name: String,
    pub reinstall_count: u64,
    pub install: Option<EdisInstall>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EdisInstall {
    pub image: String,
    pub started_at: Timestamp,
    pub done_at: Timestamp,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct IssuedTicket {
    pub kvm_id: String,
    pub signature: String,
    /// Exactly as sent; the client must echo it.
    pub valid_until: String,
    pub expires_at: Timestamp,
    /// `host:port` the management calls of this ticket must be addressed to.
    pub api_host: String,
}

/// One accepted reinstall. The password is kept only as a SHA-256 (fake passwords, but tests
/// must be able to see that `+ & =` arrived intact).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EdisReinstallRecord {
    pub kvm_id: String,
    pub image: String,
    pub password_sha256: String,
    pub cloudinit_user_data: Option<String>,
    pub at: Timestamp,
}

impl EdisWorld {
    pub fn from_inventory(inventory: &EdisInventory) -> EdisWorld {
        let first_account = inventory
            .accounts
            .first()
            .map(|account| account.email.clone())
            .unwrap_or_default();
        EdisWorld {
            vps: inventory
                .vps
                .iter()
                .map(|spec| EdisVps {
                    kvm_id: spec.kvm_id.clone(),
                    description: spec.description.clone(),
                    account: spec
                        .account
                        .clone()
                        .unwrap_or_else(|| first_account.clone()),
                    power: spec.power,
                    suspended: spec.suspended,
                    image: spec.image.clone(),
                    install_seconds: spec.install_seconds,
                    api_host_name: spec.api_host.clone().unwrap_or_else(|| "127.0.0.1".into()),
                    reinstall_count: 0,
                    install: None,
                })
                .collect(),
            ..EdisWorld::default()
        }
    }

    /// Ends the installs whose time has come: the new image is in place, the power is on.
    pub fn settle(&mut self, now: Timestamp) -> bool {
        let mut changed = false;
        for vps in &mut self.vps {
            if let Some(install) = vps.install.take_if(|install| install.done_at <= now) {
                vps.image = Some(install.image);
                vps.power = Power::On;
                changed = true;
            }
        }
        changed
    }

    /// The `edis` part of `GET /_emulator/state`.
    pub fn admin_view(&self) -> Value {
        let servers: Vec<Value> = self
            .vps
            .iter()
            .map(|vps| {
                let last = self
                    .reinstall_log
                    .iter()
                    .rev()
                    .find(|record| record.kvm_id == vps.kvm_id);
                json!({
                    "id": vps.kvm_id,
                    "description": vps.description,
                    "status": match (&vps.install, vps.power) {
                        (Some(_), _) => "installing",
                        (None, Power::On) => "running",
                        (None, Power::Off) => "stopped",
                    },
                    "power": vps.power,
                    "suspended": vps.suspended,
                    "image": vps.image,
                    "reinstall_count": vps.reinstall_count,
                    "last_password_sha256": last.map(|record| record.password_sha256.clone()),
                    "last_user_data": last.and_then(|record| record.cloudinit_user_data.clone()),
                })
            })
            .collect();
        json!({
            "servers": servers,
            "auth_count": self.auth_count,
            "unauthorized_count": self.unauthorized_count,
            "tickets_live": self.tickets.len(),
            "reinstall_log": self.reinstall_log,
        })
    }
}
