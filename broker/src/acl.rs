//! Topic authorization: what each identity may publish and subscribe to.
//!
//! Pure functions of (identity, topic) plus an account lookup for integrations;
//! no I/O, no state. The session calls these on every PUBLISH, SUBSCRIBE and last
//! will, then logs and counts the denial. The rules:
//! - a device publishes only under its own `devices/{id}/`, never on leaves the
//!   cloud or the broker own (`commands`, `presence`, `cert/response…`), and
//!   subscribes only to filters that stay inside its own subtree and match its
//!   device-bound topics (its commands, its certificate responses);
//! - the service identity (bridge) has fleet-wide rights except `$` topics other
//!   than shared subscriptions;
//! - an integration publishes only commands to devices its account owns, and
//!   subscribes only under `devices/{owned id or +}/` to filters that can match
//!   a leaf it may read (never `commands`); what its wildcards match fleet-wide
//!   is narrowed per message by [`may_receive`] against the account lookup,
//!   so an ownership change applies to the next message.

use std::sync::Arc;

use kumo_contract::topic::{self, Leaf};
use kumo_contract::{AccountId, DeviceId, Identity};

/// Which devices an account's integrations may reach: those it owns and
/// those of the homes it is a member of; filled in by the bridge. The
/// default denies all.
pub trait AccountDevices: Send + Sync + 'static {
    /// True when `device` belongs to `account` or to a home it is a member of.
    fn owns(&self, account: &AccountId, device: &DeviceId) -> bool;
}

/// The account lookup used when nothing else is configured: integrations get nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoAccounts;

impl AccountDevices for NoAccounts {
    fn owns(&self, _account: &AccountId, _device: &DeviceId) -> bool {
        false
    }
}

/// Shared handle to an account lookup.
pub type AccountLookup = Arc<dyn AccountDevices>;

/// Why a topic or filter was refused; `as_str` is the metrics label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Denial {
    /// Empty, wildcard in a topic name, NUL, malformed filter.
    Invalid,
    /// Starts with `$` (`$SYS`, …).
    System,
    /// Outside the identity's own subtree or account.
    NotOwned,
    /// A leaf only the cloud or the broker may publish (`commands`, `presence`,
    /// `cert/response`).
    Reserved,
    /// A filter whose wildcards reach beyond what the identity may see.
    Wildcard,
}

impl Denial {
    /// Label for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Denial::Invalid => "invalid",
            Denial::System => "system_topic",
            Denial::NotOwned => "not_owned",
            Denial::Reserved => "reserved_leaf",
            Denial::Wildcard => "wildcard",
        }
    }
}

/// Leaves under `devices/{id}/` that devices must never publish on.
const RESERVED_LEAVES: [Leaf; 2] = [Leaf::Commands, Leaf::Presence];

/// May `identity` publish on `topic`?
pub fn may_publish(
    identity: &Identity,
    topic: &str,
    accounts: &dyn AccountDevices,
) -> Result<(), Denial> {
    if topic.is_empty() || topic.contains(['+', '#', '\0']) {
        return Err(Denial::Invalid);
    }
    if topic.starts_with('$') {
        return Err(Denial::System);
    }
    match identity {
        Identity::Service { .. } => Ok(()),
        Identity::Device { id } => {
            let rest = topic::strip_device_prefix(topic, id).ok_or(Denial::NotOwned)?;
            let first = rest.split('/').next().unwrap_or_default();
            if first.is_empty() {
                return Err(Denial::Invalid);
            }
            if RESERVED_LEAVES.iter().any(|l| l.suffix() == first) || in_cert_responses(rest) {
                return Err(Denial::Reserved);
            }
            Ok(())
        }
        Identity::Integration { account, .. } => match topic::parse_device_topic(topic) {
            Some((device, Leaf::Commands)) if accounts.owns(account, &device) => Ok(()),
            Some((_, Leaf::Commands)) => Err(Denial::NotOwned),
            Some(_) => Err(Denial::Reserved),
            None => Err(Denial::NotOwned),
        },
    }
}

