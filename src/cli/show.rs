//! `reimage show PLANFILE`: render a saved plan.

use std::process::ExitCode;

use super::ShowArgs;
use crate::error::Result;
use crate::output::Printer;
use crate::plan::{file, render};

pub fn run(args: ShowArgs, printer: &Printer) -> Result<ExitCode> {
    let plan = file::load(&args.plan_file)?;
    if !args.json && !args.markdown {
        printer.out(&format!("{}\n\n", render::artifact_line(&plan)));
    }
    super::plan::print_plan(&plan, args.json, args.markdown, printer);
    Ok(ExitCode::SUCCESS)
}
