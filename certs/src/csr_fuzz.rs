//! Fuzzing of CSR acceptance: real CSRs (P-256, P-384, Ed25519) mutated as
//! DER — bit flips, rewritten bytes (tags and lengths), truncation, insertion
//! — and as PEM text. Properties: no panic; a refusal is one of the CSR
//! errors; valid CSRs are accepted with their own key; a CSR whose signed
//! part changed is never accepted with a key other than the one it carries.

use super::*;
use kumo_testkit::fuzz::config;
use proptest::prelude::*;
use proptest::sample::select;
use rcgen::PublicKeyData;
use std::sync::OnceLock;

fn device() -> DeviceId {
    DeviceId::parse("remo-1").expect("a valid id")
}

/// `(csr DER, subject public key DER)` per key type, made once.
fn seeds() -> &'static [(Vec<u8>, Vec<u8>)] {
    static SEEDS: OnceLock<Vec<(Vec<u8>, Vec<u8>)>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        [
            &rcgen::PKCS_ECDSA_P256_SHA256,
            &rcgen::PKCS_ECDSA_P384_SHA384,
            &rcgen::PKCS_ED25519,
        ]
        .into_iter()
        .map(|alg| {
            let key = rcgen::KeyPair::generate_for(alg).expect("key");
            let mut params = rcgen::CertificateParams::new(vec!["remo-1".into()]).expect("params");
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, "remo-1");
            let csr = params.serialize_request(&key).expect("csr");
            (csr.der().to_vec(), key.der_bytes().to_vec())
        })
        .collect()
    })
}

fn base64(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in bytes.chunks(3) {
        let n = c
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn pem(label: &str, der: &[u8]) -> String {
    let body: Vec<String> = base64(der)
        .as_bytes()
        .chunks(64)
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        body.join("\n")
    )
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(f64, u8),
    Set(f64, u8),
    Truncate(f64),
    Insert(f64, Vec<u8>),
    Append(Vec<u8>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let at = 0.0..1.0f64;
    let edge = select(vec![
        0x00u8, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x30, 0x31, 0x80, 0x81, 0x82, 0x84, 0xa0, 0xff,
    ]);
    prop_oneof![
        3 => (at.clone(), 0..8u8).prop_map(|(a, b)| Mutation::Flip(a, b)),
        3 => (at.clone(), edge).prop_map(|(a, v)| Mutation::Set(a, v)),
        1 => at.clone().prop_map(Mutation::Truncate),
        1 => (at, prop::collection::vec(any::<u8>(), 1..6)).prop_map(|(a, v)| Mutation::Insert(a, v)),
        1 => prop::collection::vec(any::<u8>(), 1..4).prop_map(Mutation::Append),
    ]
}

fn apply(der: &mut Vec<u8>, m: &Mutation) {
    let at = |f: f64, len: usize| ((f * len as f64) as usize).min(len.saturating_sub(1));
    match m {
        Mutation::Flip(f, bit) if !der.is_empty() => {
            let i = at(*f, der.len());
            der[i] ^= 1 << bit;
        }
        Mutation::Set(f, v) if !der.is_empty() => {
            let i = at(*f, der.len());
            der[i] = *v;
        }
        Mutation::Truncate(f) => der.truncate(at(*f, der.len())),
        Mutation::Insert(f, v) => {
            let i = at(*f, der.len());
            der.splice(i..i, v.iter().copied());
        }
        Mutation::Append(v) => der.extend_from_slice(v),
        Mutation::Flip(..) | Mutation::Set(..) => {}
    }
}

fn is_csr_error(e: &CertError) -> bool {
    matches!(
        e,
        CertError::CsrParse { .. }
            | CertError::CsrSignature { .. }
            | CertError::UnsupportedCsrKey { .. }
            | CertError::CsrTooLarge { .. }
    )
}

#[test]
fn valid_csrs_are_accepted_with_their_own_key() {
    for (der, key) in seeds() {
        let spki = checked_public_key(&pem("CERTIFICATE REQUEST", der), &device()).expect("valid");
        assert_eq!(spki.der_bytes(), key.as_slice());
    }
}

proptest! {
    #![proptest_config(config(1_000))]

    /// Mutated DER: refused with a CSR error, or accepted only with the key
    /// the (verified) request carries.
    #[test]
    fn mutated_csrs_are_refused_or_keep_their_key(
        seed in any::<prop::sample::Index>(),
        mutations in prop::collection::vec(mutation(), 1..4),
        label in select(vec!["CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST", "CERTIFICATE"]),
    ) {
        let (der, key) = &seeds()[seed.index(seeds().len())];
        let mut mutated = der.clone();
        for m in &mutations {
            apply(&mut mutated, m);
        }
        match checked_public_key(&pem(label, &mutated), &device()) {
            Err(e) => prop_assert!(is_csr_error(&e), "{e}"),
            Ok(spki) => {
                prop_assert!(label.contains("REQUEST"));
                // The signature held: whatever changed, the key is the device's own.
                prop_assert_eq!(spki.der_bytes(), key.as_slice());
            }
        }
    }

    /// PEM text that is not quite PEM, or far too long.
    #[test]
    fn broken_pem_text_is_refused(
        seed in any::<prop::sample::Index>(),
        cut in 0.0..1.0f64,
        junk in "[A-Za-z0-9+/=\\- \n]{0,40}",
        repeat in select(vec![1usize, 2, 300]),
    ) {
        let (der, _) = &seeds()[seed.index(seeds().len())];
        let text = pem("CERTIFICATE REQUEST", der);
        let at = text.char_indices().map(|(i, _)| i).nth((cut * text.len() as f64) as usize).unwrap_or(text.len());
        let broken = format!("{}{junk}{}", &text[..at], &text[at..]).repeat(repeat);
        if let Err(e) = checked_public_key(&broken, &device()) {
            prop_assert!(is_csr_error(&e), "{e}");
        }
    }
}
