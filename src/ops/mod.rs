//! Operations behind the commands: each command in `cli/` is a thin wrapper over these. Every
//! command that reads or changes the state sets up through [`session::Session`].

pub mod apply;
pub mod backend;
pub mod drift;
pub mod fleet;
pub mod git;
pub mod history;
pub mod manifest;
pub mod plan;
pub mod plan_command;
pub mod push;
pub mod records;
pub mod report;
pub mod session;
pub mod state;
pub mod waits;
