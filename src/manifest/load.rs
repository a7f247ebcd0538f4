//! Loading a manifest: read every file, parse, check the schema, type it, then check and resolve
//! the files together. Problems of all files are collected and reported in one go.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::desired::Manifest;
use super::diagnostics::{ManifestDiagnostic, ManifestErrors, SourceFile};
use super::model::ManifestFile;
use super::schema;
use super::semantic::{self, TypedFile};
use super::yaml::{self, ByteSpan, YamlError};

/// How to treat password references that cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretCheck {
    /// `validate`: an unreadable secret is a warning (the policy check is skipped).
    BestEffort,
    /// `plan`/`apply`: an unreadable secret is an error.
    Required,
}

#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub secrets: SecretCheck,
}

/// A manifest that loaded, with the warnings found on the way.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub manifest: Manifest,
    pub warnings: Vec<ManifestDiagnostic>,
}

/// Reads, validates and resolves the manifest made of `paths` (in order).
///
/// Syntax, schema and type errors of every file are reported together. The checks across files
/// (duplicate names, unknown providers, …) run once every file has a valid shape, so they never
/// report consequences of an earlier error.
pub fn load(paths: &[PathBuf], options: &LoadOptions) -> Result<Loaded, ManifestErrors> {
    if paths.is_empty() {
        return Err(ManifestErrors {
            diagnostics: vec![
                ManifestDiagnostic::error("no-files", "no manifest files given")
                    .with_help("pass a manifest file, e.g. `-f reimage.yaml`"),
            ],
        });
    }
    let mut diagnostics = Vec::new();
    let mut typed = Vec::new();
    let mut digest_input = Vec::new();
    for path in paths {
        let bytes = match read_manifest(path) {
            Ok(bytes) => bytes,
            Err(diagnostic) => {
                diagnostics.push(diagnostic);
                continue;
            }
        };
        append_digest_part(&mut digest_input, &bytes);
        match String::from_utf8(bytes) {
            Ok(text) => match check_file(path, &text) {
                Ok(file) => typed.push(file),
                Err(mut found) => diagnostics.append(&mut found),
            },
            Err(_) => diagnostics.push(
                ManifestDiagnostic::error("io", format!("`{}` is not UTF-8 text", path.display()))
                    .with_help("save the manifest as UTF-8")
                    .in_unread_file(path),
            ),
        }
    }
    if diagnostics.iter().any(ManifestDiagnostic::is_error) {
        return Err(ManifestErrors { diagnostics });
    }

    let (resolved, mut found) = semantic::resolve(&typed, options);
    diagnostics.append(&mut found);
    let diagnostics = deduplicate(diagnostics);
    let resolved = match resolved {
        Some(resolved) if !diagnostics.iter().any(ManifestDiagnostic::is_error) => resolved,
        _ => return Err(ManifestErrors { diagnostics }),
    };
    for user_data in &resolved.user_data_files {
        append_digest_part(&mut digest_input, user_data.as_bytes());
    }
    let manifest = Manifest {
        files: paths.to_vec(),
        digest: crate::digest::sha256_hex(&digest_input),
        providers: resolved.providers,
        servers: resolved.servers,
        state_path: resolved.state_path,
        emulator: resolved.emulator,
    };
    Ok(Loaded {
        manifest,
        warnings: diagnostics,
    })
}

/// Length-prefixed, so moving bytes from one file to the next changes the digest. Paths are
/// left out on purpose: plan and apply may run from different directories.
fn append_digest_part(digest_input: &mut Vec<u8>, bytes: &[u8]) {
    digest_input.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
    digest_input.extend_from_slice(bytes);
}

fn read_manifest(path: &Path) -> Result<Vec<u8>, ManifestDiagnostic> {
    fs_err::read(path).map_err(|error| {
        ManifestDiagnostic::error(
            "io",
            format!("cannot read manifest file: {}", io_message(&error)),
        )
        .with_help("check the path given with `-f`")
        .in_unread_file(path)
    })
}

