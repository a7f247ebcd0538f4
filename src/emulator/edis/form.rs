//! Form-encoded bodies: decoding them strictly, and refusing missing or unknown fields.

use super::errors::ApiError;

/// Refuses missing required fields, and any field that is neither required nor optional.
pub(super) fn only_fields(
    form: &[(String, String)],
    required: &[&str],
    optional: &[&str],
) -> Result<(), ApiError> {
    for name in required {
        if field(form, name).is_none_or(str::is_empty) {
            return Err(ApiError::invalid(&format!("`{name}` is missing")));
        }
    }
    for (name, _) in form {
        if !required.contains(&name.as_str()) && !optional.contains(&name.as_str()) {
            return Err(ApiError::invalid(&format!("unexpected field `{name}`")));
        }
    }
    Ok(())
}

pub(super) fn field<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

/// Decodes an `application/x-www-form-urlencoded` body (`+` is a space, `%XX` a byte, the
/// result UTF-8). Refuses malformed escapes and repeated names.
pub fn decode_form(body: &[u8]) -> Option<Vec<(String, String)>> {
    let text = std::str::from_utf8(body).ok()?;
    let mut fields: Vec<(String, String)> = Vec::new();
    for pair in text.split('&').filter(|pair| !pair.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = unescape(name)?;
        if fields.iter().any(|(seen, _)| *seen == name) {
            return None;
        }
        fields.push((name, unescape(value)?));
    }
    Some(fields)
}

fn unescape(text: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes().iter();
    while let Some(&byte) = rest.next() {
        match byte {
            b'+' => bytes.push(b' '),
            b'%' => {
                let high = char::from(*rest.next()?).to_digit(16)?;
                let low = char::from(*rest.next()?).to_digit(16)?;
                bytes.push(u8::try_from(high * 16 + low).ok()?);
            }
            other => bytes.push(other),
        }
    }
    String::from_utf8(bytes).ok()
}
