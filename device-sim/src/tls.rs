//! TLS for the fleet: one parsed CA and server verifier per process, a cheap
//! per-device client configuration around each device's own certificate.
//!
//! The CA PEM is parsed once; devices share the provider and verifier through
//! `Arc`s, so a device costs only its certificate chain, key and a small config.
//! Each device keeps the one session ticket the node hands it, in its own
//! configuration's store (`sim.tls_resumption`): a reconnect, to the same node
//! or to another of the same cloud, resumes instead of repeating the
//! certificate signatures, as device firmware does. Stores are never shared:
//! a resumed TLS 1.3 session skips client authentication, so a shared store
//! would let one device's session stand in for another's. A node's certificate chain, once
//! verified, is remembered for a minute ([`KnownNodes`]); devices prefer
//! AES-128-GCM/SHA-256.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kumo_certs::files::PkiDir;
use kumo_contract::DeviceId;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{Resumption, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, RootCertStore};
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use rustls_pki_types::{ServerName, UnixTime};

use crate::error::SimError;

/// What every device of a process shares.
#[derive(Debug, Clone)]
pub struct TlsContext {
    provider: Arc<CryptoProvider>,
    verifier: Arc<KnownNodes>,
    /// Whether device configurations keep a session ticket.
    resumption: bool,
}

/// ring with AES-128-GCM/SHA-256 first, as constrained devices prefer it
/// (cheaper than the default's AES-256-GCM/SHA-384 on every record and in
/// the key schedule), its TLS 1.3 traffic keys prepared per record
/// ([`crate::lean_aead`]).
fn device_provider() -> CryptoProvider {
    use rustls::crypto::ring::{cipher_suite, default_provider};
    let mut provider = default_provider();
    provider
        .cipher_suites
        .sort_by_key(|s| s.suite() != cipher_suite::TLS13_AES_128_GCM_SHA256.suite());
    crate::lean_aead::lean_provider(provider)
}

/// How long a node certificate chain, once verified, is taken as verified
/// when presented again.
const KNOWN_FOR: Duration = Duration::from_secs(60);

/// Verifies node certificates with webpki, remembering for [`KNOWN_FOR`] the
/// chains (with the name they were verified for) that passed: a fleet process
/// sees the same few node certificates on thousands of connections, and the
/// chain's signature check was a fifth of a device connection's CPU. The
/// handshake signature (proof that the node holds the key) is still checked
/// on every connection.
#[derive(Debug)]
struct KnownNodes {
    webpki: Arc<WebPkiServerVerifier>,
    known: Mutex<Vec<KnownChain>>,
}

#[derive(Debug)]
struct KnownChain {
    chain: Vec<CertificateDer<'static>>,
    name: ServerName<'static>,
    at: Instant,
}

/// Node chains remembered at most (a process talks to a few nodes).
const KNOWN_MAX: usize = 64;

impl ServerCertVerifier for KnownNodes {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let same = |k: &KnownChain| {
            k.at.elapsed() < KNOWN_FOR
                && k.name == *server_name
                && k.chain.first().is_some_and(|c| c == end_entity)
                && k.chain[1..] == *intermediates
        };
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        if known.iter().any(same) {
            return Ok(ServerCertVerified::assertion());
        }
        drop(known);
        let verified = self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        known.retain(|k| k.at.elapsed() < KNOWN_FOR);
        if known.len() < KNOWN_MAX {
            let mut chain = vec![end_entity.clone().into_owned()];
            chain.extend(intermediates.iter().map(|c| c.clone().into_owned()));
            known.push(KnownChain {
                chain,
                name: server_name.to_owned(),
                at: Instant::now(),
            });
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

impl TlsContext {
    /// Parses the CA bundle (every certificate in it is trusted) once.
    pub fn from_ca_pem(ca_pem: &str) -> Result<Self, SimError> {
        let provider = Arc::new(device_provider());
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            let cert = cert.map_err(|e| SimError::Ca(e.to_string()))?;
            roots.add(cert).map_err(|e| SimError::Ca(e.to_string()))?;
        }
        if roots.is_empty() {
            return Err(SimError::Ca("no certificate in the CA PEM".into()));
        }
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| SimError::Ca(e.to_string()))?;
        let verifier = Arc::new(KnownNodes {
            webpki,
            known: Mutex::new(Vec::new()),
        });
        Ok(Self {
            provider,
            verifier,
            resumption: true,
        })
    }

    /// This context with device session resumption on or off.
    pub fn with_resumption(mut self, on: bool) -> Self {
        self.resumption = on;
        self
    }

    /// Whether device configurations keep a session ticket.
    pub fn resumption(&self) -> bool {
        self.resumption
    }

