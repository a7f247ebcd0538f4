//! Checks across all manifest files, and resolution into the desired state: defaults merged,
//! paths made absolute, user data read, password policies checked by the provider.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use secrecy::SecretString;
use serde_json::{Map, Value};

use super::desired::{
    DEFAULT_STATE_NAME, DesiredAccess, DesiredProvider, DesiredServer, EmbeddedEmulator,
    RemoteBackend, Rollout, RolloutPolicy,
};
use super::diagnostics::{
    ManifestDiagnostic, SourceFile, child_pointer, did_you_mean_among, display_path, name_list,
};
use super::health::{self, DesiredHealth};
use super::load::{LoadOptions, SecretCheck};
use super::model::{
    AccessSpec, BackendConfig, BackendType, Defaults, EmbeddedEmulatorConfig, ManifestFile,
    PolicySpec, ProviderConfig, SecretRef, ServerSpec, StateConfig, UserDataSpec,
};
use super::secrets;

/// One file whose shape is valid, with its typed model.
#[derive(Debug)]
pub(crate) struct TypedFile {
    pub source: SourceFile,
    pub model: ManifestFile,
    /// Absolute directory of the file: relative paths in it are relative to this.
    pub dir: PathBuf,
}

impl TypedFile {
    pub fn new(source: SourceFile, model: ManifestFile) -> Self {
        let parent = source
            .path
            .parent()
            .filter(|parent| !parent.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let dir = absolute(parent);
        TypedFile { source, model, dir }
    }

    /// `path` as written in this file, made absolute.
    fn resolve_path(&self, path: &str) -> PathBuf {
        absolute(&self.dir.join(path))
    }

    fn resolve_secret(&self, reference: &SecretRef) -> SecretRef {
        match reference {
            SecretRef::Env(name) => SecretRef::Env(name.clone()),
            SecretRef::File(path) => {
                SecretRef::File(self.resolve_path(path).to_string_lossy().into_owned())
            }
        }
    }
}

/// Lexically absolute (no filesystem access: the file may not exist yet).
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// The resolved parts of the desired state; `load` adds files and digest.
#[derive(Debug)]
pub(crate) struct Resolved {
    pub providers: BTreeMap<String, DesiredProvider>,
    pub servers: Vec<DesiredServer>,
    pub state_path: PathBuf,
    pub backend: Option<RemoteBackend>,
    pub emulator: Option<EmbeddedEmulator>,
    pub policy: RolloutPolicy,
    /// Contents of the user-data files read, in first-use order (for the manifest digest).
    pub user_data_files: Vec<String>,
}

/// A section that may appear in one file only, and the file that has it.
struct Section<'a, T> {
    file: &'a TypedFile,
    value: &'a T,
}

/// A value taken from a server entry or from `defaults`, with where it was written.
struct Sourced<'a, T> {
    value: &'a T,
    file: &'a TypedFile,
    pointer: String,
}

struct ServerEntry<'a> {
    file: &'a TypedFile,
    index: usize,
    spec: &'a ServerSpec,
}

impl ServerEntry<'_> {
    fn pointer(&self, rest: &str) -> String {
        format!("/servers/{}{rest}", self.index)
    }
}

