//! Command-line interface: argument structs (their doc comments are the `--help` text) and one
//! module per command. No business logic here: commands call `ops`, `apply` and `plan::render`.

pub(crate) mod apply;
mod args;
mod emulator;
mod plan;
mod show;
mod state;
mod validate;
mod version;
mod waits;

pub use args::terraform_style_args;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::error::{Error, Result};
use crate::manifest::{LoadOptions, Loaded, SecretCheck};
use crate::output::Printer;

/// Declarative OS reinstalls for fleets of servers: plan what would change, apply exactly that.
#[derive(Debug, Parser)]
#[command(name = "reimage", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// No colours in the output (as `NO_COLOR` does); Terraform's `-no-color` works too.
    #[arg(long, global = true)]
    pub no_color: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check manifests (syntax, schema, provider rules) without touching any network.
    Validate(ValidateArgs),
    /// Show what would change: per server, reinstall, adopt, no-op or blocked, and why.
    Plan(PlanArgs),
    /// Carry out a plan: a saved plan file, or a fresh plan after confirmation.
    Apply(ApplyArgs),
    /// Show a saved plan file.
    Show(ShowArgs),
    /// Run the built-in emulator of the providers' APIs.
    #[command(subcommand)]
    Emulator(EmulatorCommand),
    /// Change reimage's state without touching any machine.
    #[command(subcommand)]
    State(StateCommand),
    /// Print reimage's version (`--json` for machines).
    Version(VersionArgs),
    /// Print a shell completion script.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// Where the manifest comes from.
#[derive(Debug, Args, Clone)]
pub struct ManifestArgs {
    /// Manifest file; repeat for several. Default: `reimage.yaml` in the current folder.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

impl ManifestArgs {
    pub fn paths(&self) -> Result<Vec<PathBuf>> {
        if !self.files.is_empty() {
            return Ok(self.files.clone());
        }
        let default = PathBuf::from("reimage.yaml");
        if default.exists() {
            Ok(vec![default])
        } else {
            Err(Error::usage(
                "no manifest: none was given with `-f` and there is no `reimage.yaml` in the current folder",
                "pass the manifest with `-f FILE` (repeat it for several files), or run reimage where \
                 `reimage.yaml` is; `examples/quickstart/reimage.yaml` is a place to start",
            ))
        }
    }

    /// Loads the manifest as `plan` needs it: with every provider set up as far as it can be
    /// without network (see [`LoadOptions::provider_setup`]).
    pub fn load(&self, secrets: SecretCheck, printer: &Printer) -> Result<Loaded> {
        self.load_with(
            &LoadOptions {
                secrets,
                provider_setup: true,
            },
            printer,
        )
    }

