//! Every provider type × every mutating call kind it has × each fault that concerns a mutating
//! call, over real HTTP: what the client sees, and what the world did.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::clients::{CASES, Case, Fleet, Sent, eventually, fleet};

/// Arms one rule per case (its provider, its call, its server), merged with `extra`.
async fn arm_per_case(fleet: &Fleet, fault: &str, extra: Value) {
    let rules: Vec<Value> = CASES
        .iter()
        .map(|case| {
            let mut rule = json!({
                "provider": case.provider(),
                "call": case.call(),
                "fault": fault,
                "ids": [case.id()],
            });
            if let (Some(rule), Some(extra)) = (rule.as_object_mut(), extra.as_object()) {
                rule.extend(extra.clone());
            }
            rule
        })
        .collect();
    let (status, armed) = fleet.arm(json!({ "rules": rules })).await;
    assert_eq!(status, StatusCode::OK, "{armed}");
    assert_eq!(armed["rules"].as_array().map(Vec::len), Some(CASES.len()));
}

/// The error code in the API's own shape.
fn error_code(case: Case, body: &Value) -> String {
    let code = match case {
        Case::Zenlayer => body["code"].clone(),
        Case::Edis => body["code"].clone(),
        Case::JdStop | Case::JdReinstall => body["error"]["status"].clone(),
        _ => body["error_code"].clone(),
    };
    match code {
        Value::String(code) => code,
        other => other.to_string(),
    }
}

fn expect_refused(case: Case, sent: &Sent, status: u16, codes: [&str; 4]) {
    let Sent::Answered { body, .. } = sent else {
        panic!("{case:?}: expected HTTP {status}, got {sent:?}");
    };
    assert_eq!(sent.status(), Some(status), "{case:?}: {body}");
    let expected = match case {
        Case::Zenlayer => codes[0],
        Case::Edis => codes[2],
        Case::JdStop | Case::JdReinstall => codes[3],
        _ => codes[1],
    };
    assert_eq!(error_code(case, body), expected, "{case:?}: {body}");
}

#[tokio::test]
async fn error_5xx_answers_500_in_each_apis_shape_and_nothing_happens() {
    let fleet = fleet().await;
    arm_per_case(&fleet, "error_5xx", json!({"count": 1})).await;
    let codes = ["INTERNAL_ERROR", "EMULATOR.INTERNAL", "500", "INTERNAL"];
    for case in CASES {
        let sent = fleet.act(case).await;
        expect_refused(case, &sent, 500, codes);
        assert_eq!(fleet.counts(case.provider(), case.id()).await, (0, 0, 0, 0));
        let (status, image) = fleet.probe(case).await;
        assert_eq!(
            (status.as_str(), image.as_str()),
            case.shown_before(),
            "{case:?}"
        );
        // The rule fired its one time: the same call now acts.
        let sent = fleet.act(case).await;
        assert!(sent.is_success(), "{case:?}: {sent:?}");
        let counts = fleet.counts(case.provider(), case.id()).await;
        assert_eq!(counts, case.counted_once(), "{case:?}");
        assert_eq!(fleet.probe(case).await.0, case.busy_status(), "{case:?}");
    }
    let state = fleet.state().await;
    assert_eq!(
        state["faults_fired"]["huaweicloud-ecs"]["change_os"]["error_5xx"], 2,
        "{}",
        state["faults_fired"]
    );
    assert_eq!(state["faults_fired"]["jdcloud-cps"]["stop"]["error_5xx"], 1);
}

#[tokio::test]
async fn throttle_429_answers_exactly_burst_429s_with_retry_after_then_acts() {
    let fleet = fleet().await;
    arm_per_case(
        &fleet,
        "throttle_429",
        json!({"count": 1, "burst": 3, "seconds": 2}),
    )
    .await;
    let codes = [
        "REQUEST_LIMIT_EXCEEDED",
        "APIGW.0308",
        "429",
        "RESOURCE_EXHAUSTED",
    ];
    for case in CASES {
        for attempt in 1..=3 {
            let sent = fleet.act(case).await;
            expect_refused(case, &sent, 429, codes);
            let Sent::Answered { retry_after, .. } = &sent else {
                unreachable!()
            };
            assert_eq!(
                retry_after.as_deref(),
                Some("2"),
                "{case:?} attempt {attempt}"
            );
            assert_eq!(fleet.counts(case.provider(), case.id()).await, (0, 0, 0, 0));
        }
        assert_eq!(
            fleet.probe(case).await,
            (case.shown_before().0.into(), case.shown_before().1.into()),
            "{case:?}: a throttled call changes nothing"
        );
        let sent = fleet.act(case).await;
        assert!(
            sent.is_success(),
            "{case:?}: the fourth call acts: {sent:?}"
        );
        assert_eq!(
            fleet.counts(case.provider(), case.id()).await,
            case.counted_once(),
            "{case:?}"
        );
    }
    let fired = &fleet.state().await["faults_fired"];
    assert_eq!(fired["zenlayer-bmc"]["reinstall"]["throttle_429"], 3);
    assert_eq!(fired["huaweicloud-ecs"]["reinstall"]["throttle_429"], 6);
    assert_eq!(fired["edis-kvm"]["reinstall"]["throttle_429"], 3);
}

