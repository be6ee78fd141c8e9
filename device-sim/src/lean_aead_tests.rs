use rustls::crypto::cipher::{
    AeadKey, InboundOpaqueMessage, Iv, MessageDecrypter, MessageEncrypter, OutboundChunks,
    OutboundPlainMessage, Tls13AeadAlgorithm,
};
use rustls::crypto::ring::{cipher_suite, default_provider};
use rustls::{CipherSuite, ContentType, ProtocolVersion, SupportedCipherSuite};

use super::*;

const KEY: [u8; 32] = [7; 32];
const IV: [u8; 12] = [3; 12];

fn ring_aead(suite: SupportedCipherSuite) -> &'static dyn Tls13AeadAlgorithm {
    match suite {
        SupportedCipherSuite::Tls13(t) => t.aead_alg,
        SupportedCipherSuite::Tls12(_) => unreachable!("a TLS 1.3 suite"),
    }
}

fn lean(suite: SupportedCipherSuite) -> &'static dyn Tls13AeadAlgorithm {
    match suite {
        SupportedCipherSuite::Tls13(t) => lean_suite(t).expect("a lean twin").aead_alg,
        SupportedCipherSuite::Tls12(_) => unreachable!("a TLS 1.3 suite"),
    }
}

fn seal(enc: &mut dyn MessageEncrypter, text: &[u8], seq: u64) -> Vec<u8> {
    let msg = OutboundPlainMessage {
        typ: ContentType::ApplicationData,
        version: ProtocolVersion::TLSv1_2,
        payload: OutboundChunks::Single(text),
    };
    enc.encrypt(msg, seq).expect("sealed").encode()
}

fn open(dec: &mut dyn MessageDecrypter, record: &[u8], seq: u64) -> Result<Vec<u8>, Error> {
    let mut body = record[5..].to_vec();
    let msg = InboundOpaqueMessage::new(
        ContentType::ApplicationData,
        ProtocolVersion::TLSv1_2,
        &mut body,
    );
    dec.decrypt(msg, seq).map(|m| {
        assert_eq!(m.typ, ContentType::ApplicationData);
        m.payload.to_vec()
    })
}

/// Keys of 32 bytes are all rustls lets a caller build; AES-128 is covered by
/// every simulator test that connects to a node (the devices prefer it).
#[test]
fn records_sealed_lean_open_with_rustls_own_suites_and_back() {
    for suite in [
        cipher_suite::TLS13_AES_256_GCM_SHA384,
        cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
    ] {
        let ours = lean(suite);
        let theirs = ring_aead(suite);
        let text = b"devices/remo-1/readings {\"te\":21.5}";
        for seq in [0, 1, 9_999] {
            let mut enc = ours.encrypter(AeadKey::from(KEY), Iv::from(IV));
            let mut dec = theirs.decrypter(AeadKey::from(KEY), Iv::from(IV));
            let record = seal(enc.as_mut(), text, seq);
            assert_eq!(record.len(), 5 + enc.encrypted_payload_len(text.len()));
            assert_eq!(open(dec.as_mut(), &record, seq).expect("opened"), text);

            let mut enc = theirs.encrypter(AeadKey::from(KEY), Iv::from(IV));
            let mut dec = ours.decrypter(AeadKey::from(KEY), Iv::from(IV));
            let record = seal(enc.as_mut(), text, seq);
            assert_eq!(open(dec.as_mut(), &record, seq).expect("opened"), text);
        }
    }
}

#[test]
fn a_tampered_record_a_wrong_sequence_or_a_short_one_is_refused() {
    let aead = lean(cipher_suite::TLS13_AES_256_GCM_SHA384);
    let mut enc = aead.encrypter(AeadKey::from(KEY), Iv::from(IV));
    let mut dec = aead.decrypter(AeadKey::from(KEY), Iv::from(IV));
    let record = seal(enc.as_mut(), b"hello", 5);
    assert_eq!(open(dec.as_mut(), &record, 5).expect("opened"), b"hello");
    assert!(matches!(
        open(dec.as_mut(), &record, 6),
        Err(Error::DecryptError)
    ));
    let mut bad = record.clone();
    bad[7] ^= 1;
    assert!(matches!(
        open(dec.as_mut(), &bad, 5),
        Err(Error::DecryptError)
    ));
    assert!(matches!(
        open(dec.as_mut(), &record[..10], 5),
        Err(Error::DecryptError)
    ));
}

