//! An in-process emulator serving all five APIs, and small hand-signed clients for each (the
//! shared signers, not the providers' clients), for the fault-menu tests.

use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::emulator::{EmulatorConfig, RunningEmulator, start};
use crate::provider::sign::{jdcloud, sdk_hmac, zc2};

const ZL_KEY: &str = "ZLAKFAULTS01";
const ZL_PASSWORD: &str = "FaultsPassword01";
const HW_AK: &str = "HWAKFAULTS01";
const HW_SK: &str = "HwFaultsSecret01";
pub const PROJECT: &str = "0a1b2c3d4e5f60718293a4b5c6d7e8f9";
const HW_PASSWORD: &str = "Reimage!2025x";
const EDIS_EMAIL: &str = "faults@example.com";
const EDIS_PASSWORD: &str = "EdisPass1";
const JD_AK: &str = "JDAKFAULTS01";
const JD_SK: &str = "JDSKFAULTS01";

/// Long installs and stops, so a server stays in its busy state for the whole test.
pub const INVENTORY: &str = r#"
install_seconds: 120
zenlayer:
  credentials: [{access_key_id: ZLAKFAULTS01, access_key_password: FaultsPassword01}]
  images: [{id: img-a, name: A}, {id: img-b, name: B}]
  servers:
    - {id: z1, name: z1, image: img-a}
    - {id: z2, name: z2, image: img-a}
huaweicloud:
  credentials: [{access_key: HWAKFAULTS01, secret_key: HwFaultsSecret01}]
  projects: [{id: 0a1b2c3d4e5f60718293a4b5c6d7e8f9, name: cn-north-4}]
  ecs:
    images: [{id: img-a, name: A}, {id: img-b, name: B}]
    servers:
      - {id: ecs-r1, name: r1, image: img-a}
      - {id: ecs-r2, name: r2, image: img-a}
      - {id: ecs-c1, name: c1, image: img-a}
      - {id: ecs-c2, name: c2, image: img-a}
  clouddc:
    images: [{id: dc-a, name: A}, {id: dc-b, name: B}]
    instances:
      - {id: dc-1, name: dc1, image: dc-a}
      - {id: dc-2, name: dc2, image: dc-a}
edis:
  accounts: [{email: faults@example.com, password: EdisPass1}]
  images: [debian-12, ubuntu-24]
  vps:
    - {kvm_id: kvm_1_1, image: debian-12}
    - {kvm_id: kvm_2_1, image: debian-12}
jdcloud:
  stop_seconds: 120
  credentials: [{access_key: JDAKFAULTS01, secret_key: JDSKFAULTS01}]
  os: [{os_type_id: os-a, os_name: A}, {os_type_id: os-b, os_name: B}]
  servers:
    - {id: jd-run, name: run, region: cn-east-1, az: cn-east-1a, os_type_id: os-a, sys_raid_type_id: r-sys}
    - {id: jd-off, name: off, region: cn-east-1, az: cn-east-1a, status: stopped, os_type_id: os-a, sys_raid_type_id: r-sys}
"#;

/// What a client saw.
#[derive(Debug)]
pub enum Sent {
    Answered {
        status: StatusCode,
        retry_after: Option<String>,
        body: Value,
    },
    /// The connection closed without an answer.
    Dropped,
    TimedOut,
}

impl Sent {
    pub fn status(&self) -> Option<u16> {
        match self {
            Sent::Answered { status, .. } => Some(status.as_u16()),
            _ => None,
        }
    }

    pub fn is_success(&self) -> bool {
        matches!(self, Sent::Answered { status, .. } if status.is_success())
    }
}

/// One mutating call of one API, on a server of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Case {
    Zenlayer,
    EcsReinstallV1,
    EcsReinstallV2,
    EcsChangeOsV1,
    EcsChangeOsV2,
    Clouddc,
    Edis,
    JdStop,
    JdReinstall,
}

pub const CASES: [Case; 9] = [
    Case::Zenlayer,
    Case::EcsReinstallV1,
    Case::EcsReinstallV2,
    Case::EcsChangeOsV1,
    Case::EcsChangeOsV2,
    Case::Clouddc,
    Case::Edis,
    Case::JdStop,
    Case::JdReinstall,
];

