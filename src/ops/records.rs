//! The state's records, for `reimage state list`, `state show NAME` and `state rm NAME...`.
//!
//! Reading takes no lock (every write is atomic, so a reader sees a whole state). Forgetting
//! takes the lock, writes atomically, and never touches a machine; it refuses a server whose
//! journaled step is still in flight, since an install may be running that nobody watches.
//! Nothing here prints the state's digest key: views are built from the records alone.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::manifest::ProviderType;
use crate::manifest::diagnostics::did_you_mean;
use crate::state::journal::fold;
use crate::state::{OperationRecord, ServerRecord, State, StateStore};

/// Which state, for output.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StateInfo {
    pub name: String,
    pub location: String,
    /// `None` when no state exists yet.
    pub lineage: Option<String>,
    pub serial: u64,
}

impl StateInfo {
    fn of(store: &dyn StateStore, state: Option<&State>) -> Self {
        StateInfo {
            name: store.name(),
            location: store.location(),
            lineage: state.map(|state| state.lineage.clone()),
            serial: state.map(|state| state.serial).unwrap_or(0),
        }
    }
}

/// One line of `state list`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RecordLine {
    pub name: String,
    pub provider: String,
    pub provider_type: ProviderType,
    pub cloud_id: String,
    pub image: String,
    pub revision: u64,
    pub protected: bool,
    pub last_operation: Option<OperationRecord>,
    pub updated_at: String,
}

/// `state list`: every record, in name order.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Listing {
    pub state: StateInfo,
    pub servers: Vec<RecordLine>,
}

/// `state show NAME`: one record in full (keyed digests of its inputs included; never a key).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Shown {
    pub state: StateInfo,
    pub name: String,
    pub record: ServerRecord,
}

pub fn list(store: &dyn StateStore) -> Result<Listing> {
    let state = store.read()?;
    let servers = state
        .iter()
        .flat_map(|state| &state.servers)
        .map(|(name, record)| RecordLine {
            name: name.clone(),
            provider: record.provider.clone(),
            provider_type: record.provider_type,
            cloud_id: record.cloud_id.clone(),
            image: record.image.clone(),
            revision: record.revision,
            protected: record.protected,
            last_operation: record.last_operation.clone(),
            updated_at: record.updated_at.clone(),
        })
        .collect();
    Ok(Listing {
        state: StateInfo::of(store, state.as_ref()),
        servers,
    })
}

pub fn show(store: &dyn StateStore, name: &str) -> Result<Shown> {
    let state = store.read()?;
    let record = state
        .as_ref()
        .and_then(|state| state.servers.get(name))
        .cloned();
    match record {
        Some(record) => Ok(Shown {
            state: StateInfo::of(store, state.as_ref()),
            name: name.to_string(),
            record,
        }),
        None => Err(unknown_record(store, state.as_ref(), name, "")),
    }
}

/// What `state rm` removed.
#[derive(Debug, Clone)]
pub struct Forgotten {
    pub records: Vec<(String, ServerRecord)>,
    pub state: StateInfo,
}

/// Removes the records of `names` (all or none). Takes the lock; the machines are untouched.
pub fn forget(store: &dyn StateStore, names: &[String]) -> Result<Forgotten> {
    let lock = store.lock("reimage state rm")?;
    let mut state = store.read()?;
    let unique: BTreeSet<&str> = names.iter().map(String::as_str).collect();
    for name in &unique {
        if !state
            .as_ref()
            .is_some_and(|state| state.servers.contains_key(*name))
        {
            return Err(unknown_record(
                store,
                state.as_ref(),
                name,
                "; nothing was removed",
            ));
        }
    }
    let Some(state) = state.as_mut() else {
        return Err(Error::usage(
            "nothing to remove: the state is empty",
            "`reimage state list` shows what the state records",
        ));
    };
    let entries = store
        .journal()
        .read()
        .map_err(|error| Error::State(error.into()))?;
    let busy: Vec<String> = fold(&entries)
        .into_iter()
        .filter(|step| step.in_flight() && unique.contains(step.server.as_str()))
        .map(|step| {
            format!(
                "`{}` (a `{}` step of plan {})",
                step.server,
                step.step.as_str(),
                step.plan_id
            )
        })
        .collect();
    if !busy.is_empty() {
        return Err(Error::usage(
            format!(
                "refusing to forget {}: an apply step is still in flight for it, so an install may \
                 be running that nobody watches; nothing was removed",
                busy.join(", ")
            ),
            "run `reimage apply` (or `reimage plan`) to settle the interrupted apply first, then \
             forget the server",
        ));
    }
    let mut records = Vec::new();
    for name in unique {
        if let Some(record) = state.servers.remove(name) {
            records.push((name.to_string(), record));
        }
    }
    store.write(lock.as_ref(), state)?;
    Ok(Forgotten {
        records,
        state: StateInfo::of(store, Some(state)),
    })
}

