//! Issuing leaf certificates: devices (generated key or CSR), broker nodes,
//! services and integrations. Every issued certificate is parsed back before it
//! is returned, so [`Issued`] reports exactly what the DER says.

use kumo_contract::{AccountId, DeviceId, Identity};
use rcgen::{
    CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyUsagePurpose, PublicKeyData, SanType,
};
use time::{Duration, OffsetDateTime};

use super::{random_serial, Ca, BACKDATE};
use crate::inspect::{fingerprint_of_der, parse_cert, serial_hex, validity};
use crate::key::is_rsa;
use crate::role::{self, identity_from_cert, validate_name};
use crate::{CertError, KeyAlgorithm};

/// Default lifetime of a device certificate (devices renew by sending a new CSR).
pub const DEVICE_VALIDITY: Duration = Duration::days(1826);
/// Default lifetime of node, service and integration certificates.
pub const SERVER_AND_SERVICE_VALIDITY: Duration = Duration::days(365);

/// Overrides for one issuance; every field defaults sensibly when `None`.
#[derive(Clone, Debug, Default)]
pub struct IssueOptions {
    /// Start of validity; default: now minus [`BACKDATE`].
    pub not_before: Option<OffsetDateTime>,
    /// End of validity; default: now plus the role's default lifetime, capped at the
    /// CA's own expiry. An explicit value past the CA's expiry is an error.
    pub not_after: Option<OffsetDateTime>,
    /// Key type of a generated leaf key; default ECDSA P-256 (ignored for CSRs).
    pub algorithm: Option<KeyAlgorithm>,
}

/// A freshly issued certificate and, unless it was signed from a CSR, its key.
/// `Debug` leaves the key out.
#[derive(Clone)]
pub struct Issued {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key, PKCS#8 PEM; empty for CSR-signed certificates.
    pub key_pem: String,
    /// The certificate, DER.
    pub cert_der: Vec<u8>,
    /// Serial number, lowercase hex without separators or leading zero bytes.
    pub serial: String,
    /// SHA-256 of the DER, lowercase hex.
    pub fingerprint: String,
    /// Start of validity as encoded (whole seconds).
    pub not_before: OffsetDateTime,
    /// End of validity as encoded (whole seconds).
    pub not_after: OffsetDateTime,
    /// The client identity the certificate proves; `None` for node certificates.
    pub identity: Option<Identity>,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("serial", &self.serial)
            .field("fingerprint", &self.fingerprint)
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .field("identity", &self.identity)
            .field("has_key", &!self.key_pem.is_empty())
            .finish_non_exhaustive()
    }
}

impl Ca {
    /// Issues a device certificate (CN = device id) with a freshly generated key.
    pub fn issue_device(&self, id: &DeviceId, opts: &IssueOptions) -> Result<Issued, CertError> {
        let identity = Identity::Device { id: id.clone() };
        self.issue_client(identity, DEVICE_VALIDITY, opts)
    }

    /// Issues a broker node server certificate (serverAuth) for `sans`: DNS names or
    /// IP literals. Carries no client identity.
    pub fn issue_node(
        &self,
        node_id: &str,
        sans: &[String],
        opts: &IssueOptions,
    ) -> Result<Issued, CertError> {
        validate_name("node", node_id)?;
        if sans.is_empty() {
            return Err(CertError::NoSubjectAltNames {
                node_id: node_id.to_string(),
            });
        }
        let mut params = CertificateParams::default();
        params.distinguished_name = role::subject(role::NODE_OU, node_id);
        params.subject_alt_names = sans
            .iter()
            .map(|san| node_san(node_id, san))
            .collect::<Result<_, _>>()?;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = opts.algorithm.unwrap_or_default().generate()?;
        let what = format!("node certificate {node_id:?}");
        let window = self.validity_window(&what, opts, SERVER_AND_SERVICE_VALIDITY)?;
        self.sign_leaf(&what, params, window, &key, key.serialize_pem())
    }

    /// Issues a service certificate (clientAuth), e.g. for the bridge.
    pub fn issue_service(&self, name: &str, opts: &IssueOptions) -> Result<Issued, CertError> {
        validate_name("service", name)?;
        let identity = Identity::Service {
            name: name.to_string(),
        };
        self.issue_client(identity, SERVER_AND_SERVICE_VALIDITY, opts)
    }

    /// Issues an integration certificate (clientAuth) bound to one account.
    pub fn issue_integration(
        &self,
        name: &str,
        account: &AccountId,
        opts: &IssueOptions,
    ) -> Result<Issued, CertError> {
        validate_name("integration", name)?;
        let identity = Identity::Integration {
            name: name.to_string(),
            account: account.clone(),
        };
        self.issue_client(identity, SERVER_AND_SERVICE_VALIDITY, opts)
    }