    /// A client configuration that checks the server against the CA and
    /// presents no certificate (for the provisioning listener).
    pub fn server_only_config(&self) -> Result<Arc<ClientConfig>, SimError> {
        let config = ClientConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| SimError::Ca(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(self.verifier.clone())
            .with_no_client_auth();
        Ok(Arc::new(config))
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
            .dangerous()
            .with_custom_certificate_verifier(self.verifier.clone())
            .with_client_auth_cert(creds.chain, creds.key)
            .map_err(tls)?;
        // Its own store, one server name (devices reach every node by the
        // same kind of name) and the one ticket a node sends.
        config.resumption = if self.resumption {
            Resumption::store(Arc::new(OneTicket::default()))
        } else {
            Resumption::disabled()
        };
        Ok(Arc::new(config))
    }
}

/// One device's resumption state: its newest ticket, whichever node of the
/// cloud gave it (they share ticket keys; another cloud's node would just do
/// a full handshake). rustls' memory cache reserves room for eight tickets per
/// server name, which cost a simulated device 3.6 KB of its ~14.
#[derive(Debug, Default)]
struct OneTicket(Mutex<Held>);

#[derive(Debug, Default)]
struct Held {
    kx_hint: Option<rustls::NamedGroup>,
    tls12: Option<rustls::client::Tls12ClientSessionValue>,
    tls13: Option<rustls::client::Tls13ClientSessionValue>,
}

impl OneTicket {
    fn held(&self) -> std::sync::MutexGuard<'_, Held> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl rustls::client::ClientSessionStore for OneTicket {
    fn set_kx_hint(&self, _: ServerName<'static>, group: rustls::NamedGroup) {
        self.held().kx_hint = Some(group);
    }

    fn kx_hint(&self, _: &ServerName<'_>) -> Option<rustls::NamedGroup> {
        self.held().kx_hint
    }

    fn set_tls12_session(
        &self,
        _: ServerName<'static>,
        value: rustls::client::Tls12ClientSessionValue,
    ) {
        self.held().tls12 = Some(value);
    }

    fn tls12_session(&self, _: &ServerName<'_>) -> Option<rustls::client::Tls12ClientSessionValue> {
        self.held().tls12.clone()
    }

    fn remove_tls12_session(&self, _: &ServerName<'static>) {
        self.held().tls12 = None;
    }

    fn insert_tls13_ticket(
        &self,
        _: ServerName<'static>,
        value: rustls::client::Tls13ClientSessionValue,
    ) {
        self.held().tls13 = Some(value);
    }

    fn take_tls13_ticket(
        &self,
        _: &ServerName<'static>,
    ) -> Option<rustls::client::Tls13ClientSessionValue> {
        self.held().tls13.take()
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
                // Read first: a fleet's certificates are there, and a `stat`
                // of each file cost every device's start two system calls.
                match read_pair(&cert, &key) {
                    Err(SimError::Read { source, .. })
                        if source.kind() == std::io::ErrorKind::NotFound =>
                    {
                        pki.issue_device(id).map_err(|source| SimError::Issue {
                            device_id: id.to_string(),
                            source,
                        })?;
                        read_pair(&cert, &key)
                    }
                    read => read,
                }
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use kumo_certs::{Ca, IssueOptions, KeyAlgorithm};

    fn node_chain(ca: &Ca) -> CertificateDer<'static> {
        let node = ca
            .issue_node("node-1", &["localhost".into()], &IssueOptions::default())
            .unwrap();
        CertificateDer::from_pem_slice(node.cert_pem.as_bytes()).unwrap()
    }

    #[test]
    fn a_verified_node_chain_is_remembered_and_nothing_else_passes_for_it() {
        let ca = Ca::generate("Test CA", KeyAlgorithm::EcdsaP256).unwrap();
        let ctx = TlsContext::from_ca_pem(&ca.cert_pem()).unwrap();
        let v = &ctx.verifier;
        let localhost = ServerName::try_from("localhost").unwrap();
        let good = node_chain(&ca);
        let now = UnixTime::now();
        assert!(v
            .verify_server_cert(&good, &[], &localhost, &[], now)
            .is_ok());
        assert_eq!(v.known.lock().unwrap().len(), 1);
        assert!(v
            .verify_server_cert(&good, &[], &localhost, &[], now)
            .is_ok());
        assert_eq!(v.known.lock().unwrap().len(), 1, "served from memory");
        // The remembered chain under another name, and another CA's chain, fail.
        let other_name = ServerName::try_from("node.example").unwrap();
        assert!(v
            .verify_server_cert(&good, &[], &other_name, &[], now)
            .is_err());
        let stranger = node_chain(&Ca::generate("Other CA", KeyAlgorithm::EcdsaP256).unwrap());
        assert!(v
            .verify_server_cert(&stranger, &[], &localhost, &[], now)
            .is_err());
        assert_eq!(v.known.lock().unwrap().len(), 1);
    }

    #[test]
    fn a_pki_source_issues_a_missing_certificate_once_and_reads_it_after() {
        let tmp = tempfile::tempdir().unwrap();
        let pki = Arc::new(PkiDir::init(tmp.path(), KeyAlgorithm::EcdsaP256).unwrap());
        let source = CredentialSource::Pki(pki.clone());
        let id = DeviceId::parse("remo-77").unwrap();
        let first = source.load(&id).unwrap();
        let again = source.load(&id).unwrap();
        assert_eq!(first.chain, again.chain, "issued once, then read");
        // A lost key is issued again, with a new certificate.
        let (_, key) = kumo_certs::files::device_pair(pki.dir(), &id);
        std::fs::remove_file(key).unwrap();
        let reissued = source.load(&id).unwrap();
        assert_ne!(reissued.chain, first.chain);
    }

    #[test]
    fn devices_offer_aes_128_gcm_sha256_first() {
        let first = device_provider().cipher_suites[0].suite();
        assert_eq!(first, rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
    }
}
