//! Fleet-wide counters, the command latency histogram and the JSON summary.
//!
//! Devices bump lock-free atomics; snapshots turn them into a [`Summary`], which is
//! also what worker processes send to the `kumo sim` parent and what it merges.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// Why a connection attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureReason {
    /// TCP connection refused.
    Refused,
    /// TCP, TLS or CONNACK did not complete in time.
    Timeout,
    /// TLS handshake failed (bad certificate, unknown CA, revoked).
    Tls,
    /// The broker answered CONNACK with a refusal.
    MqttRefused,
    /// Another socket error.
    Io,
    /// Unexpected packets or a broken session.
    Protocol,
}

impl FailureReason {
    const ALL: [FailureReason; 6] = [
        FailureReason::Refused,
        FailureReason::Timeout,
        FailureReason::Tls,
        FailureReason::MqttRefused,
        FailureReason::Io,
        FailureReason::Protocol,
    ];

    /// Short label for progress lines and JSON keys.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::Refused => "refused",
            FailureReason::Timeout => "timeout",
            FailureReason::Tls => "tls",
            FailureReason::MqttRefused => "mqtt_refused",
            FailureReason::Io => "io",
            FailureReason::Protocol => "protocol",
        }
    }
}

/// Upper bounds (ms) of the latency buckets; the last bucket is open.
pub const LATENCY_BOUNDS_MS: [u64; 13] =
    [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000];

/// Live counters shared by every device of one process.
#[derive(Debug)]
pub struct Stats {
    started: Instant,
    pub devices: AtomicU64,
    pub connected: AtomicU64,
    pub connecting: AtomicU64,
    pub peak_connected: AtomicU64,
    /// Milliseconds from start until every device had connected once (0 = not yet).
    pub all_connected_ms: AtomicU64,
    pub ever_connected: AtomicU64,
    pub connects: AtomicU64,
    failures: [AtomicU64; 6],
    drop_reasons: [AtomicU64; 6],
    pub drops: AtomicU64,
    pub chaos_disconnects: AtomicU64,
    pub chaos_kills: AtomicU64,
    pub burst_drops: AtomicU64,
    /// Connection attempts moved to the next node after a failed one.
    pub failovers: AtomicU64,
    /// Connection attempts after a device's first (after a failure or a drop).
    pub retries: AtomicU64,
    /// Connections whose TLS session was resumed (no certificate signatures).
    pub tls_resumed: AtomicU64,
    pub published: AtomicU64,
    /// Unacknowledged QoS 1 telemetry sent again (after a reconnect).
    pub resent: AtomicU64,
    pub publish_dropped: AtomicU64,
    pub malformed_sent: AtomicU64,
    pub commands_received: AtomicU64,
    pub commands_failed: AtomicU64,
    pub commands_ignored: AtomicU64,
    pub commands_unparseable: AtomicU64,
    pub acks_sent: AtomicU64,
    pub credential_errors: AtomicU64,
    /// Certificates renewed over a live session.
    pub renewals: AtomicU64,
    /// Renewal requests answered with a failure (or not answered in time).
    pub renewals_failed: AtomicU64,
    /// Report ticks a device's task ran 10 s or more after their time.
    pub late_reports: AtomicU64,
    /// The latest a device's report tick ran, ms after its time.
    pub report_late_max_ms: AtomicU64,
    /// The longest a 100 ms timer of the process's own probe ran late, ms:
    /// how long the runtime kept a woken task waiting.
    pub stall_max_ms: AtomicU64,
    latency: [AtomicU64; LATENCY_BOUNDS_MS.len() + 1],
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

impl Stats {
    /// Zeroed counters; elapsed time counts from now.
    pub fn new() -> Self {
        Self {
            started: Instant::now(),
            devices: AtomicU64::new(0),
            connected: AtomicU64::new(0),
            connecting: AtomicU64::new(0),
            peak_connected: AtomicU64::new(0),
            all_connected_ms: AtomicU64::new(0),
            ever_connected: AtomicU64::new(0),
            connects: AtomicU64::new(0),
            failures: Default::default(),
            drop_reasons: Default::default(),
            drops: AtomicU64::new(0),
            chaos_disconnects: AtomicU64::new(0),
            chaos_kills: AtomicU64::new(0),
            burst_drops: AtomicU64::new(0),
            failovers: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            tls_resumed: AtomicU64::new(0),
            published: AtomicU64::new(0),
            resent: AtomicU64::new(0),
            publish_dropped: AtomicU64::new(0),
            malformed_sent: AtomicU64::new(0),
            commands_received: AtomicU64::new(0),
            commands_failed: AtomicU64::new(0),
            commands_ignored: AtomicU64::new(0),
            commands_unparseable: AtomicU64::new(0),
            acks_sent: AtomicU64::new(0),
            credential_errors: AtomicU64::new(0),
            renewals: AtomicU64::new(0),
            renewals_failed: AtomicU64::new(0),
            late_reports: AtomicU64::new(0),
            report_late_max_ms: AtomicU64::new(0),
            stall_max_ms: AtomicU64::new(0),
            latency: Default::default(),
        }
    }

