//! Plans: the pure diff, the plan model, rendering and plan files.

pub mod diff;
pub mod file;
pub mod gates;
pub mod inputs;
pub mod model;
pub mod pace;
pub mod render;
pub mod rollout;
pub mod signature;
mod wire;
mod yaml_style;

pub use model::{ActionKind, Change, Plan, Reason, ServerPlan, Summary};
