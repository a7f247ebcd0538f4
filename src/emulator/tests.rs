//! The emulator over real HTTP on loopback, called with reqwest and signed with the shared
//! ZC2 signer, as a client would.

use std::path::PathBuf;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{EmulatorConfig, RunningEmulator, start};
use crate::manifest::ProviderType;
use crate::provider::sign::zc2;

const KEY_ID: &str = "ZLAKTEST0001";
const KEY_PASSWORD: &str = "TestPassword0001";
const TOKEN: &str = "test-token-0001";

/// Installs take 0.3 s, except on server 3001 (30 s, for "busy" tests).
const INVENTORY: &str = r#"
install_seconds: 0.3
zenlayer:
  credentials:
    - {access_key_id: ZLAKTEST0001, access_key_password: TestPassword0001}
  tokens: [test-token-0001]
  images:
    - {id: img-ubuntu-2204, name: "Ubuntu 22.04", catalog: ubuntu}
    - {id: img-ubuntu-2404, name: "Ubuntu 24.04", catalog: ubuntu}
  servers:
    - {id: "1001", name: web-01, image: img-ubuntu-2204, status: RUNNING, hostname: web-01, zone: SEL-A, instance_type: M6C}
    - {id: "1002", name: web-02, image: img-ubuntu-2204, status: STOPPED, hostname: web-02, zone: SEL-A, instance_type: M6C}
    - {id: "2001", name: db-01, image: img-ubuntu-2204, status: RUNNING, fail_next_install: true}
    - {id: "3001", name: slow-01, image: img-ubuntu-2204, status: RUNNING, install_seconds: 30}
    - {id: "4001", name: gone-01, image: img-ubuntu-2204, status: RECYCLE}
    - {id: "4002", name: new-01, image: img-ubuntu-2204, status: CREATING}
    - {id: "4003", name: off-01, image: img-ubuntu-2204, status: STOPPING}
"#;

struct Harness {
    emulator: RunningEmulator,
    client: reqwest::Client,
    data_dir: tempfile::TempDir,
    inventory: PathBuf,
}

/// A reply: status, `X-Request-Id` header, body.
struct Reply {
    status: StatusCode,
    request_id_header: Option<String>,
    retry_after: Option<String>,
    body: Value,
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn harness() -> Harness {
    harness_with(INVENTORY).await
}

async fn harness_with(inventory_source: &str) -> Harness {
    let data_dir = tempfile::tempdir().unwrap();
    let inventory = data_dir.path().join("inventory.yaml");
    std::fs::write(&inventory, inventory_source).unwrap();
    let emulator = start_at(&inventory, &data_dir.path().join("data")).await;
    Harness {
        emulator,
        client: client(),
        data_dir,
        inventory,
    }
}

async fn start_at(inventory: &std::path::Path, data_dir: &std::path::Path) -> RunningEmulator {
    start(EmulatorConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        inventory: inventory.to_path_buf(),
        data_dir: data_dir.to_path_buf(),
        install_seconds: None,
    })
    .await
    .unwrap()
}

