//! State commands: `reimage state adopt NAME --image IMAGE` records a server as running an
//! image without touching it (like `terraform import`). It is how a fleet whose provider cannot
//! report the installed OS (EDIS) is taken over without wiping every machine.

use crate::error::{Error, Result};
use crate::manifest::diagnostics::did_you_mean;
use crate::manifest::{DesiredAccess, Manifest};
use crate::ops::plan::{digests_of, read_or_init_state};
use crate::state::{OperationKind, OperationRecord, Outcome, ServerRecord, StateLock, StateStore};

/// What to adopt.
#[derive(Debug, Clone)]
pub struct AdoptRequest {
    /// The server's manifest name.
    pub server: String,
    /// The image the server runs now.
    pub image: String,
    /// Overwrite an existing record of the same machine.
    pub force: bool,
}

/// What was recorded.
#[derive(Debug, Clone)]
pub struct Adopted {
    pub record: ServerRecord,
    pub server: String,
    pub desired_image: String,
    /// The record this one replaced, if any.
    pub replaced: Option<ServerRecord>,
    pub state_location: String,
    pub serial: u64,
}

/// `state adopt` in its session: the manifest (secrets read, for the record's digests; no
/// provider is called, so none is set up), its state locked for `timeout`, the record written.
pub async fn adopt_in_session(
    manifest: &super::session::ManifestSource,
    state: Option<&std::path::PathBuf>,
    timeout: std::time::Duration,
    request: &AdoptRequest,
    printer: &crate::output::Printer,
) -> Result<Adopted> {
    let mut session =
        super::session::Session::for_manifest(manifest, state, false, printer).await?;
    session.lock("reimage state adopt", timeout).await?;
    let manifest = session.manifest().ok_or_else(|| Error::Io {
        message: "internal: adopt needs the manifest".to_string(),
    })?;
    adopt(manifest, session.store(), session.held_lock()?, request)
}