impl Case {
    pub fn provider(self) -> &'static str {
        match self {
            Case::Zenlayer => "zenlayer-bmc",
            Case::EcsReinstallV1 | Case::EcsReinstallV2 => "huaweicloud-ecs",
            Case::EcsChangeOsV1 | Case::EcsChangeOsV2 => "huaweicloud-ecs",
            Case::Clouddc => "huaweicloud-clouddc",
            Case::Edis => "edis-kvm",
            Case::JdStop | Case::JdReinstall => "jdcloud-cps",
        }
    }

    pub fn call(self) -> &'static str {
        match self {
            Case::EcsChangeOsV1 | Case::EcsChangeOsV2 => "change_os",
            Case::JdStop => "stop",
            _ => "reinstall",
        }
    }

    pub fn id(self) -> &'static str {
        match self {
            Case::Zenlayer => "z1",
            Case::EcsReinstallV1 => "ecs-r1",
            Case::EcsReinstallV2 => "ecs-r2",
            Case::EcsChangeOsV1 => "ecs-c1",
            Case::EcsChangeOsV2 => "ecs-c2",
            Case::Clouddc => "dc-1",
            Case::Edis => "kvm_1_1",
            Case::JdStop => "jd-run",
            Case::JdReinstall => "jd-off",
        }
    }

    /// `(reinstall, change_os, stop, replayed)` after the call acted once.
    pub fn counted_once(self) -> (u64, u64, u64, u64) {
        match self.call() {
            "change_os" => (0, 1, 0, 0),
            "stop" => (0, 0, 1, 0),
            _ => (1, 0, 0, 0),
        }
    }

    /// What the API's own read shows (status, image) before the call.
    pub fn shown_before(self) -> (&'static str, &'static str) {
        match self {
            Case::Zenlayer => ("RUNNING", "img-a"),
            Case::EcsReinstallV1 | Case::EcsReinstallV2 => ("ACTIVE", "img-a"),
            Case::EcsChangeOsV1 | Case::EcsChangeOsV2 => ("ACTIVE", "img-a"),
            Case::Clouddc => ("running", "dc-a"),
            Case::Edis => ("server powered on", ""),
            Case::JdStop => ("running", "os-a"),
            Case::JdReinstall => ("stopped", "os-a"),
        }
    }

    /// The status the API's read shows once the call acted (installs and stops are long).
    pub fn busy_status(self) -> &'static str {
        match self {
            Case::Zenlayer => "INSTALLING",
            Case::EcsReinstallV1 | Case::EcsReinstallV2 => "REBUILD",
            Case::EcsChangeOsV1 | Case::EcsChangeOsV2 => "REBUILD",
            Case::Clouddc => "pending",
            Case::Edis => "server powered off",
            Case::JdStop => "stopping",
            Case::JdReinstall => "installing",
        }
    }
}

pub struct Fleet {
    pub emulator: RunningEmulator,
    pub client: reqwest::Client,
    _data_dir: tempfile::TempDir,
    /// EDIS tickets by kvm_id (`signature`, `valid_until`).
    edis_tickets: std::sync::Mutex<Option<Value>>,
}

pub async fn fleet() -> Fleet {
    let data_dir = tempfile::tempdir().unwrap();
    let emulator = start_in(data_dir.path()).await;
    Fleet {
        emulator,
        client: client(Duration::from_secs(20)),
        _data_dir: data_dir,
        edis_tickets: std::sync::Mutex::new(None),
    }
}

/// An emulator of [`INVENTORY`] keeping its world in `dir` (the same `dir`: the same world).
pub async fn start_in(dir: &std::path::Path) -> RunningEmulator {
    let inventory = dir.join("inventory.yaml");
    std::fs::write(&inventory, INVENTORY).unwrap();
    start(EmulatorConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        inventory,
        data_dir: dir.join("data"),
        install_seconds: None,
    })
    .await
    .unwrap()
}

pub fn client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(timeout)
        .build()
        .unwrap()
}

