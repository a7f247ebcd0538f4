//! Request signing. Shared with the emulator, which verifies with the same code; each algorithm
//! is pinned by the official SDKs' vectors in `shared/providers/signing-vectors.json`.

pub mod jdcloud;
pub mod percent;
pub mod sdk_hmac;
pub mod zc2;

/// Constant-time comparison of two signatures.
pub fn signatures_match(expected: &str, received: &str) -> bool {
    let (expected, received) = (expected.as_bytes(), received.as_bytes());
    expected.len() == received.len()
        && expected
            .iter()
            .zip(received)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_match_only_when_equal() {
        assert!(signatures_match("abc", "abc"));
        assert!(!signatures_match("abc", "abd"));
        assert!(!signatures_match("abc", "ab"));
    }
}
