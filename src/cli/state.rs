//! `reimage state adopt NAME --image IMAGE`: record a server without touching it.

use std::process::ExitCode;

use super::{StateAdoptArgs, state_store};
use crate::error::Result;
use crate::manifest::{LoadOptions, SecretCheck};
use crate::ops::state::{AdoptRequest, adopt as adopt_server};
use crate::output::Printer;

pub fn adopt(args: StateAdoptArgs, printer: &Printer) -> Result<ExitCode> {
    // Secrets are read: the record holds keyed digests of the install inputs, password included.
    // No provider is called, so none needs to be set up (credentials may be absent here).
    let options = LoadOptions {
        secrets: SecretCheck::Required,
        provider_setup: false,
    };
    let manifest = args.manifest.load_with(&options, printer)?.manifest;
    let store = state_store(&manifest.state_path, args.state.as_ref());
    let adopted = adopt_server(
        &manifest,
        &store,
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
