//! TLS for the fleet: one parsed CA and server verifier per process, a cheap
//! per-device client configuration around each device's own certificate.
//!
//! The CA PEM is parsed once; devices share the provider and verifier through
//! `Arc`s, so a device costs only its certificate chain, key and a small config.
//! Session resumption is off: a resumed TLS 1.3 session skips client
//! authentication, so sharing a ticket store between devices would let one
//! device's session stand in for another's.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kumo_certs::files::PkiDir;
use kumo_contract::DeviceId;
use rustls::client::{Resumption, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::SimError;

/// What every device of a process shares.
#[derive(Debug, Clone)]
pub struct TlsContext {
    provider: Arc<CryptoProvider>,
    verifier: Arc<WebPkiServerVerifier>,
}

impl TlsContext {
    /// Parses the CA bundle (every certificate in it is trusted) once.
    pub fn from_ca_pem(ca_pem: &str) -> Result<Self, SimError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            let cert = cert.map_err(|e| SimError::Ca(e.to_string()))?;
            roots.add(cert).map_err(|e| SimError::Ca(e.to_string()))?;
        }
        if roots.is_empty() {
            return Err(SimError::Ca("no certificate in the CA PEM".into()));
        }
        let verifier =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|e| SimError::Ca(e.to_string()))?;
        Ok(Self { provider, verifier })
    }

    /// A client configuration presenting `creds`.
    pub fn client_config(
        &self,
        device_id: &DeviceId,
        creds: Credentials,
    ) -> Result<Arc<ClientConfig>, SimError> {
        let tls = |source| SimError::Tls {
            device_id: device_id.to_string(),
            source,
        };
        let mut config = ClientConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(tls)?
            .with_webpki_verifier(self.verifier.clone())
            .with_client_auth_cert(creds.chain, creds.key)
            .map_err(tls)?;
        config.resumption = Resumption::disabled();
        Ok(Arc::new(config))
    }
}

/// A device's certificate chain and private key, parsed.
#[derive(Debug)]
pub struct Credentials {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

/// Where device certificates come from.
#[derive(Debug, Clone)]
pub enum CredentialSource {
    /// `{dir}/{id}.crt` and `{dir}/{id}.key`, provisioned beforehand.
    Dir(PathBuf),
    /// A Kumo PKI directory (`issued/device/<id>/{cert,key}.pem`); missing
    /// certificates are issued on first use.
    Pki(Arc<PkiDir>),
}

impl CredentialSource {
    /// Picks the source the settings name.
    pub fn from_settings(s: &crate::Settings) -> Result<Self, SimError> {
        if let Some(dir) = &s.device_cert_dir {
            return Ok(Self::Dir(dir.clone()));
        }
        let dir = s.pki_dir.as_ref().ok_or(SimError::NoCredentialSource)?;
        let pki = PkiDir::open(dir).map_err(|source| SimError::Pki {
            path: dir.clone(),
            source,
        })?;
        Ok(Self::Pki(Arc::new(pki)))
    }

    /// Loads (issuing if needed) the credentials of `id`. Blocking file I/O.
    pub fn load(&self, id: &DeviceId) -> Result<Credentials, SimError> {
        match self {
            Self::Dir(dir) => read_pair(
                &dir.join(format!("{id}.crt")),
                &dir.join(format!("{id}.key")),
            ),
            Self::Pki(pki) => {
                let (cert, key) = kumo_certs::files::device_pair(pki.dir(), id);
                if !cert.exists() || !key.exists() {
                    pki.issue_device(id).map_err(|source| SimError::Issue {
                        device_id: id.to_string(),
                        source,
                    })?;
                }
                read_pair(&cert, &key)
            }
        }
    }
}

fn read_pair(cert: &Path, key: &Path) -> Result<Credentials, SimError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| SimError::Read {
            path: path.to_path_buf(),
            source,
        })
    };
    let cert_pem = read(cert)?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|_| SimError::BadPem {
            path: cert.to_path_buf(),
            what: "certificate",
        })?;
    if chain.is_empty() {
        return Err(SimError::BadPem {
            path: cert.to_path_buf(),
            what: "certificate",
        });
    }
    let key = PrivateKeyDer::from_pem_slice(&read(key)?).map_err(|_| SimError::BadPem {
        path: key.to_path_buf(),
        what: "private key",
    })?;
    Ok(Credentials { chain, key })
}
