//! Operations behind the commands: each command in `cli/` is a thin wrapper over these.

pub mod fleet;
pub mod git;
pub mod plan;
pub mod records;
pub mod state;
