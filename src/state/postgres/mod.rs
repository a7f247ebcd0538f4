//! PostgreSQL state backend: the team default. One database can hold several states, each by
//! its `name`; reimage creates and migrates its tables itself ([`schema`]).
//!
//! - The state is a row (name, lineage, serial, JSON body); every write is a compare-and-set
//!   on lineage and serial, so no update is ever lost between two writers.
//! - The lock is a session-level advisory lock whose key derives from the state's name, plus a
//!   row naming the holder. The lock goes with its session, so a killed holder frees it; its
//!   row is then stale and is overwritten by the next holder (or removed by `force-unlock`).
//! - The journal and the history of applies are tables ([`records`]); a journal append
//!   returns only after its transaction committed (`synchronous_commit` on).

mod connection;
mod records;
pub mod schema;

use std::sync::{Arc, Mutex};

use secrecy::SecretString;
use sha2::{Digest, Sha256};
use tokio_postgres::Row;

use connection::{CallResult, Worker, describe};
pub use connection::{TlsMode, Url};
use records::{PostgresHistory, PostgresJournal};

use super::history::History;
use super::journal::Journal;
use super::{LockInfo, State, StateError, StateLock, StateStore, Unlocked};

/// The advisory lock key of a state: the first 8 bytes of SHA-256 over its name, with the top
/// bit set (negative), so it never equals the migration lock's key.
pub fn lock_key(name: &str) -> i64 {
    let digest = Sha256::digest(format!("reimage state\0{name}").as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(bytes) | (1 << 63)) as i64
}

/// The session, the state's name and where it lives; shared by the store and its parts.
struct Db {
    worker: Worker,
    name: String,
    location: String,
}

impl Db {
    fn call<T, F>(&self, job: F) -> CallResult<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(
                &'c mut connection::Session,
            ) -> std::pin::Pin<
                Box<dyn std::future::Future<Output = CallResult<T>> + 'c>,
            > + Send
            + 'static,
    {
        self.worker.call(job)
    }
}

pub struct PostgresStateStore {
    db: Arc<Db>,
    journal: PostgresJournal,
    history: PostgresHistory,
    /// The lock this store holds, if any: PostgreSQL's advisory locks are re-entrant within a
    /// session, reimage's are not.
    held: Arc<Mutex<Option<LockInfo>>>,
}

impl PostgresStateStore {
    /// Connects to the database of `url` (a secret: it holds the password), creates or
    /// migrates reimage's tables, and opens the state `name`.
    pub fn connect(url: &SecretString, name: &str) -> Result<PostgresStateStore, StateError> {
        let unreachable = |location: String, message: String| StateError::Read {
            path: location,
            message,
        };
        let url = Url::parse(url)
            .map_err(|message| unreachable(format!("postgres (state {name})"), message))?;
        let location = format!("{} (state {name})", url.location());
        let worker =
            Worker::connect(url).map_err(|message| unreachable(location.clone(), message))?;
        let applied = worker
            .call(|session| Box::pin(schema::migrate(session)))
            .map_err(|message| unreachable(location.clone(), message))?;
        if !applied.is_empty() {
            tracing::info!("migrated reimage's PostgreSQL tables to schema versions {applied:?}");
        }
        let db = Arc::new(Db {
            worker,
            name: name.to_string(),
            location,
        });
        Ok(PostgresStateStore {
            journal: PostgresJournal::new(db.clone()),
            history: PostgresHistory::new(db.clone()),
            db,
            held: Arc::new(Mutex::new(None)),
        })
    }

    fn read_error(&self, message: String) -> StateError {
        StateError::Read {
            path: self.db.location.clone(),
            message,
        }
    }

    fn write_error(&self, message: String) -> StateError {
        StateError::Write {
            path: self.db.location.clone(),
            message,
        }
    }

