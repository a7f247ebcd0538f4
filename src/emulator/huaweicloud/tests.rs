//! The Huawei emulator over real HTTP on loopback, called with reqwest and signed by hand with
//! the shared SDK-HMAC-SHA256 signer (not through the provider's client).

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::emulator::{EmulatorConfig, RunningEmulator, start};
use crate::provider::sign::sdk_hmac;

const AK: &str = "HWAKTEST0001";
const SK: &str = "HwTestSecretKey0001";
const PROJECT: &str = "0a1b2c3d4e5f60718293a4b5c6d7e8f9";
const TOKEN: &str = "hw-test-token-0001";
const PASSWORD: &str = "Reimage!2025x";

const INVENTORY: &str = r#"
install_seconds: 0.6
huaweicloud:
  credentials:
    - {access_key: HWAKTEST0001, secret_key: HwTestSecretKey0001}
    - {access_key: HWAKOTHER001, secret_key: OtherSecretKey0001}
  tokens: [hw-test-token-0001]
  projects:
    - {id: 0a1b2c3d4e5f60718293a4b5c6d7e8f9, name: cn-north-4}
  ecs:
    images:
      - {id: img-ubuntu-2204, name: "Ubuntu 22.04"}
      - {id: img-ubuntu-2404, name: "Ubuntu 24.04"}
    servers:
      - {id: ecs-1, name: web-1, image: img-ubuntu-2204, hostname: web-1}
      - {id: ecs-2, name: web-2, image: img-ubuntu-2204, status: SHUTOFF}
      - {id: ecs-locked, name: locked, image: img-ubuntu-2204, locked: true}
      - {id: ecs-busy, name: busy, image: img-ubuntu-2204, task_state: rebooting}
      - {id: ecs-fail, name: fail, image: img-ubuntu-2204, fail_next_install: true}
  clouddc:
    reinstall_batch_limit: 10
    max_page_size: 10
    images:
      - {id: dc-img-a, name: "EulerOS"}
      - {id: dc-img-b, name: "CentOS"}
    instances:
      - {id: dc-01, name: bm-01, image: dc-img-a}
      - {id: dc-02, name: bm-02, image: dc-img-a}
      - {id: dc-03, name: bm-03, image: dc-img-a, fail_next_install: true}
      - {id: dc-04, name: bm-04, image: dc-img-a, state: stopped}
      - {id: dc-05, name: bm-05, image: dc-img-a}
      - {id: dc-06, name: bm-06, image: dc-img-a}
      - {id: dc-07, name: bm-07, image: dc-img-a}
      - {id: dc-08, name: bm-08, image: dc-img-a}
      - {id: dc-09, name: bm-09, image: dc-img-a}
      - {id: dc-10, name: bm-10, image: dc-img-a}
      - {id: dc-11, name: bm-11, image: dc-img-a}
      - {id: dc-12, name: bm-12, image: dc-img-a}
"#;

struct Harness {
    emulator: RunningEmulator,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

#[derive(Clone, Copy)]
enum Auth<'a> {
    Signed,
    SignedAt(jiff::Timestamp),
    SignedWith(&'a str, &'a str),
    WrongSignature,
    Token(&'a str),
    None,
}

struct Reply {
    status: StatusCode,
    request_id: Option<String>,
    body: Value,
}

async fn harness() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let inventory = dir.path().join("inventory.yaml");
    std::fs::write(&inventory, INVENTORY).unwrap();
    let emulator = start(EmulatorConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        inventory,
        data_dir: dir.path().join("data"),
        install_seconds: None,
    })
    .await
    .unwrap();
    Harness {
        emulator,
        client: reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap(),
        _dir: dir,
    }
}

impl Harness {
    async fn call(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        body: Option<Value>,
    ) -> Reply {
        self.call_with(method, path, query, body, Auth::Signed)
            .await
    }

