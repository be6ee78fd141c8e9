//! Outgoing webhooks: the signature format, the retry and auto-disable
//! policies, and one HTTP delivery attempt.
//!
//! # Signature
//!
//! Every delivery carries
//!
//! ```text
//! X-Kumo-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<unix seconds>.<body>")>
//! ```
//!
//! A receiver recomputes the HMAC over the decimal timestamp, a `.` and the raw
//! request body, compares it in constant time with any `v1` value, and rejects
//! timestamps more than a few minutes from its clock (replay protection).
//!
//! Owns those formats and decisions. It must not own scheduling or storage: the
//! bridge keeps the delivery log, sleeps between attempts and flips the
//! webhook's disabled flag when [`DisablePolicy`] says so.

mod deliver;
mod policy;
mod signature;

pub use deliver::{deliver, deliver_at, DeliveryOutcome, DELIVERY_TIMEOUT, USER_AGENT};
pub use policy::{DisablePolicy, Next, RetryPolicy, Streak, Verdict};
pub use signature::{sign, verify, SignatureError, DEFAULT_TOLERANCE_SECS, SIGNATURE_HEADER};
