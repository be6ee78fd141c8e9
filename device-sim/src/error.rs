//! Errors at the simulator's boundary.

use std::path::PathBuf;

/// Why a fleet could not start or a device could not get its credentials.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("invalid configuration: {0}")]
    InvalidSettings(String),
    #[error("the CA certificate is unusable: {0}")]
    Ca(String),
    #[error("no device credentials: set sim.device_cert_dir or sim.pki_dir")]
    NoCredentialSource,
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("device {device_id} cannot make a CSR: {reason}")]
    Csr { device_id: String, reason: String },
    #[error("{path} holds no usable {what}")]
    BadPem { path: PathBuf, what: &'static str },
    #[error("issuing a certificate for device {device_id}: {source}")]
    Issue {
        device_id: String,
        #[source]
        source: kumo_certs::CertError,
    },
    #[error("opening the PKI in {path}: {source}")]
    Pki {
        path: PathBuf,
        #[source]
        source: kumo_certs::CertError,
    },
    #[error("building the TLS configuration of device {device_id}: {source}")]
    Tls {
        device_id: String,
        #[source]
        source: rustls::Error,
    },
    #[error("broker node {node}: {reason}")]
    Node { node: String, reason: String },
    #[error("simulated device {slot} could not enrol with the claim code: {reason}")]
    Claim { slot: String, reason: String },
    #[error("invalid device id: {0}")]
    DeviceId(#[from] kumo_contract::IdError),
}
