//! Listing the certificates stored under `issued/`, with their status.

use std::path::{Path, PathBuf};

use kumo_contract::{AccountId, DeviceId, Identity};
use time::OffsetDateTime;

use super::atomic;
use super::state::State;
use crate::inspect::{fingerprint_of_der, parse_cert, pem_to_der, serial_hex, validity};
use crate::role::identity_from_cert;
use crate::CertError;

/// The kinds of certificates kept under `issued/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CertKind {
    Device,
    Node,
    Service,
    Integration,
}

impl CertKind {
    /// All kinds, in listing order.
    pub const ALL: [CertKind; 4] = [
        CertKind::Device,
        CertKind::Node,
        CertKind::Service,
        CertKind::Integration,
    ];

    /// The directory name under `issued/` (also the subject OU).
    pub fn as_str(self) -> &'static str {
        match self {
            CertKind::Device => "device",
            CertKind::Node => "node",
            CertKind::Service => "service",
            CertKind::Integration => "integration",
        }
    }

    /// `issued/<kind>/[<account>/]<name>` under `root`. `name` must be validated.
    pub(crate) fn dir(self, root: &Path, name: &str, account: Option<&AccountId>) -> PathBuf {
        let base = root.join("issued").join(self.as_str());
        match account {
            Some(account) => base.join(account.as_str()).join(name),
            None => base.join(name),
        }
    }
}

/// The certificate and key files of one issued identity's directory.
pub(crate) fn pair(dir: &Path) -> (PathBuf, PathBuf) {
    (dir.join("cert.pem"), dir.join("key.pem"))
}

/// Where a device's certificate and key live in the PKI directory `root`
/// (`issued/device/<id>/{cert,key}.pem`), whether or not they exist yet.
pub fn device_pair(root: &Path, id: &DeviceId) -> (PathBuf, PathBuf) {
    pair(&CertKind::Device.dir(root, id.as_str(), None))
}

/// Whether a certificate is usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertStatus {
    Valid,
    Expired,
    Revoked,
}

impl CertStatus {
    /// Lowercase word for tables.
    pub fn as_str(self) -> &'static str {
        match self {
            CertStatus::Valid => "valid",
            CertStatus::Expired => "expired",
            CertStatus::Revoked => "revoked",
        }
    }
}

/// One stored certificate.
#[derive(Debug, Clone)]
pub struct CertRecord {
    pub kind: CertKind,
    /// Device id, node id, service or integration name.
    pub name: String,
    /// The account of an integration certificate.
    pub account: Option<AccountId>,
    /// Canonical hex serial.
    pub serial: String,
    /// SHA-256 of the DER, hex.
    pub fingerprint: String,
    /// The issuing CA's name (its subject), as text.
    pub issuer: String,
    /// The client identity; `None` for node certificates.
    pub identity: Option<Identity>,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub status: CertStatus,
    /// When it was revoked, if it was.
    pub revoked_at: Option<OffsetDateTime>,
    /// When it will be revoked (superseded by a renewal, in its grace period).
    pub revoke_at: Option<OffsetDateTime>,
    /// `false` for certificates replaced by a later issue (kept under `history/`).
    pub current: bool,
    /// The PEM file.
    pub path: PathBuf,
}

impl CertRecord {
    /// `kind:name` (or `integration:name@account`), for humans.
    pub fn label(&self) -> String {
        match &self.account {
            Some(account) => format!("{}:{}@{}", self.kind.as_str(), self.name, account),
            None => format!("{}:{}", self.kind.as_str(), self.name),
        }
    }
}

/// Reads every `cert.pem` and `history/*.pem` under `<root>/issued`.
pub(crate) fn scan(root: &Path, state: &State) -> Result<Vec<CertRecord>, CertError> {
    let now = OffsetDateTime::now_utc();
    let mut out = Vec::new();
    for kind in CertKind::ALL {
        let base = root.join("issued").join(kind.as_str());
        let owners: Vec<(Option<AccountId>, String, PathBuf)> = if kind == CertKind::Integration {
            let mut v = Vec::new();
            for (account, account_dir) in subdirs(&base)? {
                let Ok(account) = AccountId::parse(account) else {
                    continue;
                };
                for (name, dir) in subdirs(&account_dir)? {
                    v.push((Some(account.clone()), name, dir));
                }
            }
            v
        } else {
            subdirs(&base)?
                .into_iter()
                .map(|(name, dir)| (None, name, dir))
                .collect()
        };
        for (account, name, dir) in owners {
            let mut files = vec![(dir.join("cert.pem"), true)];
            files.extend(
                pem_files(&dir.join("history"))?
                    .into_iter()
                    .map(|p| (p, false)),
            );
            for (path, current) in files {
                if !path.exists() {
                    continue;
                }
                let der = pem_to_der(&atomic::read(&path)?)?;
                let cert = parse_cert(&der)?;
                let (not_before, not_after) = validity(&cert);
                let serial = serial_hex(cert.raw_serial());
                let revoked_at = state.revoked_at(&serial);
                let revoke_at = revoked_at
                    .is_none()
                    .then(|| state.pending_at(&serial))
                    .flatten();
                let status = match revoked_at {
                    Some(_) => CertStatus::Revoked,
                    None if not_after < now => CertStatus::Expired,
                    None => CertStatus::Valid,
                };
                out.push(CertRecord {
                    kind,
                    name: name.clone(),
                    account: account.clone(),
                    fingerprint: fingerprint_of_der(&der),
                    issuer: cert.issuer().to_string(),
                    identity: identity_from_cert(&cert).ok(),
                    serial,
                    not_before,
                    not_after,
                    status,
                    revoked_at,
                    revoke_at,
                    current,
                    path,
                });
            }
        }
    }
    // Each identity's certificates in the order they were issued, the
    // current one last: its chain of renewals, old → new.
    out.sort_by(|a, b| {
        (a.kind, &a.account, &a.name, a.current, a.not_before).cmp(&(
            b.kind,
            &b.account,
            &b.name,
            b.current,
            b.not_before,
        ))
    });
    Ok(out)
}

/// `(name, path)` of each subdirectory; none if `dir` does not exist.
fn subdirs(dir: &Path) -> Result<Vec<(String, PathBuf)>, CertError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(CertError::io("listing", dir, e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| CertError::io("listing", dir, e))?;
        let path = entry.path();
        if path.is_dir() {
            out.push((entry.file_name().to_string_lossy().into_owned(), path));
        }
    }
    Ok(out)
}

fn pem_files(dir: &Path) -> Result<Vec<PathBuf>, CertError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(CertError::io("listing", dir, e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| CertError::io("listing", dir, e))?.path();
        if path.extension().is_some_and(|e| e == "pem") {
            out.push(path);
        }
    }
    Ok(out)
}
