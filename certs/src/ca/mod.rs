//! The certificate authority: generating a root, loading one, and issuing
//! intermediates. Leaf issuance lives in [`issue`], CRL signing in [`crate::crl`].
//!
//! Pure computation: no file or network I/O (see [`crate::files`] for the on-disk
//! layout).

mod intermediate;
mod issue;

use rcgen::{
    BasicConstraints, CertificateParams, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    PublicKeyData, SerialNumber,
};
use time::{Duration, OffsetDateTime};
use x509_parser::extensions::ParsedExtension;

use crate::inspect::{parse_cert, pem_to_der, validity};
use crate::role;
use crate::{CertError, KeyAlgorithm};

pub use issue::{IssueOptions, Issued, DEVICE_VALIDITY, SERVER_AND_SERVICE_VALIDITY};

/// Default lifetime of a CA certificate.
pub const CA_VALIDITY: Duration = Duration::days(3653);
/// Default backdating of `not_before`, to tolerate clock skew between hosts.
pub const BACKDATE: Duration = Duration::hours(1);

/// A certificate authority: its certificate and signing key.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    cert_der: Vec<u8>,
    cert_pem: String,
    not_after: OffsetDateTime,
    /// How CRLs name this CA's key (its subjectKeyIdentifier), so verifiers can
    /// match the CRL's authorityKeyIdentifier to the CA even for imported CAs.
    key_id: KeyIdMethod,
    /// Whether basicConstraints allows issuing intermediate CAs.
    can_issue_ca: bool,
    /// PEM certificates above this one, nearest first (empty for a root).
    chain: Vec<String>,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("Ca")
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl Ca {
    /// Generates a new self-signed root CA (`O=Kumo, CN=<common_name>`), valid for
    /// [`CA_VALIDITY`], allowed to sign one level of intermediate CAs.
    pub fn generate(common_name: &str, algorithm: KeyAlgorithm) -> Result<Ca, CertError> {
        let key = algorithm.generate()?;
        let now = OffsetDateTime::now_utc();
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, role::ORGANIZATION);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(1));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = now - BACKDATE;
        params.not_after = now + CA_VALIDITY;
        params.serial_number = Some(random_serial()?);
        let cert = params
            .self_signed(&key)
            .map_err(CertError::signing(format!(
                "CA certificate {common_name:?}"
            )))?;
        Ca::assemble(
            Issuer::new(params, key),
            cert.der().to_vec(),
            cert.pem(),
            Vec::new(),
        )
    }

    /// Builds a `Ca` around a signed CA certificate, reading its limits back.
    fn assemble(
        issuer: Issuer<'static, KeyPair>,
        cert_der: Vec<u8>,
        cert_pem: String,
        chain: Vec<String>,
    ) -> Result<Ca, CertError> {
        let parsed = parse_cert(&cert_der)?;
        let can_issue_ca = parsed
            .basic_constraints()
            .ok()
            .flatten()
            .is_some_and(|bc| bc.value.ca && bc.value.path_len_constraint != Some(0));
        Ok(Ca {
            not_after: validity(&parsed).1,
            key_id: key_id_of(&parsed),
            can_issue_ca,
            issuer,
            cert_der,
            cert_pem,
            chain,
        })
    }

    /// Loads a CA from its certificate and PKCS#8 private key (PEM). Checks that
    /// the certificate is a CA allowed to sign certificates and that the key is
    /// its key. For an intermediate, `cert_pem` may continue with the
    /// certificates above it (as [`Ca::chain_pem`] writes them).
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Ca, CertError> {
        let invalid_cert = |reason: String| CertError::InvalidCaCertificate { reason };
        let mut blocks = pem_certificate_blocks(cert_pem).into_iter();
        let own_pem = blocks
            .next()
            .ok_or_else(|| invalid_cert("no CERTIFICATE PEM block".into()))?;
        let chain: Vec<String> = blocks.collect();
        for above in &chain {
            pem_to_der(above).map_err(|e| invalid_cert(format!("in the chain: {e}")))?;
        }
        let cert_der = pem_to_der(&own_pem).map_err(|e| invalid_cert(e.to_string()))?;
        let cert = parse_cert(&cert_der).map_err(|e| invalid_cert(e.to_string()))?;
        if !cert.is_ca() {
            return Err(invalid_cert("basicConstraints CA is not set".into()));
        }
        let can_sign = cert
            .key_usage()
            .map_err(|e| invalid_cert(format!("bad key usage: {e}")))?
            .map_or(true, |ku| ku.value.key_cert_sign());
        if !can_sign {
            return Err(invalid_cert("key usage lacks keyCertSign".into()));
        }
        let key = KeyPair::from_pem(key_pem).map_err(|e| CertError::InvalidCaKey {
            reason: format!("{e} (a PKCS#8 \"PRIVATE KEY\" PEM is required)"),
        })?;
        if key.subject_public_key_info() != cert.public_key().raw {
            return Err(CertError::InvalidCaKey {
                reason: "the key does not match the CA certificate".into(),
            });
        }
        let issuer = Issuer::from_ca_cert_der(&cert_der.clone().into(), key)
            .map_err(|e| invalid_cert(e.to_string()))?;
        Ca::assemble(issuer, cert_der, own_pem, chain)
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> String {
        self.cert_pem.clone()
    }

    /// This CA's certificate followed by the certificates above it, root last.
    /// For a root this equals [`Ca::cert_pem`]. Peers holding a leaf issued by an
    /// intermediate present the leaf followed by this chain.
    pub fn chain_pem(&self) -> String {
        let mut out = self.cert_pem.clone();
        for above in &self.chain {
            if !out.ends_with('\n') {
                out.push('\n');
            }
            out.push_str(above);
        }
        out
    }

    /// The CA private key, PKCS#8 PEM. Handle with care.
    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> Vec<u8> {
        self.cert_der.clone()
    }

    /// When the CA certificate expires; no issued certificate outlives it.
    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }

    pub(crate) fn issuer(&self) -> &Issuer<'static, KeyPair> {
        &self.issuer
    }

    pub(crate) fn key_id(&self) -> KeyIdMethod {
        self.key_id.clone()
    }
}

/// The text of each `CERTIFICATE` PEM block in `pem`, in order, each ending in
/// a newline.
fn pem_certificate_blocks(pem: &str) -> Vec<String> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let mut blocks = Vec::new();
    let mut rest = pem;
    while let Some(start) = rest.find(BEGIN) {
        let Some(len) = rest[start..].find(END) else {
            break;
        };
        let end = start + len + END.len();
        blocks.push(format!("{}\n", &rest[start..end]));
        rest = &rest[end..];
    }
    blocks
}

/// The CA's subjectKeyIdentifier, or rcgen's default derivation if it has none.
fn key_id_of(cert: &x509_parser::certificate::X509Certificate<'_>) -> KeyIdMethod {
    cert.extensions()
        .iter()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(ski) => {
                Some(KeyIdMethod::PreSpecified(ski.0.to_vec()))
            }
            _ => None,
        })
        .unwrap_or(KeyIdMethod::Sha256)
}

/// A random positive 128-bit serial: 16 bytes, top bit clear (positive), second
/// bit set (so the DER integer is always exactly 16 bytes), 126 random bits.
pub(crate) fn random_serial() -> Result<SerialNumber, CertError> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| CertError::Randomness {
            while_doing: "drawing a serial number",
        })?;
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}
