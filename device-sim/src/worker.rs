//! How `kumo sim` splits a fleet over worker processes and talks to them.
//!
//! The parent writes one [`WorkerSpec`] line to a worker's stdin and keeps stdin
//! open; closing it asks the worker to shut down cleanly. The worker answers on
//! stdout with JSON lines: [`WorkerReport::Progress`] snapshots and one final
//! [`WorkerReport::Done`] (or [`WorkerReport::Failed`]). This module owns the
//! protocol and the split; spawning processes is the CLI's job.

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::settings::Settings;
use crate::stats::Summary;

/// Devices one process can hold: the per-process open-file limit here is 20,000
/// and each device holds one socket, with headroom for everything else.
pub const MAX_DEVICES_PER_PROCESS: u64 = 19_000;

/// One worker's share of the fleet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerSpec {
    pub settings: Settings,
    pub ca_pem: String,
}

impl WorkerSpec {
    /// The spec as one JSON line (with the newline), as a worker reads it.
    pub fn to_line(&self) -> Result<String, serde_json::Error> {
        let mut line = serde_json::to_string(self)?;
        line.push('\n');
        Ok(line)
    }
}

/// One line from a worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "report", rename_all = "snake_case")]
pub enum WorkerReport {
    Progress { summary: Summary },
    Done { summary: Summary },
    Failed { error: String },
}

impl WorkerReport {
    /// The report as one JSON line (with the newline).
    pub fn to_line(&self) -> String {
        let mut line = serde_json::to_string(self).unwrap_or_else(|e| {
            format!(r#"{{"report":"failed","error":"cannot encode report: {e}"}}"#)
        });
        line.push('\n');
        line
    }

    /// Parses one line; `None` for anything else (stray output is ignored).
    pub fn parse(line: &str) -> Option<WorkerReport> {
        serde_json::from_str(line).ok()
    }
}

/// Splits `settings` into per-process shares of at most `per_process` devices,
/// as equal as possible, each with its slice of the index space and of the ramp.
pub fn split(settings: &Settings, per_process: u64) -> Vec<Settings> {
    let per_process = per_process.max(1);
    let n = settings.devices.div_ceil(per_process).max(1);
    let base = settings.devices / n;
    let extra = settings.devices % n;
    let mut next = settings.first_index;
    (0..n)
        .map(|i| {
            let devices = base + u64::from(i < extra);
            let share = Settings {
                devices,
                first_index: next,
                ramp_per_sec: settings.ramp_per_sec / n as f64,
                ..settings.clone()
            };
            next += devices;
            share
        })
        .collect()
}

/// Serializes a summary for humans and benchmarks.
pub fn summary_json(summary: &Summary) -> String {
    serde_json::to_string_pretty(summary).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

/// The worker side: reads the spec from `input`, runs the fleet, reports on
/// `output`. Ends when `input` closes, `shutdown` fires or the fleet's duration
/// passes.
pub async fn run_worker<R, W>(
    input: R,
    mut output: W,
    shutdown: CancellationToken,
) -> std::io::Result<()>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin,
{
    let mut lines = BufReader::new(input).lines();
    let spec = match lines.next_line().await? {
        Some(line) => {
            serde_json::from_str::<WorkerSpec>(&line).map_err(|e| format!("bad worker spec: {e}"))
        }
        None => Err("no worker spec on stdin".to_owned()),
    };
    let spec = match spec {
        Ok(s) => s,
        Err(error) => {
            output
                .write_all(WorkerReport::Failed { error }.to_line().as_bytes())
                .await?;
            return output.flush().await;
        }
    };
    let stop = shutdown.child_token();
    let on_eof = stop.clone();
    tokio::spawn(async move {
        // Any further input is ignored; EOF (parent gone or done) means stop.
        while let Ok(Some(_)) = lines.next_line().await {}
        on_eof.cancel();
    });

    let (tx, mut rx) = mpsc::channel::<Summary>(4);
    let fleet = tokio::spawn(crate::run_fleet_with(
        spec.settings,
        spec.ca_pem,
        stop,
        move |s| {
            // A slow parent loses progress lines, never blocks the fleet.
            let _ = tx.try_send(s.clone());
        },
    ));
    while let Some(summary) = rx.recv().await {
        output
            .write_all(WorkerReport::Progress { summary }.to_line().as_bytes())
            .await?;
        output.flush().await?;
    }
    let report = match fleet.await {
        Ok(Ok(summary)) => WorkerReport::Done { summary },
        Ok(Err(e)) => WorkerReport::Failed {
            error: e.to_string(),
        },
        Err(e) => WorkerReport::Failed {
            error: format!("fleet task failed: {e}"),
        },
    };
    output.write_all(report.to_line().as_bytes()).await?;
    output.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fleet_splits_into_near_equal_shares_that_cover_every_index_once() {
        let s = Settings {
            devices: 40_001,
            first_index: 5,
            ramp_per_sec: 300.0,
            ..Default::default()
        };
        let shares = split(&s, MAX_DEVICES_PER_PROCESS);
        assert_eq!(shares.len(), 3);
        assert_eq!(shares.iter().map(|s| s.devices).sum::<u64>(), 40_001);
        assert!(shares.iter().all(|s| s.devices <= MAX_DEVICES_PER_PROCESS));
        assert_eq!(shares[0].first_index, 5);
        for pair in shares.windows(2) {
            assert_eq!(pair[1].first_index, pair[0].first_index + pair[0].devices);
        }
        assert!((shares.iter().map(|s| s.ramp_per_sec).sum::<f64>() - 300.0).abs() < 1e-9);
        assert_eq!(
            split(
                &Settings {
                    devices: 10,
                    ..Default::default()
                },
                19_000
            )
            .len(),
            1
        );
    }

    #[test]
    fn reports_round_trip_as_lines() {
        let r = WorkerReport::Done {
            summary: Summary {
                devices: 3,
                ..Default::default()
            },
        };
        let line = r.to_line();
        assert!(line.ends_with('\n') && !line.trim_end().contains('\n'));
        assert_eq!(WorkerReport::parse(line.trim_end()), Some(r));
        assert_eq!(WorkerReport::parse("some log line"), None);
    }

    #[tokio::test]
    async fn a_worker_without_a_spec_reports_failure() {
        let mut out = Vec::new();
        run_worker(&b""[..], &mut out, CancellationToken::new())
            .await
            .expect("io");
        let line = String::from_utf8(out).expect("utf8");
        assert!(matches!(
            WorkerReport::parse(line.trim_end()),
            Some(WorkerReport::Failed { .. })
        ));
    }
}
