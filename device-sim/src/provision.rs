//! Provisioning a fleet's certificates from a Kumo PKI directory before it starts.
//!
//! Issuing is CPU and fsync work, so it happens once, up front, on plain threads —
//! never per connection, and never from several worker processes at once.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use kumo_certs::files::PkiDir;

use crate::error::SimError;
use crate::settings::Settings;
use crate::tls::pki_device_paths;

/// The outcome of [`provision`].
#[derive(Debug, Clone)]
pub struct Provisioned {
    /// The CA certificate(s) devices must trust.
    pub ca_pem: String,
    /// Certificates issued now (the rest already existed).
    pub issued: u64,
}

/// Opens (or creates) the PKI at `dir` and issues a certificate to every device
/// of `settings` that lacks one. Blocking; uses all cores.
pub fn provision(dir: &Path, settings: &Settings) -> Result<Provisioned, SimError> {
    let pki = PkiDir::open_or_init(dir).map_err(|source| SimError::Pki {
        path: dir.to_path_buf(),
        source,
    })?;
    let ca_path = pki.ca_path();
    let ca_pem = std::fs::read_to_string(&ca_path).map_err(|source| SimError::Read {
        path: ca_path,
        source,
    })?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let issued = AtomicU64::new(0);
    let results: Vec<Result<(), SimError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (pki, issued) = (&pki, &issued);
                scope.spawn(move || issue_missing(pki, settings, t, threads, issued))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(SimError::Ca("certificate issuing thread panicked".into()))
                })
            })
            .collect()
    });
    results.into_iter().collect::<Result<(), _>>()?;
    Ok(Provisioned {
        ca_pem,
        issued: issued.into_inner(),
    })
}

fn issue_missing(
    pki: &PkiDir,
    s: &Settings,
    part: u64,
    parts: u64,
    issued: &AtomicU64,
) -> Result<(), SimError> {
    for n in (part..s.devices).step_by(parts as usize) {
        let id = s.device_id(s.first_index + n)?;
        let (cert, key) = pki_device_paths(pki.dir(), &id);
        if cert.exists() && key.exists() {
            continue;
        }
        pki.issue_device(&id).map_err(|source| SimError::Issue {
            device_id: id.to_string(),
            source,
        })?;
        let done = issued.fetch_add(1, Relaxed) + 1;
        if done % 10_000 == 0 {
            tracing::info!(issued = done, "issuing device certificates");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provisioning_issues_only_missing_certificates() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = dir.path().join("pki");
        let s = Settings {
            devices: 5,
            ..Default::default()
        };
        let first = provision(&pki, &s).expect("provision");
        assert_eq!(first.issued, 5);
        assert!(first.ca_pem.contains("BEGIN CERTIFICATE"));
        let again = provision(
            &pki,
            &Settings {
                devices: 6,
                ..Default::default()
            },
        )
        .expect("again");
        assert_eq!(again.issued, 1);
        let (cert, key) = pki_device_paths(&pki, &s.device_id(5).expect("id"));
        assert!(cert.is_file() && key.is_file());
    }
}
