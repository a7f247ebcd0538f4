//! Parameters both ECS and CloudDC read: query values, id lists, numbers, the password rule.

use super::errors::{Api, ApiError, parameter_error};
use super::{MAX_IDS_PER_READ, PASSWORD_SPECIALS};

pub(super) fn query_value<'a>(query: &'a [(String, String)], key: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(name, _)| name == key)
        .map(|(_, value)| value.as_str())
}

pub(super) fn id_list(
    api: Api,
    query: &[(String, String)],
    key: &str,
) -> Result<Option<Vec<String>>, ApiError> {
    let Some(text) = query_value(query, key) else {
        return Ok(None);
    };
    let ids: Vec<String> = text
        .split(',')
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .map(str::to_string)
        .collect();
    if ids.len() > MAX_IDS_PER_READ {
        return Err(parameter_error(
            api,
            format!(
                "{key} holds {} ids; at most {MAX_IDS_PER_READ} are allowed",
                ids.len()
            ),
        ));
    }
    Ok(Some(ids))
}

pub(super) fn number(
    api: Api,
    query: &[(String, String)],
    key: &str,
) -> Result<Option<usize>, ApiError> {
    query_value(query, key)
        .map(|text| {
            text.parse::<usize>().map_err(|_| {
                parameter_error(api, format!("{key} must be a whole number, not `{text}`"))
            })
        })
        .transpose()
}

/// 8–26 characters; at least three classes; only letters, digits and the listed specials; not
/// containing `root`/`administrator` or their reverse. The offending characters are never named.
pub(super) fn check_password(password: &str) -> Result<(), String> {
    let length = password.chars().count();
    if !(8..=26).contains(&length) {
        return Err(format!(
            "the password must be 8 to 26 characters, not {length}"
        ));
    }
    if !password
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || PASSWORD_SPECIALS.contains(c))
    {
        return Err(format!(
            "the password may only hold letters, digits and {PASSWORD_SPECIALS}"
        ));
    }
    let classes = [
        password.chars().any(|c| c.is_ascii_uppercase()),
        password.chars().any(|c| c.is_ascii_lowercase()),
        password.chars().any(|c| c.is_ascii_digit()),
        password.chars().any(|c| PASSWORD_SPECIALS.contains(c)),
    ];
    if classes.iter().filter(|present| **present).count() < 3 {
        return Err("the password must hold at least three of: upper case, lower case, digits, special characters".to_string());
    }
    let lower = password.to_ascii_lowercase();
    for name in ["root", "administrator"] {
        let reversed: String = name.chars().rev().collect();
        if lower.contains(name) || lower.contains(&reversed) {
            return Err("the password must not contain the user name or its reverse".to_string());
        }
    }
    Ok(())
}