async fn sent(request: reqwest::RequestBuilder) -> Sent {
    match request.send().await {
        Ok(response) => {
            let status = response.status();
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|value| value.to_str().ok())
                .map(str::to_string);
            let body = response.json().await.unwrap_or(Value::Null);
            Sent::Answered {
                status,
                retry_after,
                body,
            }
        }
        Err(error) if error.is_timeout() => Sent::TimedOut,
        Err(_) => Sent::Dropped,
    }
}

impl Fleet {
    fn host(&self) -> String {
        self.emulator.address.to_string()
    }

    /// `POST /_emulator/faults`: status and body.
    pub async fn arm(&self, request: Value) -> (StatusCode, Value) {
        let response = self
            .client
            .post(format!("{}/faults", self.emulator.admin_url()))
            .json(&request)
            .send()
            .await
            .unwrap();
        (response.status(), response.json().await.unwrap())
    }

    pub async fn state(&self) -> Value {
        let url = format!("{}/state", self.emulator.admin_url());
        self.client
            .get(url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn counts(&self, provider: &str, id: &str) -> (u64, u64, u64, u64) {
        let state = self.state().await;
        let counts = &state["counts"][provider][id];
        let field = |name: &str| counts[name].as_u64().unwrap();
        (
            field("reinstall"),
            field("change_os"),
            field("stop"),
            field("replayed"),
        )
    }

    /// The mutating call of a case, with `client` (timeouts differ per test).
    pub async fn act_with(&self, case: Case, client: &reqwest::Client) -> Sent {
        let id = case.id();
        match case {
            Case::Zenlayer => {
                let body = json!({"instanceId": id, "imageId": "img-b"});
                self.zenlayer(client, "ReinstallInstance", body).await
            }
            Case::EcsReinstallV1 | Case::EcsReinstallV2 => {
                let version = if case == Case::EcsReinstallV1 {
                    "v1"
                } else {
                    "v2"
                };
                let path = format!("/{version}/{PROJECT}/cloudservers/{id}/reinstallos");
                let fields = json!({"adminpass": HW_PASSWORD, "mode": "withStopServer"});
                let body = json!({"os-reinstall": fields});
                self.huawei(client, "POST", &path, "", Some(body)).await
            }
            Case::EcsChangeOsV1 | Case::EcsChangeOsV2 => {
                let version = if case == Case::EcsChangeOsV1 {
                    "v1"
                } else {
                    "v2"
                };
                let path = format!("/{version}/{PROJECT}/cloudservers/{id}/changeos");
                let fields =
                    json!({"adminpass": HW_PASSWORD, "imageid": "img-b", "mode": "withStopServer"});
                let body = json!({"os-change": fields});
                self.huawei(client, "POST", &path, "", Some(body)).await
            }
            Case::Clouddc => {
                let path = format!("/v1/{PROJECT}/instances/reinstall");
                let body =
                    json!({"image_id": "dc-b", "password": HW_PASSWORD, "instance_id_set": [id]});
                self.huawei(client, "PUT", &path, "", Some(body)).await
            }
            Case::Edis => {
                let extra = "&image=ubuntu-24&password=Root%2Bpw1";
                self.edis(client, "/kvm/v2/set/reinstall", id, extra).await
            }
            Case::JdStop => self.jd_stop(client, id, None).await,
            Case::JdReinstall => self.jd_reinstall(client, id, None).await,
        }
    }

    pub async fn act(&self, case: Case) -> Sent {
        self.act_with(case, &self.client).await
    }

    /// What the API's own read shows of the case's server: (status, image).
    pub async fn probe(&self, case: Case) -> (String, String) {
        let id = case.id();
        let (sent, status_at, image_at) = match case {
            Case::Zenlayer => (
                self.zenlayer_read(&[id]).await,
                "/response/dataSet/0/instanceStatus",
                "/response/dataSet/0/imageId",
            ),
            Case::EcsReinstallV1
            | Case::EcsReinstallV2
            | Case::EcsChangeOsV1
            | Case::EcsChangeOsV2 => (
                self.ecs_read(id).await,
                "/server/status",
                "/server/image/id",
            ),
            Case::Clouddc => {
                let path = format!("/v1/{PROJECT}/instances");
                let query = format!("instance_id={id}");
                let sent = self.huawei(&self.client, "GET", &path, &query, None).await;
                (sent, "/instances/0/state", "/instances/0/image/id")
            }
            Case::Edis => {
                let sent = self.edis(&self.client, "/kvm/v2/get/power", id, "").await;
                (sent, "/data", "/image")
            }
            Case::JdStop | Case::JdReinstall => (
                self.jd_read(id).await,
                "/result/instance/status",
                "/result/instance/osTypeId",
            ),
        };
        let Sent::Answered { status, body, .. } = sent else {
            panic!("{case:?}: the read was not answered: {sent:?}");
        };
        assert_eq!(status, StatusCode::OK, "{case:?}: {body}");
        let text = |pointer: &str| {
            body.pointer(pointer)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        (text(status_at), text(image_at))
    }

    pub async fn zenlayer(
        &self,
        client: &reqwest::Client,
        action: &str,
        parameters: Value,
    ) -> Sent {
        let body = serde_json::to_vec(&parameters).unwrap();
        let content_type = "application/json; charset=utf-8";
        let timestamp = jiff::Timestamp::now().as_second().to_string();
        let authorization = zc2::authorization(
            ZL_KEY,
            ZL_PASSWORD,
            &timestamp,
            content_type,
            &self.host(),
            &body,
        );
        let request = client
            .post(format!("http://{}/api/v2/bmc", self.host()))
            .header("Content-Type", content_type)
            .header("X-ZC-Action", action)
            .header("X-ZC-Version", "2022-11-20")
            .header("X-ZC-Timestamp", timestamp)
            .header("X-ZC-Signature-Method", zc2::ALGORITHM)
            .header("Authorization", authorization)
            .body(body);
        sent(request).await
    }

    pub async fn zenlayer_read(&self, ids: &[&str]) -> Sent {
        let parameters = json!({ "instanceIds": ids });
        self.zenlayer(&self.client, "DescribeInstances", parameters)
            .await
    }

    pub async fn huawei(
        &self,
        client: &reqwest::Client,
        method: &str,
        path: &str,
        query: &str,
        body: Option<Value>,
    ) -> Sent {
        let pairs = sdk_hmac::parse_query(query);
        let canonical_query = sdk_hmac::canonical_query(&pairs);
        let mut url = format!("http://{}{path}", self.host());
        if !canonical_query.is_empty() {
            url = format!("{url}?{canonical_query}");
        }
        let body = body.map(|body| body.to_string().into_bytes());
        let date = jiff::Timestamp::now()
            .strftime(sdk_hmac::DATE_FORMAT)
            .to_string();
        let headers = vec![
            ("Content-Type".to_string(), "application/json".to_string()),
            ("Host".to_string(), self.host()),
            ("X-Sdk-Date".to_string(), date.clone()),
        ];
        let bytes = body.clone().unwrap_or_default();
        let authorization = sdk_hmac::sign(
            HW_AK,
            HW_SK,
            method,
            path,
            &canonical_query,
            &headers,
            &bytes,
        );
        let mut request = client
            .request(method.parse().unwrap(), url)
            .header("Content-Type", "application/json")
            .header("X-Sdk-Date", date)
            .header("Authorization", authorization);
        if let Some(body) = body {
            request = request.body(body);
        }
        sent(request).await
    }

    pub async fn ecs_read(&self, id: &str) -> Sent {
        let path = format!("/v1/{PROJECT}/cloudservers/{id}");
        self.huawei(&self.client, "GET", &path, "", None).await
    }

    /// A management call with a fresh ticket of `kvm_id` (logging in once per fleet).
    pub async fn edis(
        &self,
        client: &reqwest::Client,
        path: &str,
        kvm_id: &str,
        extra: &str,
    ) -> Sent {
        let tickets = self.edis_tickets().await;
        let ticket = &tickets[kvm_id];
        let form = format!(
            "signature={}&kvm_id={kvm_id}&valid_until={}{extra}",
            ticket["signature"].as_str().unwrap(),
            ticket["valid_until"]
        );
        let request = client
            .post(format!("http://{}{path}", self.host()))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form);
        sent(request).await
    }

    pub async fn edis_login(&self) -> Sent {
        let form = format!(
            "email={}&pw={EDIS_PASSWORD}",
            EDIS_EMAIL.replace('@', "%40")
        );
        let request = self
            .client
            .post(format!("http://{}/kvm/v2/get/auth", self.host()))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form);
        sent(request).await
    }

    async fn edis_tickets(&self) -> Value {
        if let Some(tickets) = self.edis_tickets.lock().unwrap().clone() {
            return tickets;
        }
        let Sent::Answered { status, body, .. } = self.edis_login().await else {
            panic!("the EDIS login was not answered");
        };
        assert_eq!(status, StatusCode::OK, "{body}");
        let tickets = body["data"].clone();
        *self.edis_tickets.lock().unwrap() = Some(tickets.clone());
        tickets
    }

    pub async fn jd(
        &self,
        client: &reqwest::Client,
        method: Method,
        path: &str,
        query: &str,
        body: Option<Value>,
    ) -> Sent {
        let host = self.host();
        let body = body.map(|body| body.to_string()).unwrap_or_default();
        let datetime = jiff::Timestamp::now()
            .strftime("%Y%m%dT%H%M%SZ")
            .to_string();
        let nonce = uuid::Uuid::new_v4().to_string();
        let headers = [
            ("content-type", "application/json"),
            ("host", host.as_str()),
            (jdcloud::DATE_HEADER, datetime.as_str()),
            (jdcloud::NONCE_HEADER, nonce.as_str()),
        ];
        let authorization = jdcloud::authorization(
            &jdcloud::Scope {
                version: jdcloud::Version::V2,
                datetime: &datetime,
                region: "cn-east-1",
                service: "cps",
            },
            JD_AK,
            JD_SK,
            &jdcloud::Request {
                method: method.as_str(),
                path,
                query,
                headers: &headers,
                body: body.as_bytes(),
            },
        );
        let mut url = format!("http://{host}{path}");
        if !query.is_empty() {
            url = format!("{url}?{query}");
        }
        let request = client
            .request(method, url)
            .header("content-type", "application/json")
            .header(jdcloud::DATE_HEADER, &datetime)
            .header(jdcloud::NONCE_HEADER, &nonce)
            .header("authorization", authorization)
            .body(body);
        sent(request).await
    }

    pub async fn jd_read(&self, id: &str) -> Sent {
        let path = format!("/v1/regions/cn-east-1/instances/{id}");
        self.jd(&self.client, Method::GET, &path, "", None).await
    }

    pub async fn jd_stop(&self, client: &reqwest::Client, id: &str, token: Option<&str>) -> Sent {
        let path = format!("/v1/regions/cn-east-1/instances/{id}%3AstopInstance");
        let body = json!({ "clientToken": token });
        self.jd(client, Method::PUT, &path, "", Some(body)).await
    }

    pub async fn jd_reinstall(
        &self,
        client: &reqwest::Client,
        id: &str,
        token: Option<&str>,
    ) -> Sent {
        let path = format!("/v1/regions/cn-east-1/instances/{id}%3AreinstallInstance");
        let user_data = base64::engine::general_purpose::STANDARD.encode("#!/bin/sh\n");
        let spec = json!({
            "az": "cn-east-1a", "imageType": "standard", "osTypeId": "os-b",
            "sysRaidTypeId": "r-sys", "keepData": "yes", "password": "Emulator1Pass",
            "userData": user_data,
        });
        let body = json!({ "clientToken": token, "instanceSpec": spec });
        self.jd(client, Method::PUT, &path, "", Some(body)).await
    }
}

/// Polls `probe` until it answers `wanted`, for at most `deadline` (a loaded machine is slow).
pub async fn eventually(fleet: &Fleet, case: Case, wanted: &str, deadline: Duration) {
    let start = Instant::now();
    loop {
        let (status, _) = fleet.probe(case).await;
        if status == wanted {
            return;
        }
        assert!(
            start.elapsed() < deadline,
            "{case:?}: still `{status}`, not `{wanted}`, after {deadline:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
