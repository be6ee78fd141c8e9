//! `X-Kumo-Signature` signing and verification (HMAC-SHA256 over `"<t>.<body>"`).

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "X-Kumo-Signature";

/// How far a signature's timestamp may be from the verifier's clock, by default.
pub const DEFAULT_TOLERANCE_SECS: i64 = 300;

/// Why a signature was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("signature header is malformed: {0}")]
    Malformed(&'static str),
    #[error("signature timestamp {timestamp} is more than {tolerance}s from now ({now})")]
    Stale {
        timestamp: i64,
        now: i64,
        tolerance: i64,
    },
    #[error("no signature in the header matches the body")]
    Mismatch,
}

fn mac(secret: &[u8], timestamp: i64, body: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = match HmacSha256::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The `X-Kumo-Signature` value for `body` sent at `timestamp` (unix seconds).
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let tag = mac(secret, timestamp, body).finalize().into_bytes();
    format!("t={timestamp},v1={}", hex::encode(tag))
}

/// Checks a header produced by [`sign`]: the timestamp is within `tolerance_secs`
/// of `now` and some `v1` entry (several are allowed, for secret rotation)
/// matches, compared in constant time.
pub fn verify(
    secret: &[u8],
    header: &str,
    body: &[u8],
    now: i64,
    tolerance_secs: i64,
) -> Result<(), SignatureError> {
    let mut timestamp = None;
    let mut tags = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => {
                timestamp = Some(
                    t.parse::<i64>()
                        .map_err(|_| SignatureError::Malformed("t is not an integer"))?,
                )
            }
            Some(("v1", v)) => {
                tags.push(hex::decode(v).map_err(|_| SignatureError::Malformed("v1 is not hex"))?)
            }
            Some(_) => {}
            None => return Err(SignatureError::Malformed("expected key=value pairs")),
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed("missing t"))?;
    if tags.is_empty() {
        return Err(SignatureError::Malformed("missing v1"));
    }
    if (now - timestamp).abs() > tolerance_secs {
        return Err(SignatureError::Stale {
            timestamp,
            now,
            tolerance: tolerance_secs,
        });
    }
    let expected = mac(secret, timestamp, body);
    if tags
        .iter()
        .any(|tag| expected.clone().verify_slice(tag).is_ok())
    {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"whsec_test";
    const BODY: &[u8] = br#"{"rule":"r1"}"#;

    #[test]
    fn signature_matches_a_known_vector() {
        // python3: hmac.new(b"whsec_test", b"1700000000." + body, hashlib.sha256).hexdigest()
        let header = sign(SECRET, 1_700_000_000, BODY);
        assert_eq!(
            header,
            "t=1700000000,v1=da34e14dfa29252f472cfebcdb5f67eefb6718e04b5c253f56b64b961cea581c"
        );
    }

    #[test]
    fn a_fresh_signature_verifies() {
        let header = sign(SECRET, 1_700_000_000, BODY);
        assert_eq!(verify(SECRET, &header, BODY, 1_700_000_100, 300), Ok(()));
    }

    #[test]
    fn a_tampered_body_or_wrong_secret_is_a_mismatch() {
        let header = sign(SECRET, 1_700_000_000, BODY);
        let now = 1_700_000_000;
        assert_eq!(
            verify(SECRET, &header, b"{}", now, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"other", &header, BODY, now, 300),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn an_old_signature_is_stale() {
        let header = sign(SECRET, 1_700_000_000, BODY);
        assert!(matches!(
            verify(SECRET, &header, BODY, 1_700_000_301, 300),
            Err(SignatureError::Stale { .. })
        ));
    }

    #[test]
    fn any_matching_v1_entry_is_accepted_during_secret_rotation() {
        let new = sign(SECRET, 1_700_000_000, BODY);
        let old = sign(b"previous", 1_700_000_000, BODY);
        let old_tag = old.split_once("v1=").map(|(_, t)| t).expect("has v1");
        let both = format!("{new},v1={old_tag}");
        assert_eq!(verify(b"previous", &both, BODY, 1_700_000_000, 300), Ok(()));
    }

    #[test]
    fn malformed_headers_are_rejected() {
        for bad in ["", "t=abc,v1=00", "t=1", "v1=00", "t=1,v1=zz", "garbage"] {
            assert!(
                matches!(
                    verify(SECRET, bad, BODY, 1, 300),
                    Err(SignatureError::Malformed(_))
                ),
                "{bad:?}"
            );
        }
    }
}
