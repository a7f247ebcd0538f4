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

    /// The same printer with colour off on both streams (`--no-color`).
    pub fn without_color(self) -> Self {
        Printer {
            stdout_color: ColorChoice::Never,
            stderr_color: ColorChoice::Never,
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

    /// A buffered writer to stdout for data made as it is written (a plan as JSON): nothing
    /// the size of the whole output is held. Like [`Self::out`], a closed pipe is not an error.
    pub fn out_writer(&self) -> impl Write + '_ {
        struct Out<'a>(&'a Printer);
        impl Write for Out<'_> {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                let mut stream = AutoStream::new(std::io::stdout(), self.0.stdout_color);
                let _ = stream.write_all(bytes);
                let _ = stream.flush();
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        std::io::BufWriter::with_capacity(64 * 1024, Out(self))
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

/// Whether a character could steer a terminal or reorder what it shows: control characters
/// (ESC, CR, backspace, C1 controls…) other than newline and tab, and the bidirectional
/// formatting characters ("Trojan Source").
fn is_terminal_hazard(character: char) -> bool {
    (character.is_control() && character != '\n' && character != '\t')
        || matches!(
            character,
            '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

/// Text from a manifest or a provider, made safe to print: every control or bidirectional
/// character is written as an escape such as `\u{1b}`. The one function renderers use for
/// names and values.
pub fn escape_control(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(is_terminal_hazard) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut escaped = String::with_capacity(text.len() + 8);
    for character in text.chars() {
        if is_terminal_hazard(character) {
            escaped.push_str(&format!("\\u{{{:x}}}", u32::from(character)));
        } else {
            escaped.push(character);
        }
    }
    std::borrow::Cow::Owned(escaped)
}

/// Like [`escape_control`], but each hazardous character becomes as many `?` as it has bytes,
/// so byte offsets into the text (snippet spans) stay valid.
pub fn neutralize_same_length(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(is_terminal_hazard) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut neutral = String::with_capacity(text.len());
    for character in text.chars() {
        if is_terminal_hazard(character) {
            neutral.extend(std::iter::repeat_n('?', character.len_utf8()));
        } else {
            neutral.push(character);
        }
    }
    std::borrow::Cow::Owned(neutral)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_and_bidi_characters_are_escaped() {
        assert_eq!(escape_control("web-1"), "web-1");
        assert!(matches!(
            escape_control("plain"),
            std::borrow::Cow::Borrowed(_)
        ));
        assert_eq!(escape_control("a\u{1b}[31mb"), "a\\u{1b}[31mb");
        assert_eq!(escape_control("x\u{202e}y\rz"), "x\\u{202e}y\\u{d}z");
        assert_eq!(escape_control("\u{9b}2J"), "\\u{9b}2J");
        assert_eq!(escape_control("line\n\tnext"), "line\n\tnext");
    }

    #[test]
    fn neutralizing_keeps_the_byte_length() {
        for text in ["a\u{1b}b", "\u{202e}x", "\u{061c}", "\u{9b}", "ok\n"] {
            let neutral = neutralize_same_length(text);
            assert_eq!(neutral.len(), text.len(), "{text:?}");
            assert!(!neutral.chars().any(is_terminal_hazard), "{neutral:?}");
        }
    }
}