/// Checks everything that needs all files at once, and resolves the desired state.
/// Returns `None` when any error was found.
pub(crate) fn resolve(
    files: &[TypedFile],
    options: &LoadOptions,
) -> (Option<Resolved>, Vec<ManifestDiagnostic>) {
    let mut out = Vec::new();
    check_versions(files, &mut out);
    let defaults = single_section(files, "defaults", |model| model.defaults.as_ref(), &mut out);
    let emulator = single_section(files, "emulator", |model| model.emulator.as_ref(), &mut out);
    let state = single_section(files, "state", |model| model.state.as_ref(), &mut out);
    let backend = single_section(files, "backend", |model| model.backend.as_ref(), &mut out);
    check_backend(state.as_ref(), backend.as_ref(), &mut out);
    let policy = single_section(files, "policy", |model| model.policy.as_ref(), &mut out);
    let providers = collect_providers(files, &mut out);
    check_emulator_endpoints(&providers, emulator.is_some(), &mut out);
    let desired_providers: BTreeMap<String, DesiredProvider> = providers
        .iter()
        .map(|(name, section)| (name.clone(), desired_provider(name, section)))
        .collect();
    for (name, desired) in &desired_providers {
        if let Some(section) = providers.get(name) {
            super::provider_checks::check_provider(
                &section.file.source,
                desired,
                options,
                &mut out,
            );
        }
    }
    if let Some(defaults) = &defaults {
        check_defaults(defaults, &providers, &mut out);
    }

    let entries: Vec<ServerEntry<'_>> = files
        .iter()
        .flat_map(|file| {
            file.model
                .servers
                .iter()
                .enumerate()
                .map(move |(index, spec)| ServerEntry { file, index, spec })
        })
        .collect();
    check_duplicate_names(&entries, &mut out);
    check_groups(&entries, policy.as_ref(), &mut out);

    let mut user_data = UserDataReader::default();
    let mut servers = Vec::new();
    let mut seen_cloud_ids: HashMap<(String, String), &ServerEntry<'_>> = HashMap::new();
    for entry in &entries {
        let Some(mut server) = resolve_server(
            entry,
            defaults.as_ref(),
            &providers,
            &mut user_data,
            &mut out,
        ) else {
            continue;
        };
        let Some((address, health)) = gate_of(entry, defaults.as_ref(), policy.as_ref(), &mut out)
        else {
            continue;
        };
        server.address = address;
        server.health = health;
        let key = (server.provider.clone(), server.cloud_id.clone());
        match seen_cloud_ids.get(&key) {
            Some(first) => out.push(same_machine(first, entry, &server)),
            None => {
                seen_cloud_ids.insert(key, entry);
            }
        }
        check_server_with_provider(entry, defaults.as_ref(), &server, options, &mut out);
        servers.push(server);
    }

    if out.iter().any(ManifestDiagnostic::is_error) {
        return (None, out);
    }
    let resolved = Resolved {
        providers: desired_providers,
        servers,
        state_path: state_path(files, state.as_ref(), backend.as_ref()),
        backend: backend.as_ref().and_then(remote_backend),
        emulator: emulator.as_ref().map(embedded_emulator),
        policy: rollout_policy(policy.as_ref().map(|section| section.value)),
        user_data_files: user_data.contents_in_order,
    };
    (Some(resolved), out)
}

/// Built-in defaults, overlaid by `policy.rollout`, then per group by its `rollout`.
fn rollout_policy(spec: Option<&PolicySpec>) -> RolloutPolicy {
    let mut default = Rollout::default();
    if let Some(rollout) = spec.and_then(|spec| spec.rollout.as_ref()) {
        default = default.overlaid(rollout);
    }
    let groups = spec
        .map(|spec| {
            spec.groups
                .iter()
                .map(|(name, group)| {
                    let rollout = match &group.rollout {
                        Some(overrides) => default.overlaid(overrides),
                        None => default,
                    };
                    (name.clone(), rollout)
                })
                .collect()
        })
        .unwrap_or_default();
    RolloutPolicy { default, groups }
}

