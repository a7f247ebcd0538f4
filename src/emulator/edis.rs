//! EDIS KVM management API (`/kvm/v2/...`), built from the brief (`providers/edis.md`) and
//! nothing else: form-encoded POSTs, the auth call with per-VPS tickets keyed by `kvm_id`,
//! `get/power`, `get/turnkey_images`, `set/reinstall`, and the `{"error": "...", "code": N}`
//! error shape.
//!
//! One listener serves both the auth host and every VPS's management host: the auth answer
//! gives each VPS an `api_host` of `127.0.0.1:PORT` or `localhost:PORT` (per the inventory), and
//! management calls must arrive with that `Host`, so a client that ignores `api_host` fails.
//!
//! The emulator is stricter than the real API is known to be, to catch client bugs: it refuses
//! bodies that are not `application/x-www-form-urlencoded`, malformed percent escapes,
//! repeated and unknown fields (a password sent with a raw `&` shows up as an unknown field).
//! Messages the brief does not give are the emulator's own; the shapes and codes are the
//! brief's. Ticket lifetime, `valid_until`'s form (Unix seconds or ISO time) and install
//! duration are configurable, since the real values are unconfirmed.

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::faults::{self, Aftermath, Call, CallKind, Outcome, Refusal};
use super::server::{ConnectionHandle, Shared};
use crate::digest::sha256_hex;
use crate::manifest::ProviderType;

/// Every path of this API starts with this.
pub const PREFIX: &str = "/kvm/v2";
/// The auth call's path, on the auth host.
pub const AUTH_PATH: &str = "/kvm/v2/get/auth";
/// Tickets live this long unless the inventory says otherwise (the real lifetime is unknown).
pub const DEFAULT_TICKET_TTL_SECONDS: f64 = 3600.0;
const SIGNATURE_LENGTH: usize = 50;
const INVALID_PARAMETERS: &str = "Invalid parameters provided.";
const DENIED: &str = "Access to this resource is denied.";
const TICKET_REFUSED: &str = "The signature is invalid or has expired.";

// ---------------------------------------------------------------------------------------------
// Inventory

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
    fn text(self) -> &'static str {
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

// ---------------------------------------------------------------------------------------------
// HTTP

