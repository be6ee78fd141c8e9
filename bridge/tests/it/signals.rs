//! Signals: create with an IR message, list, update, delete, reorder, send;
//! sending writes a durable command that stays queued without a delivery path.
#![allow(clippy::unwrap_used)]

use crate::common::*;
use kumo_bridge::DeviceKind;
use serde_json::json;

const MESSAGE: &str = r#"{"format":"us","freq":38,"data":[3400,1700,450,450,450,1300]}"#;

async fn with_ir_appliance() -> (Harness, String) {
    let h = start().await;
    h.add_device("remo-1", DeviceKind::Remo).await;
    let ir = h
        .post(
            "/1/appliances",
            &[("nickname", "fan"), ("image", "ico"), ("device", "remo-1")],
        )
        .await
        .ok();
    let id = ir["id"].as_str().unwrap().to_string();
    (h, id)
}

async fn add_signal(h: &Harness, appliance: &str, name: &str) -> String {
    let s = h
        .post(
            &format!("/1/appliances/{appliance}/signals"),
            &[("name", name), ("image", "ico_on"), ("message", MESSAGE)],
        )
        .await
        .ok();
    assert_eq!(s["name"], name);
    assert_eq!(s["image"], "ico_on");
    assert_eq!(s.as_object().unwrap().len(), 3, "Signal is id, name, image");
    s["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn signals_are_created_listed_updated_and_deleted() {
    let (h, app) = with_ir_appliance().await;
    let on = add_signal(&h, &app, "on").await;
    let off = add_signal(&h, &app, "off").await;
    let list = h.get(&format!("/1/appliances/{app}/signals")).await.ok();
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert_eq!(list[0]["id"], on.as_str());
    let appliances = h.get("/1/appliances").await.ok();
    assert_eq!(appliances[0]["signals"], list);

    let s = h
        .post(
            &format!("/1/signals/{on}"),
            &[("name", "power on"), ("image", "ico_p")],
        )
        .await
        .ok();
    assert_eq!(s, json!({"id": on, "name": "power on", "image": "ico_p"}));
    h.post(&format!("/1/signals/{on}"), &[("name", "")])
        .await
        .assert_error(400001);
    h.post("/1/signals/nope", &[("name", "x")])
        .await
        .assert_error(404001);

    assert_eq!(
        h.post(&format!("/1/signals/{off}/delete"), &[]).await.ok(),
        json!({})
    );
    h.post(&format!("/1/signals/{off}/delete"), &[])
        .await
        .assert_error(404001);
    assert_eq!(
        h.get(&format!("/1/appliances/{app}/signals"))
            .await
            .ok()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    h.stop().await;
}

#[tokio::test]
async fn a_signal_needs_a_valid_ir_message() {
    let (h, app) = with_ir_appliance().await;
    let path = format!("/1/appliances/{app}/signals");
    for bad in [
        "not json",
        r#"{"format":"us","freq":38,"data":[]}"#,
        r#"{"format":"us","freq":38,"data":[100,-5]}"#,
        r#"{"format":"us","freq":5,"data":[100]}"#,
        r#"{"format":"raw","freq":38,"data":[100]}"#,
        r#"{"format":"us","data":[100]}"#,
    ] {
        let r = h
            .post(&path, &[("name", "x"), ("image", "i"), ("message", bad)])
            .await;
        r.assert_error(400001);
    }
    h.post(&path, &[("name", "x"), ("image", "i")])
        .await
        .assert_error(400001);
    h.post(&path, &[("image", "i"), ("message", MESSAGE)])
        .await
        .assert_error(400001);
    h.post(
        "/1/appliances/nope/signals",
        &[("name", "x"), ("message", MESSAGE)],
    )
    .await
    .assert_error(404001);
    h.get("/1/appliances/nope/signals")
        .await
        .assert_error(404001);
    h.stop().await;
}

#[tokio::test]
async fn reordering_signals_needs_every_id_once() {
    let (h, app) = with_ir_appliance().await;
    let a = add_signal(&h, &app, "a").await;
    let b = add_signal(&h, &app, "b").await;
    let path = format!("/1/appliances/{app}/signal_orders");
    assert_eq!(
        h.post(&path, &[("signals", &format!("{b},{a}"))])
            .await
            .ok(),
        json!({})
    );
    let list = h.get(&format!("/1/appliances/{app}/signals")).await.ok();
    assert_eq!(list[0]["id"], b.as_str());
    h.post(&path, &[("signals", &a)]).await.assert_error(400001);
    h.post(&path, &[("signals", &format!("{a},{b},{a}"))])
        .await
        .assert_error(400001);
    h.post(&path, &[]).await.assert_error(400001);
    h.stop().await;
}

#[tokio::test]
async fn sending_a_signal_queues_a_durable_command_that_stays_queued() {
    let (h, app) = with_ir_appliance().await;
    let sig = add_signal(&h, &app, "on").await;
    let r = h.post(&format!("/1/signals/{sig}/send"), &[]).await;
    let command = r.headers["x-kumo-command-id"].to_str().unwrap().to_string();
    assert_eq!(r.ok(), json!({}));
    let c = h.get(&format!("/v1/commands/{command}")).await.ok();
    assert_eq!(c["status"], "queued");
    assert_eq!(c["device"], "remo-1");
    assert_eq!(c["kind"], "ir");
    assert_eq!(c["payload"]["message"]["freq"], 38);
    assert!(c["expires_at"].as_str().unwrap() > c["created_at"].as_str().unwrap());
    let (_, bob) = h.other_user().await;
    h.get_as(&bob, &format!("/v1/commands/{command}"))
        .await
        .assert_error(404001);
    h.post_as(&bob, &format!("/1/signals/{sig}/send"), &[])
        .await
        .assert_error(404001);
    h.post("/1/signals/nope/send", &[])
        .await
        .assert_error(404001);
    h.get("/v1/commands/not-a-uuid").await.assert_error(404001);
    h.stop().await;
}

#[tokio::test]
async fn a_repeated_idempotency_key_creates_one_command() {
    let (h, app) = with_ir_appliance().await;
    let sig = add_signal(&h, &app, "on").await;
    let other = add_signal(&h, &app, "off").await;
    let send = |s: String| {
        h.send(
            h.http
                .post(format!("{}/1/signals/{s}/send", h.base))
                .bearer_auth(&h.token)
                .header("idempotency-key", "press-1"),
        )
    };
    let first = send(sig.clone()).await;
    let second = send(sig.clone()).await;
    assert_eq!(
        first.headers["x-kumo-command-id"],
        second.headers["x-kumo-command-id"]
    );
    assert_eq!(h.command_count().await, 1);
    send(other).await.assert_error(409001);
    h.stop().await;
}

#[tokio::test]
async fn undelivered_commands_expire_after_their_ttl() {
    let mut settings = test_settings();
    settings.command_ttl_secs = 1;
    let h = start_with(settings).await;
    h.add_device("remo-1", DeviceKind::Remo).await;
    let ir = h
        .post(
            "/1/appliances",
            &[("nickname", "fan"), ("image", "ico"), ("device", "remo-1")],
        )
        .await
        .ok();
    let sig = add_signal(&h, ir["id"].as_str().unwrap(), "on").await;
    let r = h.post(&format!("/1/signals/{sig}/send"), &[]).await;
    let command = r.headers["x-kumo-command-id"].to_str().unwrap().to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let c = h.get(&format!("/v1/commands/{command}")).await.ok();
        if c["status"] == "expired" {
            assert!(c["completed_at"].is_string());
            break;
        }
        assert_eq!(c["status"], "queued");
        assert!(
            std::time::Instant::now() < deadline,
            "command never expired"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    h.stop().await;
}
