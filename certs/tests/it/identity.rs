//! Identity round trips: what the CA writes is what the broker reads, for every
//! role, and nothing else parses as a client identity.
#![allow(clippy::unwrap_used)]

use crate::common::{account, device};
use kumo_certs::{
    fingerprint_of_der, identity_from_der, serial_of_der, Ca, CertError, Identity, IssueOptions,
    KeyAlgorithm,
};

fn ca() -> Ca {
    Ca::generate("Test CA", KeyAlgorithm::EcdsaP256).expect("CA")
}

#[test]
fn every_role_round_trips_from_identity_to_certificate_and_back() {
    let ca = ca();
    let opts = IssueOptions::default();
    let cases = [
        (
            ca.issue_device(&device("remo-1"), &opts).unwrap(),
            Identity::Device {
                id: device("remo-1"),
            },
        ),
        (
            ca.issue_service("bridge", &opts).unwrap(),
            Identity::Service {
                name: "bridge".into(),
            },
        ),
        (
            ca.issue_integration("alexa", &account("acct-7"), &opts)
                .unwrap(),
            Identity::Integration {
                name: "alexa".into(),
                account: account("acct-7"),
            },
        ),
    ];
    for (issued, expected) in cases {
        assert_eq!(issued.identity.as_ref(), Some(&expected));
        assert_eq!(identity_from_der(&issued.cert_der).unwrap(), expected);
        assert_eq!(serial_of_der(&issued.cert_der).unwrap(), issued.serial);
        assert_eq!(fingerprint_of_der(&issued.cert_der), issued.fingerprint);
        assert!(!issued.key_pem.is_empty());
    }
}

#[test]
fn a_device_certificate_never_parses_as_a_service_or_integration() {
    let ca = ca();
    // Ids that look like other roles' names must still come back as devices.
    for id in ["bridge", "service", "integration", "alexa", "node-1"] {
        let issued = ca
            .issue_device(&device(id), &IssueOptions::default())
            .unwrap();
        let identity = identity_from_der(&issued.cert_der).unwrap();
        assert_eq!(identity, Identity::Device { id: device(id) }, "{id}");
        assert_eq!(identity.role(), "device");
    }
}

#[test]
fn a_node_certificate_is_not_a_client_identity() {
    let ca = ca();
    let sans = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    let issued = ca
        .issue_node("node-1", &sans, &IssueOptions::default())
        .unwrap();
    assert_eq!(issued.identity, None);
    let err = identity_from_der(&issued.cert_der).unwrap_err();
    assert!(matches!(err, CertError::NoIdentity { .. }), "{err}");
    // What a client of the node learns from it: the node's id.
    assert_eq!(
        kumo_certs::node_id_from_der(&issued.cert_der).as_deref(),
        Some("node-1")
    );
    let dev = ca
        .issue_device(&device("remo-1"), &IssueOptions::default())
        .unwrap();
    assert_eq!(kumo_certs::node_id_from_der(&dev.cert_der), None);
    assert_eq!(kumo_certs::node_id_from_der(b"not a certificate"), None);
}

#[test]
fn a_foreign_certificate_without_the_role_encoding_is_refused() {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["remo-1".to_string()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "remo-1");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.self_signed(&key).unwrap();
    let err = identity_from_der(cert.der()).unwrap_err();
    assert!(matches!(err, CertError::NoIdentity { .. }), "{err}");
}

#[test]
fn a_certificate_whose_subject_contradicts_its_urn_is_refused() {
    // Hand-made: URN says service, OU says device. Only a CA could produce this,
    // but the reader must still not pick one of the two.
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "Kumo");
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationalUnitName, "device");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "bridge");
    params.subject_alt_names = vec![rcgen::SanType::URI(
        rcgen::string::Ia5String::try_from("urn:kumo:service:bridge").unwrap(),
    )];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.self_signed(&key).unwrap();
    let err = identity_from_der(cert.der()).unwrap_err();
    assert!(matches!(err, CertError::InvalidIdentity { .. }), "{err}");
}

#[test]
fn garbage_is_a_parse_error_not_a_panic() {
    for bad in [&b""[..], b"\x30\x03\x02\x01\x01", b"not a certificate"] {
        assert!(matches!(
            identity_from_der(bad),
            Err(CertError::CertificateParse { .. })
        ));
    }
}

#[test]
fn serials_are_random_positive_128_bit_numbers() {
    let ca = ca();
    let a = ca.issue_service("a", &IssueOptions::default()).unwrap();
    let b = ca.issue_service("b", &IssueOptions::default()).unwrap();
    assert_ne!(a.serial, b.serial);
    for s in [&a.serial, &b.serial] {
        assert_eq!(s.len(), 32, "{s}");
        assert!(
            u8::from_str_radix(&s[..2], 16).unwrap() < 0x80,
            "positive: {s}"
        );
        assert_eq!(s, &s.to_lowercase());
    }
}

