//! Operations behind the commands: each command in `cli/` is a thin wrapper over these.

pub mod fleet;
pub mod plan;
pub mod state;
