//! What peering adds to a message's way: an integration connected to one node
//! receives readings from a device on the same node and from a device on a
//! peer node, and commands both, at the same rate and at the same time. Both
//! paths are timed in this one process (send → receive, one clock), so the
//! difference between them is the peer hop.
//!
//! Certificates come from the PKI directory's CA in-process: a service
//! identity that announces the two devices' owner on both nodes (as the
//! bridge does), the integration of that account, and the two devices.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kumo_certs::files::PkiDir;
use kumo_certs::{AccountId, DeviceId, IssueOptions, Issued};
use rumqttc::{
    AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS, TlsConfiguration, Transport,
};
use rustls::ClientConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Serialize;

use crate::BenchError;

/// Where and how hard to measure.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The node the integration and the local device connect to (`host:port`).
    pub local: (String, u16),
    /// The peer node the remote device connects to.
    pub remote: (String, u16),
    /// Messages per second on each path and direction.
    pub rate: f64,
    /// Measuring time.
    pub duration: Duration,
}

/// Latencies of one path, in µs.
#[derive(Debug, Clone, Serialize)]
pub struct PathReport {
    pub path: String,
    pub sent: usize,
    pub received: usize,
    pub duplicates: usize,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

/// Both paths, both directions.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub rate: f64,
    pub secs: f64,
    pub paths: Vec<PathReport>,
}

/// One timed path: when each sequence number was sent, what arrived.
struct Timed {
    name: &'static str,
    start: Instant,
    sent: Vec<AtomicU64>,
    seen: Vec<AtomicU64>,
    latencies: Mutex<Vec<u64>>,
    duplicates: AtomicU64,
}

impl Timed {
    fn new(name: &'static str, start: Instant, capacity: usize) -> Arc<Timed> {
        Arc::new(Timed {
            name,
            start,
            sent: (0..capacity).map(|_| AtomicU64::new(0)).collect(),
            seen: (0..capacity).map(|_| AtomicU64::new(0)).collect(),
            latencies: Mutex::new(Vec::with_capacity(capacity)),
            duplicates: AtomicU64::new(0),
        })
    }

    fn mark_sent(&self, seq: usize) {
        // +1 so that 0 means "not sent".
        let at = self.start.elapsed().as_nanos() as u64 + 1;
        if let Some(slot) = self.sent.get(seq) {
            slot.store(at, Relaxed);
        }
    }

    fn mark_received(&self, seq: usize) {
        let now = self.start.elapsed().as_nanos() as u64 + 1;
        let (Some(sent), Some(seen)) = (self.sent.get(seq), self.seen.get(seq)) else {
            return;
        };
        let at = sent.load(Relaxed);
        if at == 0 {
            return;
        }
        if seen.swap(1, Relaxed) == 1 {
            self.duplicates.fetch_add(1, Relaxed);
            return;
        }
        let mut l = self.latencies.lock().unwrap_or_else(|p| p.into_inner());
        l.push(now.saturating_sub(at) / 1_000);
    }

    fn report(&self) -> PathReport {
        let mut l = self
            .latencies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        l.sort_unstable();
        let q = |p: f64| match l.len() {
            0 => 0,
            n => l[((n as f64 * p).ceil() as usize).clamp(1, n) - 1],
        };
        PathReport {
            path: self.name.to_string(),
            sent: self.sent.iter().filter(|s| s.load(Relaxed) != 0).count(),
            received: l.len(),
            duplicates: self.duplicates.load(Relaxed) as usize,
            p50_us: q(0.5),
            p90_us: q(0.9),
            p99_us: q(0.99),
            max_us: l.last().copied().unwrap_or(0),
        }
    }
}

const ACCOUNT: &str = "bench-peer-hop";
const LOCAL_DEVICE: &str = "hop-local";
const REMOTE_DEVICE: &str = "hop-remote";

