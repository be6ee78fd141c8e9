//! Device CSR signing, judged by OpenSSL: real OpenSSL CSRs are signed with the
//! forced subject; tampered, weak, oversized and malformed ones are refused.
#![allow(clippy::unwrap_used)]

use crate::common::{device, openssl, openssl_ok, path_str, verify, write};
use kumo_certs::{Ca, CertError, Identity, IssueOptions, KeyAlgorithm, MAX_CSR_BYTES};

fn ca(alg: KeyAlgorithm) -> Ca {
    Ca::generate("CSR Test CA", alg).expect("CA")
}

fn openssl_csr(dir: &std::path::Path, newkey: &[&str], subj: &str) -> String {
    let key = dir.join("dev.key");
    let csr = dir.join("dev.csr");
    let mut args = vec!["req", "-new"];
    args.extend_from_slice(newkey);
    args.extend([
        "-nodes",
        "-keyout",
        path_str(&key),
        "-subj",
        subj,
        "-out",
        path_str(&csr),
    ]);
    openssl_ok(&args);
    std::fs::read_to_string(csr).unwrap()
}

#[test]
fn an_openssl_csr_is_signed_with_the_forced_subject() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca(KeyAlgorithm::EcdsaP256);
    let ca_path = write(dir.path(), "ca.pem", &ca.cert_pem());
    let keys: [&[&str]; 3] = [
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"],
        &["-newkey", "ed25519"],
        &["-newkey", "rsa:2048"],
    ];
    for newkey in keys {
        // The device asks to be the bridge service; it gets a device certificate.
        let csr = openssl_csr(dir.path(), newkey, "/O=Kumo/OU=service/CN=bridge");
        let issued = ca
            .sign_device_csr(&csr, &device("remo-9"), &IssueOptions::default())
            .unwrap();
        assert!(issued.key_pem.is_empty());
        assert_eq!(
            issued.identity,
            Some(Identity::Device {
                id: device("remo-9")
            })
        );
        let cert = write(dir.path(), "signed.pem", &issued.cert_pem);
        let subject = openssl_ok(&[
            "x509",
            "-noout",
            "-subject",
            "-nameopt",
            "RFC2253",
            "-in",
            path_str(&cert),
        ]);
        assert_eq!(
            subject.trim(),
            "subject=CN=remo-9,OU=device,O=Kumo",
            "{newkey:?}"
        );
        assert!(verify(&ca_path, &cert, None).0);
        // The certified key is the device's own key.
        let cert_pub = openssl_ok(&["x509", "-noout", "-pubkey", "-in", path_str(&cert)]);
        let key_pub = openssl_ok(&[
            "pkey",
            "-pubout",
            "-in",
            path_str(&dir.path().join("dev.key")),
        ]);
        assert_eq!(cert_pub, key_pub, "{newkey:?}");
    }
}

#[test]
fn a_csr_asking_for_extensions_gets_none_of_them() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca(KeyAlgorithm::EcdsaP256);
    let key = dir.path().join("k.pem");
    let csr_path = dir.path().join("r.csr");
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
        "/CN=evil",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "subjectAltName=URI:urn:kumo:service:bridge",
        "-addext",
        "extendedKeyUsage=serverAuth",
        "-out",
        path_str(&csr_path),
    ]);
    let csr = std::fs::read_to_string(&csr_path).unwrap();
    let issued = ca
        .sign_device_csr(&csr, &device("remo-2"), &IssueOptions::default())
        .unwrap();
    let cert = write(dir.path(), "c.pem", &issued.cert_pem);
    let text = openssl_ok(&["x509", "-noout", "-text", "-in", path_str(&cert)]);
    assert!(
        text.contains("CA:FALSE") && !text.contains("CA:TRUE"),
        "{text}"
    );
    assert!(!text.contains("urn:kumo:service"), "{text}");
    assert!(!text.contains("TLS Web Server Authentication"), "{text}");
    assert_eq!(
        issued.identity,
        Some(Identity::Device {
            id: device("remo-2")
        })
    );
}

#[test]
fn a_csr_with_a_tampered_signature_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca(KeyAlgorithm::EcdsaP256);
    let csr = openssl_csr(
        dir.path(),
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"],
        "/CN=x",
    );
    let der_path = dir.path().join("csr.der");
    openssl_ok(&[
        "req",
        "-in",
        path_str(&dir.path().join("dev.csr")),
        "-outform",
        "DER",
        "-out",
        path_str(&der_path),
    ]);
    let mut der = std::fs::read(&der_path).unwrap();
    // Flip a bit inside the signed part (the subject's CN value, "x").
    let pos = der.iter().rposition(|b| *b == b'x').unwrap();
    der[pos] = b'y';
    std::fs::write(&der_path, &der).unwrap();
    let tampered_path = dir.path().join("tampered.csr");
    openssl_ok(&[
        "req",
        "-inform",
        "DER",
        "-in",
        path_str(&der_path),
        "-out",
        path_str(&tampered_path),
    ]);
    let tampered = std::fs::read_to_string(&tampered_path).unwrap();
    assert_ne!(tampered, csr);
    // OpenSSL 3.0 exits 0 here but reports the failure.
    let check = openssl(&["req", "-verify", "-noout", "-in", path_str(&tampered_path)]);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(
        !check.status.success() || said.contains("verify failure"),
        "openssl agrees the signature is bad: {said}"
    );

    let err = ca
        .sign_device_csr(&tampered, &device("remo-3"), &IssueOptions::default())
        .unwrap_err();
    assert!(matches!(err, CertError::CsrSignature { .. }), "{err}");
    assert!(err.to_string().contains("remo-3"), "{err}");
}

#[test]
fn oversized_weak_and_malformed_csrs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca(KeyAlgorithm::EcdsaP256);
    let id = device("remo-4");
    let opts = IssueOptions::default();

    let big = format!(
        "{}{}",
        openssl_csr(dir.path(), &["-newkey", "ed25519"], "/CN=x"),
        " ".repeat(MAX_CSR_BYTES)
    );
    assert!(matches!(
        ca.sign_device_csr(&big, &id, &opts),
        Err(CertError::CsrTooLarge { .. })
    ));

    let weak = openssl_csr(dir.path(), &["-newkey", "rsa:1024"], "/CN=x");
    let err = ca.sign_device_csr(&weak, &id, &opts).unwrap_err();
    assert!(matches!(err, CertError::UnsupportedCsrKey { .. }), "{err}");

    let p521 = openssl_csr(
        dir.path(),
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:secp521r1"],
        "/CN=x",
    );
    let err = ca.sign_device_csr(&p521, &id, &opts).unwrap_err();
    assert!(matches!(err, CertError::UnsupportedCsrKey { .. }), "{err}");

    let ed448 = openssl_csr(dir.path(), &["-newkey", "ed448"], "/CN=x");
    let err = ca.sign_device_csr(&ed448, &id, &opts).unwrap_err();
    assert!(matches!(err, CertError::UnsupportedCsrKey { .. }), "{err}");

    for junk in ["", "hello", &ca.cert_pem()] {
        let err = ca.sign_device_csr(junk, &id, &opts).unwrap_err();
        assert!(matches!(err, CertError::CsrParse { .. }), "{err}");
    }
}