    /// Counts a failed connection attempt.
    pub fn failed(&self, reason: FailureReason) {
        if let Some(i) = FailureReason::ALL.iter().position(|r| *r == reason) {
            self.failures[i].fetch_add(1, Relaxed);
        }
    }

    /// Counts a live connection lost without the simulator asking, by why.
    pub fn dropped(&self, reason: FailureReason) {
        self.drops.fetch_add(1, Relaxed);
        if let Some(i) = FailureReason::ALL.iter().position(|r| *r == reason) {
            self.drop_reasons[i].fetch_add(1, Relaxed);
        }
    }

    /// Counts a CONNACK; `first` if the device had never connected before.
    pub fn on_connected(&self, first: bool) {
        self.connects.fetch_add(1, Relaxed);
        let now = self.connected.fetch_add(1, Relaxed) + 1;
        self.peak_connected.fetch_max(now, Relaxed);
        if first {
            let ever = self.ever_connected.fetch_add(1, Relaxed) + 1;
            if ever == self.devices.load(Relaxed) {
                let ms = self.started.elapsed().as_millis().max(1) as u64;
                self.all_connected_ms.store(ms, Relaxed);
            }
        }
    }

    /// A device's report tick ran `late` after its time.
    pub fn report_ran(&self, late: std::time::Duration) {
        let ms = late.as_millis() as u64;
        self.report_late_max_ms.fetch_max(ms, Relaxed);
        if ms >= 10_000 {
            self.late_reports.fetch_add(1, Relaxed);
        }
    }

    /// Records one command delivery latency.
    pub fn record_latency(&self, ms: u64) {
        let i = LATENCY_BOUNDS_MS
            .iter()
            .position(|b| ms <= *b)
            .unwrap_or(LATENCY_BOUNDS_MS.len());
        self.latency[i].fetch_add(1, Relaxed);
    }

    /// A point-in-time summary of this process.
    pub fn snapshot(&self) -> Summary {
        let get = |a: &AtomicU64| a.load(Relaxed);
        let devices = get(&self.devices);
        let mem = crate::sysinfo::read();
        let elapsed = self.started.elapsed().as_secs_f64();
        let published = get(&self.published);
        let latency = Histogram {
            counts: self.latency.iter().map(get).collect(),
        };
        Summary {
            processes: 1,
            devices,
            elapsed_secs: round3(elapsed),
            connected: get(&self.connected),
            connecting: get(&self.connecting),
            peak_connected: get(&self.peak_connected),
            ever_connected: get(&self.ever_connected),
            ramp_secs: match get(&self.all_connected_ms) {
                0 => None,
                ms => Some(ms as f64 / 1000.0),
            },
            connects: get(&self.connects),
            failures: by_reason(&self.failures),
            credential_errors: get(&self.credential_errors),
            drops: get(&self.drops),
            drop_reasons: by_reason(&self.drop_reasons),
            chaos_disconnects: get(&self.chaos_disconnects),
            chaos_kills: get(&self.chaos_kills),
            burst_drops: get(&self.burst_drops),
            failovers: get(&self.failovers),
            retries: get(&self.retries),
            tls_resumed: get(&self.tls_resumed),
            published,
            resent: get(&self.resent),
            publish_dropped: get(&self.publish_dropped),
            malformed_sent: get(&self.malformed_sent),
            recent_msgs_per_sec: 0.0,
            msgs_per_sec: if elapsed > 0.0 {
                round3(published as f64 / elapsed)
            } else {
                0.0
            },
            commands_received: get(&self.commands_received),
            commands_failed: get(&self.commands_failed),
            commands_ignored: get(&self.commands_ignored),
            commands_unparseable: get(&self.commands_unparseable),
            acks_sent: get(&self.acks_sent),
            renewals: get(&self.renewals),
            renewals_failed: get(&self.renewals_failed),
            late_reports: get(&self.late_reports),
            report_late_max_ms: get(&self.report_late_max_ms),
            stall_max_ms: get(&self.stall_max_ms),
            command_latency_p50_ms: latency.quantile_ms(0.5),
            command_latency_p99_ms: latency.quantile_ms(0.99),
            command_latency: latency,
            rss_bytes: mem.rss_bytes,
            rss_per_device_bytes: mem.rss_bytes.checked_div(devices).unwrap_or(0),
            cpu_secs: round3(mem.cpu_secs),
        }
    }
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// Command delivery latency (issue `ts` → received by the device), counts per bucket
/// of [`LATENCY_BOUNDS_MS`] plus one open bucket.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    pub counts: Vec<u64>,
}

impl Histogram {
    /// Number of samples.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Upper bound (ms) of the bucket holding quantile `q`; `None` if empty or in the open bucket.
    pub fn quantile_ms(&self, q: f64) -> Option<u64> {
        let total = self.total();
        if total == 0 {
            return None;
        }
        let want = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, n) in self.counts.iter().enumerate() {
            seen += n;
            if seen >= want {
                return LATENCY_BOUNDS_MS.get(i).copied();
            }
        }
        None
    }

