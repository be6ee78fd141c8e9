//! The batched paths of the command round trip: device reports applied by
//! sharded control tasks many per transaction, PUBACKs recorded as sends many
//! per statement, waiting requests woken in-process, unchanged state not
//! rewritten.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use crate::common::{gauge, Reply};
use crate::stack::Stack;
use kumo_bridge::DeviceKind;
use serde_json::json;

/// POSTs `button=on` to a light, waiting up to 10 s for the device.
async fn light_on(s: &Stack, light: &str) -> Reply {
    let req =
        s.h.http
            .post(format!("{}/1/appliances/{light}/light", s.h.base))
            .bearer_auth(&s.h.token)
            .header("prefer", "wait=10")
            .form(&[("button", "on")]);
    s.h.send(req).await
}

#[tokio::test]
async fn concurrent_waiting_commands_to_several_devices_are_each_answered_by_their_own_ack() {
    let s = Stack::start(|_| {}).await;
    let (mut lights, mut devices) = (Vec::new(), Vec::new());
    for i in 0..3 {
        let id = format!("remo-{i}");
        let creds = s.device(&id).await;
        lights.push(s.h.add_appliance(&id, "kumo-light-generic", "LIGHT").await);
        devices.push(creds.connect(&[]).await);
    }
    let calls = (0..30).map(|i| light_on(&s, &lights[i % lights.len()]));
    let replies = futures_util::future::join_all(calls).await;
    let mut ids = Vec::new();
    for r in &replies {
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert_eq!(r.headers["x-kumo-command-status"], "acked", "{:?}", r.body);
        ids.push(r.command_id());
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 30, "every call got its own command");

    // The node's PUBACKs are recorded as sends (in batches) with the node.
    let client = s.h.client().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let row = client
            .query_one(
                "SELECT count(*) FILTER (WHERE status = 'acked'),
                        count(*) FILTER (WHERE node_id = 'node-1' AND sent_at IS NOT NULL)
                 FROM commands",
                &[],
            )
            .await
            .unwrap();
        let (acked, sent): (i64, i64) = (row.get(0), row.get(1));
        assert_eq!(acked, 30);
        if sent == 30 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{sent} of 30 sends recorded"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let a = s.h.get("/1/devices/remo-1/appliances").await.ok();
    assert_eq!(a[0]["light"]["state"]["power"], "on");
    for d in devices {
        d.disconnect().await;
    }
    s.stop().await;
}

#[tokio::test]
async fn sends_recorded_together_count_one_attempt_each_and_skip_final_commands() {
    let h = crate::common::start().await;
    h.add_device("remo-1", DeviceKind::Remo).await;
    let light = h
        .add_appliance("remo-1", "kumo-light-generic", "LIGHT")
        .await;
    let log = h.bridge.as_ref().unwrap().commands();
    let mut ids = Vec::new();
    for _ in 0..3 {
        let r = h
            .post(&format!("/1/appliances/{light}/light"), &[("button", "on")])
            .await;
        ids.push(r.command_id());
    }
    let ack = kumo_bridge::Ack {
        ok: true,
        result: None,
        error: None,
        state: None,
    };
    assert!(log
        .complete(&crate::common::dev("remo-1"), ids[2], ack)
        .await
        .unwrap()
        .is_some());

    let marked = log.mark_sent_many(&ids, Some("node-a")).await.unwrap();
    assert_eq!(marked.sent, 2, "the acked one stays acked");
    assert_eq!(marked.touched.len(), 3, "its missing node is filled");
    let client = h.client().await;
    let rows = client
        .query(
            "SELECT status, attempts, node_id FROM commands WHERE id = ANY($1) ORDER BY created_at",
            &[&ids],
        )
        .await
        .unwrap();
    let got: Vec<(String, i32, Option<String>)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let node = Some("node-a".to_string());
    assert_eq!(
        got,
        vec![
            ("sent".into(), 1, node.clone()),
            ("sent".into(), 1, node.clone()),
            ("acked".into(), 1, node),
        ]
    );
    h.stop().await;
}