fn unknown_record(
    store: &dyn StateStore,
    state: Option<&State>,
    name: &str,
    consequence: &str,
) -> Error {
    let names: Vec<&str> = state
        .map(|state| state.servers.keys().map(String::as_str).collect())
        .unwrap_or_default();
    let help = match did_you_mean(name, names.iter().copied()) {
        Some(close) => format!("did you mean `{close}`?"),
        None if names.is_empty() => "the state records no server yet".to_string(),
        None => {
            let mut list = names
                .iter()
                .take(20)
                .copied()
                .collect::<Vec<_>>()
                .join(", ");
            if names.len() > 20 {
                list.push_str(", …");
            }
            format!("servers in the state: {list} (`reimage state list`)")
        }
    };
    Error::usage(
        format!(
            "no server named `{name}` in the state `{}`{consequence}",
            store.location()
        ),
        help,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::journal::{JournalEntry, JournalPhase, StepCall};
    use crate::state::local::LocalStateStore;
    use crate::state::{OperationKind, Outcome};

    fn record(image: &str) -> ServerRecord {
        ServerRecord {
            provider: "zl".into(),
            provider_type: ProviderType::ZenlayerBmc,
            cloud_id: format!("id-{image}"),
            image: image.into(),
            revision: 0,
            input_digests: Default::default(),
            hostname: None,
            user_data: None,
            ssh_key_id: None,
            protected: image == "db",
            attempt_only: false,
            last_operation: Some(OperationRecord {
                kind: OperationKind::Reinstall,
                plan_id: "p".into(),
                outcome: Outcome::Succeeded,
                message: None,
                request_id: None,
                job_id: None,
                started_at: "t".into(),
                finished_at: "t".into(),
                health: None,
            }),
            updated_at: "t".into(),
        }
    }

    fn store_with(names: &[&str]) -> (tempfile::TempDir, LocalStateStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStateStore::new(dir.path().join("state.json"));
        let lock = store.lock("test").unwrap();
        let mut state = State::new();
        for name in names {
            state.servers.insert(name.to_string(), record(name));
        }
        store.write(lock.as_ref(), &mut state).unwrap();
        (dir, store)
    }

    #[test]
    fn list_and_show_read_the_records_without_the_digest_key() {
        let (_dir, store) = store_with(&["web", "db"]);
        let listing = list(&store).unwrap();
        assert_eq!(
            listing
                .servers
                .iter()
                .map(|line| line.name.as_str())
                .collect::<Vec<_>>(),
            ["db", "web"]
        );
        assert!(listing.servers[0].protected);
        assert_eq!(listing.state.serial, 1);
        assert_eq!(listing.state.name, "default");
        let key = store.read().unwrap().unwrap().digest_key;
        let text = serde_json::to_string(&listing).unwrap()
            + &serde_json::to_string(&show(&store, "web").unwrap()).unwrap();
        assert!(!text.contains(&key), "{text}");

        let unknown = show(&store, "webb").unwrap_err();
        assert!(matches!(unknown, Error::Usage { ref help, .. } if help == "did you mean `web`?"));
        let empty = tempfile::tempdir().unwrap();
        let none = LocalStateStore::new(empty.path().join("state.json"));
        assert!(list(&none).unwrap().servers.is_empty());
    }

    #[test]
    fn forget_removes_only_named_records_all_or_nothing() {
        let (_dir, store) = store_with(&["web", "db", "cache"]);
        let refused = forget(&store, &["web".into(), "dbb".into()]).unwrap_err();
        assert!(
            refused.to_string().contains("nothing was removed"),
            "{refused}"
        );
        assert_eq!(store.read().unwrap().unwrap().servers.len(), 3);

        let forgotten = forget(&store, &["web".into(), "db".into(), "web".into()]).unwrap();
        assert_eq!(forgotten.records.len(), 2);
        assert_eq!(forgotten.state.serial, 2);
        let state = store.read().unwrap().unwrap();
        assert_eq!(state.servers.keys().collect::<Vec<_>>(), ["cache"]);
    }

    #[test]
    fn forget_takes_the_lock_and_refuses_a_server_with_a_step_in_flight() {
        let (_dir, store) = store_with(&["web"]);
        let held = store.lock("reimage apply").unwrap();
        let locked = forget(&store, &["web".into()]).unwrap_err();
        assert!(locked.to_string().contains("reimage apply"), "{locked}");
        drop(held);

        store
            .journal()
            .append(&[JournalEntry {
                plan_id: "p-9".into(),
                server: "web".into(),
                provider: "zl".into(),
                cloud_id: "id-web".into(),
                step: StepCall::Reinstall,
                at: "t".into(),
                phase: JournalPhase::Intent {
                    token: "t".into(),
                    image: None,
                    previous_image: None,
                    success_record: None,
                    baseline: None,
                },
            }])
            .unwrap();
        let busy = forget(&store, &["web".into()]).unwrap_err().to_string();
        assert!(busy.contains("`reinstall` step of plan p-9"), "{busy}");
        assert!(store.read().unwrap().unwrap().servers.contains_key("web"));
    }
}
