//! `reimage force-unlock ID [-force]`: remove the description of a lock whose holder is gone.
//!
//! Both backends' locks die with their holder (process or database session), so there is
//! never a live lock to break: a live holder is refused, and what is left to remove is the
//! description a killed holder could not clear.

use std::process::ExitCode;

use super::ForceUnlockArgs;
use crate::apply::confirm;
use crate::error::{Error, Result};
use crate::manifest::SecretCheck;
use crate::ops::backend::{Backend, force_unlock};
use crate::ops::session::{ManifestSource, Session, load_manifest};
use crate::output::Printer;
use crate::state::Unlocked;

pub async fn run(args: ForceUnlockArgs, printer: &Printer) -> Result<ExitCode> {
    // `--state PATH` alone names a local state: no manifest needed.
    let backend = match &args.state {
        Some(path) if args.manifest.files.is_empty() => Backend::Local(path.clone()),
        _ => {
            let manifest = load_manifest(
                &ManifestSource {
                    paths: args.manifest.paths()?,
                    secrets: SecretCheck::BestEffort,
                    provider_setup: true,
                },
                printer,
            )?;
            Backend::choose(
                manifest.backend.as_ref(),
                &manifest.state_path,
                args.state.as_ref(),
            )
        }
    };
    let local = matches!(backend, Backend::Local(_));
    let session = Session::open(backend, None, printer).await?;
    let store = session.store();
    if !args.force {
        if !confirm::can_ask() {
            return Err(Error::usage(
                "refusing to force-unlock without confirmation: standard input is not a terminal",
                "pass `-force` to skip the question; nothing was changed",
            ));
        }
        let question = format!(
            "Do you really want to force-unlock `{}` (lock ID {})?\n  reimage removes the \
             lock's description once it has checked that its holder is gone.\n  Only 'yes' will \
             be accepted to confirm.\n\nEnter a value: ",
            store.location(),
            args.id
        );
        if !confirm::ask(&question).map_err(super::io_error)? {
            printer.status("force-unlock cancelled: nothing was changed.");
            return Ok(ExitCode::FAILURE);
        }
    }
    let done = force_unlock(store, local, &args.id)?;
    let lock_kind = if done.local {
        "A local state lock is the operating system's lock on `state.json.lock` and dies with \
         its process: there was no lock to break."
    } else {
        "A PostgreSQL state lock is an advisory lock of its holder's database session and ends \
         with that session: no live session holds it."
    };
    match done.outcome {
        Unlocked::Removed(holder) => printer.out(&format!(
            "{lock_kind}\nRemoved the description left by {} from `{}`.\n",
            holder.describe(),
            done.location
        )),
        Unlocked::NotLocked => printer.out(&format!(
            "{lock_kind}\n`{}` is not locked and holds no stale description: nothing to do.\n",
            done.location
        )),
    }
    Ok(ExitCode::SUCCESS)
}
