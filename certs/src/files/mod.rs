//! A PKI kept in a directory, for the `kumo certs` CLI and `kumo up`.
//!
//! Layout of `<dir>`:
//!
//! ```text
//! ca.pem                 the CA certificate(s) to trust: the issuing CA first, then any
//!                        CA being retired in a rollover (see [`PkiDir::rollover_begin`])
//! ca.key                 the issuing CA's private key (PKCS#8 PEM, mode 0600)
//! issuing.pem            the issuing CA's certificate, once a rollover has happened
//! retiring/<serial>/{ca.pem,ca.key}  a CA being retired: trusted, signs only its CRL
//! crl.pem                current CRL, regenerated on every revocation
//! state.json             revoked serials + next CRL number (the CRL's source of truth)
//! issued/device/<id>/{cert.pem,key.pem}
//! issued/node/<node id>/{cert.pem,key.pem}
//! issued/service/<name>/{cert.pem,key.pem}
//! issued/integration/<account>/<name>/{cert.pem,key.pem}
//! issued/…/history/<serial>.pem   certificates replaced by a re-issue (still valid until revoked)
//! ```
//!
//! Keys are 0600 and directories 0700 from creation; every write is atomic
//! (temp file + rename). Concurrent writers (two CLIs revoking at once) are not
//! serialized: run PKI administration from one place at a time.

mod atomic;
mod renew;
mod rollover;
mod scan;
mod stack;
mod state;

use std::path::{Path, PathBuf};

use kumo_contract::{AccountId, DeviceId};
use time::{Duration, OffsetDateTime};

use crate::{normalize_serial, Ca, CertError, IssueOptions, Issued, KeyAlgorithm};
use atomic::{Durability, Mode};
pub use renew::Renewal;
pub use rollover::RolloverStatus;
pub use scan::{device_pair, CertKind, CertRecord, CertStatus};
pub use stack::{StackPaths, BRIDGE_SERVICE, RENEW_BEFORE};
use state::{RevokedEntry, State};

/// The issuing CA's certificate and key files: `issuing.pem` once a rollover
/// happened, else `ca.pem`.
fn issuing_pair(dir: &Path) -> (PathBuf, PathBuf) {
    let issuing = dir.join("issuing.pem");
    let cert = if issuing.exists() {
        issuing
    } else {
        dir.join("ca.pem")
    };
    (cert, dir.join("ca.key"))
}

fn stamp(path: &Path) -> Option<(std::time::SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// Common name of the CA created by [`PkiDir::init`].
pub const CA_COMMON_NAME: &str = "Kumo Root CA";
/// How long a CRL written here stays valid (its `nextUpdate`).
pub const CRL_VALIDITY: Duration = Duration::days(30);

/// Where an issued certificate and its key were written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedPaths {
    /// The certificate (PEM).
    pub cert: PathBuf,
    /// The private key (PEM, 0600); empty path for CSR-signed certificates, whose
    /// key never leaves the device.
    pub key: PathBuf,
    /// Serial number, canonical hex.
    pub serial: String,
}

/// An open PKI directory with its CA loaded.
#[derive(Debug)]
pub struct PkiDir {
    dir: PathBuf,
    ca: Ca,
    /// Size and mtime of the issuing CA's files when `ca` was loaded.
    loaded: Option<(std::time::SystemTime, u64)>,
}

impl PkiDir {
    /// Opens an existing PKI.
    pub fn open(dir: &Path) -> Result<PkiDir, CertError> {
        if !dir.join("ca.pem").exists() {
            return Err(CertError::NotInitialized {
                path: dir.to_path_buf(),
            });
        }
        let (cert_path, key_path) = issuing_pair(dir);
        let loaded = stamp(&key_path);
        let ca = Ca::from_pem(&atomic::read(&cert_path)?, &atomic::read(&key_path)?)?;
        Ok(PkiDir {
            dir: dir.to_path_buf(),
            ca,
            loaded,
        })
    }

    /// Loads the issuing CA again if another process changed it (a CA
    /// rollover by `kumo certs`), so a long-running signer follows it. On a
    /// half-written change it keeps the CA it has and says why.
    pub fn refresh(&mut self) -> Result<(), CertError> {
        let (_, key_path) = issuing_pair(&self.dir);
        if stamp(&key_path) == self.loaded {
            return Ok(());
        }
        *self = PkiDir::open(&self.dir)?;
        Ok(())
    }

    /// Creates a new PKI: CA, empty revocation state and an empty CRL. Fails if a
    /// CA already exists in `dir`.
    pub fn init(dir: &Path, algorithm: KeyAlgorithm) -> Result<PkiDir, CertError> {
        for existing in [dir.join("ca.pem"), dir.join("ca.key")] {
            if existing.exists() {
                return Err(CertError::AlreadyInitialized { path: existing });
            }
        }
        let ca = Ca::generate(CA_COMMON_NAME, algorithm)?;
        atomic::create_dir(dir)?;
        // Key first: once ca.pem exists, the PKI counts as initialized.
        atomic::write(&dir.join("ca.key"), ca.key_pem().as_bytes(), Mode::Private)?;
        atomic::write(&dir.join("ca.pem"), ca.cert_pem().as_bytes(), Mode::Public)?;
        let pki = PkiDir {
            dir: dir.to_path_buf(),
            ca,
            loaded: stamp(&dir.join("ca.key")),
        };
        State::default().save(&pki.state_path())?;
        pki.write_crl()?;
        Ok(pki)
    }

