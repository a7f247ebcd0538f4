//! reimage: declarative plan/apply for server operating systems.
//!
//! Where each file on disk is owned:
//! - manifest YAML files (`reimage.yaml`, `-f FILE`): [`manifest`] loads, validates and types them.
//! - `schemas/manifest.schema.json`, `schemas/plan.schema.json`: embedded in [`manifest::schema`]
//!   and [`plan::file`]; the published contracts for editors and machines.
//! - saved plan files (`-out FILE`) and their signatures (`FILE.sig`, see [`plan::signature`]):
//!   written and read only by [`plan::file`].
//! - the manifest's git repository (`.git/HEAD`, refs): read only by [`ops::git`].
//! - `$GITHUB_STEP_SUMMARY`: appended to by `reimage plan` (the markdown plan).
//! - `.reimage/state.json`, its lock file, journal (`.journal`) and history (`.history`), and
//!   the PostgreSQL tables `reimage_*` of `backend: {type: postgres}`: written and read only by
//!   [`state`] (which store a command uses: [`ops::backend`]).
//! - emulator inventory and data dir: [`emulator`].
//! - credentials: resolved from references by [`manifest::secrets`], used only inside [`provider`].
//!
//! Data flow (every arrow one way):
//! manifest → Desired; providers → Observed; state → Recorded; diff(Desired, Observed, Recorded)
//! → Plan → render | file; apply(Plan) → provider reinstall/poll → state.

// Layers, each importing only those above it (see ARCHITECTURE.md; checked by
// `../shared/tools/check_layers.py`): model, manifest, state, plan, provider, apply, ops, cli;
// the emulator beside them.

/// The apply engine: waves, calls, watching, reconciliation; the journal protocol of a step.
pub mod apply;
/// Thin commands: parse arguments, call ops, print.
pub mod cli;
/// Digests: SHA-256, keyed input digests, constant-time comparison.
pub mod digest;
/// The built-in emulator of the providers' APIs (reached from `ops` only).
pub mod emulator;
/// The library's error at the command boundary, with what to do about it.
pub mod error;
/// Reading named files with limits, and writing files atomically.
pub mod files;
/// Manifests: YAML -> schema -> typed -> `Manifest` (desired state); provider rules injected.
pub mod manifest;
/// Data only, no I/O: observations, statuses, operations, reviews, rate-limit figures.
pub mod model;
/// Operations behind the commands: the `Session`, plan, apply, adopt, drift, push, report.
pub mod ops;
/// Printing: stdout, stderr, colours and escaping.
pub mod output;
/// Plans: the pure diff, rollout, render, compact JSON and plan files with their signatures.
pub mod plan;
/// Providers: the trait, the registry of types, HTTP, limits, signing, the fleet; one folder per type.
pub mod provider;
/// State, lock, journal and history storage (local file or PostgreSQL); the only code touching it.
pub mod state;
