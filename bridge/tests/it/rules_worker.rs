//! The rules worker end to end: rules fire once per crossing of real device
//! readings (MQTT), their commands reach real devices, every execution is
//! logged with what each action did, disabled and deleted rules stop firing,
//! schedules follow their time zone, webhook actions are posted.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use crate::rules_support::*;
use crate::stack::Stack;
use kumo_bridge::DeviceKind;
use serde_json::{json, Value};
use time::OffsetDateTime;
use tokio::io::AsyncWriteExt;

#[tokio::test]
async fn a_threshold_rule_fires_once_per_crossing_of_real_device_readings() {
    let s = Stack::start(|_| {}).await;
    let creds = s.device("remo-1").await;
    let id = create_ok(&s.h, &threshold("remo-1", 28.0, event_action())).await;
    let topic = "devices/remo-1/sensors/te";
    // Below, cross (fires), hold twice, back inside the hysteresis band, hold.
    publish_all(&creds, topic, &readings(&[25.0, 29.0, 30.0, 27.8, 31.0])).await;
    let first = wait_executions(&s.h, &id, 1).await;
    assert_eq!(first[0]["cause"]["val"], 29.0);
    assert_eq!(first[0]["outcome"], "ok");
    assert_eq!(first[0]["actions"][0]["kind"], "event");
    assert!(first[0]["actions"][0]["event_id"].is_u64());
    // Cleared past the band, then crossed again: fires once more.
    publish_all(&creds, topic, &readings(&[27.0, 29.5, 32.0])).await;
    wait_executions(&s.h, &id, 2).await;
    settle().await;
    let all = executions(&s.h, &id).await;
    let vals: Vec<f64> = all
        .iter()
        .map(|e| e["cause"]["val"].as_f64().unwrap())
        .collect();
    assert_eq!(vals, [29.5, 29.0], "newest first, one per crossing");
    assert_eq!(
        s.h.get(&format!("/v1/rules/{id}/executions?limit=1"))
            .await
            .ok()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    s.stop().await;
}

#[tokio::test]
async fn a_rule_command_reaches_a_real_device_and_its_execution_logs_the_command() {
    let s = Stack::start(|_| {}).await;
    let hub = s.device("remo-1").await;
    let sensor = s.device("remo-2").await;
    let ac = s.h.add_appliance("remo-1", "kumo-ac-generic", "AC").await;
    let mut dev = hub.connect(&[]).await;
    let params = json!({"operation_mode": "cool", "temperature": "24"});
    let actions =
        json!([{"command": {"appliance": ac, "kind": "aircon_settings", "params": params}}]);
    let id = create_ok(&s.h, &threshold("remo-2", 28.0, actions)).await;

    publish_all(&sensor, "devices/remo-2/sensors/te", &readings(&[30.0])).await;
    let cmd = dev
        .next_command(10 * SEC)
        .await
        .expect("the device got the command");
    assert_eq!(cmd["type"], "aircon");
    let exec = wait_executions(&s.h, &id, 1).await;
    assert_eq!(exec[0]["outcome"], "ok");
    let command_id = exec[0]["actions"][0]["command_id"].as_str().unwrap();
    assert_eq!(cmd["id"], command_id);
    s.wait_status(command_id.parse().unwrap(), "acked", 5 * SEC)
        .await;
    let view = s.h.get(&format!("/v1/commands/{command_id}")).await.ok();
    assert_eq!(view["payload"]["settings"]["temp"], "24");
    assert_eq!(view["payload"]["settings"]["mode"], "cool");
    dev.disconnect().await;
    s.stop().await;
}

#[tokio::test]
async fn disabled_and_deleted_rules_stop_firing_and_a_reenabled_rule_fires_again() {
    let h = crate::common::start().await;
    h.add_device("remo-1", DeviceKind::Remo).await;
    let ac = h.add_appliance("remo-1", "kumo-ac-generic", "AC").await;
    let sentinel = create_ok(&h, &threshold("remo-1", 28.0, event_action())).await;
    let paused = create_ok(&h, &threshold("remo-1", 28.0, event_action())).await;
    let power_off = json!([{"command": {"appliance": ac, "kind": "aircon_settings",
                                        "params": {"button": "power-off"}}}]);
    let deleted = create_ok(&h, &threshold("remo-1", 28.0, power_off)).await;

    inject(&h, "remo-1", 29.0);
    wait_executions(&h, &sentinel, 1).await;
    wait_executions(&h, &paused, 1).await;
    wait_executions(&h, &deleted, 1).await;
    assert_eq!(h.command_count().await, 1);

    patch(&h, &paused, json!({"enabled": false})).await;
    let del = h.send(
        h.http
            .delete(format!("{}/v1/rules/{deleted}", h.base))
            .bearer_auth(&h.token),
    );
    del.await.ok();
    inject(&h, "remo-1", 20.0);
    inject(&h, "remo-1", 29.0);
    wait_executions(&h, &sentinel, 2).await;
    settle().await;
    assert_eq!(
        executions(&h, &paused).await.len(),
        1,
        "a disabled rule does not fire"
    );
    assert_eq!(h.command_count().await, 1, "a deleted rule does not fire");

    patch(&h, &paused, json!({"enabled": true})).await;
    inject(&h, "remo-1", 20.0);
    inject(&h, "remo-1", 29.0);
    wait_executions(&h, &paused, 2).await;
    h.stop().await;
}

#[tokio::test]
async fn a_schedule_rule_fires_at_its_minute_in_its_own_time_zone() {
    let h = crate::common::start().await;
    // Close to the end of a minute the next tick may already be in the next one.
    let second = OffsetDateTime::now_utc().second();
    if second >= 55 {
        tokio::time::sleep(Duration::from_secs(u64::from(61 - second))).await;
    }
    let now = OffsetDateTime::now_utc();
    let tokyo = now.to_offset(time::macros::offset!(+9));
    let at = format!("{:02}:{:02}", tokyo.hour(), tokyo.minute());
    let schedule = |zone: &str| {
        json!({"name": format!("at {at} in {zone}"),
               "trigger": {"schedule": {"at": at, "time_zone": zone}},
               "actions": event_action()})
    };
    let in_tokyo = create_ok(&h, &schedule("Asia/Tokyo")).await;
    let in_new_york = create_ok(&h, &schedule("America/New_York")).await;
    let exec = wait_executions(&h, &in_tokyo, 1).await;
    let minute = now
        .replace_second(0)
        .unwrap()
        .replace_nanosecond(0)
        .unwrap();
    let expected = minute
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    assert_eq!(exec[0]["cause"]["type"], "schedule");
    assert_eq!(exec[0]["cause"]["scheduled_for"], expected.as_str());
    settle().await;
    assert!(
        executions(&h, &in_new_york).await.is_empty(),
        "{at} in New York is hours away"
    );
    assert_eq!(
        executions(&h, &in_tokyo).await.len(),
        1,
        "once per occurrence"
    );
    h.stop().await;
}

#[tokio::test]
async fn a_failing_action_does_not_stop_the_others_and_the_execution_is_partial() {
    // Default settings refuse private webhook targets.
    let h = crate::common::start().await;
    h.add_device("remo-1", DeviceKind::Remo).await;
    let actions = json!([
        {"webhook": {"url": "http://127.0.0.1:9/hook"}},
        {"event": {"name": "still-runs"}}
    ]);
    let id = create_ok(&h, &threshold("remo-1", 28.0, actions)).await;
    inject(&h, "remo-1", 29.0);
    let exec = wait_executions(&h, &id, 1).await;
    assert_eq!(exec[0]["outcome"], "partial");
    let (webhook, event) = (&exec[0]["actions"][0], &exec[0]["actions"][1]);
    assert_eq!(webhook["kind"], "webhook");
    assert!(webhook["error"].as_str().is_some_and(|e| !e.is_empty()));
    assert!(webhook.get("delivery_id").is_none());
    assert_eq!(event["kind"], "event");
    assert!(event["event_id"].is_u64() && event.get("error").is_none());
    h.stop().await;
}

/// Accepts one HTTP request and answers 200; returns its body.
async fn receive_one(listener: tokio::net::TcpListener) -> Value {
    use tokio::io::AsyncReadExt;
    let (mut conn, _) = listener.accept().await.unwrap();
    let mut buf = Vec::new();
    loop {
        let mut chunk = [0u8; 4096];
        let n = conn.read(&mut chunk).await.unwrap();
        assert!(n > 0, "request ended early");
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).to_string();
        let Some((head, body)) = text.split_once("\r\n\r\n") else {
            continue;
        };
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().unwrap())
            })
            .unwrap_or(0);
        if body.len() >= length {
            conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                .await
                .unwrap();
            return serde_json::from_str(body).unwrap();
        }
    }
}

