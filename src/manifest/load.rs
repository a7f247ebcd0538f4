//! PLACEHOLDER until the manifest loader lands.
use std::path::PathBuf;
use super::Manifest;

pub enum SecretCheck { BestEffort, Required }
pub struct LoadOptions { pub secrets: SecretCheck }
pub struct Loaded { pub manifest: Manifest, pub warnings: Vec<ManifestDiagnostic> }
#[derive(Debug, Clone, serde::Serialize)]
pub struct ManifestDiagnostic { pub message: String }
impl ManifestDiagnostic { pub fn to_report(&self) -> miette::Report { miette::miette!("{}", self.message) } }
#[derive(Debug, thiserror::Error, miette::Diagnostic, serde::Serialize)]
#[error("manifest errors")]
pub struct ManifestErrors { pub diagnostics: Vec<ManifestDiagnostic> }
pub fn load(_paths: &[PathBuf], _options: &LoadOptions) -> Result<Loaded, ManifestErrors> {
    Err(ManifestErrors { diagnostics: vec![] })
}
