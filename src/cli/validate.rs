//! `reimage validate`: syntax, schema and provider rules, no network.

use std::process::ExitCode;

use super::ValidateArgs;
use crate::error::Result;
use crate::manifest::ManifestDiagnostic;
use crate::output::Printer;

/// `validate --json` (`schemas/validate.schema.json`).
#[derive(serde::Serialize)]
struct JsonReport<'a> {
    format_version: u32,
    valid: bool,
    error_count: usize,
    warning_count: usize,
    diagnostics: &'a [ManifestDiagnostic],
}

pub fn run(args: ValidateArgs, printer: &Printer) -> Result<ExitCode> {
    let result = crate::ops::manifest::validate(&args.manifest.paths()?);
    if args.json {
        let (valid, diagnostics) = match &result {
            Ok(loaded) => (true, &loaded.warnings),
            Err(errors) => (false, &errors.diagnostics),
        };
        let errors = diagnostics.iter().filter(|d| d.is_error()).count();
        // Serialized straight from the diagnostics: no copy of them as JSON values.
        let document = JsonReport {
            format_version: 1,
            valid,
            error_count: errors,
            warning_count: diagnostics.len() - errors,
            diagnostics,
        };
        printer.out(&format!(
            "{}\n",
            serde_json::to_string_pretty(&document).unwrap_or_default()
        ));
        return Ok(if valid {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    let loaded = result?;
    for warning in &loaded.warnings {
        printer.report(warning.to_report());
    }
    let manifest = &loaded.manifest;
    printer.out(&format!(
        "Success! The manifest is valid: {} server{}, {} provider{}.\n",
        manifest.servers.len(),
        if manifest.servers.len() == 1 { "" } else { "s" },
        manifest.providers.len(),
        if manifest.providers.len() == 1 {
            ""
        } else {
            "s"
        },
    ));
    Ok(ExitCode::SUCCESS)
}
