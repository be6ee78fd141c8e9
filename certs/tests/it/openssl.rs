//! OpenSSL as the independent judge of what the CA issues and revokes.
#![allow(clippy::unwrap_used)]

use crate::common::{account, device, openssl, openssl_ok, path_str, verify, write};
use kumo_certs::{
    revoked_serials_from_crl_pem, Ca, CertError, IssueOptions, KeyAlgorithm, Revoked,
};

fn ca(alg: KeyAlgorithm) -> Ca {
    Ca::generate("OpenSSL Test CA", alg).expect("CA")
}

#[test]
fn openssl_accepts_every_issued_certificate_and_rejects_another_cas() {
    for alg in KeyAlgorithm::ALL {
        let dir = tempfile::tempdir().unwrap();
        let ca = ca(alg);
        let ca_path = write(dir.path(), "ca.pem", &ca.cert_pem());
        let opts = IssueOptions {
            algorithm: Some(alg),
            ..Default::default()
        };
        let issued = [
            ("device", ca.issue_device(&device("remo-1"), &opts).unwrap()),
            (
                "node",
                ca.issue_node(
                    "node-1",
                    &["localhost".into(), "127.0.0.1".into(), "::1".into()],
                    &opts,
                )
                .unwrap(),
            ),
            ("service", ca.issue_service("bridge", &opts).unwrap()),
            (
                "integration",
                ca.issue_integration("alexa", &account("acct-1"), &opts)
                    .unwrap(),
            ),
        ];
        for (name, cert) in &issued {
            let path = write(dir.path(), &format!("{name}.pem"), &cert.cert_pem);
            let (ok, out) = verify(&ca_path, &path, None);
            assert!(ok, "{alg} {name}: {out}");
            let purpose = if *name == "node" {
                "sslserver"
            } else {
                "sslclient"
            };
            let out = openssl_ok(&[
                "verify",
                "-purpose",
                purpose,
                "-CAfile",
                path_str(&ca_path),
                path_str(&path),
            ]);
            assert!(out.contains("OK"), "{out}");
        }

        let other = self::ca(KeyAlgorithm::EcdsaP256);
        let foreign = other
            .issue_device(&device("remo-1"), &IssueOptions::default())
            .unwrap();
        let path = write(dir.path(), "foreign.pem", &foreign.cert_pem);
        let (ok, out) = verify(&ca_path, &path, None);
        assert!(!ok, "a certificate from another CA must be rejected: {out}");
    }
}

#[test]
fn openssl_sees_the_forced_subject_the_ekus_and_the_sans() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca(KeyAlgorithm::EcdsaP256);
    let dev = ca
        .issue_device(&device("remo-1"), &IssueOptions::default())
        .unwrap();
    let path = write(dir.path(), "dev.pem", &dev.cert_pem);
    let text = openssl_ok(&[
        "x509",
        "-noout",
        "-text",
        "-nameopt",
        "RFC2253",
        "-in",
        path_str(&path),
    ]);
    assert!(text.contains("CN=remo-1,OU=device,O=Kumo"), "{text}");
    assert!(text.contains("TLS Web Client Authentication"), "{text}");
    assert!(!text.contains("TLS Web Server Authentication"), "{text}");
    assert!(text.contains("URI:urn:kumo:device:remo-1"), "{text}");
    assert!(text.contains("CA:FALSE"), "{text}");
    let serial = openssl_ok(&["x509", "-noout", "-serial", "-in", path_str(&path)]);
    assert_eq!(
        serial.trim().trim_start_matches("serial=").to_lowercase(),
        dev.serial
    );
    let fp = openssl_ok(&[
        "x509",
        "-noout",
        "-fingerprint",
        "-sha256",
        "-in",
        path_str(&path),
    ]);
    let fp = fp
        .trim()
        .split('=')
        .nth(1)
        .unwrap()
        .replace(':', "")
        .to_lowercase();
    assert_eq!(fp, dev.fingerprint);

    let node = ca
        .issue_node(
            "node-1",
            &["broker.example".into(), "10.0.0.7".into()],
            &IssueOptions::default(),
        )
        .unwrap();
    let path = write(dir.path(), "node.pem", &node.cert_pem);
    let text = openssl_ok(&["x509", "-noout", "-text", "-in", path_str(&path)]);
    assert!(text.contains("DNS:broker.example"), "{text}");
    assert!(text.contains("IP Address:10.0.0.7"), "{text}");
    assert!(text.contains("TLS Web Server Authentication"), "{text}");

    let ca_path = write(dir.path(), "ca.pem", &ca.cert_pem());
    let text = openssl_ok(&["x509", "-noout", "-text", "-in", path_str(&ca_path)]);
    assert!(text.contains("CA:TRUE"), "{text}");
    assert!(text.contains("Certificate Sign, CRL Sign"), "{text}");
}