/// A server's `group` must name a group of `policy.groups`.
fn check_groups(
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

fn check_versions(files: &[TypedFile], out: &mut Vec<ManifestDiagnostic>) {
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

/// `defaults`, `emulator` and `state` describe the whole manifest: one file may hold each.
fn single_section<'a, T>(
    files: &'a [TypedFile],
    key: &str,
    section: impl Fn(&'a ManifestFile) -> Option<&'a T>,
    out: &mut Vec<ManifestDiagnostic>,
) -> Option<Section<'a, T>> {
    let mut found: Option<Section<'a, T>> = None;
    for file in files {
        let Some(value) = section(&file.model) else {
            continue;
        };
        match &found {
            None => found = Some(Section { file, value }),
            Some(first) => {
                let pointer = format!("/{key}");
                out.push(
                    ManifestDiagnostic::error(
                        "duplicate-section",
                        format!("`{key}` is given in more than one manifest file"),
                    )
                    .with_help(format!(
                        "keep one `{key}` section and merge the other into it"
                    ))
                    .at(
                        &file.source,
                        &pointer,
                        file.source.key_span(&pointer),
                        "given again here",
                    )
                    .also_at(
                        &first.file.source,
                        first.file.source.key_span(&pointer),
                        "first given here",
                    ),
                );
            }
        }
    }
    found
}

fn collect_providers<'a>(
    files: &'a [TypedFile],
    out: &mut Vec<ManifestDiagnostic>,
) -> BTreeMap<String, Section<'a, ProviderConfig>> {
    let mut providers: BTreeMap<String, Section<'a, ProviderConfig>> = BTreeMap::new();
    for file in files {
        for (name, config) in &file.model.providers {
            let pointer = child_pointer("/providers", name);
            match providers.get(name) {
                Some(first) => out.push(
                    ManifestDiagnostic::error(
                        "duplicate-provider",
                        format!("provider `{name}` is defined in more than one manifest file"),
                    )
                    .with_help("define each provider once, or give the second one another name")
                    .at(
                        &file.source,
                        &pointer,
                        file.source.key_span(&pointer),
                        "defined again here",
                    )
                    .also_at(
                        &first.file.source,
                        first.file.source.key_span(&pointer),
                        "first defined here",
                    ),
                ),
                None => {
                    providers.insert(
                        name.clone(),
                        Section {
                            file,
                            value: config,
                        },
                    );
                }
            }
        }
    }
    providers
}

