//! Arming faults from a `POST /_emulator/faults` body (or `reimage emulator serve --faults
//! FILE`), and the fault parts of `GET /_emulator/state`.

use serde::Deserialize;
use serde_json::{Value, json};

use super::generator::Generator;
use super::legacy;
use super::rate_limit::RateWindows;
use super::rules::{PROVIDER_TYPES, parse_rule};
use crate::emulator::world::World;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultsRequest {
    /// Drop every rule armed before (default: add to them).
    #[serde(default)]
    clear: bool,
    /// Seeds the generator deciding `rate`.
    #[serde(default)]
    seed: Option<u64>,
    #[serde(default)]
    rules: Vec<Value>,
    // The legacy per-provider keys.
    #[serde(default)]
    zenlayer: Option<Value>,
    #[serde(default)]
    huaweicloud: Option<Value>,
    #[serde(default)]
    edis: Option<Value>,
    #[serde(default)]
    jdcloud: Option<Value>,
}

/// Applies a faults request to the world: every rule is checked before anything is armed, but
/// a legacy key may fail after others were applied, so the caller must restore the world on
/// `Err` (the message names the field at fault). Answers with what is now armed.
pub fn arm(world: &mut World, request: Value, windows: &mut RateWindows) -> Result<Value, String> {
    if !request.is_object() {
        return Err("the faults request must be a JSON object".to_string());
    }
    let request: FaultsRequest = serde_path_to_error::deserialize(request).map_err(|error| {
        let path = error.path().to_string();
        if path == "." {
            error.inner().to_string()
        } else {
            format!("{path}: {}", error.inner())
        }
    })?;
    let known = |provider| super::server_ids(world, provider);
    let mut rules = Vec::with_capacity(request.rules.len());
    for (index, value) in request.rules.into_iter().enumerate() {
        let at = format!("rules[{index}]");
        rules.push(parse_rule(&at, value)?.check(&at, &known)?);
    }
    if request.clear {
        world.faults.clear_rules();
    }
    if let Some(seed) = request.seed {
        world.faults.generator = Generator::seeded(seed);
    }
    for rule in rules {
        world.faults.arm(rule);
    }
    if let Some(keys) = request.zenlayer {
        legacy::apply_zenlayer(world, legacy::parse("zenlayer", keys)?)?;
    }
    if let Some(keys) = request.huaweicloud {
        legacy::apply_huawei(world, legacy::parse("huaweicloud", keys)?)?;
    }
    if let Some(keys) = request.edis {
        legacy::apply_edis(world, legacy::parse("edis", keys)?)?;
    }
    if let Some(keys) = request.jdcloud {
        legacy::apply_jdcloud(world, legacy::parse("jdcloud", keys)?)?;
    }
    let armed: Vec<u64> = world.faults.rules.iter().map(|rule| rule.id).collect();
    windows.retain_rules(&armed);
    Ok(armed_view(world))
}

/// What is armed: the rules with how often each fired, the seed, and the legacy views.
pub fn armed_view(world: &World) -> Value {
    let book = &world.faults;
    let failing: Vec<&str> = world
        .zenlayer
        .servers
        .iter()
        .filter(|server| server.fail_next_install)
        .map(|server| server.id.as_str())
        .collect();
    let mut zenlayer = legacy::view(book, "zenlayer");
    if let Some(view) = zenlayer.as_object_mut() {
        view.insert("fail_next_install".into(), json!(failing));
    }
    let mut jdcloud = legacy::view(book, "jdcloud");
    if let Some(view) = jdcloud.as_object_mut() {
        view.extend(world.jdcloud.flags_view());
    }
    json!({
        "seed": book.generator.seed,
        "rules": book.rules,
        "zenlayer": zenlayer,
        "huaweicloud": legacy::view(book, "huaweicloud"),
        "edis": legacy::view(book, "edis"),
        "jdcloud": jdcloud,
    })
}

/// `counts`: every server of the inventory, by provider type, with the calls that acted on it
/// (zeros included).
pub fn counts_view(world: &World) -> Value {
    let mut view = serde_json::Map::new();
    for provider in PROVIDER_TYPES {
        let recorded = world.faults.counts.get(&provider);
        let mut servers = serde_json::Map::new();
        for id in super::server_ids(world, provider) {
            let counts = recorded
                .and_then(|counts| counts.get(&id))
                .copied()
                .unwrap_or_default();
            servers.insert(id, json!(counts));
        }
        view.insert(provider.as_str().to_string(), Value::Object(servers));
    }
    Value::Object(view)
}

/// `faults_fired`: provider type → call kind → fault → times fired.
pub fn fired_view(world: &World) -> Value {
    serde_json::to_value(&world.faults.fired).unwrap_or(Value::Null)
}
