//! One server entry resolved: defaults merged, provider found, access and user data read,
//! health gate built.

use super::*;

/// Merges one server with `defaults`; reports what is missing or wrong.
pub(super) fn resolve_server(
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
pub(super) fn server_provider(
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
pub(super) fn access_of<'a>(
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

pub(super) fn user_data_of<'a>(
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

pub(super) fn desired_access(access: &Sourced<'_, AccessSpec>) -> DesiredAccess {
    match (&access.value.ssh_key_id, &access.value.password) {
        (Some(id), _) => DesiredAccess::SshKeyId { id: id.clone() },
        (None, Some(secret)) => DesiredAccess::Password {
            secret: access.file.resolve_secret(secret),
        },
        (None, None) => DesiredAccess::None,
    }
}

/// `defaults.options` with the server's options laid over them, key by key.
pub(super) fn merged_options(
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
pub(super) struct UserDataReader {
    read: HashMap<PathBuf, Option<String>>,
    pub(super) contents_in_order: Vec<String>,
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
pub(super) fn gate_of(
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
