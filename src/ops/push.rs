//! `reimage state push` (alias `state migrate`): moves a local state, with its journal and its
//! history, into the manifest's backend, the way a team moves from a laptop's state file to a
//! shared database. Both states are locked throughout.

use std::path::PathBuf;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::state::journal::fold;
use crate::state::local::LocalStateStore;
use crate::state::{StateLock, StateStore};

/// What was moved, for the command to say (`--json` prints it as is).
#[derive(Debug, Clone, Serialize)]
pub struct Pushed {
    pub from: String,
    pub to: String,
    pub lineage: String,
    /// The serial of the state in the backend now.
    pub serial: u64,
    /// The state the backend held before, when it held one (`[lineage, serial]`).
    pub replaced: Option<(String, u64)>,
    pub servers: usize,
    pub journal_entries: usize,
    pub history_entries: usize,
    /// The local files, renamed so that no later run takes them for the state.
    pub renamed: Vec<PathBuf>,
}

/// `state push` with its stores: the manifest's local state (or `from`) pushed into the
/// manifest's remote backend, both locked for `timeout`. Only the backend's URL is read of the
/// manifest's secrets.
pub async fn push_to_backend(
    manifest: &super::session::ManifestSource,
    from: Option<&PathBuf>,
    timeout: std::time::Duration,
    force: bool,
    printer: &crate::output::Printer,
) -> Result<Pushed> {
    let manifest = super::session::load_manifest(manifest, printer)?;
    let Some(remote) = manifest.backend.clone() else {
        return Err(Error::usage(
            "the manifest's backend is the local state file: there is nowhere to push to",
            "set `backend: {type: postgres, url: {env: NAME}}` in the manifest, then push",
        ));
    };
    let source_path = from.cloned().unwrap_or(manifest.state_path.clone());
    let source = LocalStateStore::new(&source_path);
    let target = super::backend::open_store(&super::backend::Backend::Remote(remote)).await?;
    let command = "reimage state push";
    let take_lock = super::session::take_lock;
    let source_lock = take_lock(&source, command, timeout, printer).await?;
    let target_lock = take_lock(target.as_ref(), command, timeout, printer).await?;
    push(
        &source,
        source_lock.as_ref(),
        target.as_ref(),
        target_lock.as_ref(),
        force,
    )
}

