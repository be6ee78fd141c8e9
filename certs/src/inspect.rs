//! Reading facts back out of DER certificates: serial, fingerprint, validity.
//!
//! Owns the one canonical serial format (lowercase hex of the positive integer, no
//! separators, no leading zero bytes), used by [`crate::Issued`], CRLs and the
//! files layer alike.

use sha2::{Digest, Sha256};
use x509_parser::certificate::X509Certificate;

use crate::CertError;

/// Parses a complete DER certificate, refusing trailing bytes.
pub(crate) fn parse_cert(der: &[u8]) -> Result<X509Certificate<'_>, CertError> {
    let (rest, cert) =
        x509_parser::parse_x509_certificate(der).map_err(|e| CertError::CertificateParse {
            reason: e.to_string(),
        })?;
    if !rest.is_empty() {
        return Err(CertError::CertificateParse {
            reason: format!("{} trailing bytes after the certificate", rest.len()),
        });
    }
    Ok(cert)
}

/// Decodes the first `CERTIFICATE` block of a PEM string to DER.
pub fn pem_to_der(pem: &str) -> Result<Vec<u8>, CertError> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(|e| {
        CertError::CertificateParse {
            reason: format!("not PEM: {e}"),
        }
    })?;
    if block.label != "CERTIFICATE" {
        return Err(CertError::CertificateParse {
            reason: format!("expected a CERTIFICATE PEM block, found {:?}", block.label),
        });
    }
    Ok(block.contents)
}

/// The canonical hex form of a DER INTEGER's content bytes.
pub(crate) fn serial_hex(raw: &[u8]) -> String {
    let trimmed = match raw.iter().position(|b| *b != 0) {
        Some(first) => &raw[first..],
        None => return "00".into(),
    };
    hex::encode(trimmed)
}

/// Normalizes a user-supplied serial (`0A:1b…`, `0x0a1b…`, `0a1b…`) to the
/// canonical form.
pub fn normalize_serial(serial: &str) -> Result<String, CertError> {
    let bad = || CertError::InvalidSerial {
        serial: serial.to_string(),
    };
    let trimmed = serial.trim();
    let digits = trimmed
        .strip_prefix("0x")
        .or_else(|| trimmed.strip_prefix("0X"))
        .unwrap_or(trimmed)
        .replace(':', "");
    if digits.is_empty() || digits.len() > 80 {
        return Err(bad());
    }
    let padded = if digits.len() % 2 == 1 {
        format!("0{digits}")
    } else {
        digits
    };
    let bytes = hex::decode(&padded).map_err(|_| bad())?;
    Ok(serial_hex(&bytes))
}

/// Decodes a canonical (or any accepted) hex serial to big-endian bytes for rcgen.
pub(crate) fn serial_bytes(serial: &str) -> Result<Vec<u8>, CertError> {
    let canonical = normalize_serial(serial)?;
    hex::decode(&canonical).map_err(|_| CertError::InvalidSerial {
        serial: serial.to_string(),
    })
}

/// The serial number of a DER certificate, in the same hex format as
/// [`crate::Issued::serial`].
pub fn serial_of_der(der: &[u8]) -> Result<String, CertError> {
    Ok(serial_hex(parse_cert(der)?.raw_serial()))
}

/// A certificate's validity window (`notBefore`, `notAfter`), from its DER.
pub fn validity_of_der(
    der: &[u8],
) -> Result<(time::OffsetDateTime, time::OffsetDateTime), CertError> {
    Ok(validity(&parse_cert(der)?))
}

/// SHA-256 of the DER bytes, lowercase hex (what `openssl x509 -fingerprint -sha256`
/// prints, without the colons).
pub fn fingerprint_of_der(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

/// Validity period of a parsed certificate.
pub(crate) fn validity(cert: &X509Certificate<'_>) -> (time::OffsetDateTime, time::OffsetDateTime) {
    let v = cert.validity();
    (v.not_before.to_datetime(), v.not_after.to_datetime())
}

/// The subject as an RFC 4514-ish string, for error messages.
pub(crate) fn subject_string(cert: &X509Certificate<'_>) -> String {
    cert.subject().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_are_normalized_to_lowercase_hex_without_leading_zeros() {
        assert_eq!(normalize_serial("00:0A:1b").expect("valid"), "0a1b");
        assert_eq!(normalize_serial("0xABC").expect("valid"), "0abc");
        assert_eq!(serial_hex(&[0, 0, 0x7f]), "7f");
        assert_eq!(serial_hex(&[0, 0]), "00");
    }

    #[test]
    fn non_hex_serials_are_rejected() {
        for bad in ["", "xyz", "remo-1", "0x"] {
            assert!(normalize_serial(bad).is_err(), "{bad:?}");
        }
    }
}