/// An I/O error with its causes (fs-err puts the path in the outer error, the OS reason in its
/// source).
pub(crate) fn io_message(error: &std::io::Error) -> String {
    let mut message = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

/// One file on its own: syntax, schema, then the typed model.
fn check_file(path: &Path, text: &str) -> Result<TypedFile, Vec<ManifestDiagnostic>> {
    let (document, spans) = match yaml::parse_document(text) {
        Ok(parsed) => parsed,
        Err(error) => {
            let file = SourceFile::new(path, text, Default::default());
            return Err(vec![yaml_error(&file, &error)]);
        }
    };
    let literal_secrets = schema::literal_secrets(&document);
    let shown_text = mask_literal_secrets(text, &document, &spans, &literal_secrets);
    let file = SourceFile::new(path, &shown_text, spans);

    let mut diagnostics: Vec<ManifestDiagnostic> = literal_secrets
        .iter()
        .map(|pointer| schema::literal_secret_diagnostic(&file, pointer))
        .collect();
    diagnostics.extend(schema::check(&file, &document, &literal_secrets));
    if !diagnostics.is_empty() {
        return Err(diagnostics);
    }

    match serde_path_to_error::deserialize::<_, ManifestFile>(&document) {
        Ok(model) => Ok(TypedFile::new(file, model)),
        Err(error) => Err(vec![type_error(&file, &error)]),
    }
}

fn yaml_error(file: &SourceFile, error: &YamlError) -> ManifestDiagnostic {
    let token = token_at(&file.text, error.span);
    let diagnostic = if error.message.contains("duplicate") {
        let key = file.text[token.offset..token.offset + token.length].to_string();
        ManifestDiagnostic::error("duplicate-key", format!("duplicate key `{key}`"))
            .with_help("a key may appear once per mapping: remove or rename one of them")
            .at(file, "", Some(token), "this key appears again here")
    } else {
        ManifestDiagnostic::error("yaml-syntax", format!("invalid YAML: {}", error.message))
            .with_help("check the indentation and quoting around this place")
            .at(file, "", Some(error.span), "here")
    };
    // The pointer of a syntax error is unknown; the position is exact.
    let mut diagnostic = diagnostic;
    diagnostic.pointer = None;
    diagnostic.line = Some(error.line);
    diagnostic.column = Some(error.column);
    diagnostic
}

/// Widens a one-character error span to the key token it starts (up to `:` or the line end).
fn token_at(text: &str, span: ByteSpan) -> ByteSpan {
    let start = span.offset.min(text.len());
    let Some(rest) = text.get(start..) else {
        return span;
    };
    let line = rest.split('\n').next().unwrap_or_default();
    let length = line.find(':').unwrap_or(line.len());
    let length = line[..length].trim_end().len();
    if length == 0 {
        span
    } else {
        ByteSpan {
            offset: start,
            length,
        }
    }
}

/// The source text to show in snippets, with every literal secret replaced by `*`: other
/// diagnostics of the same file show nearby lines too, and must not reveal it either.
fn mask_literal_secrets(
    text: &str,
    document: &Value,
    spans: &yaml::SpanIndex,
    pointers: &[String],
) -> String {
    let mut bytes = text.as_bytes().to_vec();
    let mut mask = |offset: usize, length: usize| {
        for byte in bytes.iter_mut().skip(offset).take(length) {
            if *byte != b'\n' && *byte != b'\r' {
                *byte = b'*';
            }
        }
    };
    for pointer in pointers {
        if let Some(span) = spans.values.get(pointer) {
            mask(span.offset, span.length);
        }
        // Anchors and repeats elsewhere in the file: hide every occurrence of the value.
        let literal = match document.pointer(pointer) {
            Some(Value::String(value)) => value.clone(),
            Some(other) => other.to_string(),
            None => continue,
        };
        if literal.len() >= 3 {
            let found: Vec<usize> = text.match_indices(&literal).map(|(at, _)| at).collect();
            for at in found {
                mask(at, literal.len());
            }
        }
    }
    // Masking replaces whole bytes by ASCII `*`, so the text stays UTF-8 with the same offsets.
    String::from_utf8(bytes).unwrap_or_else(|_| "*".repeat(text.len()))
}

fn type_error(
    file: &SourceFile,
    error: &serde_path_to_error::Error<serde_json::Error>,
) -> ManifestDiagnostic {
    let pointer = path_to_pointer(error.path());
    let place = if pointer.is_empty() {
        "the manifest".to_string()
    } else {
        format!("`{}`", super::diagnostics::display_path(&pointer))
    };
    ManifestDiagnostic::error("type", format!("{place}: {}", error.inner())).at(
        file,
        &pointer,
        file.value_span(&pointer),
        "here",
    )
}

fn path_to_pointer(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut pointer = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => pointer.push_str(&format!("/{index}")),
            Segment::Map { key } => {
                pointer.push('/');
                pointer.push_str(&yaml::escape_pointer_segment(key));
            }
            Segment::Enum { .. } | Segment::Unknown => {}
        }
    }
    pointer
}

/// One problem reached through several servers (e.g. a bad `defaults` entry) is shown once.
fn deduplicate(diagnostics: Vec<ManifestDiagnostic>) -> Vec<ManifestDiagnostic> {
    let mut seen = std::collections::HashSet::new();
    diagnostics
        .into_iter()
        .filter(|diagnostic| seen.insert(diagnostic.identity()))
        .collect()
}
