//! CA rollover: a new issuing CA is introduced while the old one is still
//! trusted, devices move over by renewing, and the old CA is retired.
//!
//! 1. [`PkiDir::rollover_begin`]: a new root CA signs everything from now on
//!    (`issuing.pem`, `ca.key`); the old one moves to `retiring/<serial>/`, is
//!    still in the trust bundle `ca.pem` (new first) and still signs a CRL for
//!    its certificates. Nodes reload `ca.pem` and accept both; node and
//!    service certificates stay as they are, so devices that trust only the
//!    old CA still reach the nodes. Renewals hand devices the bundle.
//! 2. [`PkiDir::rollover_status`]: which devices still hold only a
//!    certificate from a retiring CA.
//! 3. [`PkiDir::rollover_finish`]: re-issues every node, service and
//!    integration certificate from the new CA, then drops the old CA from the
//!    bundle and the CRL. Refused while devices have not moved, unless forced.
//!
//! Must not touch devices' certificates: they renew themselves.

use std::path::Path;

use kumo_contract::AccountId;
use x509_parser::extensions::GeneralName;

use super::atomic::{self, Mode};
use super::scan::{CertKind, CertStatus};
use super::PkiDir;
use crate::inspect::{parse_cert, pem_to_der};
use crate::{Ca, CertError, KeyAlgorithm};

/// Where a rollover stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloverStatus {
    /// The issuing CA's name.
    pub issuing: String,
    /// The names of the CAs being retired (empty: no rollover under way).
    pub retiring: Vec<String>,
    /// Devices whose current valid certificate is from the issuing CA.
    pub devices_moved: usize,
    /// Devices still holding only a certificate from a retiring CA.
    pub devices_left: Vec<String>,
}

/// The CAs being retired, with their keys (to sign their CRLs).
pub(super) fn retiring(dir: &Path) -> Result<Vec<Ca>, CertError> {
    let base = dir.join("retiring");
    let entries = match std::fs::read_dir(&base) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(CertError::io("listing", &base, e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|e| CertError::io("listing", &base, e))?
            .path();
        if path.join("ca.key").exists() {
            let cert = atomic::read(&path.join("ca.pem"))?;
            out.push(Ca::from_pem(&cert, &atomic::read(&path.join("ca.key"))?)?);
        }
    }
    Ok(out)
}

fn subject_of(ca: &Ca) -> Result<String, CertError> {
    Ok(parse_cert(&ca.cert_der())?.subject().to_string())
}