#[tokio::test]
async fn a_repeated_state_report_does_not_rewrite_the_appliance() {
    let h = crate::common::start().await;
    h.add_device("remo-1", DeviceKind::Remo).await;
    let light = h
        .add_appliance("remo-1", "kumo-light-generic", "LIGHT")
        .await;
    let ac = h.add_appliance("remo-1", "kumo-ac-generic", "AC").await;
    let state = json!({"power": "on", "brightness": "100", "last_button": "on"});
    let settings = json!({"mode": "cool", "temp": "24", "vol": "auto", "dir": "auto"});
    let version = || async {
        let c = h.client().await;
        let r = c
            .query_one(
                "SELECT (SELECT xmin::text FROM appliances WHERE id = $1),
                        (SELECT xmin::text FROM appliances WHERE id = $2)",
                &[&light, &ac],
            )
            .await
            .unwrap();
        (r.get::<_, String>(0), r.get::<_, String>(1))
    };
    let remo = crate::common::dev("remo-1");
    let report = || {
        kumo_bridge::device_state::record_appliance_states(
            &h.pool,
            &remo,
            Some(&settings),
            None,
            Some(&state),
        )
    };
    report().await.unwrap();
    let first = version().await;
    report().await.unwrap();
    assert_eq!(version().await, first, "nothing changed, nothing written");

    let dimmed = json!({"power": "on", "brightness": "50", "last_button": "bright-down"});
    kumo_bridge::device_state::record_appliance_states(
        &h.pool,
        &crate::common::dev("remo-1"),
        None,
        None,
        Some(&dimmed),
    )
    .await
    .unwrap();
    let (light_v, ac_v) = version().await;
    assert_ne!(light_v, first.0, "a changed light is written");
    assert_eq!(ac_v, first.1);
    let a = h.get("/1/devices/remo-1/appliances").await.ok();
    let light_view = a
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == light.as_str())
        .unwrap()
        .clone();
    assert_eq!(light_view["light"]["state"]["brightness"], "50");
    h.stop().await;
}

#[tokio::test]
async fn acks_applied_in_one_batch_take_effect_in_the_order_the_device_sent_them() {
    let s = Stack::start(|_| {}).await;
    let creds = s.device("remo-1").await;
    let light =
        s.h.add_appliance("remo-1", "kumo-light-generic", "LIGHT")
            .await;
    // Thirteen commands to one light while the device is away: on, off, …,
    // on (the batch after the first holds off … on: reversed, it would end off).
    let mut ids = Vec::new();
    for i in 0..13 {
        let button = if i % 2 == 0 { "on" } else { "off" };
        let r =
            s.h.post(
                &format!("/1/appliances/{light}/light"),
                &[("button", button)],
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        ids.push(r.command_id());
    }
    // The first ack's transition takes half a second, so the others queue up
    // behind it in the shard and are applied together in the next batch.
    let db = s.h.client().await;
    db.batch_execute(&format!(
        "CREATE FUNCTION slow_first_ack() RETURNS trigger LANGUAGE plpgsql AS
           $$ BEGIN
                IF NEW.id = '{}' AND NEW.status = 'acked' THEN PERFORM pg_sleep(0.5); END IF;
                RETURN NEW;
              END $$;
         CREATE TRIGGER slow_first_ack BEFORE UPDATE ON commands
           FOR EACH ROW EXECUTE FUNCTION slow_first_ack();",
        ids[0]
    ))
    .await
    .unwrap();
    let metrics = async |s: &Stack| {
        let text = s.h.metrics_text().await;
        (
            gauge(&text, "kumo_bridge_reports_stored_total"),
            gauge(&text, "kumo_bridge_report_batches_total"),
        )
    };
    let (stored_before, batches_before) = metrics(&s).await;

    // Every ack in order, then the first one again (a redelivery), in one
    // connection; acks without a state confirm the state each command asked for.
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let mut lines = String::new();
    for id in ids.iter().chain(std::iter::once(&ids[0])) {
        lines.push_str(&format!(r#"{{"id":"{id}","result":"ok","ts":{ts}}}"#));
        lines.push('\n');
    }
    let mut pub_ = creds
        .mosquitto_pub("devices/remo-1/acks")
        .arg("-l")
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = pub_.stdin.take().unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stdin, lines.as_bytes())
        .await
        .unwrap();
    drop(stdin);
    let done = tokio::time::timeout(Duration::from_secs(20), pub_.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(done.success(), "mosquitto_pub: {done}");

    for id in &ids {
        s.wait_status(*id, "acked", Duration::from_secs(10)).await;
    }
    let a = s.h.get("/1/devices/remo-1/appliances").await.ok();
    assert_eq!(
        a[0]["light"]["state"]["power"], "on",
        "the last command's state wins, not an earlier one's"
    );
    let (stored, batches) = metrics(&s).await;
    let (stored, batches) = (stored - stored_before, batches - batches_before);
    assert!(
        stored >= 14.0 && batches <= stored - 5.0,
        "the acks were applied together: {stored} reports in {batches} batches"
    );
    s.stop().await;
}