    pub fn load_with(&self, options: &LoadOptions, printer: &Printer) -> Result<Loaded> {
        let loaded = crate::manifest::load(&self.paths()?, options)?;
        for warning in &loaded.warnings {
            printer.report(warning.to_report());
        }
        Ok(loaded)
    }
}

/// Command-line overrides of the manifest's rollout policy (default and every group).
#[derive(Debug, Args, Clone, Default)]
pub struct RolloutArgs {
    /// Reinstalls in the first wave, which must all succeed before anything else starts.
    #[arg(long, value_name = "N")]
    pub canary: Option<usize>,
    /// Reinstalls in flight at once (Terraform's `-parallelism=N` works too).
    #[arg(long, visible_alias = "parallelism", value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_parallel: Option<u64>,
    /// Stop starting new reinstalls after N failures.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_failures: Option<u64>,
    /// Refuse to apply a plan that reinstalls more than N servers.
    #[arg(long, value_name = "N")]
    pub max_reinstalls: Option<usize>,
}

impl RolloutArgs {
    pub fn spec(&self) -> crate::manifest::model::RolloutSpec {
        crate::manifest::model::RolloutSpec {
            canary: self.canary,
            max_parallel: self.max_parallel.map(|n| n as usize),
            max_failures: self.max_failures.map(|n| n as usize),
            max_reinstalls: self.max_reinstalls,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.canary.is_none()
            && self.max_parallel.is_none()
            && self.max_failures.is_none()
            && self.max_reinstalls.is_none()
    }
}

/// Terraform's `-input=false`: never ask anything (as when standard input is not a terminal).
#[derive(Debug, Args, Clone)]
pub struct InputArgs {
    /// Ask for confirmation on a terminal (`-input=false`: never ask; without
    /// `--auto-approve` the apply is then refused).
    #[arg(long, value_name = "true|false", default_value_t = true, action = clap::ArgAction::Set)]
    pub input: bool,
}

#[derive(Debug, Args)]
pub struct VersionArgs {
    /// Print the version as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    pub manifest: ManifestArgs,
    /// Print the result as JSON (`schemas/validate.schema.json`).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub manifest: ManifestArgs,
    /// Save the plan to this file, for `reimage apply PLANFILE` (Terraform's `-out` works too).
    #[arg(long = "out", value_name = "PLANFILE")]
    pub out: Option<PathBuf>,
    /// Exit 0 when there are no changes, 2 when there are changes, 1 on error.
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// Print the plan as JSON (`schemas/plan.schema.json`) instead of text.
    #[arg(long, conflicts_with = "markdown")]
    pub json: bool,
    /// Print the plan as Markdown, for a pull-request comment.
    #[arg(long)]
    pub markdown: bool,
    /// Reinstall this server even if nothing changed; repeat for several.
    #[arg(long, value_name = "NAME")]
    pub replace: Vec<String>,
    /// Plan only this server; repeat for several.
    #[arg(long, value_name = "NAME")]
    pub target: Vec<String>,
    #[command(flatten)]
    pub rollout: RolloutArgs,
    /// State file to use instead of the manifest's.
    #[arg(long, value_name = "PATH")]
    pub state: Option<PathBuf>,
    /// `plan` never asks; accepted so the same flags work for `plan` and `apply`.
    #[command(flatten)]
    pub input: InputArgs,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// A plan saved with `reimage plan -out PLANFILE`. Without it, a fresh plan is made and
    /// shown, and you are asked to confirm.
    pub plan_file: Option<PathBuf>,
    #[command(flatten)]
    pub manifest: ManifestArgs,
    /// Do not ask for confirmation (for automation, after a reviewed plan).
    #[arg(long)]
    pub auto_approve: bool,
    /// Reinstall this server even if nothing changed (without a plan file).
    #[arg(long, value_name = "NAME")]
    pub replace: Vec<String>,
    /// Apply only to this server (without a plan file).
    #[arg(long, value_name = "NAME")]
    pub target: Vec<String>,
    #[command(flatten)]
    pub rollout: RolloutArgs,
    /// Continue a saved plan whose apply was interrupted: in-flight installs are reconciled,
    /// finished servers skipped, the rest started.
    #[arg(long, requires = "plan_file")]
    pub resume: bool,
    /// Print newline-delimited JSON events (`schemas/apply-events.schema.json`) on stdout.
    #[arg(long)]
    pub json: bool,
    /// State file to use instead of the manifest's.
    #[arg(long, value_name = "PATH")]
    pub state: Option<PathBuf>,
    #[command(flatten)]
    pub input: InputArgs,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The saved plan file.
    pub plan_file: PathBuf,
    /// Print the plan as JSON (`schemas/plan.schema.json`).
    #[arg(long, conflicts_with = "markdown")]
    pub json: bool,
    /// Print the plan as Markdown.
    #[arg(long)]
    pub markdown: bool,
}

#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// Record a server as running IMAGE without reinstalling it (like `terraform import`).
    ///
    /// For servers reimage never applied whose provider cannot report the installed OS (EDIS):
    /// the plan blocks them until they are adopted or reinstalled with `--replace NAME`.
    Adopt(StateAdoptArgs),
}

#[derive(Debug, Args)]
pub struct StateAdoptArgs {
    /// The server's name in the manifest.
    pub name: String,
    /// The image the server runs now, named as the manifest names images.
    #[arg(long, value_name = "IMAGE")]
    pub image: String,
    #[command(flatten)]
    pub manifest: ManifestArgs,
    /// State file to use instead of the manifest's.
    #[arg(long, value_name = "PATH")]
    pub state: Option<PathBuf>,
    /// Overwrite an existing record of this server.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Subcommand)]
pub enum EmulatorCommand {
    /// Serve the emulated APIs on loopback until interrupted; prints each API's base URL.
    Serve(EmulatorServeArgs),
}

#[derive(Debug, Args)]
pub struct EmulatorServeArgs {
    /// Address to listen on (loopback only).
    #[arg(long, default_value = "127.0.0.1:8787")]
    pub listen: std::net::SocketAddr,
    /// Inventory file: accounts, images and servers to emulate.
    #[arg(long, default_value = "examples/emulator/inventory.yaml")]
    pub inventory: PathBuf,
    /// Folder where the emulated world is kept between runs.
    #[arg(long, default_value = ".reimage/emulator")]
    pub data_dir: PathBuf,
    /// Seconds an emulated install takes (overrides the inventory).
    #[arg(long)]
    pub install_seconds: Option<f64>,
}

/// Runs a parsed command; returns the process exit code.
pub async fn run(cli: Cli, printer: &Printer) -> Result<ExitCode> {
    match cli.command {
        Command::Validate(args) => validate::run(args, printer),
        Command::Plan(args) => plan::run(args, printer).await,
        Command::Apply(args) => apply::run(args, printer).await,
        Command::Show(args) => show::run(args, printer),
        Command::Emulator(EmulatorCommand::Serve(args)) => emulator::serve(args, printer).await,
        Command::State(StateCommand::Adopt(args)) => state::adopt(args, printer),
        Command::Version(args) => version::run(&args, printer),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut command = Cli::command();
            let mut stdout = std::io::stdout();
            clap_complete::generate(shell, &mut command, "reimage", &mut stdout);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The state store for a manifest, or the `--state` override.
pub(crate) fn state_store(
    manifest_state: &std::path::Path,
    override_path: Option<&PathBuf>,
) -> crate::state::local::LocalStateStore {
    crate::state::local::LocalStateStore::new(
        override_path
            .cloned()
            .unwrap_or_else(|| manifest_state.to_path_buf()),
    )
}

pub(crate) fn io_error(error: impl std::fmt::Display) -> Error {
    Error::Io {
        message: error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
