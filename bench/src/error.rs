//! The load tool's one error type.

use std::path::PathBuf;

/// Everything that can stop a benchmark run (per-connection failures are
/// counted, not raised).
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The PKI directory could not be opened or a certificate not issued.
    #[error("certificate {what} failed: {source}")]
    Certs {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: kumo_certs::CertError,
    },
    /// A PEM file or string did not parse.
    #[error("parsing PEM from {path}: {message}")]
    Pem {
        /// Where the PEM came from.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// Building a rustls configuration failed.
    #[error("building the TLS client configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// Reading a `/proc` file failed or it had an unexpected shape.
    #[error("reading {path}: {message}")]
    Proc {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}
