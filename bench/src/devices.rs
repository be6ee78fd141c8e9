//! Benchmark devices: a certificate per device, issued in-process from the PKI
//! directory's CA (about 0.1 ms each, far faster than the CLI), and one rustls
//! client configuration per device, since the client certificate lives in it.

use std::path::Path;
use std::sync::Arc;

use kumo_certs::files::PkiDir;
use kumo_certs::{DeviceId, IssueOptions};
use rustls::client::{Resumption, WebPkiServerVerifier};
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::BenchError;

/// One simulated device.
#[derive(Debug, Clone)]
pub struct Device {
    /// Device id: the certificate's CN and the MQTT client id.
    pub id: String,
    /// TLS client configuration carrying the device's certificate; reusing it
    /// reuses its session cache, which is what makes TLS resumption happen.
    pub tls: Arc<ClientConfig>,
}

/// The id of device number `index`: `<prefix>-<index>` zero-padded to 6 digits.
pub fn device_id(prefix: &str, index: u32) -> String {
    format!("{prefix}-{index:06}")
}

/// Issues certificates for devices `first..first + count` from the CA in `pki`
/// and builds their client configurations, trusting `pki/ca.pem` for the
/// server. `resumption` keeps a small per-device session cache; without it
/// every handshake is a full one.
pub fn issue(
    pki: &Path,
    prefix: &str,
    first: u32,
    count: u32,
    resumption: bool,
) -> Result<Vec<Device>, BenchError> {
    let dir = PkiDir::open(pki).map_err(|source| BenchError::Certs {
        what: format!("opening {}", pki.display()),
        source,
    })?;
    let verifier = server_verifier(&dir.ca_path())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    (first..first.saturating_add(count))
        .map(|index| {
            let id = device_id(prefix, index);
            let parsed = DeviceId::parse(id.clone()).map_err(|e| BenchError::Pem {
                path: pki.to_path_buf(),
                message: format!("device id {id}: {e}"),
            })?;
            let issued = dir
                .ca()
                .issue_device(&parsed, &IssueOptions::default())
                .map_err(|source| BenchError::Certs {
                    what: format!("issuing {id}"),
                    source,
                })?;
            let key = PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes()).map_err(|e| {
                BenchError::Pem {
                    path: pki.to_path_buf(),
                    message: format!("key of {id}: {e}"),
                }
            })?;
            let chain = vec![CertificateDer::from(issued.cert_der)];
            let mut config = ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()?
                .with_webpki_verifier(verifier.clone())
                .with_client_auth_cert(chain, key)?;
            config.resumption = if resumption {
                Resumption::in_memory_sessions(2)
            } else {
                Resumption::disabled()
            };
            Ok(Device {
                id,
                tls: Arc::new(config),
            })
        })
        .collect()
}

fn server_verifier(ca_path: &Path) -> Result<Arc<WebPkiServerVerifier>, BenchError> {
    let pem_error = |message: String| BenchError::Pem {
        path: ca_path.to_path_buf(),
        message,
    };
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_path).map_err(|e| pem_error(e.to_string()))? {
        roots
            .add(cert.map_err(|e| pem_error(e.to_string()))?)
            .map_err(|e| pem_error(e.to_string()))?;
    }
    WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .build()
    .map_err(|e| pem_error(e.to_string()))
}
