//! Device → cloud command results.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{check_ts, ApplianceStates, Checked, EchonetProperty, IrMessage, PayloadError};

/// `devices/{id}/acks` (QoS 1): the outcome of one command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Ack {
    /// The command's id.
    pub id: String,
    pub result: AckResult,
    /// Why it failed (failed acks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The commanded appliance's state after an `aircon`, `tv` or `light`
    /// command that succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<ApplianceStates>,
    /// Output of the command, such as a learned IR signal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<AckData>,
    /// After an `echonet_set` or `echonet_refresh` that succeeded: the
    /// object's properties as the device read them just now (the one set, or
    /// those asked for), values as hex EDT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub echonetlite_properties: Option<Vec<EchonetProperty>>,
    pub ts: u64,
}

/// Success or failure of a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AckResult {
    Ok,
    Failed,
}

/// What a command produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AckData {
    /// The signal a `learn` command captured.
    pub message: IrMessage,
}

impl Checked for Ack {
    fn check(&self) -> Result<(), PayloadError> {
        if self.id.is_empty() {
            return Err(PayloadError::Range("id is empty".into()));
        }
        if let Some(data) = &self.data {
            data.message.check()?;
        }
        if let Some(state) = &self.state {
            state.check()?;
        }
        if let Some(props) = &self.echonetlite_properties {
            if props.is_empty() {
                return Err(PayloadError::Range("no echonetlite_properties".into()));
            }
        }
        check_ts(self.ts)
    }
}
