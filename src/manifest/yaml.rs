//! YAML front end: one saphyr pass gives the JSON value that the schema and serde see, and a
//! span for every node and key, addressed by JSON pointer, so any later error can point at the
//! exact YAML token.

use std::collections::HashMap;

use saphyr::{LoadableYamlNode, MarkedYaml, Scalar, YamlData};
use serde_json::{Map, Number, Value};

/// Byte range in the source (miette spans are in bytes; saphyr counts characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSpan {
    pub offset: usize,
    pub length: usize,
}

/// Where every node (and every mapping key) sits in the source, by JSON pointer.
#[derive(Debug, Clone, Default)]
pub struct SpanIndex {
    pub values: HashMap<String, ByteSpan>,
    pub keys: HashMap<String, ByteSpan>,
}

impl SpanIndex {
    /// The span of the value at `pointer`, or of its nearest ancestor that has one.
    pub fn value_or_ancestor(&self, pointer: &str) -> Option<ByteSpan> {
        let mut current = pointer.to_string();
        loop {
            if let Some(span) = self.values.get(&current) {
                return Some(*span);
            }
            match current.rfind('/') {
                Some(cut) => current.truncate(cut),
                None => return None,
            }
        }
    }

    /// The span of the key naming `pointer`, else of the value.
    pub fn key_or_value(&self, pointer: &str) -> Option<ByteSpan> {
        self.keys
            .get(pointer)
            .copied()
            .or_else(|| self.value_or_ancestor(pointer))
    }
}

/// A YAML syntax problem (including duplicate keys), with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    pub message: String,
    pub span: ByteSpan,
    /// 1-based.
    pub line: usize,
    /// 1-based, in characters.
    pub column: usize,
}

