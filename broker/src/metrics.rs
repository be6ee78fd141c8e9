//! The node's counters and their Prometheus text rendering.
//!
//! Hot-path counters (messages, bytes) are plain atomics; outcome counters keyed by
//! a reason label sit behind a mutex because they move at handshake rate, not
//! message rate. Rendering is hand-written text format 0.0.4.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds (seconds) of the delivery latency histogram buckets.
const LATENCY_BUCKETS: [f64; 10] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.05, 0.25,
];

/// Every counter a node exports.
#[derive(Debug, Default)]
pub struct Metrics {
    pub connections_open: AtomicU64,
    pub sessions_open: AtomicU64,
    pub handshakes_in_flight: AtomicU64,
    pub messages_in: AtomicU64,
    pub bytes_in: AtomicU64,
    pub messages_out: AtomicU64,
    pub bytes_out: AtomicU64,
    pub dropped_outbound: AtomicU64,
    /// Messages dropped from a parked or resumed persistent session over its cap.
    pub dropped_session: AtomicU64,
    /// Persistent sessions resumed with session_present=1.
    pub sessions_resumed: AtomicU64,
    /// Routed messages an integration's filters matched about a device its account does not own.
    pub integration_filtered: AtomicU64,
    /// Device publishes held back while service sessions were behind.
    pub publishes_held: AtomicU64,
    /// Device QoS 1 publishes acknowledged after a service session confirmed them.
    pub publishes_confirmed: AtomicU64,
    /// Device QoS 1 publishes acknowledged without a confirmation: past their
    /// deadline, no service session attended their topic any more.
    pub confirm_timeouts: AtomicU64,
    /// Device QoS 1 publishes routed again, unconfirmed past their deadline.
    pub confirm_resends: AtomicU64,
    /// Deadlines of unconfirmed device publishes moved on without a resend,
    /// the cloud being behind on their class.
    pub confirm_deferrals: AtomicU64,
    /// Retained messages the node holds (updated by the periodic sweep).
    pub retained_messages: AtomicU64,
    /// Messages whose Message Expiry Interval passed before they could be sent.
    pub expired: AtomicU64,
    /// Connections refused before TLS work because their handshake could not finish in time.
    pub connects_shed: AtomicU64,
    /// Keepalive deadlines passed while the client's bytes already waited
    /// in the socket (the node read late; the session stays).
    pub keepalive_late_reads: AtomicU64,
    /// Messages brought in from peer nodes (see `peering`).
    pub peer_imported: AtomicU64,
    /// Commands not passed to peer links because their device is connected here.
    pub peer_export_skipped: AtomicU64,
    handshakes: Labeled,
    connects: Labeled,
    disconnects: Labeled,
    acl_denials: Labeled,
    latency_buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_ns: AtomicU64,
}

#[derive(Debug, Default)]
struct Labeled(Mutex<BTreeMap<String, u64>>);

impl Labeled {
    fn inc(&self, label: &str) {
        // A poisoned lock only means another thread panicked mid-increment; the map is still usable.
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *map.entry(label.to_string()).or_default() += 1;
    }

    fn get(&self, label: &str) -> u64 {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.get(label).copied().unwrap_or(0)
    }

    fn render(&self, out: &mut String, name: &str, help: &str, label: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        for (value, count) in map.iter() {
            let _ = writeln!(out, "{name}{{{label}=\"{value}\"}} {count}");
        }
    }
}

impl Metrics {
    /// A TLS handshake ended with `outcome` (`ok` or a refusal reason).
    pub fn handshake(&self, outcome: &str) {
        self.handshakes.inc(outcome);
    }

    /// An MQTT CONNECT ended with `outcome` (`accepted` or a refusal reason).
    pub fn connect(&self, outcome: &str) {
        self.connects.inc(outcome);
    }

    /// A session ended for `reason`.
    pub fn disconnect(&self, reason: &str) {
        self.disconnects.inc(reason);
    }

    /// A publish or subscribe was refused.
    pub fn acl_denied(&self, action: &str, reason: &str) {
        self.acl_denials
            .inc(&format!("{action}\",reason=\"{reason}"));
    }

    /// Records router-to-socket latency of one delivered message.
    pub fn delivery_latency(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = LATENCY_BUCKETS.iter().position(|b| secs <= *b) {
            self.latency_buckets[i].fetch_add(1, Relaxed);
        }
        self.latency_count.fetch_add(1, Relaxed);
        self.latency_sum_ns.fetch_add(d.as_nanos() as u64, Relaxed);
    }

    /// Count of handshakes with this outcome (tests and health checks).
    pub fn handshakes_with(&self, outcome: &str) -> u64 {
        self.handshakes.get(outcome)
    }

    /// Count of CONNECTs with this outcome.
    pub fn connects_with(&self, outcome: &str) -> u64 {
        self.connects.get(outcome)
    }

    /// Count of sessions ended for this reason.
    pub fn disconnects_with(&self, reason: &str) -> u64 {
        self.disconnects.get(reason)
    }

