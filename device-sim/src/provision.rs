//! Provisioning a fleet's certificates from a Kumo PKI directory before it starts.
//!
//! Two flows: `issue` (the CA generates each device's key and certificate into the
//! PKI directory) and `csr` (each device generates its own key in
//! `device_cert_dir`, writes a CSR, and gets back only a certificate signed with
//! its identity forced by the CA — the flow real devices use). Issuing is CPU and
//! fsync work, so it happens once, up front, on plain threads — never per
//! connection, and never from several worker processes at once.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use kumo_certs::files::PkiDir;
use kumo_contract::DeviceId;

use crate::error::SimError;
use crate::settings::{Provisioning, Settings};
use kumo_certs::files::device_pair;

/// The outcome of [`provision`].
#[derive(Debug, Clone)]
pub struct Provisioned {
    /// The CA certificate(s) devices must trust.
    pub ca_pem: String,
    /// Certificates issued now (the rest already existed).
    pub issued: u64,
}

/// Opens (or creates) the PKI at `dir` and gives every device of `settings`
/// that lacks one a certificate, by the configured flow. Blocking; uses all cores.
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
                scope.spawn(move || provision_part(pki, settings, t, threads, issued))
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

fn provision_part(
    pki: &PkiDir,
    s: &Settings,
    part: u64,
    parts: u64,
    issued: &AtomicU64,
) -> Result<(), SimError> {
    for n in (part..s.devices).step_by(parts as usize) {
        let id = s.device_id(s.first_index + n)?;
        let did_issue = match (&s.device_cert_dir, s.provisioning) {
            (Some(dir), Provisioning::Csr) => enroll_with_csr(pki, dir, &id)?,
            // Pre-provisioned certificates are the operator's business.
            (Some(_), Provisioning::Issue) => false,
            // Claiming devices enrol themselves when they start.
            (_, Provisioning::Claim) => false,
            (None, _) => issue_into_pki(pki, &id)?,
        };
        if did_issue {
            let done = issued.fetch_add(1, Relaxed) + 1;
            if done % 10_000 == 0 {
                tracing::info!(issued = done, "provisioning device certificates");
            }
        }
    }
    Ok(())
}

fn issue_into_pki(pki: &PkiDir, id: &DeviceId) -> Result<bool, SimError> {
    let (cert, key) = device_pair(pki.dir(), id);
    if cert.exists() && key.exists() {
        return Ok(false);
    }
    pki.issue_device(id).map_err(|source| SimError::Issue {
        device_id: id.to_string(),
        source,
    })?;
    Ok(true)
}

/// The device side of enrolment: key and CSR stay in `dir`; the CA signs the CSR
/// (recording the certificate in the PKI) and the certificate is stored next to
/// the key as `{id}.crt`.
fn enroll_with_csr(pki: &PkiDir, dir: &Path, id: &DeviceId) -> Result<bool, SimError> {
    let cert_path = dir.join(format!("{id}.crt"));
    let key_path = dir.join(format!("{id}.key"));
    if cert_path.exists() && key_path.exists() {
        return Ok(false);
    }
    let fail = |e: String| SimError::Csr {
        device_id: id.to_string(),
        reason: e,
    };
    let key = rcgen::KeyPair::generate().map_err(|e| fail(e.to_string()))?;
    // The subject is a placeholder: the CA ignores it and writes the identity itself.
    let csr = rcgen::CertificateParams::new(Vec::<String>::new())
        .and_then(|p| p.serialize_request(&key))
        .and_then(|r| r.pem())
        .map_err(|e| fail(e.to_string()))?;
    let csr_path = dir.join(format!("{id}.csr"));
    write_file(&key_path, key.serialize_pem().as_bytes(), true)?;
    write_file(&csr_path, csr.as_bytes(), false)?;
    let signed = pki
        .sign_device_csr(&csr_path, id)
        .map_err(|source| SimError::Issue {
            device_id: id.to_string(),
            source,
        })?;
    let cert = std::fs::read(&signed.cert).map_err(|source| SimError::Read {
        path: signed.cert.clone(),
        source,
    })?;
    write_file(&cert_path, &cert, false)?;
    Ok(true)
}

pub(crate) fn write_file(path: &Path, contents: &[u8], private: bool) -> Result<(), SimError> {
    let io = |source| SimError::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if private { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = private;
    use std::io::Write;
    options
        .open(path)
        .and_then(|mut f| f.write_all(contents))
        .map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::CredentialSource;

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
        let more = Settings {
            devices: 6,
            ..Default::default()
        };
        assert_eq!(provision(&pki, &more).expect("again").issued, 1);
        let (cert, key) = device_pair(&pki, &s.device_id(5).expect("id"));
        assert!(cert.is_file() && key.is_file());
    }

    #[test]
    fn csr_enrolment_keeps_the_key_on_the_device_and_yields_a_device_certificate() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = dir.path().join("pki");
        let devices = dir.path().join("devices");
        let s = Settings {
            devices: 2,
            provisioning: Provisioning::Csr,
            device_cert_dir: Some(devices.clone()),
            ..Default::default()
        };
        s.validate().expect("valid");
        assert_eq!(provision(&pki, &s).expect("enrol").issued, 2);
        assert_eq!(provision(&pki, &s).expect("again").issued, 0);
        let id = s.device_id(1).expect("id");
        let (pki_cert, pki_key) = device_pair(&pki, &id);
        assert!(pki_cert.is_file(), "the PKI records the certificate");
        assert!(!pki_key.exists(), "the PKI never sees the device's key");
        let pem = std::fs::read_to_string(devices.join(format!("{id}.crt"))).expect("crt");
        let der = kumo_certs::pem_to_der(&pem).expect("der");
        assert_eq!(
            kumo_certs::identity_from_der(&der).expect("identity"),
            kumo_contract::Identity::Device { id: id.clone() }
        );
        CredentialSource::Dir(devices)
            .load(&id)
            .expect("usable credentials");
    }
}
