//! A connected device renews its certificate over its live session — with
//! `mosquitto_rr` (MQTT 5 request/response: Response Topic and Correlation
//! Data honoured; and MQTT 3.1.1) and with the simulator — and keeps working:
//! the old certificate stays valid for the grace period, then is revoked; the
//! new one works from the next connect. A device can renew only for itself,
//! receives answers only on its own topics, and a bad CSR issues nothing.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use kumo_certs::files::{CertKind, CertStatus};
use kumo_certs::IssueOptions;
use kumo_contract::DeviceId;
use serde_json::{json, Value};

use crate::stack::{DeviceCreds, Stack};

/// A fresh P-256 key and CSR made by `openssl`, claiming `cn` (ignored).
fn key_and_csr(dir: &Path, name: &str, cn: &str) -> (std::path::PathBuf, String) {
    let (key, csr) = (
        dir.join(format!("{name}.key")),
        dir.join(format!("{name}.csr")),
    );
    let ok = Command::new("openssl")
        .args(["req", "-new", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:P-256", "-nodes", "-subj"])
        .arg(format!("/CN={cn}"))
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&csr)
        .status()
        .expect("openssl")
        .success();
    assert!(ok);
    (key, std::fs::read_to_string(csr).unwrap())
}

/// `mosquitto_rr` as `creds`: publishes `body` on `topic`, waits for one
/// answer on `reply`; prints correlation data, topic and payload.
fn rr(creds: &DeviceCreds, topic: &str, reply: &str, body: &str, extra: &[&str]) -> Option<String> {
    let out = Command::new("mosquitto_rr")
        .args([
            "-h",
            "localhost",
            "-p",
            &creds.port.to_string(),
            "-i",
            &creds.id,
        ])
        .arg("--cafile")
        .arg(&creds.ca)
        .arg("--cert")
        .arg(&creds.cert)
        .arg("--key")
        .arg(&creds.key)
        .args(["-q", "1", "-t", topic, "-e", reply, "-m", body, "-W", "10"])
        .args(["-F", "%D|%t|%p"])
        .args(extra)
        .output()
        .expect("mosquitto_rr (apt-get install mosquitto-clients)");
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !text.is_empty()).then_some(text)
}

/// paho-mqtt (MQTT 5) as `creds`: subscribes to everything under its own
/// `cert/`, publishes `body` as a renewal request naming `response_topic`,
/// and returns the first answer's topic and payload.
fn paho_request(creds: &DeviceCreds, response_topic: &str, body: &str) -> (String, Value) {
    let script = r#"
import json, ssl, sys, threading
import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes
port, cid, ca, cert, key, reply, body = sys.argv[1:8]
got = threading.Event()
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid, protocol=mqtt.MQTTv5)
c.tls_set(ca_certs=ca, certfile=cert, keyfile=key)
def on_connect(c, u, f, rc, p):
    c.subscribe(f"devices/{cid}/cert/response/#", qos=1)
def on_subscribe(c, u, mid, rcs, p):
    props = Properties(PacketTypes.PUBLISH)
    props.ResponseTopic = reply
    props.CorrelationData = b"x"
    c.publish(f"devices/{cid}/cert/request", body, qos=1, properties=props)
def on_message(c, u, m):
    print(json.dumps({"topic": m.topic, "payload": json.loads(m.payload)}))
    got.set()
c.on_connect, c.on_subscribe, c.on_message = on_connect, on_subscribe, on_message
c.connect("localhost", int(port))
c.loop_start()
got.wait(15)
c.loop_stop()
"#;
    let out = Command::new("python3")
        .args(["-c", script, &creds.port.to_string(), &creds.id])
        .arg(&creds.ca)
        .arg(&creds.cert)
        .arg(&creds.key)
        .args([response_topic, body])
        .output()
        .expect("python3 with paho-mqtt");
    let line = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(line.lines().next().unwrap_or("null"))
        .unwrap_or_else(|_| panic!("no answer: {line} {}", String::from_utf8_lossy(&out.stderr)));
    (
        v["topic"].as_str().unwrap().to_string(),
        v["payload"].clone(),
    )
}

