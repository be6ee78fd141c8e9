//! Validated identifiers: device ids and account ids.
//!
//! The syntax is defined once here and is safe to embed in MQTT topics, file names
//! and certificate subjects: 1–64 characters of `[A-Za-z0-9_-]`, starting with an
//! ASCII letter or digit. No wildcards, separators, `$`, NUL or whitespace can pass.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Longest accepted identifier, in bytes.
pub const MAX_ID_LEN: usize = 64;

/// Why a string is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("{kind} id is empty")]
    Empty { kind: &'static str },
    #[error("{kind} id is {len} bytes long; the limit is {MAX_ID_LEN}")]
    TooLong { kind: &'static str, len: usize },
    #[error("{kind} id must start with a letter or digit, not {found:?}")]
    BadStart { kind: &'static str, found: char },
    #[error("{kind} id contains {found:?}; only letters, digits, '-' and '_' are allowed")]
    BadChar { kind: &'static str, found: char },
}

fn validate(kind: &'static str, s: &str) -> Result<(), IdError> {
    let first = s.chars().next().ok_or(IdError::Empty { kind })?;
    if s.len() > MAX_ID_LEN {
        return Err(IdError::TooLong { kind, len: s.len() });
    }
    if !first.is_ascii_alphanumeric() {
        return Err(IdError::BadStart { kind, found: first });
    }
    match s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
    {
        Some(found) => Err(IdError::BadChar { kind, found }),
        None => Ok(()),
    }
}

macro_rules! validated_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        // Shared, not copied, by `clone`: an id is immutable, and the bridge hands
        // one to every value of a message (its writer, the live stream, the rules).
        pub struct $name(Arc<str>);

        impl $name {
            /// Validates `s` and wraps it.
            pub fn parse(s: impl AsRef<str>) -> Result<Self, IdError> {
                let s = s.as_ref();
                validate($kind, s)?;
                Ok(Self(Arc::from(s)))
            }

            /// The id as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::parse(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                Self::parse(s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0.as_ref().to_owned()
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

validated_id!(
    /// A device's id: its MQTT client id, its certificate CN and its topic segment.
    DeviceId,
    "device"
);
validated_id!(
    /// An account's id, as bound into integration certificates.
    AccountId,
    "account"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_uuid_style_ids() {
        let id = DeviceId::parse("4f2c1d9e-1b7a-4c55-9d0e-5a6b7c8d9e0f").expect("valid");
        assert_eq!(id.as_str(), "4f2c1d9e-1b7a-4c55-9d0e-5a6b7c8d9e0f");
    }

    #[test]
    fn rejects_anything_that_could_escape_a_topic_segment() {
        for bad in [
            "", "a/b", "+", "#", "a+", "dev#", "$SYS", "a\0b", "a b", "é", "-lead", "_x",
        ] {
            assert!(DeviceId::parse(bad).is_err(), "{bad:?} must be rejected");
        }
    }

    #[test]
    fn rejects_ids_over_the_length_limit() {
        assert!(DeviceId::parse("a".repeat(MAX_ID_LEN)).is_ok());
        assert_eq!(
            DeviceId::parse("a".repeat(MAX_ID_LEN + 1)),
            Err(IdError::TooLong {
                kind: "device",
                len: MAX_ID_LEN + 1
            })
        );
    }

    #[test]
    fn deserializing_validates() {
        assert!(serde_json::from_str::<DeviceId>("\"ok-1\"").is_ok());
        assert!(serde_json::from_str::<DeviceId>("\"no/slash\"").is_err());
    }
}