#[tokio::test]
async fn a_webhook_action_posts_the_firing_to_its_url() {
    let mut settings = crate::common::test_settings();
    settings.webhooks.allow_private_targets = true;
    settings.webhooks.poll_ms = 100;
    let h = crate::common::start_with(settings).await;
    h.add_device("remo-1", DeviceKind::Remo).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let received = tokio::spawn(receive_one(listener));
    let actions = json!([{"webhook": {"url": url, "data": {"room": "bedroom"}}}]);
    let id = create_ok(&h, &threshold("remo-1", 28.0, actions)).await;
    inject(&h, "remo-1", 29.0);
    let body = tokio::time::timeout(10 * SEC, received)
        .await
        .expect("the webhook was posted")
        .unwrap();
    let exec = wait_executions(&h, &id, 1).await;
    assert_eq!(exec[0]["outcome"], "ok");
    assert_eq!(body["id"], exec[0]["actions"][0]["delivery_id"]);
    assert_eq!(body["rule_id"], id.as_str());
    assert_eq!(body["data"], json!({"room": "bedroom"}));
    assert_eq!(body["event"]["cause"]["val"], 29.0);
    h.stop().await;
}

#[tokio::test]
async fn enabled_rules_are_loaded_again_when_the_bridge_restarts() {
    let mut s = Stack::start(|_| {}).await;
    s.h.add_device("remo-1", DeviceKind::Remo).await;
    let enabled = create_ok(&s.h, &threshold("remo-1", 28.0, event_action())).await;
    let disabled = create_ok(&s.h, &threshold("remo-1", 28.0, event_action())).await;
    patch(&s.h, &disabled, json!({"enabled": false})).await;
    s.restart_bridge().await;
    inject(&s.h, "remo-1", 29.0);
    wait_executions(&s.h, &enabled, 1).await;
    settle().await;
    assert!(executions(&s.h, &disabled).await.is_empty());
    s.stop().await;
}