    /// Certifies the key in a device's CSR. Only the key is taken from the CSR: the
    /// subject and extensions are forced to those of a device certificate for `id`.
    pub fn sign_device_csr(
        &self,
        csr_pem: &str,
        id: &DeviceId,
        opts: &IssueOptions,
    ) -> Result<Issued, CertError> {
        let public_key = crate::csr::checked_public_key(csr_pem, id)?;
        let identity = Identity::Device { id: id.clone() };
        let what = format!("device certificate for {id} from a CSR");
        let params = client_params(&identity)?;
        let window = self.validity_window(&what, opts, DEVICE_VALIDITY)?;
        self.sign_leaf(&what, params, window, &public_key, String::new())
    }

    fn issue_client(
        &self,
        identity: Identity,
        default_validity: Duration,
        opts: &IssueOptions,
    ) -> Result<Issued, CertError> {
        let what = format!("{} certificate for {}", identity.role(), identity);
        let params = client_params(&identity)?;
        let key = opts.algorithm.unwrap_or_default().generate()?;
        let window = self.validity_window(&what, opts, default_validity)?;
        self.sign_leaf(&what, params, window, &key, key.serialize_pem())
    }

    pub(super) fn validity_window(
        &self,
        what: &str,
        opts: &IssueOptions,
        default_validity: Duration,
    ) -> Result<(OffsetDateTime, OffsetDateTime), CertError> {
        let invalid = |reason: String| CertError::InvalidValidity {
            what: what.to_string(),
            reason,
        };
        let now = OffsetDateTime::now_utc();
        let not_before = opts.not_before.unwrap_or(now - BACKDATE);
        let not_after = match opts.not_after {
            Some(t) if t > self.not_after => {
                return Err(invalid(format!(
                    "not_after {t} is after the CA's expiry {}",
                    self.not_after
                )))
            }
            Some(t) => t,
            None => (now + default_validity).min(self.not_after),
        };
        if not_after <= not_before {
            return Err(invalid(format!(
                "not_after {not_after} is not after not_before {not_before}"
            )));
        }
        Ok((not_before, not_after))
    }

    /// Common leaf settings, signing, and parsing back.
    fn sign_leaf(
        &self,
        what: &str,
        mut params: CertificateParams,
        (not_before, not_after): (OffsetDateTime, OffsetDateTime),
        public_key: &impl PublicKeyData,
        key_pem: String,
    ) -> Result<Issued, CertError> {
        params.not_before = not_before;
        params.not_after = not_after;
        params.serial_number = Some(random_serial()?);
        params.is_ca = IsCa::ExplicitNoCa;
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        if is_rsa(public_key.algorithm()) {
            params.key_usages.push(KeyUsagePurpose::KeyEncipherment);
        }
        let cert = params
            .signed_by(public_key, &self.issuer)
            .map_err(CertError::signing(what))?;
        issued_from_der(cert.der().to_vec(), cert.pem(), key_pem)
    }
}

/// Subject, identity SAN and clientAuth EKU for a client identity.
fn client_params(identity: &Identity) -> Result<CertificateParams, CertError> {
    let (dn, san) = role::encode(identity)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = dn;
    params.subject_alt_names = vec![san];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    Ok(params)
}

fn node_san(node_id: &str, san: &str) -> Result<SanType, CertError> {
    let invalid = |reason: &str| CertError::InvalidSubjectAltName {
        node_id: node_id.to_string(),
        san: san.to_string(),
        reason: reason.to_string(),
    };
    if let Ok(ip) = san.parse::<std::net::IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    let host = san.strip_prefix("*.").unwrap_or(san);
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    if host.is_empty() || san.len() > 253 || !host.split('.').all(label_ok) {
        return Err(invalid("not an IP address or DNS name"));
    }
    let dns = rcgen::string::Ia5String::try_from(san.to_ascii_lowercase())
        .map_err(|_| invalid("not ASCII"))?;
    Ok(SanType::DnsName(dns))
}

/// Builds an [`Issued`] from DER, reading every field back from the certificate.
fn issued_from_der(
    cert_der: Vec<u8>,
    cert_pem: String,
    key_pem: String,
) -> Result<Issued, CertError> {
    let cert = parse_cert(&cert_der)?;
    let (not_before, not_after) = validity(&cert);
    let identity = match identity_from_cert(&cert) {
        Ok(identity) => Some(identity),
        Err(CertError::NoIdentity { .. }) => None,
        Err(e) => return Err(e),
    };
    let serial = serial_hex(cert.raw_serial());
    Ok(Issued {
        fingerprint: fingerprint_of_der(&cert_der),
        serial,
        not_before,
        not_after,
        identity,
        cert_pem,
        key_pem,
        cert_der,
    })
}
