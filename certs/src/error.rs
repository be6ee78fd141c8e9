//! The one error type of the PKI boundary.
//!
//! Every variant names the cause and carries the offending id, serial or path, so a
//! message read in a log or a CLI is enough to act on.

use std::path::PathBuf;

use crate::KeyAlgorithm;

/// Everything that can go wrong issuing, parsing or storing certificates.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// A service, integration or node name does not follow the id syntax.
    #[error("invalid {kind} name {name:?}: {reason}")]
    InvalidName {
        kind: &'static str,
        name: String,
        reason: String,
    },
    /// A node certificate needs at least one DNS name or IP address.
    #[error("node {node_id:?} needs at least one subject alternative name")]
    NoSubjectAltNames { node_id: String },
    /// A SAN is neither an IP literal nor a valid DNS name.
    #[error("invalid subject alternative name {san:?} for node {node_id:?}: {reason}")]
    InvalidSubjectAltName {
        node_id: String,
        san: String,
        reason: String,
    },
    /// Key generation failed or is not available for the algorithm.
    #[error("cannot generate a {algorithm} key: {reason}")]
    KeyGeneration {
        algorithm: KeyAlgorithm,
        reason: String,
    },
    /// The operating system's random number generator failed.
    #[error("the system random number generator failed while {while_doing}")]
    Randomness { while_doing: &'static str },
    /// rcgen refused to build or sign something.
    #[error("cannot sign the {what}: {source}")]
    Signing {
        what: String,
        #[source]
        source: rcgen::Error,
    },
    /// The CA certificate is unusable (not parseable, not a CA, cannot sign).
    #[error("invalid CA certificate: {reason}")]
    InvalidCaCertificate { reason: String },
    /// The CA key cannot be loaded or does not belong to the CA certificate.
    #[error("invalid CA key: {reason}")]
    InvalidCaKey { reason: String },
    /// The requested validity is empty, inverted or outlives the CA.
    #[error("invalid validity for the {what}: {reason}")]
    InvalidValidity { what: String, reason: String },
    /// A DER or PEM blob is not a parseable X.509 certificate.
    #[error("cannot parse certificate: {reason}")]
    CertificateParse { reason: String },
    /// The certificate carries no Kumo role (e.g. a node certificate or a foreign one).
    #[error("certificate {subject:?} carries no Kumo client identity: {reason}")]
    NoIdentity { subject: String, reason: String },
    /// The certificate's role encoding is present but inconsistent or malformed.
    #[error("certificate {subject:?} has an invalid Kumo identity: {reason}")]
    InvalidIdentity { subject: String, reason: String },
    /// A CSR is larger than accepted.
    #[error("CSR is {len} bytes; the limit is {limit}")]
    CsrTooLarge { len: usize, limit: usize },
    /// A CSR is not parseable PEM/DER.
    #[error("cannot parse CSR for device {device_id}: {reason}")]
    CsrParse { device_id: String, reason: String },
    /// A CSR's self-signature does not verify.
    #[error("CSR for device {device_id} has an invalid signature")]
    CsrSignature { device_id: String },
    /// A CSR's key type (or size) is not accepted.
    #[error("CSR for device {device_id} uses an unsupported key: {key}")]
    UnsupportedCsrKey { device_id: String, key: String },
    /// A serial number is not hexadecimal.
    #[error("invalid serial number {serial:?}: expected hexadecimal")]
    InvalidSerial { serial: String },
    /// A CRL cannot be parsed.
    #[error("cannot parse CRL: {reason}")]
    CrlParse { reason: String },
    /// File system access failed.
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `init` found an existing PKI.
    #[error("a PKI already exists at {path}")]
    AlreadyInitialized { path: PathBuf },
    /// `open` found no PKI.
    #[error("no PKI at {path} (run `kumo certs init`)")]
    NotInitialized { path: PathBuf },
    /// `state.json` is unreadable or malformed.
    #[error("invalid PKI state file {path}: {reason}")]
    State { path: PathBuf, reason: String },
    /// `revoke` matched no certificate issued from this PKI directory.
    #[error("no certificate with serial or device id {query:?} in {dir}")]
    UnknownCertificate { query: String, dir: PathBuf },
    /// A CA rollover is already under way (finish it first).
    #[error("a CA rollover is already under way in {dir} (`kumo certs rollover finish`)")]
    RolloverInProgress { dir: PathBuf },
    /// There is no CA rollover to finish.
    #[error("no CA rollover is under way in {dir} (`kumo certs rollover begin`)")]
    NoRollover { dir: PathBuf },
    /// Devices still hold only certificates from the CA being retired.
    #[error("{count} device(s) still hold only a certificate from the old CA (e.g. {examples}); they move over when they renew — or finish with --force to cut them off")]
    RolloverIncomplete { count: usize, examples: String },
}

impl CertError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        CertError::Io {
            action,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn signing(what: impl Into<String>) -> impl FnOnce(rcgen::Error) -> CertError {
        let what = what.into();
        move |source| CertError::Signing { what, source }
    }
}