/// Escapes one JSON pointer segment (RFC 6901).
pub fn escape_pointer_segment(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

/// Parses one YAML document into a JSON value and its span index.
/// An empty document reads as `null`; more than one document is an error.
pub fn parse_document(source: &str) -> Result<(Value, SpanIndex), YamlError> {
    let offsets = CharToByte::new(source);
    let documents = MarkedYaml::load_from_str(source).map_err(|error| {
        let marker = error.marker();
        let offset = offsets.byte(marker.index());
        YamlError {
            message: error.info().to_string(),
            // One character, not one byte: a span ending inside a character cannot be shown.
            span: ByteSpan {
                offset,
                length: source
                    .get(offset..)
                    .and_then(|rest| rest.chars().next())
                    .map_or(0, char::len_utf8),
            },
            line: marker.line(),
            column: marker.col() + 1,
        }
    })?;
    let mut index = SpanIndex::default();
    match documents.len() {
        0 => Ok((Value::Null, index)),
        1 => {
            let value = convert(&documents[0], "", &offsets, &mut index)?;
            Ok((value, index))
        }
        _ => {
            let second = &documents[1];
            Err(YamlError {
                message:
                    "only one YAML document per file is allowed (found `---` separating several)"
                        .to_string(),
                span: offsets.span(second),
                line: second.span.start.line(),
                column: second.span.start.col() + 1,
            })
        }
    }
}

struct CharToByte {
    /// Byte offset of each character, plus one past the end.
    starts: Vec<usize>,
}

impl CharToByte {
    fn new(source: &str) -> Self {
        let mut starts: Vec<usize> = source.char_indices().map(|(byte, _)| byte).collect();
        starts.push(source.len());
        CharToByte { starts }
    }

    fn byte(&self, char_index: usize) -> usize {
        self.starts
            .get(char_index)
            .copied()
            .unwrap_or_else(|| self.starts.last().copied().unwrap_or(0))
    }

    fn span(&self, node: &MarkedYaml<'_>) -> ByteSpan {
        let start = self.byte(node.span.start.index());
        let end = self.byte(node.span.end.index()).max(start);
        ByteSpan {
            offset: start,
            length: end - start,
        }
    }
}

fn error_at(node: &MarkedYaml<'_>, offsets: &CharToByte, message: String) -> YamlError {
    YamlError {
        message,
        span: offsets.span(node),
        line: node.span.start.line(),
        column: node.span.start.col() + 1,
    }
}

fn convert(
    node: &MarkedYaml<'_>,
    pointer: &str,
    offsets: &CharToByte,
    index: &mut SpanIndex,
) -> Result<Value, YamlError> {
    index.values.insert(pointer.to_string(), offsets.span(node));
    match &node.data {
        YamlData::Value(scalar) => scalar_to_json(scalar, node, offsets),
        YamlData::Representation(text, _, _) => Ok(Value::String(text.to_string())),
        YamlData::Tagged(_, inner) => convert(inner, pointer, offsets, index),
        YamlData::Sequence(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (position, item) in items.iter().enumerate() {
                out.push(convert(
                    item,
                    &format!("{pointer}/{position}"),
                    offsets,
                    index,
                )?);
            }
            Ok(Value::Array(out))
        }
        YamlData::Mapping(entries) => {
            let mut out = Map::new();
            for (key, value) in entries {
                let key_text = match &key.data {
                    YamlData::Value(Scalar::String(text)) => text.to_string(),
                    YamlData::Value(Scalar::Integer(number)) => number.to_string(),
                    YamlData::Value(Scalar::Boolean(flag)) => flag.to_string(),
                    YamlData::Representation(text, _, _) => text.to_string(),
                    _ => {
                        return Err(error_at(
                            key,
                            offsets,
                            "mapping keys must be plain strings".to_string(),
                        ));
                    }
                };
                let child = format!("{pointer}/{}", escape_pointer_segment(&key_text));
                index.keys.insert(child.clone(), offsets.span(key));
                let converted = convert(value, &child, offsets, index)?;
                out.insert(key_text, converted);
            }
            Ok(Value::Object(out))
        }
        YamlData::Alias(_) => Err(error_at(node, offsets, "unresolved YAML alias".to_string())),
        YamlData::BadValue => Err(error_at(node, offsets, "invalid YAML value".to_string())),
    }
}

fn scalar_to_json(
    scalar: &Scalar<'_>,
    node: &MarkedYaml<'_>,
    offsets: &CharToByte,
) -> Result<Value, YamlError> {
    Ok(match scalar {
        Scalar::Null => Value::Null,
        Scalar::Boolean(flag) => Value::Bool(*flag),
        Scalar::Integer(number) => Value::Number((*number).into()),
        Scalar::FloatingPoint(number) => match Number::from_f64(number.into_inner()) {
            Some(number) => Value::Number(number),
            None => {
                return Err(error_at(
                    node,
                    offsets,
                    "NaN and infinite numbers are not allowed".to_string(),
                ));
            }
        },
        Scalar::String(text) => Value::String(text.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_keys_get_byte_spans_after_non_ascii_text() {
        let source = "name: \"héllo wörld\"\nitems:\n  - id: abc\n";
        let (value, index) = parse_document(source).unwrap();
        assert_eq!(value["items"][0]["id"], "abc");
        let span = index.values["/items/0/id"];
        assert_eq!(&source[span.offset..span.offset + span.length], "abc");
        let key = index.keys["/items"];
        assert_eq!(&source[key.offset..key.offset + key.length], "items");
    }

    #[test]
    fn duplicate_keys_are_errors_with_a_line() {
        let error = parse_document("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(error.line, 3);
        assert!(error.message.contains("duplicate"), "{}", error.message);
    }

    #[test]
    fn yaml_1_2_scalars() {
        let (value, _) = parse_document("a: yes\nb: 0x1F\nc:\nd: '42'\n").unwrap();
        assert_eq!(value["a"], "yes");
        assert_eq!(value["b"], 31);
        assert_eq!(value["c"], Value::Null);
        assert_eq!(value["d"], "42");
    }

    #[test]
    fn keys_with_slashes_are_escaped_in_pointers() {
        let (_, index) = parse_document("\"a/b\": 1\n").unwrap();
        assert!(index.values.contains_key("/a~1b"));
    }

    #[test]
    fn syntax_error_span_covers_a_whole_character() {
        let source = "a: \"x\" é\n";
        let error = parse_document(source).unwrap_err();
        assert_eq!(
            &source[error.span.offset..error.span.offset + error.span.length],
            "é"
        );
    }

    #[test]
    fn several_documents_are_refused() {
        assert!(parse_document("a: 1\n---\nb: 2\n").is_err());
    }
}
