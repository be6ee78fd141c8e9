//! A CA rollover with devices connected throughout: a new CA is introduced
//! while the old one is trusted, simulated devices move over by renewing (and
//! learn the new trust bundle), the old CA is retired — nodes then present a
//! certificate from the new CA and refuse the old one's — and the devices
//! reconnect and keep reporting.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use kumo_certs::files::{device_pair, PkiDir};
use kumo_certs::{CertError, IssueOptions, KeyAlgorithm};
use kumo_contract::DeviceId;

use crate::stack::Stack;

/// Issues `id` a certificate from the current CA valid for `secs`, kept by the
/// device in `dir` and recorded in the PKI.
fn short_lived(s: &Stack, dir: &Path, id: &DeviceId, secs: i64) {
    let now = time::OffsetDateTime::now_utc();
    let opts = IssueOptions {
        not_before: Some(now - time::Duration::seconds(1)),
        not_after: Some(now + time::Duration::seconds(secs)),
        ..IssueOptions::default()
    };
    let issued = s.pki.ca().issue_device(id, &opts).unwrap();
    std::fs::write(dir.join(format!("{id}.crt")), &issued.cert_pem).unwrap();
    std::fs::write(dir.join(format!("{id}.key")), &issued.key_pem).unwrap();
    let (cert, _) = device_pair(s.pki.dir(), id);
    std::fs::create_dir_all(cert.parent().unwrap()).unwrap();
    std::fs::write(cert, &issued.cert_pem).unwrap();
}

/// `mosquitto_pub` of one reading as `id` with the files in `dir`, trusting `ca`.
fn publishes(port: u16, ca: &Path, dir: &Path, id: &str) -> bool {
    Command::new("mosquitto_pub")
        .args(["-h", "localhost", "-p", &port.to_string(), "-i", id])
        .arg("--cafile")
        .arg(ca)
        .arg("--cert")
        .arg(dir.join(format!("{id}.crt")))
        .arg("--key")
        .arg(dir.join(format!("{id}.key")))
        .args(["-q", "1", "-t", &format!("devices/{id}/sensors/te")])
        .args(["-m", r#"{"val":20}"#])
        .status()
        .unwrap()
        .success()
}

async fn wait_for(what: &str, secs: u64, mut ok: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !ok() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_move_to_a_new_ca_by_renewing_and_stay_connected_while_the_old_one_retires() {
    let s = Stack::start(|b| {
        b.certs.validity_secs = 16;
        b.certs.grace_secs = 2;
        b.certs.min_interval_secs = 0;
        b.certs.revoke_check_secs = 1;
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let devices = 3u64;
    let ids: Vec<DeviceId> = (0..devices)
        .map(|i| DeviceId::parse(format!("sim-{i:06}")).unwrap())
        .collect();
    for id in &ids {
        s.h.add_device(id.as_str(), kumo_bridge::DeviceKind::Remo)
            .await;
        short_lived(&s, dir.path(), id, 16);
    }
    // A device the rollover leaves behind: it never renews.
    let laggard = tempfile::tempdir().unwrap();
    let old_id = DeviceId::parse("remo-old").unwrap();
    s.h.add_device(old_id.as_str(), kumo_bridge::DeviceKind::Remo)
        .await;
    short_lived(&s, laggard.path(), &old_id, 3600);
    let old_ca = s.pki.ca_path();
    let old_ca_copy = dir.path().join("old-ca.pem");
    std::fs::copy(&old_ca, &old_ca_copy).unwrap();
    assert!(publishes(s.port, &old_ca_copy, laggard.path(), "remo-old"));

    let settings = kumo_sim::Settings {
        nodes: vec![format!("127.0.0.1:{}", s.port)],
        devices,
        meter_fraction: 0.0,
        report_interval_ms: 300,
        progress_interval_ms: 200,
        device_cert_dir: Some(dir.path().to_path_buf()),
        renew_at_percent: 50,
        renew_retry_ms: 2_000,
        ..kumo_sim::Settings::default()
    };
    let ca = std::fs::read_to_string(&old_ca).unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let (tx, rx) = tokio::sync::watch::channel(kumo_sim::Summary::default());
    let fleet = tokio::spawn(kumo_sim::run_fleet_with(
        settings,
        ca,
        stop.clone(),
        move |p| {
            let _ = tx.send(p.clone());
        },
    ));
    wait_for("the fleet connected", 20, || {
        rx.borrow().connected == devices
    })
    .await;

    // A new CA issues from now on; both are trusted.
    let mut pki = PkiDir::open(s.pki.dir()).unwrap();
    pki.rollover_begin(KeyAlgorithm::EcdsaP256).unwrap();
    let status = pki.rollover_status().unwrap();
    assert_eq!(status.devices_left.len(), ids.len() + 1, "{status:?}");
    assert!(matches!(
        pki.rollover_finish(false).unwrap_err(),
        CertError::RolloverIncomplete { .. }
    ));
    // The fleet renews (at half of its 16 s): from the new CA, and keeps going.
    wait_for("every simulated device moved", 40, || {
        pki.rollover_status()
            .unwrap()
            .devices_left
            .iter()
            .all(|d| d == "remo-old")
    })
    .await;
    assert!(
        publishes(s.port, &old_ca_copy, laggard.path(), "remo-old"),
        "old CA still trusted"
    );

    // Retire the old CA (the laggard is cut off: --force).
    let done = pki.rollover_finish(true).unwrap();
    assert!(done.retiring.is_empty());
    let new_ca = s.pki.ca_path();
    // The node reloads: it refuses the old CA's devices and presents a
    // certificate from the new CA (a client trusting only it connects).
    wait_for("the laggard refused", 20, || {
        !publishes(s.port, &new_ca, laggard.path(), "remo-old")
            && !publishes(s.port, &old_ca_copy, laggard.path(), "remo-old")
    })
    .await;
    // The provisioning listener presents its re-issued certificate, without a
    // restart: a device trusting only the new CA enrols there.
    let provision = s.h.bridge.as_ref().unwrap().provision_addr().unwrap();
    let new_ca_pem = std::fs::read(&new_ca).unwrap();
    let enrolling = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&new_ca_pem).unwrap())
        .build()
        .unwrap();
    let url = format!("https://localhost:{}/v1/provision", provision.port());
    let mut reached = false;
    for _ in 0..40 {
        // Any HTTP answer (an empty request is refused) means TLS verified.
        if let Ok(answer) = enrolling.post(&url).send().await {
            assert_eq!(answer.status().as_u16() / 100, 4, "{answer:?}");
            reached = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        reached,
        "the provisioning listener kept the old CA's certificate"
    );
    // The fleet renews again and reconnects under the new CA only.
    let renewed = rx.borrow().renewals;
    wait_for("a second round of renewals", 40, || {
        rx.borrow().renewals >= renewed + devices
    })
    .await;
    wait_for("the fleet connected after retirement", 20, || {
        rx.borrow().connected == devices
    })
    .await;
    let summary = rx.borrow().clone();
    assert_eq!(summary.renewals_failed, 0, "{summary:?}");
    assert_eq!(summary.drops, 0, "no session was lost: {summary:?}");
    let (status, _) = s.readyz().await;
    assert_eq!(status, 200, "the bridge is still connected");
    stop.cancel();
    fleet.await.unwrap().unwrap();
    // (Not while the fleet runs: the same client id would take its session over.)
    for id in &ids {
        assert!(
            publishes(s.port, &new_ca, dir.path(), id.as_str()),
            "{id} connects with its renewed certificate, trusting only the new CA"
        );
    }
    s.stop().await;
}
