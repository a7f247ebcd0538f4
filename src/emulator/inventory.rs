//! The inventory: the YAML file that describes the emulated world at its beginning (accounts,
//! images, servers). Read with the manifest's YAML front end so that a mistake is reported
//! with its line, and with `deny_unknown_fields` so that a misspelt key is never ignored.

use std::collections::BTreeSet;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::EmulatorError;
use crate::digest::sha256_hex;
use crate::manifest::yaml::{SpanIndex, escape_pointer_segment, parse_document};

/// How long an emulated install takes when neither the inventory nor the caller says.
pub const DEFAULT_INSTALL_SECONDS: f64 = 3.0;

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Inventory {
    /// Default duration of an emulated install, in seconds.
    #[serde(default)]
    pub install_seconds: Option<f64>,
    #[serde(default)]
    pub zenlayer: ZenlayerInventory,
    #[serde(default)]
    pub huaweicloud: super::huaweicloud::model::HuaweiInventory,
    #[serde(default)]
    pub edis: super::edis::EdisInventory,
    #[serde(default)]
    pub jdcloud: super::jdcloud::JdcloudInventory,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ZenlayerInventory {
    /// Access keys accepted for ZC2-HMAC-SHA256 signing (fake ones: this is an emulator).
    #[serde(default)]
    pub credentials: Vec<ZenlayerCredential>,
    /// Bearer tokens accepted instead of a signature.
    #[serde(default)]
    pub tokens: Vec<String>,
    #[serde(default)]
    pub images: Vec<ZenlayerImage>,
    #[serde(default)]
    pub servers: Vec<ZenlayerServerSpec>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ZenlayerCredential {
    pub access_key_id: String,
    pub access_key_password: String,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ZenlayerImage {
    pub id: String,
    pub name: String,
    /// `centos`, `windows`, `ubuntu`, `debian`, `esxi`, ...
    #[serde(default)]
    pub catalog: Option<String>,
    /// `PUBLIC_IMAGE` (default) or `CUSTOM_IMAGE`.
    #[serde(default = "default_image_type")]
    pub image_type: String,
    /// `linux` (default) or `windows`.
    #[serde(default = "default_os_type")]
    pub os_type: String,
}

fn default_image_type() -> String {
    "PUBLIC_IMAGE".to_string()
}

fn default_os_type() -> String {
    "linux".to_string()
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ZenlayerServerSpec {
    pub id: String,
    /// `instanceName` in the API.
    pub name: String,
    /// The image installed at the start; need not be in `images` (an image can be withdrawn).
    pub image: String,
    #[serde(default = "default_status")]
    pub status: InstanceStatus,
    #[serde(default)]
    pub hostname: Option<String>,
    #[serde(default)]
    pub zone: Option<String>,
    #[serde(default)]
    pub instance_type: Option<String>,
    /// The server's public address (`primaryPublicIpAddress`).
    #[serde(default)]
    pub public_ip: Option<String>,
    /// The next install of this server ends `INSTALL_FAILED`.
    #[serde(default)]
    pub fail_next_install: bool,
    /// Install duration for this server, in seconds.
    #[serde(default)]
    pub install_seconds: Option<f64>,
}

fn default_status() -> InstanceStatus {
    InstanceStatus::Running
}

/// Every instance status the brief lists (§5.2), spelt as on the wire.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum InstanceStatus {
    Pending,
    Creating,
    CreateFailed,
    Installing,
    InstallFailed,
    Running,
    Stopped,
    Booting,
    Stopping,
    Recycle,
    Recycling,
}

impl InstanceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Creating => "CREATING",
            Self::CreateFailed => "CREATE_FAILED",
            Self::Installing => "INSTALLING",
            Self::InstallFailed => "INSTALL_FAILED",
            Self::Running => "RUNNING",
            Self::Stopped => "STOPPED",
            Self::Booting => "BOOTING",
            Self::Stopping => "STOPPING",
            Self::Recycle => "RECYCLE",
            Self::Recycling => "RECYCLING",
        }
    }
}

/// An inventory read from disk, with the digest of its exact bytes (the world remembers it to
/// notice when the inventory was edited).
#[derive(Debug, Clone)]
pub struct LoadedInventory {
    pub inventory: Inventory,
    pub digest: String,
}

impl Inventory {
    /// The default install duration: the caller's override, else the inventory's, else 3 s.
    pub fn default_install_seconds(&self, override_seconds: Option<f64>) -> f64 {
        override_seconds
            .or(self.install_seconds)
            .unwrap_or(DEFAULT_INSTALL_SECONDS)
    }
}

