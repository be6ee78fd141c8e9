//! The connect engine: `concurrency` tasks take devices off a shared counter,
//! each connecting one at a time (TCP, TLS, CONNECT, CONNACK), so at most
//! `concurrency` handshakes are in flight and the broker's accept path sets the
//! pace. Failures are counted by stage, never retried.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::HandshakeKind;
use rustls_pki_types::ServerName;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::devices::Device;
use crate::{mqtt, procstat};

/// An established device connection (CONNACK accepted).
pub type Conn = TlsStream<TcpStream>;

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct Target {
    /// Broker MQTT/TLS address.
    pub addr: SocketAddr,
    /// Local address to bind; a distinct loopback address per client process
    /// gives each its own 28k ephemeral ports.
    pub source_ip: IpAddr,
    /// Name checked against the broker's certificate.
    pub server_name: ServerName<'static>,
    /// Keepalive asked for in CONNECT, in s.
    pub keepalive_secs: u16,
    /// Deadline for one whole connect (TCP to CONNACK).
    pub connect_timeout: Duration,
}

/// Figures of one pass over a set of devices.
#[derive(Debug, Default, Clone, Serialize)]
pub struct PassReport {
    /// Pass name (`full`, `resumed`, `hold`).
    pub pass: String,
    /// Connects started.
    pub attempted: usize,
    /// Connects that got CONNACK 0.
    pub ok: usize,
    /// Of those, how many resumed a TLS session.
    pub resumed: usize,
    /// Failed at TCP connect.
    pub failed_tcp: usize,
    /// Failed in the TLS handshake.
    pub failed_tls: usize,
    /// Failed in CONNECT/CONNACK (refused, closed, garbage).
    pub failed_mqtt: usize,
    /// Hit the per-connect deadline.
    pub failed_timeout: usize,
    /// First failure message, for diagnosis.
    pub first_error: Option<String>,
    /// Wall time from the first connect to the last CONNACK, in s.
    pub secs: f64,
    /// `ok / secs`.
    pub rate_per_s: f64,
    /// Broker CPU seconds (user + system) over the pass, when its pid was given.
    pub broker_cpu_s: Option<f64>,
    /// `broker_cpu_s / ok`, in ms.
    pub broker_cpu_ms_per_connect: Option<f64>,
    /// This client process's CPU seconds over the pass.
    pub client_cpu_s: f64,
}

enum Failure {
    Tcp(String),
    Tls(String),
    Mqtt(String),
    Timeout,
}

/// Connects every device in `devices` with at most `concurrency` in flight,
/// stopping new attempts at `stop_at`. Returns the figures and the live
/// connections.
pub async fn run_pass(
    pass: &str,
    target: Arc<Target>,
    devices: Arc<Vec<Device>>,
    concurrency: usize,
    stop_at: Option<Instant>,
    broker_pid: Option<&str>,
) -> (PassReport, Vec<Conn>) {
    let cpu = |pid: Option<&str>| pid.and_then(|p| procstat::cpu_seconds(p).ok());
    let broker_cpu_before = cpu(broker_pid);
    let client_cpu_before = cpu(Some("self")).unwrap_or(0.0);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency.max(1))
        .map(|_| {
            let (target, devices, next) = (target.clone(), devices.clone(), next.clone());
            tokio::spawn(async move {
                let mut done = Vec::new();
                loop {
                    if stop_at.is_some_and(|t| Instant::now() >= t) {
                        break;
                    }
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(device) = devices.get(i) else { break };
                    done.push(connect_with_deadline(&target, device).await);
                }
                done
            })
        })
        .collect();
    let mut report = PassReport {
        pass: pass.to_string(),
        ..PassReport::default()
    };
    let mut conns = Vec::new();
    for worker in workers {
        let Ok(results) = worker.await else { continue };
        for result in results {
            report.attempted += 1;
            match result {
                Ok((conn, resumed)) => {
                    report.ok += 1;
                    report.resumed += usize::from(resumed);
                    conns.push(conn);
                }
                Err(failure) => record(&mut report, failure),
            }
        }
    }
    report.secs = started.elapsed().as_secs_f64();
    report.rate_per_s = report.ok as f64 / report.secs.max(1e-9);
    if let (Some(before), Some(after)) = (broker_cpu_before, cpu(broker_pid)) {
        report.broker_cpu_s = Some(after - before);
        report.broker_cpu_ms_per_connect =
            Some((after - before) * 1000.0 / report.ok.max(1) as f64);
    }
    report.client_cpu_s = cpu(Some("self")).unwrap_or(0.0) - client_cpu_before;
    (report, conns)
}