fn check_emulator_endpoints(
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

fn check_defaults(
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

fn check_access(
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

fn unknown_provider(
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

fn check_duplicate_names(entries: &[ServerEntry<'_>], out: &mut Vec<ManifestDiagnostic>) {
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

fn same_machine(
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

/// Merges one server with `defaults`; reports what is missing or wrong.
fn resolve_server(
    entry: &ServerEntry<'_>,
    defaults: Option<&Section<'_, Defaults>>,
    providers: &BTreeMap<String, Section<'_, ProviderConfig>>,
    user_data: &mut UserDataReader,
    out: &mut Vec<ManifestDiagnostic>,
) -> Option<DesiredServer> {
    // Only this server's own diagnostics are looked at: counting all of `out` for every server
    // would make checking quadratic in the number of servers.
    let first_own = out.len();
    let spec = entry.spec;
    let source = &entry.file.source;
    let defaults_value = defaults.map(|section| section.value);

    let provider = server_provider(entry, defaults_value, providers, out);

    let image = spec
        .os
        .as_ref()
        .and_then(|os| os.image.clone())
        .or_else(|| {
            defaults_value
                .and_then(|d| d.os.as_ref())
                .and_then(|os| os.image.clone())
        });
    if image.is_none() {
        let pointer = entry.pointer("/os");
        let span = if spec.os.is_some() {
            source.key_span(&pointer)
        } else {
            source.first_line_span(&entry.pointer(""))
        };
        out.push(
            ManifestDiagnostic::error(
                "missing-image",
                format!("server `{}` has no image", spec.name),
            )
            .with_help("set `os.image` on the server, or `defaults.os.image` for every server")
            .at(
                source,
                &pointer,
                span,
                "no `os.image` here or in `defaults`",
            ),
        );
    }

    let access = access_of(entry, defaults);
    if let Some(access) = &access {
        check_access(access.file, &access.pointer, access.value, out);
    }
    let (user_data_text, user_data_ok) = match user_data_of(entry, defaults) {
        Some(spec_user_data) => match user_data.read(&spec_user_data, out) {
            Some(text) => (Some(text), true),
            None => (None, false),
        },
        None => (None, true),
    };

    let own_errors = out[first_own..].iter().any(ManifestDiagnostic::is_error);
    let (Some(provider), Some(image)) = (provider, image) else {
        return None;
    };
    if own_errors || !user_data_ok {
        return None;
    }
    let provider_type = providers.get(&provider)?.value.provider_type;
    Some(DesiredServer {
        group: spec.group.clone(),
        address: None,
        health: DesiredHealth::Unset,
        name: spec.name.clone(),
        provider,
        provider_type,
        cloud_id: spec.id.clone(),
        image,
        revision: spec
            .os
            .as_ref()
            .and_then(|os| os.revision)
            .or_else(|| {
                defaults_value
                    .and_then(|d| d.os.as_ref())
                    .and_then(|os| os.revision)
            })
            .unwrap_or(0),
        access: access.map_or(DesiredAccess::None, |access| desired_access(&access)),
        hostname: spec.hostname.clone(),
        user_data: user_data_text,
        protect: spec
            .protect
            .or(defaults_value.and_then(|d| d.protect))
            .unwrap_or(false),
        options: merged_options(
            defaults_value.and_then(|d| d.options.as_ref()),
            spec.options.as_ref(),
        ),
    })
}

/// The server's provider name: its own, else `defaults.provider`, else the only provider.
fn server_provider(
    entry: &ServerEntry<'_>,
    defaults: Option<&Defaults>,
    providers: &BTreeMap<String, Section<'_, ProviderConfig>>,
    out: &mut Vec<ManifestDiagnostic>,
) -> Option<String> {
    if let Some(name) = &entry.spec.provider {
        if providers.contains_key(name) {
            return Some(name.clone());
        }
        out.push(unknown_provider(
            entry.file,
            &entry.pointer("/provider"),
            name,
            providers,
        ));
        return None;
    }
    if let Some(name) = defaults.and_then(|d| d.provider.as_ref()) {
        // An unknown `defaults.provider` is reported once, at `defaults`.
        return providers.contains_key(name).then(|| name.clone());
    }
    if providers.len() == 1 {
        return providers.keys().next().cloned();
    }
    let help = if providers.is_empty() {
        "add a `providers:` section and name it with `provider: NAME`".to_string()
    } else {
        let names: Vec<&str> = providers.keys().map(String::as_str).collect();
        format!(
            "add `provider: NAME` to the server or `defaults.provider`; configured providers: {}",
            name_list(&names, 20)
        )
    };
    let pointer = entry.pointer("");
    out.push(
        ManifestDiagnostic::error(
            "no-provider",
            format!("server `{}` has no provider", entry.spec.name),
        )
        .with_help(help)
        .at(
            &entry.file.source,
            &pointer,
            entry.file.source.first_line_span(&pointer),
            "which provider?",
        ),
    );
    None
}

/// `access` is taken whole (server's or defaults'): mixing a key from one with a password from
/// the other would make both.
fn access_of<'a>(
    entry: &ServerEntry<'a>,
    defaults: Option<&Section<'a, Defaults>>,
) -> Option<Sourced<'a, AccessSpec>> {
    if let Some(access) = &entry.spec.access {
        return Some(Sourced {
            value: access,
            file: entry.file,
            pointer: entry.pointer("/access"),
        });
    }
    let defaults = defaults?;
    let access = defaults.value.access.as_ref()?;
    Some(Sourced {
        value: access,
        file: defaults.file,
        pointer: "/defaults/access".to_string(),
    })
}

fn user_data_of<'a>(
    entry: &ServerEntry<'a>,
    defaults: Option<&Section<'a, Defaults>>,
) -> Option<Sourced<'a, UserDataSpec>> {
    if let Some(user_data) = &entry.spec.user_data {
        return Some(Sourced {
            value: user_data,
            file: entry.file,
            pointer: entry.pointer("/user_data"),
        });
    }
    let defaults = defaults?;
    let user_data = defaults.value.user_data.as_ref()?;
    Some(Sourced {
        value: user_data,
        file: defaults.file,
        pointer: "/defaults/user_data".to_string(),
    })
}

fn desired_access(access: &Sourced<'_, AccessSpec>) -> DesiredAccess {
    match (&access.value.ssh_key_id, &access.value.password) {
        (Some(id), _) => DesiredAccess::SshKeyId { id: id.clone() },
        (None, Some(secret)) => DesiredAccess::Password {
            secret: access.file.resolve_secret(secret),
        },
        (None, None) => DesiredAccess::None,
    }
}

/// `defaults.options` with the server's options laid over them, key by key.
fn merged_options(
    defaults: Option<&Map<String, Value>>,
    server: Option<&Map<String, Value>>,
) -> Map<String, Value> {
    let mut merged = defaults.cloned().unwrap_or_default();
    for (key, value) in server.into_iter().flatten() {
        merged.insert(key.clone(), value.clone());
    }
    merged
}

/// Reads user-data files once each, remembering their contents in first-use order.
#[derive(Default)]
struct UserDataReader {
    read: HashMap<PathBuf, Option<String>>,
    contents_in_order: Vec<String>,
}

impl UserDataReader {
    /// The user data text; `None` when its file cannot be read (reported the first time).
    fn read(
        &mut self,
        spec: &Sourced<'_, UserDataSpec>,
        out: &mut Vec<ManifestDiagnostic>,
    ) -> Option<String> {
        let path = match spec.value {
            UserDataSpec::Inline(text) => return Some(text.clone()),
            UserDataSpec::File { file } => file,
        };
        let absolute = spec.file.resolve_path(path);
        if let Some(known) = self.read.get(&absolute) {
            return known.clone();
        }
        let content = match crate::files::read_limited_to_string(
            &absolute,
            crate::files::USER_DATA_MAX_BYTES,
        ) {
            Ok(content) => {
                self.contents_in_order.push(content.clone());
                Some(content)
            }
            Err(error) => {
                let pointer = format!("{}/file", spec.pointer);
                out.push(
                    ManifestDiagnostic::error(
                        "user-data-unreadable",
                        format!("cannot read the user data file: {error}"),
                    )
                    .with_help("the path is relative to the manifest file that names it")
                    .at(
                        &spec.file.source,
                        &pointer,
                        spec.file.source.value_span(&pointer),
                        "cannot read this file",
                    ),
                );
                None
            }
        };
        self.read.insert(absolute, content.clone());
        content
    }
}

/// Reads the password (when there is one) and lets the provider check the server's inputs.
/// The server's `address` and health gate: its own `health`, else its group's, else
/// `defaults.health`, each resolved against the file it is written in. `None` after an error.
fn gate_of(
    entry: &ServerEntry<'_>,
    defaults: Option<&Section<'_, Defaults>>,
    policy: Option<&Section<'_, PolicySpec>>,
    out: &mut Vec<ManifestDiagnostic>,
) -> Option<(Option<String>, DesiredHealth)> {
    let mut fine = true;
    if let Some(address) = &entry.spec.address
        && let Err(problem) = health::check_address(address)
    {
        let pointer = entry.pointer("/address");
        out.push(
            ManifestDiagnostic::error("bad-address", format!("`address`: {problem}"))
                .with_help("the host health checks reach, e.g. `address: 203.0.113.10`")
                .at(
                    &entry.file.source,
                    &pointer,
                    entry.file.source.value_span(&pointer),
                    "not a host",
                ),
        );
        fine = false;
    }
    let group = entry.spec.group.as_deref();
    let group_health = policy.and_then(|section| {
        let name = group?;
        let setting = section.value.groups.get(name)?.health.as_ref()?;
        Some(Sourced {
            value: setting,
            file: section.file,
            pointer: format!("{}/health", child_pointer("/policy/groups", name)),
        })
    });
    let chosen = match (&entry.spec.health, group_health) {
        (Some(setting), _) => Some(Sourced {
            value: setting,
            file: entry.file,
            pointer: entry.pointer("/health"),
        }),
        (None, Some(group)) => Some(group),
        (None, None) => defaults.and_then(|section| {
            Some(Sourced {
                value: section.value.health.as_ref()?,
                file: section.file,
                pointer: "/defaults/health".to_string(),
            })
        }),
    };
    let health = match chosen {
        None => DesiredHealth::Unset,
        Some(chosen) => {
            let label = if chosen.pointer.starts_with("/servers/") {
                format!("servers[{}].health", entry.spec.name)
            } else {
                display_path(&chosen.pointer)
            };
            match health::resolve(chosen.value, &chosen.file.dir, &label) {
                Ok(health) => health,
                Err(issues) => {
                    for issue in issues {
                        let pointer = format!("{}{}", chosen.pointer, issue.pointer);
                        let source = &chosen.file.source;
                        // Reported once per block, not once per server that inherits it.
                        let diagnostic = ManifestDiagnostic::error("health", issue.message)
                            .with_help(issue.help)
                            .at(
                                source,
                                &pointer,
                                source.value_span(&pointer),
                                "in this health check",
                            );
                        if !out
                            .iter()
                            .any(|known| known.identity() == diagnostic.identity())
                        {
                            out.push(diagnostic);
                        }
                    }
                    return None;
                }
            }
        }
    };
    fine.then(|| (entry.spec.address.clone(), health))
}

fn check_server_with_provider(
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
    for issue in crate::provider::validate_server(server, password.as_ref()) {
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

fn read_password(
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
fn locate_field<'a>(
    entry: &ServerEntry<'a>,
    defaults: Option<&Section<'a, Defaults>>,
    field: &str,
) -> (&'a TypedFile, String, Option<super::yaml::ByteSpan>) {
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

fn desired_provider(name: &str, section: &Section<'_, ProviderConfig>) -> DesiredProvider {
    let mut config = section.value.clone();
    config.credentials = config
        .credentials
        .iter()
        .map(|(field, reference)| (field.clone(), section.file.resolve_secret(reference)))
        .collect();
    DesiredProvider {
        name: name.to_string(),
        config,
    }
}

/// The local state file: `state.path`, `backend.path` (type local), or the default beside the
/// first manifest file (also with a remote backend: where `state push` looks by default).
fn state_path(
    files: &[TypedFile],
    state: Option<&Section<'_, StateConfig>>,
    backend: Option<&Section<'_, BackendConfig>>,
) -> PathBuf {
    if let Some(section) = state {
        return section.file.resolve_path(&section.value.path);
    }
    if let Some(section) = backend
        && section.value.backend_type == BackendType::Local
        && let Some(path) = &section.value.path
    {
        return section.file.resolve_path(path);
    }
    // `load` only resolves when every file was read, and there is at least one.
    files
        .first()
        .map_or_else(|| absolute(Path::new(".")), |file| file.dir.clone())
        .join(".reimage")
        .join("state.json")
}

fn remote_backend(section: &Section<'_, BackendConfig>) -> Option<RemoteBackend> {
    let config = section.value;
    match config.backend_type {
        BackendType::Local => None,
        BackendType::Postgres => Some(RemoteBackend::Postgres {
            url: section.file.resolve_secret(config.url.as_ref()?),
            name: config
                .name
                .clone()
                .unwrap_or_else(|| DEFAULT_STATE_NAME.to_string()),
        }),
    }
}

/// `state` and `backend` say the same thing (one of them, please), and each backend type
/// takes its own keys.
fn check_backend(
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

fn embedded_emulator(section: &Section<'_, EmbeddedEmulatorConfig>) -> EmbeddedEmulator {
    let config = section.value;
    EmbeddedEmulator {
        inventory: section.file.resolve_path(&config.inventory),
        data_dir: match &config.data_dir {
            Some(dir) => section.file.resolve_path(dir),
            None => section.file.dir.join(".reimage").join("emulator"),
        },
        install_seconds: config.install_seconds,
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
