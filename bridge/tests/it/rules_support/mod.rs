//! Helpers shared by the `/v1/rules` tests: JSON requests, rule documents,
//! execution polling, and feeding readings into the bridge.
#![allow(dead_code, clippy::unwrap_used)]

use std::process::Stdio;
use std::time::Duration;

use kumo_bridge::live::LiveEvent;
use reqwest::Method;
use serde_json::{json, Value};
use time::OffsetDateTime;
use tokio::io::AsyncWriteExt;

use crate::common::{Harness, Reply};
use crate::stack::DeviceCreds;

pub const SEC: Duration = Duration::from_secs(1);

pub async fn send_json(
    h: &Harness,
    method: Method,
    path: &str,
    token: &str,
    body: &Value,
) -> Reply {
    h.send(
        h.http
            .request(method, format!("{}{path}", h.base))
            .bearer_auth(token)
            .json(body),
    )
    .await
}

pub async fn create(h: &Harness, rule: &Value) -> Reply {
    send_json(h, Method::POST, "/v1/rules", &h.token, rule).await
}

pub async fn create_ok(h: &Harness, rule: &Value) -> String {
    create(h, rule).await.ok()["id"]
        .as_str()
        .unwrap()
        .to_string()
}

pub async fn patch(h: &Harness, id: &str, body: Value) -> Value {
    send_json(
        h,
        Method::PATCH,
        &format!("/v1/rules/{id}"),
        &h.token,
        &body,
    )
    .await
    .ok()
}

pub fn threshold(device: &str, value: f64, actions: Value) -> Value {
    json!({
        "name": format!("{device} above {value}"),
        "trigger": {"threshold": {"device": device, "sensor": "te", "op": "above",
                                  "value": value, "hysteresis": 0.5}},
        "actions": actions,
    })
}

pub fn event_action() -> Value {
    json!([{"event": {"name": "hot", "data": {"room": "bedroom"}}}])
}

pub async fn executions(h: &Harness, rule: &str) -> Vec<Value> {
    h.get(&format!("/v1/rules/{rule}/executions"))
        .await
        .ok()
        .as_array()
        .unwrap()
        .clone()
}

/// Polls until `rule` has logged `n` executions; returns them, newest first.
pub async fn wait_executions(h: &Harness, rule: &str, n: usize) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + 10 * SEC;
    loop {
        let got = executions(h, rule).await;
        if got.len() >= n {
            return got;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "rule {rule} logged {} executions, expected {n}",
            got.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Margin for a firing that must not happen to have shown up if it did.
pub async fn settle() {
    tokio::time::sleep(Duration::from_millis(400)).await;
}

/// Feeds a reading into the bridge's live stream, as the MQTT side does.
pub fn inject(h: &Harness, device: &str, val: f64) {
    h.bridge
        .as_ref()
        .unwrap()
        .commands()
        .live()
        .publish(LiveEvent::Reading {
            device: crate::common::dev(device),
            sensor: "te",
            val,
            at: OffsetDateTime::now_utc(),
        });
}

/// Publishes each body as a QoS 1 message on one mosquitto_pub connection, in order.
pub async fn publish_all(c: &DeviceCreds, topic: &str, bodies: &[String]) {
    let mut child = c
        .mosquitto_pub(topic)
        .arg("-l")
        .stdin(Stdio::piped())
        .spawn()
        .expect("mosquitto_pub (apt-get install mosquitto-clients) is required");
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all((bodies.join("\n") + "\n").as_bytes())
        .await
        .unwrap();
    drop(stdin);
    assert!(child.wait().await.unwrap().success());
}

pub fn readings(vals: &[f64]) -> Vec<String> {
    vals.iter()
        .map(|v| json!({ "val": v }).to_string())
        .collect()
}
