//! The per-provider fault keys that came before the fault menu (`{"zenlayer":
//! {"status_429_next": 2}}` and the like). They keep working, as rules of the one menu tagged
//! with their key, so that every fault goes through one mechanism; their old state views are
//! computed from those rules. The keys that set world state rather than faults
//! (`fail_next_install`, `operation_protection`, `revoke_tickets`) act on the world directly.

use serde::Deserialize;
use serde_json::{Value, json};

use super::book::FaultBook;
use super::rules::{CallSelector, FaultKind, ProviderSelector, Rule};
use crate::emulator::world::World;
use crate::manifest::ProviderType;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZenlayerKeys {
    /// Servers whose next install ends `INSTALL_FAILED`.
    #[serde(default)]
    fail_next_install: Vec<String>,
    /// The next N calls get 429 (replaces the count armed before).
    #[serde(default)]
    status_429_next: Option<u32>,
    /// The next N calls get 500 (replaces the count armed before).
    #[serde(default)]
    status_500_next: Option<u32>,
    /// The next reinstall of each is performed, then the connection is closed unanswered.
    #[serde(default)]
    drop_connection_after_reinstall: Vec<String>,
    /// Share of `DescribeInstances` calls answered 500, from now on.
    #[serde(default)]
    read_500_rate: Option<f64>,
    /// Share of `DescribeInstances` calls answered 429, from now on.
    #[serde(default)]
    read_429_rate: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HuaweiKeys {
    /// ECS servers or CloudDC instances whose next install fails.
    #[serde(default)]
    fail_next_install: Vec<String>,
    #[serde(default)]
    status_429_next: Option<u32>,
    #[serde(default)]
    status_500_next: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EdisKeys {
    #[serde(default)]
    status_429_next: Option<u32>,
    #[serde(default)]
    status_500_next: Option<u32>,
    /// Invalidates every issued ticket now: the next management call gets 401.
    #[serde(default)]
    revoke_tickets: bool,
    #[serde(default)]
    drop_connection_after_reinstall: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JdcloudKeys {
    #[serde(default)]
    fail_next_install: Vec<String>,
    /// Stop and reinstall are refused as if operation protection (MFA) were on.
    #[serde(default)]
    operation_protection: Vec<String>,
    #[serde(default)]
    status_429_next: Option<u32>,
    #[serde(default)]
    status_500_next: Option<u32>,
    #[serde(default)]
    drop_connection_after_reinstall: Vec<String>,
}

/// A legacy family: its key in requests and state, and the provider types it covers.
#[derive(Debug, Clone, Copy)]
struct Family {
    key: &'static str,
    providers: &'static [ProviderType],
}

const ZENLAYER: Family = Family {
    key: "zenlayer",
    providers: &[ProviderType::ZenlayerBmc],
};
const HUAWEI: Family = Family {
    key: "huaweicloud",
    providers: &[
        ProviderType::HuaweicloudEcs,
        ProviderType::HuaweicloudClouddc,
    ],
};
const EDIS: Family = Family {
    key: "edis",
    providers: &[ProviderType::EdisKvm],
};
const JDCLOUD: Family = Family {
    key: "jdcloud",
    providers: &[ProviderType::JdcloudCps],
};

impl Family {
    fn tag(self, key: &str) -> String {
        format!("{}.{key}", self.key)
    }

    fn selector(self) -> ProviderSelector {
        ProviderSelector::Only(self.providers.to_vec())
    }

    fn known(self, world: &World, ids: &[String]) -> Result<(), String> {
        let known: Vec<String> = self
            .providers
            .iter()
            .flat_map(|provider| super::server_ids(world, *provider))
            .collect();
        let unknown: Vec<&String> = ids.iter().filter(|id| !known.contains(id)).collect();
        if unknown.is_empty() {
            Ok(())
        } else {
            Err(format!("unknown {} server ids: {unknown:?}", self.key))
        }
    }
}

/// Parses one family's keys, naming the family in the error.
pub fn parse<T: for<'de> Deserialize<'de>>(family: &str, value: Value) -> Result<T, String> {
    serde_path_to_error::deserialize(value).map_err(|error| {
        let path = error.path().to_string();
        let at = if path == "." {
            family.to_string()
        } else {
            format!("{family}.{path}")
        };
        format!("{at}: {}", error.inner())
    })
}

/// `{key}_next: N`: the next N calls of the family get `fault` (replacing what was armed).
fn arm_next(book: &mut FaultBook, family: Family, key: &str, fault: FaultKind, next: Option<u32>) {
    let Some(next) = next else {
        return;
    };
    let tag = family.tag(key);
    book.rules
        .retain(|rule| rule.legacy.as_deref() != Some(tag.as_str()));
    if next > 0 {
        let mut rule = Rule::always(family.selector(), CallSelector::Any, fault);
        rule.count = Some(u64::from(next));
        rule.legacy = Some(tag);
        book.arm(rule);
    }
}

/// `drop_connection_after_reinstall: [ids]`: the next reinstall of each is dropped.
fn arm_drops(book: &mut FaultBook, family: Family, ids: Vec<String>) {
    let tag = family.tag("drop_connection_after_reinstall");
    for id in ids {
        if drop_ids(book, &tag).contains(&id) {
            continue;
        }
        let mut rule = Rule::always(
            family.selector(),
            CallSelector::Kind(super::CallKind::Reinstall),
            FaultKind::DropAfter,
        );
        rule.count = Some(1);
        rule.ids = vec![id];
        rule.legacy = Some(tag.clone());
        book.arm(rule);
    }
}

/// `read_{status}_rate: r`: a share of reads gets `fault` from now on (replacing the old rate).
fn arm_read_rate(
    book: &mut FaultBook,
    family: Family,
    key: &str,
    fault: FaultKind,
    rate: Option<f64>,
) -> Result<(), String> {
    let Some(rate) = rate else {
        return Ok(());
    };
    if !(rate.is_finite() && (0.0..=1.0).contains(&rate)) {
        return Err(format!(
            "{}.{key}: a read fault rate must be between 0 and 1, not {rate}",
            family.key
        ));
    }
    let tag = family.tag(key);
    book.rules
        .retain(|rule| rule.legacy.as_deref() != Some(tag.as_str()));
    if rate > 0.0 {
        let mut rule = Rule::always(
            family.selector(),
            CallSelector::Kind(super::CallKind::Read),
            fault,
        );
        rule.rate = rate;
        rule.legacy = Some(tag);
        book.arm(rule);
    }
    Ok(())
}

pub fn apply_zenlayer(world: &mut World, keys: ZenlayerKeys) -> Result<(), String> {
    ZENLAYER.known(world, &keys.fail_next_install)?;
    ZENLAYER.known(world, &keys.drop_connection_after_reinstall)?;
    for id in &keys.fail_next_install {
        if let Some(server) = world.zenlayer.server_mut(id) {
            server.fail_next_install = true;
        }
    }
    let book = &mut world.faults;
    arm_next(
        book,
        ZENLAYER,
        "status_429_next",
        FaultKind::Throttle429,
        keys.status_429_next,
    );
    arm_next(
        book,
        ZENLAYER,
        "status_500_next",
        FaultKind::Error5xx,
        keys.status_500_next,
    );
    arm_read_rate(
        book,
        ZENLAYER,
        "read_500_rate",
        FaultKind::Error5xx,
        keys.read_500_rate,
    )?;
    arm_read_rate(
        book,
        ZENLAYER,
        "read_429_rate",
        FaultKind::Throttle429,
        keys.read_429_rate,
    )?;
    arm_drops(book, ZENLAYER, keys.drop_connection_after_reinstall);
    Ok(())
}

pub fn apply_huawei(world: &mut World, keys: HuaweiKeys) -> Result<(), String> {
    HUAWEI.known(world, &keys.fail_next_install)?;
    world.huaweicloud.fail_next_install(&keys.fail_next_install);
    let book = &mut world.faults;
    arm_next(
        book,
        HUAWEI,
        "status_429_next",
        FaultKind::Throttle429,
        keys.status_429_next,
    );
    arm_next(
        book,
        HUAWEI,
        "status_500_next",
        FaultKind::Error5xx,
        keys.status_500_next,
    );
    Ok(())
}

pub fn apply_edis(world: &mut World, keys: EdisKeys) -> Result<(), String> {
    EDIS.known(world, &keys.drop_connection_after_reinstall)?;
    if keys.revoke_tickets {
        world.edis.tickets.clear();
    }
    let book = &mut world.faults;
    arm_next(
        book,
        EDIS,
        "status_429_next",
        FaultKind::Throttle429,
        keys.status_429_next,
    );
    arm_next(
        book,
        EDIS,
        "status_500_next",
        FaultKind::Error5xx,
        keys.status_500_next,
    );
    arm_drops(book, EDIS, keys.drop_connection_after_reinstall);
    Ok(())
}

pub fn apply_jdcloud(world: &mut World, keys: JdcloudKeys) -> Result<(), String> {
    JDCLOUD.known(world, &keys.fail_next_install)?;
    JDCLOUD.known(world, &keys.operation_protection)?;
    JDCLOUD.known(world, &keys.drop_connection_after_reinstall)?;
    world
        .jdcloud
        .set_flags(&keys.fail_next_install, &keys.operation_protection);
    let book = &mut world.faults;
    arm_next(
        book,
        JDCLOUD,
        "status_429_next",
        FaultKind::Throttle429,
        keys.status_429_next,
    );
    arm_next(
        book,
        JDCLOUD,
        "status_500_next",
        FaultKind::Error5xx,
        keys.status_500_next,
    );
    arm_drops(book, JDCLOUD, keys.drop_connection_after_reinstall);
    Ok(())
}

/// Calls still owed by the rules of a legacy key.
fn remaining(book: &FaultBook, tag: &str) -> u64 {
    book.rules
        .iter()
        .filter(|rule| rule.legacy.as_deref() == Some(tag))
        .map(|rule| rule.remaining().unwrap_or(0))
        .sum()
}

fn drop_ids(book: &FaultBook, tag: &str) -> Vec<String> {
    let mut ids: Vec<String> = book
        .rules
        .iter()
        .filter(|rule| rule.legacy.as_deref() == Some(tag) && !rule.exhausted())
        .flat_map(|rule| rule.ids.iter().cloned())
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

fn rate(book: &FaultBook, tag: &str) -> f64 {
    book.rules
        .iter()
        .find(|rule| rule.legacy.as_deref() == Some(tag))
        .map_or(0.0, |rule| rule.rate)
}

fn counts_view(book: &FaultBook, family: Family) -> serde_json::Map<String, Value> {
    let mut view = serde_json::Map::new();
    for key in ["status_429_next", "status_500_next"] {
        view.insert(key.into(), json!(remaining(book, &family.tag(key))));
    }
    view
}

fn with_drops(book: &FaultBook, family: Family) -> Value {
    let mut view = counts_view(book, family);
    let tag = family.tag("drop_connection_after_reinstall");
    view.insert(
        "drop_connection_after_reinstall".into(),
        json!(drop_ids(book, &tag)),
    );
    Value::Object(view)
}

/// The legacy `faults` view of one family, as `GET /_emulator/state` showed it before.
pub fn view(book: &FaultBook, family: &str) -> Value {
    match family {
        "zenlayer" => {
            let mut view = with_drops(book, ZENLAYER);
            if let Some(object) = view.as_object_mut() {
                for key in ["read_500_rate", "read_429_rate"] {
                    object.insert(key.into(), json!(rate(book, &ZENLAYER.tag(key))));
                }
            }
            view
        }
        "huaweicloud" => Value::Object(counts_view(book, HUAWEI)),
        "edis" => with_drops(book, EDIS),
        _ => with_drops(book, JDCLOUD),
    }
}
