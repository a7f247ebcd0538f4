//! The rest of the menu over real HTTP: rate and seed, count, ids, rate limits, latency,
//! refusals the server's status calls for, the request's checks, counts, persistence.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::clients::{Fleet, Sent, fleet, start_in};

/// Which of `calls` zenlayer reads were refused (500 or 429).
async fn read_pattern(fleet: &Fleet, calls: usize) -> Vec<bool> {
    let mut pattern = Vec::with_capacity(calls);
    for _ in 0..calls {
        let sent = fleet.zenlayer_read(&["z1"]).await;
        pattern.push(!sent.is_success());
    }
    pattern
}

#[tokio::test]
async fn the_same_seed_makes_the_same_decisions_and_another_seed_others() {
    let fleet = fleet().await;
    let rules =
        json!([{"provider": "zenlayer-bmc", "call": "read", "fault": "error_5xx", "rate": 0.5}]);
    let arm = |seed: u64| json!({"clear": true, "seed": seed, "rules": rules});
    assert_eq!(fleet.arm(arm(42)).await.0, StatusCode::OK);
    let first = read_pattern(&fleet, 40).await;
    assert_eq!(fleet.arm(arm(42)).await.0, StatusCode::OK);
    let again = read_pattern(&fleet, 40).await;
    assert_eq!(first, again);
    let refusals = first.iter().filter(|refused| **refused).count();
    assert!((8..=32).contains(&refusals), "{first:?}");
    assert_eq!(fleet.arm(arm(7)).await.0, StatusCode::OK);
    assert_ne!(read_pattern(&fleet, 40).await, first);
    assert_eq!(fleet.state().await["fault_seed"], 7);
}

#[tokio::test]
async fn count_caps_firing_and_ids_filter_the_calls() {
    let fleet = fleet().await;
    let (status, armed) = fleet
        .arm(json!({"rules": [{
            "provider": "zenlayer-bmc", "call": "read", "fault": "error_5xx",
            "count": 2, "ids": ["z1"],
        }]}))
        .await;
    assert_eq!(status, StatusCode::OK, "{armed}");
    assert_eq!(armed["rules"][0]["count"], 2);
    assert!(
        fleet.zenlayer_read(&["z2"]).await.is_success(),
        "z2 is not named"
    );
    assert!(
        fleet.zenlayer_read(&[]).await.is_success(),
        "a list names no id"
    );
    assert_eq!(fleet.zenlayer_read(&["z2", "z1"]).await.status(), Some(500));
    assert_eq!(fleet.zenlayer_read(&["z1"]).await.status(), Some(500));
    assert!(
        fleet.zenlayer_read(&["z1"]).await.is_success(),
        "count 2 is used up"
    );
    let state = fleet.state().await;
    assert_eq!(state["fault_rules"][0]["fired"], 2);
    assert_eq!(
        state["faults_fired"]["zenlayer-bmc"]["read"]["error_5xx"],
        2
    );
}