/// Moves the state of `source` into `target`. Refuses, changing nothing, when the target holds
/// a state of another lineage or a newer serial of the same one (unless `force`), or has apply
/// steps of its own in flight (always: they would be lost track of).
pub fn push(
    source: &LocalStateStore,
    _source_lock: &dyn StateLock,
    target: &dyn StateStore,
    target_lock: &dyn StateLock,
    force: bool,
) -> Result<Pushed> {
    let Some(state) = source.read()? else {
        return Err(Error::usage(
            format!(
                "there is no local state at `{}`: nothing to push",
                source.location()
            ),
            "name the local state file with `--from PATH`",
        ));
    };
    let entries = source
        .journal()
        .read()
        .map_err(|error| Error::State(error.into()))?;
    let history = source
        .history()
        .list(None)
        .map_err(|error| Error::State(error.into()))?;

    let target_entries = target
        .journal()
        .read()
        .map_err(|error| Error::State(error.into()))?;
    if !target_entries.is_empty() {
        let in_flight = fold(&target_entries)
            .iter()
            .filter(|step| step.in_flight())
            .count();
        return Err(Error::usage(
            format!(
                "`{}` has an interrupted apply in its journal ({} entries, {in_flight} step(s) in \
                 flight); pushing now would lose track of them. Nothing was changed",
                target.location(),
                target_entries.len()
            ),
            "run `reimage plan` against the backend first: it settles the interrupted steps",
        ));
    }
    let current = target.read()?;
    if let Some(current) = &current
        && !force
    {
        if current.lineage != state.lineage {
            return Err(Error::usage(
                format!(
                    "`{}` already holds a state of another lineage ({}, serial {}, {} servers); \
                     the local state is lineage {} (serial {}). Nothing was changed",
                    target.location(),
                    current.lineage,
                    current.serial,
                    current.servers.len(),
                    state.lineage,
                    state.serial
                ),
                "pass `-force` to replace it: its records are then lost (no machine is touched); \
                 or give this fleet its own state with `backend.name`",
            ));
        }
        if current.serial >= state.serial {
            return Err(Error::usage(
                format!(
                    "`{}` already holds this state at serial {} (the local one is at serial {}); \
                     nothing was changed",
                    target.location(),
                    current.serial,
                    state.serial
                ),
                "the backend is up to date or newer; pass `-force` to overwrite it anyway",
            ));
        }
    }
    let mut pushed = state.clone();
    if let Some(current) = &current {
        // The serial only ever goes up in the backend, so a plan made against its previous
        // state is refused as stale.
        pushed.serial = state.serial.max(current.serial) + 1;
    }
    let expected = current
        .as_ref()
        .map(|current| (current.lineage.as_str(), current.serial));
    target.replace(target_lock, &pushed, expected)?;
    target
        .journal()
        .append(&entries)
        .map_err(|error| Error::State(error.into()))?;
    for entry in &history {
        target
            .history()
            .append(entry)
            .map_err(|error| Error::State(error.into()))?;
    }

    let mut renamed = Vec::new();
    for path in source.files() {
        if !path.exists() {
            continue;
        }
        let mut moved = path.clone().into_os_string();
        moved.push(".pushed");
        let moved = PathBuf::from(moved);
        fs_err::rename(&path, &moved).map_err(|error| Error::Io {
            message: format!(
                "the state was pushed, but the local file could not be set aside: {error}"
            ),
        })?;
        renamed.push(moved);
    }
    Ok(Pushed {
        from: source.location(),
        to: target.location(),
        lineage: pushed.lineage.clone(),
        serial: pushed.serial,
        replaced: current.map(|current| (current.lineage, current.serial)),
        servers: pushed.servers.len(),
        journal_entries: entries.len(),
        history_entries: history.len(),
        renamed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::State;
    use crate::state::journal::{JournalEntry, JournalPhase, StepCall, StepState};

    fn in_flight(entries: &[JournalEntry]) -> Vec<StepState> {
        fold(entries)
            .into_iter()
            .filter(StepState::in_flight)
            .collect()
    }

    fn intent(server: &str) -> JournalEntry {
        JournalEntry {
            plan_id: "p1".into(),
            server: server.into(),
            provider: "zl".into(),
            cloud_id: "1".into(),
            step: StepCall::Reinstall,
            at: "2026-01-01T00:00:00Z".into(),
            phase: JournalPhase::Intent {
                token: "t".into(),
                image: None,
                previous_image: None,
                success_record: None,
                baseline: None,
            },
        }
    }

    fn local_state(dir: &std::path::Path, name: &str) -> (LocalStateStore, State) {
        let store = LocalStateStore::new(dir.join(name));
        let lock = store.lock("test").unwrap();
        let mut state = State::new();
        store.write(lock.as_ref(), &mut state).unwrap();
        store.write(lock.as_ref(), &mut state).unwrap();
        (store, state)
    }

    #[test]
    fn a_local_state_moves_with_its_journal_and_history_and_is_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let (source, state) = local_state(dir.path(), "state.json");
        source.journal().append(&[intent("web-1")]).unwrap();
        source
            .history()
            .append(&crate::state::history::sample("p0"))
            .unwrap();
        let target = LocalStateStore::new(dir.path().join("shared/state.json"));
        let source_lock = source.lock("reimage state push").unwrap();
        let target_lock = target.lock("reimage state push").unwrap();
        let pushed = push(
            &source,
            source_lock.as_ref(),
            &target,
            target_lock.as_ref(),
            false,
        )
        .unwrap();
        assert_eq!(pushed.serial, state.serial);
        assert_eq!(pushed.journal_entries, 1);
        assert_eq!(pushed.history_entries, 1);
        assert_eq!(pushed.renamed.len(), 3);
        assert_eq!(target.read().unwrap().unwrap(), state);
        assert_eq!(in_flight(&target.journal().read().unwrap()).len(), 1);
        assert_eq!(target.history().list(None).unwrap().len(), 1);
        assert!(
            source.read().unwrap().is_none(),
            "the local state was set aside"
        );
        assert!(dir.path().join("state.json.pushed").exists());
    }

    #[test]
    fn another_lineage_a_newer_state_or_steps_in_flight_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (source, state) = local_state(dir.path(), "a.json");
        let (target, other) = local_state(dir.path(), "b.json");
        let source_lock = source.lock("push").unwrap();
        let target_lock = target.lock("push").unwrap();
        let refused = push(
            &source,
            source_lock.as_ref(),
            &target,
            target_lock.as_ref(),
            false,
        )
        .unwrap_err()
        .to_string();
        assert!(refused.contains("another lineage"), "{refused}");
        assert_eq!(target.read().unwrap().unwrap(), other, "nothing changed");
        assert!(source.read().unwrap().is_some());

        // Forced: replaced, with a serial above both.
        let forced = push(
            &source,
            source_lock.as_ref(),
            &target,
            target_lock.as_ref(),
            true,
        )
        .unwrap();
        assert_eq!(forced.replaced, Some((other.lineage.clone(), other.serial)));
        let now = target.read().unwrap().unwrap();
        assert_eq!(now.lineage, state.lineage);
        assert_eq!(now.serial, state.serial.max(other.serial) + 1);

        // The same lineage, already newer in the target: refused.
        let (again, _) = local_state(dir.path(), "c.json");
        std::fs::copy(dir.path().join("a.json.pushed"), dir.path().join("c.json")).unwrap();
        let again_lock = again.lock("push").unwrap();
        let stale = push(
            &again,
            again_lock.as_ref(),
            &target,
            target_lock.as_ref(),
            false,
        )
        .unwrap_err()
        .to_string();
        assert!(
            stale.contains("already holds this state at serial"),
            "{stale}"
        );

        // Steps in flight in the target: refused even with force.
        target.journal().append(&[intent("db-1")]).unwrap();
        let busy = push(
            &again,
            again_lock.as_ref(),
            &target,
            target_lock.as_ref(),
            true,
        )
        .unwrap_err()
        .to_string();
        assert!(busy.contains("interrupted apply"), "{busy}");
    }

    #[test]
    fn no_local_state_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let source = LocalStateStore::new(dir.path().join("none.json"));
        let target = LocalStateStore::new(dir.path().join("t.json"));
        let source_lock = source.lock("push").unwrap();
        let target_lock = target.lock("push").unwrap();
        let error = push(
            &source,
            source_lock.as_ref(),
            &target,
            target_lock.as_ref(),
            false,
        )
        .unwrap_err();
        assert!(error.to_string().contains("nothing to push"), "{error}");
    }
}
