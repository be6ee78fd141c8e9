//! Checking a device's certificate signing request before its key is certified.
//!
//! Owns the CSR acceptance rules: size limit, PEM/DER syntax, a valid
//! self-signature (proof the device holds the key), and an accepted key type.
//! Nothing else from the CSR is used: its subject and requested extensions are
//! ignored, because the CA forces the identity.

use kumo_contract::DeviceId;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::error::X509Error;
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;

use crate::CertError;

/// Largest CSR accepted, in bytes of PEM text. A 4096-bit RSA CSR is under 2 KiB.
pub const MAX_CSR_BYTES: usize = 16 * 1024;

const OID_RSA_SHA1: &str = "1.2.840.113549.1.1.5";
const OID_RSA_SHA1_OIW: &str = "1.3.14.3.2.29";

/// Validates a CSR and returns its subject public key, ready to be certified.
pub(crate) fn checked_public_key(
    csr_pem: &str,
    device: &DeviceId,
) -> Result<rcgen::SubjectPublicKeyInfo, CertError> {
    if csr_pem.len() > MAX_CSR_BYTES {
        return Err(CertError::CsrTooLarge {
            len: csr_pem.len(),
            limit: MAX_CSR_BYTES,
        });
    }
    let parse_err = |reason: String| CertError::CsrParse {
        device_id: device.to_string(),
        reason,
    };
    let unsupported = |key: String| CertError::UnsupportedCsrKey {
        device_id: device.to_string(),
        key,
    };
    let (_, pem) = x509_parser::pem::parse_x509_pem(csr_pem.as_bytes())
        .map_err(|e| parse_err(format!("not PEM: {e}")))?;
    if !matches!(
        pem.label.as_str(),
        "CERTIFICATE REQUEST" | "NEW CERTIFICATE REQUEST"
    ) {
        return Err(parse_err(format!(
            "expected a CERTIFICATE REQUEST PEM block, found {:?}",
            pem.label
        )));
    }
    let (rest, csr) =
        X509CertificationRequest::from_der(&pem.contents).map_err(|e| parse_err(e.to_string()))?;
    if !rest.is_empty() {
        return Err(parse_err(format!("{} trailing bytes", rest.len())));
    }

    let spki = &csr.certification_request_info.subject_pki;
    let key = describe_key(spki);
    if let Ok(PublicKey::RSA(rsa)) = spki.parsed() {
        let bits = rsa.modulus.iter().skip_while(|b| **b == 0).count() * 8;
        if !(2048..=8192).contains(&bits) {
            return Err(unsupported(format!(
                "RSA-{bits} (2048 to 8192 bits accepted)"
            )));
        }
    }
    let sig_oid = csr.signature_algorithm.algorithm.to_id_string();
    if sig_oid == OID_RSA_SHA1 || sig_oid == OID_RSA_SHA1_OIW {
        return Err(unsupported(format!("{key} signed with SHA-1")));
    }
    match csr.verify_signature() {
        Ok(()) => {}
        Err(X509Error::SignatureUnsupportedAlgorithm) => {
            return Err(unsupported(format!(
                "{key} (signature algorithm {sig_oid})"
            )))
        }
        Err(_) => {
            return Err(CertError::CsrSignature {
                device_id: device.to_string(),
            })
        }
    }
    rcgen::SubjectPublicKeyInfo::from_der(spki.raw).map_err(|_| unsupported(key))
}

/// A short human name for a subject key, for error messages.
fn describe_key(spki: &SubjectPublicKeyInfo<'_>) -> String {
    let alg = spki.algorithm.algorithm.to_id_string();
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok())
        .map(|o| o.to_id_string());
    match (alg.as_str(), curve.as_deref()) {
        ("1.2.840.10045.2.1", Some("1.2.840.10045.3.1.7")) => "ECDSA P-256".into(),
        ("1.2.840.10045.2.1", Some("1.3.132.0.34")) => "ECDSA P-384".into(),
        ("1.2.840.10045.2.1", Some(c)) => format!("ECDSA on curve {c}"),
        ("1.3.101.112", _) => "Ed25519".into(),
        ("1.3.101.113", _) => "Ed448".into(),
        ("1.2.840.113549.1.1.1", _) => "RSA".into(),
        (other, _) => format!("key algorithm {other}"),
    }
}

#[cfg(test)]
#[path = "csr_fuzz.rs"]
mod fuzz;
