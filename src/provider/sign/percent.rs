//! Percent-encoding as the signers canonicalise it (SDK-HMAC-SHA256 and JDCLOUD2/3 alike):
//! every byte outside RFC 3986's unreserved set `A-Z a-z 0-9 - _ . ~` becomes `%XX` with
//! upper-case hex; decoding keeps a malformed escape as written.

fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~')
}

/// Percent-encodes every byte outside the unreserved set (and `/` when `keep_slash`), with
/// upper-case hex.
pub fn encode(text: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for &byte in text.as_bytes() {
        if is_unreserved(byte) || (keep_slash && byte == b'/') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Decodes `%XX` escapes; a malformed escape is kept as written. Invalid UTF-8 is replaced,
/// which can only make a signature fail, never pass.
pub fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%'
            && let Some(hex) = bytes.get(index + 1..index + 3)
            && let Ok(text) = std::str::from_utf8(hex)
            && let Ok(value) = u8::from_str_radix(text, 16)
        {
            out.push(value);
            index += 3;
            continue;
        }
        out.push(bytes[index]);
        index += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreserved_bytes_stay_and_slash_only_when_asked() {
        assert_eq!(encode("a-b_c.d~e", false), "a-b_c.d~e");
        assert_eq!(encode("a/b c:ü", false), "a%2Fb%20c%3A%C3%BC");
        assert_eq!(encode("a/b c", true), "a/b%20c");
    }

    #[test]
    fn decoding_keeps_malformed_escapes() {
        assert_eq!(decode("a%2Cb"), "a,b");
        assert_eq!(decode("100%"), "100%");
        assert_eq!(decode("%zz"), "%zz");
        assert_eq!(decode("%zz%4"), "%zz%4");
        assert_eq!(decode("%E2%9C%93"), "✓");
        assert_eq!(decode("%%41"), "%A");
    }
}