/// How a test request is authenticated (or deliberately mis-authenticated).
#[derive(Clone, Copy)]
enum Auth<'a> {
    Signed,
    SignedAt(i64),
    SignedWith(&'a str, &'a str),
    WrongSignature,
    Method(&'a str),
    Bearer(&'a str),
}

impl Harness {
    fn url(&self) -> String {
        self.emulator.endpoints[&ProviderType::ZenlayerBmc].clone()
    }

    async fn call(&self, action: &str, parameters: Value) -> Reply {
        self.call_with(action, parameters, Auth::Signed).await
    }

    async fn call_with(&self, action: &str, parameters: Value, auth: Auth<'_>) -> Reply {
        let response = self.send(action, parameters, auth).await.unwrap();
        let status = response.status();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map(str::to_string)
        };
        let request_id_header = header("x-request-id");
        let retry_after = header("retry-after");
        let body = response.json().await.unwrap();
        Reply {
            status,
            request_id_header,
            retry_after,
            body,
        }
    }

    async fn send(
        &self,
        action: &str,
        parameters: Value,
        auth: Auth<'_>,
    ) -> reqwest::Result<reqwest::Response> {
        let body = serde_json::to_vec(&parameters).unwrap();
        let content_type = "application/json; charset=utf-8";
        let host = self.emulator.address.to_string();
        let now = jiff::Timestamp::now().as_second();
        let request = self
            .client
            .post(self.url())
            .header("Content-Type", content_type)
            .header("X-ZC-Action", action)
            .header("X-ZC-Version", "2022-11-20")
            .header("X-ZC-Service", "bmc");
        let sign = |key_id: &str, password: &str, timestamp: i64| {
            zc2::authorization(
                key_id,
                password,
                &timestamp.to_string(),
                content_type,
                &host,
                &body,
            )
        };
        let request = match auth {
            Auth::Bearer(token) => request.header("Authorization", format!("Bearer {token}")),
            Auth::Signed
            | Auth::SignedAt(_)
            | Auth::SignedWith(..)
            | Auth::WrongSignature
            | Auth::Method(_) => {
                let (key_id, password) = match auth {
                    Auth::SignedWith(key_id, password) => (key_id, password),
                    _ => (KEY_ID, KEY_PASSWORD),
                };
                let timestamp = match auth {
                    Auth::SignedAt(timestamp) => timestamp,
                    _ => now,
                };
                let mut authorization = sign(key_id, password, timestamp);
                if let Auth::WrongSignature = auth {
                    // Flip the last hex digit.
                    let last = authorization.pop().unwrap();
                    authorization.push(if last == '0' { '1' } else { '0' });
                }
                let method = match auth {
                    Auth::Method(method) => method,
                    _ => zc2::ALGORITHM,
                };
                request
                    .header("X-ZC-Timestamp", timestamp.to_string())
                    .header("X-ZC-Signature-Method", method)
                    .header("Authorization", authorization)
            }
        };
        request.body(body.clone()).send().await
    }

    async fn state(&self) -> Value {
        self.client
            .get(format!("{}/state", self.emulator.admin_url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn faults(&self, faults: Value) -> Value {
        let response = self
            .client
            .post(format!("{}/faults", self.emulator.admin_url()))
            .json(&faults)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.unwrap()
    }

    async fn instance(&self, id: &str) -> Value {
        let reply = self
            .call("DescribeInstances", json!({"instanceIds": [id]}))
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        reply.body["response"]["dataSet"][0].clone()
    }

    async fn reinstall(&self, parameters: Value) -> Reply {
        self.call("ReinstallInstance", parameters).await
    }
}

fn assert_error(reply: &Reply, status: StatusCode, code: &str) {
    assert_eq!(reply.status, status, "{}", reply.body);
    assert_eq!(reply.body["code"], code, "{}", reply.body);
    assert!(
        reply.body["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{}",
        reply.body
    );
    let request_id = reply.body["requestId"].as_str().unwrap();
    assert_eq!(reply.request_id_header.as_deref(), Some(request_id));
}

#[tokio::test]
async fn signed_describe_lists_servers_in_the_brief_envelope() {
    let harness = harness().await;
    assert!(harness.url().starts_with("http://127.0.0.1:"));
    assert!(harness.url().ends_with("/api/v2/bmc"));
    let reply = harness
        .call(
            "DescribeInstances",
            json!({"instanceIds": ["1001", "9999"]}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let request_id = reply.body["requestId"].as_str().unwrap();
    assert_eq!(reply.body["response"]["requestId"], request_id);
    assert_eq!(reply.request_id_header.as_deref(), Some(request_id));
    let response = &reply.body["response"];
    // The unknown id is simply absent.
    assert_eq!(response["totalCount"], 1);
    let instance = &response["dataSet"][0];
    assert_eq!(instance["instanceId"], "1001");
    assert_eq!(instance["instanceName"], "web-01");
    assert_eq!(instance["hostname"], "web-01");
    assert_eq!(instance["imageId"], "img-ubuntu-2204");
    assert_eq!(instance["imageName"], "Ubuntu 22.04");
    assert_eq!(instance["instanceStatus"], "RUNNING");
    assert_eq!(instance["zoneId"], "SEL-A");
    assert_eq!(instance["instanceTypeId"], "M6C");

    // A second call gets a fresh request id.
    let again = harness.call("DescribeInstances", json!({})).await;
    assert_ne!(again.body["requestId"], request_id);
    assert_eq!(again.body["response"]["totalCount"], 7);
}

#[tokio::test]
async fn describe_pages_and_filters() {
    let harness = harness().await;
    let reply = harness
        .call("DescribeInstances", json!({"pageNum": 2, "pageSize": 3}))
        .await;
    let response = &reply.body["response"];
    assert_eq!(response["totalCount"], 7);
    let ids: Vec<&str> = response["dataSet"]
        .as_array()
        .unwrap()
        .iter()
        .map(|instance| instance["instanceId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["3001", "4001", "4002"]);
    let reply = harness
        .call("DescribeInstances", json!({"instanceName": "web-*"}))
        .await;
    assert_eq!(reply.body["response"]["totalCount"], 2);
    let reply = harness
        .call("DescribeInstances", json!({"pageSize": 1001}))
        .await;
    assert_error(&reply, StatusCode::BAD_REQUEST, "INVALID_PARAMETER");
    let reply = harness
        .call("DescribeInstances", json!({"instanceIds": "1001"}))
        .await;
    assert_error(&reply, StatusCode::BAD_REQUEST, "INVALID_PARAMETER");
}

#[tokio::test]
async fn at_most_100_ids_per_describe() {
    let harness = harness().await;
    let ids: Vec<String> = (0..100).map(|n| format!("id-{n}")).collect();
    let reply = harness
        .call("DescribeInstances", json!({"instanceIds": ids}))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["response"]["totalCount"], 0);
    let ids: Vec<String> = (0..101).map(|n| format!("id-{n}")).collect();
    let reply = harness
        .call("DescribeInstances", json!({"instanceIds": ids}))
        .await;
    assert_error(&reply, StatusCode::BAD_REQUEST, "INVALID_PARAMETER");
}

#[tokio::test]
async fn describe_images_lists_the_inventory_images() {
    let harness = harness().await;
    let reply = harness.call("DescribeImages", json!({})).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let images = reply.body["response"]["images"].as_array().unwrap();
    assert_eq!(images.len(), 2);
    assert_eq!(images[1]["imageId"], "img-ubuntu-2404");
    assert_eq!(images[1]["imageName"], "Ubuntu 24.04");
    assert_eq!(images[1]["catalog"], "ubuntu");
    assert_eq!(images[1]["imageType"], "PUBLIC_IMAGE");
    assert_eq!(images[1]["osType"], "linux");
}

#[tokio::test]
async fn bad_credentials_are_refused_with_401_and_the_error_envelope() {
    let harness = harness().await;
    let describe = |auth| harness.call_with("DescribeInstances", json!({}), auth);

    let reply = describe(Auth::WrongSignature).await;
    assert_error(&reply, StatusCode::UNAUTHORIZED, "SIGNATURE_MISMATCH");
    let stale = jiff::Timestamp::now().as_second() - 301;
    let reply = describe(Auth::SignedAt(stale)).await;
    assert_error(&reply, StatusCode::UNAUTHORIZED, "SIGNATURE_EXPIRED");
    let future = jiff::Timestamp::now().as_second() + 301;
    let reply = describe(Auth::SignedAt(future)).await;
    assert_error(&reply, StatusCode::UNAUTHORIZED, "SIGNATURE_EXPIRED");
    let reply = describe(Auth::SignedWith("ZLAKUNKNOWN", KEY_PASSWORD)).await;
    assert_error(&reply, StatusCode::UNAUTHORIZED, "AUTH_FAILED");
    let reply = describe(Auth::SignedWith(KEY_ID, "NotThePassword")).await;
    assert_error(&reply, StatusCode::UNAUTHORIZED, "SIGNATURE_MISMATCH");
    let reply = describe(Auth::Method("HMAC-SHA256")).await;
    assert_error(
        &reply,
        StatusCode::UNAUTHORIZED,
        "SIGNATURE_METHOD_UNSUPPORTED",
    );
    let reply = describe(Auth::Bearer("not-a-token")).await;
    assert_error(&reply, StatusCode::UNAUTHORIZED, "AUTH_FAILED");

    // Within the skew window is fine; so is a known bearer token.
    let reply = describe(Auth::SignedAt(jiff::Timestamp::now().as_second() - 200)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let reply = describe(Auth::Bearer(TOKEN)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
}

#[tokio::test]
async fn the_signature_covers_the_received_host_and_body() {
    let harness = harness().await;
    // Signed for one host, sent to another: the emulator must use the Host it received.
    let body = b"{}".to_vec();
    let timestamp = jiff::Timestamp::now().as_second().to_string();
    let authorization = zc2::authorization(
        KEY_ID,
        KEY_PASSWORD,
        &timestamp,
        "application/json",
        "console.zenlayer.com",
        &body,
    );
    let response = harness
        .client
        .post(harness.url())
        .header("Content-Type", "application/json")
        .header("X-ZC-Action", "DescribeInstances")
        .header("X-ZC-Version", "2022-11-20")
        .header("X-ZC-Timestamp", &timestamp)
        .header("X-ZC-Signature-Method", zc2::ALGORITHM)
        .header("Authorization", authorization)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "SIGNATURE_MISMATCH");
}

#[tokio::test]
async fn unknown_action_and_missing_version_are_refused() {
    let harness = harness().await;
    let reply = harness.call("RebuildEverything", json!({})).await;
    assert_error(&reply, StatusCode::BAD_REQUEST, "INVALID_ACTION");

    // Correctly signed, but without X-ZC-Version.
    let body = b"{}".to_vec();
    let timestamp = jiff::Timestamp::now().as_second().to_string();
    let host = harness.emulator.address.to_string();
    let authorization = zc2::authorization(
        KEY_ID,
        KEY_PASSWORD,
        &timestamp,
        "application/json",
        &host,
        &body,
    );
    let response = harness
        .client
        .post(harness.url())
        .header("Content-Type", "application/json")
        .header("X-ZC-Action", "DescribeInstances")
        .header("X-ZC-Timestamp", &timestamp)
        .header("X-ZC-Signature-Method", zc2::ALGORITHM)
        .header("Authorization", authorization)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "INVALID_API_VERSION");
}

#[tokio::test]
async fn reinstall_runs_from_running_through_installing_to_running_with_the_new_image() {
    let harness = harness().await;
    let reply = harness
        .reinstall(json!({
            "instanceId": "1001",
            "imageId": "img-ubuntu-2404",
            "hostname": "web-01-new",
            "password": "Abcdef1!x",
        }))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let request_id = reply.body["requestId"].as_str().unwrap().to_string();
    assert_eq!(reply.body["response"]["requestId"], request_id.as_str());

    let instance = harness.instance("1001").await;
    assert_eq!(instance["instanceStatus"], "INSTALLING");
    assert_eq!(instance["imageId"], "img-ubuntu-2204");

    tokio::time::sleep(Duration::from_millis(500)).await;
    let instance = harness.instance("1001").await;
    assert_eq!(instance["instanceStatus"], "RUNNING");
    assert_eq!(instance["imageId"], "img-ubuntu-2404");
    assert_eq!(instance["imageName"], "Ubuntu 24.04");
    assert_eq!(instance["hostname"], "web-01-new");

    let state = harness.state().await;
    let server = &state["zenlayer"]["servers"][0];
    assert_eq!(server["id"], "1001");
    assert_eq!(server["reinstall_count"], 1);
    let log = state["zenlayer"]["reinstall_log"].as_array().unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0]["server_id"], "1001");
    assert_eq!(log[0]["image_id"], "img-ubuntu-2404");
    assert_eq!(log[0]["request_id"], request_id.as_str());
    assert_eq!(log[0]["password_given"], true);
    // The password is never kept.
    let world = std::fs::read_to_string(&harness.emulator.world_file).unwrap();
    assert!(!world.contains("Abcdef1!x"));
    assert!(!state.to_string().contains("Abcdef1!x"));
}

#[tokio::test]
async fn stopped_servers_reinstall_and_an_omitted_image_reinstalls_the_current_one() {
    let harness = harness().await;
    let reply = harness.reinstall(json!({"instanceId": "1002"})).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let instance = harness.instance("1002").await;
    assert_eq!(instance["instanceStatus"], "RUNNING");
    assert_eq!(instance["imageId"], "img-ubuntu-2204");
    let state = harness.state().await;
    assert_eq!(
        state["zenlayer"]["reinstall_log"][0]["requested_image_id"],
        Value::Null
    );
}

#[tokio::test]
async fn fail_next_install_ends_in_install_failed_once() {
    let harness = harness().await;
    // From the inventory.
    let reply = harness
        .reinstall(json!({"instanceId": "2001", "imageId": "img-ubuntu-2404"}))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    // Armed at runtime.
    harness
        .faults(json!({"zenlayer": {"fail_next_install": ["1001"]}}))
        .await;
    let reply = harness
        .reinstall(json!({"instanceId": "1001", "imageId": "img-ubuntu-2404"}))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);

    tokio::time::sleep(Duration::from_millis(500)).await;
    for id in ["2001", "1001"] {
        let instance = harness.instance(id).await;
        assert_eq!(instance["instanceStatus"], "INSTALL_FAILED", "{id}");
    }
    let state = harness.state().await;
    for server in state["zenlayer"]["servers"].as_array().unwrap() {
        assert_eq!(server["fail_next_install"], false, "consumed: {server}");
    }
    // A failed install needs a human: no reinstall until then.
    let reply = harness
        .reinstall(json!({"instanceId": "2001", "imageId": "img-ubuntu-2404"}))
        .await;
    assert_error(
        &reply,
        StatusCode::FORBIDDEN,
        "OPERATION_DENIED_INSTANCE_STATUS",
    );
}

#[tokio::test]
async fn reinstall_is_refused_while_installing_and_in_other_busy_states() {
    let harness = harness().await;
    let parameters = json!({"instanceId": "3001", "imageId": "img-ubuntu-2404"});
    let reply = harness.reinstall(parameters.clone()).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let reply = harness.reinstall(parameters).await;
    assert_error(
        &reply,
        StatusCode::FORBIDDEN,
        "OPERATION_DENIED_INSTANCE_STATUS_INSTALLING",
    );
    for (id, code) in [
        ("4001", "OPERATION_DENIED_INSTANCE_RECYCLED"),
        ("4002", "OPERATION_DENIED_INSTANCE_CREATING"),
        ("4003", "OPERATION_DENIED_INSTANCE_STATUS"),
    ] {
        let reply = harness
            .reinstall(json!({"instanceId": id, "imageId": "img-ubuntu-2404"}))
            .await;
        assert_error(&reply, StatusCode::FORBIDDEN, code);
    }
    let state = harness.state().await;
    assert_eq!(
        state["zenlayer"]["reinstall_log"].as_array().unwrap().len(),
        1
    );
}

#[tokio::test]
async fn reinstall_parameters_are_checked_per_the_brief() {
    let harness = harness().await;
    let cases = [
        (
            json!({"imageId": "img-ubuntu-2404"}),
            StatusCode::BAD_REQUEST,
            "INVALID_PARAMETER",
        ),
        (
            json!({"instanceId": "9999", "imageId": "img-ubuntu-2404"}),
            StatusCode::NOT_FOUND,
            "INVALID_INSTANCE_NOT_FOUND",
        ),
        (
            json!({"instanceId": "1001", "imageId": "img-nope"}),
            StatusCode::NOT_FOUND,
            "INVALID_IMAGE_NOT_FOUND",
        ),
        (
            json!({"instanceId": "1001", "password": "Abcdef1!", "keyId": "key-1"}),
            StatusCode::BAD_REQUEST,
            "INVALID_PARAMETER_INSTANCE_LOGIN_CONFLICT",
        ),
        (
            json!({"instanceId": "1001", "password": "abcdefgh"}),
            StatusCode::BAD_REQUEST,
            "INVALID_PARAMETER_VALUE_PASSWORD_MALFORMED",
        ),
        (
            json!({"instanceId": "1001", "hostname": "h".repeat(65)}),
            StatusCode::BAD_REQUEST,
            "INVALID_PARAMETER_HOSTNAME_EXCEED",
        ),
        (
            json!({"instanceId": "1001", "hostname": "web_01"}),
            StatusCode::BAD_REQUEST,
            "INVALID_PARAMETER_HOSTNAME_MALFORMED",
        ),
        (
            json!({"instanceId": 1001}),
            StatusCode::BAD_REQUEST,
            "INVALID_PARAMETER",
        ),
    ];
    for (parameters, status, code) in cases {
        let reply = harness.reinstall(parameters.clone()).await;
        assert_error(&reply, status, code);
    }
    let state = harness.state().await;
    assert_eq!(state["zenlayer"]["servers"][0]["reinstall_count"], 0);
    assert_eq!(state["zenlayer"]["servers"][0]["status"], "RUNNING");
}

#[tokio::test]
async fn the_world_survives_a_restart_and_restarts_when_the_inventory_changes() {
    let harness = harness().await;
    let data_dir = harness.data_dir.path().join("data");
    let reply = harness
        .reinstall(json!({"instanceId": "1001", "imageId": "img-ubuntu-2404"}))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let slow = harness
        .reinstall(json!({"instanceId": "3001", "imageId": "img-ubuntu-2404"}))
        .await;
    assert_eq!(slow.status, StatusCode::OK, "{}", slow.body);
    let Harness {
        emulator,
        client,
        data_dir: keep_alive,
        inventory,
    } = harness;
    emulator.shutdown().await;
    // The install finishes while no emulator runs.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let harness = Harness {
        emulator: start_at(&inventory, &data_dir).await,
        client,
        data_dir: keep_alive,
        inventory,
    };
    let instance = harness.instance("1001").await;
    assert_eq!(instance["instanceStatus"], "RUNNING");
    assert_eq!(instance["imageId"], "img-ubuntu-2404");
    let instance = harness.instance("3001").await;
    assert_eq!(instance["instanceStatus"], "INSTALLING");
    let state = harness.state().await;
    assert_eq!(state["zenlayer"]["servers"][0]["reinstall_count"], 1);
    assert_eq!(
        state["zenlayer"]["reinstall_log"].as_array().unwrap().len(),
        2
    );

    // Editing the inventory starts the world again.
    let Harness {
        emulator,
        client,
        data_dir: keep_alive,
        inventory,
    } = harness;
    emulator.shutdown().await;
    std::fs::write(&inventory, format!("{INVENTORY}\n# edited\n")).unwrap();
    let harness = Harness {
        emulator: start_at(&inventory, &data_dir).await,
        client,
        data_dir: keep_alive,
        inventory,
    };
    let instance = harness.instance("1001").await;
    assert_eq!(instance["imageId"], "img-ubuntu-2204");
    let state = harness.state().await;
    assert_eq!(state["zenlayer"]["servers"][0]["reinstall_count"], 0);
}

#[tokio::test]
async fn injected_429_and_500_are_answered_then_cleared() {
    let harness = harness().await;
    let armed = harness
        .faults(json!({"zenlayer": {"status_429_next": 2, "status_500_next": 1}}))
        .await;
    assert_eq!(armed["zenlayer"]["status_429_next"], 2);
    for _ in 0..2 {
        let reply = harness.call("DescribeInstances", json!({})).await;
        assert_error(
            &reply,
            StatusCode::TOO_MANY_REQUESTS,
            "REQUEST_LIMIT_EXCEEDED",
        );
        assert_eq!(reply.retry_after.as_deref(), Some("1"));
    }
    let reply = harness
        .reinstall(json!({"instanceId": "1001", "imageId": "img-ubuntu-2404"}))
        .await;
    assert_error(&reply, StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR");
    // The failed calls did not act.
    let state = harness.state().await;
    assert_eq!(state["zenlayer"]["servers"][0]["reinstall_count"], 0);
    let reply = harness.call("DescribeInstances", json!({})).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
}

#[tokio::test]
async fn a_dropped_connection_after_the_reinstall_still_reinstalls() {
    let harness = harness().await;
    harness
        .faults(json!({"zenlayer": {"drop_connection_after_reinstall": ["1001"]}}))
        .await;
    let sent = harness
        .send(
            "ReinstallInstance",
            json!({"instanceId": "1001", "imageId": "img-ubuntu-2404"}),
            Auth::Signed,
        )
        .await;
    let error = sent.expect_err("the connection should have been dropped");
    assert!(!error.is_timeout(), "{error}");
    // hyper reports "connection closed before message completed".
    assert!(error.is_request(), "{error:?}");
    let state = harness.state().await;
    assert_eq!(state["zenlayer"]["servers"][0]["reinstall_count"], 1);
    assert_eq!(state["zenlayer"]["servers"][0]["status"], "INSTALLING");
    assert_eq!(
        state["zenlayer"]["faults"]["drop_connection_after_reinstall"],
        json!([])
    );
}

#[tokio::test]
async fn admin_faults_refuse_unknown_servers_and_keys() {
    let harness = harness().await;
    for body in [
        json!({"zenlayer": {"fail_next_install": ["9999"]}}),
        json!({"zenlayer": {"status_503_next": 1}}),
    ] {
        let response = harness
            .client
            .post(format!("{}/faults", harness.emulator.admin_url()))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
    }
}

#[tokio::test]
async fn only_loopback_addresses_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let inventory = dir.path().join("inventory.yaml");
    std::fs::write(&inventory, INVENTORY).unwrap();
    let error = start(EmulatorConfig {
        listen: "0.0.0.0:0".parse().unwrap(),
        inventory,
        data_dir: dir.path().join("data"),
        install_seconds: None,
    })
    .await
    .err()
    .unwrap();
    assert!(error.to_string().contains("loopback"), "{error}");
}

#[tokio::test]
async fn an_inventory_with_an_unknown_key_does_not_start() {
    let dir = tempfile::tempdir().unwrap();
    let inventory = dir.path().join("inventory.yaml");
    std::fs::write(&inventory, "zenlayer:\n  sever: []\n").unwrap();
    let error = start(EmulatorConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        inventory,
        data_dir: dir.path().join("data"),
        install_seconds: None,
    })
    .await
    .err()
    .unwrap();
    assert!(error.to_string().contains("sever"), "{error}");
}

/// The official Zenlayer Python SDK against the emulator (see `tests/sdk/zenlayer_python_sdk.py`
/// for how to set it up). Ignored by default: it needs a venv with the SDK installed.
#[tokio::test]
#[ignore = "needs REIMAGE_ZENLAYER_SDK_PYTHON (a python with zenlayercloud-sdk-python)"]
async fn official_python_sdk_describes_and_reinstalls() {
    let python = std::env::var("REIMAGE_ZENLAYER_SDK_PYTHON")
        .expect("set REIMAGE_ZENLAYER_SDK_PYTHON to a python that has zenlayercloud-sdk-python");
    let dir = tempfile::tempdir().unwrap();
    let inventory = dir.path().join("inventory.yaml");
    std::fs::write(&inventory, INVENTORY).unwrap();
    // Long installs, so the script sees INSTALLING however slowly Python starts.
    let emulator = start(EmulatorConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        inventory,
        data_dir: dir.path().join("data"),
        install_seconds: Some(60.0),
    })
    .await
    .unwrap();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/sdk/zenlayer_python_sdk.py"
    );
    for (version, instance_id) in [("2022-11-20", "1001"), ("2026-02-01", "1002")] {
        let mut command = std::process::Command::new(&python);
        command
            .arg(script)
            .args(["--domain", &emulator.address.to_string()])
            .args(["--key-id", KEY_ID, "--key-password", KEY_PASSWORD])
            .args([
                "--instance-id",
                instance_id,
                "--image-id",
                "img-ubuntu-2404",
            ])
            .args(["--version", version]);
        let output = tokio::task::spawn_blocking(move || command.output()).await;
        let output = output.unwrap().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{version}: {stdout}\n{stderr}");
        let seen: Value = serde_json::from_str(stdout.trim()).unwrap();
        assert_eq!(seen["after_reinstall"]["instanceStatus"], "INSTALLING");
        assert_eq!(
            seen["second_reinstall_error"],
            "OPERATION_DENIED_INSTANCE_STATUS_INSTALLING"
        );
        assert_eq!(seen["wrong_password_error"], "SIGNATURE_MISMATCH");
        eprintln!("{version}: {seen}");
    }
}
