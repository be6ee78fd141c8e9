//! Certificate revocation lists: signing one from a revoked-serials list, and
//! reading the revoked serials back out of one.
//!
//! Pure computation. Keeping the list and the CRL number is the caller's job
//! ([`crate::files::PkiDir`] or the bridge's database).

use std::collections::HashSet;

use rcgen::{CertificateRevocationListParams, RevocationReason, RevokedCertParams, SerialNumber};
use time::OffsetDateTime;
use x509_parser::prelude::FromDer;
use x509_parser::revocation_list::CertificateRevocationList;

use crate::inspect::{serial_bytes, serial_hex};
use crate::{Ca, CertError};

/// One revoked certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revoked {
    /// Serial number in any hex form accepted by [`crate::normalize_serial`].
    pub serial: String,
    /// When the CA processed the revocation.
    pub revoked_at: OffsetDateTime,
    /// Free-text reason; well-known RFC 5280 names (`keyCompromise`, `superseded`,
    /// `cessationOfOperation`, `affiliationChanged`, `privilegeWithdrawn`, …) are
    /// encoded as the CRL reason code, anything else as `unspecified`.
    pub reason: Option<String>,
}

impl Ca {
    /// Signs a CRL listing `revoked`, numbered `crl_number` (callers must make it
    /// increase), valid from now until `next_update`.
    pub fn crl_pem(
        &self,
        revoked: &[Revoked],
        crl_number: u64,
        next_update: OffsetDateTime,
    ) -> Result<String, CertError> {
        let revoked_certs = revoked
            .iter()
            .map(|r| {
                Ok(RevokedCertParams {
                    serial_number: SerialNumber::from_slice(&serial_bytes(&r.serial)?),
                    revocation_time: r.revoked_at,
                    reason_code: r.reason.as_deref().map(reason_code),
                    invalidity_date: None,
                })
            })
            .collect::<Result<Vec<_>, CertError>>()?;
        let params = CertificateRevocationListParams {
            this_update: OffsetDateTime::now_utc(),
            next_update,
            crl_number: SerialNumber::from_slice(&crl_number.to_be_bytes()),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: self.key_id(),
        };
        let crl = params
            .signed_by(self.issuer())
            .map_err(CertError::signing(format!("CRL number {crl_number}")))?;
        crl.pem()
            .map_err(CertError::signing(format!("CRL number {crl_number}")))
    }
}

/// Maps a free-text reason to an RFC 5280 reason code.
fn reason_code(reason: &str) -> RevocationReason {
    let key: String = reason
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect::<String>()
        .to_ascii_lowercase();
    match key.as_str() {
        "keycompromise" | "compromised" => RevocationReason::KeyCompromise,
        "cacompromise" => RevocationReason::CaCompromise,
        "affiliationchanged" => RevocationReason::AffiliationChanged,
        "superseded" | "replaced" => RevocationReason::Superseded,
        "cessationofoperation" | "decommissioned" | "retired" => {
            RevocationReason::CessationOfOperation
        }
        "privilegewithdrawn" => RevocationReason::PrivilegeWithdrawn,
        _ => RevocationReason::Unspecified,
    }
}

/// Parses a CRL (PEM) and returns its revoked serials in canonical hex. Does not
/// verify the CRL's signature; use [`verify_crl_pem`] for CRLs from untrusted places.
pub fn revoked_serials_from_crl_pem(pem: &str) -> Result<HashSet<String>, CertError> {
    let der = crl_der_from_pem(pem)?;
    let crl = parse_crl(&der)?;
    Ok(crl
        .iter_revoked_certificates()
        .map(|r| serial_hex(r.raw_serial()))
        .collect())
}

/// Checks that a CRL (PEM) was signed by `ca` and returns its CRL number.
pub fn verify_crl_pem(pem: &str, ca: &Ca) -> Result<u64, CertError> {
    let der = crl_der_from_pem(pem)?;
    let crl = parse_crl(&der)?;
    let ca_der = ca.cert_der();
    let ca_cert = crate::inspect::parse_cert(&ca_der)?;
    crl.verify_signature(ca_cert.public_key())
        .map_err(|e| CertError::CrlParse {
            reason: format!("signature does not verify against the CA: {e}"),
        })?;
    let number = crl.crl_number().ok_or_else(|| CertError::CrlParse {
        reason: "no CRL number".into(),
    })?;
    u64::try_from(number).map_err(|_| CertError::CrlParse {
        reason: format!("CRL number {number} does not fit in 64 bits"),
    })
}

/// Decodes a CRL PEM to DER (what rustls' `with_crls` takes).
pub fn crl_der_from_pem(pem: &str) -> Result<Vec<u8>, CertError> {
    let (_, block) =
        x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(|e| CertError::CrlParse {
            reason: format!("not PEM: {e}"),
        })?;
    if block.label != "X509 CRL" {
        return Err(CertError::CrlParse {
            reason: format!("expected an X509 CRL PEM block, found {:?}", block.label),
        });
    }
    Ok(block.contents)
}

fn parse_crl(der: &[u8]) -> Result<CertificateRevocationList<'_>, CertError> {
    let (_, crl) = CertificateRevocationList::from_der(der).map_err(|e| CertError::CrlParse {
        reason: e.to_string(),
    })?;
    Ok(crl)
}
