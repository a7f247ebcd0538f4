//! `set/reinstall`, the one EDIS call that changes a VPS.

use axum::http::StatusCode;
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

use super::DENIED;
use super::auth::ticket_vps;
use super::errors::ApiError;
use super::form::field;
use super::model::{EdisInstall, EdisReinstallRecord, EdisWorld, Power};
use crate::digest::sha256_hex;
use crate::emulator::server::Shared;

/// `set/reinstall`: records the request, powers the VPS off, and on again with the new image
/// once the install's time has come.
pub(super) fn reinstall(
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
