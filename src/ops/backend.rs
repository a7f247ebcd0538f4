//! Which state store a command uses, and `force-unlock`.
//!
//! The manifest (or a saved plan) names the backend: the local file by default, or a shared
//! PostgreSQL database (`backend: {type: postgres, url: {env: NAME}}`). `--state PATH` always
//! means a local file.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::manifest::RemoteBackend;
use crate::state::local::LocalStateStore;
use crate::state::{StateStore, Unlocked};

/// Where a command's state lives.
#[derive(Debug, Clone, PartialEq)]
pub enum Backend {
    Local(PathBuf),
    Remote(RemoteBackend),
}

impl Backend {
    /// The backend a manifest or plan names, unless `--state PATH` overrides it.
    pub fn choose(
        remote: Option<&RemoteBackend>,
        local_path: &Path,
        override_path: Option<&PathBuf>,
    ) -> Backend {
        match (override_path, remote) {
            (Some(path), _) => Backend::Local(path.clone()),
            (None, Some(remote)) => Backend::Remote(remote.clone()),
            (None, None) => Backend::Local(local_path.to_path_buf()),
        }
    }

    /// The remote backend to record in a plan, so that it applies on another machine.
    pub fn remote(&self) -> Option<RemoteBackend> {
        match self {
            Backend::Local(_) => None,
            Backend::Remote(remote) => Some(remote.clone()),
        }
    }
}

/// Opens the store: resolves the connection URL (a secret) and connects, off the async
/// runtime's threads (a connection may take seconds).
pub async fn open_store(backend: &Backend) -> Result<Box<dyn StateStore>> {
    match backend {
        Backend::Local(path) => Ok(Box::new(LocalStateStore::new(path))),
        Backend::Remote(RemoteBackend::Postgres { url, name }) => {
            let url = crate::manifest::secrets::resolve(url)?;
            connect_postgres(url, name.clone()).await
        }
    }
}

#[cfg(feature = "postgres")]
async fn connect_postgres(url: secrecy::SecretString, name: String) -> Result<Box<dyn StateStore>> {
    let store = tokio::task::spawn_blocking(move || {
        crate::state::postgres::PostgresStateStore::connect(&url, &name)
    })
    .await
    .map_err(|error| Error::Io {
        message: format!("connecting to PostgreSQL stopped: {error}"),
    })??;
    Ok(Box::new(store))
}

#[cfg(not(feature = "postgres"))]
async fn connect_postgres(
    _url: secrecy::SecretString,
    _name: String,
) -> Result<Box<dyn StateStore>> {
    Err(Error::usage(
        "the manifest's backend is `postgres`, but this reimage was built without PostgreSQL support",
        "build reimage with the cargo feature `postgres` (on by default)",
    ))
}

/// What `force-unlock` did, for the command to say.
#[derive(Debug)]
pub struct ForceUnlocked {
    pub location: String,
    pub local: bool,
    pub outcome: Unlocked,
}

/// Removes the description of lock `id` left by a holder that is gone; refuses while a live
/// holder has the lock.
pub fn force_unlock(store: &dyn StateStore, local: bool, id: &str) -> Result<ForceUnlocked> {
    let id = id.trim();
    if id.is_empty() {
        return Err(Error::usage(
            "`force-unlock` needs the lock ID",
            "give the lock ID printed by the command that found the state locked",
        ));
    }
    let outcome = store.force_unlock(id)?;
    Ok(ForceUnlocked {
        location: store.location(),
        local,
        outcome,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::SecretRef;

    #[test]
    fn state_override_wins_then_the_remote_backend_then_the_local_file() {
        let remote = RemoteBackend::Postgres {
            url: SecretRef::Env("PG".into()),
            name: "default".into(),
        };
        let local = Path::new("/m/.reimage/state.json");
        let override_path = PathBuf::from("/elsewhere/s.json");
        assert_eq!(
            Backend::choose(Some(&remote), local, Some(&override_path)),
            Backend::Local(override_path.clone())
        );
        assert_eq!(
            Backend::choose(Some(&remote), local, None),
            Backend::Remote(remote.clone())
        );
        assert_eq!(
            Backend::choose(None, local, None),
            Backend::Local(local.to_path_buf())
        );
        assert_eq!(
            Backend::choose(Some(&remote), local, None).remote(),
            Some(remote)
        );
    }

    #[test]
    fn force_unlock_of_a_dead_local_holder_removes_its_description() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStateStore::new(dir.path().join("state.json"));
        // A killed holder's lock went with it, but its description stays in the lock file.
        let holder = crate::state::lock::holder("reimage apply");
        let id = holder.id.clone();
        let lock_file = dir.path().join("state.json.lock");
        std::fs::write(&lock_file, serde_json::to_string(&holder).unwrap()).unwrap();

        let wrong = force_unlock(&store, true, "not-the-id").unwrap_err();
        assert!(wrong.to_string().contains("does not match"), "{wrong}");
        let done = force_unlock(&store, true, &id).unwrap();
        assert!(matches!(done.outcome, Unlocked::Removed(ref holder) if holder.id == id));
        assert_eq!(std::fs::read_to_string(&lock_file).unwrap(), "");
        let again = force_unlock(&store, true, &id).unwrap();
        assert_eq!(again.outcome, Unlocked::NotLocked);
    }

    #[test]
    fn force_unlock_refuses_while_the_holder_lives() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStateStore::new(dir.path().join("state.json"));
        let lock = store.lock("reimage apply").unwrap();
        let error = force_unlock(&store, true, &lock.info().id).unwrap_err();
        let message = error.to_string();
        assert!(message.contains("held by a live process"), "{message}");
        assert!(message.contains("reimage apply"), "{message}");
        drop(lock);
        assert!(force_unlock(&store, true, "").is_err());
    }
}
