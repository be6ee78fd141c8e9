//! Prometheus metrics: request counts and latency per route, plus gauges read
//! from the database at scrape time (pending commands, devices online).
//!
//! Served at `/metrics` on a listener of their own (`bridge.metrics_listen`),
//! never on the public REST port: they have no authentication.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::error::ApiResult;

/// (method, route pattern, status).
type RequestKey = (String, String, u16);

/// Per (method, route, status): count and total seconds.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<RequestKey, (u64, f64)>>,
}

impl Metrics {
    fn observe(&self, method: &str, route: &str, status: u16, secs: f64) {
        // A poisoned lock only means a panic elsewhere mid-update; counts stay usable.
        let mut map = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        let entry = map
            .entry((method.to_string(), route.to_string(), status))
            .or_default();
        entry.0 += 1;
        entry.1 += secs;
    }

    fn render_requests(&self, out: &mut String) {
        let map = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        out.push_str("# HELP kumo_bridge_http_requests_total HTTP requests served.\n");
        out.push_str("# TYPE kumo_bridge_http_requests_total counter\n");
        for ((method, route, status), (count, _)) in map.iter() {
            let _ = writeln!(
                out,
                "kumo_bridge_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {count}"
            );
        }
        out.push_str(
            "# HELP kumo_bridge_http_request_seconds_total Time spent serving requests.\n",
        );
        out.push_str("# TYPE kumo_bridge_http_request_seconds_total counter\n");
        for ((method, route, status), (_, secs)) in map.iter() {
            let _ = writeln!(
                out,
                "kumo_bridge_http_request_seconds_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {secs}"
            );
        }
    }
}