    fn merge(&mut self, other: &Histogram) {
        if self.counts.len() < other.counts.len() {
            self.counts.resize(other.counts.len(), 0);
        }
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
    }
}

/// What a fleet did: printed as JSON at the end, sent by workers to the parent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub processes: u64,
    pub devices: u64,
    pub elapsed_secs: f64,
    pub connected: u64,
    pub connecting: u64,
    /// Sum of each process's peak (an upper bound for the fleet's).
    pub peak_connected: u64,
    pub ever_connected: u64,
    /// Seconds until every device had connected once (slowest process).
    pub ramp_secs: Option<f64>,
    pub connects: u64,
    /// Failed connection attempts by reason.
    pub failures: BTreeMap<String, u64>,
    pub credential_errors: u64,
    /// Live connections lost without the simulator asking.
    pub drops: u64,
    /// The drops by why the link ended (the same labels as `failures`).
    #[serde(default)]
    pub drop_reasons: BTreeMap<String, u64>,
    pub chaos_disconnects: u64,
    pub chaos_kills: u64,
    pub burst_drops: u64,
    /// Connection attempts moved to the next node in the list after a failed one.
    #[serde(default)]
    pub failovers: u64,
    /// Connection attempts after a device's first (after a failure or a drop).
    #[serde(default)]
    pub retries: u64,
    /// Connections whose TLS session was resumed.
    #[serde(default)]
    pub tls_resumed: u64,
    pub published: u64,
    /// Unacknowledged QoS 1 telemetry sent again after a reconnect (not in
    /// `published`).
    #[serde(default)]
    pub resent: u64,
    /// Publishes dropped because a device's request buffer was full.
    pub publish_dropped: u64,
    pub malformed_sent: u64,
    /// Average publish rate over the run.
    pub msgs_per_sec: f64,
    /// Publish rate over the last progress period (set on progress snapshots).
    #[serde(default)]
    pub recent_msgs_per_sec: f64,
    pub commands_received: u64,
    pub commands_failed: u64,
    pub commands_ignored: u64,
    pub commands_unparseable: u64,
    pub acks_sent: u64,
    #[serde(default)]
    pub renewals: u64,
    #[serde(default)]
    pub renewals_failed: u64,
    /// Device report ticks that ran 10 s or more late (a starved simulator:
    /// its devices go quiet and nodes rightly end them by keepalive).
    #[serde(default)]
    pub late_reports: u64,
    /// The latest any report tick ran, ms (largest over processes).
    #[serde(default)]
    pub report_late_max_ms: u64,
    /// The longest any process's runtime kept a woken timer waiting, ms.
    #[serde(default)]
    pub stall_max_ms: u64,
    pub command_latency: Histogram,
    /// Upper bound of the median latency bucket, ms.
    pub command_latency_p50_ms: Option<u64>,
    /// Upper bound of the 99th-percentile latency bucket, ms.
    pub command_latency_p99_ms: Option<u64>,
    pub rss_bytes: u64,
    pub rss_per_device_bytes: u64,
    pub cpu_secs: f64,
}

