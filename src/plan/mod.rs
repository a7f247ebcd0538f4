//! Plans: the pure diff, the plan model, rendering and plan files.

pub mod model;
