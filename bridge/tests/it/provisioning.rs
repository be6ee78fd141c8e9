//! A device enrols itself: a claim code from the REST API, a key and CSR made
//! with `openssl`, `curl` against the provisioning listener (TLS, the CA as
//! its only trust), then `mosquitto_pub` with the issued certificate — no
//! Rust and no operator on the device's side. Replays, unknown, revoked and
//! used-up codes, bad CSRs and wrong content types issue nothing; every
//! attempt is audited; attempts are rate limited.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use crate::stack::{DeviceCreds, Stack};

/// `curl` POSTing `body` (JSON unless `content_type` says otherwise) to
/// `/v1/provision`; returns the status and the JSON answer.
fn curl(s: &Stack, dir: &Path, body: &str, content_type: &str) -> (u16, Value) {
    let addr = s.h.bridge.as_ref().unwrap().provision_addr().unwrap();
    let file = dir.join("request.json");
    std::fs::write(&file, body).unwrap();
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert"])
        .arg(s.pki.ca_path())
        .args(["-H", &format!("Content-Type: {content_type}")])
        .arg("--data-binary")
        .arg(format!("@{}", file.display()))
        .args(["-w", "\n%{http_code}"])
        .arg(format!("https://localhost:{}/v1/provision", addr.port()))
        .output()
        .expect("curl (apt-get install curl)");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (json, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (
        code.trim().parse().unwrap_or(0),
        serde_json::from_str(json).unwrap_or(Value::Null),
    )
}

/// A P-256 key and a CSR (any subject) made with `openssl`, as firmware would.
fn key_and_csr(dir: &Path) -> String {
    let ok = Command::new("openssl")
        .args([
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-subj", "/CN=whatever-the-device-says"])
        .arg("-keyout")
        .arg(dir.join("device.key"))
        .arg("-out")
        .arg(dir.join("device.csr"))
        .status()
        .expect("openssl")
        .success();
    assert!(ok);
    std::fs::read_to_string(dir.join("device.csr")).unwrap()
}

async fn claim_code(s: &Stack, token: &str, uses: &str) -> (String, String) {
    let r =
        s.h.send(
            s.h.http
                .post(format!("{}/v1/claim_codes", s.h.base))
                .bearer_auth(token)
                .form(&[("uses", uses), ("expires_in", "600")]),
        )
        .await;
    assert_eq!(r.status.as_u16(), 201, "{:?}", r.body);
    (
        r.body["id"].as_str().unwrap().to_string(),
        r.body["code"].as_str().unwrap().to_string(),
    )
}

async fn outcomes(s: &Stack) -> Vec<String> {
    s.h.client()
        .await
        .query("SELECT outcome FROM provisioning_attempts ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_enrols_with_a_claim_code_using_openssl_and_curl_then_connects() {
    let s = Stack::start(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let token = s.h.token_with(&["provision"]).await;
    // The ordinary all-scopes token may not make codes: it lacks `provision`.
    let r = s.h.post("/v1/claim_codes", &[]).await;
    r.assert_error(403001);

    let (_, code) = claim_code(&s, &token, "1").await;
    let csr = key_and_csr(dir.path());
    let request = json!({"claim_code": code, "csr": csr, "serial": "1W320010000042"}).to_string();
    let (status, issued) = curl(&s, dir.path(), &request, "application/json");
    assert_eq!(status, 200, "{issued}");
    let device = issued["device_id"].as_str().unwrap().to_string();
    assert!(device.starts_with("dev-"), "{issued}");
    assert!(issued["certificate"]
        .as_str()
        .unwrap()
        .contains("BEGIN CERTIFICATE"));
    assert!(issued["ca"].as_str().unwrap().contains("BEGIN CERTIFICATE"));
    assert_eq!(issued["nodes"].as_array().unwrap().len(), 1);
    std::fs::write(
        dir.path().join("device.pem"),
        issued["certificate"].as_str().unwrap(),
    )
    .unwrap();

    // Registered to the code's account at once, serial recorded.
    let devices = s.h.get("/1/devices").await.ok();
    let mine = devices
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == device.as_str())
        .cloned()
        .unwrap_or_else(|| panic!("{device} not in {devices}"));
    assert_eq!(mine["serial_number"], "1W320010000042");

    // It connects with the issued certificate and its own key.
    let creds = DeviceCreds {
        id: device.clone(),
        cert: dir.path().join("device.pem"),
        key: dir.path().join("device.key"),
        ca: s.pki.ca_path(),
        port: s.port,
    };
    let ts = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
    let published = creds
        .mosquitto_pub(&format!("devices/{device}/sensors/te"))
        .args(["-m", &format!(r#"{{"val":21.5,"ts":{ts}}}"#)])
        .status()
        .await
        .unwrap();
    assert!(published.success());
    let mut seen = false;
    for _ in 0..100 {
        let d = s.h.get("/1/devices").await.ok();
        if d.as_array()
            .unwrap()
            .iter()
            .any(|d| d["id"] == device.as_str() && d["newest_events"]["te"]["val"] == 21.5)
        {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(seen, "the enrolled device's reading reached its owner");

    // The same request again: the code is used up; nothing is issued.
    let (status, body) = curl(&s, dir.path(), &request, "application/json");
    assert_eq!(
        (status, body["code"].as_u64()),
        (403, Some(403001)),
        "{body}"
    );
    let unknown = json!({"claim_code": "AAAAA-BBBBB-CCCCC-DDDDD", "csr": csr, "serial": "x"});
    let (status, _) = curl(&s, dir.path(), &unknown.to_string(), "application/json");
    assert_eq!(status, 403);

    // A bad CSR issues nothing and leaves the code usable.
    let (id2, code2) = claim_code(&s, &token, "1").await;
    let bad = json!({"claim_code": code2, "csr": "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n", "serial": "x"});
    let (status, body) = curl(&s, dir.path(), &bad.to_string(), "application/json");
    assert_eq!(
        (status, body["code"].as_u64()),
        (400, Some(400001)),
        "{body}"
    );
    let (status, _) = curl(&s, dir.path(), &request, "text/plain");
    assert_eq!(status, 400, "wrong content type");
    // Revoked: refused.
    let revoked =
        s.h.send(
            s.h.http
                .post(format!("{}/v1/claim_codes/{id2}/revoke", s.h.base))
                .bearer_auth(&token),
        )
        .await;
    assert_eq!(revoked.status.as_u16(), 200);
    let fresh_csr = key_and_csr(dir.path());
    let again = json!({"claim_code": code2, "csr": fresh_csr, "serial": "y"});
    let (status, _) = curl(&s, dir.path(), &again.to_string(), "application/json");
    assert_eq!(status, 403, "a revoked code");

    // Listed without the codes themselves.
    let listed =
        s.h.send(
            s.h.http
                .get(format!("{}/v1/claim_codes", s.h.base))
                .bearer_auth(&token),
        )
        .await;
    let listed = listed.ok();
    assert_eq!(listed.as_array().unwrap().len(), 2);
    assert!(listed.to_string().find(&code).is_none());
    assert_eq!(listed[1]["uses_left"], 0);

    // Every attempt is audited.
    let audit = outcomes(&s).await;
    for outcome in [
        "issued",
        "code_spent",
        "code_unknown",
        "bad_csr",
        "bad_request",
    ] {
        assert!(audit.iter().any(|o| o == outcome), "{outcome} in {audit:?}");
    }
    assert_eq!(audit.iter().filter(|o| *o == "issued").count(), 1);

    // Attempts from one address are limited (10 a minute by default).
    let mut limited = false;
    for _ in 0..12 {
        let (status, _) = curl(&s, dir.path(), "{}", "application/json");
        if status == 429 {
            limited = true;
            break;
        }
    }
    assert!(limited, "rate limited");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulated_devices_enrol_with_a_claim_code_and_report_to_the_owner_at_once() {
    let s = Stack::start(|_| {}).await;
    let token = s.h.token_with(&["provision"]).await;
    let (_, code) = claim_code(&s, &token, "2").await;
    let dir = tempfile::tempdir().unwrap();
    let addr = s.h.bridge.as_ref().unwrap().provision_addr().unwrap();
    let settings = kumo_sim::Settings {
        nodes: vec![format!("127.0.0.1:{}", s.port)],
        devices: 2,
        meter_fraction: 0.0,
        report_interval_ms: 300,
        progress_interval_ms: 0,
        provisioning: kumo_sim::Provisioning::Claim,
        claim_code: Some(code.clone()),
        provision_addr: format!("localhost:{}", addr.port()),
        device_cert_dir: Some(dir.path().to_path_buf()),
        ..kumo_sim::Settings::default()
    };
    let ca = std::fs::read_to_string(s.pki.ca_path()).unwrap();
    let live = |devices: &Value| {
        devices
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| {
                d["id"].as_str().unwrap().starts_with("dev-")
                    && d["online"] == true
                    && d["newest_events"]["te"]["val"].is_number()
            })
            .map(|d| d["id"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    let mut ids = Vec::new();
    for run in 0..2 {
        // The second run reuses what the devices kept: the code is used up.
        let stop = tokio_util::sync::CancellationToken::new();
        let fleet = tokio::spawn(kumo_sim::run_fleet_with(
            settings.clone(),
            ca.clone(),
            stop.clone(),
            |_| {},
        ));
        let mut seen = Vec::new();
        for _ in 0..300 {
            seen = live(&s.h.get("/1/devices").await.ok());
            if seen.len() == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(seen.len(), 2, "run {run}: both devices report to the owner");
        seen.sort();
        if run == 0 {
            ids = seen;
        } else {
            assert_eq!(seen, ids, "the same identities");
        }
        stop.cancel();
        let summary = fleet.await.unwrap().unwrap();
        assert_eq!(summary.credential_errors, 0, "{summary:?}");
    }
    let issued = outcomes(&s).await.iter().filter(|o| *o == "issued").count();
    assert_eq!(issued, 2, "enrolled once each");
    s.stop().await;
}