#[tokio::test]
async fn a_rule_that_fired_does_not_fire_again_after_a_bridge_restart_while_its_condition_holds() {
    let mut s = Stack::start(|_| {}).await;
    s.h.add_device("remo-1", DeviceKind::Remo).await;
    let id = create_ok(&s.h, &threshold("remo-1", 28.0, event_action())).await;
    inject(&s.h, "remo-1", 29.0);
    wait_executions(&s.h, &id, 1).await;
    // Saved within a few seconds, without waiting for a shutdown.
    let saved = "SELECT state FROM rule_trigger_state WHERE rule_id = $1";
    let mut state = None;
    for _ in 0..100 {
        let client = s.h.client().await;
        if let Some(row) = client.query_opt(saved, &[&id]).await.unwrap() {
            state = Some(row.get::<_, Value>(0));
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        state,
        Some(json!({"kind": "level", "armed": false, "since": null}))
    );
    s.restart_bridge().await;
    inject(&s.h, "remo-1", 30.0);
    settle().await;
    assert_eq!(
        executions(&s.h, &id).await.len(),
        1,
        "the same crossing, across the restart"
    );
    // Cleared and crossed again: a new occurrence.
    inject(&s.h, "remo-1", 20.0);
    inject(&s.h, "remo-1", 29.0);
    wait_executions(&s.h, &id, 2).await;
    // Editing the rule starts it fresh: the saved state belonged to the old version.
    patch(&s.h, &id, json!({"name": "hot again"})).await;
    s.restart_bridge().await;
    inject(&s.h, "remo-1", 29.5);
    wait_executions(&s.h, &id, 3).await;
    s.stop().await;
}

#[tokio::test]
async fn a_rule_on_a_device_that_left_the_account_records_nothing_of_the_new_owners_data() {
    let s = Stack::start(|_| {}).await;
    s.h.add_device("remo-1", DeviceKind::Remo).await;
    let id = create_ok(&s.h, &threshold("remo-1", 28.0, event_action())).await;
    let (bob, _) = s.h.other_user().await;
    s.h.give_device("remo-1", &bob).await;
    // Bob's device crosses Alice's threshold.
    inject(&s.h, "remo-1", 31.0);
    settle().await;
    settle().await;
    assert!(
        executions(&s.h, &id).await.is_empty(),
        "Alice's rule log must not learn Bob's reading"
    );
    s.stop().await;
}