#[tokio::test]
async fn rate_limit_refuses_calls_beyond_the_window_and_not_spaced_ones() {
    let fleet = fleet().await;
    let (status, armed) = fleet
        .arm(json!({"rules": [{
            "provider": "jdcloud-cps", "call": "read", "fault": "rate_limit", "per_second": 3,
        }]}))
        .await;
    assert_eq!(status, StatusCode::OK, "{armed}");
    let mut answers = Vec::new();
    for _ in 0..8 {
        answers.push(fleet.jd_read("jd-run").await);
    }
    assert!(answers[..3].iter().all(Sent::is_success), "{answers:?}");
    let throttled: Vec<&Sent> = answers
        .iter()
        .filter(|sent| sent.status() == Some(429))
        .collect();
    assert!(!throttled.is_empty(), "{answers:?}");
    let Sent::Answered {
        retry_after, body, ..
    } = throttled[0]
    else {
        unreachable!()
    };
    assert_eq!(retry_after.as_deref(), Some("1"));
    assert_eq!(body["error"]["status"], "RESOURCE_EXHAUSTED");
    // Other call kinds and providers have windows of their own.
    assert!(fleet.zenlayer_read(&["z1"]).await.is_success());

    let (status, _) = fleet
        .arm(json!({"clear": true, "rules": [{
            "provider": "jdcloud-cps", "call": "read", "fault": "rate_limit", "per_second": 1,
        }]}))
        .await;
    assert_eq!(status, StatusCode::OK);
    for _ in 0..3 {
        assert!(fleet.jd_read("jd-run").await.is_success());
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
}

#[tokio::test]
async fn latency_delays_matching_calls_only() {
    let fleet = fleet().await;
    let (status, _) = fleet
        .arm(json!({"rules": [{
            "provider": "huaweicloud-ecs", "call": "read", "fault": "latency", "seconds": 0.4,
        }]}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let started = Instant::now();
    assert!(fleet.ecs_read("ecs-r1").await.is_success());
    assert!(started.elapsed() >= Duration::from_millis(400));
    let state = fleet.state().await;
    assert_eq!(
        state["faults_fired"]["huaweicloud-ecs"]["read"]["latency"],
        1
    );
    assert!(fleet.zenlayer_read(&["z1"]).await.is_success());
    assert!(state["faults_fired"].get("zenlayer-bmc").is_none());
}

#[tokio::test]
async fn mutations_the_servers_status_forbids_are_refused_and_change_nothing() {
    let fleet = fleet().await;
    // Each case acts once; the same call again meets a busy server.
    for case in super::clients::CASES {
        assert!(fleet.act(case).await.is_success(), "{case:?}");
        let sent = fleet.act(case).await;
        let status = sent.status().unwrap_or_default();
        assert!((400..500).contains(&status), "{case:?}: {sent:?}");
        assert_eq!(
            fleet.counts(case.provider(), case.id()).await,
            case.counted_once(),
            "{case:?}: the refused call is not counted"
        );
    }
    // JD: a running server cannot be reinstalled, a stopped one cannot be stopped.
    let refused = fleet.jd_reinstall(&fleet.client, "jd-run", None).await;
    assert_eq!(refused.status(), Some(400), "{refused:?}");
    let Sent::Answered { body, .. } = &refused else {
        unreachable!()
    };
    assert_eq!(body["error"]["status"], "FAILED_PRECONDITION");
    assert_eq!(fleet.counts("jdcloud-cps", "jd-run").await, (0, 0, 1, 0));
}

#[tokio::test]
async fn a_jd_stop_of_a_stopped_server_is_refused_and_not_counted() {
    let fleet = fleet().await;
    let refused = fleet.jd_stop(&fleet.client, "jd-off", None).await;
    assert_eq!(refused.status(), Some(400), "{refused:?}");
    assert_eq!(fleet.counts("jdcloud-cps", "jd-off").await, (0, 0, 0, 0));
    assert_eq!(
        fleet.probe(super::clients::Case::JdReinstall).await.0,
        "stopped"
    );
}

#[tokio::test]
async fn a_jd_repeat_with_the_same_client_token_is_counted_as_a_replay() {
    let fleet = fleet().await;
    for _ in 0..2 {
        let sent = fleet
            .jd_reinstall(&fleet.client, "jd-off", Some("token-1"))
            .await;
        assert!(sent.is_success(), "{sent:?}");
    }
    assert_eq!(fleet.counts("jdcloud-cps", "jd-off").await, (1, 0, 0, 1));
    let state = fleet.state().await;
    assert_eq!(state["jdcloud"]["token_replays"], 1);
}

#[tokio::test]
async fn counts_list_every_server_of_the_inventory_with_zeros() {
    let fleet = fleet().await;
    let counts = fleet.state().await["counts"].clone();
    let zero = json!({"reinstall": 0, "change_os": 0, "stop": 0, "replayed": 0});
    for (provider, ids) in [
        ("zenlayer-bmc", &["z1", "z2"][..]),
        ("huaweicloud-ecs", &["ecs-r1", "ecs-r2", "ecs-c1", "ecs-c2"]),
        ("huaweicloud-clouddc", &["dc-1", "dc-2"]),
        ("edis-kvm", &["kvm_1_1", "kvm_2_1"]),
        ("jdcloud-cps", &["jd-run", "jd-off"]),
    ] {
        let servers = counts[provider].as_object().unwrap();
        assert_eq!(servers.len(), ids.len(), "{provider}: {counts}");
        for id in ids {
            assert_eq!(servers[*id], zero, "{provider} {id}");
        }
    }
}

#[tokio::test]
async fn auth_rules_fault_logins_and_the_huawei_project_lookup() {
    let fleet = fleet().await;
    let (status, _) = fleet
        .arm(json!({"rules": [
            {"provider": "edis-kvm", "call": "auth", "fault": "error_5xx", "count": 1},
            {"provider": "huaweicloud-clouddc", "call": "auth", "fault": "throttle_429", "count": 1},
        ]}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(fleet.edis_login().await.status(), Some(500));
    assert!(fleet.edis_login().await.is_success());
    let iam = fleet
        .huawei(
            &fleet.client,
            "GET",
            "/v3/projects",
            "name=cn-north-4",
            None,
        )
        .await;
    assert_eq!(iam.status(), Some(429), "{iam:?}");
    let iam = fleet
        .huawei(
            &fleet.client,
            "GET",
            "/v3/projects",
            "name=cn-north-4",
            None,
        )
        .await;
    assert!(iam.is_success());
    let fired = &fleet.state().await["faults_fired"];
    assert_eq!(fired["huaweicloud-clouddc"]["auth"]["throttle_429"], 1);
    assert_eq!(fired["edis-kvm"]["auth"]["error_5xx"], 1);
}

#[tokio::test]
async fn an_invalid_request_is_refused_naming_the_field_and_changes_nothing() {
    let fleet = fleet().await;
    let keep = json!({"rules": [{"provider": "*", "call": "stop", "fault": "drop_after"}]});
    assert_eq!(fleet.arm(keep).await.0, StatusCode::OK);
    let rule = |extra: Value| {
        let mut rule =
            json!({"provider": "zenlayer-bmc", "call": "reinstall", "fault": "error_5xx"});
        if let (Some(rule), Some(extra)) = (rule.as_object_mut(), extra.as_object()) {
            rule.extend(extra.clone());
        }
        json!({"clear": true, "rules": [{"provider": "*", "call": "read", "fault": "error_5xx"}, rule]})
    };
    for (request, expected) in [
        (
            rule(json!({"provider": "aws-ec2"})),
            "rules[1].provider: unknown provider `aws-ec2`",
        ),
        (
            rule(json!({"call": "delete"})),
            "rules[1].call: unknown call `delete`",
        ),
        (
            rule(json!({"fault": "explode"})),
            "rules[1].fault: unknown fault `explode`",
        ),
        (
            rule(json!({"rate": 1.5})),
            "rules[1].rate must be between 0 and 1",
        ),
        (
            rule(json!({"rate": -0.1})),
            "rules[1].rate must be between 0 and 1",
        ),
        (
            rule(json!({"ids": ["nope"]})),
            "rules[1].ids: `nope` is not a server of zenlayer-bmc",
        ),
        (rule(json!({"ids": ["jd-run"]})), "rules[1].ids: `jd-run`"),
        (
            rule(json!({"fault": "slow_after"})),
            "rules[1].seconds is required for slow_after",
        ),
        (
            rule(json!({"fault": "late_status"})),
            "rules[1].seconds is required",
        ),
        (
            rule(json!({"fault": "latency"})),
            "rules[1].seconds is required",
        ),
        (
            rule(json!({"fault": "rate_limit"})),
            "rules[1].per_second is required",
        ),
        (
            rule(json!({"burst": 2})),
            "rules[1].burst is only used by throttle_429",
        ),
        (
            rule(json!({"seconds": 1})),
            "rules[1].seconds is not used by error_5xx",
        ),
        (
            rule(json!({"count": 0})),
            "rules[1].count must be at least 1",
        ),
        (
            rule(json!({"colour": "red"})),
            "rules[1].colour: unknown field `colour`",
        ),
        (rule(json!({"rate": "often"})), "rules[1].rate"),
        (
            rule(json!({"fault": "late_status", "call": "read", "seconds": 1})),
            "rules[1].call: late_status",
        ),
        (
            json!({"rules": [{"call": "read", "fault": "error_5xx"}]}),
            "rules[0].provider is required",
        ),
        (json!({"seed": "x"}), "seed"),
        (json!({"colour": 1}), "unknown field `colour`"),
        (
            json!({"zenlayer": {"status_503_next": 1}}),
            "zenlayer.status_503_next: unknown field",
        ),
    ] {
        let (status, body) = fleet.arm(request.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{request}: {body}");
        let message = body["message"].as_str().unwrap_or_default();
        assert!(message.contains(expected), "{request}: {message}");
    }
    let state = fleet.state().await;
    let rules = state["fault_rules"].as_array().unwrap();
    assert_eq!(rules.len(), 1, "nothing changed: {rules:?}");
    assert_eq!(rules[0]["call"], "stop");
}

#[tokio::test]
async fn armed_rules_persist_with_the_world_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let first = start_in(dir.path()).await;
    let armed = first
        .arm_faults(r#"{"seed": 9, "rules": [{"provider": "edis-kvm", "call": "mutating", "fault": "error_5xx", "count": 3}]}"#)
        .await
        .unwrap();
    assert_eq!(armed["rules"][0]["fault"], "error_5xx");
    first.shutdown().await;
    let again = start_in(dir.path()).await;
    let state: Value = super::clients::client(Duration::from_secs(10))
        .get(format!("{}/state", again.admin_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(state["fault_rules"][0]["count"], 3);
    assert_eq!(state["fault_rules"][0]["call"], "mutating");
    assert_eq!(state["fault_seed"], 9);
    let refused = again
        .arm_faults(r#"{"rules": [{"provider": "edis-kvm"}]}"#)
        .await;
    let message = refused.unwrap_err().to_string();
    assert!(message.contains("rules[0].call is required"), "{message}");
}

#[tokio::test]
async fn read_faults_and_drops_reach_reads_and_the_legacy_keys_are_rules_of_the_menu() {
    let fleet = fleet().await;
    let (status, armed) = fleet
        .arm(json!({
            "rules": [{"provider": "huaweicloud-clouddc", "call": "status", "fault": "drop_after", "count": 1}],
            "jdcloud": {"status_500_next": 1},
        }))
        .await;
    assert_eq!(status, StatusCode::OK, "{armed}");
    assert_eq!(armed["jdcloud"]["status_500_next"], 1);
    assert_eq!(armed["rules"][1]["legacy"], "jdcloud.status_500_next");
    let path = format!("/v1/{}/instances/dc-2/status", super::clients::PROJECT);
    let sent = fleet.huawei(&fleet.client, "GET", &path, "", None).await;
    assert!(matches!(sent, Sent::Dropped), "{sent:?}");
    let sent = fleet.huawei(&fleet.client, "GET", &path, "", None).await;
    assert!(sent.is_success(), "{sent:?}");
    assert_eq!(fleet.jd_read("jd-off").await.status(), Some(500));
    let state = fleet.state().await;
    assert_eq!(state["jdcloud"]["faults"]["status_500_next"], 0);
    assert_eq!(state["faults_fired"]["jdcloud-cps"]["read"]["error_5xx"], 1);
}
