//! IAM: the project listing (`GET /v3/projects`).

use serde_json::{Value, json};

use super::model::HuaweiInventory;
use super::params::query_value;

pub(super) fn list_projects(inventory: &HuaweiInventory, query: &[(String, String)]) -> Value {
    let name = query_value(query, "name");
    let projects: Vec<Value> = inventory
        .projects
        .iter()
        .filter(|project| name.is_none_or(|name| project.name == name))
        .map(|project| {
            json!({
                "id": project.id,
                "name": project.name,
                "domain_id": "emulator-domain",
                "enabled": true,
                "is_domain": false,
                "parent_id": "emulator-domain",
                "description": "",
            })
        })
        .collect();
    json!({"projects": projects, "links": {"self": "/v3/projects", "next": null, "previous": null}})
}
