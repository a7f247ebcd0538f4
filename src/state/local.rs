//! Local state backend: `state.json` written atomically, guarded by a sidecar lock file.
