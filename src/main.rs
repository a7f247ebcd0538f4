use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use reimage::cli::{Cli, run, terraform_style_args};
use reimage::error::Error;
use reimage::output::Printer;

fn main() -> ExitCode {
    let cli = match terraform_style_args(std::env::args_os()).and_then(Cli::try_parse_from) {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            // Terraform exits 1 on usage errors; 2 is reserved for `--detailed-exitcode`.
            return if error.use_stderr() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("REIMAGE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let printer = Printer::from_environment();
    let printer = if cli.no_color {
        printer.without_color()
    } else {
        printer
    };
    let color = printer.stderr_has_color();
    // On a terminal miette wraps to its width; in CI logs a wider page keeps each error's lines
    // whole, so they can be searched.
    let log_width = (!std::io::stderr().is_terminal()).then(|| {
        std::env::var("COLUMNS")
            .ok()
            .and_then(|columns| columns.parse::<usize>().ok())
            .unwrap_or(160)
    });
    let _ = miette::set_hook(Box::new(move |_| {
        let mut options = miette::MietteHandlerOpts::new().color(color).unicode(color);
        if let Some(width) = log_width {
            options = options.width(width);
        }
        Box::new(options.build())
    }));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("Error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli, &printer)) {
        Ok(code) => code,
        Err(Error::Manifest(errors)) => {
            for diagnostic in &errors.diagnostics {
                printer.report(diagnostic.to_report());
            }
            printer.status(&format!("Error: {errors}"));
            ExitCode::FAILURE
        }
        Err(error) => {
            printer.report(miette::Report::new(error));
            ExitCode::FAILURE
        }
    }
}
