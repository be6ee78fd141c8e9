//! The device protocol: every JSON document that crosses MQTT, as serde types
//! shared by the broker, the bridge, the device simulator and the load tool.
//!
//! Compatibility rule (tested in `tests/protocol.rs`):
//! - **Devices are lenient.** What the cloud sends a device (`Command`,
//!   `CertResponse`) may
//!   gain fields; a device ignores fields it does not know. An action `type` it
//!   does not know is answered with a failed [`Ack`].
//! - **The cloud is strict.** What devices and nodes send (readings, meter
//!   reports, state, acks, certificate requests, presence, epochs) is refused
//!   whole if a field is unknown, missing or of the wrong type, or a value is
//!   out of range. A device may send a new field only once the cloud knows it.
//!
//! Timestamps named `ts` are Unix epoch milliseconds unless said otherwise.
//! `docs/device-protocol.md` documents each message with an example; the JSON
//! Schemas in `contract/schema/` are generated from these types ([`schemas`]).

mod ack;
mod cert;
mod command;
pub mod from_device;
mod node;
mod reading;
mod state;

pub use ack::{Ack, AckData, AckResult};
pub use cert::{CertRequest, CertResponse, MAX_CSR_PEM, MAX_REQUEST_ID};
pub use command::{Action, Command, IrMessage};
pub use node::{NodeEpoch, Presence};
pub use reading::{EchonetProperty, MeterReport, SensorReading, SensorReport};
pub use state::{ApplianceStates, DeviceKind, StateReport};

use serde::de::DeserializeOwned;

/// Why a document was refused.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    #[error("not the expected JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("value out of range: {0}")]
    Range(String),
}

/// Reads a document strictly: its shape through serde, then its values
/// through [`Checked::check`].
pub fn decode<T: DeserializeOwned + Checked>(body: &[u8]) -> Result<T, PayloadError> {
    let doc: T = serde_json::from_slice(body)?;
    doc.check()?;
    Ok(doc)
}

/// Value checks beyond what the types say.
pub trait Checked {
    /// `Ok` if every value is in range.
    fn check(&self) -> Result<(), PayloadError>;
}

/// Every message's JSON Schema (draft 2020-12), by its file name in
/// `contract/schema/` (without `.schema.json`).
pub fn schemas() -> Vec<(&'static str, serde_json::Value)> {
    fn one<T: schemars::JsonSchema>() -> serde_json::Value {
        schemars::schema_for!(T).to_value()
    }
    vec![
        ("sensor-reading", one::<SensorReading>()),
        ("sensor-report", one::<SensorReport>()),
        ("meter-report", one::<MeterReport>()),
        ("state-report", one::<StateReport>()),
        ("command", one::<Command>()),
        ("ack", one::<Ack>()),
        ("presence", one::<Presence>()),
        ("node-epoch", one::<NodeEpoch>()),
        ("cert-request", one::<CertRequest>()),
        ("cert-response", one::<CertResponse>()),
    ]
}

/// Milliseconds since the Unix epoch must fit a time (year 9999 at most).
pub(crate) fn check_ts(ts: u64) -> Result<(), PayloadError> {
    const MAX_MS: u64 = 253_402_300_799_999;
    if ts <= MAX_MS {
        Ok(())
    } else {
        Err(PayloadError::Range(format!("ts {ts} is not a time")))
    }
}