    /// The holder row and the backend pid that really holds the advisory lock now, if any.
    fn holder_now(&self) -> Result<HolderNow, StateError> {
        let name = self.db.name.clone();
        let key = lock_key(&name);
        self.db
            .call(move |session| {
                Box::pin(async move {
                    let row = session
                        .client
                        .query_opt(
                            "SELECT id, backend_pid, user_name, host, pid, command, ci_job_url, \
                             to_json(since) #>> '{}' FROM reimage_lock WHERE state_name = $1",
                            &[&name],
                        )
                        .await
                        .map_err(|error| describe(&error))?;
                    let live = live_holder(&session.client, key).await?;
                    Ok((row.map(|row| holder_row(&row)), live))
                })
            })
            .map_err(|message| self.read_error(message))
    }
}

/// The holder row (with the backend pid that wrote it), and the backend pid that holds the
/// advisory lock now.
type HolderNow = (Option<(LockInfo, i32)>, Option<i32>);

/// The backend pid of the session that holds the advisory lock `key` in this database.
async fn live_holder(client: &tokio_postgres::Client, key: i64) -> CallResult<Option<i32>> {
    // A bigint advisory key shows in pg_locks as classid (high half), objid (low half),
    // objsubid 1.
    let high = ((key as u64) >> 32) as i64;
    let low = ((key as u64) & 0xffff_ffff) as i64;
    let row = client
        .query_opt(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted \
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
             AND classid = $1::bigint::oid AND objid = $2::bigint::oid AND objsubid = 1 LIMIT 1",
            &[&high, &low],
        )
        .await
        .map_err(|error| describe(&error))?;
    Ok(row.map(|row| row.get(0)))
}

fn holder_row(row: &Row) -> (LockInfo, i32) {
    let pid: i64 = row.get(4);
    (
        LockInfo {
            id: row.get(0),
            user: row.get(2),
            pid: u32::try_from(pid).unwrap_or(0),
            host: row.get(3),
            command: row.get(5),
            ci_job_url: row.get(6),
            since: row.get::<_, Option<String>>(7).unwrap_or_default(),
        },
        row.get(1),
    )
}

/// A lock held by a session that has not written its holder row (yet): all that is known is
/// the session.
fn anonymous_holder(backend_pid: Option<i32>) -> LockInfo {
    let session = backend_pid.map_or("a PostgreSQL session".to_string(), |pid| {
        format!("PostgreSQL session {pid}")
    });
    LockInfo {
        id: "unknown".to_string(),
        user: String::new(),
        pid: 0,
        host: session,
        command: "not recorded".to_string(),
        ci_job_url: None,
        since: "unknown time".to_string(),
    }
}

const POSTGRES_LOCK_HINT: &str = "wait for that command to finish, or let this one wait for it \
     with `-lock-timeout=5m`. The lock goes with its holder's database session, so a crashed \
     holder never keeps it";

/// A held advisory lock; dropping it removes the holder row and unlocks.
struct PostgresLock {
    db: Arc<Db>,
    info: LockInfo,
    held: Arc<Mutex<Option<LockInfo>>>,
}

impl StateLock for PostgresLock {
    fn info(&self) -> &LockInfo {
        &self.info
    }
}

impl Drop for PostgresLock {
    fn drop(&mut self) {
        let name = self.db.name.clone();
        let id = self.info.id.clone();
        let key = lock_key(&name);
        let released = self.db.call(move |session| {
            Box::pin(async move {
                session
                    .client
                    .execute(
                        "DELETE FROM reimage_lock WHERE state_name = $1 AND id = $2",
                        &[&name, &id],
                    )
                    .await
                    .map_err(|error| describe(&error))?;
                session
                    .client
                    .execute("SELECT pg_advisory_unlock($1)", &[&key])
                    .await
                    .map_err(|error| describe(&error))?;
                Ok(())
            })
        });
        if let Err(message) = released {
            // The session may be gone already, and the lock with it.
            tracing::debug!("releasing the PostgreSQL lock: {message}");
        }
        if let Ok(mut held) = self.held.lock() {
            *held = None;
        }
    }
}

