//! The reading writer, presence and meter records, and the history endpoint.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use crate::common::*;
use kumo_bridge::device_state::{record_meter, record_meters_in};
use kumo_bridge::ingest::{IngestOptions, Reading, ReadingWriter};
use kumo_bridge::presence::{record_presence, record_presences_in, Presence};
use kumo_bridge::DeviceKind;
use time::macros::datetime;
use time::OffsetDateTime;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

/// A message carrying one reading.
fn reading(device: &str, sensor: &'static str, val: f64, at: OffsetDateTime) -> Vec<Reading> {
    vec![Reading {
        device_id: crate::common::dev(device),
        sensor,
        val,
        at,
    }]
}

/// Renames the readings table away (every write fails) or back.
async fn hide_readings(h: &Harness, hidden: bool) {
    let sql = if hidden {
        "ALTER TABLE readings RENAME TO readings_away"
    } else {
        "ALTER TABLE readings_away RENAME TO readings"
    };
    h.client().await.batch_execute(sql).await.unwrap();
}

async fn count(h: &Harness, sql: &str) -> i64 {
    h.client().await.query_one(sql, &[]).await.unwrap().get(0)
}

#[tokio::test]
async fn every_pushed_reading_is_stored_before_it_is_reported_durable() {
    let h = start().await;
    h.add_device("remo-1", DeviceKind::Remo).await;
    let stop = CancellationToken::new();
    let options = IngestOptions {
        buffer: 8,
        batch_size: 100,
        flush_after: Duration::from_millis(10),
    };
    let (writer, task) = ReadingWriter::start(h.pool.clone(), options, stop.clone());
    let base = datetime!(2024-05-01 09:00:00 UTC);
    let mut durable = Vec::new();
    for i in 0..1000 {
        let (tx, rx) = oneshot::channel();
        let at = base + time::Duration::seconds(i);
        writer
            .push(
                reading("remo-1", "te", 20.0 + (i % 10) as f64, at),
                Some(tx),
            )
            .await
            .unwrap();
        durable.push(rx);
    }
    for rx in durable {
        rx.await.unwrap();
    }
    assert_eq!(count(&h, "SELECT count(*) FROM readings").await, 1000);
    let newest = h.get("/1/devices").await.ok()[0]["newest_events"]["te"].clone();
    assert_eq!(newest["created_at"], "2024-05-01T09:16:39Z");
    assert_eq!(newest["val"], 29);
    stop.cancel();
    task.await.unwrap();
    h.stop().await;
}

#[tokio::test]
async fn a_repeated_reading_is_stored_once_and_still_reported_durable() {
    let h = start().await;
    h.add_device("remo-1", DeviceKind::Remo).await;
    let stop = CancellationToken::new();
    let options = IngestOptions {
        buffer: 64,
        batch_size: 10,
        flush_after: Duration::from_millis(10),
    };
    let (writer, task) = ReadingWriter::start(h.pool.clone(), options, stop.clone());
    let base = datetime!(2024-05-01 09:00:00 UTC);
    let push_all = |range: std::ops::Range<i64>| {
        let writer = writer.clone();
        async move {
            let mut durable = Vec::new();
            for i in range {
                let (tx, rx) = oneshot::channel();
                let at = base + time::Duration::seconds(i);
                writer
                    .push(reading("remo-1", "te", i as f64, at), Some(tx))
                    .await
                    .unwrap();
                durable.push(rx);
            }
            for rx in durable {
                rx.await.expect("a repeat is durable too (it is stored)");
            }
        }
    };
    push_all(0..20).await;
    // Redelivered: 10..20 are stored already, 20..30 are new, in the same batches.
    push_all(10..30).await;
    // A repeat inside one batch.
    push_all(40..41).await;
    push_all(40..41).await;
    assert_eq!(count(&h, "SELECT count(*) FROM readings").await, 31);
    assert_eq!(
        count(&h, "SELECT count(DISTINCT (sensor, at)) FROM readings").await,
        31
    );
    // Another sensor at the same instant is another reading.
    let (tx, rx) = oneshot::channel();
    writer
        .push(reading("remo-1", "hu", 50.0, base), Some(tx))
        .await
        .unwrap();
    rx.await.unwrap();
    assert_eq!(count(&h, "SELECT count(*) FROM readings").await, 32);
    // So is another value stamped with the same instant (a coarse device clock).
    let (tx, rx) = oneshot::channel();
    writer
        .push(reading("remo-1", "te", 99.0, base), Some(tx))
        .await
        .unwrap();
    rx.await.unwrap();
    assert_eq!(count(&h, "SELECT count(*) FROM readings").await, 33);
    // The counters tell stored readings from repeats: the batches of 10..20
    // (one or two, as the flush timer cut them) and the second 40.
    let stats = writer.stats();
    assert_eq!(stats.stored.load(Relaxed), 33, "repeats are not counted");
    let repeats = stats.repeat_batches.load(Relaxed);
    assert!((2..=3).contains(&repeats), "{repeats} batches with repeats");
    assert!(stats.batches.load(Relaxed) >= 7);
    stop.cancel();
    task.await.unwrap();
    h.stop().await;
}