/// May `identity` subscribe to `filter`?
pub fn may_subscribe(
    identity: &Identity,
    filter: &str,
    accounts: &dyn AccountDevices,
) -> Result<(), Denial> {
    if filter.is_empty() || filter.contains('\0') || !rumqttd::protocol::valid_filter(filter) {
        return Err(Denial::Invalid);
    }
    if let Some(rest) = filter.strip_prefix("$share/") {
        // Shared subscriptions spread fleet streams over bridge replicas.
        let inner = rest.split_once('/').map(|(_, f)| f).unwrap_or_default();
        return match identity {
            Identity::Service { .. } if !inner.is_empty() && !inner.starts_with('$') => Ok(()),
            Identity::Service { .. } => Err(Denial::Invalid),
            _ => Err(Denial::System),
        };
    }
    if filter.starts_with('$') {
        return Err(Denial::System);
    }
    match identity {
        Identity::Service { .. } => Ok(()),
        Identity::Device { id } => {
            let owned = device_of_filter(filter)?;
            if owned != id.as_str() {
                return Err(Denial::NotOwned);
            }
            let commands = topic::device_topic(id, Leaf::Commands);
            let responses = topic::device_topic(id, Leaf::CertResponse);
            let rest = topic::strip_device_prefix(filter, id).unwrap_or_default();
            if rumqttd::protocol::matches(&commands, filter)
                || rumqttd::protocol::matches(&responses, filter)
                || in_cert_responses(rest)
            {
                Ok(())
            } else {
                Err(Denial::Reserved)
            }
        }
        Identity::Integration { account, .. } => integration_filter(filter, account, accounts),
    }
}

/// Leaves an integration may read: what its devices report and the broker
/// announces about them. Commands are cloud → device traffic of every sender.
const READABLE_LEAVES: [Leaf; 9] = [
    Leaf::Sensor(topic::Sensor::Temperature),
    Leaf::Sensor(topic::Sensor::Humidity),
    Leaf::Sensor(topic::Sensor::Illuminance),
    Leaf::Sensor(topic::Sensor::Motion),
    Leaf::Sensors,
    Leaf::Meter,
    Leaf::State,
    Leaf::Presence,
    Leaf::Acks,
];

/// An integration's filter: `devices/{owned id}/…` or `devices/+/…`, whose
/// rest can match at least one readable leaf.
fn integration_filter(
    filter: &str,
    account: &AccountId,
    accounts: &dyn AccountDevices,
) -> Result<(), Denial> {
    let mut levels = filter.splitn(3, '/');
    let root = levels.next().unwrap_or_default();
    let id = levels.next().unwrap_or_default();
    let rest = levels.next().unwrap_or_default();
    if matches!(root, "#" | "+") || id == "#" {
        return Err(Denial::Wildcard);
    }
    if root != topic::DEVICES || id.is_empty() {
        return Err(Denial::NotOwned);
    }
    if id != "+" {
        let device = DeviceId::parse(id).map_err(|_| Denial::Invalid)?;
        if !accounts.owns(account, &device) {
            return Err(Denial::NotOwned);
        }
    }
    if READABLE_LEAVES
        .iter()
        .any(|l| rumqttd::protocol::matches(l.suffix(), rest))
    {
        Ok(())
    } else {
        Err(Denial::Reserved)
    }
}

/// May `identity` be handed a routed message on `topic`? Devices and the
/// service get what their granted filters match; an integration only readable
/// leaves of devices its account owns at this moment (never commands or
/// certificate renewals). Called per message on
/// the delivery path, so it allocates only the parsed device id.
pub fn may_receive(identity: &Identity, topic: &str, accounts: &dyn AccountDevices) -> bool {
    match identity {
        Identity::Integration { account, .. } => matches!(
            topic::parse_device_topic(topic),
            Some((device, leaf)) if READABLE_LEAVES.contains(&leaf) && accounts.owns(account, &device)
        ),
        Identity::Device { .. } | Identity::Service { .. } => true,
    }
}

/// Whether the part of a topic or filter after `devices/{id}/` lies in the
/// certificate response subtree (`cert/response` and below), which only the
/// cloud publishes to.
fn in_cert_responses(rest: &str) -> bool {
    let base = Leaf::CertResponse.suffix();
    rest.strip_prefix(base)
        .is_some_and(|below| below.is_empty() || below.starts_with('/'))
}

/// The concrete device id a filter is pinned to; refuses filters whose first two
/// levels are not `devices/{literal id}`.
fn device_of_filter(filter: &str) -> Result<&str, Denial> {
    let mut levels = filter.splitn(3, '/');
    let root = levels.next().unwrap_or_default();
    let id = levels.next().unwrap_or_default();
    if matches!(root, "#" | "+") || matches!(id, "#" | "+") {
        return Err(Denial::Wildcard);
    }
    if root != topic::DEVICES || id.is_empty() {
        return Err(Denial::NotOwned);
    }
    Ok(id)
}

#[cfg(test)]
#[path = "acl_tests.rs"]
mod tests;
