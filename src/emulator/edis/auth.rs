//! `get/auth` and its per-VPS tickets: issuing them, and checking the one a management call
//! carries.

use axum::http::StatusCode;
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

use super::errors::ApiError;
use super::form::{field, only_fields};
use super::model::{EdisInventory, EdisVps, EdisWorld, IssuedTicket, ValidUntilFormat};
use super::{DEFAULT_TICKET_TTL_SECONDS, DENIED, SIGNATURE_LENGTH, TICKET_REFUSED};

/// `get/auth`: checks `email`/`pw` and issues a ticket per VPS of the account (or only the
/// one named by `kvm_id`).
pub(super) fn auth(
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
pub(super) fn ticket_vps<'a>(
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

/// 50 random letters and digits, the length of the docs' example.
pub(super) fn random_signature() -> String {
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
