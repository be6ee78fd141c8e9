//! rustls (the broker's TLS stack) as a second judge: its client-certificate
//! verifier must accept our client certificates and honour our CRL.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use crate::common::device;
use kumo_certs::{crl_der_from_pem, Ca, IssueOptions, KeyAlgorithm, Revoked};
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, UnixTime};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;

fn verifier(ca: &Ca, crl_pem: &str) -> Arc<dyn ClientCertVerifier> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(ca.cert_der())).unwrap();
    let crl = CertificateRevocationListDer::from(crl_der_from_pem(crl_pem).unwrap());
    WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .with_crls([crl])
    .build()
    .unwrap()
}

fn accepts(v: &dyn ClientCertVerifier, der: Vec<u8>) -> bool {
    v.verify_client_cert(&CertificateDer::from(der), &[], UnixTime::now())
        .is_ok()
}

#[test]
fn rustls_accepts_our_client_certificates_and_honours_our_crl() {
    for alg in [KeyAlgorithm::EcdsaP256, KeyAlgorithm::Ed25519] {
        let ca = Ca::generate("rustls CA", alg).unwrap();
        let opts = IssueOptions::default();
        let good = ca.issue_device(&device("remo-1"), &opts).unwrap();
        let gone = ca.issue_device(&device("remo-2"), &opts).unwrap();
        let bridge = ca.issue_service("bridge", &opts).unwrap();
        let node = ca
            .issue_node("node-1", &["localhost".into()], &opts)
            .unwrap();
        let revoked = [Revoked {
            serial: gone.serial.clone(),
            revoked_at: time::OffsetDateTime::now_utc(),
            reason: None,
        }];
        let next = time::OffsetDateTime::now_utc() + time::Duration::days(1);
        let v = verifier(&ca, &ca.crl_pem(&revoked, 7, next).unwrap());

        assert!(accepts(v.as_ref(), good.cert_der), "{alg} device");
        assert!(accepts(v.as_ref(), bridge.cert_der), "{alg} service");
        assert!(!accepts(v.as_ref(), gone.cert_der), "{alg} revoked device");
        assert!(
            !accepts(v.as_ref(), node.cert_der),
            "{alg} server-only cert as client"
        );

        let other = Ca::generate("other", alg).unwrap();
        let foreign = other.issue_device(&device("remo-1"), &opts).unwrap();
        assert!(!accepts(v.as_ref(), foreign.cert_der), "{alg} foreign CA");
    }
}
