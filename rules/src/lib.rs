//! Kumo's automation core: the rule model, the evaluator, webhook signing and
//! delivery policy, and the live-event backlog.
//!
//! Owns the decisions — is this rule valid, does it fire now, how is a webhook
//! signed, when is a delivery retried or its webhook disabled, which events does a
//! resuming SSE client get. It must not own I/O: no database, no HTTP server, no
//! clock reads and no tokio in the evaluator; time is injected through events.
//! The one exception is [`webhook::deliver`], a small async HTTP POST.
//!
//! The bridge wires it: rules from PostgreSQL go into an [`Engine`], the live
//! telemetry stream and a periodic [`Event::Tick`] go through [`Engine::handle`],
//! each [`Firing`] is executed and logged by the bridge, and events for
//! `GET /v1/events` go through a [`Backlog`] per account.

pub mod backlog;
pub mod clock;
pub mod command;
pub mod engine;
pub mod event;
pub mod model;
mod state;
pub mod validate;
pub mod webhook;

pub use backlog::{AccountBacklogs, Backlog, Since, Stamped};
pub use clock::{LocalTime, Weekday, Zone};
pub use engine::Engine;
pub use event::{Cause, Event, Firing};
pub use model::{
    Action, AirconParams, ApplianceCommand, ButtonParams, CommandAction, Comparison, Condition,
    EventAction, HomeEdge, HomeTrigger, MeterPowerTrigger, MotionNotSeenTrigger, MotionSeenTrigger,
    PresenceTrigger, Rule, RuleId, ScheduleTrigger, Sensor, SensorCondition, SignalParams,
    ThresholdTrigger, TimeWindowCondition, Trigger, WebhookAction, Who,
};
pub use state::SavedState;
pub use validate::{parse_rule, parse_rule_value, validate, RuleError};
