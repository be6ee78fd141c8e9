//! Renewing a device's certificate without downtime: the new certificate is
//! issued at once and the device's earlier ones stay valid for a grace period,
//! then are revoked (`state.json`'s `pending` list, applied by
//! [`PkiDir::revoke_due`], which the bridge calls periodically).
//!
//! Must not decide who may renew: the caller has already tied the request to
//! the device's authenticated identity.

use kumo_contract::DeviceId;
use time::{Duration, OffsetDateTime};

use super::scan::{CertKind, CertStatus};
use super::state::{PendingEntry, RevokedEntry, State};
use super::{IssuedPaths, PkiDir};
use crate::{CertError, IssueOptions, Issued, BACKDATE};

/// The outcome of [`PkiDir::renew_device_csr_pem`].
#[derive(Debug, Clone)]
pub struct Renewal {
    /// The new certificate.
    pub issued: Issued,
    /// Where it was stored.
    pub paths: IssuedPaths,
    /// The device's earlier certificates still valid, now scheduled for revocation.
    pub superseded: Vec<String>,
    /// When they will be revoked.
    pub revoke_at: OffsetDateTime,
}

impl PkiDir {
    /// Signs `csr_pem` for device `id` (its subject ignored, the identity
    /// forced), valid for `validity` from now, stores it as the device's
    /// current certificate, and schedules every earlier valid certificate of
    /// the device for revocation `grace` from now.
    pub fn renew_device_csr_pem(
        &self,
        csr_pem: &str,
        id: &DeviceId,
        validity: Duration,
        grace: Duration,
    ) -> Result<Renewal, CertError> {
        let now = OffsetDateTime::now_utc();
        let earlier: Vec<String> = self
            .list()?
            .into_iter()
            .filter(|r| {
                r.kind == CertKind::Device && r.name == id.as_str() && r.status == CertStatus::Valid
            })
            .map(|r| r.serial)
            .collect();
        let (issued, paths) = self.sign_device_csr_for(csr_pem, id, validity)?;
        let revoke_at = now + grace;
        let state_path = self.state_path();
        let mut state = State::load(&state_path)?;
        for serial in &earlier {
            state.pending.retain(|p| p.serial != *serial);
            state.pending.push(PendingEntry {
                serial: serial.clone(),
                revoke_at,
                reason: Some("superseded".into()),
                subject: Some(format!("device:{id}")),
            });
        }
        state.save(&state_path)?;
        Ok(Renewal {
            issued,
            paths,
            superseded: earlier,
            revoke_at,
        })
    }

    /// Signs a device CSR valid for `validity` from now (capped at the CA's
    /// expiry) and stores it as the device's current certificate. It is
    /// backdated by [`BACKDATE`] for clock skew, or a tenth of `validity` if
    /// that is less, so the share of its lifetime left says when to renew even
    /// for short lifetimes.
    pub fn sign_device_csr_for(
        &self,
        csr_pem: &str,
        id: &DeviceId,
        validity: Duration,
    ) -> Result<(Issued, IssuedPaths), CertError> {
        let now = OffsetDateTime::now_utc();
        let opts = IssueOptions {
            not_before: Some(now - BACKDATE.min(validity / 10)),
            not_after: Some((now + validity).min(self.ca().not_after())),
            ..IssueOptions::default()
        };
        let issued = self.ca().sign_device_csr(csr_pem, id, &opts)?;
        let dir = CertKind::Device.dir(self.dir(), id.as_str(), None);
        let paths = self.store(&dir, &issued)?;
        Ok((issued, paths))
    }

    /// Revokes every scheduled certificate whose time has come (as of `now`)
    /// and rewrites the CRL if any was; returns their serials.
    pub fn revoke_due(&self, now: OffsetDateTime) -> Result<Vec<String>, CertError> {
        let state_path = self.state_path();
        let mut state = State::load(&state_path)?;
        if !state.pending.iter().any(|p| p.revoke_at <= now) {
            return Ok(Vec::new());
        }
        let (due, later): (Vec<PendingEntry>, Vec<PendingEntry>) =
            state.pending.drain(..).partition(|p| p.revoke_at <= now);
        state.pending = later;
        let mut newly = Vec::new();
        for p in due {
            if state.revoked_at(&p.serial).is_some() {
                continue;
            }
            state.revoked.push(RevokedEntry {
                serial: p.serial.clone(),
                revoked_at: now,
                reason: p.reason,
                subject: p.subject,
            });
            newly.push(p.serial);
        }
        state.save(&state_path)?;
        self.write_crl()?;
        Ok(newly)
    }
}