/// Sends DISCONNECT on every connection and drops it.
pub async fn disconnect_all(conns: Vec<Conn>) {
    for mut conn in conns {
        // Best effort: a broker that already closed the connection is fine here.
        let _ = conn.write_all(&mqtt::DISCONNECT).await;
        let _ = conn.flush().await;
    }
}

fn record(report: &mut PassReport, failure: Failure) {
    let message = match failure {
        Failure::Tcp(m) => {
            report.failed_tcp += 1;
            format!("tcp: {m}")
        }
        Failure::Tls(m) => {
            report.failed_tls += 1;
            format!("tls: {m}")
        }
        Failure::Mqtt(m) => {
            report.failed_mqtt += 1;
            format!("mqtt: {m}")
        }
        Failure::Timeout => {
            report.failed_timeout += 1;
            "timeout".to_string()
        }
    };
    report.first_error.get_or_insert(message);
}

/// Connects one device (TCP, TLS, CONNECT, CONNACK 0) within the target's
/// deadline; the error says at which stage it failed.
pub async fn connect_one(target: &Target, device: &Device) -> Result<Conn, String> {
    match connect_with_deadline(target, device).await {
        Ok((conn, _)) => Ok(conn),
        Err(failure) => {
            let mut report = PassReport::default();
            record(&mut report, failure);
            Err(report.first_error.unwrap_or_default())
        }
    }
}

async fn connect_with_deadline(target: &Target, device: &Device) -> Result<(Conn, bool), Failure> {
    tokio::time::timeout(target.connect_timeout, connect(target, device))
        .await
        .unwrap_or(Err(Failure::Timeout))
}

async fn connect(target: &Target, device: &Device) -> Result<(Conn, bool), Failure> {
    let socket = TcpSocket::new_v4().map_err(|e| Failure::Tcp(e.to_string()))?;
    socket
        .bind(SocketAddr::new(target.source_ip, 0))
        .map_err(|e| Failure::Tcp(format!("bind {}: {e}", target.source_ip)))?;
    let tcp = socket
        .connect(target.addr)
        .await
        .map_err(|e| Failure::Tcp(e.to_string()))?;
    tcp.set_nodelay(true)
        .map_err(|e| Failure::Tcp(e.to_string()))?;
    let mut tls = TlsConnector::from(device.tls.clone())
        .connect(target.server_name.clone(), tcp)
        .await
        .map_err(|e| Failure::Tls(e.to_string()))?;
    let connect = mqtt::connect_packet(&device.id, target.keepalive_secs);
    tls.write_all(&connect)
        .await
        .map_err(|e| Failure::Mqtt(format!("writing CONNECT: {e}")))?;
    let mut connack = [0u8; mqtt::CONNACK_LEN];
    tls.read_exact(&mut connack)
        .await
        .map_err(|e| Failure::Mqtt(format!("reading CONNACK: {e}")))?;
    match mqtt::connack_return_code(&connack) {
        Some(0) => {}
        Some(code) => return Err(Failure::Mqtt(format!("CONNACK return code {code}"))),
        None => return Err(Failure::Mqtt(format!("not a CONNACK: {connack:02x?}"))),
    }
    let resumed = tls.get_ref().1.handshake_kind() == Some(HandshakeKind::Resumed);
    Ok((tls, resumed))
}
