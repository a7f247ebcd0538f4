//! Manifest diagnostics: plain data for `--json`, and miette reports that show the offending
//! YAML token in its file.

use std::fmt;
use std::path::{Path, PathBuf};

use miette::{Diagnostic, LabeledSpan, NamedSource, SourceCode, SourceSpan};
use serde::Serialize;

use super::source_text::{SourceText, floor_char_boundary};
use super::yaml::{ByteSpan, SpanIndex, escape_pointer_segment};
use crate::output::escape_control;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One manifest file as read, with the spans of its YAML tokens.
#[derive(Debug, Clone)]
pub(crate) struct SourceFile {
    pub path: PathBuf,
    /// The path as the user wrote it, for messages.
    pub name: String,
    /// The text shown in snippets. Literal secrets are already masked here, and characters
    /// that could steer a terminal are replaced.
    pub text: SourceText,
    pub spans: SpanIndex,
}

impl SourceFile {
    pub fn new(path: &Path, text: &str, spans: SpanIndex) -> Self {
        SourceFile {
            path: path.to_path_buf(),
            name: escape_control(&path.display().to_string()).into_owned(),
            text: SourceText::new(text),
            spans,
        }
    }

    fn named_source(&self) -> NamedSource<SourceText> {
        NamedSource::new(&self.name, self.text.clone()).with_language("yaml")
    }

    /// 1-based line and column (in characters) of a byte offset.
    fn line_column(&self, offset: usize) -> (usize, usize) {
        self.text.line_column(offset)
    }

    /// The shown text of the span, if it lies inside the file.
    pub fn span_text(&self, span: ByteSpan) -> Option<&str> {
        self.text
            .as_str()
            .get(span.offset..span.offset.saturating_add(span.length))
    }

    /// Span of the value at `pointer` (or its nearest ancestor).
    pub fn value_span(&self, pointer: &str) -> Option<ByteSpan> {
        self.spans.value_or_ancestor(pointer)
    }

    /// Span of the key naming `pointer`; for list items (no key), the item's first line.
    pub fn key_span(&self, pointer: &str) -> Option<ByteSpan> {
        match self.spans.keys.get(pointer) {
            Some(span) => Some(*span),
            None => self.first_line_span(pointer),
        }
    }

    /// The first line of the value at `pointer`: a whole mapping is too big a label.
    pub fn first_line_span(&self, pointer: &str) -> Option<ByteSpan> {
        let span = self.value_span(pointer)?;
        let text = self.text.as_str();
        let start = floor_char_boundary(text, span.offset);
        let end = floor_char_boundary(text, span.offset + span.length);
        let first_line = text[start..end]
            .find('\n')
            .map_or(end - start, |newline| newline);
        let trimmed = text[start..start + first_line].trim_end().len();
        Some(ByteSpan {
            offset: start,
            length: trimmed,
        })
    }
}

