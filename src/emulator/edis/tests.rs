//! The EDIS emulator: form decoding, the calls in the brief's shapes over real HTTP, tickets and
//! inventory rules.

use serde_json::{Value, json};

use super::auth::random_signature;
use super::*;

/// Bodies as Python's `urllib.parse.urlencode` writes them (an encoder other than
/// reimage's), decoded by the emulator.
#[test]
fn form_bodies_decode_like_the_standard_says() {
    let fields = decode_form(b"email=ops%2Btag%40example.com&pw=a%2Bb%26c%3Dd+e%7E").unwrap();
    assert_eq!(
        fields,
        vec![
            ("email".to_string(), "ops+tag@example.com".to_string()),
            ("pw".to_string(), "a+b&c=d e~".to_string()),
        ]
    );
    assert_eq!(
        decode_form(b"x=%C3%9Cn%E2%82%AC&empty=").unwrap(),
        vec![("x".into(), "Ün€".into()), ("empty".into(), String::new())]
    );
    for bad in [&b"pw=%2"[..], b"pw=%zz", b"a=1&a=2", b"x=%FF", b"\xff=1"] {
        assert!(decode_form(bad).is_none(), "{bad:?}");
    }
    assert_eq!(decode_form(b"").unwrap(), vec![]);
}

/// The brief's shapes, with bodies written by hand (not by reimage's client).
#[tokio::test]
async fn calls_are_answered_in_the_briefs_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let inventory = dir.path().join("inventory.yaml");
    std::fs::write(
        &inventory,
        "edis:\n  accounts: [{email: a@example.com, password: \"p+w&=\"}]\n  images: [debian-bookworm]\n  vps:\n    - {kvm_id: kvm_1_1, description: one}\n    - {kvm_id: kvm_2_1, suspended: true}\n",
    )
    .unwrap();
    let emulator = crate::emulator::start(crate::emulator::EmulatorConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        inventory,
        data_dir: dir.path().join("data"),
        install_seconds: Some(60.0),
    })
    .await
    .unwrap();
    let base = format!("http://{}", emulator.address);
    let client = reqwest::Client::new();
    let post = |path: &str, body: String, content_type: &'static str| {
        client
            .post(format!("{base}{path}"))
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let form = "application/x-www-form-urlencoded";
    let answer = |response: reqwest::Response| async move {
        (
            response.status().as_u16(),
            response.json::<Value>().await.unwrap(),
        )
    };

    let (status, body) = answer(
        post(AUTH_PATH, "email=a%40example.com&pw=wrong".into(), form)
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, &body["code"]), (401, &json!(401)));
    assert!(body["error"].is_string());
    // A raw `&` in the password splits it: refused, never half-accepted.
    let (status, _) = answer(
        post(AUTH_PATH, "email=a%40example.com&pw=p+w&=".into(), form)
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400);
    let (status, body) = answer(
        post(
            AUTH_PATH,
            r#"{"email":"a@example.com"}"#.into(),
            "application/json",
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some(INVALID_PARAMETERS))
    );

    let (status, body) = answer(
        post(
            AUTH_PATH,
            "email=a%40example.com&pw=p%2Bw%26%3D".into(),
            form,
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "success");
    let one = &body["data"]["kvm_1_1"];
    assert_eq!(one["kvm_id"], "kvm_1_1");
    assert_eq!(one["api_host"], emulator.address.to_string());
    assert!(one["valid_until"].is_i64());
    assert_eq!(one["signature"].as_str().unwrap().len(), SIGNATURE_LENGTH);
    assert_eq!(one["suspended"], "n");
    assert_eq!(body["data"]["kvm_2_1"]["suspended"], "y");

    let ticket = |vps: &Value| {
        format!(
            "signature={}&kvm_id={}&valid_until={}",
            vps["signature"].as_str().unwrap(),
            vps["kvm_id"].as_str().unwrap(),
            vps["valid_until"]
        )
    };
    let (status, body) = answer(post("/kvm/v2/get/power", ticket(one), form).await.unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"status": "success", "data": "server powered on", "traffic_suspended": false})
    );
    // A tampered ticket, and the right ticket at another host, are both refused with 401.
    let tampered = ticket(one).replace("valid_until=", "valid_until=1");
    let (status, body) = answer(post("/kvm/v2/get/power", tampered, form).await.unwrap()).await;
    assert_eq!((status, &body["code"]), (401, &json!(401)));
    let elsewhere = client
        .post(format!(
            "http://localhost:{}/kvm/v2/get/power",
            emulator.address.port()
        ))
        .header("content-type", form)
        .body(ticket(one))
        .send()
        .await
        .unwrap();
    assert_eq!(elsewhere.status().as_u16(), 401);

    let reinstall = |vps: &Value, extra: &str| format!("{}{extra}", ticket(vps));
    let (status, body) = answer(
        post(
            "/kvm/v2/set/reinstall",
            reinstall(one, "&image=windows&password=x"),
            form,
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some(INVALID_PARAMETERS))
    );
    let (status, body) = answer(
        post(
            "/kvm/v2/set/reinstall",
            reinstall(
                &body_of_suspended(&client, &base).await,
                "&image=debian-bookworm&password=x",
            ),
            form,
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!((status, body["error"].as_str()), (403, Some(DENIED)));
    let (status, body) = answer(
        post(
            "/kvm/v2/set/reinstall",
            reinstall(one, "&image=debian-bookworm&password=x"),
            form,
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!((status, body), (200, json!({"status": "success"})));
    let (_, body) = answer(post("/kvm/v2/get/power", ticket(one), form).await.unwrap()).await;
    assert_eq!(body["data"], "server powered off");
    let (status, body) = answer(
        post("/kvm/v2/get/nothing", ticket(one), form)
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, &body["code"]), (404, &json!(404)));
}

/// A fresh ticket of the suspended VPS.
async fn body_of_suspended(client: &reqwest::Client, base: &str) -> Value {
    let body: Value = client
        .post(format!("{base}{AUTH_PATH}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("email=a%40example.com&pw=p%2Bw%26%3D&kvm_id=kvm_2_1")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        body["data"].get("kvm_1_1").is_none(),
        "kvm_id restricts the answer"
    );
    body["data"]["kvm_2_1"].clone()
}

#[test]
fn signatures_are_fifty_random_characters() {
    let first = random_signature();
    assert_eq!(first.len(), SIGNATURE_LENGTH);
    assert!(first.chars().all(|c| c.is_ascii_alphanumeric()));
    assert_ne!(first, random_signature());
}

#[test]
fn inventory_rules() {
    let parse = |text: &str| -> EdisInventory { serde_json::from_str(text).unwrap() };
    let good = parse(
        r#"{"accounts":[{"email":"a@x","password":"p"}],
            "vps":[{"kvm_id":"kvm_1_1","api_host":"localhost"}]}"#,
    );
    assert!(check_inventory(&good).is_ok());
    for (text, expected) in [
        (r#"{"vps":[{"kvm_id":"k"}]}"#, "no account"),
        (
            r#"{"accounts":[{"email":"a@x","password":"p"}],"vps":[{"kvm_id":"k","account":"b@x"}]}"#,
            "not in `accounts`",
        ),
        (
            r#"{"accounts":[{"email":"a@x","password":"p"}],"vps":[{"kvm_id":"k"},{"kvm_id":"k"}]}"#,
            "listed twice",
        ),
        (
            r#"{"accounts":[{"email":"a@x","password":"p"}],"vps":[{"kvm_id":"k","api_host":"10.0.0.1"}]}"#,
            "api_host",
        ),
        (r#"{"ticket_ttl_seconds":0}"#, "ticket_ttl_seconds"),
    ] {
        let error = check_inventory(&parse(text)).unwrap_err();
        assert!(error.contains(expected), "{text}: {error}");
    }
}
