//! `reimage emulator serve`: the built-in emulator as a long-running process.

use std::process::ExitCode;

use super::EmulatorServeArgs;
use crate::emulator::{self, EmulatorConfig};
use crate::error::Result;
use crate::output::Printer;

pub async fn serve(args: EmulatorServeArgs, printer: &Printer) -> Result<ExitCode> {
    let running = emulator::start(EmulatorConfig {
        listen: args.listen,
        inventory: args.inventory,
        data_dir: args.data_dir,
        install_seconds: args.install_seconds,
    })
    .await?;
    if let Some(path) = &args.faults {
        let text = crate::files::read_limited_to_string(path, crate::files::FAULTS_MAX_BYTES)
            .map_err(|error| emulator::EmulatorError(format!("cannot read the faults: {error}")))?;
        running
            .arm_faults(&text)
            .await
            .map_err(|error| emulator::EmulatorError(format!("{}: {}", path.display(), error.0)))?;
    }
    printer.out(&format!(
        "reimage emulator listening on http://{}\n",
        running.address
    ));
    for (provider_type, url) in &running.endpoints {
        printer.out(&format!("  {provider_type:<20} {url}\n"));
    }
    printer.status("Press Ctrl-C to stop.");
    let _ = tokio::signal::ctrl_c().await;
    drop(running);
    Ok(ExitCode::SUCCESS)
}
