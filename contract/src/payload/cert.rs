//! Certificate renewal over a device's live session: the device's request
//! (a CSR for a fresh key) and the cloud's answer (the certificate, or why not).
//!
//! The identity in the new certificate is the session's, never the request's:
//! the cloud takes only the public key from the CSR.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::{AckResult, Checked, PayloadError};

/// Longest CSR accepted, in bytes of PEM text (as the PKI's own limit).
pub const MAX_CSR_PEM: usize = 16 * 1024;
/// Longest request id.
pub const MAX_REQUEST_ID: usize = 64;

/// `devices/{id}/cert/request`, device → cloud, QoS 1: certify a new key for
/// this device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CertRequest {
    /// Chosen by the device, copied into the response (1–64 characters), so a
    /// device on MQTT 3.1.1 can tell answers apart. MQTT 5 devices may use
    /// Correlation Data instead (or as well).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// PEM `CERTIFICATE REQUEST` for the new key (P-256, P-384 or RSA
    /// 2048–8192). Its subject and extensions are ignored.
    pub csr: String,
}

/// `devices/{id}/cert/response` (or the request's MQTT 5 Response Topic),
/// cloud → device, QoS 1. Devices ignore fields they do not know.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CertResponse {
    /// The request's `id`, if it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub result: AckResult,
    /// Why nothing was issued (failed responses).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The new certificate (PEM), valid from now; the current one stays valid
    /// until it is revoked after the grace period or expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
    /// Every CA certificate the nodes trust (PEM bundle): replace the device's
    /// trust store with it (during a CA rollover it holds the old and the new CA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<String>,
    /// When the new certificate expires (RFC 3339).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    #[schemars(with = "Option<String>", extend("format" = "date-time"))]
    pub not_after: Option<OffsetDateTime>,
    /// When to renew again (RFC 3339).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    #[schemars(with = "Option<String>", extend("format" = "date-time"))]
    pub renew_at: Option<OffsetDateTime>,
    /// When the certificate the device connected with stops working (RFC 3339):
    /// reconnect with the new one before then.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    #[schemars(with = "Option<String>", extend("format" = "date-time"))]
    pub old_revoked_at: Option<OffsetDateTime>,
}

impl Checked for CertRequest {
    fn check(&self) -> Result<(), PayloadError> {
        if let Some(id) = &self.id {
            if id.is_empty() || id.len() > MAX_REQUEST_ID {
                return Err(PayloadError::Range(format!(
                    "id must be 1 to {MAX_REQUEST_ID} characters"
                )));
            }
        }
        if self.csr.is_empty() || self.csr.len() > MAX_CSR_PEM {
            return Err(PayloadError::Range(format!(
                "csr must be 1 to {MAX_CSR_PEM} bytes of PEM"
            )));
        }
        Ok(())
    }
}
