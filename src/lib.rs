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

pub mod apply;
pub mod cli;
pub mod digest;
pub mod emulator;
pub mod error;
pub mod files;
pub mod manifest;
pub mod model;
pub mod ops;
pub mod output;
pub mod plan;
pub mod provider;
pub mod state;
