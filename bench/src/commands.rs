//! Command round trips through the REST API: an open-loop generator issues
//! `POST /1/appliances/{id}/light` (`button=on`, `Prefer: wait=N`) at a fixed
//! rate, spread round-robin over the appliances, and records each request's
//! latency from its scheduled start (so queueing in the client or the server
//! counts) to the end of the response. At most `max_in_flight` requests (and
//! so HTTP connections, which keep-alive reuses) are open at once: an
//! overloaded bridge makes later requests wait in the client, where their
//! latency still counts, instead of exhausting either side's descriptors.
//! With `samples`, every request's scheduled time, latency and outcome also
//! go to a CSV file, so a longer run can be split into periods (the fleet
//! benchmark's hold vs the storm after a node is killed) and plotted, with
//! the id of every command the bridge accepted (`X-Kumo-Command-Id`): the
//! chaos benchmark's ledger of commands that must each reach a final state.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::sync::mpsc;

/// What to send.
#[derive(Debug, Clone)]
pub struct CommandPlan {
    /// Bridge base URL, e.g. `http://127.0.0.1:8080`.
    pub base: String,
    /// Bearer token with the `sendir` scope.
    pub token: String,
    /// Light appliance ids to command, in turn.
    pub appliances: Vec<String>,
    /// Requests per second.
    pub rate: f64,
    /// How long to issue requests.
    pub duration: Duration,
    /// `Prefer: wait=N` seconds.
    pub wait_secs: u64,
    /// Client-side deadline of one request.
    pub timeout: Duration,
    /// Most requests (and connections) open at once.
    pub max_in_flight: usize,
    /// Where to write one CSV line per request, if anywhere.
    pub samples: Option<PathBuf>,
}

/// Latency figures of one run, in ms.
#[derive(Debug, Clone, Serialize)]
pub struct CommandReport {
    /// Target rate, requests/s.
    pub target_rate: f64,
    /// Requests issued.
    pub sent: usize,
    /// 200 responses whose `X-Kumo-Command-Status` was `acked`.
    pub acked: usize,
    /// 200 responses with another status (the wait ran out).
    pub not_acked: usize,
    /// Non-200 responses.
    pub http_errors: usize,
    /// Transport failures and client timeouts.
    pub failed: usize,
    /// First error seen, for diagnosis.
    pub first_error: Option<String>,
    /// Wall time from the first scheduled request to the last response, in s.
    pub secs: f64,
    /// Latency percentiles of acked requests, in ms.
    pub p50_ms: f64,
    /// See `p50_ms`.
    pub p90_ms: f64,
    /// See `p50_ms`.
    pub p99_ms: f64,
    /// See `p50_ms`.
    pub max_ms: f64,
    /// Mean latency of acked requests, in ms.
    pub mean_ms: f64,
    /// Wall-clock time (Unix s) of the first scheduled request.
    pub started_unix: f64,
}

enum Outcome {
    Acked(f64),
    NotAcked,
    Http(u16),
    Failed(String),
}

impl Outcome {
    /// The outcome's column in the samples file.
    fn label(&self) -> String {
        match self {
            Outcome::Acked(_) => "acked".into(),
            Outcome::NotAcked => "not_acked".into(),
            Outcome::Http(code) => format!("http_{code}"),
            Outcome::Failed(_) => "failed".into(),
        }
    }
}

/// One request as the samples file records it.
struct Sample {
    /// Scheduled start, s after the first scheduled request.
    offset: f64,
    /// Index of the request (its appliance is `i mod appliances`).
    index: usize,
    /// Scheduled start to the end of the response (or the failure), ms.
    ms: f64,
    outcome: Outcome,
    /// The bridge's `X-Kumo-Command-Id`: the command was accepted (stored).
    command_id: Option<String>,
}

