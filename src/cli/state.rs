//! `reimage state adopt NAME --image IMAGE`: record a server without touching it.
//! `reimage state push`: move a local state into the manifest's backend.

use std::process::ExitCode;

use super::{StateAdoptArgs, StatePushArgs, lock_state, open_state};
use crate::error::{Error, Result};
use crate::manifest::SecretCheck;
use crate::ops::backend::Backend;
use crate::ops::state::{AdoptRequest, adopt as adopt_server};
use crate::output::Printer;
use crate::state::local::LocalStateStore;

pub async fn adopt(args: StateAdoptArgs, printer: &Printer) -> Result<ExitCode> {
    // Secrets are read: the record holds keyed digests of the install inputs, password included.
    let manifest = args.manifest.load(SecretCheck::Required, printer)?.manifest;
    let backend = Backend::choose(
        manifest.backend.as_ref(),
        &manifest.state_path,
        args.state.as_ref(),
    );
    let store = open_state(&backend).await?;
    let lock = lock_state(
        store.as_ref(),
        "reimage state adopt",
        args.lock.lock_timeout,
        printer,
    )
    .await?;
    let adopted = adopt_server(
        &manifest,
        store.as_ref(),
        lock.as_ref(),
        &AdoptRequest {
            server: args.name,
            image: args.image,
            force: args.force,
        },
    )?;
    let record = &adopted.record;
    if let Some(previous) = &adopted.replaced {
        let what = if previous.cloud_id == record.cloud_id {
            format!("replacing its record (image `{}`)", previous.image)
        } else {
            format!(
                "replacing a record of another machine (id {})",
                previous.cloud_id
            )
        };
        printer.status(&format!("{}: {what}.", adopted.server));
    }
    printer.out(&format!(
        "Adopted `{}` ({} `{}`, id {}): recorded as running `{}` in `{}` (serial {}). The machine \
         was not touched.\n",
        adopted.server,
        record.provider_type,
        record.provider,
        record.cloud_id,
        record.image,
        adopted.state_location,
        adopted.serial
    ));
    if record.image == adopted.desired_image {
        printer.out("It matches the manifest's image: the next plan shows no change for it.\n");
    } else {
        printer.out(&format!(
            "The manifest wants `{}`: the next plan will reinstall it.\n",
            adopted.desired_image
        ));
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn push(args: StatePushArgs, printer: &Printer) -> Result<ExitCode> {
    // The backend's URL is the only secret needed; servers' secrets are not read.
    let manifest = args
        .manifest
        .load(SecretCheck::BestEffort, printer)?
        .manifest;
    let Some(remote) = manifest.backend.clone() else {
        return Err(Error::usage(
            "the manifest's backend is the local state file: there is nowhere to push to",
            "set `backend: {type: postgres, url: {env: NAME}}` in the manifest, then push",
        ));
    };
    let source_path = args.from.clone().unwrap_or(manifest.state_path.clone());
    let source = LocalStateStore::new(&source_path);
    let target = open_state(&Backend::Remote(remote)).await?;
    let command = "reimage state push";
    let timeout = args.lock.lock_timeout;
    let source_lock = lock_state(&source, command, timeout, printer).await?;
    let target_lock = lock_state(target.as_ref(), command, timeout, printer).await?;
    let pushed = crate::ops::push::push(
        &source,
        source_lock.as_ref(),
        target.as_ref(),
        target_lock.as_ref(),
        args.force,
    )?;
    if args.json {
        let text = serde_json::to_string_pretty(&pushed).map_err(super::io_error)?;
        printer.out(&format!("{text}\n"));
        return Ok(ExitCode::SUCCESS);
    }
    let replaced = match &pushed.replaced {
        Some((lineage, serial)) => {
            format!(" It replaced the state of lineage {lineage} (serial {serial}).")
        }
        None => String::new(),
    };
    printer.out(&format!(
        "Pushed the state `{}` to `{}`: lineage {}, serial {}, {} server(s), {} journal \
         entr{}, {} history entr{}.{replaced}\n",
        pushed.from,
        pushed.to,
        pushed.lineage,
        pushed.serial,
        pushed.servers,
        pushed.journal_entries,
        if pushed.journal_entries == 1 {
            "y"
        } else {
            "ies"
        },
        pushed.history_entries,
        if pushed.history_entries == 1 {
            "y"
        } else {
            "ies"
        },
    ));
    if !pushed.renamed.is_empty() {
        let files: Vec<String> = pushed
            .renamed
            .iter()
            .map(|path| format!("  {}", path.display()))
            .collect();
        printer.out(&format!(
            "The local files were set aside (renamed), so no later run takes them for the \
             state:\n{}\n",
            files.join("\n")
        ));
    }
    Ok(ExitCode::SUCCESS)
}
