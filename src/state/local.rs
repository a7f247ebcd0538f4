//! Local state backend: `state.json` written atomically (temp file in the same folder, fsync,
//! rename, fsync of the folder), guarded by a sidecar lock file `state.json.lock`.
//!
//! The lock is on the sidecar, never on the state file: a rename replaces the state file's inode,
//! so a lock held on the old one would protect nothing. The holder's details are written into
//! the lock file so that a second process can name it. Network filesystems are not supported.
//! The journal (`state.json.journal`) and the history of applies (`state.json.history`) sit
//! beside the state.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::history::{History, LocalHistory};
use super::journal::{Journal, LocalJournal};
use super::{LockInfo, State, StateError, StateLock, StateStore, Unlocked};

pub use crate::files::{
    create_private_dir_all, private_open_options, write_atomically, write_atomically_with,
};

pub struct LocalStateStore {
    path: PathBuf,
    journal: LocalJournal,
    history: LocalHistory,
}

impl LocalStateStore {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        let journal = LocalJournal::new(sibling(&path, ".journal"));
        let history = LocalHistory::new(sibling(&path, ".history"));
        LocalStateStore {
            path,
            journal,
            history,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The files that hold this state, its journal and its history (some may not exist).
    pub fn files(&self) -> [PathBuf; 3] {
        [
            self.path.clone(),
            self.journal.path().to_path_buf(),
            self.history.path().to_path_buf(),
        ]
    }

    fn lock_path(&self) -> PathBuf {
        sibling(&self.path, ".lock")
    }

    /// Opens (creating) the sidecar lock file.
    fn open_lock_file(&self) -> Result<File, StateError> {
        let lock_path = self.lock_path();
        if let Some(parent) = lock_path.parent() {
            create_private_dir_all(parent).map_err(|error| self.write_error(error))?;
        }
        private_open_options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(|error| self.write_error(format!("{}: {error}", lock_path.display())))
    }

    fn write_error(&self, message: impl std::fmt::Display) -> StateError {
        StateError::Write {
            path: self.path.display().to_string(),
            message: message.to_string(),
        }
    }
}

/// A held lock on the local state; released when dropped (the OS also releases it if the
/// process dies, so a crash never leaves the state locked).
struct LocalLock {
    file: File,
    info: LockInfo,
}

impl StateLock for LocalLock {
    fn info(&self) -> &LockInfo {
        &self.info
    }
}

impl Drop for LocalLock {
    fn drop(&mut self) {
        // Clear the holder's details before unlocking, so a stale description never lingers.
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}

/// `state.json` → `state.json{suffix}` in the same folder.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

/// The holder described in a lock file; `None` when it holds no (readable) description.
fn read_holder(file: &mut File) -> Option<LockInfo> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    // A lock file holds one short line; a bigger one is not ours, and is not read whole.
    file.take(crate::files::LOCK_HOLDER_MAX_BYTES)
        .read_to_string(&mut text)
        .ok()?;
    serde_json::from_str::<LockInfo>(&text).ok()
}

fn unknown_holder() -> LockInfo {
    LockInfo {
        id: "unknown".to_string(),
        user: String::new(),
        pid: 0,
        host: "unknown host".to_string(),
        command: "unknown command".to_string(),
        ci_job_url: None,
        since: "unknown time".to_string(),
    }
}

const LOCAL_LOCK_HINT: &str = "wait for that command to finish, or let this one wait for it with \
     `-lock-timeout=5m`. The lock dies with its process, so a crashed holder never keeps it";

impl StateStore for LocalStateStore {
    fn location(&self) -> String {
        self.path.display().to_string()
    }

