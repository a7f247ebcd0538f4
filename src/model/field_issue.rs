//! A problem a provider type's rules find in one manifest entry, before any network.

/// A provider-specific problem with one server's desired inputs, found without network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldIssue {
    /// JSON pointer of the offending field inside the server entry, e.g. `/access/password`.
    pub pointer: String,
    pub message: String,
    pub help: Option<String>,
}
