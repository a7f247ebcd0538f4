//! The one printer of human output. Data goes to stdout; diagnostics, progress and logs go to
//! stderr. Styles are stripped when the stream is not a terminal or `NO_COLOR` is set (anstream).

use std::io::Write;

use anstream::{AutoStream, ColorChoice};

#[derive(Debug, Clone)]
pub struct Printer {
    stdout_color: ColorChoice,
    stderr_color: ColorChoice,
}

impl Printer {
    /// Colour decided per stream from the terminal and `NO_COLOR` / `CLICOLOR(_FORCE)`.
    pub fn from_environment() -> Self {
        // NO_COLOR wins over everything, CLICOLOR_FORCE included (no-color.org).
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|value| !value.is_empty());
        let choose = |detected: ColorChoice| {
            if no_color {
                ColorChoice::Never
            } else {
                detected
            }
        };
        Printer {
            stdout_color: choose(AutoStream::choice(&std::io::stdout())),
            stderr_color: choose(AutoStream::choice(&std::io::stderr())),
        }
    }

    pub fn stderr_has_color(&self) -> bool {
        !matches!(self.stderr_color, ColorChoice::Never)
    }

    /// Writes to stdout (pipeable data and the rendered plan).
    pub fn out(&self, text: &str) {
        let mut stream = AutoStream::new(std::io::stdout(), self.stdout_color);
        // A closed pipe (`reimage plan | head`) is not an error worth reporting.
        let _ = stream.write_all(text.as_bytes());
        let _ = stream.flush();
    }

    /// Writes a line to stderr (status and progress).
    pub fn status(&self, text: &str) {
        let mut stream = AutoStream::new(std::io::stderr(), self.stderr_color);
        let _ = writeln!(stream, "{text}");
    }

    /// Writes a miette report to stderr.
    pub fn report(&self, report: miette::Report) {
        self.status(&format!("{report:?}"));
    }
}
