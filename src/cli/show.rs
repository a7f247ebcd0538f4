//! `reimage show PLANFILE`: render a saved plan.

use std::process::ExitCode;

use super::ShowArgs;
use crate::error::Result;
use crate::output::Printer;
use crate::plan::{file, render};

pub fn run(args: ShowArgs, printer: &Printer) -> Result<ExitCode> {
    let plan = file::load(&args.plan_file)?;
    let text = if args.json {
        format!("{}\n", render::json(&plan))
    } else if args.markdown {
        render::markdown(&plan)
    } else {
        format!(
            "{}\n\n{}",
            render::artifact_line(&plan),
            render::text(&plan)
        )
    };
    printer.out(&text);
    Ok(ExitCode::SUCCESS)
}
