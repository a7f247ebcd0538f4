//! `reimage validate`: syntax, schema and provider rules, no network.

use std::process::ExitCode;

use super::ValidateArgs;
use crate::error::Result;
use crate::manifest::{LoadOptions, SecretCheck};
use crate::output::Printer;

pub fn run(args: ValidateArgs, printer: &Printer) -> Result<ExitCode> {
    let options = LoadOptions {
        secrets: SecretCheck::BestEffort,
        provider_setup: true,
    };
    let result = crate::manifest::load(&args.manifest.paths()?, &options);
    if args.json {
        let (valid, diagnostics) = match &result {
            Ok(loaded) => (true, loaded.warnings.clone()),
            Err(errors) => (false, errors.diagnostics.clone()),
        };
        let count = |severity: &str| {
            diagnostics
                .iter()
                .filter(|diagnostic| {
                    serde_json::to_value(diagnostic)
                        .ok()
                        .and_then(|value| value.get("severity").cloned())
                        .and_then(|value| value.as_str().map(|s| s == severity))
                        .unwrap_or(false)
                })
                .count()
        };
        let document = serde_json::json!({
            "format_version": 1,
            "valid": valid,
            "error_count": count("error"),
            "warning_count": count("warning"),
            "diagnostics": diagnostics,
        });
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