/// Runs the plan and returns the figures.
pub async fn run(plan: CommandPlan) -> Result<CommandReport, CommandError> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(plan.max_in_flight)
        .tcp_nodelay(true)
        .timeout(plan.timeout)
        .build()?;
    let slots = Arc::new(tokio::sync::Semaphore::new(plan.max_in_flight.max(1)));
    let plan = Arc::new(plan);
    let total = (plan.rate * plan.duration.as_secs_f64()).round() as usize;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let started = Instant::now();
    let started_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    let t0 = tokio::time::Instant::now();
    for i in 0..total {
        let at = t0 + Duration::from_secs_f64(i as f64 / plan.rate);
        tokio::time::sleep_until(at).await;
        let (client, plan, tx) = (client.clone(), plan.clone(), tx.clone());
        let slots = slots.clone();
        tokio::spawn(async move {
            // The semaphore is never closed, so acquiring only waits.
            let Ok(_slot) = slots.acquire_owned().await else {
                return;
            };
            let appliance = &plan.appliances[i % plan.appliances.len()];
            let scheduled = at.into_std();
            let (outcome, command_id) = one(&client, &plan, appliance, scheduled).await;
            let _ = tx.send(Sample {
                offset: (at - t0).as_secs_f64(),
                index: i,
                ms: scheduled.elapsed().as_secs_f64() * 1000.0,
                outcome,
                command_id,
            });
        });
    }
    drop(tx);
    let mut report = CommandReport {
        target_rate: plan.rate,
        sent: total,
        acked: 0,
        not_acked: 0,
        http_errors: 0,
        failed: 0,
        first_error: None,
        secs: 0.0,
        p50_ms: 0.0,
        p90_ms: 0.0,
        p99_ms: 0.0,
        max_ms: 0.0,
        mean_ms: 0.0,
        started_unix,
    };
    let mut latencies = Vec::with_capacity(total);
    let mut samples = Vec::with_capacity(if plan.samples.is_some() { total } else { 0 });
    while let Some(sample) = rx.recv().await {
        if plan.samples.is_some() {
            let ms = match sample.outcome {
                Outcome::Acked(ms) => ms,
                _ => sample.ms,
            };
            samples.push(SampleRow {
                offset: sample.offset,
                index: sample.index,
                ms,
                outcome: sample.outcome.label(),
                command_id: sample.command_id.clone().unwrap_or_default(),
            });
        }
        match sample.outcome {
            Outcome::Acked(ms) => {
                report.acked += 1;
                latencies.push(ms);
            }
            Outcome::NotAcked => report.not_acked += 1,
            Outcome::Http(code) => {
                report.http_errors += 1;
                report.first_error.get_or_insert(format!("HTTP {code}"));
            }
            Outcome::Failed(e) => {
                report.failed += 1;
                report.first_error.get_or_insert(e);
            }
        }
    }
    report.secs = started.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| -> f64 {
        if latencies.is_empty() {
            return 0.0;
        }
        let i = ((p * latencies.len() as f64).ceil() as usize).clamp(1, latencies.len());
        latencies[i - 1]
    };
    report.p50_ms = pct(0.50);
    report.p90_ms = pct(0.90);
    report.p99_ms = pct(0.99);
    report.max_ms = latencies.last().copied().unwrap_or(0.0);
    report.mean_ms = latencies.iter().sum::<f64>() / latencies.len().max(1) as f64;
    if let Some(path) = &plan.samples {
        write_samples(path, started_unix, &plan.appliances, &mut samples)
            .map_err(|source| CommandError::Samples(path.clone(), source))?;
    }
    Ok(report)
}

/// Why a run could not be made or recorded.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The HTTP client could not be built.
    #[error("building the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    /// The samples file could not be written.
    #[error("writing {0}: {1}")]
    Samples(PathBuf, #[source] std::io::Error),
}

/// One line of the samples file.
struct SampleRow {
    offset: f64,
    index: usize,
    ms: f64,
    outcome: String,
    /// Empty when the bridge did not accept the command (or did not say).
    command_id: String,
}

/// Writes `unix_s,latency_ms,outcome,appliance,command_id` per request, in
/// scheduled order.
fn write_samples(
    path: &std::path::Path,
    started_unix: f64,
    appliances: &[String],
    samples: &mut [SampleRow],
) -> std::io::Result<()> {
    samples.sort_by(|a, b| a.offset.total_cmp(&b.offset));
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(out, "unix_s,latency_ms,outcome,appliance,command_id")?;
    for r in samples.iter() {
        let appliance = &appliances[r.index % appliances.len()];
        writeln!(
            out,
            "{:.3},{:.2},{},{appliance},{}",
            started_unix + r.offset,
            r.ms,
            r.outcome,
            r.command_id
        )?;
    }
    out.flush()
}

/// Sends one command: its outcome and the id the bridge gave it, if any.
async fn one(
    client: &reqwest::Client,
    plan: &CommandPlan,
    appliance: &str,
    scheduled: Instant,
) -> (Outcome, Option<String>) {
    let url = format!("{}/1/appliances/{appliance}/light", plan.base);
    let sent = client
        .post(url)
        .bearer_auth(&plan.token)
        .header("Prefer", format!("wait={}", plan.wait_secs))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("button=on")
        .send()
        .await;
    let response = match sent {
        Ok(r) => r,
        Err(e) => return (Outcome::Failed(e.to_string()), None),
    };
    let status = response.status().as_u16();
    let command_id = response
        .headers()
        .get("x-kumo-command-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let acked = response
        .headers()
        .get("x-kumo-command-status")
        .is_some_and(|v| v.as_bytes() == b"acked");
    // The body is part of the round trip.
    if let Err(e) = response.bytes().await {
        return (Outcome::Failed(e.to_string()), command_id);
    }
    let ms = scheduled.elapsed().as_secs_f64() * 1000.0;
    let outcome = match (status, acked) {
        (200, true) => Outcome::Acked(ms),
        (200, false) => Outcome::NotAcked,
        (code, _) => Outcome::Http(code),
    };
    (outcome, command_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_samples_file_names_each_command_the_bridge_accepted_in_scheduled_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("commands.csv");
        let row = |offset: f64, index: usize, outcome: &str, id: &str| SampleRow {
            offset,
            index,
            ms: 12.5,
            outcome: outcome.into(),
            command_id: id.into(),
        };
        let mut rows = vec![
            row(0.5, 1, "failed", ""),
            row(0.0, 0, "acked", "c-0"),
            row(1.0, 2, "not_acked", "c-2"),
        ];
        let appliances = ["a".to_string(), "b".to_string()];
        write_samples(&path, 100.0, &appliances, &mut rows).expect("written");
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(
            text,
            "unix_s,latency_ms,outcome,appliance,command_id\n\
             100.000,12.50,acked,a,c-0\n\
             100.500,12.50,failed,b,\n\
             101.000,12.50,not_acked,a,c-2\n"
        );
    }
}
