//! Checks across all manifest files ([`checks`]), and resolution into the desired state: defaults
//! merged, paths made absolute, user data read ([`server`]), provider rules checked through the
//! rules handed in.

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

pub(crate) mod checks;
mod server;

use checks::*;
use server::*;
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
