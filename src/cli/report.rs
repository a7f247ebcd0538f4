//! `reimage report`: one apply from the state's history as a self-contained HTML page (or
//! JSON). Reads the history without the lock; changes nothing.

use std::process::ExitCode;

use super::ReportArgs;
use crate::error::Result;
use crate::ops::report;
use crate::output::Printer;

pub async fn run(args: ReportArgs, printer: &Printer) -> Result<ExitCode> {
    let session = super::state::located(&args.location, printer).await?;
    let store = session.store();
    let report = report::load(store, args.apply.as_deref())?;
    if args.json {
        let text = serde_json::to_string_pretty(&report).map_err(super::io_error)?;
        printer.out(&format!("{text}\n"));
        return Ok(ExitCode::SUCCESS);
    }
    let page = report::html::render(&report);
    if args.out.as_os_str() == "-" {
        printer.out(&page);
        return Ok(ExitCode::SUCCESS);
    }
    fs_err::write(&args.out, page.as_bytes()).map_err(super::io_error)?;
    printer.status(&format!(
        "Wrote the report of apply {} ({}, {} server(s)) to {}",
        report.apply_id.as_deref().unwrap_or("(no id)"),
        report.outcome,
        report.figures.servers,
        args.out.display()
    ));
    Ok(ExitCode::SUCCESS)
}
