//! Real MQTT peers (mosquitto clients, paho-mqtt) and raw packet builders.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::Path;
use std::process::{Child, Command, Stdio};

use bytes::{BufMut, BytesMut};

use super::{Creds, TestNode};

/// A QoS 1 PUBLISH, hand-encoded (rumqttd keeps QoS private).
pub fn encode_qos1_publish(
    out: &mut BytesMut,
    version: u8,
    topic: &str,
    payload: &[u8],
    pkid: u16,
) {
    let props = if version == 5 { 1 } else { 0 };
    let len = 2 + topic.len() + 2 + props + payload.len();
    out.put_u8(0x32);
    rumqttd::protocol::v4::write_remaining_length(out, len).unwrap();
    out.put_u16(topic.len() as u16);
    out.extend_from_slice(topic.as_bytes());
    out.put_u16(pkid);
    if version == 5 {
        out.put_u8(0);
    }
    out.extend_from_slice(payload);
}

fn require(bin: &str) {
    let ok = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {bin}"))
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "{bin} is required for this test (apt-get install mosquitto-clients / pip install paho-mqtt)");
}

fn tls_args(node: &TestNode, creds: &Creds) -> Vec<String> {
    vec![
        "-h".into(),
        "localhost".into(),
        "-p".into(),
        node.addr.port().to_string(),
        "--cafile".into(),
        node.pki.ca_path.display().to_string(),
        "--cert".into(),
        creds.cert.display().to_string(),
        "--key".into(),
        creds.key.display().to_string(),
    ]
}

/// Publishes one message with mosquitto_pub; whether it succeeded. Async: a
/// QoS 1 publish's PUBACK may wait for the test's own service session to
/// acknowledge the copy.
pub async fn mosquitto_pub(
    node: &TestNode,
    creds: &Creds,
    id: &str,
    version: &str,
    topic: &str,
    msg: &str,
    qos: u8,
) -> bool {
    require("mosquitto_pub");
    let out = tokio::process::Command::new("mosquitto_pub")
        .args(tls_args(node, creds))
        .args([
            "-V",
            version,
            "-i",
            id,
            "-t",
            topic,
            "-m",
            msg,
            "-q",
            &qos.to_string(),
        ])
        .output()
        .await
        .unwrap();
    if !out.status.success() {
        eprintln!("mosquitto_pub: {}", String::from_utf8_lossy(&out.stderr));
    }
    out.status.success()
}

/// Starts mosquitto_sub printing `topic payload` lines; extra args appended.
pub fn mosquitto_sub(
    node: &TestNode,
    creds: &Creds,
    id: &str,
    version: &str,
    topic: &str,
    extra: &[&str],
) -> Child {
    require("mosquitto_sub");
    Command::new("mosquitto_sub")
        .args(tls_args(node, creds))
        .args(["-V", version, "-i", id, "-t", topic, "-v", "-q", "1"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Runs a paho-mqtt script with NODE_PORT, CA, CERT, KEY in its environment.
pub fn paho(node: &TestNode, creds: &Creds, script: &str, args: &[&str]) -> Child {
    require("python3");
    let ok = Command::new("python3")
        .args(["-c", "import paho.mqtt.client"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "paho-mqtt is required (pip install paho-mqtt)");
    Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .env("NODE_PORT", node.addr.port().to_string())
        .env("CA", &node.pki.ca_path)
        .env("CERT", &creds.cert)
        .env("KEY", &creds.key)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Reads lines from a child's stdout on a thread; returns a receiver of lines.
pub fn lines(child: &mut Child) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead;
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

pub fn path_str(p: &Path) -> String {
    p.display().to_string()
}
