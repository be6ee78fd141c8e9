//! `ensure_stack`: the certificates `kumo up` needs, created on first run and
//! reused afterwards.

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use time::{Duration, OffsetDateTime};
use x509_parser::extensions::GeneralName;

use super::scan::{pair, CertKind};
use super::state::State;
use super::{atomic, PkiDir, CRL_VALIDITY};
use crate::inspect::{parse_cert, pem_to_der, serial_hex};
use crate::CertError;

/// Certificates this close to expiry are re-issued by `ensure_stack`.
pub const RENEW_BEFORE: Duration = Duration::days(30);

/// Name of the bridge's service certificate.
pub const BRIDGE_SERVICE: &str = "bridge";

/// The files a one-machine stack uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackPaths {
    pub ca: PathBuf,
    pub crl: PathBuf,
    pub node_cert: PathBuf,
    pub node_key: PathBuf,
    pub bridge_cert: PathBuf,
    pub bridge_key: PathBuf,
    /// The node's service pair for its links to peer nodes (`peer-{node id}`).
    pub peer_cert: PathBuf,
    pub peer_key: PathBuf,
}

pub(super) fn ensure(
    pki: &PkiDir,
    node_id: &str,
    sans: &[String],
) -> Result<StackPaths, CertError> {
    crate::role::validate_name("node", node_id)?;
    let state = State::load(&pki.state_path())?;
    if crl_needs_refresh(pki)? {
        pki.write_crl()?;
    }
    let node_dir = CertKind::Node.dir(pki.dir(), node_id, None);
    if !reusable(pki, &state, &node_dir, Some(sans))? {
        pki.issue_node(node_id, sans)?;
    }
    let bridge_dir = CertKind::Service.dir(pki.dir(), BRIDGE_SERVICE, None);
    if !reusable(pki, &state, &bridge_dir, None)? {
        pki.issue_service(BRIDGE_SERVICE)?;
    }
    let peer_name = format!("peer-{node_id}");
    let peer_dir = CertKind::Service.dir(pki.dir(), &peer_name, None);
    if !reusable(pki, &state, &peer_dir, None)? {
        pki.issue_service(&peer_name)?;
    }
    let (node_cert, node_key) = pair(&node_dir);
    let (bridge_cert, bridge_key) = pair(&bridge_dir);
    let (peer_cert, peer_key) = pair(&peer_dir);
    Ok(StackPaths {
        ca: pki.ca_path(),
        crl: pki.crl_path(),
        node_cert,
        node_key,
        bridge_cert,
        bridge_key,
        peer_cert,
        peer_key,
    })
}

/// The pair of service certificate `name`, issued when missing, revoked, not
/// from this CA or near expiry (see [`PkiDir::ensure_service`]).
pub(super) fn ensure_service(pki: &PkiDir, name: &str) -> Result<(PathBuf, PathBuf), CertError> {
    crate::role::validate_name("service", name)?;
    let state = State::load(&pki.state_path())?;
    let dir = CertKind::Service.dir(pki.dir(), name, None);
    if !reusable(pki, &state, &dir, None)? {
        pki.issue_service(name)?;
    }
    Ok(pair(&dir))
}

/// A CRL is refreshed when missing, unreadable, not signed by this CA, or past
/// half its lifetime.
fn crl_needs_refresh(pki: &PkiDir) -> Result<bool, CertError> {
    let Ok(pem) = std::fs::read_to_string(pki.crl_path()) else {
        return Ok(true);
    };
    if crate::verify_crl_pem(&pem, pki.ca()).is_err() {
        return Ok(true);
    }
    let Ok((_, block)) = x509_parser::pem::parse_x509_pem(pem.as_bytes()) else {
        return Ok(true);
    };
    let Ok((_, crl)) = x509_parser::parse_x509_crl(&block.contents) else {
        return Ok(true);
    };
    let fresh_until = OffsetDateTime::now_utc() + CRL_VALIDITY / 2;
    Ok(crl
        .next_update()
        .map_or(true, |t| t.to_datetime() < fresh_until))
}

/// Whether the certificate in `dir` can be kept: present with its key, signed by
/// a trusted CA, not revoked, not near expiry, and covering `sans` (if given).
fn reusable(
    pki: &PkiDir,
    state: &State,
    dir: &Path,
    sans: Option<&[String]>,
) -> Result<bool, CertError> {
    let (cert_path, key_path) = pair(dir);
    if !cert_path.exists() || !key_path.exists() {
        return Ok(false);
    }
    let Ok(der) = pem_to_der(&atomic::read(&cert_path)?) else {
        return Ok(false);
    };
    let Ok(cert) = parse_cert(&der) else {
        return Ok(false);
    };
    // Any CA in the trust bundle will do: during a CA rollover, nodes keep
    // the old CA's certificates until `rollover_finish` re-issues them.
    let bundle = pki.trust_bundle_pem()?;
    let trusted = x509_parser::pem::Pem::iter_from_buffer(bundle.as_bytes())
        .filter_map(Result::ok)
        .any(|ca| {
            ca.parse_x509()
                .is_ok_and(|ca| cert.verify_signature(Some(ca.public_key())).is_ok())
        });
    if !trusted {
        return Ok(false);
    }
    if state.revoked_at(&serial_hex(cert.raw_serial())).is_some() {
        return Ok(false);
    }
    if cert.validity().not_after.to_datetime() < OffsetDateTime::now_utc() + RENEW_BEFORE {
        return Ok(false);
    }
    let Some(wanted) = sans else {
        return Ok(true);
    };
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Ok(false);
    };
    let have: HashSet<String> = san
        .value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
            GeneralName::IPAddress(b) => ip_from_bytes(b).map(|ip| ip.to_string()),
            _ => None,
        })
        .collect();
    Ok(wanted.iter().all(|w| {
        let w = match w.parse::<IpAddr>() {
            Ok(ip) => ip.to_string(),
            Err(_) => w.to_ascii_lowercase(),
        };
        have.contains(&w)
    }))
}

fn ip_from_bytes(b: &[u8]) -> Option<IpAddr> {
    match b.len() {
        4 => <[u8; 4]>::try_from(b).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(b).ok().map(IpAddr::from),
        _ => None,
    }
}