#[test]
fn openssl_lists_a_revoked_serial_and_then_rejects_the_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca(KeyAlgorithm::EcdsaP256);
    let ca_path = write(dir.path(), "ca.pem", &ca.cert_pem());
    let keep = ca
        .issue_device(&device("keep"), &IssueOptions::default())
        .unwrap();
    let gone = ca
        .issue_device(&device("gone"), &IssueOptions::default())
        .unwrap();
    let keep_path = write(dir.path(), "keep.pem", &keep.cert_pem);
    let gone_path = write(dir.path(), "gone.pem", &gone.cert_pem);
    let next_update = time::OffsetDateTime::now_utc() + time::Duration::days(7);

    let empty = write(
        dir.path(),
        "crl0.pem",
        &ca.crl_pem(&[], 1, next_update).unwrap(),
    );
    assert!(
        verify(&ca_path, &gone_path, Some(&empty)).0,
        "not yet revoked"
    );

    let revoked = [Revoked {
        serial: gone.serial.clone(),
        revoked_at: time::OffsetDateTime::now_utc(),
        reason: Some("keyCompromise".into()),
    }];
    let crl_pem = ca.crl_pem(&revoked, 2, next_update).unwrap();
    let crl = write(dir.path(), "crl.pem", &crl_pem);
    let text = openssl_ok(&["crl", "-noout", "-text", "-in", path_str(&crl)]);
    assert!(text.to_lowercase().contains(&gone.serial), "{text}");
    assert!(text.contains("Key Compromise"), "{text}");
    assert_eq!(crl_number(&text), "2", "{text}");
    openssl_ok(&[
        "crl",
        "-noout",
        "-CAfile",
        path_str(&ca_path),
        "-in",
        path_str(&crl),
    ]);

    let (ok, out) = verify(&ca_path, &gone_path, Some(&crl));
    assert!(!ok && out.contains("revoked"), "{out}");
    let (ok, out) = verify(&ca_path, &keep_path, Some(&crl));
    assert!(ok, "{out}");

    let serials = revoked_serials_from_crl_pem(&crl_pem).unwrap();
    assert_eq!(
        serials.into_iter().collect::<Vec<_>>(),
        vec![gone.serial.clone()]
    );
    assert_eq!(kumo_certs::verify_crl_pem(&crl_pem, &ca).unwrap(), 2);
    assert!(kumo_certs::verify_crl_pem(&crl_pem, &self::ca(KeyAlgorithm::EcdsaP256)).is_err());
}

/// The value on the line after `X509v3 CRL Number:` in `openssl crl -text`.
fn crl_number(text: &str) -> String {
    let mut lines = text.lines().skip_while(|l| !l.contains("CRL Number"));
    lines.next();
    lines.next().unwrap_or_default().trim().to_string()
}

#[test]
fn an_rsa_ca_made_by_openssl_can_be_imported_and_used() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("ca.key");
    let cert = dir.path().join("ca.pem");
    openssl_ok(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        path_str(&key),
    ]);
    openssl_ok(&[
        "req",
        "-x509",
        "-new",
        "-key",
        path_str(&key),
        "-subj",
        "/O=Kumo/CN=RSA CA",
        "-days",
        "30",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        "-out",
        path_str(&cert),
    ]);
    let ca = Ca::from_pem(
        &std::fs::read_to_string(&cert).unwrap(),
        &std::fs::read_to_string(&key).unwrap(),
    )
    .unwrap();
    let issued = ca
        .issue_device(&device("remo-5"), &IssueOptions::default())
        .unwrap();
    assert!(
        issued.not_after <= ca.not_after(),
        "capped at the CA's expiry"
    );
    let leaf = write(dir.path(), "leaf.pem", &issued.cert_pem);
    let (ok, out) = verify(&cert, &leaf, None);
    assert!(ok, "{out}");
    let crl = write(
        dir.path(),
        "crl.pem",
        &ca.crl_pem(
            &[],
            1,
            time::OffsetDateTime::now_utc() + time::Duration::days(1),
        )
        .unwrap(),
    );
    let (ok, out) = verify(&cert, &leaf, Some(&crl));
    assert!(ok, "{out}");
}

#[test]
fn an_intermediate_ca_issues_certificates_that_chain_to_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let root = ca(KeyAlgorithm::EcdsaP256);
    let inter = root
        .issue_intermediate(
            "Kumo Issuing CA",
            KeyAlgorithm::EcdsaP256,
            &IssueOptions::default(),
        )
        .unwrap();
    assert!(inter.not_after() <= root.not_after());
    let root_path = write(dir.path(), "root.pem", &root.cert_pem());
    let inter_path = write(dir.path(), "inter.pem", &inter.cert_pem());
    let leaf = inter
        .issue_device(&device("remo-i"), &IssueOptions::default())
        .unwrap();
    let leaf_path = write(dir.path(), "leaf.pem", &leaf.cert_pem);
    let ok = openssl_ok(&[
        "verify",
        "-purpose",
        "sslclient",
        "-CAfile",
        path_str(&root_path),
        "-untrusted",
        path_str(&inter_path),
        path_str(&leaf_path),
    ]);
    assert!(ok.contains("OK"), "{ok}");
    assert!(
        !verify(&root_path, &leaf_path, None).0,
        "the intermediate is needed"
    );

    // The chain PEM reloads into a working CA, and the intermediate's CRL works.
    assert!(inter.chain_pem().ends_with(&root.cert_pem()));
    let reloaded = Ca::from_pem(&inter.chain_pem(), &inter.key_pem()).unwrap();
    assert_eq!(reloaded.chain_pem(), inter.chain_pem());
    let crl = reloaded
        .crl_pem(
            &[Revoked {
                serial: leaf.serial.clone(),
                revoked_at: time::OffsetDateTime::now_utc(),
                reason: None,
            }],
            1,
            time::OffsetDateTime::now_utc() + time::Duration::days(1),
        )
        .unwrap();
    let crl_path = write(dir.path(), "crl.pem", &crl);
    let out = openssl(&[
        "verify",
        "-crl_check",
        "-CRLfile",
        path_str(&crl_path),
        "-CAfile",
        path_str(&root_path),
        "-untrusted",
        path_str(&inter_path),
        path_str(&leaf_path),
    ]);
    assert!(!out.status.success(), "revoked by the intermediate's CRL");

    // pathLen 0: an intermediate cannot make another tier.
    let err = inter
        .issue_intermediate(
            "Too Deep",
            KeyAlgorithm::EcdsaP256,
            &IssueOptions::default(),
        )
        .unwrap_err();
    assert!(
        matches!(err, CertError::InvalidCaCertificate { .. }),
        "{err}"
    );
}
