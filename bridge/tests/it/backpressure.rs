//! A bridge slower than its devices keeps its connections to the node.
//!
//! Readings (data lane): the backlog waits in the node, where its
//! flow control counts it, not in socket buffers ahead of the node's PINGRESP.
//! Autotuned to megabytes there, it held the answer past the keepalive; the
//! data connection was dropped and the QoS 0 readings in flight with it
//! (fleet run E lost 5.5 % of its readings that way). The bridge bounds its
//! receive buffer by default (`bridge.mqtt.data_recv_buffer`); the node's
//! send buffer is autotuned by default and bounded here
//! (`broker.service_send_buffer`) to make a 5 s keepalive hold at 2,000
//! readings/s (the default data keepalive is 120 s). With both left to
//! autotuning the PINGRESP waits behind megabytes of readings; the bridge
//! takes any packet from the node as its answer, so the connection stays up
//! all the same (the second test; before that change it lost the connection
//! and about half the readings).
//!
//! Reports (control lane, QoS 1): they queue in the bridge (bounded by the
//! node's receive window) instead of stopping the event loop while the report
//! shards wait for the database; stopped, it sent no PINGREQ and the
//! connection was dropped (with the queue replaced by a direct wait, the
//! second test loses it).
#![allow(clippy::unwrap_used)]

use std::process::Stdio;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use crate::stack::{slow_inserts, DeviceCreds, Stack};

/// Publishes every line as a message of its own, at `qos`, as fast as
/// mosquitto_pub goes, as `device`.
async fn publish_lines(device: &DeviceCreds, topic: &str, qos: u8, lines: &str) {
    let mut publisher = device
        .mosquitto_pub(topic)
        .args(["-q", &qos.to_string(), "-l"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("mosquitto_pub");
    let mut stdin = publisher.stdin.take().unwrap();
    stdin.write_all(lines.as_bytes()).await.unwrap();
    drop(stdin);
    let status = tokio::time::timeout(Duration::from_secs(60), publisher.wait())
        .await
        .expect("mosquitto_pub finished")
        .unwrap();
    assert!(status.success());
}

/// Readings the device sends: 20 s of the slowed writer's work.
const READINGS: i64 = 40_000;

/// [`READINGS`] `{"val","ts"}` lines, each with a timestamp of its own.
fn readings() -> String {
    let base = time::OffsetDateTime::now_utc().unix_timestamp() * 1000 - READINGS * 1000;
    let mut lines = String::new();
    for i in 0..READINGS {
        lines.push_str(&format!(
            "{{\"val\":{},\"ts\":{}}}\n",
            i % 40,
            base + i * 1000
        ));
    }
    lines
}

/// With inserts slowed ([`slow_inserts`]), a device publishes [`READINGS`] at
/// QoS 0: every one is stored, through a data connection that never failed.
async fn every_reading_stored_through_one_connection(s: &Stack) {
    let device = s.device("remo-1").await;
    let db = s.h.client().await;
    // 0.5 s per insert: with batches of 1,000, at most 2,000 readings/s.
    slow_inserts(&db, 0.5).await;
    publish_lines(&device, "devices/remo-1/sensors/te", 0, &readings()).await;
    let stored = stored_within(&db, Duration::from_secs(60)).await;
    let mqtt = s.h.bridge.as_ref().unwrap().mqtt().unwrap();
    assert_eq!(
        mqtt.connections_lost.load(Relaxed),
        0,
        "a connection to the node was lost ({stored} of {READINGS} readings stored)"
    );
    assert_eq!(stored, READINGS);
}

/// Rows of remo-1's readings once all [`READINGS`] are there, or at `limit`.
async fn stored_within(db: &tokio_postgres::Client, limit: Duration) -> i64 {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let n: i64 = db
            .query_one(
                "SELECT count(*) FROM readings WHERE device_id = 'remo-1'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if n >= READINGS || tokio::time::Instant::now() > deadline {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn a_bridge_slower_than_its_devices_keeps_its_data_connection_and_every_qos0_reading() {
    let s = Stack::start_tuned(
        1,
        |n| n.service_send_buffer = 64 * 1024,
        |b| {
            b.mqtt.data_keepalive_secs = 5;
            // A small writer buffer: the bridge stops reading from the node soon.
            b.ingest.buffer = 2_000;
            b.ingest.batch_size = 1_000;
        },
    )
    .await;
    every_reading_stored_through_one_connection(&s).await;
}

/// With both socket buffers autotuned (megabytes ahead of every PINGRESP),
/// the data connection lives on what keeps arriving: nothing is lost either.
/// Before the bridge counted any packet as the node's answer, this run lost
/// the connection and about half the readings.
#[tokio::test]
async fn a_data_connection_whose_pingresp_waits_behind_megabytes_of_readings_stays_up() {
    let s = Stack::start_tuned(
        1,
        |n| n.service_send_buffer = 0,
        |b| {
            b.mqtt.data_keepalive_secs = 5;
            b.mqtt.data_recv_buffer = 0;
            b.ingest.buffer = 2_000;
            b.ingest.batch_size = 1_000;
        },
    )
    .await;
    every_reading_stored_through_one_connection(&s).await;
}

/// State reports the device sends while the devices table is locked: more
/// than the report shards queue (8 × 1,024).
const STATES: u64 = 12_000;

#[tokio::test]
async fn the_control_connection_keeps_its_keepalive_while_reports_wait_for_the_database() {
    // One device stands for a fleet here. With the node waiting for the
    // bridge's acknowledgement before it answers a device (the default), one
    // device has only its own window in flight; thousands of devices fill
    // the report queue as this one does when the node answers on routing.
    let s = Stack::start_tuned(
        1,
        |n| n.confirm_timeout_secs = 0,
        |b| b.mqtt.keepalive_secs = 5,
    )
    .await;
    let device = s.device("remo-1").await;
    // Reports wait on the lock for 15 s: three keepalive periods.
    let mut lock = s.h.client().await;
    let tx = lock.transaction().await.unwrap();
    tx.batch_execute("LOCK TABLE devices IN EXCLUSIVE MODE")
        .await
        .unwrap();
    let mut lines = String::new();
    for i in 1..=STATES {
        lines.push_str(&format!(
            "{{\"online\":true,\"kind\":\"hub\",\"firmware_version\":\"1.0.{i}\",\"ts\":{i}}}\n"
        ));
    }
    publish_lines(&device, "devices/remo-1/state", 1, &lines).await;
    tokio::time::sleep(Duration::from_secs(15)).await;
    tx.rollback().await.unwrap();

    // The last report is applied, through a connection that never failed.
    let db = s.h.client().await;
    let last = format!("1.0.{STATES}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let fw: Option<String> = db
            .query_one(
                "SELECT firmware_version FROM devices WHERE id = 'remo-1'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if fw.as_deref() == Some(last.as_str()) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "last report not applied: {fw:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let mqtt = s.h.bridge.as_ref().unwrap().mqtt().unwrap();
    assert_eq!(mqtt.connections_lost.load(Relaxed), 0);
}