/// Splits `%D|%t|%p` output into correlation data, topic and JSON payload.
fn parts(line: &str) -> (String, String, Value) {
    let mut it = line.splitn(3, '|');
    let (d, t, p) = (it.next().unwrap(), it.next().unwrap(), it.next().unwrap());
    (
        d.to_string(),
        t.to_string(),
        serde_json::from_str(p).unwrap(),
    )
}

/// Publishes one reading as `creds` with mosquitto_pub; whether it was accepted.
async fn publish_reading(creds: &DeviceCreds, val: f64) -> bool {
    let ts = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
    creds
        .mosquitto_pub(&format!("devices/{}/sensors/te", creds.id))
        .args(["-m", &format!(r#"{{"val":{val},"ts":{ts}}}"#)])
        .status()
        .await
        .unwrap()
        .success()
}

/// The device's certificate and key copied to `dir`, as the device keeps them.
fn own_copy(issued: &DeviceCreds, dir: &Path) -> DeviceCreds {
    let copy = DeviceCreds {
        cert: dir.join(format!("{}-own.pem", issued.id)),
        key: dir.join(format!("{}-own.key", issued.id)),
        ..issued.clone()
    };
    std::fs::copy(&issued.cert, &copy.cert).unwrap();
    std::fs::copy(&issued.key, &copy.key).unwrap();
    copy
}

fn chain(s: &Stack, id: &str) -> Vec<kumo_certs::files::CertRecord> {
    s.pki
        .list()
        .unwrap()
        .into_iter()
        .filter(|r| r.kind == CertKind::Device && r.name == id)
        .collect()
}

async fn renewal_stack(grace_secs: u64) -> Stack {
    Stack::start(|b| {
        b.certs.validity_secs = 3600;
        b.certs.grace_secs = grace_secs;
        b.certs.min_interval_secs = 0;
        b.certs.revoke_check_secs = 1;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_renews_with_mosquitto_rr_and_the_old_certificate_retires_after_the_grace_period()
{
    let s = renewal_stack(3).await;
    let dir = tempfile::tempdir().unwrap();
    // The device's own copy: the PKI's files will hold the renewed certificate.
    let old = own_copy(&s.device("remo-rr").await, dir.path());
    let (new_key, csr) = key_and_csr(dir.path(), "new", "someone-else");
    let body = json!({"id": "r-1", "csr": csr}).to_string();

    // MQTT 5: the answer comes on the Response Topic the device named, with
    // its Correlation Data.
    let line = rr(
        &old,
        "devices/remo-rr/cert/request",
        "devices/remo-rr/cert/response/7",
        &body,
        &["-D", "publish", "correlation-data", "corr-42"],
    )
    .expect("an answer");
    let (corr, topic, answer) = parts(&line);
    assert_eq!(corr, "corr-42");
    assert_eq!(topic, "devices/remo-rr/cert/response/7");
    assert_eq!(answer["result"], "ok", "{answer}");
    assert_eq!(answer["id"], "r-1");
    let cert = answer["certificate"].as_str().unwrap();
    assert!(answer["ca"].as_str().unwrap().contains("BEGIN CERTIFICATE"));
    for field in ["not_after", "renew_at", "old_revoked_at"] {
        assert!(answer[field].is_string(), "{field} in {answer}");
    }
    // The identity is the session's, whatever the CSR said.
    let der = kumo_certs::pem_to_der(cert).unwrap();
    assert_eq!(
        kumo_certs::identity_from_der(&der).unwrap(),
        kumo_contract::Identity::Device {
            id: DeviceId::parse("remo-rr").unwrap()
        }
    );
    let new_cert = dir.path().join("new.pem");
    std::fs::write(&new_cert, cert).unwrap();
    let new = DeviceCreds {
        cert: new_cert,
        key: new_key,
        ..old.clone()
    };

    // The chain old → new; both work during the grace period.
    let records = chain(&s, "remo-rr");
    assert_eq!(records.len(), 2);
    assert!(!records[0].current && records[1].current);
    assert!(records[0].revoke_at.is_some());
    assert!(
        publish_reading(&old, 20.0).await,
        "old certificate in grace"
    );
    assert!(publish_reading(&new, 21.0).await, "new certificate");

    // After the grace period the old one is revoked and refused.
    let mut refused = false;
    for _ in 0..100 {
        if chain(&s, "remo-rr")[0].status == CertStatus::Revoked
            && !publish_reading(&old, 22.0).await
        {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        refused,
        "the old certificate was revoked after the grace period"
    );
    assert!(publish_reading(&new, 23.0).await, "the new one still works");

    // MQTT 3.1.1: the answer on the default response topic, matched by id.
    let (_, csr) = key_and_csr(dir.path(), "again", "x");
    let body = json!({"id": "r-2", "csr": csr}).to_string();
    let line = rr(
        &new,
        "devices/remo-rr/cert/request",
        "devices/remo-rr/cert/response",
        &body,
        &["-V", "mqttv311"],
    )
    .expect("an answer over 3.1.1");
    let (_, topic, answer) = parts(&line);
    assert_eq!(topic, "devices/remo-rr/cert/response");
    assert_eq!(
        (answer["result"].as_str(), answer["id"].as_str()),
        (Some("ok"), Some("r-2"))
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_cannot_renew_for_another_device_or_send_answers_to_it_and_a_bad_csr_issues_nothing(
) {
    let s = renewal_stack(3600).await;
    let dir = tempfile::tempdir().unwrap();
    // The device's own copy: a renewal rewrites the PKI's files.
    let a = own_copy(&s.device("remo-a").await, dir.path());
    let b = s.device("remo-b").await;
    let (_, csr) = key_and_csr(dir.path(), "k", "remo-b");

    // Publishing on another device's request topic is refused by the node.
    let body = json!({"id": "steal", "csr": csr}).to_string();
    let stolen = rr(
        &a,
        "devices/remo-b/cert/request",
        "devices/remo-a/cert/response",
        &body,
        &["-W", "3"],
    );
    assert!(stolen.is_none(), "{stolen:?}");
    // Naming another device's response topic (paho, MQTT 5): refused, and
    // answered on the device's own default topic only.
    let (topic, answer) = paho_request(&a, "devices/remo-b/cert/response", &body);
    assert_eq!(topic, "devices/remo-a/cert/response");
    assert_eq!(answer["result"], "failed", "{answer}");
    assert!(
        answer["reason"]
            .as_str()
            .unwrap()
            .contains("response topic"),
        "{answer}"
    );
    // A CSR naming remo-b still certifies remo-a.
    let line = rr(
        &a,
        "devices/remo-a/cert/request",
        "devices/remo-a/cert/response",
        &body,
        &[],
    )
    .expect("an answer");
    let cert = parts(&line).2["certificate"].as_str().unwrap().to_string();
    let der = kumo_certs::pem_to_der(&cert).unwrap();
    assert_eq!(
        kumo_certs::identity_from_der(&der).unwrap().client_id(),
        "remo-a"
    );
    assert_eq!(chain(&s, "remo-b").len(), 1, "nothing issued to remo-b");
    // remo-b cannot subscribe to remo-a's answers.
    let sub = Command::new("mosquitto_sub")
        .args(["-h", "localhost", "-p", &b.port.to_string(), "-i", &b.id])
        .arg("--cafile")
        .arg(&b.ca)
        .arg("--cert")
        .arg(&b.cert)
        .arg("--key")
        .arg(&b.key)
        .args(["-t", "devices/remo-a/cert/response", "-W", "2", "-C", "1"])
        .output()
        .unwrap();
    assert!(!sub.status.success() || sub.stdout.is_empty());

    // A bad CSR: a clear failure, nothing issued.
    let before = chain(&s, "remo-a").len();
    let bad = json!({"id": "bad", "csr": "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"});
    let line = rr(
        &a,
        "devices/remo-a/cert/request",
        "devices/remo-a/cert/response",
        &bad.to_string(),
        &[],
    )
    .expect("an answer");
    let (_, _, answer) = parts(&line);
    assert_eq!(answer["result"], "failed", "{answer}");
    assert!(
        answer["reason"].as_str().unwrap().contains("CSR"),
        "{answer}"
    );
    assert!(answer.get("certificate").is_none());
    // Not JSON at all: refused the same way.
    let line = rr(
        &a,
        "devices/remo-a/cert/request",
        "devices/remo-a/cert/response",
        "not json",
        &[],
    )
    .expect("an answer");
    assert_eq!(parts(&line).2["result"], "failed");
    assert_eq!(chain(&s, "remo-a").len(), before, "nothing issued");

    // Every attempt is audited.
    let outcomes: Vec<String> =
        s.h.client()
            .await
            .query(
                "SELECT outcome FROM provisioning_attempts WHERE device_id = 'remo-a'",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
    assert!(
        outcomes.iter().any(|o| o == "renew_bad_csr"),
        "{outcomes:?}"
    );
    assert!(
        outcomes.iter().any(|o| o == "renew_bad_request"),
        "{outcomes:?}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulator_renews_before_its_certificate_expires_and_keeps_reporting() {
    let s = renewal_stack(2).await;
    let id = DeviceId::parse("sim-000000").unwrap();
    s.h.add_device(id.as_str(), kumo_bridge::DeviceKind::Remo)
        .await;
    // A certificate that expires in 20 s: the device renews at half of it.
    let dir = tempfile::tempdir().unwrap();
    let now = time::OffsetDateTime::now_utc();
    let opts = IssueOptions {
        not_before: Some(now - time::Duration::seconds(2)),
        not_after: Some(now + time::Duration::seconds(20)),
        ..IssueOptions::default()
    };
    let short = s.pki.ca().issue_device(&id, &opts).unwrap();
    std::fs::write(dir.path().join(format!("{id}.crt")), &short.cert_pem).unwrap();
    std::fs::write(dir.path().join(format!("{id}.key")), &short.key_pem).unwrap();
    let settings = kumo_sim::Settings {
        nodes: vec![format!("127.0.0.1:{}", s.port)],
        devices: 1,
        meter_fraction: 0.0,
        report_interval_ms: 300,
        progress_interval_ms: 200,
        device_cert_dir: Some(dir.path().to_path_buf()),
        renew_at_percent: 50,
        renew_retry_ms: 2_000,
        ..kumo_sim::Settings::default()
    };
    let ca = std::fs::read_to_string(s.pki.ca_path()).unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let (tx, mut rx) = tokio::sync::watch::channel(kumo_sim::Summary::default());
    let fleet = tokio::spawn(kumo_sim::run_fleet_with(
        settings,
        ca,
        stop.clone(),
        move |p| {
            let _ = tx.send(p.clone());
        },
    ));

    // It renews (about 9 s in) and writes the new pair where it keeps its own.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    while rx.borrow().renewals == 0 {
        assert!(tokio::time::Instant::now() < deadline, "never renewed");
        tokio::time::timeout(Duration::from_secs(1), rx.changed())
            .await
            .ok();
    }
    let saved = std::fs::read_to_string(dir.path().join(format!("{id}.crt"))).unwrap();
    assert_ne!(saved, short.cert_pem);
    let records = chain(&s, id.as_str());
    assert_eq!(
        records.last().unwrap().serial.as_str(),
        kumo_certs::serial_of_der(&kumo_certs::pem_to_der(&saved).unwrap()).unwrap()
    );

    // Past the old certificate's expiry it is still online and reporting.
    tokio::time::sleep_until(
        tokio::time::Instant::now()
            + (short.not_after - time::OffsetDateTime::now_utc())
                .try_into()
                .unwrap_or_default()
            + Duration::from_secs(1),
    )
    .await;
    let seen_at = |d: &Value| {
        d["newest_events"]["te"]["created_at"]
            .as_str()
            .map(str::to_string)
    };
    let before = s.h.get("/1/devices").await.ok();
    let before = before
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == id.as_str())
        .and_then(seen_at);
    let mut fresh = false;
    for _ in 0..60 {
        let devices = s.h.get("/1/devices").await.ok();
        let d = devices
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["id"] == id.as_str())
            .cloned()
            .unwrap();
        if d["online"] == true && seen_at(&d).is_some() && seen_at(&d) != before {
            fresh = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(fresh, "readings go on after the first certificate expired");
    let summary = rx.borrow().clone();
    assert_eq!(summary.renewals_failed, 0, "{summary:?}");
    assert_eq!(summary.drops, 0, "no connection was lost: {summary:?}");
    stop.cancel();
    fleet.await.unwrap().unwrap();
    s.stop().await;
}
