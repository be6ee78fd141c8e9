//! `state.json`: the revocation list and the next CRL number.
//!
//! The CRL is derived from this file; the file is the truth. It is rewritten
//! atomically on every change.

use std::path::Path;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::atomic::{self, Mode};
use crate::{CertError, Revoked};

/// The persisted PKI state.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub(crate) struct State {
    /// The number the next CRL gets; strictly increasing.
    pub next_crl_number: u64,
    /// Every revoked certificate, oldest first.
    pub revoked: Vec<RevokedEntry>,
    /// Certificates to revoke once their time comes (superseded by a renewal,
    /// kept valid for a grace period).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<PendingEntry>,
}

impl Default for State {
    fn default() -> Self {
        State {
            next_crl_number: 1,
            revoked: Vec::new(),
            pending: Vec::new(),
        }
    }
}

/// A revocation scheduled for later.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub(crate) struct PendingEntry {
    pub serial: String,
    #[serde(with = "time::serde::rfc3339")]
    pub revoke_at: OffsetDateTime,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub subject: Option<String>,
}

/// One revocation, as stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub(crate) struct RevokedEntry {
    pub serial: String,
    #[serde(with = "time::serde::rfc3339")]
    pub revoked_at: OffsetDateTime,
    #[serde(default)]
    pub reason: Option<String>,
    /// What was revoked (e.g. `device:remo-1`), for humans reading the file.
    #[serde(default)]
    pub subject: Option<String>,
}

impl State {
    /// Loads the state; a missing file is an empty state.
    pub fn load(path: &Path) -> Result<State, CertError> {
        if !path.exists() {
            return Ok(State::default());
        }
        let text = atomic::read(path)?;
        serde_json::from_str(&text).map_err(|e| CertError::State {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
    }

    /// Atomically writes the state.
    pub fn save(&self, path: &Path) -> Result<(), CertError> {
        let text = serde_json::to_string_pretty(self).map_err(|e| CertError::State {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        atomic::write(path, format!("{text}\n").as_bytes(), Mode::Public)
    }

    /// Whether `serial` (canonical hex) is revoked, and when.
    pub fn revoked_at(&self, serial: &str) -> Option<OffsetDateTime> {
        self.revoked
            .iter()
            .find(|r| r.serial == serial)
            .map(|r| r.revoked_at)
    }

    /// When `serial` is scheduled to be revoked, if it is.
    pub fn pending_at(&self, serial: &str) -> Option<OffsetDateTime> {
        self.pending
            .iter()
            .find(|p| p.serial == serial)
            .map(|p| p.revoke_at)
    }

    /// The list in the form [`crate::Ca::crl_pem`] takes.
    pub fn crl_entries(&self) -> Vec<Revoked> {
        self.revoked
            .iter()
            .map(|r| Revoked {
                serial: r.serial.clone(),
                revoked_at: r.revoked_at,
                reason: r.reason.clone(),
            })
            .collect()
    }
}
