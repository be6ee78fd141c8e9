//! A TLS listener for axum that never lets one client hold up the others:
//! handshakes run concurrently, each with a deadline, and only finished ones
//! are handed to the server.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// Why the listener's TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
#[error("provisioning TLS: {what} {path}: {reason}")]
pub struct TlsSetupError {
    what: &'static str,
    path: String,
    reason: String,
}

/// A server configuration (no client certificates: a device that provisions
/// has none yet) from a PEM certificate chain and key. The files are read
/// again when the certificate file changes (a CA rollover re-issues it in
/// place), so the listener presents the new certificate without a restart.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsSetupError> {
    let resolver = Arc::new(Reloading::new(cert, key)?);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| setup_error("configuring", cert, &e))?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    Ok(Arc::new(config))
}

fn setup_error(what: &'static str, path: &Path, e: &dyn std::fmt::Display) -> TlsSetupError {
    TlsSetupError {
        what,
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

/// How often a handshake may look at the certificate file's time.
const RECHECK: Duration = Duration::from_secs(2);

/// The listener's certificate, read again when its file changes.
#[derive(Debug)]
struct Reloading {
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
    current: std::sync::Mutex<Loaded>,
}

#[derive(Debug)]
struct Loaded {
    key: Arc<rustls::sign::CertifiedKey>,
    modified: Option<std::time::SystemTime>,
    checked: std::time::Instant,
}

impl Reloading {
    fn new(cert: &Path, key: &Path) -> Result<Self, TlsSetupError> {
        let loaded = load(cert, key)?;
        Ok(Self {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            current: std::sync::Mutex::new(loaded),
        })
    }

    fn current(&self) -> Arc<rustls::sign::CertifiedKey> {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if current.checked.elapsed() >= RECHECK {
            current.checked = std::time::Instant::now();
            if modified(&self.cert) != current.modified {
                match load(&self.cert, &self.key) {
                    Ok(fresh) => {
                        tracing::info!(cert = %self.cert.display(),
                            "provisioning certificate changed; presenting the new one");
                        *current = fresh;
                    }
                    // Half-written during a re-issue: keep the old one, try again later.
                    Err(e) => tracing::warn!(error = %e,
                        "provisioning certificate changed but cannot be read; keeping the old one"),
                }
            }
        }
        current.key.clone()
    }
}

impl rustls::server::ResolvesServerCert for Reloading {
    fn resolve(
        &self,
        _hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.current())
    }
}

fn modified(path: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn load(cert: &Path, key: &Path) -> Result<Loaded, TlsSetupError> {
    let modified = modified(cert);
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| setup_error("reading", cert, &e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| setup_error("parsing", cert, &e))?;
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| setup_error("reading", key, &e))?;
    let provider = rustls::crypto::ring::default_provider();
    let certified = rustls::sign::CertifiedKey::from_der(chain, key_der, &provider)
        .map_err(|e| setup_error("using", cert, &e))?;
    Ok(Loaded {
        key: Arc::new(certified),
        modified,
        checked: std::time::Instant::now(),
    })
}

/// The client address of a provisioning connection.
#[derive(Debug, Clone, Copy)]
pub struct Remote(pub SocketAddr);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TlsListener>>
    for Remote
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, TlsListener>) -> Self {
        Remote(*stream.remote_addr())
    }
}

/// TCP accept + concurrent TLS handshakes.
pub struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    pending: JoinSet<Option<(TlsStream<TcpStream>, SocketAddr)>>,
    deadline: Duration,
    max_pending: usize,
}

impl TlsListener {
    pub fn new(tcp: TcpListener, config: Arc<ServerConfig>) -> Self {
        Self {
            tcp,
            acceptor: TlsAcceptor::from(config),
            pending: JoinSet::new(),
            deadline: Duration::from_secs(10),
            max_pending: 256,
        }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            tokio::select! {
                Some(done) = self.pending.join_next(), if !self.pending.is_empty() => {
                    if let Ok(Some(ready)) = done {
                        return ready;
                    }
                }
                accepted = self.tcp.accept(), if self.pending.len() < self.max_pending => {
                    match accepted {
                        Ok((tcp, addr)) => {
                            let (acceptor, deadline) = (self.acceptor.clone(), self.deadline);
                            self.pending.spawn(async move {
                                let tls = tokio::time::timeout(deadline, acceptor.accept(tcp));
                                tls.await.ok()?.ok().map(|s| (s, addr))
                            });
                        }
                        Err(e) => {
                            // Out of descriptors and the like: back off briefly.
                            tracing::debug!(error = %e, "provisioning accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}
