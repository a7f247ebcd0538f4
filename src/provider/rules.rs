//! Building blocks of the providers' input rules (`*/validate.rs`): issues, JSON pointers,
//! "did you mean" hints for unknown keys, hostname and password checks. Each provider keeps its
//! own limits and wording; only the mechanics live here.

use std::ops::RangeInclusive;

use super::FieldIssue;

/// One issue at `pointer`.
pub fn issue(pointer: &str, message: &str, help: Option<&str>) -> FieldIssue {
    FieldIssue {
        pointer: pointer.to_string(),
        message: message.to_string(),
        help: help.map(str::to_string),
    }
}

/// JSON pointer escaping of one key (RFC 6901).
pub fn escape_pointer(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// "did you mean `x`?" when a close allowed key exists, then the full list.
pub fn allowed_keys_help(key: &str, allowed: &[&str]) -> String {
    let list = allowed
        .iter()
        .map(|name| format!("`{name}`"))
        .collect::<Vec<_>>()
        .join(", ");
    // The same judgement of "a likely typo" as the manifest's own keys get.
    match crate::manifest::diagnostics::did_you_mean(key, allowed.iter().copied()) {
        Some(name) => format!("did you mean `{name}`? allowed: {list}"),
        None => format!("allowed: {list}"),
    }
}

/// What is wrong with a hostname of DNS characters (letters, digits, `-`, `.`) and at most
/// `max` characters. `too_long` ends the length message, e.g. "at most 64 are allowed".
pub fn hostname_problem(hostname: &str, max: usize, too_long: &str) -> Option<String> {
    if hostname.is_empty() {
        return Some("the hostname is empty".to_string());
    }
    let length = hostname.chars().count();
    if length > max {
        return Some(format!(
            "the hostname is {length} characters long; {too_long}"
        ));
    }
    let bad: Vec<String> = hostname
        .chars()
        .filter(|c| !c.is_ascii_alphanumeric() && *c != '-' && *c != '.')
        .map(|c| format!("`{c}`"))
        .collect();
    (!bad.is_empty()).then(|| format!("the hostname contains {}", bad.join(", ")))
}

/// Which character classes a password must show.
#[derive(Debug, Clone, Copy)]
pub enum ClassRule {
    /// Each class on its own ("no upper-case letter", …).
    Every,
    /// At least this many of the classes ("only 2 of the 4 character classes").
    AtLeast(usize),
}

/// A provider's password rule. Problems are described in words that never quote the password.
#[derive(Debug, Clone)]
pub struct PasswordPolicy {
    pub length: RangeInclusive<usize>,
    /// Upper case, lower case and digits are classes; the special characters are one more
    /// when given.
    pub specials: Option<&'static str>,
    pub classes: ClassRule,
    /// Whether a character may appear at all.
    pub allowed: fn(char) -> bool,
    /// Follows the count of characters that may not, e.g. "character(s) outside the allowed
    /// set".
    pub refused: &'static str,
}

impl PasswordPolicy {
    /// Every problem with `password`, in the order length, classes, refused characters.
    pub fn problems(&self, password: &str) -> Vec<String> {
        let mut problems = Vec::new();
        let length = password.chars().count();
        if !self.length.contains(&length) {
            problems.push(format!("it is {length} characters long"));
        }
        let has = |predicate: &dyn Fn(char) -> bool| password.chars().any(predicate);
        let mut classes: Vec<(bool, &str)> = vec![
            (has(&|c| c.is_ascii_uppercase()), "no upper-case letter"),
            (has(&|c| c.is_ascii_lowercase()), "no lower-case letter"),
            (has(&|c| c.is_ascii_digit()), "no digit"),
        ];
        if let Some(specials) = self.specials {
            classes.push((has(&|c| specials.contains(c)), "no special character"));
        }
        match self.classes {
            ClassRule::Every => problems.extend(
                classes
                    .iter()
                    .filter(|(present, _)| !present)
                    .map(|(_, missing)| missing.to_string()),
            ),
            ClassRule::AtLeast(needed) => {
                let present = classes.iter().filter(|(present, _)| *present).count();
                if present < needed {
                    problems.push(format!(
                        "only {present} of the {} character classes",
                        classes.len()
                    ));
                }
            }
        }
        let refused = password.chars().filter(|c| !(self.allowed)(*c)).count();
        if refused > 0 {
            // Counted, never named: even one character narrows a guess.
            problems.push(format!("{refused} {}", self.refused));
        }
        problems
    }

    /// The problems joined into one phrase, or `None` when the password is fine.
    pub fn problem(&self, password: &str) -> Option<String> {
        join_problems(self.problems(password))
    }
}

/// `None` for no problems, else them joined with commas.
pub fn join_problems(problems: Vec<String>) -> Option<String> {
    (!problems.is_empty()).then(|| problems.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointers_are_escaped() {
        assert_eq!(escape_pointer("a/b~c"), "a~1b~0c");
    }

    #[test]
    fn allowed_keys_help_suggests_only_close_keys() {
        let allowed = ["raid_type", "partitions", "nic"];
        assert_eq!(
            allowed_keys_help("RaidType", &allowed),
            "did you mean `raid_type`? allowed: `raid_type`, `partitions`, `nic`"
        );
        assert_eq!(
            allowed_keys_help("colour", &allowed),
            "allowed: `raid_type`, `partitions`, `nic`"
        );
        assert_eq!(
            allowed_keys_help("emial", &["email", "password"]),
            "did you mean `email`? allowed: `email`, `password`"
        );
    }

    #[test]
    fn hostnames() {
        assert_eq!(hostname_problem("web-1.example", 64, "x"), None);
        assert_eq!(
            hostname_problem("", 64, "x").as_deref(),
            Some("the hostname is empty")
        );
        assert_eq!(
            hostname_problem("abcdef", 5, "at most 5").as_deref(),
            Some("the hostname is 6 characters long; at most 5")
        );
        assert_eq!(
            hostname_problem("a_b c", 64, "x").as_deref(),
            Some("the hostname contains `_`, ` `")
        );
    }

    #[test]
    fn password_classes_each_or_at_least() {
        let every = PasswordPolicy {
            length: 8..=16,
            specials: Some("!"),
            classes: ClassRule::Every,
            allowed: |c| c.is_ascii_alphanumeric() || c == '!',
            refused: "character(s) outside the allowed set",
        };
        assert_eq!(every.problem("Abcdefg1!"), None);
        assert_eq!(
            every.problem("abc#").as_deref(),
            Some(
                "it is 4 characters long, no upper-case letter, no digit, no special character, \
                 1 character(s) outside the allowed set"
            )
        );
        let three = PasswordPolicy {
            classes: ClassRule::AtLeast(3),
            ..every
        };
        assert_eq!(three.problem("Abcdefgh1"), None);
        assert_eq!(
            three.problem("abcdefgh").as_deref(),
            Some("only 1 of the 4 character classes")
        );
    }
}
