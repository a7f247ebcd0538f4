//! Command-line interface: one module per command; no business logic.
