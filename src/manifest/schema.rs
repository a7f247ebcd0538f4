//! The manifest's JSON Schema (`schemas/manifest.schema.json`, embedded) and the translation of
//! its errors into diagnostics on the YAML tokens that caused them.

use std::sync::LazyLock;

use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::{JsonType, ValidationError, Validator};
use serde_json::Value;

use super::diagnostics::{
    ManifestDiagnostic, SourceFile, child_pointer, did_you_mean, display_path,
};

/// The published schema, as shipped in `schemas/`.
pub const SCHEMA_JSON: &str = include_str!("../../schemas/manifest.schema.json");

/// The parsed schema document, for looking up property names and descriptions.
static SCHEMA: LazyLock<Value> = LazyLock::new(|| {
    // The embedded schema is a constant of this build; `tests::schema_is_valid_json_schema`
    // guarantees it parses, so this cannot fail on any user input.
    serde_json::from_str(SCHEMA_JSON).expect("embedded manifest schema is valid JSON")
});

static VALIDATOR: LazyLock<Validator> = LazyLock::new(|| {
    // Same as above: a property of the build, pinned by the unit tests.
    jsonschema::draft202012::new(&SCHEMA).expect("embedded manifest schema compiles")
});

/// Where a secret reference is expected, as pointer segments (`*` matches any one segment).
const SECRET_POSITIONS: [&[&str]; 4] = [
    &["servers", "*", "access", "password"],
    &["defaults", "access", "password"],
    &["providers", "*", "credentials", "*"],
    &["backend", "url"],
];

pub(crate) fn is_secret_position(pointer: &str) -> bool {
    let segments: Vec<&str> = pointer.split('/').skip(1).collect();
    SECRET_POSITIONS.iter().any(|pattern| {
        pattern.len() == segments.len()
            && pattern
                .iter()
                .zip(&segments)
                .all(|(expected, actual)| *expected == "*" || expected == actual)
    })
}

/// Pointers of every secret written as a literal value instead of `{env: …}` / `{file: …}`.
pub(crate) fn literal_secrets(document: &Value) -> Vec<String> {
    let mut found = Vec::new();
    collect_literal_secrets(document, "", &mut found);
    found
}

fn collect_literal_secrets(value: &Value, pointer: &str, found: &mut Vec<String>) {
    if is_secret_position(pointer) {
        if matches!(value, Value::String(_) | Value::Number(_) | Value::Bool(_)) {
            found.push(pointer.to_string());
        }
        return;
    }
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                collect_literal_secrets(child, &child_pointer(pointer, key), found);
            }
        }
        Value::Array(items) => {
            for (position, child) in items.iter().enumerate() {
                collect_literal_secrets(child, &format!("{pointer}/{position}"), found);
            }
        }
        _ => {}
    }
}

/// The one error for a literal secret. It names the key, never the value.
pub(crate) fn literal_secret_diagnostic(file: &SourceFile, pointer: &str) -> ManifestDiagnostic {
    let key = last_segment(pointer);
    let what = if key == "password" {
        "password".to_string()
    } else if pointer == "/backend/url" {
        "backend URL (it holds the database password)".to_string()
    } else {
        format!("credential `{key}`")
    };
    ManifestDiagnostic::error(
        "literal-secret",
        format!("literal {what} in the manifest: secrets must be references"),
    )
    .with_help(format!(
        "write it as `{key}: {{env: NAME}}` or `{key}: {{file: PATH}}`"
    ))
    .at(
        file,
        pointer,
        file.spans.key_or_value(pointer),
        "a secret reference is expected here",
    )
}

/// Validates one file's document; every error becomes a diagnostic on its YAML token.
/// Errors at or under `skip` (already reported more precisely) are left out.
pub(crate) fn check(
    file: &SourceFile,
    document: &Value,
    skip: &[String],
) -> Vec<ManifestDiagnostic> {
    let mut diagnostics = Vec::new();
    let skip: std::collections::HashSet<&str> = skip.iter().map(String::as_str).collect();
    for error in VALIDATOR.iter_errors(document) {
        let pointer = error.instance_path().as_str();
        if is_at_or_under_any(pointer, &skip) {
            continue;
        }
        describe(file, document, &error, &mut diagnostics);
    }
    diagnostics.sort_by_key(|diagnostic| (diagnostic.line, diagnostic.column));
    diagnostics
}

