//! JSON values written the way the manifest writes them (YAML block style), for plan output:
//! `raid_type: 1` reads better than `"{\"raid_type\":1}"`. Display only; nothing parses it.

use serde_json::Value;

use crate::output::escape_control;

/// The value as YAML lines, without indentation of its own (the caller indents them). A
/// scalar is one line; an empty mapping or list is `{}` / `[]`.
pub fn lines(value: &Value) -> Vec<String> {
    let mut out = Vec::new();
    write(value, 0, &mut out);
    out
}

fn write(value: &Value, indent: usize, out: &mut Vec<String>) {
    let pad = " ".repeat(indent);
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, child) in map {
                let key = scalar_text(key);
                if is_block(child) {
                    out.push(format!("{pad}{key}:"));
                    let child_indent = if child.is_array() { indent } else { indent + 2 };
                    write(child, child_indent, out);
                } else {
                    out.push(format!("{pad}{key}: {}", inline(child)));
                }
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for item in items {
                if is_block(item) {
                    // The first line of the item goes after the dash, the rest under it.
                    let mut nested = Vec::new();
                    write(item, indent + 2, &mut nested);
                    for (position, line) in nested.into_iter().enumerate() {
                        if position == 0 {
                            out.push(format!("{pad}- {}", line.trim_start()));
                        } else {
                            out.push(line);
                        }
                    }
                } else {
                    out.push(format!("{pad}- {}", inline(item)));
                }
            }
        }
        other => out.push(format!("{pad}{}", inline(other))),
    }
}

fn is_block(value: &Value) -> bool {
    match value {
        Value::Object(map) => !map.is_empty(),
        Value::Array(items) => !items.is_empty(),
        _ => false,
    }
}

fn inline(value: &Value) -> String {
    match value {
        Value::Null => "null".to_string(),
        Value::Bool(flag) => flag.to_string(),
        Value::Number(number) => number.to_string(),
        Value::String(text) => scalar_text(text),
        Value::Object(_) => "{}".to_string(),
        Value::Array(_) => "[]".to_string(),
    }
}

/// A string plain when YAML would read it back as the same string, else double-quoted (JSON
/// quoting is valid YAML). Control and bidirectional characters are escaped either way.
fn scalar_text(text: &str) -> String {
    let plain = !text.is_empty()
        && text.trim() == text
        && !text.starts_with(|c: char| "-?:,[]{}#&*!|>'\"%@`~".contains(c))
        && !text.contains(": ")
        && !text.contains(" #")
        && !text.ends_with(':')
        && !text.chars().any(char::is_control)
        && !looks_like_another_type(text);
    if plain {
        escape_control(text).into_owned()
    } else {
        escape_control(&Value::String(text.to_string()).to_string()).into_owned()
    }
}

/// Words YAML 1.2 would read as null, a boolean or a number.
fn looks_like_another_type(text: &str) -> bool {
    matches!(
        text.to_ascii_lowercase().as_str(),
        "null" | "~" | "true" | "false" | "yes" | "no" | "on" | "off" | ".inf" | "-.inf" | ".nan"
    ) || text.parse::<f64>().is_ok()
        || text.starts_with("0x")
        || text.starts_with("0o")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn options_read_like_the_manifest() {
        let value = json!({
            "raid_type": 1,
            "partitions": [{"fs_path": "/", "fs_type": "ext4", "size": 100}, {"fs_path": "/data"}],
            "nic": {"wan_name": "wan0"},
            "os_name": "Ubuntu 22.04 64位",
            "keep_data": false,
            "empty": {},
            "none": []
        });
        assert_eq!(
            lines(&value),
            [
                "raid_type: 1",
                "partitions:",
                "- fs_path: /",
                "  fs_type: ext4",
                "  size: 100",
                "- fs_path: /data",
                "nic:",
                "  wan_name: wan0",
                "os_name: Ubuntu 22.04 64位",
                "keep_data: false",
                "empty: {}",
                "none: []",
            ]
        );
    }

    #[test]
    fn strings_that_would_change_meaning_are_quoted() {
        for (text, shown) in [
            ("123", "\"123\""),
            ("yes", "\"yes\""),
            ("a: b", "\"a: b\""),
            ("- x", "\"- x\""),
            ("", "\"\""),
            (" padded", "\" padded\""),
            ("line\nbreak", "\"line\\nbreak\""),
            ("esc\u{1b}[31m", "\"esc\\u001b[31m\""),
            ("plain-text", "plain-text"),
        ] {
            assert_eq!(lines(&json!(text)), [shown], "{text:?}");
        }
    }

    #[test]
    fn bidirectional_characters_are_escaped_in_plain_strings() {
        assert_eq!(lines(&json!("a\u{202e}b")), ["a\\u{202e}b"]);
    }
}
