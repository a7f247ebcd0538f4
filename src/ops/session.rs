//! One session per command: the manifest loaded, the state backend chosen and opened, the lock
//! taken (waiting up to `-lock-timeout`), the state read or started, the providers connected and
//! what an interrupted apply left in flight reconciled. Every command that reads or changes the
//! state goes through it, so they all set up the same way.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::backend::{Backend, open_store};
use super::fleet::{self, Fleet};
use super::history;
use crate::apply::progress::LineReporter;
use crate::apply::{self, Context, Interrupt, Reporter, Settings};
use crate::error::{Error, Result};
use crate::manifest::{DesiredProvider, EmbeddedEmulator, Manifest, SecretCheck};
use crate::output::Printer;
use crate::provider::limits::WaitSink;
use crate::state::history::ServerOutcome;
use crate::state::{State, StateLock, StateStore};

/// Which manifest a command reads, and how strictly.
#[derive(Debug, Clone)]
pub struct ManifestSource {
    pub paths: Vec<PathBuf>,
    /// Whether an unreadable secret is an error (`plan`, `apply`) or a warning.
    pub secrets: SecretCheck,
    /// Also build each provider without network, as `plan` will.
    pub provider_setup: bool,
}

/// A command's state, lock and providers, opened in the order the command needs them.
pub struct Session {
    manifest: Option<Manifest>,
    backend: Backend,
    store: Box<dyn StateStore>,
    lock: Option<Box<dyn StateLock>>,
    fleet: Option<Fleet>,
    waits: WaitSink,
    printer: Printer,
}

/// Loads the manifest; its warnings are printed.
pub fn load_manifest(source: &ManifestSource, printer: &Printer) -> Result<Manifest> {
    let options = super::manifest::load_options(source.secrets, source.provider_setup);
    let loaded = crate::manifest::load(&source.paths, &options)?;
    for warning in &loaded.warnings {
        printer.report(warning.to_report());
    }
    Ok(loaded.manifest)
}

impl Session {
    /// Opens the state `backend` names; `manifest` is kept for the command.
    pub async fn open(
        backend: Backend,
        manifest: Option<Manifest>,
        printer: &Printer,
    ) -> Result<Session> {
        let store = open_store(&backend).await?;
        Ok(Session {
            manifest,
            backend,
            store,
            lock: None,
            fleet: None,
            waits: WaitSink::new(),
            printer: printer.clone(),
        })
    }

    /// The manifest's session: loaded, its providers connected when `connect` (first: a
    /// manifest they refuse leaves no state behind), then its backend opened (`--state PATH`
    /// overrides it).
    pub async fn for_manifest(
        source: &ManifestSource,
        state_override: Option<&PathBuf>,
        connect: bool,
        printer: &Printer,
    ) -> Result<Session> {
        let manifest = load_manifest(source, printer)?;
        let waits = WaitSink::new();
        let fleet = if connect {
            Some(fleet::connect(&manifest.providers, manifest.emulator.as_ref(), &waits).await?)
        } else {
            None
        };
        let backend = Backend::choose(
            manifest.backend.as_ref(),
            &manifest.state_path,
            state_override,
        );
        let mut session = Session::open(backend, Some(manifest), printer).await?;
        session.fleet = fleet;
        session.waits = waits;
        Ok(session)
    }

    /// The state a command names: `--state PATH` alone needs no manifest; otherwise the
    /// manifest's backend (secrets are not read: no record view needs them).
    pub async fn for_state(
        manifest_paths: impl FnOnce() -> Result<Vec<PathBuf>>,
        state: Option<&PathBuf>,
        manifest_given: bool,
        printer: &Printer,
    ) -> Result<Session> {
        if let Some(path) = state
            && !manifest_given
        {
            return Session::open(Backend::Local(path.clone()), None, printer).await;
        }
        let source = ManifestSource {
            paths: manifest_paths()?,
            secrets: SecretCheck::BestEffort,
            provider_setup: false,
        };
        // As before: a state view prints no manifest warnings.
        let options = super::manifest::load_options(source.secrets, source.provider_setup);
        let manifest = crate::manifest::load(&source.paths, &options)?.manifest;
        let backend = Backend::choose(manifest.backend.as_ref(), &manifest.state_path, state);
        Session::open(backend, Some(manifest), printer).await
    }

    /// Builds the given providers (a saved plan's), starting the embedded emulator if they use it.
    pub async fn connect(
        &mut self,
        providers: &BTreeMap<String, DesiredProvider>,
        emulator: Option<&EmbeddedEmulator>,
    ) -> Result<&Fleet> {
        let fleet = fleet::connect(providers, emulator, &self.waits).await?;
        Ok(self.fleet.insert(fleet))
    }

    /// Takes the state lock for `command`, waiting up to `timeout` (`-lock-timeout`) and saying
    /// once on stderr who holds it.
    pub async fn lock(&mut self, command: &str, timeout: Duration) -> Result<()> {
        let lock = take_lock(self.store.as_ref(), command, timeout, &self.printer).await?;
        self.lock = Some(lock);
        Ok(())
    }

