//! `reimage state …`: read and change the state without touching any machine. `adopt` records a
//! server; `list` and `show` read records; `rm` forgets them; `push` moves a local state into
//! the manifest's backend.

use std::process::ExitCode;

use super::{
    StateAdoptArgs, StateListArgs, StateLocationArgs, StatePushArgs, StateRmArgs, StateShowArgs,
};
use crate::error::Result;
use crate::manifest::SecretCheck;
use crate::ops::records;
use crate::ops::session::{ManifestSource, Session};
use crate::ops::state::{AdoptRequest, adopt_in_session};
use crate::output::Printer;
use crate::state::{OperationKind, OperationRecord, Outcome};

pub async fn adopt(args: StateAdoptArgs, printer: &Printer) -> Result<ExitCode> {
    // Secrets are read: the record holds keyed digests of the install inputs, password included.
    let manifest = ManifestSource {
        paths: args.manifest.paths()?,
        secrets: SecretCheck::Required,
        provider_setup: false,
    };
    let adopted = adopt_in_session(
        &manifest,
        args.state.as_ref(),
        args.lock.lock_timeout,
        &AdoptRequest {
            server: args.name,
            image: args.image,
            force: args.force,
        },
        printer,
    )
    .await?;
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

/// The session of the state the arguments name (with the manifest when one was read).
pub(super) async fn located(location: &StateLocationArgs, printer: &Printer) -> Result<Session> {
    Session::for_state(
        || location.manifest.paths(),
        location.state.as_ref(),
        !location.manifest.files.is_empty(),
        printer,
    )
    .await
}

fn json_line(value: &impl serde::Serialize) -> Result<String> {
    serde_json::to_string_pretty(value)
        .map(|text| format!("{text}\n"))
        .map_err(super::io_error)
}

fn last_outcome(operation: Option<&OperationRecord>) -> String {
    match operation {
        Some(operation) => format!(
            "{} {} at {}",
            match operation.kind {
                OperationKind::Adopt => "adopt",
                OperationKind::Reinstall => "reinstall",
            },
            match operation.outcome {
                Outcome::Succeeded => "succeeded",
                Outcome::Failed => "FAILED",
                Outcome::Unknown => "OUTCOME UNKNOWN",
                Outcome::Refused => "refused (nothing happened)",
                Outcome::GateFailed => "installed, HEALTH GATE FAILED",
            },
            operation.finished_at
        ),
        None => "(none)".to_string(),
    }
}

pub async fn list(args: StateListArgs, printer: &Printer) -> Result<ExitCode> {
    let session = located(&args.location, printer).await?;
    let store = session.store();
    let listing = records::list(store)?;
    if args.json {
        printer.out(&json_line(&listing)?);
        return Ok(ExitCode::SUCCESS);
    }
    let state = &listing.state;
    if state.lineage.is_none() {
        printer.out(&format!(
            "No state at `{}` yet: nothing is recorded.\n",
            state.location
        ));
        return Ok(ExitCode::SUCCESS);
    }
    let mut rows = vec![[
        "NAME".to_string(),
        "PROVIDER".to_string(),
        "ID".to_string(),
        "IMAGE".to_string(),
        "PROTECTED".to_string(),
        "LAST OPERATION".to_string(),
    ]];
    for line in &listing.servers {
        rows.push([
            line.name.clone(),
            format!("{} `{}`", line.provider_type, line.provider),
            line.cloud_id.clone(),
            line.image.clone(),
            if line.protected { "yes" } else { "-" }.to_string(),
            last_outcome(line.last_operation.as_ref()),
        ]);
    }
    let mut widths = [0usize; 6];
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut text = format!(
        "State `{}` (name `{}`, serial {}): {} server(s)\n",
        state.location,
        state.name,
        state.serial,
        listing.servers.len()
    );
    for row in &rows {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        text.push_str(cells.join("  ").trim_end());
        text.push('\n');
    }
    printer.out(&text);
    Ok(ExitCode::SUCCESS)
}

pub async fn show(args: StateShowArgs, printer: &Printer) -> Result<ExitCode> {
    let session = located(&args.location, printer).await?;
    let store = session.store();
    let shown = records::show(store, &args.name)?;
    if args.json {
        printer.out(&json_line(&shown)?);
        return Ok(ExitCode::SUCCESS);
    }
    let record = &shown.record;
    let optional = |value: &Option<String>| value.clone().unwrap_or_else(|| "(none)".to_string());
    let mut text = format!(
        "{} ({} `{}`, id {})\n  image: {}\n  revision: {}\n  protected: {}\n  hostname: {}\n  ssh_key_id: {}\n",
        shown.name,
        record.provider_type,
        record.provider,
        record.cloud_id,
        record.image,
        record.revision,
        if record.protected { "yes" } else { "no" },
        optional(&record.hostname),
        optional(&record.ssh_key_id),
    );
    match &record.user_data {
        Some(user_data) => {
            text.push_str("  user_data:\n");
            for line in user_data.lines() {
                text.push_str(&format!("    {line}\n"));
            }
        }
        None => text.push_str("  user_data: (none)\n"),
    }
    text.push_str("  input digests (HMAC-SHA256 with the state's key):\n");
    for (field, digest) in &record.input_digests {
        text.push_str(&format!(
            "    {field}: {}\n",
            digest.as_deref().unwrap_or("(unknown: adopted)")
        ));
    }
    text.push_str(&format!(
        "  last operation: {}\n",
        last_outcome(record.last_operation.as_ref())
    ));
    if let Some(operation) = &record.last_operation {
        text.push_str(&format!("    plan: {}\n", operation.plan_id));
        for (label, value) in [
            ("request id", &operation.request_id),
            ("job id", &operation.job_id),
            ("message", &operation.message),
        ] {
            if let Some(value) = value {
                text.push_str(&format!("    {label}: {value}\n"));
            }
        }
    }
    text.push_str(&format!(
        "  updated: {}\nState `{}` (name `{}`, serial {}).\n",
        record.updated_at, shown.state.location, shown.state.name, shown.state.serial
    ));
    printer.out(&text);
    Ok(ExitCode::SUCCESS)
}

pub async fn rm(args: StateRmArgs, printer: &Printer) -> Result<ExitCode> {
    let session = located(&args.location, printer).await?;
    let (store, manifest) = (session.store(), session.manifest());
    let forgotten = records::forget(store, &args.names)?;
    let in_manifest: std::collections::HashSet<&str> = manifest
        .iter()
        .flat_map(|manifest| manifest.servers.iter().map(|server| server.name.as_str()))
        .collect();
    for (name, record) in &forgotten.records {
        printer.out(&format!(
            "Forgot `{name}` ({} `{}`, id {}, image `{}`).\n",
            record.provider_type, record.provider, record.cloud_id, record.image
        ));
        if in_manifest.contains(name.as_str()) {
            printer.status(&format!(
                "note: `{name}` is still in the manifest: the next plan treats it as never \
                 applied by reimage (adopted if its image matches, otherwise reinstalled)"
            ));
        }
    }
    printer.out(&format!(
        "Removed {} record(s) from the state `{}` (serial {}). The machines were not touched.\n",
        forgotten.records.len(),
        forgotten.state.location,
        forgotten.state.serial
    ));
    Ok(ExitCode::SUCCESS)
}

pub async fn push(args: StatePushArgs, printer: &Printer) -> Result<ExitCode> {
    // The backend's URL is the only secret needed; servers' secrets are not read.
    let manifest = ManifestSource {
        paths: args.manifest.paths()?,
        secrets: SecretCheck::BestEffort,
        provider_setup: true,
    };
    let pushed = crate::ops::push::push_to_backend(
        &manifest,
        args.from.as_ref(),
        args.lock.lock_timeout,
        args.force,
        printer,
    )
    .await?;
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
