//! The on-disk PKI: layout, permissions, revocation state, CRL numbering and
//! `ensure_stack` idempotence.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;

use crate::common::{account, device, openssl_ok, path_str, verify};
use kumo_certs::files::{CertKind, CertStatus, PkiDir};
use kumo_certs::{identity_from_der, pem_to_der, CertError, Identity, KeyAlgorithm};

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn crl_number(pki: &PkiDir) -> u64 {
    kumo_certs::verify_crl_pem(&std::fs::read_to_string(pki.crl_path()).unwrap(), pki.ca()).unwrap()
}

#[test]
fn init_writes_the_documented_layout_with_a_private_ca_key() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pki");
    let pki = PkiDir::init(&dir, KeyAlgorithm::EcdsaP256).unwrap();
    for name in ["ca.pem", "ca.key", "crl.pem", "state.json"] {
        assert!(dir.join(name).is_file(), "{name}");
    }
    assert_eq!(mode(&dir.join("ca.key")), 0o600);
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(pki.ca_path(), dir.join("ca.pem"));
    assert_eq!(pki.crl_path(), dir.join("crl.pem"));

    let err = PkiDir::init(&dir, KeyAlgorithm::EcdsaP256).unwrap_err();
    assert!(matches!(err, CertError::AlreadyInitialized { .. }), "{err}");
    let reopened = PkiDir::open(&dir).unwrap();
    assert_eq!(reopened.ca().cert_der(), pki.ca().cert_der());
    let err = PkiDir::open(&tmp.path().join("nowhere")).unwrap_err();
    assert!(matches!(err, CertError::NotInitialized { .. }), "{err}");
}

#[test]
fn issued_files_land_under_issued_kind_name_with_private_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = PkiDir::init(tmp.path(), KeyAlgorithm::Ed25519).unwrap();
    let d = pki.issue_device(&device("remo-1")).unwrap();
    let n = pki.issue_node("node-1", &["localhost".into()]).unwrap();
    let s = pki.issue_service("bridge").unwrap();
    let i = pki.issue_integration("alexa", &account("acct-1")).unwrap();
    let issued = tmp.path().join("issued");
    assert_eq!(d.cert, issued.join("device/remo-1/cert.pem"));
    assert_eq!(n.key, issued.join("node/node-1/key.pem"));
    assert_eq!(s.cert, issued.join("service/bridge/cert.pem"));
    assert_eq!(i.cert, issued.join("integration/acct-1/alexa/cert.pem"));
    for paths in [&d, &n, &s, &i] {
        assert_eq!(mode(&paths.key), 0o600, "{}", paths.key.display());
        let (ok, out) = verify(&pki.ca_path(), &paths.cert, Some(&pki.crl_path()));
        assert!(ok, "{out}");
        // The key on disk belongs to the certificate on disk.
        let cert_pub = openssl_ok(&["x509", "-noout", "-pubkey", "-in", path_str(&paths.cert)]);
        let key_pub = openssl_ok(&["pkey", "-pubout", "-in", path_str(&paths.key)]);
        assert_eq!(cert_pub, key_pub);
    }
}

#[test]
fn every_crl_write_increases_the_crl_number() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = PkiDir::init(tmp.path(), KeyAlgorithm::EcdsaP256).unwrap();
    let first = crl_number(&pki);
    pki.write_crl().unwrap();
    let second = crl_number(&pki);
    let reopened = PkiDir::open(tmp.path()).unwrap();
    reopened.write_crl().unwrap();
    let third = crl_number(&reopened);
    assert!(first < second && second < third, "{first} {second} {third}");
}

