//! Request signing. Shared with the emulator, which verifies with the same code; each algorithm
//! is pinned by the official SDKs' vectors in `shared/providers/signing-vectors.json`.

pub mod jdcloud;
pub mod percent;
pub mod sdk_hmac;
pub mod zc2;

pub use crate::digest::signatures_match;