/// Runs the measurement; the nodes must be peered and share the PKI's CA.
pub async fn run(pki: &Path, plan: Plan) -> Result<Report, BenchError> {
    let dir = PkiDir::open(pki).map_err(|source| BenchError::Certs {
        what: format!("opening {}", pki.display()),
        source,
    })?;
    let ca = std::fs::read(dir.ca_path()).map_err(|e| BenchError::Pem {
        path: dir.ca_path(),
        message: e.to_string(),
    })?;
    let config = |issued: Issued| client_config(&ca, issued);
    let certs = |what: &str, r: Result<Issued, kumo_certs::CertError>| {
        r.map_err(|source| BenchError::Certs {
            what: what.to_string(),
            source,
        })
    };
    let opts = IssueOptions::default();
    let account = AccountId::parse(ACCOUNT).map_err(|e| mqtt(format!("account id: {e}")))?;
    let owner = config(certs(
        "issuing the owner service",
        dir.ca().issue_service("bench-owner", &opts),
    )?)?;
    let integration = config(certs(
        "issuing the integration",
        dir.ca().issue_integration("bench-hop", &account, &opts),
    )?)?;
    let device = |id: &str| -> Result<Arc<ClientConfig>, BenchError> {
        let parsed = DeviceId::parse(id).map_err(|e| mqtt(format!("device id {id}: {e}")))?;
        config(certs(
            &format!("issuing {id}"),
            dir.ca().issue_device(&parsed, &opts),
        )?)
    };
    let (local_dev, remote_dev) = (device(LOCAL_DEVICE)?, device(REMOTE_DEVICE)?);

    for node in [&plan.local, &plan.remote] {
        announce(node, owner.clone()).await?;
    }
    let capacity = (plan.rate * plan.duration.as_secs_f64()).ceil() as usize + 16;
    let start = Instant::now();
    let up_local = Timed::new("reading, device on the same node", start, capacity);
    let up_remote = Timed::new("reading, device on a peer node", start, capacity);
    let down_local = Timed::new("command, device on the same node", start, capacity);
    let down_remote = Timed::new("command, device on a peer node", start, capacity);

    let (int, int_loop) = client("bench-hop", &plan.local, integration);
    let warm = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    tokio::spawn(integration_loop(
        int_loop,
        [up_local.clone(), up_remote.clone()],
        warm.clone(),
    ));
    int.subscribe("devices/+/sensors/+", QoS::AtMostOnce)
        .await
        .map_err(|e| mqtt(e.to_string()))?;
    let (dev_l, loop_l) = client(LOCAL_DEVICE, &plan.local, local_dev);
    let (dev_r, loop_r) = client(REMOTE_DEVICE, &plan.remote, remote_dev);
    tokio::spawn(device_loop(loop_l, down_local.clone()));
    tokio::spawn(device_loop(loop_r, down_remote.clone()));
    for (d, id) in [(&dev_l, LOCAL_DEVICE), (&dev_r, REMOTE_DEVICE)] {
        d.subscribe(format!("devices/{id}/commands"), QoS::AtLeastOnce)
            .await
            .map_err(|e| mqtt(e.to_string()))?;
    }

    // Until the integration hears both devices: the owner announcement and
    // the peer link's subscription take a moment to settle.
    let deadline = Instant::now() + Duration::from_secs(20);
    while warm.iter().any(|w| w.load(Relaxed) == 0) {
        if Instant::now() > deadline {
            return Err(mqtt("the integration never heard both devices".into()));
        }
        for (d, id) in [(&dev_l, LOCAL_DEVICE), (&dev_r, REMOTE_DEVICE)] {
            let _ = d
                .publish(
                    format!("devices/{id}/sensors/hu"),
                    QoS::AtMostOnce,
                    false,
                    "{\"val\":50}",
                )
                .await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    let period = Duration::from_secs_f64(1.0 / plan.rate.max(0.1));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let began = Instant::now();
    let mut seq = 0usize;
    while began.elapsed() < plan.duration && seq + 1 < capacity {
        tick.tick().await;
        for (d, id, timed) in [
            (&dev_l, LOCAL_DEVICE, &up_local),
            (&dev_r, REMOTE_DEVICE, &up_remote),
        ] {
            timed.mark_sent(seq);
            let body = format!("{{\"val\":{seq},\"ts\":0}}");
            let _ = d.try_publish(
                format!("devices/{id}/sensors/te"),
                QoS::AtMostOnce,
                false,
                body,
            );
        }
        for (id, timed) in [(LOCAL_DEVICE, &down_local), (REMOTE_DEVICE, &down_remote)] {
            timed.mark_sent(seq);
            let body = format!("{{\"id\":\"{seq}\"}}");
            let _ = int.try_publish(
                format!("devices/{id}/commands"),
                QoS::AtLeastOnce,
                false,
                body,
            );
        }
        seq += 1;
    }
    let secs = began.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    Ok(Report {
        rate: plan.rate,
        secs,
        paths: [&up_local, &up_remote, &down_local, &down_remote]
            .iter()
            .map(|t| t.report())
            .collect(),
    })
}

fn mqtt(message: String) -> BenchError {
    BenchError::Pem {
        path: "mqtt".into(),
        message,
    }
}

pub(crate) fn client_config(
    ca_pem: &[u8],
    issued: Issued,
) -> Result<Arc<ClientConfig>, BenchError> {
    let pem = |message: String| BenchError::Pem {
        path: "issued".into(),
        message,
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        roots
            .add(cert.map_err(|e| pem(e.to_string()))?)
            .map_err(BenchError::Tls)?;
    }
    let key =
        PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes()).map_err(|e| pem(e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_client_auth_cert(vec![CertificateDer::from(issued.cert_der)], key)?;
    Ok(Arc::new(config))
}

pub(crate) fn client(
    id: &str,
    node: &(String, u16),
    tls: Arc<ClientConfig>,
) -> (AsyncClient, EventLoop) {
    let mut opts = MqttOptions::new(id, node.0.clone(), node.1);
    opts.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(tls)))
        .set_keep_alive(Duration::from_secs(30))
        .set_clean_session(true);
    let mut net = rumqttc::NetworkOptions::new();
    net.set_tcp_nodelay(true);
    let (client, mut events) = AsyncClient::new(opts, 4096);
    events.set_network_options(net);
    (client, events)
}

/// Tells `node` that both devices belong to the bench account, as the bridge does.
async fn announce(node: &(String, u16), owner: Arc<ClientConfig>) -> Result<(), BenchError> {
    let (c, mut events) = client("bench-owner", node, owner);
    for id in [LOCAL_DEVICE, REMOTE_DEVICE] {
        c.publish(
            format!("kumo/ownership/devices/{id}"),
            QoS::AtLeastOnce,
            false,
            ACCOUNT,
        )
        .await
        .map_err(|e| mqtt(e.to_string()))?;
    }
    let mut acked = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while acked < 2 {
        match tokio::time::timeout_at(deadline, events.poll()).await {
            Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => acked += 1,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(mqtt(format!("announcing owners: {e}"))),
            Err(_) => return Err(mqtt("announcing owners: no PUBACK".into())),
        }
    }
    let _ = c.disconnect().await;
    Ok(())
}

async fn integration_loop(
    mut events: EventLoop,
    timed: [Arc<Timed>; 2],
    warm: Arc<[AtomicU64; 2]>,
) {
    loop {
        let Ok(event) = events.poll().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let Event::Incoming(Packet::Publish(p)) = event else {
            continue;
        };
        let which = if p.topic.starts_with(&format!("devices/{LOCAL_DEVICE}/")) {
            0
        } else if p.topic.starts_with(&format!("devices/{REMOTE_DEVICE}/")) {
            1
        } else {
            continue;
        };
        warm[which].store(1, Relaxed);
        if p.topic.ends_with("/te") {
            if let Some(seq) = number_after(&p.payload, b"\"val\":") {
                timed[which].mark_received(seq);
            }
        }
    }
}

async fn device_loop(mut events: EventLoop, timed: Arc<Timed>) {
    loop {
        let Ok(event) = events.poll().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        if let Event::Incoming(Packet::Publish(p)) = event {
            if let Some(seq) = number_after(&p.payload, b"\"id\":\"") {
                timed.mark_received(seq);
            }
        }
    }
}

/// The decimal number right after `key` in `payload`.
fn number_after(payload: &[u8], key: &[u8]) -> Option<usize> {
    let at = payload.windows(key.len()).position(|w| w == key)? + key.len();
    let digits: Vec<u8> = payload[at..]
        .iter()
        .copied()
        .take_while(u8::is_ascii_digit)
        .collect();
    std::str::from_utf8(&digits).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_are_read_from_readings_and_commands() {
        assert_eq!(
            number_after(b"{\"val\":42,\"ts\":0}", b"\"val\":"),
            Some(42)
        );
        assert_eq!(number_after(b"{\"id\":\"7\"}", b"\"id\":\""), Some(7));
        assert_eq!(number_after(b"{\"x\":1}", b"\"val\":"), None);
    }

    #[test]
    fn each_message_counts_once_and_duplicates_are_counted() {
        let t = Timed::new("t", Instant::now(), 4);
        t.mark_sent(1);
        t.mark_received(1);
        t.mark_received(1);
        t.mark_received(2); // never sent: ignored
        let r = t.report();
        assert_eq!((r.sent, r.received, r.duplicates), (1, 1, 1));
    }
}