/// Records `request.server` as running `request.image`, with the manifest's current install
/// inputs as the baseline (a later change to them plans a reinstall). Needs the state lock
/// (the caller takes it, waiting as `-lock-timeout` says) and writes the state atomically;
/// never calls a provider.
pub fn adopt(
    manifest: &Manifest,
    store: &dyn StateStore,
    lock: &dyn StateLock,
    request: &AdoptRequest,
) -> Result<Adopted> {
    let Some(server) = manifest
        .servers
        .iter()
        .find(|server| server.name == request.server)
    else {
        let names: Vec<&str> = manifest.servers.iter().map(|s| s.name.as_str()).collect();
        let help = match did_you_mean(&request.server, names.iter().copied()) {
            Some(close) => format!("did you mean `{close}`?"),
            None if names.is_empty() => "the manifest has no servers".to_string(),
            None => {
                let mut list = names
                    .iter()
                    .take(20)
                    .copied()
                    .collect::<Vec<_>>()
                    .join(", ");
                if names.len() > 20 {
                    list.push_str(", …");
                }
                format!("servers in the manifest: {list}")
            }
        };
        return Err(Error::usage(
            format!(
                "no server named `{}` in the manifest; nothing was recorded",
                request.server
            ),
            help,
        ));
    };
    let image = request.image.trim();
    if image.is_empty() || image != request.image || image.contains(char::is_whitespace) {
        return Err(Error::usage(
            format!("`--image {:?}` is not an image name", request.image),
            "give the image the server runs now, written as the manifest writes images",
        ));
    }

    let (mut state, _) = read_or_init_state(store)?;
    let existing = state.servers.get(&server.name).cloned();
    if let Some(record) = &existing
        && record.cloud_id == server.cloud_id
        && !request.force
    {
        let last = record
            .last_operation
            .as_ref()
            .map(|operation| {
                format!(
                    "; last operation: {:?} {:?} at {}",
                    operation.kind, operation.outcome, operation.finished_at
                )
                .to_lowercase()
            })
            .unwrap_or_default();
        return Err(Error::usage(
            format!(
                "`{}` is already recorded as running `{}`{last}; nothing was changed",
                server.name, record.image
            ),
            "pass `--force` to overwrite the record",
        ));
    }

    let digests = digests_of(&state, server)?;
    let now = jiff::Timestamp::now().to_string();
    let record = ServerRecord {
        provider: server.provider.clone(),
        provider_type: server.provider_type,
        cloud_id: server.cloud_id.clone(),
        image: image.to_string(),
        revision: server.revision,
        input_digests: digests
            .into_iter()
            .map(|(field, digest)| (field, Some(digest)))
            .collect(),
        hostname: server.hostname.clone(),
        user_data: server.user_data.clone(),
        ssh_key_id: match &server.access {
            DesiredAccess::SshKeyId { id } => Some(id.clone()),
            _ => None,
        },
        // Adoption never clears a recorded protection: that takes a reviewed plan of its own.
        protected: server.protect
            || existing
                .as_ref()
                .is_some_and(|record| record.cloud_id == server.cloud_id && record.protected),
        last_operation: Some(OperationRecord {
            kind: OperationKind::Adopt,
            // No plan: an id of its own, so the record says where it came from.
            plan_id: format!("state-adopt-{}", uuid::Uuid::now_v7()),
            outcome: Outcome::Succeeded,
            message: Some(
                "recorded with `reimage state adopt`; the machine was not touched".into(),
            ),
            request_id: None,
            job_id: None,
            started_at: now.clone(),
            finished_at: now.clone(),
            health: None,
        }),
        updated_at: now,
        attempt_only: false,
    };
    state.servers.insert(server.name.clone(), record.clone());
    store.write(lock, &mut state)?;
    Ok(Adopted {
        record,
        server: server.name.clone(),
        desired_image: server.image.clone(),
        replaced: existing,
        state_location: store.location(),
        serial: state.serial,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use super::*;
    use crate::manifest::{DesiredServer, ProviderType};
    use crate::state::local::LocalStateStore;

    fn manifest(dir: &std::path::Path) -> Manifest {
        let server = |name: &str, id: &str| DesiredServer {
            name: name.into(),
            provider: "edis".into(),
            provider_type: ProviderType::EdisKvm,
            cloud_id: id.into(),
            image: "debian-bookworm".into(),
            revision: 3,
            access: DesiredAccess::None,
            hostname: None,
            user_data: Some("#cloud-config\n".into()),
            protect: false,
            group: None,
            address: None,
            health: Default::default(),
            options: serde_json::Map::new(),
        };
        Manifest {
            files: vec![PathBuf::from("reimage.yaml")],
            digest: "d".into(),
            providers: BTreeMap::new(),
            servers: vec![server("web-1", "kvm_1"), server("web-2", "kvm_2")],
            state_path: dir.join("state.json"),
            backend: None,
            emulator: None,
            policy: Default::default(),
        }
    }

    /// Adopts under a lock of its own, as the command does.
    fn adopt(
        manifest: &Manifest,
        store: &LocalStateStore,
        request: &AdoptRequest,
    ) -> Result<Adopted> {
        let lock = store.lock("reimage state adopt")?;
        super::adopt(manifest, store, lock.as_ref(), request)
    }

    fn request(server: &str, image: &str, force: bool) -> AdoptRequest {
        AdoptRequest {
            server: server.into(),
            image: image.into(),
            force,
        }
    }

    #[test]
    fn adoption_records_the_image_and_current_inputs_without_a_provider() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = manifest(dir.path());
        let store = LocalStateStore::new(&manifest.state_path);
        let adopted = adopt(
            &manifest,
            &store,
            &request("web-1", "debian-bullseye", false),
        )
        .unwrap();
        assert_eq!(adopted.desired_image, "debian-bookworm");
        assert!(adopted.replaced.is_none());
        let state = store.read().unwrap().unwrap();
        assert_eq!(state.serial, adopted.serial);
        let record = &state.servers["web-1"];
        assert_eq!(record.image, "debian-bullseye");
        assert_eq!(record.cloud_id, "kvm_1");
        assert_eq!(record.revision, 3);
        assert_eq!(record.user_data.as_deref(), Some("#cloud-config\n"));
        let operation = record.last_operation.as_ref().unwrap();
        assert_eq!(operation.kind, OperationKind::Adopt);
        assert_eq!(operation.outcome, Outcome::Succeeded);
        // The baseline is the manifest's inputs as digested with the state's key.
        let expected = digests_of(&state, &manifest.servers[0]).unwrap();
        for (field, digest) in expected {
            assert_eq!(record.input_digests[&field], Some(digest), "{field}");
        }
        assert!(!state.servers.contains_key("web-2"));
    }

    #[test]
    fn an_existing_record_needs_force_and_unknown_names_get_a_suggestion() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = manifest(dir.path());
        let store = LocalStateStore::new(&manifest.state_path);
        adopt(&manifest, &store, &request("web-1", "a", false)).unwrap();
        let refused = adopt(&manifest, &store, &request("web-1", "b", false)).unwrap_err();
        assert!(
            refused
                .to_string()
                .contains("already recorded as running `a`"),
            "{refused}"
        );
        assert_eq!(store.read().unwrap().unwrap().servers["web-1"].image, "a");
        let forced = adopt(&manifest, &store, &request("web-1", "b", true)).unwrap();
        assert_eq!(forced.replaced.unwrap().image, "a");
        assert_eq!(store.read().unwrap().unwrap().servers["web-1"].image, "b");

        let unknown = adopt(&manifest, &store, &request("web-3", "a", false)).unwrap_err();
        let Error::Usage { message, help } = unknown else {
            panic!("expected a usage error");
        };
        assert!(message.contains("no server named `web-3`"), "{message}");
        assert_eq!(help, "did you mean `web-1`?");
        let far = adopt(&manifest, &store, &request("database", "a", false)).unwrap_err();
        assert!(matches!(far, Error::Usage { ref help, .. } if help.contains("web-1, web-2")));
        assert!(adopt(&manifest, &store, &request("web-2", "a b", false)).is_err());
    }

    #[test]
    fn adoption_waits_for_nobody_and_names_the_lock_holder() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = manifest(dir.path());
        let store = LocalStateStore::new(&manifest.state_path);
        let _held = store.lock("reimage apply").unwrap();
        let error = adopt(&manifest, &store, &request("web-1", "a", false)).unwrap_err();
        assert!(error.to_string().contains("reimage apply"), "{error}");
        assert!(store.read().unwrap().is_none(), "nothing was recorded");
    }
}