#[test]
fn revoking_a_device_revokes_all_its_certificates_and_openssl_agrees() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = PkiDir::init(tmp.path(), KeyAlgorithm::EcdsaP256).unwrap();
    let old = pki.issue_device(&device("remo-1")).unwrap();
    let old_copy = tmp.path().join("old.pem");
    std::fs::copy(&old.cert, &old_copy).unwrap();
    let new = pki.issue_device(&device("remo-1")).unwrap();
    let other = pki.issue_device(&device("remo-2")).unwrap();
    assert_ne!(old.serial, new.serial);
    assert!(tmp
        .path()
        .join(format!("issued/device/remo-1/history/{}.pem", old.serial))
        .is_file());

    let before = crl_number(&pki);
    let mut revoked = pki.revoke("remo-1", Some("keyCompromise")).unwrap();
    revoked.sort();
    let mut expected = vec![old.serial.clone(), new.serial.clone()];
    expected.sort();
    assert_eq!(revoked, expected);
    assert!(crl_number(&pki) > before);
    assert!(pki.revoke("remo-1", None).unwrap().is_empty(), "idempotent");

    for cert in [&old_copy, &new.cert] {
        let (ok, out) = verify(&pki.ca_path(), cert, Some(&pki.crl_path()));
        assert!(!ok && out.contains("revoked"), "{out}");
    }
    let (ok, out) = verify(&pki.ca_path(), &other.cert, Some(&pki.crl_path()));
    assert!(ok, "{out}");
    let text = openssl_ok(&["crl", "-noout", "-text", "-in", path_str(&pki.crl_path())]);
    assert!(text.to_lowercase().contains(&new.serial), "{text}");

    let crl = std::fs::read_to_string(pki.crl_path()).unwrap();
    let serials = kumo_certs::revoked_serials_from_crl_pem(&crl).unwrap();
    assert!(serials.contains(&old.serial) && serials.contains(&new.serial));
    assert!(!serials.contains(&other.serial));
}

#[test]
fn revoking_by_serial_accepts_openssl_formatting_and_unknown_ones_fail() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = PkiDir::init(tmp.path(), KeyAlgorithm::EcdsaP256).unwrap();
    let svc = pki.issue_service("bridge").unwrap();
    let colon_upper: String = svc
        .serial
        .to_uppercase()
        .as_bytes()
        .chunks(2)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join(":");
    assert_eq!(
        pki.revoke(&colon_upper, Some("superseded")).unwrap(),
        vec![svc.serial.clone()]
    );
    let err = pki.revoke("deadbeef", None).unwrap_err();
    assert!(matches!(err, CertError::UnknownCertificate { .. }), "{err}");
    let err = pki.revoke("no-such-device", None).unwrap_err();
    assert!(matches!(err, CertError::UnknownCertificate { .. }), "{err}");
}

#[test]
fn list_reports_status_and_expiry_for_every_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = PkiDir::init(tmp.path(), KeyAlgorithm::EcdsaP256).unwrap();
    pki.issue_device(&device("a")).unwrap();
    let b = pki.issue_device(&device("b")).unwrap();
    pki.issue_integration("alexa", &account("acct")).unwrap();
    pki.revoke(&b.serial, None).unwrap();
    let records = pki.list().unwrap();
    assert_eq!(records.len(), 3);
    let by_name = |n: &str| records.iter().find(|r| r.name == n).unwrap();
    assert_eq!(by_name("a").status, CertStatus::Valid);
    assert_eq!(by_name("b").status, CertStatus::Revoked);
    assert!(by_name("b").revoked_at.is_some());
    let alexa = by_name("alexa");
    assert_eq!(alexa.kind, CertKind::Integration);
    assert_eq!(alexa.account, Some(account("acct")));
    assert_eq!(
        alexa.identity,
        Some(Identity::Integration {
            name: "alexa".into(),
            account: account("acct")
        })
    );
    assert!(records
        .iter()
        .all(|r| r.current && r.not_after > time::OffsetDateTime::now_utc()));
}

#[test]
fn ensure_stack_creates_everything_once_and_then_reuses_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pki");
    let sans = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    let pki = PkiDir::open_or_init(&dir).unwrap();
    let paths = pki.ensure_stack("node-1", &sans).unwrap();
    for p in [
        &paths.ca,
        &paths.crl,
        &paths.node_cert,
        &paths.node_key,
        &paths.bridge_cert,
        &paths.bridge_key,
    ] {
        assert!(p.is_file(), "{}", p.display());
    }
    let node_pem = std::fs::read(&paths.node_cert).unwrap();
    let bridge_pem = std::fs::read_to_string(&paths.bridge_cert).unwrap();
    assert_eq!(
        identity_from_der(&pem_to_der(&bridge_pem).unwrap()).unwrap(),
        Identity::Service {
            name: "bridge".into()
        }
    );

    let again = PkiDir::open_or_init(&dir).unwrap();
    assert_eq!(again.ca().cert_der(), pki.ca().cert_der());
    assert_eq!(again.ensure_stack("node-1", &sans).unwrap(), paths);
    assert_eq!(
        std::fs::read(&paths.node_cert).unwrap(),
        node_pem,
        "node cert reused"
    );
    assert_eq!(
        std::fs::read_to_string(&paths.bridge_cert).unwrap(),
        bridge_pem,
        "bridge cert reused"
    );

    // A new SAN forces a new node certificate; the bridge's stays.
    let more = vec!["localhost".to_string(), "10.1.2.3".to_string()];
    again.ensure_stack("node-1", &more).unwrap();
    assert_ne!(std::fs::read(&paths.node_cert).unwrap(), node_pem);
    assert_eq!(
        std::fs::read_to_string(&paths.bridge_cert).unwrap(),
        bridge_pem
    );

    // A revoked bridge certificate is replaced.
    let bridge_serial = kumo_certs::serial_of_der(&pem_to_der(&bridge_pem).unwrap()).unwrap();
    again.revoke(&bridge_serial, None).unwrap();
    again.ensure_stack("node-1", &more).unwrap();
    assert_ne!(
        std::fs::read_to_string(&paths.bridge_cert).unwrap(),
        bridge_pem
    );
    let (ok, out) = verify(&paths.ca, &paths.bridge_cert, Some(&paths.crl));
    assert!(ok, "{out}");
}