impl Summary {
    /// Adds another process's summary to this one.
    pub fn merge(&mut self, o: &Summary) {
        self.processes += o.processes;
        self.devices += o.devices;
        self.elapsed_secs = self.elapsed_secs.max(o.elapsed_secs);
        self.ramp_secs = match (self.ramp_secs, o.ramp_secs) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        for (k, v) in &o.failures {
            *self.failures.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &o.drop_reasons {
            *self.drop_reasons.entry(k.clone()).or_default() += v;
        }
        self.report_late_max_ms = self.report_late_max_ms.max(o.report_late_max_ms);
        self.stall_max_ms = self.stall_max_ms.max(o.stall_max_ms);
        self.command_latency.merge(&o.command_latency);
        self.command_latency_p50_ms = self.command_latency.quantile_ms(0.5);
        self.command_latency_p99_ms = self.command_latency.quantile_ms(0.99);
        macro_rules! add {
            ($($f:ident),*) => { $( self.$f += o.$f; )* };
        }
        add!(
            connected,
            connecting,
            peak_connected,
            ever_connected,
            connects,
            credential_errors,
            drops,
            chaos_disconnects,
            chaos_kills,
            burst_drops,
            failovers,
            retries,
            tls_resumed,
            published,
            resent,
            publish_dropped,
            malformed_sent,
            msgs_per_sec,
            recent_msgs_per_sec,
            commands_received,
            commands_failed,
            commands_ignored,
            commands_unparseable,
            acks_sent,
            renewals,
            renewals_failed,
            late_reports,
            rss_bytes,
            cpu_secs
        );
        self.rss_per_device_bytes = self.rss_bytes.checked_div(self.devices).unwrap_or(0);
    }

    /// Total failed connection attempts.
    pub fn failed_total(&self) -> u64 {
        self.failures.values().sum()
    }
}

/// Counters indexed like [`FailureReason::ALL`], by label, the zeros left out.
fn by_reason(counts: &[AtomicU64; 6]) -> BTreeMap<String, u64> {
    FailureReason::ALL
        .iter()
        .zip(counts)
        .map(|(r, n)| (r, n.load(Relaxed)))
        .filter(|&(_, n)| n > 0)
        .map(|(r, n)| (r.as_str().to_owned(), n))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_quantiles_come_from_bucket_bounds() {
        let s = Stats::new();
        for ms in [0, 1, 3, 3, 4, 40, 40, 40, 40, 900] {
            s.record_latency(ms);
        }
        let h = s.snapshot().command_latency;
        assert_eq!(h.total(), 10);
        assert_eq!(h.quantile_ms(0.5), Some(5));
        assert_eq!(h.quantile_ms(0.6), Some(50));
        assert_eq!(h.quantile_ms(0.2), Some(1));
        assert_eq!(h.quantile_ms(0.99), Some(1000));
    }

    #[test]
    fn summaries_of_several_processes_add_up() {
        let a = Stats::new();
        a.devices.store(2, Relaxed);
        a.on_connected(true);
        a.failed(FailureReason::Tls);
        a.record_latency(5);
        let b = Stats::new();
        b.devices.store(3, Relaxed);
        b.failed(FailureReason::Tls);
        b.failed(FailureReason::Timeout);
        a.dropped(FailureReason::Timeout);
        b.dropped(FailureReason::Timeout);
        b.dropped(FailureReason::Io);
        let mut total = a.snapshot();
        total.recent_msgs_per_sec = 2.5;
        let mut other = b.snapshot();
        other.recent_msgs_per_sec = 4.0;
        total.merge(&other);
        // The progress line of a fleet spread over processes shows their sum.
        assert_eq!(total.recent_msgs_per_sec, 6.5);
        assert_eq!((total.processes, total.devices, total.connected), (2, 5, 1));
        assert_eq!(total.failures.get("tls"), Some(&2));
        assert_eq!(total.failed_total(), 3);
        assert_eq!(total.drops, 3);
        assert_eq!(total.drop_reasons.get("timeout"), Some(&2));
        assert_eq!(total.drop_reasons.get("io"), Some(&1));
        assert_eq!(total.command_latency.total(), 1);
    }

    #[test]
    fn the_ramp_time_is_set_when_the_last_device_first_connects() {
        let s = Stats::new();
        s.devices.store(2, Relaxed);
        s.on_connected(true);
        assert_eq!(s.snapshot().ramp_secs, None);
        s.on_connected(true);
        assert!(s.snapshot().ramp_secs.is_some());
    }
}