/// Middleware: counts every request under its route pattern (never the raw
/// path, which would put ids into label values).
pub async fn track(State(metrics): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |m| m.as_str())
        .to_string();
    let method = req.method().as_str().to_string();
    let started = Instant::now();
    let response = next.run(req).await;
    metrics.observe(
        &method,
        &route,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

/// What `/metrics` reads: request counters, the database, broker connections.
#[derive(Clone)]
pub struct Sources {
    pub metrics: Arc<Metrics>,
    pub pool: deadpool_postgres::Pool,
    /// The REST API's own pool, when it has one (`bridge.api_pool_size`).
    pub api_pool: Option<deadpool_postgres::Pool>,
    pub mqtt: Option<Arc<crate::mqtt::MqttStatus>>,
}

/// Serves `GET /metrics` on `listener` until `shutdown`; any other path is a 404.
pub(crate) async fn serve(listener: TcpListener, sources: Sources, shutdown: CancellationToken) {
    let app = Router::new()
        .route("/metrics", get(render))
        .with_state(sources);
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await;
    if let Err(e) = result {
        tracing::error!(error = %e, "metrics endpoint stopped");
    }
}

/// `GET /metrics` in the Prometheus text format.
pub async fn render(State(state): State<Sources>) -> ApiResult<Response> {
    let mut out = String::new();
    state.metrics.render_requests(&mut out);
    render_pool(
        "kumo_bridge_db_pool",
        "the bridge's pool (`database.pool_size`)",
        &state.pool.status(),
        &mut out,
    );
    if let Some(api) = &state.api_pool {
        render_pool(
            "kumo_bridge_api_db_pool",
            "the REST API's pool (`bridge.api_pool_size`)",
            &api.status(),
            &mut out,
        );
    }
    let client = state.pool.get().await?;
    let pending = client
        .query(
            "SELECT status, count(*) FROM commands WHERE status IN ('queued', 'sent')
             GROUP BY status",
            &[],
        )
        .await?;
    out.push_str("# HELP kumo_bridge_commands_pending Commands not yet acknowledged, by status.\n");
    out.push_str("# TYPE kumo_bridge_commands_pending gauge\n");
    for status in ["queued", "sent"] {
        let n: i64 = pending
            .iter()
            .find(|r| r.get::<_, &str>(0) == status)
            .map_or(0, |r| r.get(1));
        let _ = writeln!(
            out,
            "kumo_bridge_commands_pending{{status=\"{status}\"}} {n}"
        );
    }
    let online: i64 = client
        .query_one("SELECT count(*) FROM devices WHERE online", &[])
        .await?
        .get(0);
    out.push_str("# HELP kumo_bridge_devices_online Devices whose presence is online.\n");
    out.push_str("# TYPE kumo_bridge_devices_online gauge\n");
    let _ = writeln!(out, "kumo_bridge_devices_online {online}");
    if let Some(mqtt) = &state.mqtt {
        render_mqtt(mqtt, &mut out);
    }
    Ok(([(CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response())
}

/// A database pool as this request found it (before taking a connection).
fn render_pool(name: &str, which: &str, status: &deadpool_postgres::Status, out: &mut String) {
    let in_use = status.size.saturating_sub(status.available);
    let _ = writeln!(
        out,
        "# HELP {name}_connections Database connections of {which}, by state.\n\
         # TYPE {name}_connections gauge\n\
         {name}_connections{{state=\"in_use\"}} {in_use}\n\
         {name}_connections{{state=\"idle\"}} {}\n\
         # HELP {name}_max Most connections {which} opens.\n\
         # TYPE {name}_max gauge\n\
         {name}_max {}\n\
         # HELP {name}_waiting Tasks waiting for a connection of {which}.\n\
         # TYPE {name}_waiting gauge\n\
         {name}_waiting {}",
        status.available, status.max_size, status.waiting
    );
}

fn render_mqtt(mqtt: &crate::mqtt::MqttStatus, out: &mut String) {
    use std::sync::atomic::Ordering::Relaxed;
    out.push_str(
        "# HELP kumo_bridge_broker_connected Whether the bridge is connected to a broker node.\n",
    );
    out.push_str("# TYPE kumo_bridge_broker_connected gauge\n");
    for n in &mqtt.nodes {
        let _ = writeln!(
            out,
            "kumo_bridge_broker_connected{{node=\"{}\"}} {}",
            n.addr,
            u8::from(n.connected())
        );
    }
    for (name, help, v) in [
        (
            "kumo_bridge_mqtt_messages_total",
            "Messages received from broker nodes.",
            &mqtt.received,
        ),
        (
            "kumo_bridge_mqtt_malformed_total",
            "Messages dropped as malformed.",
            &mqtt.malformed,
        ),
        (
            "kumo_bridge_commands_published_total",
            "Command publishes acknowledged by a node.",
            &mqtt.commands_sent,
        ),
        (
            "kumo_bridge_mqtt_connections_lost_total",
            "Established connections to broker nodes that failed (keepalive, reset, node gone).",
            &mqtt.connections_lost,
        ),
        (
            "kumo_bridge_reports_stored_total",
            "Device reports (state, presence, acks, meter properties) committed.",
            &mqtt.reports_stored,
        ),
        (
            "kumo_bridge_report_batches_total",
            "Transactions that committed device reports.",
            &mqtt.report_batches,
        ),
    ] {
        render_counter(out, name, help, v);
    }
    render_seconds(
        out,
        "kumo_bridge_report_batch_seconds_total",
        "Time spent committing device reports.",
        &mqtt.report_batch_micros,
    );
    let lanes = [("control", &mqtt.control), ("data", &mqtt.data)];
    let waiting: u64 = lanes
        .iter()
        .map(|(_, l)| l.unacknowledged.load(Relaxed))
        .sum();
    let _ = writeln!(
        out,
        "# HELP kumo_bridge_mqtt_unacknowledged QoS 1 messages received from nodes and not yet \
         acknowledged (waiting for the database).\n\
         # TYPE kumo_bridge_mqtt_unacknowledged gauge\n\
         kumo_bridge_mqtt_unacknowledged {waiting}"
    );
    for (name, kind, help, read) in [
        (
            "kumo_bridge_mqtt_lane_unacknowledged",
            "gauge",
            "QoS 1 messages not yet acknowledged, by connection lane.",
            (|l| l.unacknowledged.load(Relaxed).to_string())
                as fn(&crate::mqtt::LaneStatus) -> String,
        ),
        (
            "kumo_bridge_mqtt_acknowledged_total",
            "counter",
            "QoS 1 messages acknowledged to their node once durable, by connection lane.",
            |l| l.acknowledged.load(Relaxed).to_string(),
        ),
        (
            "kumo_bridge_mqtt_ack_wait_seconds_total",
            "counter",
            "Time from a QoS 1 message's arrival to its acknowledgement (in arrival order: \
             a slow message holds back those behind it), by connection lane.",
            |l| (l.ack_wait_micros.load(Relaxed) as f64 / 1e6).to_string(),
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (lane, status) in lanes {
            let _ = writeln!(out, "{name}{{lane=\"{lane}\"}} {}", read(status));
        }
    }
    render_readings(&mqtt.readings, out);
}

/// The reading writer's counters.
fn render_readings(stats: &crate::ingest::IngestStats, out: &mut String) {
    for (name, help, v) in [
        (
            "kumo_bridge_readings_stored_total",
            "Sensor and meter readings committed (repeats skipped are not counted).",
            &stats.stored,
        ),
        (
            "kumo_bridge_reading_batches_total",
            "Inserts that committed readings.",
            &stats.batches,
        ),
        (
            "kumo_bridge_reading_repeat_batches_total",
            "Reading inserts that held readings already stored (a device's or a node's resend).",
            &stats.repeat_batches,
        ),
    ] {
        render_counter(out, name, help, v);
    }
    render_seconds(
        out,
        "kumo_bridge_reading_write_seconds_total",
        "Time from a batch of readings being complete to its commit (waiting for a \
         connection, retries and repeats included).",
        &stats.write_micros,
    );
}

/// An unlabelled counter with its help text.
fn render_counter(out: &mut String, name: &str, help: &str, v: &std::sync::atomic::AtomicU64) {
    let v = v.load(std::sync::atomic::Ordering::Relaxed);
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
    );
}

/// A counter of seconds, kept in microseconds.
fn render_seconds(out: &mut String, name: &str, help: &str, micros: &std::sync::atomic::AtomicU64) {
    let secs = micros.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1e6;
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} counter\n{name} {secs}"
    );
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering::Relaxed;

    use super::*;

    #[test]
    fn report_and_acknowledgement_figures_are_rendered() {
        let mqtt = crate::mqtt::MqttStatus::new(&["localhost:1883".to_string()]);
        mqtt.reports_stored.store(300, Relaxed);
        mqtt.report_batches.store(2, Relaxed);
        mqtt.report_batch_micros.store(1_500_000, Relaxed);
        mqtt.control.unacknowledged.store(3, Relaxed);
        mqtt.data.unacknowledged.store(4, Relaxed);
        mqtt.data.acknowledged.store(10, Relaxed);
        mqtt.data.ack_wait_micros.store(2_500_000, Relaxed);
        mqtt.readings.stored.store(9_000, Relaxed);
        mqtt.readings.batches.store(2, Relaxed);
        mqtt.readings.repeat_batches.store(1, Relaxed);
        mqtt.readings.write_micros.store(250_000, Relaxed);
        let mut out = String::new();
        render_mqtt(&mqtt, &mut out);
        for line in [
            "kumo_bridge_reports_stored_total 300",
            "kumo_bridge_report_batches_total 2",
            "kumo_bridge_report_batch_seconds_total 1.5",
            "kumo_bridge_mqtt_unacknowledged 7",
            "# TYPE kumo_bridge_mqtt_unacknowledged gauge",
            "kumo_bridge_mqtt_lane_unacknowledged{lane=\"control\"} 3",
            "kumo_bridge_mqtt_lane_unacknowledged{lane=\"data\"} 4",
            "kumo_bridge_mqtt_acknowledged_total{lane=\"data\"} 10",
            "kumo_bridge_mqtt_ack_wait_seconds_total{lane=\"data\"} 2.5",
            "kumo_bridge_mqtt_ack_wait_seconds_total{lane=\"control\"} 0",
            "kumo_bridge_readings_stored_total 9000",
            "kumo_bridge_reading_batches_total 2",
            "kumo_bridge_reading_repeat_batches_total 1",
            "kumo_bridge_reading_write_seconds_total 0.25",
        ] {
            assert!(out.lines().any(|l| l == line), "{line} in\n{out}");
        }
    }
}
