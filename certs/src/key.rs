//! Key algorithms and key generation.
//!
//! Owns the mapping from [`KeyAlgorithm`] to rcgen signature algorithms. ring, the
//! only crypto provider in Kumo, cannot generate RSA keys, so RSA-2048 keys are
//! generated with the RustCrypto `rsa` crate and handed to ring as PKCS#8; every
//! signature is still made by ring (the `rsa` crate never signs or decrypts, so
//! its private-key timing issues do not apply). RSA keys are also accepted on
//! import ([`crate::Ca::from_pem`]) and in device CSRs.

use std::fmt;
use std::str::FromStr;

use rcgen::{KeyPair, SignatureAlgorithm};

use crate::CertError;

/// The key type of a newly generated key pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum KeyAlgorithm {
    /// ECDSA on NIST P-256 with SHA-256: small, fast, supported by every TLS stack.
    #[default]
    EcdsaP256,
    /// Ed25519: smaller still; not every embedded TLS stack supports it.
    Ed25519,
    /// RSA-2048 with SHA-256, for legacy peers (generation is slow: ~0.1–1 s).
    Rsa2048,
}

impl KeyAlgorithm {
    /// Every algorithm, for help texts and tests.
    pub const ALL: [KeyAlgorithm; 3] = [
        KeyAlgorithm::EcdsaP256,
        KeyAlgorithm::Ed25519,
        KeyAlgorithm::Rsa2048,
    ];

    /// The short name used on the command line (`ecdsa-p256`, `ed25519`, `rsa2048`).
    pub fn name(self) -> &'static str {
        match self {
            KeyAlgorithm::EcdsaP256 => "ecdsa-p256",
            KeyAlgorithm::Ed25519 => "ed25519",
            KeyAlgorithm::Rsa2048 => "rsa2048",
        }
    }

    fn signature_algorithm(self) -> &'static SignatureAlgorithm {
        match self {
            KeyAlgorithm::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyAlgorithm::Ed25519 => &rcgen::PKCS_ED25519,
            KeyAlgorithm::Rsa2048 => &rcgen::PKCS_RSA_SHA256,
        }
    }

    /// Generates a fresh key pair of this type.
    pub(crate) fn generate(self) -> Result<KeyPair, CertError> {
        if self == KeyAlgorithm::Rsa2048 {
            return generate_rsa_2048();
        }
        KeyPair::generate_for(self.signature_algorithm()).map_err(|e| CertError::KeyGeneration {
            algorithm: self,
            reason: e.to_string(),
        })
    }
}

fn generate_rsa_2048() -> Result<KeyPair, CertError> {
    use rsa::pkcs8::EncodePrivateKey;
    let failed = |reason: String| CertError::KeyGeneration {
        algorithm: KeyAlgorithm::Rsa2048,
        reason,
    };
    let key =
        rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).map_err(|e| failed(e.to_string()))?;
    let der = key.to_pkcs8_der().map_err(|e| failed(e.to_string()))?;
    let pkcs8 = rustls_pki_types::PrivatePkcs8KeyDer::from(der.as_bytes().to_vec());
    KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8, &rcgen::PKCS_RSA_SHA256)
        .map_err(|e| failed(e.to_string()))
}

/// Whether a subject key of this signature algorithm is RSA (which also needs
/// keyEncipherment for TLS 1.2 RSA key exchange).
pub(crate) fn is_rsa(alg: &SignatureAlgorithm) -> bool {
    [
        &rcgen::PKCS_RSA_SHA256,
        &rcgen::PKCS_RSA_SHA384,
        &rcgen::PKCS_RSA_SHA512,
    ]
    .contains(&alg)
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for KeyAlgorithm {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        KeyAlgorithm::ALL
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                format!("unknown key algorithm {s:?}; expected ecdsa-p256, ed25519 or rsa2048")
            })
    }
}
