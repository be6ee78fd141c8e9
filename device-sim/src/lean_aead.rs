//! TLS 1.3 record protection that keeps only the traffic key.
//!
//! ring's prepared AES-GCM key (round keys and GHASH table) takes ~560 bytes,
//! and a TLS connection holds two — a tenth of a simulated device. A device
//! sends a record a minute, so its keys are prepared per record instead: the
//! connection keeps the 16 or 32 key bytes and the IV, and each record costs a
//! key setup next to its seal or open (the simulator's CPU per device did not
//! rise measurably: BENCHMARKS, "Device simulator"). The record
//! layer itself is RFC 8446 §5.2 as rustls' own ring suites do it; this module
//! only swaps the AEAD behind the same cipher suites, so the nodes see nothing
//! different on the wire.

use std::sync::OnceLock;

use ring::aead;
use rustls::crypto::cipher::{
    make_tls13_aad, AeadKey, InboundOpaqueMessage, InboundPlainMessage, Iv, MessageDecrypter,
    MessageEncrypter, Nonce, OutboundOpaqueMessage, OutboundPlainMessage, PrefixedPayload,
    Tls13AeadAlgorithm, UnsupportedOperationError,
};
use rustls::crypto::CryptoProvider;
use rustls::{
    CipherSuite, ConnectionTrafficSecrets, ContentType, Error, ProtocolVersion,
    SupportedCipherSuite, Tls13CipherSuite,
};

/// One AEAD of a TLS 1.3 suite, keyed per record.
struct LeanAead {
    alg: &'static aead::Algorithm,
    secrets: fn(AeadKey, Iv) -> ConnectionTrafficSecrets,
}

static AES_128_GCM: LeanAead = LeanAead {
    alg: &aead::AES_128_GCM,
    secrets: |key, iv| ConnectionTrafficSecrets::Aes128Gcm { key, iv },
};
static AES_256_GCM: LeanAead = LeanAead {
    alg: &aead::AES_256_GCM,
    secrets: |key, iv| ConnectionTrafficSecrets::Aes256Gcm { key, iv },
};
static CHACHA20_POLY1305: LeanAead = LeanAead {
    alg: &aead::CHACHA20_POLY1305,
    secrets: |key, iv| ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv },
};

/// `provider` with each TLS 1.3 suite it knows keyed per record; the order,
/// the TLS 1.2 suites and everything else are kept.
pub(crate) fn lean_provider(mut provider: CryptoProvider) -> CryptoProvider {
    provider.cipher_suites = provider
        .cipher_suites
        .iter()
        .map(|s| match s {
            SupportedCipherSuite::Tls13(t) => lean_suite(t).map_or(*s, SupportedCipherSuite::Tls13),
            SupportedCipherSuite::Tls12(_) => *s,
        })
        .collect();
    provider
}

/// The lean twin of `suite`, made once per process.
fn lean_suite(suite: &'static Tls13CipherSuite) -> Option<&'static Tls13CipherSuite> {
    static MADE: [OnceLock<Tls13CipherSuite>; 3] =
        [OnceLock::new(), OnceLock::new(), OnceLock::new()];
    let (slot, aead) = match suite.common.suite {
        CipherSuite::TLS13_AES_128_GCM_SHA256 => (0, &AES_128_GCM),
        CipherSuite::TLS13_AES_256_GCM_SHA384 => (1, &AES_256_GCM),
        CipherSuite::TLS13_CHACHA20_POLY1305_SHA256 => (2, &CHACHA20_POLY1305),
        _ => return None,
    };
    Some(MADE[slot].get_or_init(|| Tls13CipherSuite {
        common: rustls::CipherSuiteCommon {
            suite: suite.common.suite,
            hash_provider: suite.common.hash_provider,
            confidentiality_limit: suite.common.confidentiality_limit,
        },
        hkdf_provider: suite.hkdf_provider,
        aead_alg: aead,
        quic: None,
    }))
}

impl Tls13AeadAlgorithm for LeanAead {
    fn encrypter(&self, key: AeadKey, iv: Iv) -> Box<dyn MessageEncrypter> {
        Box::new(RecordKey::new(self.alg, key, iv))
    }

    fn decrypter(&self, key: AeadKey, iv: Iv) -> Box<dyn MessageDecrypter> {
        Box::new(RecordKey::new(self.alg, key, iv))
    }

    fn key_len(&self) -> usize {
        self.alg.key_len()
    }

    fn extract_keys(
        &self,
        key: AeadKey,
        iv: Iv,
    ) -> Result<ConnectionTrafficSecrets, UnsupportedOperationError> {
        Ok((self.secrets)(key, iv))
    }
}

/// A traffic key (zeroed on drop, as rustls' `AeadKey` is) and IV,
/// prepared for each record.
struct RecordKey {
    alg: &'static aead::Algorithm,
    key: AeadKey,
    iv: Iv,
}

impl RecordKey {
    fn new(alg: &'static aead::Algorithm, key: AeadKey, iv: Iv) -> Self {
        Self { alg, key, iv }
    }

    fn prepared(&self) -> Result<aead::LessSafeKey, Error> {
        aead::UnboundKey::new(self.alg, self.key.as_ref())
            .map(aead::LessSafeKey::new)
            .map_err(|_| Error::General("bad traffic key length".into()))
    }

    fn nonce(&self, seq: u64) -> aead::Nonce {
        aead::Nonce::assume_unique_for_key(Nonce::new(&self.iv, seq).0)
    }
}

impl MessageEncrypter for RecordKey {
    fn encrypt(
        &mut self,
        msg: OutboundPlainMessage<'_>,
        seq: u64,
    ) -> Result<OutboundOpaqueMessage, Error> {
        let total_len = self.encrypted_payload_len(msg.payload.len());
        let mut payload = PrefixedPayload::with_capacity(total_len);
        payload.extend_from_chunks(&msg.payload);
        payload.extend_from_slice(&msg.typ.to_array());
        self.prepared()?
            .seal_in_place_append_tag(
                self.nonce(seq),
                aead::Aad::from(make_tls13_aad(total_len)),
                &mut payload,
            )
            .map_err(|_| Error::EncryptError)?;
        // Every TLS 1.3 record says TLS 1.2 outside (RFC 8446 §5.1).
        Ok(OutboundOpaqueMessage::new(
            ContentType::ApplicationData,
            ProtocolVersion::TLSv1_2,
            payload,
        ))
    }

    fn encrypted_payload_len(&self, payload_len: usize) -> usize {
        payload_len + 1 + self.alg.tag_len()
    }
}

impl MessageDecrypter for RecordKey {
    fn decrypt<'a>(
        &mut self,
        mut msg: InboundOpaqueMessage<'a>,
        seq: u64,
    ) -> Result<InboundPlainMessage<'a>, Error> {
        let payload = &mut msg.payload;
        if payload.len() < self.alg.tag_len() {
            return Err(Error::DecryptError);
        }
        let aad = aead::Aad::from(make_tls13_aad(payload.len()));
        let plain = self
            .prepared()?
            .open_in_place(self.nonce(seq), aad, payload)
            .map_err(|_| Error::DecryptError)?
            .len();
        payload.truncate(plain);
        msg.into_tls13_unpadded_message()
    }
}

#[cfg(test)]
#[path = "lean_aead_tests.rs"]
mod tests;
