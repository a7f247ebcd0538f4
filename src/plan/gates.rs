//! Which health gate a planned reinstall gets, with its target filled in (pure: no I/O).
//!
//! The manifest's gate (server, group or defaults) wins; where the manifest says nothing, the
//! provider's own (EDIS `ssh_probe`) applies; `health: false` means none. `{address}` is the
//! server's `address:`, else the address its provider reported at plan time.

use crate::manifest::DesiredServer;
use crate::manifest::health::{DesiredHealth, HealthGate};
use crate::model::Observed;

/// The gate of one server, filled in; `Err` says why it cannot be run (no address).
pub fn resolve(
    desired: &DesiredServer,
    observed: Option<&Observed>,
    provider_gate: Option<HealthGate>,
) -> Result<Option<HealthGate>, String> {
    let gate = match &desired.health {
        DesiredHealth::Off => return Ok(None),
        DesiredHealth::Gate(gate) => gate.clone(),
        DesiredHealth::Unset => match provider_gate {
            Some(gate) => gate,
            None => return Ok(None),
        },
    };
    let address = desired
        .address
        .clone()
        .or_else(|| observed.and_then(|observed| observed.address.clone()));
    if gate.check.needs_address() && address.is_none() {
        return Err(format!(
            "its health gate ({}, from `{}`) needs the server's address, and neither the \
             manifest (`address:`) nor the provider gives one: add `address: HOST` to the server",
            gate.check.describe(),
            gate.source
        ));
    }
    Ok(Some(HealthGate {
        check: gate
            .check
            .filled(&desired.name, &desired.cloud_id, address.as_deref()),
        ..gate
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::health::HealthCheck;
    use crate::manifest::{DesiredAccess, ProviderType};
    use crate::model::ServerStatus;

    fn gate(address: &str, source: &str) -> HealthGate {
        HealthGate {
            check: HealthCheck::Tcp {
                address: address.into(),
            },
            timeout_s: 1.0,
            interval_s: 1.0,
            attempts: 2,
            source: source.into(),
        }
    }

    fn server(health: DesiredHealth, address: Option<&str>) -> DesiredServer {
        DesiredServer {
            name: "web-1".into(),
            provider: "p".into(),
            provider_type: ProviderType::ZenlayerBmc,
            cloud_id: "i-1".into(),
            image: "img".into(),
            revision: 0,
            access: DesiredAccess::None,
            hostname: None,
            user_data: None,
            protect: false,
            options: Default::default(),
            group: None,
            address: address.map(str::to_string),
            health,
        }
    }

    fn observed(address: Option<&str>) -> Observed {
        Observed {
            cloud_id: "i-1".into(),
            status: ServerStatus::Running,
            raw_status: "RUNNING".into(),
            image: None,
            image_name: None,
            hostname: None,
            address: address.map(str::to_string),
            extra: Default::default(),
        }
    }

    #[test]
    fn the_manifest_wins_over_the_provider_and_the_address_is_filled_in() {
        let manifest = DesiredHealth::Gate(gate("{address}:22", "defaults.health"));
        let provider = Some(gate("192.0.2.1:22", "ssh_probe"));
        let from_manifest = resolve(
            &server(manifest.clone(), Some("10.0.0.9")),
            Some(&observed(Some("203.0.113.1"))),
            provider.clone(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(from_manifest.check.describe(), "tcp 10.0.0.9:22");
        let reported = resolve(
            &server(manifest.clone(), None),
            Some(&observed(Some("203.0.113.1"))),
            None,
        )
        .unwrap()
        .unwrap();
        assert_eq!(reported.check.describe(), "tcp 203.0.113.1:22");
        let from_provider = resolve(&server(DesiredHealth::Unset, None), None, provider.clone());
        assert_eq!(from_provider.unwrap().unwrap().source, "ssh_probe");
        assert_eq!(
            resolve(&server(DesiredHealth::Off, None), None, provider),
            Ok(None)
        );
        let missing = resolve(&server(manifest, None), Some(&observed(None)), None).unwrap_err();
        assert!(missing.contains("add `address: HOST`"), "{missing}");
    }
}