/// A refusal in the brief's shape.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    message: String,
    /// `Retry-After` of an injected 429, in seconds.
    retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            retry_after: None,
        }
    }

    fn invalid(detail: &str) -> ApiError {
        tracing::debug!(detail, "emulator: edis: invalid parameters");
        ApiError::new(StatusCode::BAD_REQUEST, INVALID_PARAMETERS)
    }

    fn into_response(self) -> Response {
        let body = json!({"error": self.message, "code": self.status.as_u16()});
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// Handles `POST /kvm/v2/{kind}/{action}`.
pub async fn handle(
    shared: &Shared,
    connection: &ConnectionHandle,
    kind: &str,
    action: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response {
    match handle_call(shared, kind, action, headers, body).await {
        Ok((value, aftermath)) => {
            aftermath.apply(connection).await;
            (StatusCode::OK, axum::Json(value)).into_response()
        }
        Err(error) => error.into_response(),
    }
}

async fn handle_call(
    shared: &Shared,
    kind: &str,
    action: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<(Value, Aftermath), ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    if !content_type
        .to_ascii_lowercase()
        .starts_with("application/x-www-form-urlencoded")
    {
        return Err(ApiError::invalid("the body is not form-encoded"));
    }
    let host = headers
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .ok_or_else(|| ApiError::invalid("no Host header"))?
        .to_string();
    let form = decode_form(body).ok_or_else(|| ApiError::invalid("malformed form body"))?;
    let call = classify(kind, action, &form);
    faults::wait_latency(shared, &call).await;
    let now = Timestamp::now();
    let inventory = &shared.inventory.edis;

    let mut store = shared.world.lock().await;
    if store.world.settle(now) {
        save(&store)?;
    }
    if let Some(refusal) = faults::refusal(&mut store, shared, &call).map_err(internal)? {
        return Err(injected(refusal));
    }

    // Only EDIS's part of the world can change here: only it is kept for a refusal to restore
    // (a copy of the whole world per call made a big world's reads slow).
    let before = store.world.edis.clone();
    let whole = &mut store.world;
    let world = &mut whole.edis;
    let outcome = match (kind, action) {
        ("get", "auth") => auth(inventory, world, &form, &host, now),
        ("get", "power") => ticket_vps(world, &form, &[], &host, now).map(|vps| {
            let power = faults::as_shown(&whole.faults, PROVIDER, &vps.kvm_id, &*vps, now).power;
            json!({"status": "success", "data": power.text(), "traffic_suspended": false})
        }),
        ("get", "turnkey_images") => ticket_vps(world, &form, &[], &host, now)
            .map(|_| json!({"status": "success", "data": inventory.turnkey_images})),
        ("set", "reinstall") => reinstall(shared, world, &form, &host, now),
        _ => Err(ApiError::new(StatusCode::NOT_FOUND, "Not found.")),
    };
    // A refused call changes nothing but the counters.
    let counters = (world.auth_count, world.unauthorized_count);
    let value = match outcome {
        Ok(value) => value,
        Err(error) => {
            store.world.edis = before;
            (
                store.world.edis.auth_count,
                store.world.edis.unauthorized_count,
            ) = counters;
            save(&store)?;
            return Err(error);
        }
    };
    // A read that got through changed nothing: the world file is not rewritten for it.
    if call.kind != CallKind::Read {
        save(&store)?;
    }
    let acted = call.kind == CallKind::Reinstall;
    let outcome = if acted {
        Outcome::Acted
    } else {
        Outcome::Served
    };
    let shown_before = |id: &str| {
        let vps = before.vps.iter().find(|vps| vps.kvm_id == id);
        vps.and_then(faults::record)
    };
    let aftermath =
        faults::aftermath(&mut store, &call, outcome, &shown_before).map_err(internal)?;
    Ok((value, aftermath))
}

const PROVIDER: ProviderType = ProviderType::EdisKvm;

/// What the fault menu sees of a call: its kind and the VPS it names (`kvm_id`).
fn classify(kind: &str, action: &str, form: &[(String, String)]) -> Call {
    let ids = field(form, "kvm_id")
        .filter(|id| !id.is_empty())
        .map(|id| vec![id.to_string()])
        .unwrap_or_default();
    let kind = match (kind, action) {
        ("get", "auth") => CallKind::Auth,
        ("get", "power") => CallKind::Read,
        ("set", "reinstall") => CallKind::Reinstall,
        _ => CallKind::Other,
    };
    Call::new(PROVIDER, kind, ids)
}

/// An injected fault in the brief's shape (`{"error": "...", "code": N}`).
fn injected(refusal: Refusal) -> ApiError {
    match refusal {
        Refusal::ServerError => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal error (injected by the emulator).",
        ),
        Refusal::Throttled {
            retry_after_seconds,
        } => ApiError {
            retry_after: Some(retry_after_seconds),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many requests (injected by the emulator).",
            )
        },
    }
}

fn internal(error: impl std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, error.to_string())
}

fn save(store: &super::world::WorldStore) -> Result<(), ApiError> {
    store
        .save()
        .map_err(|error| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, error.to_string()))
}

