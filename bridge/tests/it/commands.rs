//! The command lifecycle as the delivery side drives it: sent, acked or
//! failed, confirmed state, guarded transitions, and `Prefer: wait=N`.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use crate::common::*;
use kumo_bridge::commands::CommandStatus;
use kumo_bridge::{Ack, DeviceKind};
use serde_json::json;

async fn with_ac() -> (Harness, String) {
    let h = start().await;
    h.add_device("remo-1", DeviceKind::Remo).await;
    let ac = h.add_appliance("remo-1", "kumo-ac-generic", "AC").await;
    (h, ac)
}

fn ok() -> Ack {
    Ack {
        ok: true,
        result: Some(json!({"emitted": true})),
        error: None,
        state: None,
    }
}

#[tokio::test]
async fn an_ack_moves_the_command_to_acked_and_confirms_the_settings() {
    let (h, ac) = with_ac().await;
    let log = h.bridge.as_ref().unwrap().commands();
    let r = h
        .post(
            &format!("/1/appliances/{ac}/aircon_settings"),
            &[
                ("operation_mode", "cool"),
                ("temperature", "24"),
                ("button", ""),
            ],
        )
        .await;
    let id = r.command_id();
    let pending = log
        .pending_for_device(&crate::common::dev("remo-1"))
        .await
        .unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].id, id);
    assert!(log.mark_sent(id, Some("node-a")).await.unwrap());
    let c = h.get(&format!("/v1/commands/{id}")).await.ok();
    assert_eq!(c["status"], "sent");
    assert!(c["sent_at"].is_string());
    assert!(log
        .pending_for_device(&crate::common::dev("remo-1"))
        .await
        .unwrap()
        .is_empty());

    assert!(
        log.complete(&crate::common::dev("remo-2"), id, ok())
            .await
            .unwrap()
            .is_none(),
        "another device's ack"
    );
    let done = log
        .complete(&crate::common::dev("remo-1"), id, ok())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(done.status, CommandStatus::Acked);
    assert!(
        log.complete(&crate::common::dev("remo-1"), id, ok())
            .await
            .unwrap()
            .is_none(),
        "duplicate ack"
    );
    assert!(
        !log.mark_sent(id, None).await.unwrap(),
        "final commands are not re-sent"
    );

    let c = h.get(&format!("/v1/commands/{id}")).await.ok();
    assert_eq!(c["status"], "acked");
    assert_eq!(c["result"], json!({"emitted": true}));
    let a = h.get("/1/appliances").await.ok();
    assert_eq!(a[0]["settings"]["temp"], "24");
    assert_eq!(a[0]["settings"]["button"], "");
    h.stop().await;
}

#[tokio::test]
async fn a_failure_ack_leaves_the_state_unconfirmed() {
    let (h, _) = with_ac().await;
    let light = h
        .add_appliance("remo-1", "kumo-light-generic", "LIGHT")
        .await;
    let log = h.bridge.as_ref().unwrap().commands();
    let r = h
        .post(&format!("/1/appliances/{light}/light"), &[("button", "on")])
        .await;
    let id = r.command_id();
    let failed = Ack {
        ok: false,
        result: None,
        error: Some("ir blaster busy".into()),
        state: None,
    };
    assert_eq!(
        log.complete(&crate::common::dev("remo-1"), id, failed)
            .await
            .unwrap()
            .unwrap()
            .status,
        CommandStatus::Failed
    );
    let c = h.get(&format!("/v1/commands/{id}")).await.ok();
    assert_eq!(c["status"], "failed");
    assert_eq!(c["error"], "ir blaster busy");
    let a = h.get("/1/devices/remo-1/appliances").await.ok();
    assert_eq!(a[1]["light"]["state"]["power"], "off");

    let r = h
        .post(&format!("/1/appliances/{light}/light"), &[("button", "on")])
        .await;
    log.complete(&crate::common::dev("remo-1"), r.command_id(), ok())
        .await
        .unwrap();
    let a = h.get("/1/devices/remo-1/appliances").await.ok();
    assert_eq!(a[1]["light"]["state"]["power"], "on");
    h.stop().await;
}

