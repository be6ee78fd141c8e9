//! The broker library's error type: everything `start` and `wait` can fail with.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Why a broker node could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("broker.{key} {addr} is already in use")]
    AddrInUse { key: &'static str, addr: SocketAddr },
    #[error("cannot listen on broker.{key} {addr}: {source}")]
    Bind {
        key: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("broker.{key} is not set")]
    MissingPath { key: &'static str },
    #[error("cannot read {path}: {reason}")]
    Pem { path: PathBuf, reason: String },
    #[error("TLS configuration from {path} is unusable: {reason}")]
    Tls { path: PathBuf, reason: String },
    #[error("router: {0}")]
    Router(String),
    #[error("a node task failed: {0}")]
    Task(String),
}

impl BrokerError {
    pub(crate) fn bind(key: &'static str, addr: SocketAddr, source: std::io::Error) -> Self {
        if source.kind() == std::io::ErrorKind::AddrInUse {
            BrokerError::AddrInUse { key, addr }
        } else {
            BrokerError::Bind { key, addr, source }
        }
    }
}