/// `get/auth`: checks `email`/`pw` and issues a ticket per VPS of the account (or only the
/// one named by `kvm_id`).
fn auth(
    inventory: &EdisInventory,
    world: &mut EdisWorld,
    form: &[(String, String)],
    host: &str,
    now: Timestamp,
) -> Result<Value, ApiError> {
    only_fields(form, &["email", "pw"], &["kvm_id"])?;
    let email = field(form, "email").unwrap_or_default();
    let password = field(form, "pw").unwrap_or_default();
    world.auth_count += 1;
    let account = inventory
        .accounts
        .iter()
        // Constant-time comparison is not needed for an emulator with fake accounts.
        .find(|account| account.email.eq_ignore_ascii_case(email) && account.password == password)
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "Invalid login credentials."))?;
    let only = field(form, "kvm_id");
    let port = host.rsplit_once(':').map(|(_, port)| port).unwrap_or("80");
    let ttl = inventory
        .ticket_ttl_seconds
        .unwrap_or(DEFAULT_TICKET_TTL_SECONDS);
    let expires_at = now
        .checked_add(SignedDuration::try_from_secs_f64(ttl).unwrap_or(SignedDuration::ZERO))
        .unwrap_or(Timestamp::MAX);
    // Whole seconds, as the docs' examples; rounded down so the ticket never outlives the TTL.
    let expires_at = Timestamp::from_second(expires_at.as_second()).unwrap_or(expires_at);
    let valid_until_value = match inventory.valid_until_format {
        ValidUntilFormat::Epoch => json!(expires_at.as_second()),
        ValidUntilFormat::Iso => json!(expires_at.to_string()),
    };
    let valid_until_text = match &valid_until_value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    world.tickets.retain(|ticket| ticket.expires_at > now);
    let mut data = serde_json::Map::new();
    for vps in world
        .vps
        .iter()
        .filter(|vps| vps.account.eq_ignore_ascii_case(&account.email))
        .filter(|vps| only.is_none_or(|id| id == vps.kvm_id))
    {
        let signature = random_signature();
        let api_host = format!("{}:{port}", vps.api_host_name);
        world.tickets.push(IssuedTicket {
            kvm_id: vps.kvm_id.clone(),
            signature: signature.clone(),
            valid_until: valid_until_text.clone(),
            expires_at,
            api_host: api_host.clone(),
        });
        let number = vps.kvm_id.split('_').nth(1).unwrap_or("0");
        data.insert(
            vps.kvm_id.clone(),
            json!({
                "api_host": api_host,
                "api_rdns": "dns-api.edis.at",
                "kvm_id": vps.kvm_id,
                "valid_until": valid_until_value,
                "signature": signature,
                "suspended": if vps.suspended { "y" } else { "n" },
                "description": vps.description,
                "lps": number.chars().take(2).collect::<String>(),
                "lps_ispremium": false,
            }),
        );
    }
    Ok(json!({"status": "success", "data": data}))
}

/// The VPS a management call's ticket is valid for: `signature`, `kvm_id` and `valid_until`
/// exactly as issued, unexpired, and addressed to the ticket's `api_host`.
fn ticket_vps<'a>(
    world: &'a mut EdisWorld,
    form: &[(String, String)],
    extra_fields: &[&str],
    host: &str,
    now: Timestamp,
) -> Result<&'a mut EdisVps, ApiError> {
    only_fields(form, &["signature", "kvm_id", "valid_until"], extra_fields)?;
    let kvm_id = field(form, "kvm_id").unwrap_or_default();
    let signature = field(form, "signature").unwrap_or_default();
    let valid_until = field(form, "valid_until").unwrap_or_default();
    let valid = world.tickets.iter().any(|ticket| {
        ticket.kvm_id == kvm_id
            && ticket.signature == signature
            && ticket.valid_until == valid_until
            && ticket.expires_at > now
            && ticket.api_host.eq_ignore_ascii_case(host)
    });
    if !valid {
        world.unauthorized_count += 1;
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, TICKET_REFUSED));
    }
    world
        .vps
        .iter_mut()
        .find(|vps| vps.kvm_id == kvm_id)
        .ok_or_else(|| ApiError::new(StatusCode::FORBIDDEN, DENIED))
}