#[test]
fn the_provider_keeps_its_suites_and_their_order_and_only_the_keys_get_lean() {
    let plain = default_provider();
    let lean = lean_provider(default_provider());
    let ids = |p: &CryptoProvider| {
        p.cipher_suites
            .iter()
            .map(|s| s.suite())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&lean), ids(&plain));
    let tls13: Vec<CipherSuite> = lean
        .cipher_suites
        .iter()
        .filter_map(|s| match s {
            SupportedCipherSuite::Tls13(t) => Some(t.common.suite),
            SupportedCipherSuite::Tls12(_) => None,
        })
        .collect();
    assert_eq!(tls13.len(), 3);
    // What a connection holds per direction: the key bytes and IV, not
    // ring's prepared key (~560 bytes for AES-GCM).
    assert!(
        std::mem::size_of::<RecordKey>() <= 64,
        "{}",
        std::mem::size_of::<RecordKey>()
    );
}

/// Moves whatever `from` has to send into `to`.
fn pass(from: &mut rustls::Connection, to: &mut rustls::Connection) {
    let mut wire = Vec::new();
    while from.wants_write() {
        from.write_tls(&mut wire).expect("written");
    }
    let mut rest = &wire[..];
    while !rest.is_empty() {
        to.read_tls(&mut rest).expect("read");
        to.process_new_packets().expect("records processed");
    }
}

/// A whole handshake and data both ways between a lean client and a server
/// on rustls' own ring suites, once for each TLS 1.3 suite — AES-128-GCM,
/// the one devices use, included.
#[test]
fn a_lean_client_and_a_standard_server_agree_on_every_tls13_suite() {
    use std::io::{Read, Write};
    use std::sync::Arc;

    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec!["node.test".to_string()])
        .expect("params")
        .self_signed(&key)
        .expect("cert");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.der().clone()).expect("root");
    let roots = Arc::new(roots);
    let server_config = Arc::new(
        rustls::ServerConfig::builder_with_provider(Arc::new(default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .expect("server config"),
    );
    for suite in [
        cipher_suite::TLS13_AES_128_GCM_SHA256,
        cipher_suite::TLS13_AES_256_GCM_SHA384,
        cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
    ] {
        let mut provider = default_provider();
        provider.cipher_suites = vec![suite];
        let client_config =
            rustls::ClientConfig::builder_with_provider(Arc::new(lean_provider(provider)))
                .with_protocol_versions(&[&rustls::version::TLS13])
                .expect("versions")
                .with_root_certificates(roots.clone())
                .with_no_client_auth();
        let name = rustls_pki_types::ServerName::try_from("node.test").expect("name");
        let mut client = rustls::Connection::from(
            rustls::ClientConnection::new(Arc::new(client_config), name).expect("client"),
        );
        let mut server = rustls::Connection::from(
            rustls::ServerConnection::new(server_config.clone()).expect("server"),
        );
        while client.is_handshaking() || server.is_handshaking() {
            pass(&mut client, &mut server);
            pass(&mut server, &mut client);
        }
        assert_eq!(client.negotiated_cipher_suite(), Some(suite));
        client.writer().write_all(b"PUBLISH up").expect("written");
        pass(&mut client, &mut server);
        let mut got = [0u8; 10];
        server.reader().read_exact(&mut got).expect("server read");
        assert_eq!(&got, b"PUBLISH up");
        server.writer().write_all(b"PUBLISH down").expect("written");
        pass(&mut server, &mut client);
        let mut got = [0u8; 12];
        client.reader().read_exact(&mut got).expect("client read");
        assert_eq!(&got, b"PUBLISH down");
    }
}