fn to_i64(serial: u64) -> Result<i64, String> {
    i64::try_from(serial).map_err(|_| format!("serial {serial} is too large"))
}

impl StateStore for PostgresStateStore {
    fn location(&self) -> String {
        self.db.location.clone()
    }

    fn name(&self) -> String {
        self.db.name.clone()
    }

    fn lock(&self, command: &str) -> Result<Box<dyn StateLock>, StateError> {
        let mut held = self
            .held
            .lock()
            .map_err(|_| self.write_error("the lock bookkeeping was poisoned".into()))?;
        if let Some(info) = held.as_ref() {
            return Err(StateError::Locked {
                holder: Box::new(info.clone()),
                location: self.location(),
                waited: None,
                hint: POSTGRES_LOCK_HINT.to_string(),
            });
        }
        let info = super::lock::holder(command);
        let name = self.db.name.clone();
        let key = lock_key(&name);
        let row = info.clone();
        let got = self
            .db
            .call(move |session| {
                Box::pin(async move {
                    let got: bool = session
                        .client
                        .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
                        .await
                        .map_err(|error| describe(&error))?
                        .get(0);
                    if !got {
                        return Ok(false);
                    }
                    let recorded = session
                        .client
                        .execute(
                            "INSERT INTO reimage_lock (state_name, id, backend_pid, user_name, \
                             host, pid, command, ci_job_url, since) \
                             VALUES ($1, $2, pg_backend_pid(), $3, $4, $5, $6, $7, \
                             $8::text::timestamptz) \
                             ON CONFLICT (state_name) DO UPDATE SET id = EXCLUDED.id, \
                             backend_pid = EXCLUDED.backend_pid, user_name = EXCLUDED.user_name, \
                             host = EXCLUDED.host, pid = EXCLUDED.pid, command = EXCLUDED.command, \
                             ci_job_url = EXCLUDED.ci_job_url, since = EXCLUDED.since",
                            &[
                                &name,
                                &row.id,
                                &row.user,
                                &row.host,
                                &i64::from(row.pid),
                                &row.command,
                                &row.ci_job_url,
                                &row.since,
                            ],
                        )
                        .await;
                    if let Err(error) = recorded {
                        let _ = session
                            .client
                            .execute("SELECT pg_advisory_unlock($1)", &[&key])
                            .await;
                        return Err(describe(&error));
                    }
                    Ok(true)
                })
            })
            .map_err(|message| self.write_error(format!("cannot take the lock: {message}")))?;
        if !got {
            drop(held);
            let (row, live) = self.holder_now()?;
            let holder = match row {
                Some((holder, backend_pid)) if Some(backend_pid) == live => holder,
                _ => anonymous_holder(live),
            };
            return Err(StateError::Locked {
                holder: Box::new(holder),
                location: self.location(),
                waited: None,
                hint: POSTGRES_LOCK_HINT.to_string(),
            });
        }
        *held = Some(info.clone());
        Ok(Box::new(PostgresLock {
            db: self.db.clone(),
            info,
            held: self.held.clone(),
        }))
    }