pub fn load(path: &Path) -> Result<LoadedInventory, EmulatorError> {
    let source = crate::files::read_limited_to_string(path, crate::files::INVENTORY_MAX_BYTES)
        .map_err(|error| EmulatorError(format!("cannot read the inventory: {error}")))?;
    let inventory = parse(&source, &path.display().to_string())?;
    Ok(LoadedInventory {
        inventory,
        digest: sha256_hex(source.as_bytes()),
    })
}

/// Parses and checks an inventory; `origin` names it in error messages.
pub fn parse(source: &str, origin: &str) -> Result<Inventory, EmulatorError> {
    let (value, spans) = parse_document(source).map_err(|error| {
        EmulatorError(format!(
            "inventory {origin}, line {} column {}: {}",
            error.line, error.column, error.message
        ))
    })?;
    let inventory: Inventory = serde_path_to_error::deserialize(value).map_err(|error| {
        let pointer = json_pointer(error.path());
        let line = line_of(source, &spans, &pointer);
        let location = match line {
            Some(line) => format!("line {line}, "),
            None => String::new(),
        };
        EmulatorError(format!(
            "inventory {origin}, {location}at `{}`: {}",
            error.path(),
            error.inner()
        ))
    })?;
    check(&inventory).map_err(|message| EmulatorError(format!("inventory {origin}: {message}")))?;
    Ok(inventory)
}

/// Rules serde cannot express.
fn check(inventory: &Inventory) -> Result<(), String> {
    let durations = std::iter::once(("install_seconds".to_string(), inventory.install_seconds))
        .chain(inventory.zenlayer.servers.iter().map(|server| {
            (
                format!("zenlayer server {} install_seconds", server.id),
                server.install_seconds,
            )
        }));
    for (what, seconds) in durations {
        if let Some(seconds) = seconds
            && !(seconds.is_finite() && seconds >= 0.0)
        {
            return Err(format!(
                "{what} must be a number of seconds ≥ 0, not {seconds}"
            ));
        }
    }
    super::huaweicloud::model::check_inventory(&inventory.huaweicloud)?;
    super::edis::check_inventory(&inventory.edis)?;
    super::jdcloud::check_inventory(&inventory.jdcloud)?;
    let zenlayer = &inventory.zenlayer;
    let mut image_ids = BTreeSet::new();
    for image in &zenlayer.images {
        if !image_ids.insert(image.id.as_str()) {
            return Err(format!("zenlayer image id `{}` is listed twice", image.id));
        }
    }
    let mut server_ids = BTreeSet::new();
    for server in &zenlayer.servers {
        if !server_ids.insert(server.id.as_str()) {
            return Err(format!(
                "zenlayer server id `{}` is listed twice",
                server.id
            ));
        }
    }
    let mut key_ids = BTreeSet::new();
    for credential in &zenlayer.credentials {
        if !key_ids.insert(credential.access_key_id.as_str()) {
            return Err(format!(
                "zenlayer access key id `{}` is listed twice",
                credential.access_key_id
            ));
        }
    }
    Ok(())
}

fn json_pointer(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut pointer = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => pointer.push_str(&format!("/{index}")),
            Segment::Map { key } => {
                pointer.push('/');
                pointer.push_str(&escape_pointer_segment(key));
            }
            Segment::Enum { .. } | Segment::Unknown => {}
        }
    }
    pointer
}

/// 1-based line of the key (or value) at `pointer`.
fn line_of(source: &str, spans: &SpanIndex, pointer: &str) -> Option<usize> {
    let span = spans.key_or_value(pointer)?;
    let before = source.get(..span.offset)?;
    Some(before.matches('\n').count() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_inventory_parses() {
        let inventory = parse(
            include_str!("../../examples/emulator/inventory.yaml"),
            "sample",
        )
        .unwrap();
        assert!(!inventory.zenlayer.servers.is_empty());
        assert!(!inventory.zenlayer.credentials.is_empty());
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let source = "zenlayer:\n  servers:\n    - id: \"1\"\n      name: a\n      image: i\n      colour: red\n";
        let error = parse(source, "test.yaml").unwrap_err().to_string();
        assert!(error.contains("colour"), "{error}");
        assert!(error.contains("line 6"), "{error}");
    }

    #[test]
    fn unknown_status_is_refused() {
        let source =
            "zenlayer:\n  servers:\n    - {id: \"1\", name: a, image: i, status: SLEEPING}\n";
        let error = parse(source, "test.yaml").unwrap_err().to_string();
        assert!(error.contains("SLEEPING"), "{error}");
    }

    #[test]
    fn duplicate_server_ids_are_refused() {
        let source = "zenlayer:\n  servers:\n    - {id: \"1\", name: a, image: i}\n    - {id: \"1\", name: b, image: i}\n";
        let error = parse(source, "test.yaml").unwrap_err().to_string();
        assert!(error.contains("listed twice"), "{error}");
    }
}