impl PkiDir {
    /// Starts a rollover: a new root CA (`algorithm`) becomes the issuing CA;
    /// the current one is kept trusted until [`PkiDir::rollover_finish`].
    pub fn rollover_begin(&mut self, algorithm: KeyAlgorithm) -> Result<(), CertError> {
        if !retiring(&self.dir)?.is_empty() {
            return Err(CertError::RolloverInProgress {
                dir: self.dir.clone(),
            });
        }
        let mut tag = [0u8; 4];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut tag).map_err(
            |_| CertError::Randomness {
                while_doing: "naming the new CA",
            },
        )?;
        let name = format!("{} {}", super::CA_COMMON_NAME, hex::encode(tag));
        let new = Ca::generate(&name, algorithm)?;
        let old_serial = crate::serial_of_der(&self.ca.cert_der())?;
        let keep = self.dir.join("retiring").join(&old_serial);
        // The old pair is safe in `retiring/` before the new key replaces it.
        atomic::write(
            &keep.join("ca.key"),
            self.ca.key_pem().as_bytes(),
            Mode::Private,
        )?;
        atomic::write(
            &keep.join("ca.pem"),
            self.ca.chain_pem().as_bytes(),
            Mode::Public,
        )?;
        let bundle = format!(
            "{}{}",
            ensure_newline(new.cert_pem()),
            self.trust_bundle_pem()?
        );
        atomic::write(
            &self.dir.join("issuing.pem"),
            new.cert_pem().as_bytes(),
            Mode::Public,
        )?;
        atomic::write(
            &self.dir.join("ca.key"),
            new.key_pem().as_bytes(),
            Mode::Private,
        )?;
        atomic::write(&self.ca_path(), bundle.as_bytes(), Mode::Public)?;
        *self = PkiDir::open(&self.dir)?;
        self.write_crl()?;
        Ok(())
    }

    /// The issuing CA, the CAs being retired and how far devices have moved.
    pub fn rollover_status(&self) -> Result<RolloverStatus, CertError> {
        let issuing = subject_of(&self.ca)?;
        let retiring = retiring(&self.dir)?
            .iter()
            .map(subject_of)
            .collect::<Result<Vec<_>, _>>()?;
        let mut moved = std::collections::BTreeSet::new();
        let mut seen = std::collections::BTreeSet::new();
        for r in self.list()? {
            if r.kind == CertKind::Device && r.status == CertStatus::Valid {
                seen.insert(r.name.clone());
                if r.issuer == issuing {
                    moved.insert(r.name);
                }
            }
        }
        Ok(RolloverStatus {
            issuing,
            retiring,
            devices_moved: moved.len(),
            devices_left: seen.difference(&moved).cloned().collect(),
        })
    }

    /// Retires the old CA: re-issues node, service and integration
    /// certificates from the issuing CA, then trusts only it. Refused while
    /// devices still hold only old certificates, unless `force`.
    pub fn rollover_finish(&self, force: bool) -> Result<RolloverStatus, CertError> {
        let status = self.rollover_status()?;
        if status.retiring.is_empty() {
            return Err(CertError::NoRollover {
                dir: self.dir.clone(),
            });
        }
        if !status.devices_left.is_empty() && !force {
            return Err(CertError::RolloverIncomplete {
                count: status.devices_left.len(),
                examples: status
                    .devices_left
                    .iter()
                    .take(5)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        for r in self.list()? {
            if !r.current || r.status != CertStatus::Valid || r.issuer == status.issuing {
                continue;
            }
            match r.kind {
                CertKind::Node => {
                    let sans = node_sans(&r.path)?;
                    self.issue_node(&r.name, &sans)?;
                }
                CertKind::Service => {
                    self.issue_service(&r.name)?;
                }
                CertKind::Integration => {
                    if let Some(account) = &r.account {
                        self.issue_integration(&r.name, account as &AccountId)?;
                    }
                }
                CertKind::Device => {}
            }
        }
        // Nodes pick up their new certificates and the new trust together
        // (they poll every file); only then does the old CA go.
        atomic::write(
            &self.ca_path(),
            self.ca.chain_pem().as_bytes(),
            Mode::Public,
        )?;
        let base = self.dir.join("retiring");
        std::fs::remove_dir_all(&base).map_err(|e| CertError::io("removing", &base, e))?;
        self.write_crl()?;
        self.rollover_status()
    }
}

fn ensure_newline(mut pem: String) -> String {
    if !pem.ends_with('\n') {
        pem.push('\n');
    }
    pem
}

/// The DNS names and IP addresses a node certificate is valid for.
fn node_sans(path: &Path) -> Result<Vec<String>, CertError> {
    let der = pem_to_der(&atomic::read(path)?)?;
    let cert = parse_cert(&der)?;
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Ok(Vec::new());
    };
    Ok(san
        .value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::DNSName(d) => Some(d.to_string()),
            GeneralName::IPAddress(b) => match b.len() {
                4 => <[u8; 4]>::try_from(*b)
                    .ok()
                    .map(|a| std::net::IpAddr::from(a).to_string()),
                16 => <[u8; 16]>::try_from(*b)
                    .ok()
                    .map(|a| std::net::IpAddr::from(a).to_string()),
                _ => None,
            },
            _ => None,
        })
        .collect())
}
