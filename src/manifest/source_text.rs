//! A manifest file's text as diagnostics show it: lines indexed once, so that placing and
//! rendering any number of diagnostics costs no more than one pass over the file, and every
//! character that could steer a terminal replaced by a visible stand-in of the same length, so
//! that byte offsets (spans) stay valid.

use std::sync::Arc;

use miette::{MietteError, MietteSpanContents, SourceCode, SourceSpan, SpanContents};

/// The shown text of one file with the byte offset where each line starts.
#[derive(Debug, Clone)]
pub(crate) struct SourceText {
    text: Arc<str>,
    /// Byte offset of every line start; the first is 0.
    line_starts: Arc<[usize]>,
}

impl SourceText {
    pub fn new(text: &str) -> Self {
        let text = crate::output::neutralize_same_length(text);
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(newline, _)| newline + 1))
            .collect();
        SourceText {
            text: Arc::from(text.as_ref()),
            line_starts,
        }
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// 0-based index of the line holding byte `offset`.
    fn line_index(&self, offset: usize) -> usize {
        self.line_starts
            .partition_point(|start| *start <= offset)
            .saturating_sub(1)
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_column(&self, offset: usize) -> (usize, usize) {
        let offset = floor_char_boundary(&self.text, offset);
        let line = self.line_index(offset);
        let line_start = self.line_starts.get(line).copied().unwrap_or(0);
        let column = self.text[line_start..offset].chars().count() + 1;
        (line + 1, column)
    }
}

pub(crate) fn floor_char_boundary(text: &str, offset: usize) -> usize {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

impl SourceCode for SourceText {
    /// miette's own reader scans the text from its start for every snippet; this one cuts the
    /// few lines around the span out first (found by binary search) and lets miette read those.
    fn read_span<'a>(
        &'a self,
        span: &SourceSpan,
        context_lines_before: usize,
        context_lines_after: usize,
    ) -> Result<Box<dyn SpanContents<'a> + 'a>, MietteError> {
        let start = span.offset();
        let end = start.saturating_add(span.len());
        if end > self.text.len() {
            return Err(MietteError::OutOfBounds);
        }
        let first_line = self.line_index(start);
        let last_line = self.line_index(end.saturating_sub(1).max(start));
        let window_first = first_line.saturating_sub(context_lines_before);
        let window_end_line = last_line
            .saturating_add(context_lines_after)
            .saturating_add(1);
        let window_start = self.line_starts[window_first];
        // Up to the start of the line after the window, so the window keeps its last newline.
        let window_end = self
            .line_starts
            .get(window_end_line.saturating_add(1))
            .copied()
            .unwrap_or(self.text.len());
        let window = &self.text.as_bytes()[window_start..window_end];
        let relative = SourceSpan::new((start - window_start).into(), span.len());
        let inner = <[u8] as SourceCode>::read_span(
            window,
            &relative,
            context_lines_before,
            context_lines_after,
        )?;
        Ok(Box::new(MietteSpanContents::new(
            inner.data(),
            SourceSpan::new(
                (inner.span().offset() + window_start).into(),
                inner.span().len(),
            ),
            inner.line() + window_first,
            inner.column(),
            inner.line_count() + window_first,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_count_characters() {
        let text = SourceText::new("a: é\nbc: x\n");
        assert_eq!(text.line_column(0), (1, 1));
        assert_eq!(text.line_column(5), (1, 5));
        assert_eq!(text.line_column(6), (2, 1));
        assert_eq!(text.line_column(10), (2, 5));
    }

    /// The windowed reader answers exactly what miette's whole-text reader answers.
    #[test]
    fn snippets_match_miettes_own_reader() {
        let source: String = (0..40).map(|i| format!("key{i}: value {i}\n")).collect();
        let text = SourceText::new(&source);
        for (offset, length) in [(0, 3), (5, 0), (100, 7), (300, 40), (source.len() - 4, 3)] {
            let span = SourceSpan::new(offset.into(), length);
            for (before, after) in [(0, 0), (1, 1), (3, 2)] {
                let ours = text.read_span(&span, before, after).unwrap();
                let theirs = source.as_str().read_span(&span, before, after).unwrap();
                assert_eq!(ours.data(), theirs.data(), "{offset} {length} {before}");
                assert_eq!(ours.span(), theirs.span(), "{offset} {length} {before}");
                assert_eq!(ours.line(), theirs.line(), "{offset} {length} {before}");
                assert_eq!(ours.column(), theirs.column(), "{offset} {length}");
            }
        }
        let beyond = SourceSpan::new(source.len().into(), 5);
        assert!(text.read_span(&beyond, 1, 1).is_err());
    }

    #[test]
    fn terminal_controls_are_replaced_without_moving_offsets() {
        let source = "name: \"a\u{202e}b\u{1b}[31m\"\nnext: x\n";
        let text = SourceText::new(source);
        assert_eq!(text.as_str().len(), source.len());
        assert!(!text.as_str().contains('\u{202e}'));
        assert!(!text.as_str().contains('\u{1b}'));
        assert_eq!(text.line_column(source.find("next").unwrap()), (2, 1));
    }
}