    fn read(&self) -> Result<Option<State>, StateError> {
        let name = self.db.name.clone();
        let body = self
            .db
            .call(move |session| {
                Box::pin(async move {
                    let row = session
                        .client
                        .query_opt("SELECT body FROM reimage_state WHERE name = $1", &[&name])
                        .await
                        .map_err(|error| describe(&error))?;
                    Ok(row.map(|row| row.get::<_, serde_json::Value>(0)))
                })
            })
            .map_err(|message| self.read_error(message))?;
        let Some(body) = body else {
            return Ok(None);
        };
        let state: State = serde_json::from_value(body)
            .map_err(|error| self.read_error(format!("not a reimage state: {error}")))?;
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
        let body =
            serde_json::to_value(state).map_err(|error| self.write_error(error.to_string()))?;
        let serial = to_i64(state.serial).map_err(|message| self.write_error(message))?;
        let lineage = state.lineage.clone();
        let expected = match expected {
            Some((lineage, serial)) => Some((
                lineage.to_string(),
                to_i64(serial).map_err(|message| self.write_error(message))?,
            )),
            None => None,
        };
        let expected_serial = expected.as_ref().map_or(0, |(_, serial)| *serial as u64);
        let name = self.db.name.clone();
        let (changed, found) =
            self.db
                .call(move |session| {
                    Box::pin(async move {
                        let changed = match &expected {
                        None => session
                            .client
                            .execute(
                                "INSERT INTO reimage_state (name, lineage, serial, body) \
                                 VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO NOTHING",
                                &[&name, &lineage, &serial, &body],
                            )
                            .await,
                        Some((expected_lineage, expected_serial)) => session
                            .client
                            .execute(
                                "UPDATE reimage_state SET lineage = $2, serial = $3, body = $4, \
                                 updated_at = now() \
                                 WHERE name = $1 AND lineage = $5 AND serial = $6",
                                &[
                                    &name,
                                    &lineage,
                                    &serial,
                                    &body,
                                    expected_lineage,
                                    expected_serial,
                                ],
                            )
                            .await,
                    }
                    .map_err(|error| describe(&error))?;
                        if changed == 1 {
                            return Ok((true, 0));
                        }
                        let found: Option<i64> = session
                            .client
                            .query_opt("SELECT serial FROM reimage_state WHERE name = $1", &[&name])
                            .await
                            .map_err(|error| describe(&error))?
                            .map(|row| row.get(0));
                        Ok((false, found.unwrap_or(0)))
                    })
                })
                .map_err(|message| self.write_error(message))?;
        if changed {
            Ok(())
        } else {
            Err(StateError::Conflict {
                path: self.location(),
                expected: expected_serial,
                found: u64::try_from(found).unwrap_or(0),
            })
        }
    }

    fn journal(&self) -> &dyn Journal {
        &self.journal
    }

    fn history(&self) -> &dyn History {
        &self.history
    }

    fn force_unlock(&self, id: &str) -> Result<Unlocked, StateError> {
        let (row, live) = self.holder_now()?;
        if let Some(backend_pid) = live {
            let holder = match &row {
                Some((holder, row_pid)) if *row_pid == backend_pid => holder.describe(),
                _ => "a session that has not recorded its holder".to_string(),
            };
            return Err(StateError::Unlock {
                location: self.location(),
                reason: format!(
                    "the lock is held by a live PostgreSQL session (backend pid {backend_pid}): \
                     {holder}"
                ),
                hint: format!(
                    "the lock goes with its session: wait for that command, or stop it. If it \
                     hangs, a database administrator can end its session with \
                     `SELECT pg_terminate_backend({backend_pid})`"
                ),
            });
        }
        let Some((holder, _)) = row else {
            return Ok(Unlocked::NotLocked);
        };
        if holder.id != id {
            return Err(StateError::Unlock {
                location: self.location(),
                reason: format!(
                    "lock ID `{id}` does not match the recorded holder's (lock ID `{}`)",
                    holder.id
                ),
                hint: "nobody holds the lock; give the lock ID as printed by the command that \
                       reported it"
                    .to_string(),
            });
        }
        let name = self.db.name.clone();
        let id = id.to_string();
        self.db
            .call(move |session| {
                Box::pin(async move {
                    session
                        .client
                        .execute(
                            "DELETE FROM reimage_lock WHERE state_name = $1 AND id = $2",
                            &[&name, &id],
                        )
                        .await
                        .map_err(|error| describe(&error))
                })
            })
            .map_err(|message| self.write_error(message))?;
        Ok(Unlocked::Removed(Box::new(holder)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_keys_are_stable_distinct_and_negative() {
        assert_eq!(lock_key("default"), lock_key("default"));
        assert_ne!(lock_key("default"), lock_key("staging"));
        for name in ["default", "staging", "eu-west", ""] {
            assert!(lock_key(name) < 0, "{name}");
        }
    }
}