    /// Opens the PKI in `dir`, creating one (ECDSA P-256) if there is none.
    pub fn open_or_init(dir: &Path) -> Result<PkiDir, CertError> {
        if dir.join("ca.pem").exists() {
            PkiDir::open(dir)
        } else {
            PkiDir::init(dir, KeyAlgorithm::default())
        }
    }

    /// The CA.
    pub fn ca(&self) -> &Ca {
        &self.ca
    }

    /// The PKI directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `<dir>/ca.pem`.
    pub fn ca_path(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// Every CA certificate nodes and devices trust (the text of `ca.pem`).
    pub fn trust_bundle_pem(&self) -> Result<String, CertError> {
        atomic::read(&self.ca_path())
    }

    /// `<dir>/crl.pem`.
    pub fn crl_path(&self) -> PathBuf {
        self.dir.join("crl.pem")
    }

    pub(crate) fn state_path(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    /// Issues a device certificate and key into `issued/device/<id>/`.
    pub fn issue_device(&self, id: &DeviceId) -> Result<IssuedPaths, CertError> {
        let issued = self.ca.issue_device(id, &IssueOptions::default())?;
        self.store(&CertKind::Device.dir(&self.dir, id.as_str(), None), &issued)
    }

    /// Issues a broker node server certificate into `issued/node/<node_id>/`.
    pub fn issue_node(&self, node_id: &str, sans: &[String]) -> Result<IssuedPaths, CertError> {
        let issued = self
            .ca
            .issue_node(node_id, sans, &IssueOptions::default())?;
        self.store(&CertKind::Node.dir(&self.dir, node_id, None), &issued)
    }

    /// Issues a service certificate into `issued/service/<name>/`.
    pub fn issue_service(&self, name: &str) -> Result<IssuedPaths, CertError> {
        let issued = self.ca.issue_service(name, &IssueOptions::default())?;
        self.store(&CertKind::Service.dir(&self.dir, name, None), &issued)
    }

    /// Issues an integration certificate into `issued/integration/<account>/<name>/`.
    pub fn issue_integration(
        &self,
        name: &str,
        account: &AccountId,
    ) -> Result<IssuedPaths, CertError> {
        let issued = self
            .ca
            .issue_integration(name, account, &IssueOptions::default())?;
        let dir = CertKind::Integration.dir(&self.dir, name, Some(account));
        self.store(&dir, &issued)
    }

    /// Signs a CSR held in memory (as received over the network) for device
    /// `id`, stores the certificate like [`PkiDir::sign_device_csr`] and
    /// returns it with its PEM. The CSR's subject is ignored; the role is forced.
    pub fn sign_device_csr_pem(
        &self,
        csr_pem: &str,
        id: &DeviceId,
    ) -> Result<(IssuedPaths, String), CertError> {
        let issued = self
            .ca
            .sign_device_csr(csr_pem, id, &IssueOptions::default())?;
        let paths = self.store(&CertKind::Device.dir(&self.dir, id.as_str(), None), &issued)?;
        Ok((paths, issued.cert_pem))
    }

    /// Signs the CSR at `csr_path` for device `id`; the certificate goes to
    /// `issued/device/<id>/cert.pem` (no key is stored).
    pub fn sign_device_csr(
        &self,
        csr_path: &Path,
        id: &DeviceId,
    ) -> Result<IssuedPaths, CertError> {
        let len = std::fs::metadata(csr_path)
            .map_err(|e| CertError::io("reading", csr_path, e))?
            .len();
        if len > crate::MAX_CSR_BYTES as u64 {
            return Err(CertError::CsrTooLarge {
                len: usize::try_from(len).unwrap_or(usize::MAX),
                limit: crate::MAX_CSR_BYTES,
            });
        }
        let csr = atomic::read(csr_path)?;
        let issued = self
            .ca
            .sign_device_csr(&csr, id, &IssueOptions::default())?;
        self.store(&CertKind::Device.dir(&self.dir, id.as_str(), None), &issued)
    }

    /// Writes an issued certificate (and key, if any) into `dir`, moving a
    /// previous certificate to `history/<serial>.pem`.
    pub(crate) fn store(&self, dir: &Path, issued: &Issued) -> Result<IssuedPaths, CertError> {
        let (cert, key) = scan::pair(dir);
        if let Ok(old_pem) = std::fs::read_to_string(&cert) {
            let old_serial = crate::pem_to_der(&old_pem)
                .and_then(|der| crate::serial_of_der(&der))
                .unwrap_or_else(|_| {
                    format!("unparseable-{}", OffsetDateTime::now_utc().unix_timestamp())
                });
            let history = dir.join("history").join(format!("{old_serial}.pem"));
            atomic::write_with(&history, old_pem.as_bytes(), Mode::Public, Durability::Lazy)?;
        }
        let key_path = if issued.key_pem.is_empty() {
            // The old key (if any) belongs to a replaced certificate; drop our copy.
            match std::fs::remove_file(&key) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(CertError::io("removing", &key, e)),
            }
            PathBuf::new()
        } else {
            atomic::write_with(
                &key,
                issued.key_pem.as_bytes(),
                Mode::Private,
                Durability::Lazy,
            )?;
            key
        };
        atomic::write_with(
            &cert,
            issued.cert_pem.as_bytes(),
            Mode::Public,
            Durability::Lazy,
        )?;
        Ok(IssuedPaths {
            cert,
            key: key_path,
            serial: issued.serial.clone(),
        })
    }

    /// Revokes by serial (any hex form) or by device id (every certificate ever
    /// issued here to that device), then rewrites `crl.pem`. Returns the serials
    /// newly revoked (empty if all were already revoked).
    pub fn revoke(
        &self,
        serial_or_device_id: &str,
        reason: Option<&str>,
    ) -> Result<Vec<String>, CertError> {
        let records = self.list()?;
        let device_matches: Vec<&CertRecord> = match DeviceId::parse(serial_or_device_id) {
            Ok(id) => records
                .iter()
                .filter(|r| r.kind == CertKind::Device && r.name == id.as_str())
                .collect(),
            Err(_) => Vec::new(),
        };
        let matches = if device_matches.is_empty() {
            let unknown = || CertError::UnknownCertificate {
                query: serial_or_device_id.to_string(),
                dir: self.dir.clone(),
            };
            let serial = normalize_serial(serial_or_device_id).map_err(|_| unknown())?;
            let found: Vec<&CertRecord> = records.iter().filter(|r| r.serial == serial).collect();
            if found.is_empty() {
                return Err(unknown());
            }
            found
        } else {
            device_matches
        };

        let state_path = self.state_path();
        let mut state = State::load(&state_path)?;
        let now = OffsetDateTime::now_utc();
        let mut newly = Vec::new();
        for record in matches {
            if state.revoked_at(&record.serial).is_some() || newly.contains(&record.serial) {
                continue;
            }
            state.revoked.push(RevokedEntry {
                serial: record.serial.clone(),
                revoked_at: now,
                reason: reason.map(str::to_string),
                subject: Some(record.label()),
            });
            newly.push(record.serial.clone());
        }
        state.pending.retain(|p| !newly.contains(&p.serial));
        if !newly.is_empty() {
            state.save(&state_path)?;
        }
        self.write_crl()?;
        Ok(newly)
    }

    /// Signs a fresh CRL from `state.json` with the next CRL number and writes it
    /// to `crl.pem`.
    pub fn write_crl(&self) -> Result<PathBuf, CertError> {
        let state_path = self.state_path();
        let mut state = State::load(&state_path)?;
        let number = state.next_crl_number;
        let entries = state.crl_entries();
        let next_update = OffsetDateTime::now_utc() + CRL_VALIDITY;
        // The issuing CA's CRL first (what `ensure_stack` checks), then one
        // from each CA being retired, so its certificates can still be revoked.
        let mut pem = self.ca.crl_pem(&entries, number, next_update)?;
        for old in rollover::retiring(&self.dir)? {
            pem.push_str(&old.crl_pem(&entries, number, next_update)?);
        }
        // Persist the bump first: a crash may skip a number but never reuse one.
        state.next_crl_number = number + 1;
        state.save(&state_path)?;
        let path = self.crl_path();
        atomic::write(&path, pem.as_bytes(), Mode::Public)?;
        Ok(path)
    }

    /// Every certificate issued into this directory (current and replaced), with
    /// its status, sorted by kind and name.
    pub fn list(&self) -> Result<Vec<CertRecord>, CertError> {
        let state = State::load(&self.state_path())?;
        scan::scan(&self.dir, &state)
    }

    /// What `kumo up` needs on first run; idempotent (reuses existing files): CA,
    /// a current CRL, a node server certificate for `sans` named `node_id`, and a
    /// service certificate named [`BRIDGE_SERVICE`] (`bridge`). Certificates are re-issued only when
    /// missing, unreadable, revoked, not from this CA, lacking a requested SAN or
    /// within [`RENEW_BEFORE`] of expiry.
    pub fn ensure_stack(&self, node_id: &str, sans: &[String]) -> Result<StackPaths, CertError> {
        stack::ensure(self, node_id, sans)
    }

    /// The certificate and key of service `name`, issued (or re-issued, on the
    /// same terms as [`PkiDir::ensure_stack`]) if needed.
    pub fn ensure_service(&self, name: &str) -> Result<(PathBuf, PathBuf), CertError> {
        stack::ensure_service(self, name)
    }
}