/// Whether `pointer` or one of its ancestors is in `ancestors` (a look-up per level, so many
/// skipped places cost no more than a few).
fn is_at_or_under_any(pointer: &str, ancestors: &std::collections::HashSet<&str>) -> bool {
    let mut current = pointer;
    loop {
        if ancestors.contains(current) {
            return true;
        }
        match current.rfind('/') {
            Some(cut) => current = &current[..cut],
            None => return false,
        }
    }
}

fn last_segment(pointer: &str) -> String {
    pointer
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .replace("~1", "/")
        .replace("~0", "~")
}

fn parent_pointer(pointer: &str) -> &str {
    pointer.rfind('/').map_or("", |cut| &pointer[..cut])
}

/// The schema object that holds the failing keyword (`…/additionalProperties` → `…`).
fn schema_object(error: &ValidationError<'_>) -> Option<&'static Value> {
    SCHEMA.pointer(parent_pointer(error.schema_path().as_str()))
}

fn property_names(schema: Option<&'static Value>) -> Vec<&'static str> {
    schema
        .and_then(|schema| schema.get("properties"))
        .and_then(Value::as_object)
        .map(|properties| properties.keys().map(String::as_str).collect())
        .unwrap_or_default()
}

fn property_description(schema: Option<&'static Value>, property: &str) -> Option<&'static str> {
    schema?
        .get("properties")?
        .get(property)?
        .get("description")?
        .as_str()
}

fn quoted(pointer: &str) -> String {
    format!("`{}`", display_path(pointer))
}

fn describe(
    file: &SourceFile,
    document: &Value,
    error: &ValidationError<'_>,
    out: &mut Vec<ManifestDiagnostic>,
) {
    let pointer = error.instance_path().as_str();
    let at_value = |diagnostic: ManifestDiagnostic, label: &str| {
        diagnostic.at(file, pointer, file.value_span(pointer), label)
    };
    match error.kind() {
        ValidationErrorKind::AdditionalProperties { unexpected } => {
            let allowed = property_names(schema_object(error));
            for key in unexpected {
                out.push(unknown_key(file, pointer, key, &allowed));
            }
        }
        ValidationErrorKind::Required { property } => {
            let property = property.as_str().unwrap_or_default();
            // A key required by a condition (`then`) is described by the object around it.
            let description = property_description(schema_object(error), property).or_else(|| {
                // `…/backend/then/required` → `…/backend`.
                let around = parent_pointer(parent_pointer(error.schema_path().as_str()));
                property_description(SCHEMA.pointer(around), property)
            });
            let message = if pointer.is_empty() {
                format!("missing required key `{property}` at the top level")
            } else {
                format!("missing required key `{property}` in {}", quoted(pointer))
            };
            let mut diagnostic = ManifestDiagnostic::error("missing-key", message);
            diagnostic = match description {
                Some(description) => diagnostic.with_help(format!("`{property}`: {description}")),
                None => diagnostic.with_help(format!("add `{property}: …`")),
            };
            out.push(diagnostic.at(
                file,
                pointer,
                file.key_span(pointer),
                format!("`{property}` is missing here"),
            ));
        }
        ValidationErrorKind::Enum { options } => {
            let allowed: Vec<&str> = options
                .as_array()
                .map(|values| values.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let typed = document
                .pointer(pointer)
                .and_then(Value::as_str)
                .unwrap_or("");
            let list = allowed.join(", ");
            let help = match did_you_mean(typed, allowed.iter().copied()) {
                Some(suggestion) => format!("did you mean `{suggestion}`? allowed values: {list}"),
                None => format!("allowed values: {list}"),
            };
            out.push(at_value(
                ManifestDiagnostic::error(
                    "invalid-value",
                    format!("`{}` must be one of: {list}", last_segment(pointer)),
                )
                .with_help(help),
                "not an allowed value",
            ));
        }
        ValidationErrorKind::Constant { expected_value } if pointer == "/version" => {
            out.push(at_value(
                ManifestDiagnostic::error(
                    "version",
                    format!("unsupported manifest `version`: this reimage reads version {expected_value}"),
                )
                .with_help(format!("write `version: {expected_value}`")),
                "unsupported version",
            ));
        }
        ValidationErrorKind::OneOfNotValid { context } | ValidationErrorKind::AnyOf { context } => {
            match branch_of_same_type(pointer, context) {
                Some(branch) => {
                    for inner in branch {
                        describe(file, document, inner, out);
                    }
                }
                None => out.push(at_value(
                    ManifestDiagnostic::error("invalid-value", no_form_matches(pointer)),
                    "not an allowed form",
                )),
            }
        }
        ValidationErrorKind::Type { kind } => out.push(wrong_type(file, document, pointer, kind)),
        ValidationErrorKind::MinProperties { .. } | ValidationErrorKind::MaxProperties { .. }
            if is_secret_position(pointer) =>
        {
            out.push(at_value(
                ManifestDiagnostic::error(
                    "invalid-secret-reference",
                    format!("{} needs exactly one of `env` or `file`", quoted(pointer)),
                )
                .with_help(secret_reference_help(pointer)),
                "give one of `env` or `file`",
            ));
        }
        ValidationErrorKind::MinLength { .. } => out.push(at_value(
            ManifestDiagnostic::error(
                "invalid-value",
                format!("{} must not be empty", quoted(pointer)),
            ),
            "empty",
        )),
        ValidationErrorKind::Pattern { pattern } => {
            let (message, help) = pattern_rule(pointer, pattern);
            out.push(at_value(
                ManifestDiagnostic::error("invalid-value", message).with_help(help),
                "does not match",
            ));
        }
        ValidationErrorKind::Minimum { limit } => out.push(at_value(
            ManifestDiagnostic::error(
                "invalid-value",
                format!("{} must be at least {limit}", quoted(pointer)),
            ),
            "too small",
        )),
        ValidationErrorKind::Maximum { limit } => out.push(at_value(
            ManifestDiagnostic::error(
                "invalid-value",
                format!("{} must be at most {limit}", quoted(pointer)),
            ),
            "too large",
        )),
        ValidationErrorKind::MinItems { limit } => out.push(at_value(
            ManifestDiagnostic::error(
                "invalid-value",
                format!("{} must have at least {limit} item(s)", quoted(pointer)),
            ),
            "too few items",
        )),
        ValidationErrorKind::ExclusiveMinimum { limit } => out.push(at_value(
            ManifestDiagnostic::error(
                "invalid-value",
                format!("{} must be greater than {limit}", quoted(pointer)),
            ),
            "too small",
        )),
        _ => out.push(at_value(
            // `masked` keeps the instance value out of the message: it might be a secret.
            ManifestDiagnostic::error(
                "invalid-value",
                format!("{}: {}", quoted(pointer), error.masked()),
            ),
            "invalid",
        )),
    }
}

fn unknown_key(file: &SourceFile, parent: &str, key: &str, allowed: &[&str]) -> ManifestDiagnostic {
    let pointer = child_pointer(parent, key);
    let place = if parent.is_empty() {
        "at the top level".to_string()
    } else {
        format!("in {}", quoted(parent))
    };
    let help = match did_you_mean(key, allowed.iter().copied()) {
        Some(suggestion) => format!(
            "did you mean `{suggestion}`? allowed keys here: {}",
            allowed.join(", ")
        ),
        None if allowed.is_empty() => "remove this key".to_string(),
        None => format!("allowed keys here: {}", allowed.join(", ")),
    };
    ManifestDiagnostic::error("unknown-key", format!("unknown key `{key}` {place}"))
        .with_help(help)
        .at(
            file,
            &pointer,
            file.spans.key_or_value(&pointer),
            "unknown key",
        )
}

/// In a `oneOf`/`anyOf` whose alternatives differ by type (text or mapping), the alternative
/// of the value's own type explains the problem better than "matches none".
fn branch_of_same_type<'e>(
    pointer: &str,
    branches: &'e [Vec<ValidationError<'static>>],
) -> Option<&'e [ValidationError<'static>]> {
    let mut same_type = branches.iter().filter(|errors| {
        !errors.iter().any(|error| {
            error.instance_path().as_str() == pointer
                && matches!(error.kind(), ValidationErrorKind::Type { .. })
        })
    });
    let branch = same_type.next()?;
    if same_type.next().is_some() || branch.is_empty() {
        return None;
    }
    Some(branch)
}

fn no_form_matches(pointer: &str) -> String {
    if last_segment(pointer) == "user_data" {
        format!("{} must be text or `{{file: PATH}}`", quoted(pointer))
    } else {
        format!("{} does not match any allowed form", quoted(pointer))
    }
}

fn secret_reference_help(pointer: &str) -> String {
    let key = last_segment(pointer);
    format!("write it as `{key}: {{env: NAME}}` or `{key}: {{file: PATH}}`")
}

fn wrong_type(
    file: &SourceFile,
    document: &Value,
    pointer: &str,
    kind: &TypeKind,
) -> ManifestDiagnostic {
    let found = document.pointer(pointer);
    if pointer.is_empty() {
        let (message, label) = match found {
            Some(Value::Null) | None => ("the manifest file is empty", "empty"),
            _ => ("the manifest must be a mapping of keys", "not a mapping"),
        };
        return ManifestDiagnostic::error("type", message)
            .with_help("a manifest starts with `version: 1`, then `providers:` and `servers:`")
            .at(file, pointer, file.first_line_span(pointer), label);
    }
    let (message, help) = if is_secret_position(pointer) {
        (
            format!("{} must be a secret reference", quoted(pointer)),
            Some(secret_reference_help(pointer)),
        )
    } else if matches!(found, Some(Value::Number(_) | Value::Bool(_)))
        && matches!(kind, TypeKind::Single(jsonschema::JsonType::String))
    {
        // Ids and names that look like numbers (`id: 1234567890123456789`) must be quoted:
        // read as numbers, long ids could be rounded and point at another machine.
        let text = file
            .value_span(pointer)
            .and_then(|span| file.span_text(span))
            .unwrap_or("...")
            .to_string();
        (
            format!("{} must be text", quoted(pointer)),
            Some(format!("quote it: `\"{text}\"`")),
        )
    } else {
        (
            format!("{} must be {}", quoted(pointer), expected_types(kind)),
            None,
        )
    };
    let found_label = match found {
        Some(value) => format!("this is {}", json_type_words(value)),
        None => "wrong type".to_string(),
    };
    let diagnostic = ManifestDiagnostic::error("type", message);
    let diagnostic = match help {
        Some(help) => diagnostic.with_help(help),
        None => diagnostic,
    };
    diagnostic.at(file, pointer, file.value_span(pointer), found_label)
}

fn expected_types(kind: &TypeKind) -> String {
    match kind {
        TypeKind::Single(single) => type_words(*single).to_string(),
        TypeKind::Multiple(set) => set.iter().map(type_words).collect::<Vec<_>>().join(" or "),
    }
}

/// YAML words for JSON types: users write mappings and lists, not objects and arrays.
fn type_words(kind: JsonType) -> &'static str {
    match kind {
        JsonType::Array => "a list",
        JsonType::Boolean => "true or false",
        JsonType::Integer => "a whole number",
        JsonType::Null => "empty",
        JsonType::Number => "a number",
        JsonType::Object => "a mapping",
        JsonType::String => "text",
    }
}

