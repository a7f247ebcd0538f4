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
//!
//! Files: `routes` (one call's way), `auth` (tickets), `errors` (the refusals), `handlers`
//! (reinstall), `form` (body decoding and field checks), `model` (inventory section and world).

mod auth;
mod errors;
mod form;
mod handlers;
pub mod model;
mod routes;

#[cfg(test)]
mod tests;

pub use form::decode_form;
pub use model::{EdisInventory, EdisWorld, check_inventory};
pub use routes::handle;

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