/// `/servers/0/os` → `servers[0].os`; the root is "the top level".
pub(crate) fn display_path(pointer: &str) -> String {
    if pointer.is_empty() {
        return "the top level".to_string();
    }
    let mut out = String::new();
    for segment in pointer.split('/').skip(1) {
        let segment = segment.replace("~1", "/").replace("~0", "~");
        if !segment.is_empty() && segment.bytes().all(|byte| byte.is_ascii_digit()) {
            out.push_str(&format!("[{segment}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&segment);
        }
    }
    out
}

/// Joins a parent pointer and one unescaped key.
pub(crate) fn child_pointer(parent: &str, key: &str) -> String {
    format!("{parent}/{}", escape_pointer_segment(key))
}

#[derive(Debug, Clone)]
struct Label {
    span: ByteSpan,
    text: Option<String>,
}

/// A pointer at a second place, possibly in another file ("first defined here").
#[derive(Debug, Clone)]
struct Note {
    message: String,
    source: NamedSource<SourceText>,
    label: Label,
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Note {}

impl Diagnostic for Note {
    fn severity(&self) -> Option<miette::Severity> {
        Some(miette::Severity::Advice)
    }

    fn source_code(&self) -> Option<&dyn SourceCode> {
        Some(&self.source)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        Some(Box::new(std::iter::once(labeled(&self.label, true))))
    }
}

fn labeled(label: &Label, primary: bool) -> LabeledSpan {
    let span = SourceSpan::new(label.span.offset.into(), label.span.length);
    if primary {
        LabeledSpan::new_primary_with_span(label.text.clone(), span)
    } else {
        LabeledSpan::new_with_span(label.text.clone(), span)
    }
}

/// One problem found in the manifest, with where it is.
#[derive(Debug, Clone, Serialize)]
pub struct ManifestDiagnostic {
    pub severity: Severity,
    /// Stable identifier, e.g. `manifest::unknown-key`.
    pub code: String,
    pub message: String,
    pub help: Option<String>,
    pub file: Option<String>,
    /// 1-based.
    pub line: Option<usize>,
    /// 1-based, in characters.
    pub column: Option<usize>,
    /// JSON pointer of the offending node in its file.
    pub pointer: Option<String>,
    #[serde(skip)]
    source: Option<NamedSource<SourceText>>,
    #[serde(skip)]
    labels: Vec<Label>,
    #[serde(skip)]
    notes: Vec<Note>,
}

impl ManifestDiagnostic {
    fn new(severity: Severity, code: &str, message: impl Into<String>) -> Self {
        ManifestDiagnostic {
            severity,
            code: format!("manifest::{code}"),
            message: escape_control(&message.into()).into_owned(),
            help: None,
            file: None,
            line: None,
            column: None,
            pointer: None,
            source: None,
            labels: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// `code` is the part after `manifest::`.
    pub(crate) fn error(code: &str, message: impl Into<String>) -> Self {
        Self::new(Severity::Error, code, message)
    }

    pub(crate) fn warning(code: &str, message: impl Into<String>) -> Self {
        Self::new(Severity::Warning, code, message)
    }

    pub(crate) fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(escape_control(&help.into()).into_owned());
        self
    }

    /// Names a file that has no source to show (it could not be read).
    pub(crate) fn in_unread_file(mut self, path: &Path) -> Self {
        self.file = Some(path.display().to_string());
        self
    }

    /// Places the diagnostic at `span` of `file`, for the node at `pointer`.
    pub(crate) fn at(
        mut self,
        file: &SourceFile,
        pointer: &str,
        span: Option<ByteSpan>,
        label: impl Into<String>,
    ) -> Self {
        self.file = Some(file.name.clone());
        self.pointer = Some(pointer.to_string());
        self.source = Some(file.named_source());
        if let Some(span) = span {
            let (line, column) = file.line_column(span.offset);
            self.line = Some(line);
            self.column = Some(column);
            self.labels.insert(
                0,
                Label {
                    span,
                    text: Some(escape_control(&label.into()).into_owned()),
                },
            );
        }
        self
    }

    /// Adds a second place: a label in the same snippet when it is the same file, else a note
    /// with its own snippet.
    pub(crate) fn also_at(
        mut self,
        file: &SourceFile,
        span: Option<ByteSpan>,
        label: impl Into<String>,
    ) -> Self {
        let Some(span) = span else { return self };
        let text = escape_control(&label.into()).into_owned();
        if self.file.as_deref() == Some(file.name.as_str()) {
            self.labels.push(Label {
                span,
                text: Some(text),
            });
        } else {
            // The note's own header names its file and position; its message is the label.
            self.notes.push(Note {
                message: text,
                source: file.named_source(),
                label: Label { span, text: None },
            });
        }
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// A graphical report: `file:line:col`, the message, the source snippet with a label on
    /// the offending token, and the help.
    pub fn to_report(&self) -> miette::Report {
        miette::Report::new(self.clone())
    }

    /// Same identity for deduplication: one problem found through several servers (e.g. in
    /// `defaults`) is reported once.
    pub(crate) fn identity(&self) -> (String, Option<String>, Option<String>, String) {
        (
            self.code.clone(),
            self.file.clone(),
            self.pointer.clone(),
            self.message.clone(),
        )
    }
}

impl fmt::Display for ManifestDiagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ManifestDiagnostic {}

impl Diagnostic for ManifestDiagnostic {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(&self.code))
    }

    fn severity(&self) -> Option<miette::Severity> {
        Some(match self.severity {
            Severity::Error => miette::Severity::Error,
            Severity::Warning => miette::Severity::Warning,
        })
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help
            .as_ref()
            .map(|help| Box::new(help) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn SourceCode> {
        self.source.as_ref().map(|source| source as &dyn SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        if self.labels.is_empty() {
            return None;
        }
        Some(Box::new(
            self.labels
                .iter()
                .enumerate()
                .map(|(position, label)| labeled(label, position == 0)),
        ))
    }

    fn related<'a>(&'a self) -> Option<Box<dyn Iterator<Item = &'a dyn Diagnostic> + 'a>> {
        if self.notes.is_empty() {
            return None;
        }
        Some(Box::new(
            self.notes.iter().map(|note| note as &dyn Diagnostic),
        ))
    }
}

/// Everything wrong with a manifest (errors, and the warnings found alongside them).
#[derive(Debug, Clone, Serialize)]
pub struct ManifestErrors {
    pub diagnostics: Vec<ManifestDiagnostic>,
}

impl ManifestErrors {
    pub fn error_count(&self) -> usize {
        self.diagnostics.iter().filter(|d| d.is_error()).count()
    }
}

impl fmt::Display for ManifestErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let errors = self.error_count();
        let warnings = self.diagnostics.len() - errors;
        write!(f, "manifest has {}", plural(errors, "error"))?;
        if warnings > 0 {
            write!(f, " and {}", plural(warnings, "warning"))?;
        }
        Ok(())
    }
}

fn plural(count: usize, noun: &str) -> String {
    if count == 1 {
        format!("1 {noun}")
    } else {
        format!("{count} {noun}s")
    }
}

impl std::error::Error for ManifestErrors {}

impl Diagnostic for ManifestErrors {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new("manifest::invalid"))
    }

    fn related<'a>(&'a self) -> Option<Box<dyn Iterator<Item = &'a dyn Diagnostic> + 'a>> {
        Some(Box::new(
            self.diagnostics
                .iter()
                .map(|diagnostic| diagnostic as &dyn Diagnostic),
        ))
    }
}

