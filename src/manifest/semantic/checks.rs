//! The checks across files: versions, groups, defaults, access, duplicate names, backends, and
//! each server's inputs against its provider type's rules (handed in through `LoadOptions`).

use super::*;

/// A server's `group` must name a group of `policy.groups`.
pub(super) fn check_groups(
    entries: &[ServerEntry<'_>],
    policy: Option<&Section<'_, PolicySpec>>,
    out: &mut Vec<ManifestDiagnostic>,
) {
    let known: Vec<&str> = policy
        .map(|section| section.value.groups.keys().map(String::as_str).collect())
        .unwrap_or_default();
    let known_set: HashSet<&str> = known.iter().copied().collect();
    for entry in entries {
        let Some(group) = &entry.spec.group else {
            continue;
        };
        if known_set.contains(group.as_str()) {
            continue;
        }
        let pointer = entry.pointer("/group");
        let help = match did_you_mean_among(group, &known) {
            Some(close) => {
                format!("did you mean `{close}`? groups are defined under `policy.groups`")
            }
            None if known.is_empty() => {
                format!(
                    "define it under `policy.groups.{group}` (with its `rollout`), or remove `group`"
                )
            }
            None => format!("defined groups: {}", name_list(&known, 20)),
        };
        out.push(
            ManifestDiagnostic::error("unknown-group", format!("unknown rollout group `{group}`"))
                .with_help(help)
                .at(
                    &entry.file.source,
                    &pointer,
                    entry.file.source.value_span(&pointer),
                    "not defined in `policy.groups`",
                ),
        );
    }
}

pub(super) fn check_versions(files: &[TypedFile], out: &mut Vec<ManifestDiagnostic>) {
    // The schema already pins `version: 1`; this keeps the typed model honest on its own.
    for file in files.iter().filter(|file| file.model.version != 1) {
        out.push(
            ManifestDiagnostic::error(
                "version",
                "unsupported manifest `version`: this reimage reads version 1",
            )
            .with_help("write `version: 1`")
            .at(
                &file.source,
                "/version",
                file.source.value_span("/version"),
                "unsupported version",
            ),
        );
    }
}

pub(super) fn check_emulator_endpoints(
    providers: &BTreeMap<String, Section<'_, ProviderConfig>>,
    has_emulator: bool,
    out: &mut Vec<ManifestDiagnostic>,
) {
    if has_emulator {
        return;
    }
    for (name, provider) in providers {
        if provider.value.endpoint.as_deref() != Some("emulator") {
            continue;
        }
        let pointer = format!("{}/endpoint", child_pointer("/providers", name));
        out.push(
            ManifestDiagnostic::error(
                "emulator-missing",
                format!("provider `{name}` uses `endpoint: emulator`, but no manifest file has an `emulator` section"),
            )
            .with_help("add `emulator: {inventory: PATH}` to the manifest, or give a real endpoint")
            .at(&provider.file.source, &pointer, provider.file.source.value_span(&pointer), "needs an `emulator` section"),
        );
    }
}

pub(super) fn check_defaults(
    defaults: &Section<'_, Defaults>,
    providers: &BTreeMap<String, Section<'_, ProviderConfig>>,
    out: &mut Vec<ManifestDiagnostic>,
) {
    let file = defaults.file;
    if let Some(provider) = &defaults.value.provider
        && !providers.contains_key(provider)
    {
        out.push(unknown_provider(
            file,
            "/defaults/provider",
            provider,
            providers,
        ));
    }
    if let Some(access) = &defaults.value.access {
        check_access(file, "/defaults/access", access, out);
    }
}

pub(super) fn check_access(
    file: &TypedFile,
    pointer: &str,
    access: &AccessSpec,
    out: &mut Vec<ManifestDiagnostic>,
) {
    if access.ssh_key_id.is_some() && access.password.is_some() {
        out.push(
            ManifestDiagnostic::error(
                "access-conflict",
                format!("`{}`: give exactly one of `ssh_key_id` or `password`, not both", display_path(pointer)),
            )
            .with_help("remove `ssh_key_id` to log in with the password, or `password` to log in with the key")
            .at(&file.source, pointer, file.source.key_span(pointer), "both are given here"),
        );
    }
}

pub(super) fn unknown_provider(
    file: &TypedFile,
    pointer: &str,
    name: &str,
    providers: &BTreeMap<String, Section<'_, ProviderConfig>>,
) -> ManifestDiagnostic {
    let help = if providers.is_empty() {
        "no providers are configured: add a `providers:` section".to_string()
    } else {
        let names: Vec<&str> = providers.keys().map(String::as_str).collect();
        match did_you_mean_among(name, &names) {
            Some(suggestion) => format!("did you mean `{suggestion}`?"),
            None => format!("configured providers: {}", name_list(&names, 20)),
        }
    };
    ManifestDiagnostic::error(
        "unknown-provider",
        format!("unknown provider `{name}` in `{}`", display_path(pointer)),
    )
    .with_help(help)
    .at(
        &file.source,
        pointer,
        file.source.value_span(pointer),
        "not a configured provider",
    )
}

pub(super) fn check_duplicate_names(
    entries: &[ServerEntry<'_>],
    out: &mut Vec<ManifestDiagnostic>,
) {
    let mut first_by_name: HashMap<&str, &ServerEntry<'_>> = HashMap::new();
    for entry in entries {
        let name = entry.spec.name.as_str();
        match first_by_name.get(name) {
            Some(first) => {
                let pointer = entry.pointer("/name");
                let first_pointer = first.pointer("/name");
                out.push(
                    ManifestDiagnostic::error(
                        "duplicate-server",
                        format!("duplicate server name `{name}`"),
                    )
                    .with_help("server names must be unique across all manifest files: rename one")
                    .at(
                        &entry.file.source,
                        &pointer,
                        entry.file.source.value_span(&pointer),
                        "defined again here",
                    )
                    .also_at(
                        &first.file.source,
                        first.file.source.value_span(&first_pointer),
                        "first defined here",
                    ),
                );
            }
            None => {
                first_by_name.insert(name, entry);
            }
        }
    }
}

pub(super) fn same_machine(
    first: &ServerEntry<'_>,
    entry: &ServerEntry<'_>,
    server: &DesiredServer,
) -> ManifestDiagnostic {
    let pointer = entry.pointer("/id");
    let first_pointer = first.pointer("/id");
    ManifestDiagnostic::error(
        "duplicate-cloud-id",
        format!(
            "servers `{}` and `{}` are the same machine (provider `{}`, id `{}`)",
            first.spec.name, entry.spec.name, server.provider, server.cloud_id
        ),
    )
    .with_help("each cloud server may be managed by one manifest entry: remove one of them")
    .at(
        &entry.file.source,
        &pointer,
        entry.file.source.value_span(&pointer),
        "same provider and id again",
    )
    .also_at(
        &first.file.source,
        first.file.source.value_span(&first_pointer),
        "first used here",
    )
}

pub(super) fn check_server_with_provider(
    entry: &ServerEntry<'_>,
    defaults: Option<&Section<'_, Defaults>>,
    server: &DesiredServer,
    options: &LoadOptions,
    out: &mut Vec<ManifestDiagnostic>,
) {
    let password = match &server.access {
        DesiredAccess::Password { secret } => read_password(entry, defaults, secret, options, out),
        _ => None,
    };
    for issue in options.rules.check_server(server, password.as_ref()) {
        let (file, pointer, span) = locate_field(entry, defaults, &issue.pointer);
        let mut diagnostic = ManifestDiagnostic::error("provider-rule", issue.message);
        if let Some(help) = issue.help {
            diagnostic = diagnostic.with_help(help);
        }
        out.push(diagnostic.at(
            &file.source,
            &pointer,
            span,
            format!("not accepted by {}", server.provider_type),
        ));
    }
}

pub(super) fn read_password(
    entry: &ServerEntry<'_>,
    defaults: Option<&Section<'_, Defaults>>,
    secret: &SecretRef,
    options: &LoadOptions,
    out: &mut Vec<ManifestDiagnostic>,
) -> Option<SecretString> {
    let error = match secrets::resolve(secret) {
        Ok(value) => return Some(value),
        Err(error) => error,
    };
    let (file, pointer, span) = locate_field(entry, defaults, "/access/password");
    let help = miette::Diagnostic::help(&error).map(|help| help.to_string());
    let diagnostic = match options.secrets {
        SecretCheck::Required => ManifestDiagnostic::error("secret-unreadable", error.to_string()),
        SecretCheck::BestEffort => ManifestDiagnostic::warning(
            "secret-unreadable",
            format!("cannot check the password policy: {error}"),
        ),
    };
    let diagnostic = match help {
        Some(help) => diagnostic.with_help(help),
        None => diagnostic,
    };
    out.push(diagnostic.at(&file.source, &pointer, span, "cannot read this secret"));
    None
}

/// Where a field of a server (pointer relative to the entry) is written: in the entry, else in
/// `defaults`, else the nearest part of the entry that exists.
pub(super) fn locate_field<'a>(
    entry: &ServerEntry<'a>,
    defaults: Option<&Section<'a, Defaults>>,
    field: &str,
) -> (
    &'a TypedFile,
    String,
    Option<crate::manifest::yaml::ByteSpan>,
) {
    let in_entry = entry.pointer(field);
    let entry_source = &entry.file.source;
    if let Some(span) = entry_source.spans.values.get(&in_entry) {
        return (entry.file, in_entry, Some(*span));
    }
    if let Some(defaults) = defaults {
        let in_defaults = format!("/defaults{field}");
        if let Some(span) = defaults.file.source.spans.values.get(&in_defaults) {
            return (defaults.file, in_defaults, Some(*span));
        }
    }
    let mut nearest = in_entry;
    while !entry_source.spans.values.contains_key(&nearest) && nearest.contains('/') {
        if let Some(cut) = nearest.rfind('/') {
            nearest.truncate(cut);
        }
    }
    let span = if nearest == entry.pointer("") {
        entry_source.first_line_span(&nearest)
    } else {
        entry_source.value_span(&nearest)
    };
    (entry.file, nearest, span)
}

/// `state` and `backend` say the same thing (one of them, please), and each backend type
/// takes its own keys.
pub(super) fn check_backend(
    state: Option<&Section<'_, StateConfig>>,
    backend: Option<&Section<'_, BackendConfig>>,
    out: &mut Vec<ManifestDiagnostic>,
) {
    let Some(backend) = backend else {
        return;
    };
    if let Some(state) = state {
        out.push(
            ManifestDiagnostic::error(
                "state-and-backend",
                "`state` and `backend` both say where the state lives",
            )
            .with_help(
                "keep one: `backend: {type: local, path: …}` says what `state: {path: …}` says",
            )
            .at(
                &backend.file.source,
                "/backend",
                backend.file.source.key_span("/backend"),
                "`backend` given here",
            )
            .also_at(
                &state.file.source,
                state.file.source.key_span("/state"),
                "`state` given here",
            ),
        );
    }
    let config = backend.value;
    let (kind, misplaced): (&str, Vec<&str>) = match config.backend_type {
        BackendType::Local => (
            "local",
            [
                ("url", config.url.is_some()),
                ("name", config.name.is_some()),
            ]
            .into_iter()
            .filter_map(|(key, given)| given.then_some(key))
            .collect(),
        ),
        BackendType::Postgres => (
            "postgres",
            config
                .path
                .is_some()
                .then_some("path")
                .into_iter()
                .collect(),
        ),
    };
    for key in misplaced {
        let pointer = format!("/backend/{key}");
        let help = match config.backend_type {
            BackendType::Local => {
                format!("`{key}` is for `type: postgres`; a local backend takes only `path`")
            }
            BackendType::Postgres => {
                "`path` is for `type: local`; a postgres backend takes `url` and `name`".to_string()
            }
        };
        out.push(
            ManifestDiagnostic::error(
                "backend-key",
                format!("`backend.{key}` does not apply to `type: {kind}`"),
            )
            .with_help(help)
            .at(
                &backend.file.source,
                &pointer,
                backend.file.source.key_span(&pointer),
                format!("not a `{kind}` setting"),
            ),
        );
    }
}

/// Exposes [`locate_field`] to the loader's tests: (in the entry, in defaults, fallback).
#[cfg(test)]
pub(crate) fn locate_for_test(file: &TypedFile) -> (String, String, String) {
    let entry = ServerEntry {
        file,
        index: 0,
        spec: &file.model.servers[0],
    };
    let defaults = file
        .model
        .defaults
        .as_ref()
        .map(|value| Section { file, value });
    let pointer = |field: &str| locate_field(&entry, defaults.as_ref(), field).1;
    (
        pointer("/hostname"),
        pointer("/os/image"),
        pointer("/access/password"),
    )
}