#[test]
fn a_csr_file_is_signed_into_the_device_directory_without_a_key() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = PkiDir::init(&tmp.path().join("pki"), KeyAlgorithm::EcdsaP256).unwrap();
    // An earlier generated key must not linger next to a CSR-signed certificate.
    pki.issue_device(&device("remo-7")).unwrap();
    let key = tmp.path().join("dev.key");
    let csr = tmp.path().join("dev.csr");
    openssl_ok(&[
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        path_str(&key),
        "-subj",
        "/CN=whatever",
        "-out",
        path_str(&csr),
    ]);
    let paths = pki.sign_device_csr(&csr, &device("remo-7")).unwrap();
    assert_eq!(paths.key, std::path::PathBuf::new());
    assert!(!paths.cert.with_file_name("key.pem").exists());
    let (ok, out) = verify(&pki.ca_path(), &paths.cert, Some(&pki.crl_path()));
    assert!(ok, "{out}");
}

/// A P-256 CSR made by OpenSSL, as firmware would.
fn device_csr(dir: &std::path::Path) -> String {
    let (key, csr) = (dir.join("dev.key"), dir.join("dev.csr"));
    openssl_ok(&[
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        path_str(&key),
        "-subj",
        "/CN=device-says-anything",
        "-out",
        path_str(&csr),
    ]);
    std::fs::read_to_string(csr).unwrap()
}

#[test]
fn a_renewal_keeps_the_old_certificate_valid_until_its_grace_period_ends() {
    use time::{Duration, OffsetDateTime};
    let tmp = tempfile::tempdir().unwrap();
    let pki = PkiDir::init(&tmp.path().join("pki"), KeyAlgorithm::EcdsaP256).unwrap();
    let id = device("remo-1");
    let first = pki.issue_device(&id).unwrap();
    let renewal = pki
        .renew_device_csr_pem(
            &device_csr(tmp.path()),
            &id,
            Duration::days(90),
            Duration::hours(1),
        )
        .unwrap();
    assert_eq!(renewal.superseded, vec![first.serial.clone()]);
    let lifetime = renewal.issued.not_after - OffsetDateTime::now_utc();
    assert!(
        lifetime > Duration::days(89) && lifetime <= Duration::days(90),
        "{lifetime}"
    );
    assert_eq!(
        renewal.issued.identity,
        Some(Identity::Device { id: id.clone() })
    );
    // The chain, old → new: both valid, the old one scheduled.
    let chain: Vec<_> = pki.list().unwrap();
    assert_eq!(chain.len(), 2);
    assert_eq!(
        (chain[0].serial.as_str(), chain[0].current),
        (first.serial.as_str(), false)
    );
    assert_eq!(
        (chain[1].serial.as_str(), chain[1].current),
        (renewal.issued.serial.as_str(), true)
    );
    assert!(chain.iter().all(|r| r.status == CertStatus::Valid));
    assert_eq!(chain[0].revoke_at, Some(renewal.revoke_at));
    assert_eq!(chain[1].revoke_at, None);

    // Nothing is due yet; once the grace period is over the old one is on the CRL.
    assert!(pki
        .revoke_due(OffsetDateTime::now_utc())
        .unwrap()
        .is_empty());
    let number = crl_number(&pki);
    let due = renewal.revoke_at + Duration::seconds(1);
    assert_eq!(pki.revoke_due(due).unwrap(), vec![first.serial.clone()]);
    assert_eq!(crl_number(&pki), number + 1);
    let crl = std::fs::read_to_string(pki.crl_path()).unwrap();
    let revoked = kumo_certs::revoked_serials_from_crl_pem(&crl).unwrap();
    assert!(revoked.contains(&first.serial));
    assert!(!revoked.contains(&renewal.issued.serial));
    assert!(pki.revoke_due(due).unwrap().is_empty(), "once");
}

