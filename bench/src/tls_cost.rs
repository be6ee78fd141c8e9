//! The CPU floor of one device connection: mutual-TLS handshakes run in
//! memory between a device configuration and a node-like server
//! configuration (same provider, CA, CRL and certificate kinds as a node and
//! the load tool), timed on each side with the thread's CPU clock. No socket,
//! no MQTT: what remains of a connection's cost in a fleet run beyond these
//! figures is networking, scheduling and Kumo's own work.
//!
//! Full handshakes use a fresh device each time; resumed ones repeat a device
//! whose client kept the ticket of its first handshake (TLS 1.3 PSK with
//! (EC)DHE, as rustls resumes).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use kumo_certs::files::PkiDir;
use nix::time::{clock_gettime, ClockId};
use rustls::server::{ServerSessionMemoryCache, WebPkiClientVerifier};
use rustls::{ClientConnection, RootCertStore, ServerConfig, ServerConnection};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName};
use serde::Serialize;

use crate::devices::{self, Device};
use crate::BenchError;

/// CPU per handshake, µs, for each side.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Cost {
    pub handshakes: u32,
    pub device_us: f64,
    pub node_us: f64,
}

/// Full and resumed handshake costs.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub full: Cost,
    pub resumed: Cost,
    /// Resumed handshakes that did resume (the rest were full).
    pub resumed_really: u32,
}

/// Runs `count` full handshakes and `count` resumed ones with devices issued
/// from the CA in `pki` (under `prefix`), against a server certificate for
/// `localhost` from the same PKI.
pub fn measure(pki: &Path, prefix: &str, count: u32) -> Result<Report, BenchError> {
    let server = Arc::new(server_config(pki)?);
    let fresh = devices::issue(pki, prefix, 0, count, false)?;
    let mut full = Cost::default();
    for d in &fresh {
        handshake(d, &server, &mut full)?;
    }
    let keeping = devices::issue(pki, prefix, count, count, true)?;
    let mut warmup = Cost::default();
    for d in &keeping {
        handshake(d, &server, &mut warmup)?;
    }
    let mut resumed = Cost::default();
    let mut resumed_really = 0;
    for d in &keeping {
        if handshake(d, &server, &mut resumed)? {
            resumed_really += 1;
        }
    }
    Ok(Report {
        full: per_handshake(full),
        resumed: per_handshake(resumed),
        resumed_really,
    })
}

fn per_handshake(total: Cost) -> Cost {
    let n = f64::from(total.handshakes.max(1));
    Cost {
        handshakes: total.handshakes,
        device_us: total.device_us / n,
        node_us: total.node_us / n,
    }
}