#[test]
fn invalid_names_are_rejected_before_anything_is_signed() {
    let ca = ca();
    let opts = IssueOptions::default();
    assert!(matches!(
        ca.issue_service("a/b", &opts),
        Err(CertError::InvalidName {
            kind: "service",
            ..
        })
    ));
    assert!(matches!(
        ca.issue_integration("x:y", &account("acct"), &opts),
        Err(CertError::InvalidName {
            kind: "integration",
            ..
        })
    ));
    assert!(matches!(
        ca.issue_node("n1", &[], &opts),
        Err(CertError::NoSubjectAltNames { .. })
    ));
    assert!(matches!(
        ca.issue_node("n1", &["bad host!".into()], &opts),
        Err(CertError::InvalidSubjectAltName { .. })
    ));
}

#[test]
fn validity_defaults_and_overrides_are_honoured() {
    let ca = ca();
    let now = time::OffsetDateTime::now_utc();
    let issued = ca
        .issue_device(&device("d1"), &IssueOptions::default())
        .unwrap();
    assert!(issued.not_before < now && issued.not_before > now - time::Duration::hours(2));
    assert!(issued.not_after > now + time::Duration::days(365));
    assert!(issued.not_after <= ca.not_after());

    let not_after = now + time::Duration::days(2);
    let opts = IssueOptions {
        not_after: Some(not_after),
        ..Default::default()
    };
    let issued = ca.issue_device(&device("d2"), &opts).unwrap();
    assert_eq!(
        issued.not_after.unix_timestamp(),
        not_after.unix_timestamp()
    );

    let too_late = IssueOptions {
        not_after: Some(ca.not_after() + time::Duration::days(1)),
        ..Default::default()
    };
    assert!(matches!(
        ca.issue_device(&device("d3"), &too_late),
        Err(CertError::InvalidValidity { .. })
    ));
    let inverted = IssueOptions {
        not_before: Some(now),
        not_after: Some(now - time::Duration::days(1)),
        ..Default::default()
    };
    assert!(matches!(
        ca.issue_device(&device("d4"), &inverted),
        Err(CertError::InvalidValidity { .. })
    ));
}

#[test]
fn a_ca_survives_a_pem_round_trip_and_keeps_issuing() {
    for alg in [KeyAlgorithm::EcdsaP256, KeyAlgorithm::Ed25519] {
        let ca = Ca::generate("Round Trip CA", alg).unwrap();
        let loaded = Ca::from_pem(&ca.cert_pem(), &ca.key_pem()).unwrap();
        assert_eq!(loaded.cert_der(), ca.cert_der());
        let issued = loaded
            .issue_device(&device("d1"), &IssueOptions::default())
            .unwrap();
        assert_eq!(
            identity_from_der(&issued.cert_der).unwrap().role(),
            "device"
        );
    }
}

#[test]
fn a_ca_with_someone_elses_key_is_refused() {
    let a = ca();
    let b = ca();
    let err = Ca::from_pem(&a.cert_pem(), &b.key_pem()).unwrap_err();
    assert!(matches!(err, CertError::InvalidCaKey { .. }), "{err}");
    let leaf = a.issue_service("svc", &IssueOptions::default()).unwrap();
    let err = Ca::from_pem(&leaf.cert_pem, &leaf.key_pem).unwrap_err();
    assert!(
        matches!(err, CertError::InvalidCaCertificate { .. }),
        "{err}"
    );
}

#[test]
fn an_rsa_2048_ca_issues_certificates_that_round_trip() {
    let ca = Ca::generate("RSA", KeyAlgorithm::Rsa2048).unwrap();
    let id = device("remo-rsa");
    let opts = IssueOptions {
        algorithm: Some(KeyAlgorithm::Rsa2048),
        ..IssueOptions::default()
    };
    let issued = ca.issue_device(&id, &opts).unwrap();
    assert_eq!(
        identity_from_der(&issued.cert_der).unwrap(),
        Identity::Device { id }
    );
    assert!(issued.key_pem.contains("PRIVATE KEY"));
}

#[test]
fn a_ca_can_be_shared_across_threads_and_debug_output_never_shows_keys() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Ca>();
    let ca = ca();
    let issued = ca
        .issue_service("bridge", &IssueOptions::default())
        .unwrap();
    let key_body = issued.key_pem.lines().nth(1).unwrap().to_string();
    assert!(!format!("{issued:?}").contains(&key_body));
    let ca_key_body = ca.key_pem().lines().nth(1).unwrap().to_string();
    assert!(!format!("{ca:?}").contains(&ca_key_body));
}