#[tokio::test]
async fn drop_after_acts_then_closes_the_connection_unanswered() {
    let fleet = fleet().await;
    arm_per_case(&fleet, "drop_after", json!({"count": 1})).await;
    for case in CASES {
        let sent = fleet.act(case).await;
        assert!(matches!(sent, Sent::Dropped), "{case:?}: {sent:?}");
        assert_eq!(
            fleet.counts(case.provider(), case.id()).await,
            case.counted_once(),
            "{case:?}: the call acted"
        );
        assert_eq!(fleet.probe(case).await.0, case.busy_status(), "{case:?}");
    }
    let fired = &fleet.state().await["faults_fired"];
    assert_eq!(fired["huaweicloud-clouddc"]["reinstall"]["drop_after"], 1);
}

#[tokio::test]
async fn slow_after_acts_then_answers_no_sooner_than_asked() {
    let fleet = fleet().await;
    arm_per_case(&fleet, "slow_after", json!({"count": 1, "seconds": 0.4})).await;
    for case in CASES {
        let started = Instant::now();
        let sent = fleet.act(case).await;
        let waited = started.elapsed();
        assert!(sent.is_success(), "{case:?}: {sent:?}");
        assert!(waited >= Duration::from_millis(400), "{case:?}: {waited:?}");
        assert_eq!(
            fleet.counts(case.provider(), case.id()).await,
            case.counted_once(),
            "{case:?}"
        );
    }
}

#[tokio::test]
async fn a_client_whose_timeout_is_shorter_than_slow_after_times_out_after_the_call_acted() {
    let fleet = fleet().await;
    arm_per_case(&fleet, "slow_after", json!({"count": 1, "seconds": 3})).await;
    let impatient = super::clients::client(Duration::from_millis(300));
    for case in [Case::Zenlayer, Case::JdReinstall, Case::Clouddc] {
        let sent = fleet.act_with(case, &impatient).await;
        assert!(matches!(sent, Sent::TimedOut), "{case:?}: {sent:?}");
        assert_eq!(
            fleet.counts(case.provider(), case.id()).await,
            case.counted_once(),
            "{case:?}"
        );
    }
}

#[tokio::test]
async fn late_status_shows_the_server_as_before_for_seconds_then_as_it_is() {
    let fleet = fleet().await;
    arm_per_case(&fleet, "late_status", json!({"count": 1, "seconds": 5})).await;
    for case in CASES {
        let sent = fleet.act(case).await;
        assert!(sent.is_success(), "{case:?}: {sent:?}");
    }
    // Within the window: every read shows the status and image from before the call, while
    // the world (the admin view) shows the truth.
    for case in CASES {
        let (status, image) = fleet.probe(case).await;
        assert_eq!(
            (status.as_str(), image.as_str()),
            case.shown_before(),
            "{case:?}"
        );
        assert_eq!(
            fleet.counts(case.provider(), case.id()).await,
            case.counted_once(),
            "{case:?}"
        );
    }
    let state = fleet.state().await;
    assert_eq!(state["zenlayer"]["servers"][0]["status"], "INSTALLING");
    assert_eq!(state["jdcloud"]["servers"][1]["status"], "installing");
    // A list shows it late too, not only a read of the one server.
    let Sent::Answered { body, .. } = fleet.zenlayer_read(&[]).await else {
        panic!("no answer")
    };
    assert_eq!(body["response"]["dataSet"][0]["instanceStatus"], "RUNNING");
    // After the window: the truth.
    for case in CASES {
        eventually(&fleet, case, case.busy_status(), Duration::from_secs(30)).await;
    }
}
