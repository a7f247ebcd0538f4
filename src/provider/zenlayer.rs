//! Zenlayer bare metal (BMC). Placeholder: the real adapter replaces this file.

use secrecy::SecretString;

use super::{BoxFuture, Capabilities, FieldIssue, Observation, Operation, OperationStatus, Provider, ProviderError, ReinstallRequest};
use crate::manifest::{DesiredProvider, DesiredServer, ProviderType};

pub struct ZenlayerBmc {
    name: String,
    capabilities: Capabilities,
}

impl ZenlayerBmc {
    pub fn new(config: &DesiredProvider, _endpoint_override: Option<&str>) -> Result<Self, ProviderError> {
        Err(ProviderError::Config { provider: config.name.clone(), message: "not implemented".into(), help: String::new() })
    }
}

pub fn validate_server(_server: &DesiredServer, _password: Option<&SecretString>) -> Vec<FieldIssue> {
    Vec::new()
}

impl Provider for ZenlayerBmc {
    fn name(&self) -> &str { &self.name }
    fn provider_type(&self) -> ProviderType { ProviderType::ZenlayerBmc }
    fn capabilities(&self) -> &Capabilities { &self.capabilities }
    fn observe<'a>(&'a self, _ids: &'a [String]) -> BoxFuture<'a, Result<std::collections::BTreeMap<String, Observation>, ProviderError>> {
        Box::pin(async { Err(ProviderError::Config { provider: self.name.clone(), message: "not implemented".into(), help: String::new() }) })
    }
    fn reinstall<'a>(&'a self, _request: &'a ReinstallRequest) -> BoxFuture<'a, Result<Operation, ProviderError>> {
        Box::pin(async { Err(ProviderError::Config { provider: self.name.clone(), message: "not implemented".into(), help: String::new() }) })
    }
    fn poll<'a>(&'a self, _operations: &'a [Operation]) -> BoxFuture<'a, Result<Vec<OperationStatus>, ProviderError>> {
        Box::pin(async { Err(ProviderError::Config { provider: self.name.clone(), message: "not implemented".into(), help: String::new() }) })
    }
}
