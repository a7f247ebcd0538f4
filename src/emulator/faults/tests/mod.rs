//! Tests of the fault menu: the decisions of the book on their own, then every API over real
//! HTTP (`matrix`: mutating calls × faults; `behaviour`: rate, seed, count, ids, rate limits,
//! latency, business refusals, validation, persistence).

mod behaviour;
mod clients;
mod matrix;

use std::time::Instant;

use jiff::Timestamp;

use super::book::{FaultBook, MAX_RANDOM_REFUSALS_IN_A_ROW};
use super::rules::{CallSelector, FaultKind, ProviderSelector, Rule};
use super::{Call, CallKind, Outcome, RateWindows, Refusal};
use crate::manifest::ProviderType;

fn read(ids: &[&str]) -> Call {
    let ids = ids.iter().map(|id| id.to_string()).collect();
    Call::new(ProviderType::ZenlayerBmc, CallKind::Read, ids)
}

fn rule(call: CallSelector, fault: FaultKind) -> Rule {
    let provider = ProviderSelector::Only(vec![ProviderType::ZenlayerBmc]);
    Rule::always(provider, call, fault)
}

/// `before`, then `after` as a served read when not refused; whether it was refused.
fn refused(book: &mut FaultBook, call: &Call) -> bool {
    let mut windows = RateWindows::default();
    let (refusal, _) = book.before(call, &mut windows, Instant::now());
    if refusal.is_none() {
        let _ = book.after(call, Outcome::Served, Timestamp::now(), &|_| None);
    }
    refusal.is_some()
}

#[test]
fn random_read_refusals_never_run_longer_than_the_cap() {
    let mut book = FaultBook::default();
    let mut rule = rule(CallSelector::Kind(CallKind::Read), FaultKind::Error5xx);
    rule.rate = 0.95;
    book.arm(rule);
    let pattern: Vec<bool> = (0..200).map(|_| refused(&mut book, &read(&[]))).collect();
    let longest = pattern
        .split(|refused| !refused)
        .map(<[bool]>::len)
        .max()
        .unwrap_or(0);
    assert_eq!(longest as u32, MAX_RANDOM_REFUSALS_IN_A_ROW, "{pattern:?}");
    assert!(pattern.iter().filter(|refused| **refused).count() > 120);
}

#[test]
fn a_rule_with_rate_one_refuses_reads_beyond_the_cap_as_asked() {
    let mut book = FaultBook::default();
    let mut rule = rule(CallSelector::Kind(CallKind::Read), FaultKind::Throttle429);
    rule.count = Some(7);
    book.arm(rule);
    let pattern: Vec<bool> = (0..9).map(|_| refused(&mut book, &read(&[]))).collect();
    assert_eq!(
        pattern,
        [true, true, true, true, true, true, true, false, false]
    );
}

#[test]
fn selectors_filter_by_call_kind_provider_and_ids() {
    let mut selective = rule(CallSelector::Mutating, FaultKind::Error5xx);
    selective.ids = vec!["a".into()];
    let reinstall = |ids: &[&str]| {
        let ids = ids.iter().map(|id| id.to_string()).collect();
        Call::new(ProviderType::ZenlayerBmc, CallKind::Reinstall, ids)
    };
    assert_eq!(
        selective.selects(&reinstall(&["a"])),
        Some(ProviderType::ZenlayerBmc)
    );
    assert_eq!(
        selective.selects(&reinstall(&["b", "a"])),
        Some(ProviderType::ZenlayerBmc)
    );
    assert_eq!(selective.selects(&reinstall(&["b"])), None);
    assert_eq!(selective.selects(&reinstall(&[])), None);
    assert_eq!(
        selective.selects(&read(&["a"])),
        None,
        "a read is not mutating"
    );
    let elsewhere = Call::new(
        ProviderType::JdcloudCps,
        CallKind::Reinstall,
        vec!["a".into()],
    );
    assert_eq!(selective.selects(&elsewhere), None);

    let any = Rule::always(
        ProviderSelector::Any,
        CallSelector::Any,
        FaultKind::Error5xx,
    );
    let catalogue = Call::new(ProviderType::EdisKvm, CallKind::Other, Vec::new());
    assert_eq!(any.selects(&catalogue), Some(ProviderType::EdisKvm));
    let clouddc = ProviderSelector::Only(vec![ProviderType::HuaweicloudClouddc]);
    let iam_rule = Rule::always(
        clouddc,
        CallSelector::Kind(CallKind::Auth),
        FaultKind::Error5xx,
    );
    assert_eq!(
        iam_rule.selects(&Call::huawei_iam()),
        Some(ProviderType::HuaweicloudClouddc),
        "the IAM lookup belongs to both Huawei APIs"
    );
}

#[test]
fn a_burst_owes_its_429s_to_the_same_call_kind_only() {
    let mut book = FaultBook::default();
    let mut throttle = rule(CallSelector::Any, FaultKind::Throttle429);
    throttle.count = Some(1);
    throttle.burst = 3;
    book.arm(throttle);
    let reinstall = Call::new(ProviderType::ZenlayerBmc, CallKind::Reinstall, Vec::new());
    let mut windows = RateWindows::default();
    let mut before = |call: &Call| book.before(call, &mut windows, Instant::now()).0;
    assert!(matches!(
        before(&reinstall),
        Some(Refusal::Throttled { .. })
    ));
    assert_eq!(before(&read(&[])), None, "the burst belongs to reinstalls");
    assert!(before(&reinstall).is_some());
    assert!(before(&reinstall).is_some());
    assert_eq!(before(&reinstall), None, "three 429s, then through");
}

#[test]
fn counts_record_acting_and_replayed_calls_per_server() {
    let mut book = FaultBook::default();
    let jd = |kind, id: &str| Call::new(ProviderType::JdcloudCps, kind, vec![id.to_string()]);
    let now = Timestamp::now();
    let _ = book.after(&jd(CallKind::Stop, "s1"), Outcome::Acted, now, &|_| None);
    let _ = book.after(&jd(CallKind::Reinstall, "s1"), Outcome::Acted, now, &|_| {
        None
    });
    let _ = book.after(
        &jd(CallKind::Reinstall, "s1"),
        Outcome::Replayed,
        now,
        &|_| None,
    );
    let _ = book.after(&jd(CallKind::Read, "s1"), Outcome::Served, now, &|_| None);
    let counts = book.counts[&ProviderType::JdcloudCps]["s1"];
    assert_eq!(
        (
            counts.reinstall,
            counts.change_os,
            counts.stop,
            counts.replayed
        ),
        (1, 0, 1, 1)
    );
}
