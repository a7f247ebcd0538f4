//! Errors at the edge and their exit codes.