    async fn call_with(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        body: Option<Value>,
        auth: Auth<'_>,
    ) -> Reply {
        let pairs: Vec<(String, String)> = query
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect();
        let canonical_query = sdk_hmac::canonical_query(&pairs);
        let host = self.emulator.address.to_string();
        let mut url = format!("http://{host}{path}");
        if !canonical_query.is_empty() {
            url.push('?');
            url.push_str(&canonical_query);
        }
        let body_bytes = body.map(|body| body.to_string().into_bytes());
        let content_type = if body_bytes.is_some() {
            "application/json;charset=utf-8"
        } else {
            "application/json"
        };
        let now = match auth {
            Auth::SignedAt(at) => at,
            _ => jiff::Timestamp::now(),
        };
        let headers = vec![
            ("Content-Type".to_string(), content_type.to_string()),
            ("Host".to_string(), host.clone()),
            ("X-Project-Id".to_string(), PROJECT.to_string()),
            (
                "X-Sdk-Date".to_string(),
                now.strftime(sdk_hmac::DATE_FORMAT).to_string(),
            ),
        ];
        let (ak, sk) = match auth {
            Auth::SignedWith(ak, sk) => (ak, sk),
            _ => (AK, SK),
        };
        let mut authorization = sdk_hmac::sign(
            ak,
            sk,
            method,
            path,
            &canonical_query,
            &headers,
            body_bytes.as_deref().unwrap_or_default(),
        );
        if matches!(auth, Auth::WrongSignature) {
            // Another last hex digit (a fixed '0' would match one signature in sixteen).
            let last = authorization.pop();
            authorization.push(if last == Some('0') { '1' } else { '0' });
        }
        let mut request = self
            .client
            .request(method.parse().unwrap(), &url)
            .header("Content-Type", content_type)
            .header("X-Project-Id", PROJECT);
        match auth {
            Auth::Token(token) => request = request.header("X-Auth-Token", token),
            Auth::None => {}
            _ => {
                request = request
                    .header("X-Sdk-Date", &headers[3].1)
                    .header("Authorization", authorization)
            }
        }
        if let Some(bytes) = body_bytes {
            request = request.body(bytes);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let request_id = response
            .headers()
            .get("x-request-id")
            .and_then(|value| value.to_str().ok())
            .map(str::to_string);
        let body = response.json().await.unwrap_or(Value::Null);
        Reply {
            status,
            request_id,
            body,
        }
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

    async fn faults(&self, faults: Value) -> StatusCode {
        self.client
            .post(format!("{}/faults", self.emulator.admin_url()))
            .json(&json!({ "huaweicloud": faults }))
            .send()
            .await
            .unwrap()
            .status()
    }

    async fn server(&self, id: &str) -> Value {
        let reply = self
            .call(
                "GET",
                &format!("/v1/{PROJECT}/cloudservers/{id}"),
                &[],
                None,
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        reply.body["server"].clone()
    }

    async fn change_os(&self, version: &str, id: &str, fields: Value) -> Reply {
        self.call(
            "POST",
            &format!("/{version}/{PROJECT}/cloudservers/{id}/changeos"),
            &[],
            Some(json!({ "os-change": fields })),
        )
        .await
    }

    async fn job(&self, job_id: &str) -> Value {
        let reply = self
            .call("GET", &format!("/v1/{PROJECT}/jobs/{job_id}"), &[], None)
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        reply.body
    }

    async fn wait_job(&self, job_id: &str) -> Value {
        for _ in 0..100 {
            let job = self.job(job_id).await;
            if matches!(job["status"].as_str(), Some("SUCCESS" | "FAIL")) {
                return job;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("job {job_id} never finished");
    }
}

fn assert_gateway_401(reply: &Reply) {
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.body);
    assert_eq!(reply.body["error_code"], "APIGW.0301", "{}", reply.body);
    assert!(
        reply.body["error_msg"]
            .as_str()
            .unwrap()
            .starts_with("Incorrect IAM authentication information"),
        "{}",
        reply.body
    );
    assert_eq!(
        reply.body["request_id"].as_str(),
        reply.request_id.as_deref()
    );
}

#[tokio::test]
async fn bad_stale_foreign_and_missing_credentials_get_the_gateway_401() {
    let h = harness().await;
    let path = format!("/v1/{PROJECT}/cloudservers/detail");
    let ok = h.call("GET", &path, &[("server_id", "ecs-1")], None).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    assert!(ok.request_id.is_some());

    let wrong = h
        .call_with("GET", &path, &[], None, Auth::WrongSignature)
        .await;
    assert_gateway_401(&wrong);
    assert!(
        wrong.body["error_msg"]
            .as_str()
            .unwrap()
            .contains("verify aksk signature fail")
    );
    let stale = jiff::Timestamp::now() - jiff::SignedDuration::from_mins(16);
    let reply = h
        .call_with("GET", &path, &[], None, Auth::SignedAt(stale))
        .await;
    assert_gateway_401(&reply);
    assert!(reply.body["error_msg"].as_str().unwrap().contains("stale"));
    let reply = h
        .call_with("GET", &path, &[], None, Auth::SignedWith("HWAKUNKNOWN", SK))
        .await;
    assert_gateway_401(&reply);
    // A known key signed with another key's secret.
    let reply = h
        .call_with(
            "GET",
            &path,
            &[],
            None,
            Auth::SignedWith("HWAKOTHER001", SK),
        )
        .await;
    assert_gateway_401(&reply);
    let reply = h.call_with("GET", &path, &[], None, Auth::None).await;
    assert_gateway_401(&reply);
    let reply = h
        .call_with("GET", &path, &[], None, Auth::Token("nope"))
        .await;
    assert_gateway_401(&reply);
    let reply = h
        .call_with("GET", &path, &[], None, Auth::Token(TOKEN))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    // A signature over one query does not cover another.
    let signed_clock_skew_ok = jiff::Timestamp::now() - jiff::SignedDuration::from_mins(14);
    let reply = h
        .call_with(
            "GET",
            &path,
            &[],
            None,
            Auth::SignedAt(signed_clock_skew_ok),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
}

#[tokio::test]
async fn iam_lists_the_project_of_a_region() {
    let h = harness().await;
    let reply = h
        .call("GET", "/v3/projects", &[("name", "cn-north-4")], None)
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body["projects"][0]["id"], PROJECT);
    let reply = h
        .call("GET", "/v3/projects", &[("name", "eu-west-0")], None)
        .await;
    assert_eq!(reply.body["projects"], json!([]));
    let reply = h
        .call("GET", "/v1/ffff/cloudservers/detail", &[], None)
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn ecs_detail_lists_known_and_unknown_ids_and_limits_the_batch() {
    let h = harness().await;
    let path = format!("/v1/{PROJECT}/cloudservers/detail");
    let reply = h
        .call(
            "GET",
            &path,
            &[("server_id", "ecs-1,nope,ecs-locked"), ("limit", "100")],
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let servers = reply.body["servers"].as_array().unwrap();
    assert_eq!(servers.len(), 3);
    assert_eq!(servers[0]["status"], "ACTIVE");
    assert_eq!(servers[0]["image"]["id"], "img-ubuntu-2204");
    assert_eq!(servers[0]["metadata"]["image_name"], "Ubuntu 22.04");
    assert_eq!(servers[0]["OS-EXT-SRV-ATTR:hostname"], "web-1");
    assert_eq!(servers[1]["id"], "nope");
    assert_eq!(servers[1]["status"], Value::Null);
    assert!(servers[1]["fault"].is_object());
    assert_eq!(servers[2]["locked"], true);
    let many: Vec<String> = (0..101).map(|n| format!("id-{n}")).collect();
    let reply = h
        .call("GET", &path, &[("server_id", &many.join(","))], None)
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.body["error"]["code"], "Ecs.0005");
}

#[tokio::test]
async fn change_os_runs_a_job_from_init_to_success_and_moves_the_image() {
    let h = harness().await;
    let reply = h
        .change_os(
            "v1",
            "ecs-1",
            json!({"adminpass": PASSWORD, "imageid": "img-ubuntu-2404", "mode": "withStopServer"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let job_id = reply.body["job_id"].as_str().unwrap().to_string();
    let job = h.job(&job_id).await;
    assert!(
        matches!(job["status"].as_str(), Some("INIT" | "RUNNING")),
        "{job}"
    );
    let server = h.server("ecs-1").await;
    assert_eq!(server["status"], "REBUILD");
    assert_eq!(server["OS-EXT-STS:task_state"], "rebuilding");
    // A second call while the first runs is refused.
    let again = h
        .change_os(
            "v1",
            "ecs-1",
            json!({"keyname": "kp", "imageid": "img-ubuntu-2404", "mode": "withStopServer"}),
        )
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    let job = h.wait_job(&job_id).await;
    assert_eq!(job["status"], "SUCCESS");
    assert_eq!(job["entities"]["server_id"], "ecs-1");
    let server = h.server("ecs-1").await;
    assert_eq!(server["status"], "ACTIVE");
    assert_eq!(server["image"]["id"], "img-ubuntu-2404");
    let state = h.state().await;
    let call = &state["huaweicloud"]["ecs"]["calls"][0];
    assert_eq!(call["call"], "changeos");
    assert_eq!(call["version"], "v1");
    assert_eq!(call["password_given"], true);
    assert!(
        !state.to_string().contains(PASSWORD),
        "the password must never be kept"
    );
}

#[tokio::test]
async fn reinstall_keeps_the_image_and_v2_takes_user_data() {
    let h = harness().await;
    let user_data = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        "#cloud-config\n",
    );
    let reply = h
        .call(
            "POST",
            &format!("/v2/{PROJECT}/cloudservers/ecs-2/reinstallos"),
            &[],
            Some(json!({"os-reinstall": {"keyname": "kp", "userid": "u1", "metadata": {"user_data": user_data}}})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let job = h.wait_job(reply.body["job_id"].as_str().unwrap()).await;
    assert_eq!(job["status"], "SUCCESS");
    let server = h.server("ecs-2").await;
    assert_eq!(server["image"]["id"], "img-ubuntu-2204");
    assert_eq!(
        server["status"], "SHUTOFF",
        "a stopped server stays stopped"
    );
    // reinstallos takes no image id; v1 takes no user data.
    for (version, body) in [
        (
            "v1",
            json!({"os-reinstall": {"keyname": "kp", "imageid": "img-ubuntu-2404"}}),
        ),
        (
            "v1",
            json!({"os-reinstall": {"keyname": "kp", "metadata": {"user_data": user_data}}}),
        ),
        (
            "v2",
            json!({"os-reinstall": {"keyname": "kp", "adminpass": PASSWORD}}),
        ),
        ("v2", json!({"os-reinstall": {}})),
        ("v1", json!({"os-change": {"keyname": "kp"}})),
    ] {
        let reply = h
            .call(
                "POST",
                &format!("/{version}/{PROJECT}/cloudservers/ecs-2/reinstallos"),
                &[],
                Some(body.clone()),
            )
            .await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{body}: {}",
            reply.body
        );
        assert_eq!(reply.body["error"]["code"], "Ecs.0005", "{body}");
    }
}

#[tokio::test]
async fn ecs_refuses_running_locked_busy_and_weak_passwords() {
    let h = harness().await;
    let reply = h
        .change_os(
            "v1",
            "ecs-1",
            json!({"keyname": "kp", "imageid": "img-ubuntu-2404"}),
        )
        .await;
    assert_eq!(
        reply.status,
        StatusCode::CONFLICT,
        "running without withStopServer"
    );
    for id in ["ecs-locked", "ecs-busy"] {
        let reply = h
            .change_os(
                "v1",
                id,
                json!({"keyname": "kp", "imageid": "img-ubuntu-2404", "mode": "withStopServer"}),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CONFLICT, "{id}");
    }
    let reply = h
        .change_os("v1", "ecs-1", json!({"adminpass": "weakpass", "imageid": "img-ubuntu-2404", "mode": "withStopServer"}))
        .await;
    assert_eq!(reply.body["error"]["code"], "Ecs.0011");
    assert!(!reply.body.to_string().contains("weakpass"));
    let reply = h
        .change_os(
            "v1",
            "nope",
            json!({"keyname": "kp", "imageid": "img-ubuntu-2404", "mode": "withStopServer"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.body["error"]["code"], "Ecs.0114");
    let reply = h
        .change_os(
            "v1",
            "ecs-1",
            json!({"keyname": "kp", "imageid": "img-missing", "mode": "withStopServer"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    let reply = h
        .call("GET", &format!("/v1/{PROJECT}/jobs/missing"), &[], None)
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.body["code"], "EMULATOR.JOB_NOT_FOUND");
}

#[tokio::test]
async fn fail_next_install_fails_the_job_with_reasons_and_leaves_error() {
    let h = harness().await;
    let reply = h
        .change_os(
            "v1",
            "ecs-fail",
            json!({"keyname": "kp", "imageid": "img-ubuntu-2404", "mode": "withStopServer"}),
        )
        .await;
    let job = h.wait_job(reply.body["job_id"].as_str().unwrap()).await;
    assert_eq!(job["status"], "FAIL");
    assert!(job["fail_reason"].is_string());
    assert!(job["entities"]["sub_jobs"][0]["entities"]["errorcode_message"].is_string());
    let server = h.server("ecs-fail").await;
    assert_eq!(server["status"], "ERROR");
    assert_eq!(server["image"]["id"], "img-ubuntu-2204");
}

#[tokio::test]
async fn injected_429_and_500_are_answered_then_cleared() {
    let h = harness().await;
    assert_eq!(
        h.faults(json!({"status_429_next": 2, "status_500_next": 1}))
            .await,
        StatusCode::OK
    );
    let path = format!("/v1/{PROJECT}/instances");
    for expected in [
        StatusCode::TOO_MANY_REQUESTS,
        StatusCode::TOO_MANY_REQUESTS,
        StatusCode::INTERNAL_SERVER_ERROR,
        StatusCode::OK,
    ] {
        let reply = h.call("GET", &path, &[], None).await;
        assert_eq!(reply.status, expected, "{}", reply.body);
    }
    assert_eq!(
        h.faults(json!({"fail_next_install": ["nope"]})).await,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        h.faults(json!({"colour": 1})).await,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn clouddc_lists_by_marker_and_caps_ids() {
    let h = harness().await;
    let path = format!("/v1/{PROJECT}/instances");
    let ids: Vec<String> = (1..=12).map(|n| format!("dc-{n:02}")).collect();
    let joined = ids.join(",");
    let first = h
        .call(
            "GET",
            &path,
            &[("instance_id", &joined), ("limit", "100")],
            None,
        )
        .await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.body["instances"].as_array().unwrap().len(), 10);
    assert_eq!(first.body["count"], 12);
    let marker = first.body["page_info"]["next_marker"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(marker, "dc-10");
    let second = h
        .call(
            "GET",
            &path,
            &[
                ("instance_id", &joined),
                ("limit", "100"),
                ("marker", &marker),
            ],
            None,
        )
        .await;
    assert_eq!(second.body["instances"].as_array().unwrap().len(), 2);
    assert_eq!(second.body["page_info"]["next_marker"], Value::Null);
    let first_instance = &first.body["instances"][0];
    assert_eq!(first_instance["state"], "running");
    assert_eq!(first_instance["image"]["id"], "dc-img-a");
    let many: Vec<String> = (0..101).map(|n| format!("x{n}")).collect();
    let reply = h
        .call("GET", &path, &[("instance_id", &many.join(","))], None)
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.body["error_code"].is_string());
}

#[tokio::test]
async fn clouddc_batch_reinstall_runs_per_instance_and_enforces_its_limits() {
    let h = harness().await;
    let path = format!("/v1/{PROJECT}/instances/reinstall");
    let body = |ids: &[&str]| json!({"image_id": "dc-img-b", "password": PASSWORD, "instance_id_set": ids});
    // Over the limit, a stopped instance, an unknown one, a weak password: nothing happens.
    let eleven: Vec<String> = (1..=11).map(|n| format!("dc-{n:02}")).collect();
    let eleven: Vec<&str> = eleven.iter().map(String::as_str).collect();
    for (request, code) in [
        (body(&eleven), StatusCode::BAD_REQUEST),
        (body(&["dc-01", "dc-04"]), StatusCode::BAD_REQUEST),
        (body(&["dc-01", "nope"]), StatusCode::NOT_FOUND),
        (
            json!({"image_id": "dc-img-b", "password": "root1234!A", "instance_id_set": ["dc-01"]}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"image_id": "dc-img-b", "instance_id_set": ["dc-01"]}),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let reply = h.call("PUT", &path, &[], Some(request.clone())).await;
        assert_eq!(reply.status, code, "{request}: {}", reply.body);
        assert!(reply.body["error_code"].is_string());
        assert!(!reply.body.to_string().contains("root1234"));
    }
    let state = h.state().await;
    assert!(
        state["huaweicloud"]["clouddc"]["calls"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    let reply = h
        .call("PUT", &path, &[], Some(body(&["dc-01", "dc-02", "dc-03"])))
        .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    assert_eq!(
        reply.body["instances"],
        json!([{"id": "dc-01"}, {"id": "dc-02"}, {"id": "dc-03"}])
    );
    let status = h
        .call(
            "GET",
            &format!("/v1/{PROJECT}/instances/dc-01/status"),
            &[],
            None,
        )
        .await;
    assert_eq!(status.body["state"], "pending");
    assert_eq!(status.body["operation_state"], "reinstall-processing");
    tokio::time::sleep(Duration::from_millis(800)).await;
    let done = h
        .call(
            "GET",
            &format!("/v1/{PROJECT}/instances/dc-01/status"),
            &[],
            None,
        )
        .await;
    assert_eq!(done.body["state"], "running");
    assert_eq!(done.body["operation_state"], "reinstall-succeed");
    let failed = h
        .call(
            "GET",
            &format!("/v1/{PROJECT}/instances/dc-03/status"),
            &[],
            None,
        )
        .await;
    assert_eq!(failed.body["state"], "error");
    assert_eq!(failed.body["operation_state"], "reinstall-failed");
    assert!(failed.body["error"]["error_code"].is_string());
    let state = h.state().await;
    let servers = &state["huaweicloud"]["clouddc"]["servers"];
    assert_eq!(servers[0]["image"], "dc-img-b");
    assert_eq!(servers[0]["reinstall_count"], 1);
    assert_eq!(
        servers[2]["image"], "dc-img-a",
        "a failed install keeps the old image"
    );
}

/// The official Huawei Python SDKs against the emulator (see `tests/sdk/huaweicloud_python_sdk.py`
/// for the setup). Ignored by default: it needs a venv with `huaweicloudsdkecs` and
/// `huaweicloudsdkclouddc`.
#[tokio::test]
#[ignore = "needs REIMAGE_HUAWEI_SDK_PYTHON (a python with huaweicloudsdkecs and huaweicloudsdkclouddc)"]
async fn official_python_sdks_drive_the_huawei_emulator() {
    let python = std::env::var("REIMAGE_HUAWEI_SDK_PYTHON")
        .expect("set REIMAGE_HUAWEI_SDK_PYTHON to a python with the Huawei SDKs");
    let h = harness().await;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/sdk/huaweicloud_python_sdk.py"
    );
    let mut command = std::process::Command::new(python);
    command
        .arg(script)
        .args(["--endpoint", &format!("http://{}", h.emulator.address)])
        .args(["--ak", AK, "--sk", SK, "--project-id", PROJECT])
        .args(["--region", "cn-north-4"])
        .args(["--server-id", "ecs-1", "--image-id", "img-ubuntu-2404"])
        .args(["--instance-id", "dc-01", "--dc-image-id", "dc-img-b"])
        .args(["--password", PASSWORD]);
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let seen: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(seen["listed"][0]["status"], "ACTIVE");
    assert_eq!(
        seen["listed"][1]["status"],
        Value::Null,
        "unknown ids come back empty"
    );
    assert_eq!(
        seen["job_statuses"].as_array().unwrap().last().unwrap(),
        "SUCCESS"
    );
    assert_eq!(seen["after_change"]["image"], "img-ubuntu-2404");
    assert_eq!(seen["wrong_key"]["status"], 401);
    assert_eq!(seen["wrong_key"]["code"], "APIGW.0301");
    assert_eq!(seen["reinstall_accepted"], json!(["dc-01"]));
    assert_eq!(
        seen["after_reinstall"][0]["operation_state"],
        "reinstall-processing"
    );
    eprintln!("{seen}");
}