/// `set/reinstall`: records the request, powers the VPS off, and on again with the new image
/// once the install's time has come.
fn reinstall(
    shared: &Shared,
    world: &mut EdisWorld,
    form: &[(String, String)],
    host: &str,
    now: Timestamp,
) -> Result<Value, ApiError> {
    let inventory = &shared.inventory;
    let image = field(form, "image").unwrap_or_default().to_string();
    let password = field(form, "password").unwrap_or_default().to_string();
    let user_data = field(form, "cloudinit_user_data").map(str::to_string);
    let vps = ticket_vps(
        world,
        form,
        &[
            "image",
            "password",
            "cloudinit_user_data",
            "pubkey",
            "postscript",
        ],
        host,
        now,
    )?;
    if vps.suspended {
        return Err(ApiError::new(StatusCode::FORBIDDEN, DENIED));
    }
    let known_image =
        inventory.edis.images.contains(&image) || inventory.edis.turnkey_images.contains(&image);
    if image.is_empty() || password.is_empty() || !known_image {
        return Err(ApiError::invalid(
            "image or password missing, or an unknown image",
        ));
    }
    if vps.install.is_some() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "A reinstall is already in progress for this VPS.",
        ));
    }
    let seconds = shared
        .install_seconds_override
        .or(vps.install_seconds)
        .unwrap_or_else(|| inventory.default_install_seconds(None));
    let duration = SignedDuration::try_from_secs_f64(seconds).unwrap_or(SignedDuration::ZERO);
    vps.install = Some(EdisInstall {
        image: image.clone(),
        started_at: now,
        done_at: now.checked_add(duration).unwrap_or(Timestamp::MAX),
    });
    vps.power = Power::Off;
    vps.reinstall_count += 1;
    let kvm_id = vps.kvm_id.clone();
    world.reinstall_log.push(EdisReinstallRecord {
        kvm_id,
        image,
        password_sha256: sha256_hex(password.as_bytes()),
        cloudinit_user_data: user_data,
        at: now,
    });
    Ok(json!({"status": "success"}))
}

/// Refuses missing required fields, and any field that is neither required nor optional.
fn only_fields(
    form: &[(String, String)],
    required: &[&str],
    optional: &[&str],
) -> Result<(), ApiError> {
    for name in required {
        if field(form, name).is_none_or(str::is_empty) {
            return Err(ApiError::invalid(&format!("`{name}` is missing")));
        }
    }
    for (name, _) in form {
        if !required.contains(&name.as_str()) && !optional.contains(&name.as_str()) {
            return Err(ApiError::invalid(&format!("unexpected field `{name}`")));
        }
    }
    Ok(())
}

fn field<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

/// Decodes an `application/x-www-form-urlencoded` body (`+` is a space, `%XX` a byte, the
/// result UTF-8). Refuses malformed escapes and repeated names.
pub fn decode_form(body: &[u8]) -> Option<Vec<(String, String)>> {
    let text = std::str::from_utf8(body).ok()?;
    let mut fields: Vec<(String, String)> = Vec::new();
    for pair in text.split('&').filter(|pair| !pair.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = unescape(name)?;
        if fields.iter().any(|(seen, _)| *seen == name) {
            return None;
        }
        fields.push((name, unescape(value)?));
    }
    Some(fields)
}

fn unescape(text: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes().iter();
    while let Some(&byte) = rest.next() {
        match byte {
            b'+' => bytes.push(b' '),
            b'%' => {
                let high = char::from(*rest.next()?).to_digit(16)?;
                let low = char::from(*rest.next()?).to_digit(16)?;
                bytes.push(u8::try_from(high * 16 + low).ok()?);
            }
            other => bytes.push(other),
        }
    }
    String::from_utf8(bytes).ok()
}