/// Levenshtein distance in characters.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for (i, a_char) in a.chars().enumerate() {
        current[0] = i + 1;
        for (j, b_char) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(a_char != *b_char);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

/// Beyond this many candidates "did you mean" is not worked out: the names come from the
/// manifest, and comparing each typo with every one of a huge list would make checking
/// quadratic.
pub(crate) const MAX_SUGGESTION_CANDIDATES: usize = 1000;

/// The closest of the names to `typed` when there are few enough to compare (see
/// [`MAX_SUGGESTION_CANDIDATES`]).
pub(crate) fn did_you_mean_among<'a>(typed: &str, names: &[&'a str]) -> Option<&'a str> {
    if names.len() > MAX_SUGGESTION_CANDIDATES {
        return None;
    }
    did_you_mean(typed, names.iter().copied())
}

/// At most `limit` names joined with commas, then how many more: a help text stays short
/// however many names the manifest has.
pub(crate) fn name_list(names: &[&str], limit: usize) -> String {
    let mut text = names
        .iter()
        .take(limit)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > limit {
        text.push_str(&format!(" … and {} more", names.len() - limit));
    }
    text
}

/// The candidate closest to `typed`, if it is close enough to be a likely typo.
pub(crate) fn did_you_mean<'a>(
    typed: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let typed_lower = typed.to_lowercase();
    candidates
        .into_iter()
        .map(|candidate| (likeness(&typed_lower, &candidate.to_lowercase()), candidate))
        .filter(|(distance, candidate)| *distance <= typo_budget(candidate))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

/// Edit distance, except that a prefix of three or more characters (`zenlayer` for
/// `zenlayer-bmc`) counts as one edit: people often drop a suffix.
fn likeness(typed: &str, candidate: &str) -> usize {
    let distance = edit_distance(typed, candidate);
    let (shorter, longer) = if typed.len() <= candidate.len() {
        (typed, candidate)
    } else {
        (candidate, typed)
    };
    if shorter.chars().count() >= 3 && longer.starts_with(shorter) {
        distance.min(1)
    } else {
        distance
    }
}

/// Short words tolerate fewer edits, or `id` would suggest `os`.
fn typo_budget(candidate: &str) -> usize {
    match candidate.chars().count() {
        0..=3 => 1,
        4..=6 => 2,
        _ => 3,
    }
}

/// Renders a diagnostic as plain text (no colours), for tests and non-terminal output.
pub fn render_plain(diagnostic: &dyn Diagnostic) -> String {
    let mut out = String::new();
    let handler =
        miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor())
            .with_width(160)
            .with_links(false);
    // Writing into a String cannot fail.
    let _ = handler.render_report(&mut out, diagnostic);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_insertions_deletions_and_substitutions() {
        assert_eq!(edit_distance("image", "image"), 0);
        assert_eq!(edit_distance("imgae", "image"), 2);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("héllo", "hello"), 1);
    }

    #[test]
    fn did_you_mean_picks_the_closest_plausible_key() {
        let keys = ["image", "revision"];
        assert_eq!(did_you_mean("imgae", keys), Some("image"));
        assert_eq!(did_you_mean("Revison", keys), Some("revision"));
        assert_eq!(did_you_mean("flavor", keys), None);
        assert_eq!(did_you_mean("os", ["id"]), None);
        assert_eq!(
            did_you_mean("zenlayer", ["huaweicloud-ecs", "zenlayer-bmc"]),
            Some("zenlayer-bmc")
        );
    }

    #[test]
    fn pointers_read_like_paths() {
        assert_eq!(display_path("/servers/0/os"), "servers[0].os");
        assert_eq!(display_path("/providers/a~1b/type"), "providers.a/b.type");
        assert_eq!(display_path(""), "the top level");
    }
}
