//! Readings ingested into PostgreSQL per second through `ReadingWriter`
//! (batched multi-row inserts + newest_events upserts), on a private,
//! throwaway PostgreSQL (no fsync, like the test clusters).
//!
//! Run: `cargo bench -p kumo-bridge --bench ingest` (env `KUMO_BENCH_READINGS`,
//! `KUMO_BENCH_DEVICES` and `KUMO_BENCH_PRODUCERS` scale it). Prints figures; asserts nothing.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use kumo_bridge::ingest::{IngestOptions, Reading, ReadingWriter};
use kumo_contract::DeviceId;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let total = env("KUMO_BENCH_READINGS", 500_000);
    let devices = env("KUMO_BENCH_DEVICES", 19_000);
    let producers = env("KUMO_BENCH_PRODUCERS", 4).max(1);
    let db = kumo_testkit::migrated_db().await;
    let pool = kumo_schema::connect_pool(&db.url, 4, Duration::from_secs(10)).unwrap();
    {
        let client = pool.get().await.unwrap();
        client
            .execute(
                "INSERT INTO devices (id) SELECT 'dev-' || g FROM generate_series(0, $1::bigint - 1) g",
                &[&(devices as i64)],
            )
            .await
            .unwrap();
    }
    let stop = CancellationToken::new();
    let (writer, task) = ReadingWriter::start(pool.clone(), IngestOptions::default(), stop.clone());
    let sensors = ["te", "hu", "il", "mo"];
    let started = Instant::now();
    let base = OffsetDateTime::now_utc();
    let mut handles = Vec::new();
    for p in 0..producers {
        let writer = writer.clone();
        handles.push(tokio::spawn(async move {
            let mut last = None;
            for i in (p..total).step_by(producers) {
                let (tx, rx) = tokio::sync::oneshot::channel();
                let reading = Reading {
                    device_id: DeviceId::parse(format!("dev-{}", i % devices))
                        .expect("a valid device id"),
                    sensor: sensors[i % sensors.len()],
                    val: (i % 400) as f64 / 10.0,
                    at: base + time::Duration::milliseconds(i as i64),
                };
                writer.push(vec![reading], Some(tx)).await.unwrap();
                last = Some(rx);
            }
            // Batches commit in order, so the last one durable means all are.
            if let Some(rx) = last {
                rx.await.unwrap();
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    let elapsed = started.elapsed();
    stop.cancel();
    task.await.unwrap();
    let stored: i64 = pool
        .get()
        .await
        .unwrap()
        .query_one("SELECT count(*) FROM readings", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored as usize, total, "every reading stored");
    println!(
        "ingest: {total} readings from {devices} devices, {producers} producers: {:.2} s, {:.0} readings/s",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64()
    );
}