/// 50 random letters and digits, the length of the docs' example.
fn random_signature() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut signature = String::with_capacity(SIGNATURE_LENGTH);
    while signature.len() < SIGNATURE_LENGTH {
        for byte in uuid::Uuid::new_v4().into_bytes() {
            if signature.len() == SIGNATURE_LENGTH {
                break;
            }
            signature.push(char::from(ALPHABET[usize::from(byte) % ALPHABET.len()]));
        }
    }
    signature
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bodies as Python's `urllib.parse.urlencode` writes them (an encoder other than
    /// reimage's), decoded by the emulator.
    #[test]
    fn form_bodies_decode_like_the_standard_says() {
        let fields = decode_form(b"email=ops%2Btag%40example.com&pw=a%2Bb%26c%3Dd+e%7E").unwrap();
        assert_eq!(
            fields,
            vec![
                ("email".to_string(), "ops+tag@example.com".to_string()),
                ("pw".to_string(), "a+b&c=d e~".to_string()),
            ]
        );
        assert_eq!(
            decode_form(b"x=%C3%9Cn%E2%82%AC&empty=").unwrap(),
            vec![("x".into(), "Ün€".into()), ("empty".into(), String::new())]
        );
        for bad in [&b"pw=%2"[..], b"pw=%zz", b"a=1&a=2", b"x=%FF", b"\xff=1"] {
            assert!(decode_form(bad).is_none(), "{bad:?}");
        }
        assert_eq!(decode_form(b"").unwrap(), vec![]);
    }

    /// The brief's shapes, with bodies written by hand (not by reimage's client).
    #[tokio::test]
    async fn calls_are_answered_in_the_briefs_shapes() {
        let dir = tempfile::tempdir().unwrap();
        let inventory = dir.path().join("inventory.yaml");
        std::fs::write(
            &inventory,
            "edis:\n  accounts: [{email: a@example.com, password: \"p+w&=\"}]\n  images: [debian-bookworm]\n  vps:\n    - {kvm_id: kvm_1_1, description: one}\n    - {kvm_id: kvm_2_1, suspended: true}\n",
        )
        .unwrap();
        let emulator = crate::emulator::start(crate::emulator::EmulatorConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            inventory,
            data_dir: dir.path().join("data"),
            install_seconds: Some(60.0),
        })
        .await
        .unwrap();
        let base = format!("http://{}", emulator.address);
        let client = reqwest::Client::new();
        let post = |path: &str, body: String, content_type: &'static str| {
            client
                .post(format!("{base}{path}"))
                .header("content-type", content_type)
                .body(body)
                .send()
        };
        let form = "application/x-www-form-urlencoded";
        let answer = |response: reqwest::Response| async move {
            (
                response.status().as_u16(),
                response.json::<Value>().await.unwrap(),
            )
        };

        let (status, body) = answer(
            post(AUTH_PATH, "email=a%40example.com&pw=wrong".into(), form)
                .await
                .unwrap(),
        )
        .await;
        assert_eq!((status, &body["code"]), (401, &json!(401)));
        assert!(body["error"].is_string());
        // A raw `&` in the password splits it: refused, never half-accepted.
        let (status, _) = answer(
            post(AUTH_PATH, "email=a%40example.com&pw=p+w&=".into(), form)
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 400);
        let (status, body) = answer(
            post(
                AUTH_PATH,
                r#"{"email":"a@example.com"}"#.into(),
                "application/json",
            )
            .await
            .unwrap(),
        )
        .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some(INVALID_PARAMETERS))
        );

        let (status, body) = answer(
            post(
                AUTH_PATH,
                "email=a%40example.com&pw=p%2Bw%26%3D".into(),
                form,
            )
            .await
            .unwrap(),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["status"], "success");
        let one = &body["data"]["kvm_1_1"];
        assert_eq!(one["kvm_id"], "kvm_1_1");
        assert_eq!(one["api_host"], emulator.address.to_string());
        assert!(one["valid_until"].is_i64());
        assert_eq!(one["signature"].as_str().unwrap().len(), SIGNATURE_LENGTH);
        assert_eq!(one["suspended"], "n");
        assert_eq!(body["data"]["kvm_2_1"]["suspended"], "y");

        let ticket = |vps: &Value| {
            format!(
                "signature={}&kvm_id={}&valid_until={}",
                vps["signature"].as_str().unwrap(),
                vps["kvm_id"].as_str().unwrap(),
                vps["valid_until"]
            )
        };
        let (status, body) =
            answer(post("/kvm/v2/get/power", ticket(one), form).await.unwrap()).await;
        assert_eq!(status, 200);
        assert_eq!(
            body,
            json!({"status": "success", "data": "server powered on", "traffic_suspended": false})
        );
        // A tampered ticket, and the right ticket at another host, are both refused with 401.
        let tampered = ticket(one).replace("valid_until=", "valid_until=1");
        let (status, body) = answer(post("/kvm/v2/get/power", tampered, form).await.unwrap()).await;
        assert_eq!((status, &body["code"]), (401, &json!(401)));
        let elsewhere = client
            .post(format!(
                "http://localhost:{}/kvm/v2/get/power",
                emulator.address.port()
            ))
            .header("content-type", form)
            .body(ticket(one))
            .send()
            .await
            .unwrap();
        assert_eq!(elsewhere.status().as_u16(), 401);

        let reinstall = |vps: &Value, extra: &str| format!("{}{extra}", ticket(vps));
        let (status, body) = answer(
            post(
                "/kvm/v2/set/reinstall",
                reinstall(one, "&image=windows&password=x"),
                form,
            )
            .await
            .unwrap(),
        )
        .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some(INVALID_PARAMETERS))
        );
        let (status, body) = answer(
            post(
                "/kvm/v2/set/reinstall",
                reinstall(
                    &body_of_suspended(&client, &base).await,
                    "&image=debian-bookworm&password=x",
                ),
                form,
            )
            .await
            .unwrap(),
        )
        .await;
        assert_eq!((status, body["error"].as_str()), (403, Some(DENIED)));
        let (status, body) = answer(
            post(
                "/kvm/v2/set/reinstall",
                reinstall(one, "&image=debian-bookworm&password=x"),
                form,
            )
            .await
            .unwrap(),
        )
        .await;
        assert_eq!((status, body), (200, json!({"status": "success"})));
        let (_, body) = answer(post("/kvm/v2/get/power", ticket(one), form).await.unwrap()).await;
        assert_eq!(body["data"], "server powered off");
        let (status, body) = answer(
            post("/kvm/v2/get/nothing", ticket(one), form)
                .await
                .unwrap(),
        )
        .await;
        assert_eq!((status, &body["code"]), (404, &json!(404)));
    }

    /// A fresh ticket of the suspended VPS.
    async fn body_of_suspended(client: &reqwest::Client, base: &str) -> Value {
        let body: Value = client
            .post(format!("{base}{AUTH_PATH}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("email=a%40example.com&pw=p%2Bw%26%3D&kvm_id=kvm_2_1")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(
            body["data"].get("kvm_1_1").is_none(),
            "kvm_id restricts the answer"
        );
        body["data"]["kvm_2_1"].clone()
    }

    #[test]
    fn signatures_are_fifty_random_characters() {
        let first = random_signature();
        assert_eq!(first.len(), SIGNATURE_LENGTH);
        assert!(first.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(first, random_signature());
    }

    #[test]
    fn inventory_rules() {
        let parse = |text: &str| -> EdisInventory { serde_json::from_str(text).unwrap() };
        let good = parse(
            r#"{"accounts":[{"email":"a@x","password":"p"}],
                "vps":[{"kvm_id":"kvm_1_1","api_host":"localhost"}]}"#,
        );
        assert!(check_inventory(&good).is_ok());
        for (text, expected) in [
            (r#"{"vps":[{"kvm_id":"k"}]}"#, "no account"),
            (
                r#"{"accounts":[{"email":"a@x","password":"p"}],"vps":[{"kvm_id":"k","account":"b@x"}]}"#,
                "not in `accounts`",
            ),
            (
                r#"{"accounts":[{"email":"a@x","password":"p"}],"vps":[{"kvm_id":"k"},{"kvm_id":"k"}]}"#,
                "listed twice",
            ),
            (
                r#"{"accounts":[{"email":"a@x","password":"p"}],"vps":[{"kvm_id":"k","api_host":"10.0.0.1"}]}"#,
                "api_host",
            ),
            (r#"{"ticket_ttl_seconds":0}"#, "ticket_ttl_seconds"),
        ] {
            let error = check_inventory(&parse(text)).unwrap_err();
            assert!(error.contains(expected), "{text}: {error}");
        }
    }
}
