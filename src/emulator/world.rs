//! The emulated world: what every server looks like now, what was asked of it, which faults are
//! armed. Persisted to `data_dir/world.json` after each change, so that `reimage plan` and
//! `reimage apply`, run as separate processes, see one world.
//!
//! Installs are not driven by a background task: a reinstall stores when it started and when it
//! will be done, and every access first settles the installs whose time has come. Status is
//! thus right across restarts, and a stopped emulator "catches up" when started again.

use std::io::Write;
use std::path::{Path, PathBuf};

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use super::EmulatorError;
use super::inventory::{InstanceStatus, Inventory, LoadedInventory};

pub const WORLD_FILE_NAME: &str = "world.json";

/// Raised whenever the file's shape changes incompatibly (2: one fault menu for every API).
const WORLD_FORMAT: u32 = 2;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct World {
    pub format: u32,
    /// SHA-256 of the inventory file this world was made from.
    pub inventory_digest: String,
    pub created_at: Timestamp,
    pub zenlayer: ZenlayerWorld,
    #[serde(default)]
    pub huaweicloud: super::huaweicloud::model::HuaweiWorld,
    #[serde(default)]
    pub edis: super::edis::EdisWorld,
    #[serde(default)]
    pub jdcloud: super::jdcloud::JdcloudWorld,
    /// Armed fault rules and what they did, for every API.
    #[serde(default)]
    pub faults: super::faults::FaultBook,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ZenlayerWorld {
    /// In inventory order, which is also the order `DescribeInstances` lists them in.
    pub servers: Vec<ZenlayerServer>,
    /// Every accepted `ReinstallInstance` call, oldest first.
    pub reinstall_log: Vec<ReinstallRecord>,
    /// The most servers ever `INSTALLING` at once (tests check rollout limits with it).
    #[serde(default)]
    pub peak_installing: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ZenlayerServer {
    pub id: String,
    pub name: String,
    pub hostname: Option<String>,
    pub image_id: String,
    /// The status as of the last settlement; an install in progress reads `INSTALLING`.
    pub status: InstanceStatus,
    pub zone_id: Option<String>,
    pub instance_type_id: Option<String>,
    /// `primaryPublicIpAddress` (the inventory's `public_ip`).
    #[serde(default)]
    pub public_ip: Option<String>,
    /// The key pair of the last install that used one.
    pub key_id: Option<String>,
    pub fail_next_install: bool,
    /// Per-server install duration from the inventory.
    pub install_seconds: Option<f64>,
    pub reinstall_count: u64,
    /// The install in progress, if any; cleared when it settles.
    pub install: Option<Install>,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Install {
    pub image_id: String,
    pub hostname: Option<String>,
    pub key_id: Option<String>,
    pub install_started_at: Timestamp,
    pub install_done_at: Timestamp,
    /// Decided when the install starts (from `fail_next_install`), revealed when it ends.
    pub ends_in_failure: bool,
}

/// One accepted reinstall call. The password itself is never kept, only whether one was given.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ReinstallRecord {
    pub server_id: String,
    /// The image asked for; `None` when the call omitted `imageId` (current image reused).
    pub requested_image_id: Option<String>,
    /// The image actually being installed.
    pub image_id: String,
    pub hostname: Option<String>,
    pub password_given: bool,
    pub key_id: Option<String>,
    pub at: Timestamp,
    pub request_id: String,
    /// How many servers were `INSTALLING` when this call was accepted, this one included.
    #[serde(default)]
    pub installing_at_call: usize,
}

impl World {
    pub fn from_inventory(loaded: &LoadedInventory, now: Timestamp) -> World {
        let servers = loaded
            .inventory
            .zenlayer
            .servers
            .iter()
            .map(|spec| ZenlayerServer {
                id: spec.id.clone(),
                name: spec.name.clone(),
                hostname: spec.hostname.clone(),
                image_id: spec.image.clone(),
                status: spec.status,
                zone_id: spec.zone.clone(),
                instance_type_id: spec.instance_type.clone(),
                public_ip: spec.public_ip.clone(),
                key_id: None,
                fail_next_install: spec.fail_next_install,
                install_seconds: spec.install_seconds,
                reinstall_count: 0,
                install: None,
                created_at: now,
            })
            .collect();
        World {
            format: WORLD_FORMAT,
            inventory_digest: loaded.digest.clone(),
            created_at: now,
            zenlayer: ZenlayerWorld {
                servers,
                ..ZenlayerWorld::default()
            },
            huaweicloud: super::huaweicloud::model::HuaweiWorld::from_inventory(
                &loaded.inventory.huaweicloud,
                now,
            ),
            edis: super::edis::EdisWorld::from_inventory(&loaded.inventory.edis),
            jdcloud: super::jdcloud::JdcloudWorld::from_inventory(&loaded.inventory.jdcloud),
            faults: super::faults::FaultBook::default(),
        }
    }

    /// Finishes every install whose time has come. Returns whether anything changed.
    pub fn settle(&mut self, now: Timestamp) -> bool {
        let mut changed = false;
        for server in &mut self.zenlayer.servers {
            changed |= server.settle(now);
        }
        changed |= self.huaweicloud.settle(now);
        changed |= self.edis.settle(now);
        changed |= self.jdcloud.settle(now);
        changed
    }
}

impl ZenlayerWorld {
    pub fn server(&self, id: &str) -> Option<&ZenlayerServer> {
        self.servers.iter().find(|server| server.id == id)
    }

    pub fn server_mut(&mut self, id: &str) -> Option<&mut ZenlayerServer> {
        self.servers.iter_mut().find(|server| server.id == id)
    }
}

impl ZenlayerServer {
    fn settle(&mut self, now: Timestamp) -> bool {
        let Some(install) = self
            .install
            .take_if(|install| install.install_done_at <= now)
        else {
            return false;
        };
        // The record shows what was asked for even when the install failed, as a real control
        // panel would: a client that looks only at the image id, not the status, must not be
        // able to pass its tests.
        self.image_id = install.image_id;
        self.hostname = install.hostname;
        self.key_id = install.key_id;
        self.status = if install.ends_in_failure {
            InstanceStatus::InstallFailed
        } else {
            InstanceStatus::Running
        };
        true
    }

    /// Starts an install that ends after `duration`. Consumes `fail_next_install`.
    pub fn begin_install(
        &mut self,
        image_id: String,
        hostname: Option<String>,
        key_id: Option<String>,
        now: Timestamp,
        duration: SignedDuration,
    ) {
        let install_done_at = now.checked_add(duration).unwrap_or(Timestamp::MAX);
        self.install = Some(Install {
            image_id,
            hostname,
            key_id,
            install_started_at: now,
            install_done_at,
            ends_in_failure: std::mem::take(&mut self.fail_next_install),
        });
        self.status = InstanceStatus::Installing;
        self.reinstall_count += 1;
    }

    /// How long an install of this server takes: the caller's override wins (so a demo can be
    /// made fast everywhere), then this server's own duration, then the inventory default.
    pub fn install_duration(
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

/// The world and where it is kept.
#[derive(Debug)]
pub struct WorldStore {
    pub world: World,
    path: PathBuf,
}

impl WorldStore {
    /// Loads the saved world from `data_dir`, or starts from the inventory when there is none or
    /// when the inventory changed since the world was made.
    pub fn open(data_dir: &Path, inventory: &LoadedInventory) -> Result<WorldStore, EmulatorError> {
        fs_err::create_dir_all(data_dir)
            .map_err(|error| EmulatorError(format!("cannot create the data directory: {error}")))?;
        let path = data_dir.join(WORLD_FILE_NAME);
        let saved = match crate::files::read_limited(&path, crate::files::WORLD_MAX_BYTES) {
            Ok(bytes) => Self::parse_saved(&bytes, &path)?,
            Err(error) if error.is_not_found() => None,
            Err(error) => {
                return Err(EmulatorError(format!(
                    "cannot read the saved world: {error}"
                )));
            }
        };
        let world = match saved {
            Some(world) if world.inventory_digest == inventory.digest => {
                tracing::debug!(path = %path.display(), "emulator: continuing the saved world");
                world
            }
            Some(_) => {
                tracing::info!(
                    path = %path.display(),
                    "emulator: the inventory changed since the saved world was made, or the \
                     world was saved by another version; starting again from the inventory"
                );
                World::from_inventory(inventory, Timestamp::now())
            }
            None => World::from_inventory(inventory, Timestamp::now()),
        };
        let store = WorldStore { world, path };
        store.save()?;
        Ok(store)
    }

    /// A saved world of this format, or `None` for one of another format (started again from
    /// the inventory: its shape may not even parse any more).
    fn parse_saved(bytes: &[u8], path: &Path) -> Result<Option<World>, EmulatorError> {
        let unreadable = |error: serde_json::Error| {
            EmulatorError(format!(
                "the saved world {} is unreadable ({error}); delete it to start again from the \
                 inventory",
                path.display()
            ))
        };
        let value: serde_json::Value = serde_json::from_slice(bytes).map_err(unreadable)?;
        if value.get("format").and_then(serde_json::Value::as_u64) != Some(u64::from(WORLD_FORMAT))
        {
            return Ok(None);
        }
        serde_json::from_value(value).map(Some).map_err(unreadable)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes the world atomically: a temporary file in the same directory, fsync, rename.
    pub fn save(&self) -> Result<(), EmulatorError> {
        let failed =
            |error: std::io::Error| EmulatorError(format!("cannot save the world: {error}"));
        let directory = self.path.parent().unwrap_or_else(|| Path::new("."));
        let bytes = serde_json::to_vec_pretty(&self.world)
            .map_err(|error| EmulatorError(format!("cannot serialise the world: {error}")))?;
        let mut file = tempfile::NamedTempFile::new_in(directory).map_err(failed)?;
        file.write_all(&bytes).map_err(failed)?;
        file.write_all(b"\n").map_err(failed)?;
        file.as_file().sync_all().map_err(failed)?;
        file.persist(&self.path)
            .map_err(|error| failed(error.error))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emulator::inventory;

    fn loaded(source: &str) -> LoadedInventory {
        LoadedInventory {
            inventory: inventory::parse(source, "test").unwrap(),
            digest: crate::digest::sha256_hex(source.as_bytes()),
        }
    }

    const ONE_SERVER: &str = "zenlayer:\n  servers:\n    - {id: \"1\", name: a, image: old}\n";

    #[test]
    fn install_settles_only_when_its_time_has_come() {
        let start = Timestamp::from_second(1_000_000).unwrap();
        let mut world = World::from_inventory(&loaded(ONE_SERVER), start);
        let server = world.zenlayer.server_mut("1").unwrap();
        server.begin_install(
            "new".into(),
            Some("h".into()),
            None,
            start,
            SignedDuration::from_secs(10),
        );
        assert!(!world.settle(start + SignedDuration::from_secs(9)));
        assert_eq!(
            world.zenlayer.server("1").unwrap().status,
            InstanceStatus::Installing
        );
        assert!(world.settle(start + SignedDuration::from_secs(10)));
        let server = world.zenlayer.server("1").unwrap();
        assert_eq!(server.status, InstanceStatus::Running);
        assert_eq!(server.image_id, "new");
        assert_eq!(server.reinstall_count, 1);
    }

    #[test]
    fn saved_world_is_reloaded_and_a_changed_inventory_starts_again() {
        let dir = tempfile::tempdir().unwrap();
        let first = loaded(ONE_SERVER);
        let mut store = WorldStore::open(dir.path(), &first).unwrap();
        store.world.zenlayer.servers[0].reinstall_count = 7;
        store.save().unwrap();
        let again = WorldStore::open(dir.path(), &first).unwrap();
        assert_eq!(again.world.zenlayer.servers[0].reinstall_count, 7);
        let edited = loaded(&format!("{ONE_SERVER}install_seconds: 1\n"));
        let fresh = WorldStore::open(dir.path(), &edited).unwrap();
        assert_eq!(fresh.world.zenlayer.servers[0].reinstall_count, 0);
    }

    #[test]
    fn a_world_saved_in_an_older_format_starts_again_from_the_inventory() {
        let dir = tempfile::tempdir().unwrap();
        let first = loaded(ONE_SERVER);
        // Format 1 kept faults per provider, a key this format no longer has.
        let old = serde_json::json!({
            "format": 1,
            "inventory_digest": first.digest,
            "zenlayer": {"faults": {"status_429_next": 1}},
        });
        std::fs::write(dir.path().join(WORLD_FILE_NAME), old.to_string()).unwrap();
        let store = WorldStore::open(dir.path(), &first).unwrap();
        assert_eq!(store.world.format, WORLD_FORMAT);
        assert_eq!(store.world.zenlayer.servers.len(), 1);
        std::fs::write(dir.path().join(WORLD_FILE_NAME), "{not json").unwrap();
        let error = WorldStore::open(dir.path(), &first)
            .unwrap_err()
            .to_string();
        assert!(error.contains("unreadable"), "{error}");
    }
}
