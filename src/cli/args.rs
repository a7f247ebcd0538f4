//! Terraform's command-line habits, before clap parses: single-dash long options
//! (`-out=plan.json`, `-auto-approve`, `-no-color`, `-parallelism=5`) are rewritten to their
//! `--` form, and Terraform options reimage has no use for are refused with what to do instead,
//! rather than clap's "unexpected argument '-l'" (it reads `-lock=false` as short flags).
//!
//! The long options come from the command definition itself, so a new option works with one
//! dash as soon as it exists.

use std::ffi::OsString;

use clap::CommandFactory;
use clap::error::ErrorKind;

use super::Cli;

/// Terraform options without a reimage counterpart, and what a reimage user does instead.
/// An option reimage itself has (e.g. once it gains `-lock-timeout`) is never refused.
const TERRAFORM_ONLY: &[(&str, &str)] = &[
    (
        "var",
        "reimage has no variables: write values in the manifest, and secrets as \
         `{env: NAME}` or `{file: PATH}` references",
    ),
    (
        "var-file",
        "reimage has no variables: split the manifest over several files and pass each \
         with `-f FILE`",
    ),
    (
        "refresh",
        "reimage always reads every server's current state while planning",
    ),
    (
        "refresh-only",
        "to record what a server runs without touching it, use `reimage state adopt NAME \
         --image IMAGE`",
    ),
    (
        "lock",
        "reimage always locks its state while planning or applying",
    ),
    (
        "lock-timeout",
        "reimage does not wait for a lock: it fails at once and names the holder",
    ),
    (
        "chdir",
        "run reimage in that folder, or pass the manifest with `-f DIR/reimage.yaml`",
    ),
    (
        "destroy",
        "reimage never deletes servers; remove a server from the manifest to stop managing it",
    ),
    (
        "state-out",
        "reimage writes the state it read (`--state PATH`, or the manifest's `state:`) and \
         keeps the previous version as `state.json.backup`",
    ),
    (
        "backup",
        "reimage keeps the previous state as `state.json.backup` beside the state",
    ),
    (
        "compact-warnings",
        "reimage has no such option; warnings go to stderr",
    ),
    (
        "upgrade",
        "reimage has no `init` step: providers are built in",
    ),
];

/// Every long option and alias of every command, without dashes.
fn long_options() -> Vec<String> {
    fn collect(command: &clap::Command, names: &mut Vec<String>) {
        for arg in command.get_arguments() {
            names.extend(arg.get_long().map(str::to_string));
            names.extend(
                arg.get_long_and_visible_aliases()
                    .into_iter()
                    .flatten()
                    .map(str::to_string),
            );
        }
        for subcommand in command.get_subcommands() {
            collect(subcommand, names);
        }
    }
    let mut names = Vec::new();
    collect(&Cli::command(), &mut names);
    names.sort();
    names.dedup();
    names
}

/// Every short option letter of every command.
fn short_options() -> Vec<char> {
    fn collect(command: &clap::Command, letters: &mut Vec<char>) {
        letters.extend(command.get_arguments().filter_map(clap::Arg::get_short));
        for subcommand in command.get_subcommands() {
            collect(subcommand, letters);
        }
    }
    let mut letters = vec!['h', 'V'];
    collect(&Cli::command(), &mut letters);
    letters
}