/// The node's configuration, as `kumo_broker::tls` builds it: client
/// certificates verified against the CA and CRL, a session cache and tickets.
fn server_config(pki: &Path) -> Result<ServerConfig, BenchError> {
    let certs = |what: String| move |source| BenchError::Certs { what, source };
    let dir = PkiDir::open(pki).map_err(certs(format!("opening {}", pki.display())))?;
    let sans = ["localhost".to_string()];
    let stack = dir
        .ensure_stack("tls-cost", &sans)
        .map_err(certs("issuing the server certificate".into()))?;
    let pem = |path: &Path, message: String| BenchError::Pem {
        path: path.to_path_buf(),
        message,
    };
    let mut roots = RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(&stack.ca).map_err(|e| pem(&stack.ca, e.to_string()))? {
        let ca = ca.map_err(|e| pem(&stack.ca, e.to_string()))?;
        roots.add(ca).map_err(|e| pem(&stack.ca, e.to_string()))?;
    }
    let crls = CertificateRevocationListDer::pem_file_iter(&stack.crl)
        .map_err(|e| pem(&stack.crl, e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem(&stack.crl, e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .with_crls(crls)
        .build()
        .map_err(|e| pem(&stack.ca, e.to_string()))?;
    let chain = CertificateDer::pem_file_iter(&stack.node_cert)
        .map_err(|e| pem(&stack.node_cert, e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem(&stack.node_cert, e.to_string()))?;
    let key = PrivateKeyDer::from_pem_file(&stack.node_key)
        .map_err(|e| pem(&stack.node_key, e.to_string()))?;
    let tls = |e: rustls::Error| pem(&stack.node_cert, e.to_string());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(tls)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(tls)?;
    config.session_storage = ServerSessionMemoryCache::new(65_536);
    config.ticketer = rustls::crypto::ring::Ticketer::new().map_err(tls)?;
    Ok(config)
}

/// The calling thread's CPU time so far.
fn thread_cpu() -> Duration {
    clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map(Duration::from)
        .unwrap_or_default()
}

/// One handshake between `device` and a server on `config`, adding each
/// side's CPU to `cost`; whether it was resumed.
fn handshake(
    device: &Device,
    config: &Arc<ServerConfig>,
    cost: &mut Cost,
) -> Result<bool, BenchError> {
    let failed = |side: &str, e: &dyn std::fmt::Display| BenchError::Pem {
        path: Path::new(&device.id).to_path_buf(),
        message: format!("{side}: {e}"),
    };
    let mut device_cpu = Duration::ZERO;
    let mut node_cpu = Duration::ZERO;
    let t = thread_cpu();
    let name = ServerName::try_from("localhost").map_err(|e| failed("name", &e))?;
    let mut client =
        ClientConnection::new(device.tls.clone(), name).map_err(|e| failed("device", &e))?;
    device_cpu += thread_cpu() - t;
    let t = thread_cpu();
    let mut server = ServerConnection::new(config.clone()).map_err(|e| failed("node", &e))?;
    node_cpu += thread_cpu() - t;
    let mut wire = Vec::with_capacity(8192);
    for _ in 0..16 {
        let t = thread_cpu();
        wire.clear();
        while client.wants_write() {
            client
                .write_tls(&mut wire)
                .map_err(|e| failed("device", &e))?;
        }
        device_cpu += thread_cpu() - t;
        let t = thread_cpu();
        feed(&mut server, &wire).map_err(|e| failed("node", &e))?;
        wire.clear();
        while server.wants_write() {
            server
                .write_tls(&mut wire)
                .map_err(|e| failed("node", &e))?;
        }
        node_cpu += thread_cpu() - t;
        let t = thread_cpu();
        feed(&mut client, &wire).map_err(|e| failed("device", &e))?;
        device_cpu += thread_cpu() - t;
        if !client.is_handshaking() && !server.is_handshaking() && !server.wants_write() {
            cost.handshakes += 1;
            cost.device_us += device_cpu.as_secs_f64() * 1e6;
            cost.node_us += node_cpu.as_secs_f64() * 1e6;
            let resumed = client.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
            return Ok(resumed);
        }
    }
    Err(failed("handshake", &"did not finish in 16 flights"))
}

/// Gives `bytes` to a connection and processes them.
fn feed<D>(conn: &mut rustls::ConnectionCommon<D>, mut bytes: &[u8]) -> Result<(), rustls::Error> {
    while !bytes.is_empty() {
        conn.read_tls(&mut bytes)
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        conn.process_new_packets()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshakes_complete_and_resumed_ones_resume_and_cost_the_node_less() {
        let tmp = tempfile::tempdir().expect("tempdir");
        PkiDir::init(tmp.path(), kumo_certs::KeyAlgorithm::default()).expect("pki");
        let report = measure(tmp.path(), "tls-cost", 20).expect("measured");
        assert_eq!(report.full.handshakes, 20);
        assert_eq!(report.resumed.handshakes, 20);
        assert_eq!(report.resumed_really, 20, "every second handshake resumes");
        assert!(report.full.node_us > 0.0 && report.full.device_us > 0.0);
        // A resumed handshake skips the certificate signatures on the node.
        assert!(report.resumed.node_us < report.full.node_us, "{report:?}");
    }
}
