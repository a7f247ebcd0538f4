//! Command-line interface: argument structs (their doc comments are the `--help` text) and one
//! module per command. No business logic here: each command turns its arguments into a request,
//! calls `ops` and prints (rendering through `plan::render` and `ops::*::render`).

pub(crate) mod apply;
mod args;
mod duration;
mod emulator;
mod plan;
mod report;
mod show;
mod state;
mod unlock;
mod validate;
mod version;

pub use args::terraform_style_args;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::error::{Error, Result};

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
    /// Read or change reimage's state without touching any machine.
    #[command(subcommand)]
    State(StateCommand),
    /// Remove the description of a state lock whose holder is gone (never breaks a live lock).
    ForceUnlock(ForceUnlockArgs),
    /// Render an apply from the state's history as one self-contained HTML page: a timeline of
    /// waves, a bar per server (queued, stopping, installing, health gate), failures with the
    /// provider's error and request id, and the summary figures.
    Report(ReportArgs),
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
}

/// How long to wait for the state lock.
#[derive(Debug, Args, Clone)]
pub struct LockArgs {
    /// Wait up to DURATION (`30s`, `5m`, `1h`) for the state lock while another command holds
    /// it; the default `0s` fails at once, naming the holder (Terraform's `-lock-timeout`).
    #[arg(
        long = "lock-timeout",
        value_name = "DURATION",
        default_value = "0s",
        value_parser = crate::state::lock::parse_duration
    )]
    pub lock_timeout: Duration,
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
    /// Check for drift instead: how the fleet differs from what reimage recorded (image
    /// changed or reinstalled outside reimage, server gone, a status that needs attention),
    /// with the manifest's changes listed apart. Exit 2 on drift, 0 without, 1 on error.
    /// Takes no lock and writes nothing.
    #[arg(long, conflicts_with_all = ["out", "detailed_exitcode", "replace"])]
    pub drift: bool,
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
    /// How long the saved plan may be applied (`90s`, `30m`, `24h`, `7d`); apply refuses it
    /// after that.
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = duration::parse_duration)]
    pub plan_ttl: jiff::SignedDuration,
    #[command(flatten)]
    pub lock: LockArgs,
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
    /// Refuse the plan unless `PLANFILE.sig` proves, with `REIMAGE_PLAN_KEY`, that the plan file
    /// is byte for byte the one signed by `plan -out` (refused too when the key is not set).
    #[arg(long, requires = "plan_file")]
    pub require_signed: bool,
    /// Refuse the plan unless it was made at this git commit (full id, or 7+ hex digits).
    #[arg(long, value_name = "SHA", requires = "plan_file", value_parser = crate::apply::artifact::parse_commit)]
    pub require_commit: Option<String>,
    #[command(flatten)]
    pub lock: LockArgs,
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
    /// List the servers the state records: provider, image, protection and last outcome.
    List(StateListArgs),
    /// Show everything the state records about one server.
    Show(StateShowArgs),
    /// Forget servers: remove their records from the state. The machines are not touched.
    ///
    /// Refused while an apply step for a server is still in flight. A forgotten server that is
    /// still in the manifest is planned as never applied by reimage (adopted if its image
    /// matches).
    Rm(StateRmArgs),
    /// Record a server as running IMAGE without reinstalling it (like `terraform import`).
    ///
    /// For servers reimage never applied whose provider cannot report the installed OS (EDIS):
    /// the plan blocks them until they are adopted or reinstalled with `--replace NAME`.
    Adopt(StateAdoptArgs),
    /// Move a local state, with its journal and history, into the manifest's backend.
    ///
    /// For a team moving from a state file to a shared PostgreSQL database: set `backend:` in
    /// the manifest, then push. The local files are renamed with a `.pushed` suffix afterwards.
    #[command(alias = "migrate")]
    Push(StatePushArgs),
}

#[derive(Debug, Args)]
pub struct StatePushArgs {
    #[command(flatten)]
    pub manifest: ManifestArgs,
    /// The local state file to push. Default: `.reimage/state.json` beside the (first)
    /// manifest, or the manifest's `state.path`.
    #[arg(long, value_name = "PATH")]
    pub from: Option<PathBuf>,
    /// Replace a state of another lineage, or a newer one, in the backend (its records are lost;
    /// no machine is touched).
    #[arg(long)]
    pub force: bool,
    /// Print what was moved as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub lock: LockArgs,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    #[command(flatten)]
    pub location: StateLocationArgs,
    /// Where to write the HTML page (`-` for stdout).
    #[arg(long, value_name = "FILE", default_value = "report.html")]
    pub out: PathBuf,
    /// The apply to show: its apply id or plan id (or 8+ leading characters of one). Default:
    /// the last apply.
    #[arg(long = "apply", value_name = "ID")]
    pub apply: Option<String>,
    /// Print the report's data as JSON instead of writing the page.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ForceUnlockArgs {
    /// The lock ID, as printed by the command that found the state locked.
    pub id: String,
    #[command(flatten)]
    pub manifest: ManifestArgs,
    /// State file to use instead of the manifest's.
    #[arg(long, value_name = "PATH")]
    pub state: Option<PathBuf>,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub force: bool,
}