/// Rewrites `-out=FILE` and friends to `--out=FILE`, so Terraform habits work; refuses
/// Terraform options reimage does not have, naming what to do instead, and an unknown
/// single-dash word with the closest reimage option.
pub fn terraform_style_args(
    args: impl IntoIterator<Item = OsString>,
) -> Result<Vec<OsString>, clap::Error> {
    let long = long_options();
    let short = short_options();
    let mut rewritten = Vec::new();
    let mut options_ended = false;
    for arg in args {
        let Some(text) = arg.to_str().filter(|_| !options_ended) else {
            rewritten.push(arg);
            continue;
        };
        if text == "--" {
            options_ended = true;
            rewritten.push(arg);
            continue;
        }
        let (dashes, rest) = match text.strip_prefix("--") {
            Some(rest) => ("--", rest),
            None => match text.strip_prefix('-') {
                Some(rest) => ("-", rest),
                None => {
                    rewritten.push(arg);
                    continue;
                }
            },
        };
        let name = rest.split('=').next().unwrap_or(rest);
        let looks_like_a_word = name.len() >= 2
            && name.starts_with(|c: char| c.is_ascii_alphabetic())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !looks_like_a_word || long.iter().any(|known| known == name) {
            if dashes == "-" && looks_like_a_word {
                rewritten.push(format!("-{text}").into());
            } else {
                rewritten.push(arg);
            }
            continue;
        }
        if let Some((_, instead)) = TERRAFORM_ONLY.iter().find(|(option, _)| *option == name) {
            return Err(unknown(format!(
                "`{dashes}{name}` is a Terraform option that reimage does not have: {instead}"
            )));
        }
        // `-fFILE` is `-f` with its value attached: clap reads it.
        if dashes == "-" && name.starts_with(|c: char| short.contains(&c)) {
            rewritten.push(arg);
            continue;
        }
        if dashes == "--" {
            // clap's own message, with its "similar argument" tip, covers these.
            rewritten.push(arg);
            continue;
        }
        let candidates: Vec<&str> = long.iter().map(String::as_str).collect();
        let hint = match crate::manifest::diagnostics::did_you_mean(name, candidates) {
            Some(close) => format!("; did you mean `-{close}` (also written `--{close}`)?"),
            None => "; see `reimage --help` and `reimage COMMAND --help`".to_string(),
        };
        return Err(unknown(format!("unknown option `-{name}`{hint}")));
    }
    Ok(rewritten)
}

fn unknown(message: String) -> clap::Error {
    Cli::command().error(ErrorKind::UnknownArgument, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewrite(args: &[&str]) -> Result<Vec<String>, String> {
        terraform_style_args(args.iter().map(OsString::from))
            .map(|args| {
                args.iter()
                    .map(|arg| arg.to_string_lossy().to_string())
                    .collect()
            })
            .map_err(|error| error.to_string())
    }

    #[test]
    fn terraform_single_dash_options_are_accepted() {
        assert_eq!(
            rewrite(&[
                "reimage",
                "plan",
                "-out=p.json",
                "-detailed-exitcode",
                "-no-color",
                "-input=false",
                "-parallelism=5",
                "-f",
                "x.yaml",
                "-fother.yaml",
            ])
            .unwrap(),
            [
                "reimage",
                "plan",
                "--out=p.json",
                "--detailed-exitcode",
                "--no-color",
                "--input=false",
                "--parallelism=5",
                "-f",
                "x.yaml",
                "-fother.yaml",
            ]
        );
        // After `--` nothing is an option.
        assert_eq!(
            rewrite(&["reimage", "plan", "--", "-out"]).unwrap(),
            ["reimage", "plan", "--", "-out"]
        );
    }

    #[test]
    fn terraform_only_options_say_what_to_do_instead() {
        let error = rewrite(&["reimage", "plan", "-var", "x=1"]).unwrap_err();
        assert!(error.contains("`-var` is a Terraform option"), "{error}");
        assert!(error.contains("{env: NAME}"), "{error}");
        let error = rewrite(&["reimage", "apply", "--refresh=false"]).unwrap_err();
        assert!(error.contains("`--refresh`"), "{error}");
    }

    #[test]
    fn unknown_single_dash_words_get_a_did_you_mean() {
        let error = rewrite(&["reimage", "plan", "-paralelism=4"]).unwrap_err();
        assert!(error.contains("unknown option `-paralelism`"), "{error}");
        assert!(error.contains("did you mean `-parallelism`"), "{error}");
        let error = rewrite(&["reimage", "plan", "-xyzzy"]).unwrap_err();
        assert!(error.contains("reimage --help"), "{error}");
    }
}