#[test]
fn a_renewal_from_a_bad_csr_issues_and_schedules_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = PkiDir::init(&tmp.path().join("pki"), KeyAlgorithm::EcdsaP256).unwrap();
    let id = device("remo-1");
    pki.issue_device(&id).unwrap();
    let bad = "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n";
    let day = time::Duration::days(1);
    assert!(pki.renew_device_csr_pem(bad, &id, day, day).is_err());
    let list = pki.list().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].revoke_at, None);
}

#[test]
fn a_ca_rollover_trusts_both_cas_until_finished_then_only_the_new_one() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pki");
    let mut pki = PkiDir::init(&dir, KeyAlgorithm::EcdsaP256).unwrap();
    let sans = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    pki.ensure_stack("node-1", &sans).unwrap();
    let id = device("remo-1");
    let old_device = pki.issue_device(&id).unwrap();
    let old_ca = pki.ca().cert_pem();
    assert!(signed_by(
        tmp.path(),
        &old_ca,
        &std::fs::read_to_string(&old_device.cert).unwrap()
    ));
    assert!(matches!(
        pki.rollover_finish(false).unwrap_err(),
        CertError::NoRollover { .. }
    ));

    pki.rollover_begin(KeyAlgorithm::EcdsaP256).unwrap();
    let new_ca = pki.ca().cert_pem();
    assert_ne!(new_ca, old_ca);
    let bundle = std::fs::read_to_string(pki.ca_path()).unwrap();
    assert!(bundle.starts_with(&new_ca) && bundle.contains(&old_ca));
    // One CRL per trusted CA; the node's certificate is kept (devices that
    // trust only the old CA still reach it).
    let crl = std::fs::read_to_string(pki.crl_path()).unwrap();
    assert_eq!(crl.matches("BEGIN X509 CRL").count(), 2);
    let node_before = pki.list().unwrap();
    pki.ensure_stack("node-1", &sans).unwrap();
    assert_eq!(
        pki.list().unwrap().len(),
        node_before.len(),
        "nothing re-issued"
    );
    assert!(matches!(
        pki.rollover_begin(KeyAlgorithm::EcdsaP256).unwrap_err(),
        CertError::RolloverInProgress { .. }
    ));
    // Another process (the bridge) follows the change.
    let reopened = PkiDir::open(&dir).unwrap();
    assert_eq!(reopened.ca().cert_pem(), new_ca);

    let status = pki.rollover_status().unwrap();
    assert_eq!(status.devices_left, vec!["remo-1".to_string()]);
    assert!(matches!(
        pki.rollover_finish(false).unwrap_err(),
        CertError::RolloverIncomplete { count: 1, .. }
    ));
    // The device renews: from the new CA.
    let csr = device_csr(tmp.path());
    let day = time::Duration::days(1);
    let renewal = pki.renew_device_csr_pem(&csr, &id, day, day).unwrap();
    assert!(signed_by(tmp.path(), &new_ca, &renewal.issued.cert_pem));
    assert!(pki.rollover_status().unwrap().devices_left.is_empty());

    let done = pki.rollover_finish(false).unwrap();
    assert!(done.retiring.is_empty());
    assert_eq!(std::fs::read_to_string(pki.ca_path()).unwrap(), new_ca);
    let crl = std::fs::read_to_string(pki.crl_path()).unwrap();
    assert_eq!(crl.matches("BEGIN X509 CRL").count(), 1);
    // Nodes and services now have certificates from the new CA, same names.
    let node = pki
        .list()
        .unwrap()
        .into_iter()
        .find(|r| r.kind == CertKind::Node && r.current)
        .unwrap();
    assert!(signed_by(
        tmp.path(),
        &new_ca,
        &std::fs::read_to_string(&node.path).unwrap()
    ));
    let paths = pki.ensure_stack("node-1", &sans).unwrap();
    assert!(signed_by(
        tmp.path(),
        &new_ca,
        &std::fs::read_to_string(paths.bridge_cert).unwrap()
    ));
}

/// Whether OpenSSL verifies `cert_pem` against `ca_pem` alone.
fn signed_by(dir: &std::path::Path, ca_pem: &str, cert_pem: &str) -> bool {
    let (ca, cert) = (dir.join("check-ca.pem"), dir.join("check.pem"));
    std::fs::write(&ca, ca_pem).unwrap();
    std::fs::write(&cert, cert_pem).unwrap();
    verify(&ca, &cert, None).0
}