/// Which state: the manifest's, or `--state PATH` (then no manifest is needed).
#[derive(Debug, Args, Clone)]
pub struct StateLocationArgs {
    #[command(flatten)]
    pub manifest: ManifestArgs,
    /// State file to use instead of the manifest's.
    #[arg(long, value_name = "PATH")]
    pub state: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct StateListArgs {
    #[command(flatten)]
    pub location: StateLocationArgs,
    /// Print the list as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StateShowArgs {
    /// The server's name in the state.
    pub name: String,
    #[command(flatten)]
    pub location: StateLocationArgs,
    /// Print the record as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StateRmArgs {
    /// The servers' names in the state.
    #[arg(required = true, value_name = "NAME")]
    pub names: Vec<String>,
    #[command(flatten)]
    pub location: StateLocationArgs,
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
    #[command(flatten)]
    pub lock: LockArgs,
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
    /// Faults to arm at start: the JSON body of `POST /_emulator/faults`.
    #[arg(long, value_name = "FILE")]
    pub faults: Option<PathBuf>,
}

/// Runs a parsed command; returns the process exit code.
pub async fn run(cli: Cli, printer: &Printer) -> Result<ExitCode> {
    match cli.command {
        Command::Validate(args) => validate::run(args, printer),
        Command::Plan(args) => plan::run(args, printer).await,
        Command::Apply(args) => apply::run(args, printer).await,
        Command::Show(args) => show::run(args, printer),
        Command::Emulator(EmulatorCommand::Serve(args)) => emulator::serve(args, printer).await,
        Command::State(StateCommand::Adopt(args)) => state::adopt(args, printer).await,
        Command::State(StateCommand::List(args)) => state::list(args, printer).await,
        Command::State(StateCommand::Show(args)) => state::show(args, printer).await,
        Command::State(StateCommand::Rm(args)) => state::rm(args, printer).await,
        Command::State(StateCommand::Push(args)) => state::push(args, printer).await,
        Command::ForceUnlock(args) => unlock::run(args, printer).await,
        Command::Report(args) => report::run(args, printer).await,
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

pub(crate) fn io_error(error: impl std::fmt::Display) -> Error {
    Error::Io {
        message: error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> std::result::Result<Cli, clap::Error> {
        Cli::try_parse_from(terraform_style_args(
            args.iter().map(std::ffi::OsString::from),
        )?)
    }

    #[test]
    fn lock_timeout_force_unlock_and_state_push_parse_the_terraform_way() {
        let Command::Apply(apply) = parse(&["reimage", "apply", "-lock-timeout=30s", "p.json"])
            .unwrap()
            .command
        else {
            panic!("apply")
        };
        assert_eq!(apply.lock.lock_timeout, Duration::from_secs(30));
        let Command::Plan(plan) = parse(&["reimage", "plan", "--lock-timeout", "5m"])
            .unwrap()
            .command
        else {
            panic!("plan")
        };
        assert_eq!(plan.lock.lock_timeout, Duration::from_secs(300));
        let Command::Plan(plan) = parse(&["reimage", "plan"]).unwrap().command else {
            panic!("plan")
        };
        assert_eq!(plan.lock.lock_timeout, Duration::ZERO, "0s by default");
        let bad = parse(&["reimage", "plan", "-lock-timeout=soon"]).unwrap_err();
        assert!(bad.to_string().contains("is not a duration"), "{bad}");

        let Command::ForceUnlock(unlock) = parse(&["reimage", "force-unlock", "abc-123", "-force"])
            .unwrap()
            .command
        else {
            panic!("force-unlock")
        };
        assert_eq!((unlock.id.as_str(), unlock.force), ("abc-123", true));
        for name in ["push", "migrate"] {
            let Command::State(StateCommand::Push(push)) = parse(&[
                "reimage",
                "state",
                name,
                "-force",
                "--json",
                "-from=old.json",
            ])
            .unwrap()
            .command
            else {
                panic!("state {name}")
            };
            assert!(push.force && push.json);
            assert_eq!(push.from, Some(PathBuf::from("old.json")));
        }
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
