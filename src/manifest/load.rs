//! Loading a manifest: read every file, parse, check the schema, type it, then check and resolve
//! the files together. Problems of all files are collected and reported in one go.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::desired::Manifest;
use super::diagnostics::{ManifestDiagnostic, ManifestErrors, SourceFile};
use super::model::ManifestFile;
use super::provider_checks::ProviderRules;
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
    /// Also read every credential reference and build each provider without network, as
    /// `plan` will: what that finds depends on the environment (variables, files), so it is
    /// treated like an unreadable secret (see [`SecretCheck`]).
    pub provider_setup: bool,
    /// The provider types' own rules (the provider registry, handed in by the operations layer).
    pub rules: &'static dyn ProviderRules,
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
        let bytes = match crate::files::read_limited(path, crate::files::MANIFEST_MAX_BYTES) {
            Ok(bytes) => bytes,
            Err(error) => {
                diagnostics.push(unreadable_manifest(path, &error));
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
        backend: resolved.backend,
        emulator: resolved.emulator,
        policy: resolved.policy,
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

fn unreadable_manifest(path: &Path, error: &crate::files::ReadFileError) -> ManifestDiagnostic {
    ManifestDiagnostic::error("io", format!("cannot read manifest file: {error}"))
        .with_help("check the path given with `-f`")
        .in_unread_file(path)
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
    let token = token_at(file.text.as_str(), error.span);
    let diagnostic = if error.message.contains("duplicate") {
        let key = file.span_text(token).unwrap_or_default();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::diagnostics::render_plain;
    use crate::manifest::{DesiredAccess, SecretRef, Severity};

    const VALID: &str = r#"version: 1
providers:
  zl:
    type: zenlayer-bmc
    credentials:
      access_key_id: {env: ZL_KEY}
      access_key_password: {file: secrets/zl.key}
defaults:
  os:
    image: ubuntu-24.04
  access:
    ssh_key_id: key-1
  options:
    raid_type: 1
    partitions: [{fs_path: /, fs_type: ext4, size: 100}]
servers:
  - name: web-1
    id: "1001"
    hostname: web-1.example
    options:
      raid_type: 0
  - name: web-2
    id: "1002"
    os: {image: debian-12, revision: 3}
    access:
      password: {file: pw.txt}
    user_data: {file: cloud-init.yaml}
    protect: true
"#;

    /// A temporary directory of manifest files.
    struct Fixture {
        dir: tempfile::TempDir,
    }

    impl Fixture {
        fn new() -> Self {
            Fixture {
                dir: tempfile::tempdir().unwrap(),
            }
        }

        fn write(&self, name: &str, content: &str) -> PathBuf {
            let path = self.dir.path().join(name);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).unwrap();
            }
            std::fs::write(&path, content).unwrap();
            path
        }

        fn load(&self, names: &[&str], secrets: SecretCheck) -> Result<Loaded, ManifestErrors> {
            let paths: Vec<PathBuf> = names
                .iter()
                .map(|name| self.dir.path().join(name))
                .collect();
            // The environment of a test run must not decide its outcome.
            load(
                &paths,
                &LoadOptions {
                    secrets,
                    provider_setup: false,
                    rules: &crate::provider::registry::RULES,
                },
            )
        }

        fn errors(&self, names: &[&str]) -> Vec<ManifestDiagnostic> {
            match self.load(names, SecretCheck::BestEffort) {
                Ok(loaded) => panic!("expected errors, loaded {:?}", loaded.manifest.servers),
                Err(errors) => errors.diagnostics,
            }
        }

        /// The rendered report, with the temporary directory replaced for stable snapshots.
        fn render(&self, diagnostic: &ManifestDiagnostic) -> String {
            let dir = self.dir.path().display().to_string();
            render_plain(diagnostic).replace(&dir, "[DIR]")
        }
    }

    fn only_one(diagnostics: &[ManifestDiagnostic]) -> &ManifestDiagnostic {
        assert_eq!(diagnostics.len(), 1, "{diagnostics:#?}");
        &diagnostics[0]
    }

    fn spanned_text<'a>(source: &'a str, diagnostic: &ManifestDiagnostic) -> &'a str {
        let line = diagnostic.line.unwrap();
        let column = diagnostic.column.unwrap();
        let line_text = source.lines().nth(line - 1).unwrap();
        &line_text[column - 1..]
    }

    fn valid_fixture() -> Fixture {
        let fixture = Fixture::new();
        fixture.write("reimage.yaml", VALID);
        fixture.write("pw.txt", "Correct-Horse-9\n");
        fixture.write("cloud-init.yaml", "#cloud-config\n");
        fixture
    }

    // 1. Reading and parsing; all files' errors together.

    #[test]
    fn errors_of_every_file_are_reported_together() {
        let fixture = Fixture::new();
        fixture.write("syntax.yaml", "version: 1\nservers: [\n");
        fixture.write(
            "schema.yaml",
            "version: 1\nsevers: []\nproviders: {a: {type: nope}}\n",
        );
        let diagnostics = fixture.errors(&["missing.yaml", "syntax.yaml", "schema.yaml"]);
        let codes: Vec<&str> = diagnostics.iter().map(|d| d.code.as_str()).collect();
        assert_eq!(
            codes,
            [
                "manifest::io",
                "manifest::yaml-syntax",
                "manifest::unknown-key",
                "manifest::invalid-value"
            ]
        );
        assert!(
            diagnostics[0]
                .file
                .as_deref()
                .unwrap()
                .ends_with("missing.yaml")
        );
        assert!(
            diagnostics[0].message.contains("missing.yaml"),
            "{}",
            diagnostics[0].message
        );
        let errors = ManifestErrors { diagnostics };
        assert_eq!(errors.to_string(), "manifest has 4 errors");
        assert_eq!(miette::Diagnostic::related(&errors).unwrap().count(), 4);
    }

    #[test]
    fn syntax_errors_have_file_line_and_column() {
        let fixture = Fixture::new();
        fixture.write("m.yaml", "version: 1\nservers:\n  - name: a\n   id: b\n");
        let diagnostics = fixture.errors(&["m.yaml"]);
        let error = only_one(&diagnostics);
        assert_eq!(error.code, "manifest::yaml-syntax");
        assert!(error.file.as_deref().unwrap().ends_with("m.yaml"));
        // saphyr places it where the mis-indented key begins to be read.
        assert_eq!((error.line, error.column), (Some(4), Some(4)));
    }

    #[test]
    fn duplicate_keys_name_the_key_and_its_line() {
        let fixture = Fixture::new();
        let source = "version: 1\nservers: []\nservers: []\n";
        fixture.write("m.yaml", source);
        let diagnostics = fixture.errors(&["m.yaml"]);
        let error = only_one(&diagnostics);
        assert_eq!(error.code, "manifest::duplicate-key");
        assert_eq!(error.message, "duplicate key `servers`");
        assert_eq!(error.line, Some(3));
        assert!(spanned_text(source, error).starts_with("servers"));
    }

    #[test]
    fn a_syntax_error_at_a_non_ascii_character_renders() {
        let fixture = Fixture::new();
        fixture.write("m.yaml", "version: \"1\" é\n");
        let diagnostics = fixture.errors(&["m.yaml"]);
        let rendered = fixture.render(only_one(&diagnostics));
        assert!(rendered.contains("[DIR]/m.yaml:1:14"), "{rendered}");
    }

    #[test]
    fn a_missing_version_is_labelled_on_the_first_line() {
        let fixture = Fixture::new();
        fixture.write(
            "m.yaml",
            "servers: []
",
        );
        let diagnostics = fixture.errors(&["m.yaml"]);
        let error = only_one(&diagnostics);
        assert_eq!(
            error.message,
            "missing required key `version` at the top level"
        );
        assert_eq!((error.line, error.column), (Some(1), Some(1)));
    }

    #[test]
    fn an_empty_file_is_a_clear_error() {
        let fixture = Fixture::new();
        fixture.write("m.yaml", "");
        let diagnostics = fixture.errors(&["m.yaml"]);
        assert_eq!(only_one(&diagnostics).message, "the manifest file is empty");
    }

    // 2-3. Schema errors on the right tokens.

    #[test]
    fn unknown_key_is_labelled_on_the_key_with_did_you_mean() {
        let fixture = Fixture::new();
        let source = "version: 1\nservers:\n  - name: a\n    id: b\n    os:\n      imgae: x\n";
        fixture.write("m.yaml", source);
        let diagnostics = fixture.errors(&["m.yaml"]);
        let error = only_one(&diagnostics);
        assert_eq!(error.message, "unknown key `imgae` in `servers[0].os`");
        assert_eq!(
            error.help.as_deref(),
            Some("did you mean `image`? allowed keys here: image, revision")
        );
        assert_eq!(error.pointer.as_deref(), Some("/servers/0/os/imgae"));
        assert_eq!((error.line, error.column), (Some(6), Some(7)));
    }

    #[test]
    fn unknown_key_without_a_close_match_lists_the_allowed_keys() {
        let fixture = Fixture::new();
        fixture.write(
            "m.yaml",
            "version: 1\nstate:\n  path: s.json\n  backend: pg\n",
        );
        let diagnostics = fixture.errors(&["m.yaml"]);
        let error = only_one(&diagnostics);
        assert_eq!(error.message, "unknown key `backend` in `state`");
        assert_eq!(error.help.as_deref(), Some("allowed keys here: path"));
    }

    #[test]
    fn one_diagnostic_per_unknown_key() {
        let fixture = Fixture::new();
        fixture.write("m.yaml", "version: 1\nfoo: 1\nbar: 2\n");
        let diagnostics = fixture.errors(&["m.yaml"]);
        let lines: Vec<Option<usize>> = diagnostics.iter().map(|d| d.line).collect();
        assert_eq!(lines, [Some(2), Some(3)]);
    }

    #[test]
    fn missing_required_key_points_at_the_parent_key() {
        let fixture = Fixture::new();
        let source = "version: 1\nemulator:\n  data_dir: d\n";
        fixture.write("m.yaml", source);
        let diagnostics = fixture.errors(&["m.yaml"]);
        let error = only_one(&diagnostics);
        assert_eq!(
            error.message,
            "missing required key `inventory` in `emulator`"
        );
        assert_eq!((error.line, error.column), (Some(2), Some(1)));
        assert!(
            error
                .help
                .as_deref()
                .unwrap()
                .starts_with("`inventory`: Inventory file")
        );
    }

    #[test]
    fn missing_required_key_in_a_list_item_points_at_its_first_line() {
        let fixture = Fixture::new();
        fixture.write(
            "m.yaml",
            "version: 1\nservers:\n  - name: a\n    hostname: h\n",
        );
        let diagnostics = fixture.errors(&["m.yaml"]);
        let error = only_one(&diagnostics);
        assert_eq!(error.message, "missing required key `id` in `servers[0]`");
        assert_eq!((error.line, error.column), (Some(3), Some(5)));
    }

    #[test]
    fn wrong_enum_value_lists_the_allowed_values() {
        let fixture = Fixture::new();
        fixture.write(
            "m.yaml",
            "version: 1\nproviders:\n  zl:\n    type: zenlayer\n",
        );
        let diagnostics = fixture.errors(&["m.yaml"]);
        let error = only_one(&diagnostics);
        assert_eq!(
            error.message,
            "`type` must be one of: zenlayer-bmc, huaweicloud-ecs, huaweicloud-clouddc, jdcloud-cps, edis-kvm"
        );
        assert!(
            error
                .help
                .as_deref()
                .unwrap()
                .starts_with("did you mean `zenlayer-bmc`?")
        );
        assert_eq!((error.line, error.column), (Some(4), Some(11)));
    }

    #[test]
    fn other_schema_errors_sit_on_the_value() {
        let fixture = Fixture::new();
        let source = "version: 2\nproviders:\n  a: {type: edis-kvm, poll_interval: 0}\nservers:\n  - {name: -bad, id: x, protect: yes, user_data: {path: u}, os: {revision: -1}}\n";
        fixture.write("m.yaml", source);
        let diagnostics = fixture.errors(&["m.yaml"]);
        let summary: Vec<(String, Option<String>)> = diagnostics
            .iter()
            .map(|d| (d.message.clone(), d.pointer.clone()))
            .collect();
        let expect = |message: &str, pointer: &str| {
            assert!(
                summary.contains(&(message.to_string(), Some(pointer.to_string()))),
                "{message} at {pointer} not in {summary:#?}"
            );
        };
        expect(
            "unsupported manifest `version`: this reimage reads version 1",
            "/version",
        );
        expect(
            "`providers.a.poll_interval` must be greater than 0",
            "/providers/a/poll_interval",
        );
        expect("`servers[0].name` is not a valid name", "/servers/0/name");
        expect(
            "`servers[0].protect` must be true or false",
            "/servers/0/protect",
        );
        expect(
            "unknown key `path` in `servers[0].user_data`",
            "/servers/0/user_data/path",
        );
        expect(
            "missing required key `file` in `servers[0].user_data`",
            "/servers/0/user_data",
        );
        expect(
            "`servers[0].os.revision` must be at least 0",
            "/servers/0/os/revision",
        );
        assert_eq!(diagnostics.len(), 7, "{summary:#?}");
    }

    #[test]
    fn secret_reference_needs_exactly_one_source() {
        let fixture = Fixture::new();
        fixture.write(
            "m.yaml",
            "version: 1\nservers:\n  - name: a\n    id: b\n    access:\n      password: {env: A, file: b}\n",
        );
        let diagnostics = fixture.errors(&["m.yaml"]);
        assert_eq!(
            only_one(&diagnostics).message,
            "`servers[0].access.password` needs exactly one of `env` or `file`"
        );
    }

    // 4. Literal secrets.

    const CANARY: &str = "Canary-Passw0rd-7781";

    #[test]
    fn a_literal_password_is_one_error_that_never_shows_the_value() {
        let fixture = Fixture::new();
        let source = format!(
            "version: 1\nservers:\n  - name: a\n    id: b\n    access:\n      password: {CANARY}\n      sshkey: k\n"
        );
        fixture.write("m.yaml", &source);
        let diagnostics = fixture.errors(&["m.yaml"]);
        assert_eq!(diagnostics.len(), 2, "{diagnostics:#?}");
        let error = &diagnostics[0];
        assert_eq!(error.code, "manifest::literal-secret");
        assert_eq!(
            error.message,
            "literal password in the manifest: secrets must be references"
        );
        assert_eq!(
            error.help.as_deref(),
            Some("write it as `password: {env: NAME}` or `password: {file: PATH}`")
        );
        assert_eq!((error.line, error.column), (Some(6), Some(7)));
        // Neither this error nor its neighbour (whose snippet shows the line above) reveals it.
        for diagnostic in &diagnostics {
            let rendered = fixture.render(diagnostic);
            assert!(rendered.contains("password: ****"), "{rendered}");
            assert!(!rendered.contains(CANARY), "{rendered}");
            assert!(!format!("{:?}", diagnostic.to_report()).contains(CANARY));
        }
        let json = serde_json::to_string(&ManifestErrors { diagnostics }).unwrap();
        assert!(!json.contains(CANARY), "{json}");
    }

    #[test]
    fn literal_credentials_and_anchored_literals_are_hidden_too() {
        let fixture = Fixture::new();
        let source = format!(
            "version: 1\nx-secret: &pw {CANARY}\nproviders:\n  zl:\n    type: zenlayer-bmc\n    credentials:\n      access_key_id: *pw\n"
        );
        fixture.write("m.yaml", &source);
        let diagnostics = fixture.errors(&["m.yaml"]);
        let literal = diagnostics
            .iter()
            .find(|d| d.code == "manifest::literal-secret")
            .unwrap();
        assert_eq!(
            literal.message,
            "literal credential `access_key_id` in the manifest: secrets must be references"
        );
        for diagnostic in &diagnostics {
            assert!(!fixture.render(diagnostic).contains(CANARY));
        }
        assert!(
            !serde_json::to_string(&diagnostics)
                .unwrap()
                .contains(CANARY)
        );
    }

    #[test]
    fn diagnostics_serialize_for_machines() {
        let fixture = Fixture::new();
        fixture.write("m.yaml", "version: 1\nsevers: []\n");
        let errors = fixture
            .load(&["m.yaml"], SecretCheck::Required)
            .unwrap_err();
        let json = serde_json::to_value(&errors).unwrap();
        let diagnostic = &json["diagnostics"][0];
        let keys: Vec<&str> = diagnostic
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            [
                "severity", "code", "message", "help", "file", "line", "column", "pointer"
            ]
        );
        assert_eq!(diagnostic["severity"], "error");
        assert_eq!(diagnostic["code"], "manifest::unknown-key");
        assert_eq!(
            diagnostic["help"],
            "did you mean `servers`? allowed keys here: version, providers, defaults, servers, state, backend, emulator, policy"
        );
        assert_eq!(diagnostic["line"], 2);
        assert_eq!(diagnostic["column"], 1);
        assert_eq!(diagnostic["pointer"], "/severs");
    }

    // 5. Typed model errors.

    #[test]
    fn a_typed_model_error_points_at_its_value() {
        let fixture = Fixture::new();
        // The schema accepts 1.0 as an integer (JSON Schema's rule); `u64` does not.
        let source =
            "version: 1\nservers:\n  - name: a\n    id: b\n    os: {image: i, revision: 1.0}\n";
        fixture.write("m.yaml", source);
        let diagnostics = fixture.errors(&["m.yaml"]);
        let error = only_one(&diagnostics);
        assert_eq!(error.code, "manifest::type");
        assert_eq!(error.pointer.as_deref(), Some("/servers/0/os/revision"));
        assert!(
            error
                .message
                .starts_with("`servers[0].os.revision`: invalid type"),
            "{}",
            error.message
        );
        assert!(spanned_text(source, error).starts_with("1.0"));
    }

    // 6. Checks across files.

    #[test]
    fn duplicate_server_names_label_both_places() {
        let fixture = Fixture::new();
        fixture.write(
            "m.yaml",
            "version: 1\nproviders: {zl: {type: zenlayer-bmc}}\ndefaults: {os: {image: i}, access: {ssh_key_id: k}}\nservers:\n  - {name: web, id: '1'}\n  - {name: web, id: '2'}\n",
        );
        let diagnostics = fixture.errors(&["m.yaml"]);
        let error = only_one(&diagnostics);
        assert_eq!(error.message, "duplicate server name `web`");
        assert_eq!(error.line, Some(6));
        let rendered = fixture.render(error);
        assert!(rendered.contains("first defined here") && rendered.contains("defined again here"));
    }

    #[test]
    fn cross_file_problems_point_into_both_files() {
        let fixture = Fixture::new();
        fixture.write(
            "a.yaml",
            "version: 1\nproviders: {zl: {type: zenlayer-bmc}}\ndefaults: {os: {image: i}, access: {ssh_key_id: k}}\nstate: {path: s.json}\nservers:\n  - {name: web, id: '1'}\n",
        );
        fixture.write(
            "b.yaml",
            "version: 1\nproviders: {zl: {type: edis-kvm}}\ndefaults: {protect: true}\nstate: {path: t.json}\nservers:\n  - {name: web, id: '2', provider: zl}\n  - {name: db, id: '1', provider: zl}\n",
        );
        let diagnostics = fixture.errors(&["a.yaml", "b.yaml"]);
        let codes: Vec<&str> = diagnostics.iter().map(|d| d.code.as_str()).collect();
        assert_eq!(
            codes,
            [
                "manifest::duplicate-section",
                "manifest::duplicate-section",
                "manifest::duplicate-provider",
                "manifest::duplicate-server",
                "manifest::duplicate-cloud-id",
            ]
        );
        for diagnostic in &diagnostics {
            assert!(diagnostic.file.as_deref().unwrap().ends_with("b.yaml"));
            let rendered = fixture.render(diagnostic);
            assert!(rendered.contains("[DIR]/a.yaml"), "{rendered}");
            assert!(rendered.contains("first"), "{rendered}");
        }
        assert_eq!(
            diagnostics[4].message,
            "servers `web` and `db` are the same machine (provider `zl`, id `1`)"
        );
    }

    #[test]
    fn unknown_provider_suggests_the_closest_name() {
        let fixture = Fixture::new();
        fixture.write(
            "m.yaml",
            "version: 1\nproviders: {zenlayer: {type: zenlayer-bmc}, huawei: {type: huaweicloud-ecs}}\nservers:\n  - {name: a, id: '1', provider: zenlayr, os: {image: i}}\n  - {name: b, id: '2', os: {image: i}}\n",
        );
        let diagnostics = fixture.errors(&["m.yaml"]);
        assert_eq!(diagnostics.len(), 2, "{diagnostics:#?}");
        assert_eq!(
            diagnostics[0].message,
            "unknown provider `zenlayr` in `servers[0].provider`"
        );
        assert_eq!(
            diagnostics[0].help.as_deref(),
            Some("did you mean `zenlayer`?")
        );
        assert_eq!(diagnostics[1].message, "server `b` has no provider");
        assert_eq!(
            diagnostics[1].help.as_deref(),
            Some(
                "add `provider: NAME` to the server or `defaults.provider`; configured providers: huawei, zenlayer"
            )
        );
    }

    #[test]
    fn a_single_provider_is_the_default_and_defaults_provider_is_checked() {
        let fixture = Fixture::new();
        fixture.write(
            "one.yaml",
            "version: 1\nproviders: {zl: {type: zenlayer-bmc}}\nservers:\n  - {name: a, id: '1', os: {image: i}, access: {ssh_key_id: k}}\n",
        );
        let loaded = fixture.load(&["one.yaml"], SecretCheck::Required).unwrap();
        assert_eq!(loaded.manifest.servers[0].provider, "zl");

        fixture.write(
            "bad.yaml",
            "version: 1\nproviders: {zl: {type: zenlayer-bmc}}\ndefaults: {provider: zk}\nservers:\n  - {name: a, id: '1', os: {image: i}, access: {ssh_key_id: k}}\n",
        );
        let diagnostics = fixture.errors(&["bad.yaml"]);
        assert_eq!(
            only_one(&diagnostics).message,
            "unknown provider `zk` in `defaults.provider`"
        );
    }

    #[test]
    fn server_level_problems_are_all_reported() {
        let fixture = Fixture::new();
        fixture.write(
            "m.yaml",
            "version: 1\nproviders:\n  zl: {type: zenlayer-bmc, endpoint: emulator}\ndefaults:\n  access: {ssh_key_id: k, password: {env: P}}\nservers:\n  - name: a\n    id: '1'\n  - name: b\n    id: '2'\n    os: {image: i}\n    access: {ssh_key_id: k, password: {env: P}}\n    user_data: {file: nowhere.yaml}\n",
        );
        let diagnostics = fixture.errors(&["m.yaml"]);
        let summary: Vec<(&str, Option<&str>)> = diagnostics
            .iter()
            .map(|d| (d.code.as_str(), d.pointer.as_deref()))
            .collect();
        assert_eq!(
            summary,
            [
                ("manifest::emulator-missing", Some("/providers/zl/endpoint")),
                ("manifest::access-conflict", Some("/defaults/access")),
                ("manifest::missing-image", Some("/servers/0/os")),
                ("manifest::access-conflict", Some("/servers/1/access")),
                (
                    "manifest::user-data-unreadable",
                    Some("/servers/1/user_data/file")
                ),
            ]
        );
        assert_eq!(
            diagnostics[1].message,
            "`defaults.access`: give exactly one of `ssh_key_id` or `password`, not both"
        );
        assert!(
            diagnostics[4].message.contains("nowhere.yaml"),
            "{}",
            diagnostics[4].message
        );
        // The server with no `os` at all is labelled on its first line.
        assert_eq!(
            (diagnostics[2].line, diagnostics[2].column),
            (Some(7), Some(5))
        );
    }

    // 7. Resolution.

    #[test]
    fn resolution_merges_defaults_and_makes_paths_absolute() {
        let fixture = valid_fixture();
        let loaded = fixture
            .load(&["reimage.yaml"], SecretCheck::Required)
            .unwrap();
        assert!(loaded.warnings.is_empty(), "{:#?}", loaded.warnings);
        let manifest = loaded.manifest;
        let dir = fixture.dir.path();
        assert_eq!(manifest.files, [dir.join("reimage.yaml")]);
        assert_eq!(manifest.state_path, dir.join(".reimage/state.json"));
        assert!(manifest.emulator.is_none());

        let provider = &manifest.providers["zl"];
        assert_eq!(provider.name, "zl");
        assert_eq!(
            provider.config.credentials["access_key_password"],
            SecretRef::File(dir.join("secrets/zl.key").display().to_string())
        );
        assert_eq!(
            provider.config.credentials["access_key_id"],
            SecretRef::Env("ZL_KEY".into())
        );

        let [web1, web2] = &manifest.servers[..] else {
            panic!("two servers")
        };
        assert_eq!(web1.name, "web-1");
        assert_eq!(web1.provider, "zl");
        assert_eq!(
            web1.provider_type,
            crate::manifest::ProviderType::ZenlayerBmc
        );
        assert_eq!(web1.cloud_id, "1001");
        assert_eq!(web1.image, "ubuntu-24.04");
        assert_eq!(web1.revision, 0);
        assert_eq!(web1.access, DesiredAccess::SshKeyId { id: "key-1".into() });
        assert_eq!(web1.hostname.as_deref(), Some("web-1.example"));
        assert_eq!(web1.user_data, None);
        assert!(!web1.protect);
        assert_eq!(
            serde_json::Value::Object(web1.options.clone()),
            serde_json::json!({
                "raid_type": 0,
                "partitions": [{"fs_path": "/", "fs_type": "ext4", "size": 100}]
            })
        );

        assert_eq!(web2.image, "debian-12");
        assert_eq!(web2.revision, 3);
        assert_eq!(
            web2.access,
            DesiredAccess::Password {
                secret: SecretRef::File(dir.join("pw.txt").display().to_string())
            }
        );
        assert_eq!(web2.user_data.as_deref(), Some("#cloud-config\n"));
        assert!(web2.protect);
    }

    #[test]
    fn state_and_emulator_paths_are_relative_to_their_own_file() {
        let fixture = Fixture::new();
        fixture.write(
            "main.yaml",
            "version: 1\nproviders: {zl: {type: zenlayer-bmc, endpoint: emulator}}\nservers: []\n",
        );
        fixture.write(
            "sub/more.yaml",
            "version: 1\nstate: {path: st/state.json}\nemulator: {inventory: inv.yaml, install_seconds: 0.5}\n",
        );
        let manifest = fixture
            .load(&["main.yaml", "sub/more.yaml"], SecretCheck::Required)
            .unwrap()
            .manifest;
        let sub = fixture.dir.path().join("sub");
        assert_eq!(manifest.state_path, sub.join("st/state.json"));
        let emulator = manifest.emulator.unwrap();
        assert_eq!(emulator.inventory, sub.join("inv.yaml"));
        assert_eq!(emulator.data_dir, sub.join(".reimage/emulator"));
        assert_eq!(emulator.install_seconds, Some(0.5));
    }

    // Backends.

    #[test]
    fn a_postgres_backend_keeps_its_url_as_a_reference_and_names_the_state() {
        let fixture = Fixture::new();
        fixture.write(
            "m.yaml",
            "version: 1\nbackend: {type: postgres, url: {env: REIMAGE_PG_URL}, name: eu-fleet}\n",
        );
        fixture.write(
            "sub/n.yaml",
            "version: 1\nbackend: {type: postgres, url: {file: pg.url}}\n",
        );
        let manifest = fixture
            .load(&["m.yaml"], SecretCheck::Required)
            .unwrap()
            .manifest;
        assert_eq!(
            manifest.backend,
            Some(crate::manifest::RemoteBackend::Postgres {
                url: SecretRef::Env("REIMAGE_PG_URL".into()),
                name: "eu-fleet".into(),
            })
        );
        // The local path stays the default: where `state push` takes a local state from.
        assert_eq!(
            manifest.state_path,
            fixture.dir.path().join(".reimage/state.json")
        );
        let other = fixture
            .load(&["sub/n.yaml"], SecretCheck::Required)
            .unwrap()
            .manifest;
        let sub = fixture.dir.path().join("sub");
        assert_eq!(
            other.backend,
            Some(crate::manifest::RemoteBackend::Postgres {
                url: SecretRef::File(sub.join("pg.url").display().to_string()),
                name: "default".into(),
            })
        );
    }

    #[test]
    fn a_local_backend_is_the_state_file() {
        let fixture = Fixture::new();
        fixture.write(
            "m.yaml",
            "version: 1\nbackend: {type: local, path: st/s.json}\n",
        );
        let manifest = fixture
            .load(&["m.yaml"], SecretCheck::Required)
            .unwrap()
            .manifest;
        assert_eq!(manifest.backend, None);
        assert_eq!(manifest.state_path, fixture.dir.path().join("st/s.json"));
    }

    #[test]
    fn a_literal_backend_url_is_an_error_that_never_shows_it() {
        let fixture = Fixture::new();
        let source = format!(
            "version: 1\nbackend:\n  type: postgres\n  url: postgres://ops:{CANARY}@db/fleet\n"
        );
        fixture.write("m.yaml", &source);
        let diagnostics = fixture.errors(&["m.yaml"]);
        let error = only_one(&diagnostics);
        assert_eq!(error.code, "manifest::literal-secret");
        assert_eq!(
            error.message,
            "literal backend URL (it holds the database password) in the manifest: secrets must be references"
        );
        assert_eq!((error.line, error.column), (Some(4), Some(3)));
        let rendered = fixture.render(error);
        assert!(!rendered.contains(CANARY), "{rendered}");
    }

    #[test]
    fn backend_mistakes_point_at_the_key() {
        let fixture = Fixture::new();
        fixture.write(
            "typo.yaml",
            "version: 1\nbackend: {type: postgress, url: {env: U}}\n",
        );
        let typo = fixture.errors(&["typo.yaml"]);
        let error = only_one(&typo);
        assert_eq!(error.message, "`type` must be one of: local, postgres");
        assert_eq!(
            error.help.as_deref(),
            Some("did you mean `postgres`? allowed values: local, postgres")
        );
        assert_eq!(error.line, Some(2));

        fixture.write("no-url.yaml", "version: 1\nbackend:\n  type: postgres\n");
        let missing = fixture.errors(&["no-url.yaml"]);
        let error = only_one(&missing);
        assert_eq!(error.message, "missing required key `url` in `backend`");
        assert!(
            error
                .help
                .as_deref()
                .unwrap_or_default()
                .contains("secret reference"),
            "{:?}",
            error.help
        );
        assert_eq!(error.line, Some(2));

        fixture.write(
            "mixed.yaml",
            "version: 1\nbackend:\n  type: postgres\n  url: {env: U}\n  path: s.json\n",
        );
        let mixed = fixture.errors(&["mixed.yaml"]);
        let error = only_one(&mixed);
        assert_eq!(
            error.message,
            "`backend.path` does not apply to `type: postgres`"
        );
        assert_eq!((error.line, error.column), (Some(5), Some(3)));

        fixture.write(
            "local.yaml",
            "version: 1\nbackend: {type: local, name: x}\n",
        );
        let local = fixture.errors(&["local.yaml"]);
        assert_eq!(
            only_one(&local).message,
            "`backend.name` does not apply to `type: local`"
        );

        fixture.write("a.yaml", "version: 1\nstate: {path: s.json}\n");
        fixture.write(
            "b.yaml",
            "version: 1\nbackend: {type: postgres, url: {env: U}}\n",
        );
        let both = fixture.errors(&["a.yaml", "b.yaml"]);
        let error = only_one(&both);
        assert_eq!(
            error.message,
            "`state` and `backend` both say where the state lives"
        );
        let rendered = fixture.render(error);
        assert!(
            rendered.contains("a.yaml") && rendered.contains("b.yaml"),
            "{rendered}"
        );
    }

    #[test]
    fn digest_covers_content_and_user_data_but_not_location() {
        let first = valid_fixture();
        let second = valid_fixture();
        let digest = |fixture: &Fixture| {
            fixture
                .load(&["reimage.yaml"], SecretCheck::BestEffort)
                .unwrap()
                .manifest
                .digest
        };
        let original = digest(&first);
        assert_eq!(original.len(), 64);
        assert_eq!(
            original,
            digest(&second),
            "same content elsewhere, same digest"
        );
        second.write("cloud-init.yaml", "#cloud-config\npackages: [htop]\n");
        assert_ne!(original, digest(&second), "user data is an input");
        first.write("reimage.yaml", &format!("{VALID}# comment\n"));
        assert_ne!(original, digest(&first), "file bytes are an input");
    }

    // 8. Secrets.

    #[test]
    fn unreadable_password_is_an_error_when_required_and_a_warning_otherwise() {
        let fixture = valid_fixture();
        std::fs::remove_file(fixture.dir.path().join("pw.txt")).unwrap();

        let errors = fixture
            .load(&["reimage.yaml"], SecretCheck::Required)
            .unwrap_err();
        let error = only_one(&errors.diagnostics);
        assert_eq!(error.severity, Severity::Error);
        assert_eq!(error.code, "manifest::secret-unreadable");
        assert_eq!(error.pointer.as_deref(), Some("/servers/1/access/password"));
        assert_eq!(error.line, Some(26));
        assert!(error.message.contains("pw.txt"), "{}", error.message);

        let loaded = fixture
            .load(&["reimage.yaml"], SecretCheck::BestEffort)
            .unwrap();
        let warning = only_one(&loaded.warnings);
        assert_eq!(warning.severity, Severity::Warning);
        assert!(
            warning
                .message
                .starts_with("cannot check the password policy: ")
        );
    }

    #[test]
    fn a_password_from_defaults_is_reported_once_at_defaults() {
        let fixture = Fixture::new();
        fixture.write(
            "m.yaml",
            "version: 1\nproviders: {zl: {type: zenlayer-bmc}}\ndefaults:\n  os: {image: i}\n  access: {password: {file: missing-pw}}\nservers:\n  - {name: a, id: '1'}\n  - {name: b, id: '2'}\n",
        );
        let errors = fixture
            .load(&["m.yaml"], SecretCheck::Required)
            .unwrap_err();
        let error = only_one(&errors.diagnostics);
        assert_eq!(error.pointer.as_deref(), Some("/defaults/access/password"));
    }

    #[test]
    fn provider_issues_are_located_in_the_entry_or_in_defaults() {
        let fixture = Fixture::new();
        let source = "version: 1\ndefaults:\n  os: {image: i}\nservers:\n  - name: a\n    id: '1'\n    hostname: h\n";
        let path = fixture.write("m.yaml", source);
        let (document, spans) = yaml::parse_document(source).unwrap();
        let model: ManifestFile = serde_json::from_value(document).unwrap();
        let file = TypedFile::new(SourceFile::new(&path, source, spans), model);
        let (in_entry, in_defaults, fallback) = semantic::checks::locate_for_test(&file);
        assert_eq!(in_entry, "/servers/0/hostname");
        assert_eq!(in_defaults, "/defaults/os/image");
        assert_eq!(fallback, "/servers/0");
    }

    const WEAK_PASSWORD: &str = "weakcanarypassword";

    #[test]
    fn a_password_against_the_provider_policy_is_reported_without_its_value() {
        let fixture = Fixture::new();
        let source = "version: 1\nproviders: {zl: {type: zenlayer-bmc}}\ndefaults:\n  os: {image: ubuntu-24.04}\n  access: {ssh_key_id: key-1}\nservers:\n  - name: web-1\n    id: '1001'\n  - name: web-2\n    id: '1002'\n    access:\n      password: {file: weak-pw.txt}\n";
        let path = fixture.write("m.yaml", source);
        fixture.write("weak-pw.txt", &format!("{WEAK_PASSWORD}\n"));
        let errors = fixture
            .load(&["m.yaml"], SecretCheck::Required)
            .unwrap_err();
        let error = only_one(&errors.diagnostics);
        assert_eq!(error.severity, Severity::Error);
        assert_eq!(error.code, "manifest::provider-rule");
        assert!(
            error
                .message
                .starts_with("the password does not meet Zenlayer's policy: "),
            "{}",
            error.message
        );
        assert_eq!(
            error.file.as_deref(),
            Some(path.display().to_string().as_str())
        );
        assert_eq!(error.pointer.as_deref(), Some("/servers/1/access/password"));
        assert_eq!((error.line, error.column), (Some(12), Some(17)));
        assert!(spanned_text(source, error).starts_with("{file: weak-pw.txt}"));
        let rendered = fixture.render(error);
        assert!(
            rendered.contains("not accepted by zenlayer-bmc"),
            "{rendered}"
        );
        assert!(!rendered.contains(WEAK_PASSWORD), "{rendered}");
        assert!(!format!("{:?}", error.to_report()).contains(WEAK_PASSWORD));
        let json = serde_json::to_string(&errors).unwrap();
        assert!(json.contains("manifest::provider-rule"), "{json}");
        assert!(!json.contains(WEAK_PASSWORD), "{json}");
    }

    #[test]
    fn a_hostname_against_the_provider_rules_is_labelled_on_its_value() {
        let fixture = Fixture::new();
        let source = "version: 1\nproviders: {zl: {type: zenlayer-bmc}}\ndefaults: {os: {image: i}, access: {ssh_key_id: k}}\nservers:\n  - {name: a, id: '1', hostname: a.example}\n  - name: b\n    id: '2'\n    hostname: b_2.example\n";
        let path = fixture.write("m.yaml", source);
        let diagnostics = fixture.errors(&["m.yaml"]);
        let error = only_one(&diagnostics);
        assert_eq!(error.code, "manifest::provider-rule");
        assert_eq!(error.message, "the hostname contains `_`");
        assert_eq!(
            error.file.as_deref(),
            Some(path.display().to_string().as_str())
        );
        assert_eq!(error.pointer.as_deref(), Some("/servers/1/hostname"));
        assert_eq!((error.line, error.column), (Some(8), Some(15)));
        assert!(spanned_text(source, error).starts_with("b_2.example"));
    }

    #[test]
    fn a_provider_issue_from_defaults_is_labelled_once_in_the_defaults_file() {
        let fixture = Fixture::new();
        let defaults_source = "version: 1\nproviders: {zl: {type: zenlayer-bmc}}\ndefaults:\n  os: {image: i}\n  access: {ssh_key_id: k}\n  options:\n    raid_type: 1\n    raid: 1\n";
        let defaults_path = fixture.write("base.yaml", defaults_source);
        fixture.write(
            "servers.yaml",
            "version: 1\nservers:\n  - {name: a, id: '1'}\n  - {name: b, id: '2', options: {raid_type: 0}}\n",
        );
        let diagnostics = fixture.errors(&["base.yaml", "servers.yaml"]);
        // Both servers inherit the option; the problem is one place in one file.
        let error = only_one(&diagnostics);
        assert_eq!(error.code, "manifest::provider-rule");
        assert_eq!(error.message, "unknown Zenlayer option `raid`");
        assert_eq!(
            error.help.as_deref(),
            Some("did you mean `raid_type`? allowed: `raid_type`, `partitions`, `nic`")
        );
        assert_eq!(
            error.file.as_deref(),
            Some(defaults_path.display().to_string().as_str())
        );
        assert_eq!(error.pointer.as_deref(), Some("/defaults/options/raid"));
        assert_eq!((error.line, error.column), (Some(8), Some(11)));
        let rendered = fixture.render(error);
        assert!(rendered.contains("[DIR]/base.yaml:8:11"), "{rendered}");
        assert!(
            rendered.contains("not accepted by zenlayer-bmc"),
            "{rendered}"
        );
    }

    // 9. Rendering.

    fn snapshot_of(source: &str) -> String {
        let fixture = Fixture::new();
        fixture.write("reimage.yaml", source);
        let diagnostics = fixture.errors(&["reimage.yaml"]);
        fixture.render(only_one(&diagnostics))
    }

    #[test]
    fn snapshot_unknown_key() {
        insta::assert_snapshot!(snapshot_of(
            "version: 1\nservers:\n  - name: web-1\n    id: '1001'\n    os:\n      imgae: ubuntu-24.04\n"
        ));
    }

    #[test]
    fn snapshot_wrong_enum_value() {
        insta::assert_snapshot!(snapshot_of(
            "version: 1\nproviders:\n  zl:\n    type: zenlayer\n"
        ));
    }

    #[test]
    fn snapshot_missing_required_field() {
        insta::assert_snapshot!(snapshot_of(
            "version: 1\nservers:\n  - name: web-1\n    os: {image: ubuntu-24.04}\n"
        ));
    }

    #[test]
    fn snapshot_yaml_syntax_error() {
        insta::assert_snapshot!(snapshot_of("version: 1\nservers:\n  - name: \"web-1\n"));
    }

    #[test]
    fn snapshot_duplicate_keys() {
        insta::assert_snapshot!(snapshot_of(
            "version: 1\nservers:\n  - name: web-1\n    id: '1'\n    id: '2'\n"
        ));
    }

    #[test]
    fn snapshot_duplicate_server_names() {
        insta::assert_snapshot!(snapshot_of(
            "version: 1\nproviders: {zl: {type: zenlayer-bmc}}\ndefaults: {os: {image: ubuntu-24.04}, access: {ssh_key_id: key-1}}\nservers:\n  - name: web\n    id: '1001'\n  - name: web\n    id: '1002'\n"
        ));
    }

    #[test]
    fn snapshot_literal_password() {
        let rendered = snapshot_of(&format!(
            "version: 1\nservers:\n  - name: web-1\n    id: '1001'\n    access:\n      password: {CANARY}\n"
        ));
        assert!(!rendered.contains(CANARY));
        insta::assert_snapshot!(rendered);
    }

    // 10. No panics.

    mod no_panics {
        use super::*;
        use proptest::prelude::*;

        fn yamlish() -> impl Strategy<Value = String> {
            let token = prop_oneof![
                Just("version: 1\n".to_string()),
                Just("servers:\n".to_string()),
                Just("  - name: a\n".to_string()),
                Just("    id: x\n".to_string()),
                Just("providers: {zl: {type: zenlayer-bmc}}\n".to_string()),
                Just("defaults: {os: {image: i}}\n".to_string()),
                Just("    access: {password: pw}\n".to_string()),
                Just("    user_data: {file: u}\n".to_string()),
                Just("&a ".to_string()),
                Just("*a\n".to_string()),
                Just("---\n".to_string()),
                Just("é: [1, {".to_string()),
                "[ -~]{0,12}\n",
            ];
            proptest::collection::vec(token, 0..12).prop_map(|parts| parts.concat())
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(96))]

            #[test]
            fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
                let fixture = Fixture::new();
                fixture.write("m.yaml", &text);
                let result = fixture.load(&["m.yaml"], SecretCheck::Required);
                if let Err(errors) = result {
                    for diagnostic in &errors.diagnostics {
                        let _ = render_plain(diagnostic);
                    }
                }
            }

            #[test]
            fn yaml_like_text_never_panics(text in yamlish()) {
                let fixture = Fixture::new();
                fixture.write("m.yaml", &text);
                let result = fixture.load(&["m.yaml"], SecretCheck::BestEffort);
                if let Err(errors) = result {
                    for diagnostic in &errors.diagnostics {
                        let _ = render_plain(diagnostic);
                    }
                }
            }
        }
    }
}
