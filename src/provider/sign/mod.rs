//! Request signing. Shared with the emulator, which verifies with the same code; each algorithm
//! is pinned by the official SDKs' vectors in `shared/providers/signing-vectors.json`.

pub mod zc2;
pub mod sdk_hmac;
pub mod jdcloud;
pub mod percent;