#[tokio::test]
async fn a_failed_write_is_retried_until_it_succeeds() {
    let h = start().await;
    h.add_device("remo-1", DeviceKind::Remo).await;
    hide_readings(&h, true).await;
    let stop = CancellationToken::new();
    let (writer, task) =
        ReadingWriter::start(h.pool.clone(), IngestOptions::default(), stop.clone());
    let (tx, mut rx) = oneshot::channel();
    writer
        .push(
            reading("remo-1", "hu", 40.0, OffsetDateTime::now_utc()),
            Some(tx),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        rx.try_recv().is_err(),
        "not durable while the table is missing"
    );
    hide_readings(&h, false).await;
    tokio::time::timeout(Duration::from_secs(10), rx)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(count(&h, "SELECT count(*) FROM readings").await, 1);
    stop.cancel();
    task.await.unwrap();
    h.stop().await;
}

/// A message of `sensors` readings at `at`.
fn message(sensors: &[&'static str], val: f64, at: OffsetDateTime) -> Vec<Reading> {
    sensors
        .iter()
        .flat_map(|s| reading("remo-1", s, val, at))
        .collect()
}

#[tokio::test]
async fn a_message_is_committed_whole_and_the_buffer_counts_its_readings() {
    let h = start().await;
    h.add_device("remo-1", DeviceKind::Remo).await;
    // Writes fail until the table is back: what is pushed stays buffered.
    hide_readings(&h, true).await;
    let stop = CancellationToken::new();
    let options = IngestOptions {
        buffer: 4,
        batch_size: 2,
        flush_after: Duration::from_millis(10),
    };
    let (writer, task) = ReadingWriter::start(h.pool.clone(), options, stop.clone());
    let base = datetime!(2024-05-01 09:00:00 UTC);
    let three = ["te", "hu", "il"];
    let mut durable = Vec::new();
    // The first message is taken off the buffer into the failing batch; the
    // second fits the buffer (3 of 4 readings); the third must wait for room.
    for i in 0..2 {
        let (tx, rx) = oneshot::channel();
        let at = base + time::Duration::seconds(i);
        writer
            .push(message(&three, i as f64, at), Some(tx))
            .await
            .unwrap();
        durable.push(rx);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (tx, rx) = oneshot::channel();
    let third = tokio::spawn({
        let writer = writer.clone();
        let at = base + time::Duration::seconds(2);
        async move { writer.push(message(&three, 2.0, at), Some(tx)).await }
    });
    durable.push(rx);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(!third.is_finished(), "3 + 3 readings exceed a buffer of 4");
    // Larger than the whole buffer: it takes all of it, it does not wait forever.
    let (tx, rx) = oneshot::channel();
    let fourth = tokio::spawn({
        let writer = writer.clone();
        let at = base + time::Duration::seconds(3);
        let five = ["te", "hu", "il", "mo", "power"];
        async move { writer.push(message(&five, 3.0, at), Some(tx)).await }
    });
    durable.push(rx);
    hide_readings(&h, false).await;
    for (i, rx) in durable.into_iter().enumerate() {
        tokio::time::timeout(Duration::from_secs(15), rx)
            .await
            .unwrap()
            .unwrap();
        // Durable means every reading of the message is stored.
        let at = base + time::Duration::seconds(i as i64);
        let stored: i64 = h
            .client()
            .await
            .query_one("SELECT count(*) FROM readings WHERE at = $1", &[&at])
            .await
            .unwrap()
            .get(0);
        assert_eq!(stored, if i == 3 { 5 } else { 3 }, "message {i}");
    }
    third.await.unwrap().unwrap();
    fourth.await.unwrap().unwrap();
    assert_eq!(count(&h, "SELECT count(*) FROM readings").await, 14);
    // Each message reached the batch size alone and none was split.
    assert_eq!(writer.stats().batches.load(Relaxed), 4);
    stop.cancel();
    task.await.unwrap();
    // Once the writer has ended, a push is refused, not left waiting.
    let refused = writer.push(message(&three, 9.0, base), None);
    let refused = tokio::time::timeout(Duration::from_secs(5), refused).await;
    assert!(refused.unwrap().is_err());
    h.stop().await;
}

#[tokio::test]
async fn the_writer_keeps_its_connection_between_bursts_and_gives_it_back_when_idle() {
    let h = start().await;
    h.add_device("remo-1", DeviceKind::Remo).await;
    // A pool of its own: only the writer uses it.
    let pool = kumo_schema::connect_pool(&h.db_url, 2, Duration::from_secs(10)).unwrap();
    let in_use = |pool: &deadpool_postgres::Pool| {
        let s = pool.status();
        s.size - s.available
    };
    let stop = CancellationToken::new();
    let options = IngestOptions {
        buffer: 64,
        batch_size: 10,
        flush_after: Duration::from_millis(10),
    };
    let (writer, task) = ReadingWriter::start(pool.clone(), options, stop.clone());
    let base = datetime!(2024-05-01 09:00:00 UTC);
    let started = tokio::time::Instant::now();
    // Bursts 300 ms apart, as QoS 1 acknowledgements pace them, for longer
    // than the idle time: each burst restarts it.
    for i in 0..8 {
        let (tx, rx) = oneshot::channel();
        let at = base + time::Duration::seconds(i);
        writer
            .push(reading("remo-1", "te", 20.0, at), Some(tx))
            .await
            .unwrap();
        rx.await.unwrap();
        assert_eq!(in_use(&pool), 1, "held after burst {i}");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(in_use(&pool), 1, "still held in the gap after burst {i}");
    }
    assert!(started.elapsed() > kumo_bridge::db::Held::IDLE);
    // Idle: given back, for REST calls to use.
    tokio::time::sleep(kumo_bridge::db::Held::IDLE + Duration::from_millis(500)).await;
    assert_eq!(in_use(&pool), 0, "given back once idle");
    assert_eq!(count(&h, "SELECT count(*) FROM readings").await, 8);
    stop.cancel();
    task.await.unwrap();
    h.stop().await;
}

#[tokio::test]
async fn history_buckets_have_avg_min_max_and_count() {
    let h = start().await;
    h.add_device("remo-1", DeviceKind::Remo).await;
    h.add_device("meter-1", DeviceKind::SmartMeter).await;
    let stop = CancellationToken::new();
    let (writer, task) =
        ReadingWriter::start(h.pool.clone(), IngestOptions::default(), stop.clone());
    let t0 = datetime!(2024-05-01 00:00:00 UTC);
    let mut acks = Vec::new();
    for (minute, val) in [(0, 20.0), (10, 22.0), (59, 24.0), (60, 30.0)] {
        let (tx, rx) = oneshot::channel();
        writer
            .push(
                reading("remo-1", "te", val, t0 + time::Duration::minutes(minute)),
                Some(tx),
            )
            .await
            .unwrap();
        acks.push(rx);
    }
    let (tx, rx) = oneshot::channel();
    writer
        .push(reading("meter-1", "power", 412.0, t0), Some(tx))
        .await
        .unwrap();
    acks.push(rx);
    for rx in acks {
        rx.await.unwrap();
    }
    let path = "/v1/devices/remo-1/readings?sensor=te&from=2024-05-01T00:00:00Z&to=2024-05-01T03:00:00Z&step=1h";
    let body = h.get(path).await.ok();
    assert_eq!(body["step"], 3600);
    let b = body["buckets"].as_array().unwrap();
    assert_eq!(b.len(), 2);
    assert_eq!(b[0]["start"], "2024-05-01T00:00:00Z");
    assert_eq!(
        (
            b[0]["avg"].as_f64(),
            b[0]["min"].as_f64(),
            b[0]["max"].as_f64()
        ),
        (Some(22.0), Some(20.0), Some(24.0))
    );
    assert_eq!(b[0]["count"], 3);
    assert_eq!(b[1]["avg"], 30.0);
    let power = h
        .get("/v1/devices/meter-1/readings?sensor=power&from=2024-05-01T00:00:00Z&to=2024-05-02T00:00:00Z&step=1d")
        .await
        .ok();
    assert_eq!(power["buckets"][0]["max"], 412.0);

    for bad in [
        "/v1/devices/remo-1/readings",
        "/v1/devices/remo-1/readings?sensor=co2",
        "/v1/devices/remo-1/readings?sensor=te&from=yesterday",
        "/v1/devices/remo-1/readings?sensor=te&from=2024-05-02T00:00:00Z&to=2024-05-01T00:00:00Z",
        "/v1/devices/remo-1/readings?sensor=te&step=0",
        "/v1/devices/remo-1/readings?sensor=te&from=2000-01-01T00:00:00Z&step=1s",
    ] {
        h.get(bad).await.assert_error(400001);
    }
    h.get("/v1/devices/remo-9/readings?sensor=te")
        .await
        .assert_error(404001);
    stop.cancel();
    task.await.unwrap();
    h.stop().await;
}

#[tokio::test]
async fn presence_updates_online_and_reports_the_transition() {
    let h = start().await;
    h.add_device("remo-1", DeviceKind::Remo).await;
    let t = OffsetDateTime::now_utc();
    let up = Presence {
        device_id: &crate::common::dev("remo-1"),
        online: true,
        node: Some("node-a"),
        at: t,
    };
    let arrival = record_presence(&h.pool, &up).await.unwrap();
    assert!(arrival.arrived, "came online");
    assert!(!arrival.commands_waiting, "nothing was queued for it");
    assert!(
        !record_presence(&h.pool, &up).await.unwrap().arrived,
        "already online"
    );
    assert_eq!(h.get("/1/devices").await.ok()[0]["online"], true);
    let stale = Presence {
        device_id: &crate::common::dev("remo-1"),
        online: false,
        node: None,
        at: t - time::Duration::minutes(1),
    };
    record_presence(&h.pool, &stale).await.unwrap();
    assert_eq!(
        h.get("/1/devices").await.ok()[0]["online"],
        true,
        "stale news is ignored"
    );
    let down = Presence {
        device_id: &crate::common::dev("remo-1"),
        online: false,
        node: None,
        at: t + time::Duration::seconds(1),
    };
    assert!(!record_presence(&h.pool, &down).await.unwrap().arrived);
    assert_eq!(h.get("/1/devices").await.ok()[0]["online"], false);
    h.stop().await;
}

#[tokio::test]
async fn a_late_offline_from_the_node_a_device_left_does_not_override_its_new_node() {
    let h = start().await;
    h.add_device("remo-1", DeviceKind::Remo).await;
    let id = crate::common::dev("remo-1");
    let t = OffsetDateTime::now_utc();
    let on = |node, at| Presence {
        device_id: &id,
        online: true,
        node: Some(node),
        at,
    };
    let off = |node, at| Presence {
        device_id: &id,
        online: false,
        node: Some(node),
        at,
    };
    assert!(
        record_presence(&h.pool, &on("node-a", t))
            .await
            .unwrap()
            .arrived
    );
    // Announced again by the same node: nothing new.
    assert!(
        !record_presence(&h.pool, &on("node-a", t))
            .await
            .unwrap()
            .arrived
    );
    // The device moved to node-b before node-a's loss was noticed: its
    // queued commands are delivered there now, not by the resend sweep.
    let moved = t + time::Duration::seconds(1);
    assert!(
        record_presence(&h.pool, &on("node-b", moved))
            .await
            .unwrap()
            .arrived,
        "a move counts as coming online"
    );
    let late = t + time::Duration::seconds(30);
    record_presence(&h.pool, &off("node-a", late))
        .await
        .unwrap();
    assert_eq!(h.get("/1/devices").await.ok()[0]["online"], true);
    // Its current node going offline counts.
    record_presence(&h.pool, &off("node-b", late))
        .await
        .unwrap();
    assert_eq!(h.get("/1/devices").await.ok()[0]["online"], false);
    h.stop().await;
}

#[tokio::test]
async fn presences_of_many_devices_in_one_statement_follow_the_same_rules_as_one() {
    let h = start().await;
    for id in ["remo-1", "remo-2", "remo-3"] {
        h.add_device(id, DeviceKind::Remo).await;
    }
    let ids: Vec<_> = ["remo-1", "remo-2", "remo-3", "sim-000001"]
        .iter()
        .map(|d| crate::common::dev(d))
        .collect();
    let t = OffsetDateTime::now_utc();
    let at = |id, online, node, at| Presence {
        device_id: &ids[id],
        online,
        node: Some(node),
        at,
    };
    record_presence(&h.pool, &at(1, true, "node-a", t))
        .await
        .unwrap();
    record_presence(&h.pool, &at(2, true, "node-a", t))
        .await
        .unwrap();
    let client = h.pool.get().await.unwrap();
    let later = t + time::Duration::seconds(5);
    let arrivals = record_presences_in(
        &client,
        &[
            // Comes online.
            at(0, true, "node-a", later),
            // An offline from a node it is not on is ignored…
            at(1, false, "node-b", later),
            // …one from its own node counts.
            at(2, false, "node-a", later),
            // Nobody registered it yet: it gets its row, online.
            at(3, true, "node-b", later),
        ],
    )
    .await
    .unwrap();
    let arrived: Vec<bool> = arrivals.iter().map(|a| a.arrived).collect();
    assert_eq!(arrived, [true, false, false, true]);
    let stale = record_presences_in(&client, &[at(0, false, "node-a", t)])
        .await
        .unwrap();
    assert!(!stale[0].arrived);
    let rows = client
        .query("SELECT id, online, node_id FROM devices ORDER BY id", &[])
        .await
        .unwrap();
    let seen: Vec<(String, bool, Option<String>)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let row = |id: &str, online, node: &str| (id.to_string(), online, Some(node.to_string()));
    assert_eq!(
        seen,
        [
            row("remo-1", true, "node-a"),
            row("remo-2", true, "node-a"),
            row("remo-3", false, "node-a"),
            row("sim-000001", true, "node-b"),
        ],
        "stale news is ignored in the batch form as well"
    );
    h.stop().await;
}

#[tokio::test]
async fn meter_properties_show_up_in_the_smart_meter_appliance() {
    let h = start().await;
    h.add_device("meter-1", DeviceKind::SmartMeter).await;
    let at = datetime!(2024-05-01 09:30:00 UTC);
    record_meter(
        &h.pool,
        &crate::common::dev("meter-1"),
        &[(0xE7, "512".into()), (0xD3, "1".into())],
        at,
    )
    .await
    .unwrap();
    let a = h.get("/1/appliances").await.ok();
    let props = a[0]["smart_meter"]["echonetlite_properties"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(props.len(), 2);
    assert_eq!(props[0]["name"], "coefficient");
    assert_eq!(props[1]["epc"], 231);
    assert_eq!(props[1]["val"], "512");
    h.stop().await;
}

#[tokio::test]
async fn meters_reports_in_one_statement_follow_the_same_rules_as_one() {
    let h = start().await;
    for id in ["meter-1", "meter-2"] {
        h.add_device(id, DeviceKind::SmartMeter).await;
    }
    let at = datetime!(2024-05-01 09:30:00 UTC);
    let (m1, m2, gone) = (
        crate::common::dev("meter-1"),
        crate::common::dev("meter-2"),
        crate::common::dev("meter-9"),
    );
    let newer = [(0xE7, "600".to_string())];
    record_meter(&h.pool, &m2, &newer, at + time::Duration::minutes(1))
        .await
        .unwrap();
    let (p1, p2, p9) = (
        [(0xE7, "512".to_string()), (0xE0, "100".to_string())],
        [(0xE7, "300".to_string()), (0xE0, "7".to_string())],
        [(0xE7, "1".to_string())],
    );
    let client = h.pool.get().await.unwrap();
    record_meters_in(
        &client,
        &[(&m1, &p1[..], at), (&m2, &p2[..], at), (&gone, &p9[..], at)],
    )
    .await
    .unwrap();
    let rows: Vec<(String, i32, String)> = client
        .query(
            "SELECT device_id, epc, val FROM smart_meter_properties ORDER BY device_id, epc",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let row = |d: &str, epc: i32, v: &str| (d.to_string(), epc, v.to_string());
    assert_eq!(
        rows,
        vec![
            row("meter-1", 0xE0, "100"),
            row("meter-1", 0xE7, "512"),
            row("meter-2", 0xE0, "7"),
            // Older than what is stored: left as it was.
            row("meter-2", 0xE7, "600"),
        ],
        "an unknown device writes nothing, an older report overwrites nothing"
    );
    h.stop().await;
}

#[tokio::test]
async fn a_device_that_changes_hands_shows_its_new_owner_nothing_measured_before() {
    let h = start().await;
    h.add_device("remo-1", DeviceKind::Remo).await;
    let stop = CancellationToken::new();
    let (writer, task) =
        ReadingWriter::start(h.pool.clone(), IngestOptions::default(), stop.clone());
    let store = |val: f64, at: OffsetDateTime| {
        let writer = writer.clone();
        async move {
            let (tx, rx) = oneshot::channel();
            writer
                .push(reading("remo-1", "te", val, at), Some(tx))
                .await
                .unwrap();
            rx.await.unwrap();
        }
    };
    let an_hour_ago = OffsetDateTime::now_utc() - time::Duration::hours(1);
    store(21.0, an_hour_ago).await;
    let from = (an_hour_ago - time::Duration::minutes(1))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let path = format!("/v1/devices/remo-1/readings?sensor=te&from={from}&step=1d");
    let counted = |body: serde_json::Value| -> i64 {
        body["buckets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["count"].as_i64().unwrap())
            .sum()
    };
    assert_eq!(counted(h.get(&path).await.ok()), 1);
    assert_eq!(
        h.get("/1/devices").await.ok()[0]["newest_events"]["te"]["val"],
        21.0
    );

    // The device moves to Bob: he sees none of what it measured for Alice.
    let (bob, bob_token) = h.other_user().await;
    h.give_device("remo-1", &bob).await;
    let bobs_devices = h.get_as(&bob_token, "/1/devices").await.ok();
    assert_eq!(bobs_devices[0]["newest_events"], serde_json::json!({}));
    assert_eq!(counted(h.get_as(&bob_token, &path).await.ok()), 0);
    h.get(&path).await.assert_error(404001);
    // What it measures for Bob is his.
    store(23.0, OffsetDateTime::now_utc()).await;
    assert_eq!(counted(h.get_as(&bob_token, &path).await.ok()), 1);
    let bobs_devices = h.get_as(&bob_token, "/1/devices").await.ok();
    assert_eq!(bobs_devices[0]["newest_events"]["te"]["val"], 23.0);

    // Released and registered again (to Alice): a new ownership, nothing before it.
    h.send(
        h.http
            .post(format!("{}/1/devices/remo-1/delete", h.base))
            .bearer_auth(&bob_token),
    )
    .await
    .ok();
    h.add_device("remo-1", DeviceKind::Remo).await;
    assert_eq!(counted(h.get(&path).await.ok()), 0);
    stop.cancel();
    task.await.unwrap();
    h.stop().await;
}