    /// Count of ACL denials for an action and reason.
    pub fn denials_with(&self, action: &str, reason: &str) -> u64 {
        self.acl_denials
            .get(&format!("{action}\",reason=\"{reason}"))
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let gauges = [
            (
                "kumo_broker_connections_open",
                "TCP connections held",
                &self.connections_open,
            ),
            (
                "kumo_broker_sessions_open",
                "MQTT sessions established",
                &self.sessions_open,
            ),
            (
                "kumo_broker_handshakes_in_flight",
                "TLS handshakes in progress",
                &self.handshakes_in_flight,
            ),
            (
                "kumo_broker_retained_messages",
                "retained messages held (as of the last expiry sweep)",
                &self.retained_messages,
            ),
        ];
        for (name, help, v) in gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {}",
                v.load(Relaxed)
            );
        }
        let counters = [
            (
                "kumo_broker_messages_in_total",
                "PUBLISH packets received",
                &self.messages_in,
            ),
            (
                "kumo_broker_bytes_in_total",
                "MQTT bytes received",
                &self.bytes_in,
            ),
            (
                "kumo_broker_messages_out_total",
                "PUBLISH packets sent",
                &self.messages_out,
            ),
            (
                "kumo_broker_bytes_out_total",
                "MQTT bytes sent",
                &self.bytes_out,
            ),
            (
                "kumo_broker_outbound_dropped_total",
                "messages dropped for a full client queue",
                &self.dropped_outbound,
            ),
            (
                "kumo_broker_session_dropped_total",
                "messages dropped from a persistent session over its cap",
                &self.dropped_session,
            ),
            (
                "kumo_broker_sessions_resumed_total",
                "persistent service sessions resumed",
                &self.sessions_resumed,
            ),
            (
                "kumo_broker_integration_filtered_total",
                "routed messages withheld from an integration (device not its account's)",
                &self.integration_filtered,
            ),
            (
                "kumo_broker_publishes_held_total",
                "device publishes held back while service sessions were behind",
                &self.publishes_held,
            ),
            (
                "kumo_broker_publishes_confirmed_total",
                "device QoS 1 publishes acknowledged after a service session acknowledged them",
                &self.publishes_confirmed,
            ),
            (
                "kumo_broker_confirm_timeouts_total",
                "device QoS 1 publishes acknowledged without a service's acknowledgement: unconfirmed past confirm_timeout_secs, with no service session connected or parked within its hold taking their topic",
                &self.confirm_timeouts,
            ),
            (
                "kumo_broker_confirm_resends_total",
                "device QoS 1 publishes routed again, no service having acknowledged them within their deadline",
                &self.confirm_resends,
            ),
            (
                "kumo_broker_confirm_deferrals_total",
                "deadlines of unconfirmed device QoS 1 publishes moved on without a resend while the cloud was behind on their class",
                &self.confirm_deferrals,
            ),
            (
                "kumo_broker_messages_expired_total",
                "messages dropped because their Message Expiry Interval passed",
                &self.expired,
            ),
            (
                "kumo_broker_connects_shed_total",
                "connections refused after their ClientHello, before TLS work, because the handshakes ahead would outlast the deadline",
                &self.connects_shed,
            ),
            (
                "kumo_broker_keepalive_late_reads_total",
                "keepalive deadlines passed with the client's bytes already in the socket, unread by a busy node: the session is kept",
                &self.keepalive_late_reads,
            ),
            (
                "kumo_broker_peer_imported_total",
                "messages brought in from peer nodes for this node's integrations and devices",
                &self.peer_imported,
            ),
            (
                "kumo_broker_peer_export_skipped_total",
                "commands not passed to peer nodes because their device is connected to this node",
                &self.peer_export_skipped,
            ),
        ];
        for (name, help, v) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                v.load(Relaxed)
            );
        }
        self.handshakes.render(
            &mut out,
            "kumo_broker_handshakes_total",
            "TLS handshakes by outcome",
            "outcome",
        );
        self.connects.render(
            &mut out,
            "kumo_broker_connects_total",
            "MQTT CONNECTs by outcome",
            "outcome",
        );
        self.disconnects.render(
            &mut out,
            "kumo_broker_disconnects_total",
            "sessions ended by reason",
            "reason",
        );
        self.acl_denials.render(
            &mut out,
            "kumo_broker_acl_denials_total",
            "refused publishes and subscribes",
            "action",
        );
        self.render_latency(&mut out);
        out
    }

    fn render_latency(&self, out: &mut String) {
        let name = "kumo_broker_delivery_latency_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} router to client socket latency\n# TYPE {name} histogram"
        );
        let mut cumulative = 0;
        for (bound, count) in LATENCY_BUCKETS.iter().zip(&self.latency_buckets) {
            cumulative += count.load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let total = self.latency_count.load(Relaxed);
        let sum = self.latency_sum_ns.load(Relaxed) as f64 / 1e9;
        let _ = writeln!(
            out,
            "{name}_bucket{{le=\"+Inf\"}} {total}\n{name}_sum {sum}\n{name}_count {total}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labeled_counters_render_as_prometheus_text() {
        let m = Metrics::default();
        m.handshake("expired");
        m.handshake("expired");
        m.acl_denied("subscribe", "wildcard");
        m.delivery_latency(Duration::from_micros(80));
        let text = m.render();
        assert!(
            text.contains("kumo_broker_handshakes_total{outcome=\"expired\"} 2"),
            "{text}"
        );
        assert!(
            text.contains(
                "kumo_broker_acl_denials_total{action=\"subscribe\",reason=\"wildcard\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("kumo_broker_delivery_latency_seconds_bucket{le=\"0.0001\"} 1"),
            "{text}"
        );
        assert_eq!(m.denials_with("subscribe", "wildcard"), 1);
    }
}