    /// Gives the lock back (the session stays readable).
    pub fn unlock(&mut self) {
        self.lock = None;
    }

    /// The state, or a new one (and `true`) when none exists yet; a new one is written only
    /// by whoever knows the command succeeded.
    pub fn read_or_init_state(&self) -> Result<(State, bool)> {
        super::plan::read_or_init_state(self.store.as_ref())
    }

    pub fn manifest(&self) -> Option<&Manifest> {
        self.manifest.as_ref()
    }

    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    pub fn store(&self) -> &dyn StateStore {
        self.store.as_ref()
    }

    pub fn printer(&self) -> &Printer {
        &self.printer
    }

    /// The lock taken with [`Self::lock`].
    pub fn held_lock(&self) -> Result<&dyn StateLock> {
        self.lock.as_deref().ok_or_else(|| Error::Io {
            message: "internal: the state is used before it was locked".to_string(),
        })
    }

    /// The providers connected with [`Self::for_manifest`] or [`Self::connect`].
    pub fn fleet(&self) -> Result<&Fleet> {
        self.fleet.as_ref().ok_or_else(|| Error::Io {
            message: "internal: the providers are used before they were connected".to_string(),
        })
    }

    /// What an apply shares, reporting to `reporter`.
    pub fn context<'a>(&'a self, reporter: &'a dyn Reporter) -> Result<Context<'a>> {
        Ok(Context {
            fleet: self.fleet()?,
            store: self.store(),
            lock: self.held_lock()?,
            reporter,
            interrupt: Interrupt::new(),
            settings: Settings::default(),
        })
    }

    /// Takes over what an interrupted apply left in flight, waiting for it to settle (before an
    /// apply starts anything new); returns the servers it settled.
    pub async fn reconcile_and_wait(
        context: &Context<'_>,
        state: &mut State,
        printer: &Printer,
    ) -> Result<BTreeMap<String, ServerOutcome>> {
        let before = state.servers.clone();
        let unresolved = apply::reconcile_journal(context, state, true).await?;
        for line in &unresolved {
            printer.status(&format!(
                "warning: could not settle an interrupted step: {line}"
            ));
        }
        Ok(history::settled(&before, state))
    }

    /// Settles what it can of an interrupted apply without waiting (before a plan).
    pub async fn reconcile_without_waiting(&self, state: &mut State) -> Result<()> {
        let reporter = LineReporter::new(self.printer.clone());
        let context = self.context(&reporter)?;
        let unresolved = apply::reconcile_journal(&context, state, false).await?;
        for line in &unresolved {
            self.printer.status(&format!(
                "warning: an interrupted apply is still in flight: {line}"
            ));
        }
        Ok(())
    }
}

/// Takes the lock of `store` for `command`, waiting up to `timeout` and saying once who holds it.
pub async fn take_lock(
    store: &dyn StateStore,
    command: &str,
    timeout: Duration,
    printer: &Printer,
) -> Result<Box<dyn StateLock>> {
    let lock = crate::state::lock::acquire(store, command, timeout, |holder| {
        printer.status(&format!(
            "Waiting up to {} for the state lock, held by {}",
            crate::state::lock::format_duration(timeout),
            holder.describe()
        ));
    })
    .await?;
    Ok(lock)
}

/// The folder of the first of `files` (the current folder for a bare file name).
pub fn first_folder(files: &[PathBuf]) -> PathBuf {
    files
        .first()
        .and_then(|file| file.parent())
        .filter(|parent| !parent.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--state PATH` alone opens that local file and reads no manifest (none may exist).
    #[tokio::test]
    async fn a_state_path_alone_needs_no_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let session = Session::for_state(
            || panic!("no manifest is looked for"),
            Some(&path),
            false,
            &Printer::from_environment().without_color(),
        )
        .await
        .unwrap();
        assert!(session.manifest().is_none());
        assert_eq!(session.backend(), &Backend::Local(path.clone()));
        assert!(session.store().location().contains("state.json"));
    }

    /// The lock is there only between `lock` and `unlock`; while one session holds it, another
    /// cannot take it (the default `-lock-timeout` of zero fails at once).
    #[tokio::test]
    async fn the_lock_is_held_from_lock_to_unlock() {
        let dir = tempfile::tempdir().unwrap();
        let backend = Backend::Local(dir.path().join("state.json"));
        let printer = Printer::from_environment().without_color();
        let mut first = Session::open(backend.clone(), None, &printer)
            .await
            .unwrap();
        assert!(first.held_lock().is_err());
        assert!(first.fleet().is_err());
        first.lock("reimage plan", Duration::ZERO).await.unwrap();
        assert!(first.held_lock().is_ok());
        let mut second = Session::open(backend, None, &printer).await.unwrap();
        let refused = second.lock("reimage apply", Duration::ZERO).await;
        assert!(refused.is_err(), "a second session took a held lock");
        first.unlock();
        assert!(first.held_lock().is_err());
        second.lock("reimage apply", Duration::ZERO).await.unwrap();
    }
}
