//! Node → cloud announcements: device presence and node epochs.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use time::OffsetDateTime;

use super::{Checked, PayloadError};

/// `devices/{id}/presence` (retained, published by the broker node only):
/// a device connected or went away.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Presence {
    pub online: bool,
    /// The node's id.
    pub node: String,
    /// RFC 3339 time of the change, on the node's clock.
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub ts: OffsetDateTime,
    /// `connected`, or why the session ended (`disconnect`, `keepalive_timeout`, …).
    pub reason: String,
}

/// `kumo/nodes/{node}/epoch` (retained, published by the node at start):
/// every device whose last presence from this node is older was lost with
/// its previous run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeEpoch {
    /// The node's id; must equal the topic's.
    pub node: String,
    /// RFC 3339 time the node started, on its own clock.
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub started: OffsetDateTime,
}

impl Checked for Presence {
    fn check(&self) -> Result<(), PayloadError> {
        if self.node.is_empty() {
            return Err(PayloadError::Range("node is empty".into()));
        }
        Ok(())
    }
}

impl Checked for NodeEpoch {
    fn check(&self) -> Result<(), PayloadError> {
        if self.node.is_empty() {
            return Err(PayloadError::Range("node is empty".into()));
        }
        Ok(())
    }
}
