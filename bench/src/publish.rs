//! Sensor-reading load: every connected device publishes QoS 1
//! `{"val":…,"ts":…}` on `devices/{id}/sensors/te` at its share of a target
//! rate, and counts the PUBACKs the broker returns. Each device keeps at most
//! `max_inflight` unacknowledged publishes; a tick that finds the window full
//! is counted as skipped (back-pressure), never queued, so the offered load
//! stays open-loop up to that window.

use kumo_contract::payload::SensorReading;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::load::Conn;
use crate::{mqtt, procstat};

/// How the devices publish.
#[derive(Debug, Clone, Copy)]
pub struct PublishPlan {
    /// Publishes per second over all devices.
    pub rate: f64,
    /// How long to publish.
    pub duration: Duration,
    /// Granularity of each device's timer.
    pub tick: Duration,
    /// Unacknowledged publishes one device may have.
    pub max_inflight: u64,
    /// How long to wait for outstanding PUBACKs after the last publish.
    pub drain: Duration,
}

/// Counters shared by every device task.
#[derive(Debug, Default)]
pub struct Counters {
    /// PUBLISH packets written.
    pub published: AtomicU64,
    /// PUBACKs read.
    pub acked: AtomicU64,
    /// Publishes not sent because the device's window was full.
    pub skipped: AtomicU64,
    /// Connections that failed while publishing.
    pub broken: AtomicU64,
}

/// Totals of one publish run.
#[derive(Debug, Clone, Serialize)]
pub struct PublishReport {
    /// Devices that published.
    pub devices: usize,
    /// Target rate, publishes/s.
    pub target_rate: f64,
    /// Publishing time in s (without the drain).
    pub secs: f64,
    /// PUBLISH packets written.
    pub published: u64,
    /// PUBACKs received (including during the drain).
    pub acked: u64,
    /// Publishes skipped for a full window.
    pub skipped: u64,
    /// Connections that broke.
    pub broken: u64,
    /// `published / secs`.
    pub publish_rate: f64,
    /// This process's CPU seconds over publishing and the drain.
    pub client_cpu_s: f64,
    /// Unix time (s) of the first and last publish, to line up with database samples.
    pub started_unix: f64,
    /// See `started_unix`.
    pub ended_unix: f64,
}

/// Publishes from every connection in `conns` (device ids in `ids`, same
/// order) according to `plan`, printing a progress line to stderr each second.
pub async fn run(conns: Vec<Conn>, ids: Vec<String>, plan: PublishPlan) -> PublishReport {
    let counters = Arc::new(Counters::default());
    let devices = conns.len();
    let per_device = plan.rate / devices.max(1) as f64;
    let cpu_before = procstat::cpu_seconds("self").unwrap_or(0.0);
    let started = Instant::now();
    let started_unix = unix_now();
    let stop_at = started + plan.duration;
    let tasks: Vec<_> = conns
        .into_iter()
        .zip(ids)
        .enumerate()
        .map(|(i, (conn, id))| {
            let counters = counters.clone();
            // Spread the devices' ticks over one tick period.
            let offset = plan.tick.mul_f64(i as f64 / devices.max(1) as f64);
            tokio::spawn(device(
                conn, id, per_device, plan, offset, stop_at, counters,
            ))
        })
        .collect();
    let progress = {
        let counters = counters.clone();
        tokio::spawn(async move {
            let mut last = 0;
            let mut every = tokio::time::interval(Duration::from_secs(1));
            every.tick().await;
            loop {
                every.tick().await;
                let p = counters.published.load(Relaxed);
                let a = counters.acked.load(Relaxed);
                eprintln!(
                    "[{:>5.1}s] published {p} (+{}/s), acked {a}, skipped {}",
                    started.elapsed().as_secs_f64(),
                    p - last,
                    counters.skipped.load(Relaxed)
                );
                last = p;
            }
        })
    };
    for t in tasks {
        let _ = t.await;
    }
    progress.abort();
    let published = counters.published.load(Relaxed);
    PublishReport {
        devices,
        target_rate: plan.rate,
        secs: plan.duration.as_secs_f64(),
        published,
        acked: counters.acked.load(Relaxed),
        skipped: counters.skipped.load(Relaxed),
        broken: counters.broken.load(Relaxed),
        publish_rate: published as f64 / plan.duration.as_secs_f64().max(1e-9),
        client_cpu_s: procstat::cpu_seconds("self").unwrap_or(0.0) - cpu_before,
        started_unix,
        ended_unix: started_unix + plan.duration.as_secs_f64(),
    }
}

async fn device(
    conn: Conn,
    id: String,
    per_sec: f64,
    plan: PublishPlan,
    offset: Duration,
    stop_at: Instant,
    counters: Arc<Counters>,
) {
    let (mut rd, mut wr) = tokio::io::split(conn);
    let acked_here = Arc::new(AtomicU64::new(0));
    let reader = {
        let (acked_here, counters) = (acked_here.clone(), counters.clone());
        tokio::spawn(async move {
            let mut buf = vec![0u8; 16 * 1024];
            let mut have = 0usize;
            loop {
                match rd.read(&mut buf[have..]).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => have += n,
                }
                let mut at = 0;
                while let Some((kind, len)) = mqtt::packet_at(&buf[at..have]) {
                    if kind == mqtt::PUBACK {
                        acked_here.fetch_add(1, Relaxed);
                        counters.acked.fetch_add(1, Relaxed);
                    }
                    at += len;
                }
                buf.copy_within(at..have, 0);
                have -= at;
                if have == buf.len() {
                    buf.resize(buf.len() * 2, 0);
                }
            }
        })
    };
    let topic = format!("devices/{id}/sensors/te");
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + offset, plan.tick);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut owed = 0.0f64;
    let mut last = Instant::now();
    let mut sent = 0u64;
    let mut packet_id: u16 = 0;
    let mut out = Vec::with_capacity(4096);
    while Instant::now() < stop_at {
        tick.tick().await;
        let now = Instant::now();
        owed += per_sec * now.duration_since(last).as_secs_f64();
        last = now;
        out.clear();
        let ts = unix_millis();
        let mut batch = 0u64;
        while owed >= 1.0 {
            owed -= 1.0;
            if sent - acked_here.load(Relaxed) >= plan.max_inflight {
                counters.skipped.fetch_add(1, Relaxed);
                continue;
            }
            packet_id = packet_id.checked_add(1).unwrap_or(1);
            let val = 20.0 + f64::from(packet_id % 100) / 10.0;
            let reading = SensorReading { val, ts: Some(ts) };
            // A number and an integer always serialize.
            let body = serde_json::to_vec(&reading).unwrap_or_default();
            mqtt::publish_qos1(&mut out, &topic, packet_id, &body);
            sent += 1;
            batch += 1;
        }
        if out.is_empty() {
            continue;
        }
        if wr.write_all(&out).await.is_err() {
            counters.broken.fetch_add(1, Relaxed);
            reader.abort();
            return;
        }
        counters.published.fetch_add(batch, Relaxed);
    }
    let drain_until = Instant::now() + plan.drain;
    while acked_here.load(Relaxed) < sent && Instant::now() < drain_until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = wr.write_all(&mqtt::DISCONNECT).await;
    let _ = wr.flush().await;
    reader.abort();
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn unix_millis() -> u64 {
    (unix_now() * 1000.0) as u64
}