    fn lock(&self, command: &str) -> Result<Box<dyn StateLock>, StateError> {
        let mut file = self.open_lock_file()?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let holder = read_holder(&mut file).unwrap_or_else(unknown_holder);
                return Err(StateError::Locked {
                    holder: Box::new(holder),
                    location: self.location(),
                    waited: None,
                    hint: LOCAL_LOCK_HINT.to_string(),
                });
            }
            Err(std::fs::TryLockError::Error(error)) => {
                return Err(self.write_error(format!(
                    "cannot lock {}: {error}",
                    self.lock_path().display()
                )));
            }
        }
        let info = super::lock::holder(command);
        let text = serde_json::to_string(&info).map_err(|error| self.write_error(error))?;
        let written = file
            .set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(text.as_bytes()))
            .and_then(|()| file.sync_all());
        written.map_err(|error| self.write_error(error))?;
        Ok(Box::new(LocalLock { file, info }))
    }

    fn read(&self) -> Result<Option<State>, StateError> {
        let text =
            match crate::files::read_limited_to_string(&self.path, crate::files::STATE_MAX_BYTES) {
                Ok(text) => text,
                Err(error) if error.is_not_found() => return Ok(None),
                Err(error) => {
                    return Err(StateError::Read {
                        path: self.location(),
                        message: error.to_string(),
                    });
                }
            };
        let state: State = serde_json::from_str(&text).map_err(|error| StateError::Read {
            path: self.location(),
            message: format!("not a reimage state file: {error}"),
        })?;
        super::check_format_version(&state, &self.location())?;
        Ok(Some(state))
    }

    fn write(&self, lock: &dyn StateLock, state: &mut State) -> Result<(), StateError> {
        let expected = (state.serial > 0).then_some((state.lineage.as_str(), state.serial));
        let mut next = state.clone();
        next.serial += 1;
        self.replace(lock, &next, expected)?;
        *state = next;
        Ok(())
    }

    fn replace(
        &self,
        _lock: &dyn StateLock,
        state: &State,
        expected: Option<(&str, u64)>,
    ) -> Result<(), StateError> {
        // Compare-and-set under the lock: nobody may have written behind our back (another
        // lineage, another serial, or a state where none was expected).
        let current = self.read()?;
        let current_key = current
            .as_ref()
            .map(|current| (current.lineage.as_str(), current.serial));
        if current_key != expected {
            return Err(StateError::Conflict {
                path: self.location(),
                expected: expected.map_or(0, |(_, serial)| serial),
                found: current_key.map_or(0, |(_, serial)| serial),
            });
        }
        let text = serde_json::to_vec_pretty(state).map_err(|error| self.write_error(error))?;
        write_atomically(&self.path, &text).map_err(|error| self.write_error(error))
    }

    fn journal(&self) -> &dyn Journal {
        &self.journal
    }

    fn history(&self) -> &dyn History {
        &self.history
    }

    /// The lock is the OS's lock on the sidecar file and dies with its process: there is never
    /// a lock to break, only the description a killed holder could not clear.
    fn force_unlock(&self, id: &str) -> Result<Unlocked, StateError> {
        let mut file = self.open_lock_file()?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let holder = read_holder(&mut file).unwrap_or_else(unknown_holder);
                return Err(StateError::Unlock {
                    location: self.location(),
                    reason: format!("the lock is held by a live process: {}", holder.describe()),
                    hint: "a local lock dies with its process: wait for it to finish, or stop \
                           that process; there is nothing to break"
                        .to_string(),
                });
            }
            Err(std::fs::TryLockError::Error(error)) => {
                return Err(self.write_error(format!(
                    "cannot lock {}: {error}",
                    self.lock_path().display()
                )));
            }
        }
        let outcome = match read_holder(&mut file) {
            None => Ok(Unlocked::NotLocked),
            Some(holder) if holder.id == id => {
                file.set_len(0)
                    .and_then(|()| file.sync_all())
                    .map_err(|error| self.write_error(error))?;
                Ok(Unlocked::Removed(Box::new(holder)))
            }
            Some(holder) => Err(StateError::Unlock {
                location: self.location(),
                reason: format!(
                    "lock ID `{id}` does not match the description left in `{}` (lock ID `{}`)",
                    self.lock_path().display(),
                    holder.id
                ),
                hint: "nobody holds the lock; give the lock ID as printed by the command that \
                       reported it"
                    .to_string(),
            }),
        };
        let _ = file.unlock();
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// State, its backup, the lock, the journal and its backup: 0600; the folder: 0700.
    #[cfg(unix)]
    #[test]
    fn everything_written_is_private_to_the_owner() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join(".reimage");
        // Made readable before reimage writes there (as the embedded emulator's data dir does).
        std::fs::create_dir_all(folder.join("emulator")).unwrap();
        std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = folder.join("state.json");
        let store = LocalStateStore::new(&path);
        let lock = store.lock("test").unwrap();
        let mut state = State::new();
        store.write(lock.as_ref(), &mut state).unwrap();
        // An older state left readable by others: its backup must not be.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        store.write(lock.as_ref(), &mut state).unwrap();
        let journal = store.journal();
        let entry = super::super::journal::JournalEntry {
            plan_id: "p".into(),
            server: "web".into(),
            provider: "zl".into(),
            cloud_id: "1".into(),
            step: super::super::journal::StepCall::Reinstall,
            at: "2026-01-01T00:00:00Z".into(),
            phase: super::super::journal::JournalPhase::Intent {
                token: "t".into(),
                image: None,
                previous_image: None,
                success_record: None,
                baseline: None,
            },
        };
        journal.append(&[entry]).unwrap();
        // Compacting twice rewrites the journal and keeps the previous one as its backup.
        journal.compact().unwrap();
        journal.compact().unwrap();
        assert_eq!(mode(&folder), 0o700);
        for name in [
            "state.json",
            "state.json.backup",
            "state.json.lock",
            "state.json.journal",
            "state.json.journal.backup",
        ] {
            assert_eq!(mode(&folder.join(name)), 0o600, "{name}");
        }
    }

    #[test]
    fn missing_state_reads_as_none_and_writes_raise_the_serial() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStateStore::new(dir.path().join(".reimage/state.json"));
        assert!(store.read().unwrap().is_none());
        let lock = store.lock("test").unwrap();
        let mut state = State::new();
        store.write(lock.as_ref(), &mut state).unwrap();
        assert_eq!(state.serial, 1);
        store.write(lock.as_ref(), &mut state).unwrap();
        let read = store.read().unwrap().unwrap();
        assert_eq!(read.serial, 2);
        assert_eq!(read.lineage, state.lineage);
    }

    #[test]
    fn second_lock_fails_naming_the_holder_and_drop_releases() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStateStore::new(dir.path().join("state.json"));
        let first = store.lock("reimage apply").unwrap();
        let error = match store.lock("reimage plan") {
            Err(error) => error,
            Ok(_) => panic!("second lock must fail"),
        };
        let message = error.to_string();
        assert!(message.contains("reimage apply"), "{message}");
        assert!(
            message.contains(&std::process::id().to_string()),
            "{message}"
        );
        drop(first);
        assert!(store.lock("reimage plan").is_ok());
    }

    #[test]
    fn a_write_behind_our_back_is_a_conflict() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStateStore::new(dir.path().join("state.json"));
        let lock = store.lock("test").unwrap();
        let mut ours = State::new();
        store.write(lock.as_ref(), &mut ours).unwrap();
        let mut theirs = ours.clone();
        store.write(lock.as_ref(), &mut theirs).unwrap();
        assert!(matches!(
            store.write(lock.as_ref(), &mut ours),
            Err(StateError::Conflict { .. })
        ));
    }

    #[test]
    fn a_state_of_another_lineage_or_none_where_one_was_expected_is_a_conflict() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStateStore::new(dir.path().join("state.json"));
        let lock = store.lock("test").unwrap();
        let mut ours = State::new();
        store.write(lock.as_ref(), &mut ours).unwrap();
        // Replaced behind our back by another lineage at the same serial.
        let mut other = State::new();
        other.serial = ours.serial;
        store
            .replace(lock.as_ref(), &other, Some((&ours.lineage, ours.serial)))
            .unwrap();
        assert!(matches!(
            store.write(lock.as_ref(), &mut ours),
            Err(StateError::Conflict { .. })
        ));
        // A first write where a state exists already.
        let mut fresh = State::new();
        assert!(matches!(
            store.write(lock.as_ref(), &mut fresh),
            Err(StateError::Conflict { expected: 0, .. })
        ));
        assert_eq!(store.read().unwrap().unwrap(), other);
    }

    #[test]
    fn garbage_state_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        std::fs::write(&path, "{not json").unwrap();
        let error = LocalStateStore::new(&path).read().unwrap_err();
        assert!(error.to_string().contains("not a reimage state file"));
    }
}
