//! The node's TLS identity and trust: builds the rustls server configuration from
//! the CA, CRL, certificate and key files, holds it in a slot that handshakes read
//! and the file watcher swaps, and turns handshake failures into refusal reasons.
//!
//! Swapping the configuration also drops the resumption cache and, unless the
//! nodes share a ticket secret (`tickets`), the ticket keys; either way the
//! listener checks every session's certificate against the live revocation
//! set after the handshake, so a revoked certificate cannot come back through
//! session resumption.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::server::{ServerSessionMemoryCache, WebPkiClientVerifier};
use rustls::{CertificateError, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use tokio_util::sync::CancellationToken;

use crate::tickets::{SharedTicketer, TicketSecret};
use crate::BrokerError;

/// Files the TLS configuration is built from.
#[derive(Debug, Clone)]
pub(crate) struct TlsFiles {
    pub ca: PathBuf,
    pub crl: Option<PathBuf>,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The current server configuration and revoked serials, swapped as a unit.
pub(crate) struct TlsSlot {
    current: RwLock<Arc<Current>>,
}

pub(crate) struct Current {
    pub config: Arc<ServerConfig>,
    pub revoked: HashSet<String>,
}

impl TlsSlot {
    pub fn new(current: Current) -> Self {
        Self {
            current: RwLock::new(Arc::new(current)),
        }
    }

    pub fn get(&self) -> Arc<Current> {
        // Poisoning cannot leave a half-written Arc; keep serving the last one.
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set(&self, current: Current) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(current);
    }
}

fn pem_err(path: &Path, e: impl std::fmt::Display) -> BrokerError {
    BrokerError::Pem {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

fn tls_err(path: &Path, e: impl std::fmt::Display) -> BrokerError {
    BrokerError::Tls {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// How sessions are resumed: the server-side cache size and, when nodes
/// share one, the ticket secret.
#[derive(Debug, Clone)]
pub(crate) struct Resumption {
    pub session_cache: usize,
    pub shared_tickets: Option<TicketSecret>,
}

/// Builds the server configuration and revoked-serial set from `files`.
pub(crate) fn load(files: &TlsFiles, resumption: &Resumption) -> Result<Current, BrokerError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&files.ca).map_err(|e| pem_err(&files.ca, e))? {
        roots
            .add(cert.map_err(|e| pem_err(&files.ca, e))?)
            .map_err(|e| tls_err(&files.ca, e))?;
    }
    if roots.is_empty() {
        return Err(pem_err(&files.ca, "no CERTIFICATE block"));
    }
    let (crls, revoked) = match &files.crl {
        Some(path) if path.exists() => read_crls(path)?,
        _ => (Vec::new(), HashSet::new()),
    };
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .with_crls(crls)
        .only_check_end_entity_revocation()
        .allow_unknown_revocation_status()
        .build()
        .map_err(|e| tls_err(files.crl.as_deref().unwrap_or(&files.ca), e))?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| pem_err(&files.cert, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| pem_err(&files.cert, e))?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| pem_err(&files.key, e))?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| tls_err(&files.cert, e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| tls_err(&files.cert, e))?;
    config.session_storage = ServerSessionMemoryCache::new(resumption.session_cache);
    config.ticketer = match &resumption.shared_tickets {
        Some(secret) => {
            let bundle = std::fs::read(&files.ca).map_err(|e| pem_err(&files.ca, e))?;
            Arc::new(SharedTicketer::new(secret.clone(), &bundle))
        }
        None => rustls::crypto::ring::Ticketer::new().map_err(|e| tls_err(&files.cert, e))?,
    };
    // One ticket per handshake: a device resumes once per reconnect, and each
    // resumption hands it the next one.
    config.send_tls13_tickets = 1;
    Ok(Current {
        config: Arc::new(config),
        revoked,
    })
}

fn read_crls(
    path: &Path,
) -> Result<(Vec<CertificateRevocationListDer<'static>>, HashSet<String>), BrokerError> {
    let crls: Vec<CertificateRevocationListDer<'static>> =
        CertificateRevocationListDer::pem_file_iter(path)
            .map_err(|e| pem_err(path, e))?
            .collect::<Result<_, _>>()
            .map_err(|e| pem_err(path, e))?;
    let mut revoked = HashSet::new();
    for crl in &crls {
        let (_, parsed) =
            x509_parser::parse_x509_crl(crl.as_ref()).map_err(|e| pem_err(path, e))?;
        for entry in parsed.iter_revoked_certificates() {
            revoked.insert(serial_hex(entry.raw_serial()));
        }
    }
    Ok((crls, revoked))
}

/// Canonical serial form shared with kumo-certs: lowercase hex, no leading zero bytes.
fn serial_hex(raw: &[u8]) -> String {
    let first = raw.iter().position(|b| *b != 0).unwrap_or(raw.len());
    let trimmed = &raw[first..];
    if trimmed.is_empty() {
        return "00".into();
    }
    trimmed.iter().map(|b| format!("{b:02x}")).collect()
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

fn stamps(files: &TlsFiles) -> Vec<Option<(SystemTime, u64)>> {
    let mut paths = vec![&files.ca, &files.cert, &files.key];
    paths.extend(files.crl.as_ref());
    paths.into_iter().map(|p| stamp(p)).collect()
}

/// Polls the files every `interval`; on a change rebuilds the slot and hands the
/// new revoked set to `on_change` (which closes live sessions using them).
pub(crate) async fn watch(
    files: TlsFiles,
    slot: Arc<TlsSlot>,
    resumption: Resumption,
    interval: Duration,
    shutdown: CancellationToken,
    on_change: impl Fn(&HashSet<String>) + Send + 'static,
) {
    let mut seen = stamps(&files);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        let now = stamps(&files);
        if now == seen {
            continue;
        }
        let loaded = {
            let files = files.clone();
            let resumption = resumption.clone();
            tokio::task::spawn_blocking(move || load(&files, &resumption)).await
        };
        match loaded {
            Ok(Ok(current)) => {
                seen = now;
                tracing::info!(revoked = current.revoked.len(), "TLS trust reloaded");
                on_change(&current.revoked);
                slot.set(current);
            }
            // A half-written file: keep the old configuration and try again next tick.
            Ok(Err(e)) => tracing::warn!(error = %e, "TLS files changed but cannot be loaded yet"),
            Err(e) => tracing::error!(error = %e, "TLS reload task failed"),
        }
    }
}

/// A metrics label for a failed handshake.
pub(crate) fn refusal_reason(err: &std::io::Error) -> &'static str {
    let Some(tls) = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
    else {
        return match err.kind() {
            std::io::ErrorKind::UnexpectedEof => "eof",
            std::io::ErrorKind::InvalidData => "not_tls",
            _ => "io_error",
        };
    };
    match tls {
        rustls::Error::NoCertificatesPresented => "no_certificate",
        rustls::Error::InvalidCertificate(c) => match c {
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => "expired",
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "not_yet_valid"
            }
            CertificateError::Revoked => "revoked",
            CertificateError::UnknownIssuer | CertificateError::BadSignature => "unknown_ca",
            _ => "bad_certificate",
        },
        rustls::Error::InvalidMessage(_) => "not_tls",
        rustls::Error::PeerIncompatible(_) => "incompatible",
        rustls::Error::AlertReceived(_) => "client_alert",
        _ => "tls_error",
    }
}