#[tokio::test]
async fn wait_mode_returns_once_the_device_acks() {
    let (h, ac) = with_ac().await;
    let log = h.bridge.as_ref().unwrap().commands();
    let acker = tokio::spawn({
        let log = log.clone();
        async move {
            loop {
                if let Some(c) = log
                    .pending_for_device(&crate::common::dev("remo-1"))
                    .await
                    .unwrap()
                    .pop()
                {
                    log.mark_sent(c.id, None).await.unwrap();
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    log.complete(&crate::common::dev("remo-1"), c.id, ok())
                        .await
                        .unwrap();
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });
    let started = std::time::Instant::now();
    let r = h
        .send(
            h.http
                .post(format!("{}/1/appliances/{ac}/aircon_settings", h.base))
                .bearer_auth(&h.token)
                .header("prefer", "wait=10")
                .form(&[("button", "power-off")]),
        )
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "woken by the ack, not the timeout"
    );
    assert_eq!(r.headers["x-kumo-command-status"], "acked");
    assert_eq!(r.headers["preference-applied"], "wait=10");
    assert_eq!(r.ok()["button"], "power-off");
    acker.await.unwrap();
    h.stop().await;
}

#[tokio::test]
async fn wait_mode_reports_a_device_failure_as_502001() {
    let (h, ac) = with_ac().await;
    let log = h.bridge.as_ref().unwrap().commands();
    tokio::spawn({
        let log = log.clone();
        async move {
            loop {
                if let Some(c) = log
                    .pending_for_device(&crate::common::dev("remo-1"))
                    .await
                    .unwrap()
                    .pop()
                {
                    let nack = Ack {
                        ok: false,
                        result: None,
                        error: Some("no such code".into()),
                        state: None,
                    };
                    log.complete(&crate::common::dev("remo-1"), c.id, nack)
                        .await
                        .unwrap();
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });
    let r = h
        .send(
            h.http
                .post(format!("{}/1/appliances/{ac}/aircon_settings", h.base))
                .bearer_auth(&h.token)
                .header("prefer", "wait=10")
                .form(&[("button", "")]),
        )
        .await;
    r.assert_error(502001);
    assert!(r.body["message"].as_str().unwrap().contains("no such code"));
    h.stop().await;
}

#[tokio::test]
async fn wait_mode_times_out_with_the_pending_status() {
    let (h, ac) = with_ac().await;
    let r = h
        .send(
            h.http
                .post(format!("{}/1/appliances/{ac}/aircon_settings", h.base))
                .bearer_auth(&h.token)
                .header("prefer", "wait=1")
                .form(&[("button", "")]),
        )
        .await;
    assert_eq!(r.headers["x-kumo-command-status"], "queued");
    let id = r.command_id();
    r.ok();
    let c = h
        .send(
            h.http
                .get(format!("{}/v1/commands/{id}", h.base))
                .bearer_auth(&h.token)
                .header("prefer", "wait=1"),
        )
        .await
        .ok();
    assert_eq!(c["status"], "queued");
    h.stop().await;
}

#[tokio::test]
async fn a_waiting_request_sees_a_command_another_bridge_process_completed() {
    let (h, ac) = with_ac().await;
    let request = h
        .http
        .post(format!("{}/1/appliances/{ac}/aircon_settings", h.base))
        .bearer_auth(&h.token)
        .header("prefer", "wait=20")
        .form(&[("button", "")]);
    let started = tokio::time::Instant::now();
    // Another process stores the ack: the row changes, nothing reaches this one.
    let elsewhere = async {
        let client = h.client().await;
        while client
            .execute(
                "UPDATE commands SET status = 'acked', completed_at = now(), updated_at = now()
                 WHERE status IN ('queued', 'sent')",
                &[],
            )
            .await
            .unwrap()
            == 0
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let (r, ()) = tokio::join!(h.send(request), elsewhere);
    assert_eq!(r.headers["x-kumo-command-status"], "acked");
    // Found by the shared poll (every second), long before the wait's end.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "answered after {:?}",
        started.elapsed()
    );
    r.ok();
    h.stop().await;
}

#[tokio::test]
async fn shutdown_ends_a_long_wait_within_the_grace_period() {
    let mut settings = test_settings();
    settings.shutdown_grace_secs = 1;
    let h = start_with(settings).await;
    h.add_device("remo-1", DeviceKind::Remo).await;
    let ac = h.add_appliance("remo-1", "kumo-ac-generic", "AC").await;
    let waiting = h
        .http
        .post(format!("{}/1/appliances/{ac}/aircon_settings", h.base))
        .bearer_auth(&h.token)
        .header("prefer", "wait=60")
        .form(&[("button", "")])
        .send();
    let waiting = tokio::spawn(waiting);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    h.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "stopped within the grace period"
    );
    let _ = waiting.await;
}
