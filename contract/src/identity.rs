//! Who is on the other end of a connection, as proven by a certificate.
//!
//! The certs crate decides how an identity is encoded in a certificate and turns a
//! verified certificate back into an [`Identity`]; the broker decides what each
//! identity may do. This module only names the possibilities.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{AccountId, DeviceId};

/// The proven identity behind a verified client certificate.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "snake_case")]
pub enum Identity {
    /// A device; may only touch its own `devices/{id}/` subtree.
    Device { id: DeviceId },
    /// A Kumo service such as the bridge; fleet-wide rights.
    Service { name: String },
    /// A third-party integration bound to one account's devices.
    Integration { name: String, account: AccountId },
}

impl Identity {
    /// The MQTT client id this identity must connect with.
    pub fn client_id(&self) -> &str {
        match self {
            Identity::Device { id } => id.as_str(),
            Identity::Service { name } | Identity::Integration { name, .. } => name,
        }
    }

    /// The role as a short word, for logs and metrics labels.
    pub fn role(&self) -> &'static str {
        match self {
            Identity::Device { .. } => "device",
            Identity::Service { .. } => "service",
            Identity::Integration { .. } => "integration",
        }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::Device { id } => write!(f, "device:{id}"),
            Identity::Service { name } => write!(f, "service:{name}"),
            Identity::Integration { name, account } => write!(f, "integration:{name}@{account}"),
        }
    }
}