fn json_type_words(value: &Value) -> &'static str {
    match value {
        Value::Null => "empty",
        Value::Bool(_) => "true/false",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

fn pattern_rule(pointer: &str, pattern: &str) -> (String, String) {
    let subject = quoted(pointer);
    if last_segment(pointer) == "env" {
        (
            format!("{subject} must be an environment variable name"),
            "use letters, digits and `_`, not starting with a digit".to_string(),
        )
    } else if pattern.starts_with("^[A-Za-z0-9][A-Za-z0-9._-]") {
        (
            format!("{subject} is not a valid name"),
            "start with a letter or digit, then use letters, digits, `.`, `_` or `-` (at most 63 characters)"
                .to_string(),
        )
    } else {
        (
            format!("{subject} does not have the expected form"),
            format!("it must match `{pattern}`"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_is_valid_json_schema() {
        let schema: Value = serde_json::from_str(SCHEMA_JSON).unwrap();
        if let Err(error) = jsonschema::meta::validate(&schema) {
            panic!("schema is not a valid JSON Schema: {error}");
        }
        assert_eq!(
            schema["$schema"],
            "https://json-schema.org/draft/2020-12/schema"
        );
        assert!(schema["$id"].is_string());
        assert!(schema["title"].is_string());
        // Forces the lazy validator to compile.
        assert!(!VALIDATOR.is_valid(&Value::Null));
    }

    /// Editors show `description`s on hover: every property must have one, and every object
    /// except free-form `options` must refuse unknown keys. (`if`/`then` only narrow a
    /// provider by its type; the shapes they point at are checked like the rest.)
    #[test]
    fn every_property_is_described_and_objects_are_closed() {
        fn walk(node: &Value, path: &str) {
            if path.ends_with("/if") || path.ends_with("/then") {
                return;
            }
            match node {
                Value::Object(map) => {
                    if let Some(Value::Object(properties)) = map.get("properties") {
                        for (name, property) in properties {
                            assert!(
                                property.get("description").is_some(),
                                "{path}/properties/{name} has no description"
                            );
                        }
                        assert_eq!(
                            map.get("additionalProperties"),
                            Some(&Value::Bool(false)),
                            "{path} accepts unknown keys"
                        );
                    }
                    for (key, child) in map {
                        // An `if` only tests a value (e.g. `type: postgres`); it describes no key.
                        if key != "if" {
                            walk(child, &format!("{path}/{key}"));
                        }
                    }
                }
                Value::Array(items) => {
                    for (position, child) in items.iter().enumerate() {
                        walk(child, &format!("{path}/{position}"));
                    }
                }
                _ => {}
            }
        }
        walk(&SCHEMA, "");
        assert_eq!(SCHEMA["$defs"]["options"]["type"], "object");
        assert!(
            SCHEMA["$defs"]["options"]
                .get("additionalProperties")
                .is_none()
        );
    }

    /// Every `examples` value in the schema is valid where it stands.
    #[test]
    fn the_schema_s_own_examples_are_valid() {
        fn collect(node: &Value, pointer: &str, found: &mut Vec<(String, Value)>) {
            match node {
                Value::Object(map) => {
                    if let Some(Value::Array(examples)) = map.get("examples") {
                        for example in examples {
                            found.push((pointer.to_string(), example.clone()));
                        }
                    }
                    for (key, child) in map {
                        if key != "examples" {
                            collect(child, &child_pointer(pointer, key), found);
                        }
                    }
                }
                Value::Array(items) => {
                    for (position, child) in items.iter().enumerate() {
                        collect(child, &format!("{pointer}/{position}"), found);
                    }
                }
                _ => {}
            }
        }
        let mut examples = Vec::new();
        collect(&SCHEMA, "", &mut examples);
        assert!(examples.len() >= 20, "{}", examples.len());
        for (pointer, example) in examples {
            let schema = serde_json::json!({
                "$schema": SCHEMA["$schema"],
                "$defs": SCHEMA["$defs"],
                "$ref": format!("#{pointer}"),
            });
            let validator = jsonschema::draft202012::new(&schema).unwrap();
            let errors: Vec<String> = validator
                .iter_errors(&example)
                .map(|e| e.to_string())
                .collect();
            assert!(errors.is_empty(), "{pointer}: {example}: {errors:?}");
        }
    }

    /// Per provider type, the schema allows exactly the credential and option keys the
    /// provider's own check allows: editors and `validate` cannot disagree.
    #[test]
    fn provider_keys_in_the_schema_match_the_providers() {
        use crate::provider::{edis, huaweicloud, jdcloud, zenlayer};
        let keys = |def: &str| -> Vec<String> {
            let mut keys: Vec<String> = SCHEMA["$defs"][def]["properties"]
                .as_object()
                .unwrap_or_else(|| panic!("{def}"))
                .keys()
                .cloned()
                .collect();
            keys.sort();
            keys
        };
        let sorted = |names: &[&str]| -> Vec<String> {
            let mut names: Vec<String> = names.iter().map(|name| name.to_string()).collect();
            names.sort();
            names
        };
        let clouddc: Vec<&str> = huaweicloud::settings::COMMON_OPTION_KEYS
            .iter()
            .chain(&huaweicloud::settings::CLOUDDC_OPTION_KEYS)
            .copied()
            .collect();
        for (def, expected) in [
            (
                "zenlayerCredentials",
                sorted(&zenlayer::settings::CREDENTIAL_KEYS),
            ),
            (
                "zenlayerOptions",
                sorted(&zenlayer::settings::PROVIDER_OPTION_KEYS),
            ),
            (
                "huaweicloudCredentials",
                sorted(&huaweicloud::settings::CREDENTIAL_KEYS),
            ),
            (
                "huaweicloudEcsOptions",
                sorted(&huaweicloud::settings::COMMON_OPTION_KEYS),
            ),
            ("huaweicloudClouddcOptions", sorted(&clouddc)),
            (
                "jdcloudCredentials",
                sorted(&jdcloud::settings::CREDENTIAL_KEYS),
            ),
            (
                "jdcloudOptions",
                sorted(&jdcloud::settings::PROVIDER_OPTION_KEYS),
            ),
            ("edisCredentials", sorted(&edis::settings::CREDENTIAL_KEYS)),
            ("edisOptions", sorted(&edis::validate::PROVIDER_OPTION_KEYS)),
        ] {
            assert_eq!(keys(def), expected, "{def}");
        }
        // Every provider type has its branch.
        let branches = SCHEMA["$defs"]["provider"]["allOf"].as_array().unwrap();
        let types = SCHEMA["$defs"]["provider"]["properties"]["type"]["enum"]
            .as_array()
            .unwrap();
        assert_eq!(branches.len(), types.len());
    }

    /// The schema itself (as an editor uses it) flags a wrong credential key, with the
    /// allowed keys and a did-you-mean.
    #[test]
    fn a_wrong_credential_key_is_flagged_by_the_schema() {
        let text = "version: 1\nproviders:\n  zl:\n    type: zenlayer-bmc\n    credentials:\n      acess_key_id: {env: A}\n      access_key_password: {env: B}\n    options: {api_version: \"2023-01-01\"}\n";
        let (document, spans) = super::super::yaml::parse_document(text).unwrap();
        assert!(!VALIDATOR.is_valid(&document));
        let file = SourceFile::new(std::path::Path::new("m.yaml"), text, spans);
        let diagnostics = check(&file, &document, &[]);
        let summary: Vec<(&str, Option<usize>, Option<&str>)> = diagnostics
            .iter()
            .map(|d| (d.message.as_str(), d.line, d.help.as_deref()))
            .collect();
        assert_eq!(
            summary,
            [
                (
                    "unknown key `acess_key_id` in `providers.zl.credentials`",
                    Some(6),
                    Some(
                        "did you mean `access_key_id`? allowed keys here: access_key_id, \
                         access_key_password, token"
                    )
                ),
                (
                    "`api_version` must be one of: 2022-11-20, 2026-02-01",
                    Some(8),
                    Some("did you mean `2026-02-01`? allowed values: 2022-11-20, 2026-02-01")
                ),
            ]
        );
        // Another type: the same key is fine where it belongs.
        let jd = serde_json::json!({"version": 1, "providers": {"jd": {"type": "jdcloud-cps",
            "credentials": {"access_key": {"env": "A"}, "secret_key": {"env": "B"}}}}});
        assert!(VALIDATOR.is_valid(&jd));
    }

    #[test]
    fn secret_positions_match_passwords_and_credentials_only() {
        assert!(is_secret_position("/servers/3/access/password"));
        assert!(is_secret_position("/defaults/access/password"));
        assert!(is_secret_position(
            "/providers/zl/credentials/access_key_id"
        ));
        assert!(!is_secret_position("/servers/3/access/ssh_key_id"));
        assert!(!is_secret_position("/servers/3/access/password/env"));
    }

    #[test]
    fn literal_secrets_are_found_wherever_a_reference_belongs() {
        let document = serde_json::json!({
            "defaults": {"access": {"password": 1234}},
            "providers": {"a": {"credentials": {"key": "x", "secret": {"env": "S"}}}},
            "servers": [{"access": {"password": {"file": "p"}}}, {"access": {"password": "pw"}}]
        });
        assert_eq!(
            literal_secrets(&document),
            vec![
                "/defaults/access/password",
                "/providers/a/credentials/key",
                "/servers/1/access/password"
            ]
        );
    }

    #[test]
    fn examples_validate_against_the_schema() {
        let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
        let mut stack = vec![examples];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                } else if path
                    .extension()
                    .is_some_and(|ext| ext == "yaml" || ext == "yml")
                {
                    let text = std::fs::read_to_string(&path).unwrap();
                    let Ok((document, _)) = super::super::yaml::parse_document(&text) else {
                        panic!("{} is not valid YAML", path.display());
                    };
                    // Only manifests: CI workflows and emulator inventories live under
                    // examples/ too. A manifest has `version` and only manifest sections.
                    let top_level = SCHEMA["properties"].as_object().unwrap();
                    let is_manifest = document.as_object().is_some_and(|map| {
                        map.contains_key("version")
                            && map.keys().all(|key| top_level.contains_key(key))
                    });
                    if !is_manifest {
                        continue;
                    }
                    let errors: Vec<String> = VALIDATOR
                        .iter_errors(&document)
                        .map(|e| e.to_string())
                        .collect();
                    assert!(errors.is_empty(), "{}: {errors:?}", path.display());
                }
            }
        }
    }
}
