//! The MQTT topic layout shared by the broker, the bridge and devices.
//!
//! Everything about one device lives under `devices/{id}/`. Builders here are the
//! only place topic strings are assembled; [`parse_device_topic`] is the only place
//! they are taken apart.

use crate::DeviceId;

/// Root segment of every device topic.
pub const DEVICES: &str = "devices";

/// The leaf kinds of a device's subtree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Leaf {
    /// `sensors/{te|hu|il|mo}`, device → cloud: one reading.
    Sensor(Sensor),
    /// `sensors`, device → cloud: several sensors read at once.
    Sensors,
    /// `meter`, device → cloud, ECHONET Lite properties.
    Meter,
    /// `state`, device → cloud, retained.
    State,
    /// `commands`, cloud → device.
    Commands,
    /// `acks`, device → cloud.
    Acks,
    /// `presence`, published only by broker nodes, retained.
    Presence,
    /// `cert/request`, device → cloud: a CSR to renew the device's certificate.
    CertRequest,
    /// `cert/response`, cloud → device: the renewed certificate (an MQTT 5
    /// device may name a Response Topic below it instead, see
    /// [`is_cert_response_topic`]).
    CertResponse,
}

/// Sensor kinds, named as in the Nature API's `newest_events`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Sensor {
    Temperature,
    Humidity,
    Illuminance,
    Motion,
}

impl Sensor {
    /// All sensor kinds.
    pub const ALL: [Sensor; 4] = [
        Sensor::Temperature,
        Sensor::Humidity,
        Sensor::Illuminance,
        Sensor::Motion,
    ];

    /// The two-letter code (`te`, `hu`, `il`, `mo`).
    pub fn code(self) -> &'static str {
        match self {
            Sensor::Temperature => "te",
            Sensor::Humidity => "hu",
            Sensor::Illuminance => "il",
            Sensor::Motion => "mo",
        }
    }

    /// Parses a two-letter code.
    pub fn from_code(code: &str) -> Option<Sensor> {
        Sensor::ALL.into_iter().find(|s| s.code() == code)
    }
}

impl Leaf {
    /// The part of the topic after `devices/{id}/`.
    pub fn suffix(self) -> &'static str {
        match self {
            Leaf::Sensor(Sensor::Temperature) => "sensors/te",
            Leaf::Sensor(Sensor::Humidity) => "sensors/hu",
            Leaf::Sensor(Sensor::Illuminance) => "sensors/il",
            Leaf::Sensor(Sensor::Motion) => "sensors/mo",
            Leaf::Sensors => "sensors",
            Leaf::Meter => "meter",
            Leaf::State => "state",
            Leaf::Commands => "commands",
            Leaf::Acks => "acks",
            Leaf::Presence => "presence",
            Leaf::CertRequest => "cert/request",
            Leaf::CertResponse => "cert/response",
        }
    }

    fn parse(rest: &str) -> Option<Leaf> {
        Some(match rest {
            "sensors" => Leaf::Sensors,
            "meter" => Leaf::Meter,
            "state" => Leaf::State,
            "commands" => Leaf::Commands,
            "acks" => Leaf::Acks,
            "presence" => Leaf::Presence,
            "cert/request" => Leaf::CertRequest,
            "cert/response" => Leaf::CertResponse,
            _ => Leaf::Sensor(Sensor::from_code(rest.strip_prefix("sensors/")?)?),
        })
    }
}

/// `devices/{id}/{leaf}`.
pub fn device_topic(id: &DeviceId, leaf: Leaf) -> String {
    format!("{DEVICES}/{id}/{}", leaf.suffix())
}

/// The rest of `topic` after `devices/{id}/` — the prefix of everything the
/// device owns — or `None` if the topic is not in its subtree. Allocates
/// nothing: the broker calls it for every device publish.
pub fn strip_device_prefix<'a>(topic: &'a str, id: &DeviceId) -> Option<&'a str> {
    topic
        .strip_prefix(DEVICES)?
        .strip_prefix('/')?
        .strip_prefix(id.as_str())?
        .strip_prefix('/')
}

/// Whether `topic` is one the cloud may answer device `id`'s certificate
/// request on: `devices/{id}/cert/response` or a topic below it (an MQTT 5
/// device's Response Topic). Nothing else of the device's subtree, and
/// nothing of another device's.
pub fn is_cert_response_topic(topic: &str, id: &DeviceId) -> bool {
    let Some(rest) = strip_device_prefix(topic, id) else {
        return false;
    };
    let base = Leaf::CertResponse.suffix();
    match rest.strip_prefix(base) {
        Some("") => true,
        Some(below) => below.len() > 1 && below.starts_with('/') && !below.contains(['+', '#']),
        None => false,
    }
}

/// Splits a concrete topic into its device id and leaf; `None` if it is not a
/// well-formed device topic.
pub fn parse_device_topic(topic: &str) -> Option<(DeviceId, Leaf)> {
    let rest = topic.strip_prefix(DEVICES)?.strip_prefix('/')?;
    let (id, leaf) = rest.split_once('/')?;
    Some((DeviceId::parse(id).ok()?, Leaf::parse(leaf)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(s: &str) -> DeviceId {
        DeviceId::parse(s).expect("valid id")
    }

    #[test]
    fn builds_and_parses_every_leaf() {
        let id = dev("remo-1");
        let leaves = [
            Leaf::Sensor(Sensor::Temperature),
            Leaf::Sensor(Sensor::Motion),
            Leaf::Sensors,
            Leaf::Meter,
            Leaf::State,
            Leaf::Commands,
            Leaf::Acks,
            Leaf::Presence,
            Leaf::CertRequest,
            Leaf::CertResponse,
        ];
        for leaf in leaves {
            let t = device_topic(&id, leaf);
            assert_eq!(parse_device_topic(&t), Some((id.clone(), leaf)), "{t}");
        }
        assert_eq!(
            device_topic(&id, Leaf::Sensor(Sensor::Humidity)),
            "devices/remo-1/sensors/hu"
        );
    }

    #[test]
    fn strips_only_the_devices_own_prefix() {
        let id = dev("remo-1");
        assert_eq!(
            strip_device_prefix("devices/remo-1/state", &id),
            Some("state")
        );
        assert_eq!(strip_device_prefix("devices/remo-1/", &id), Some(""));
        for other in [
            "devices/remo-10/state",
            "devices/remo-1",
            "devices/remo",
            "x/remo-1/state",
        ] {
            assert_eq!(strip_device_prefix(other, &id), None, "{other}");
        }
    }

    #[test]
    fn a_certificate_response_goes_only_to_the_devices_own_response_topics() {
        let id = dev("remo-1");
        for ok in [
            "devices/remo-1/cert/response",
            "devices/remo-1/cert/response/42",
            "devices/remo-1/cert/response/a/b",
        ] {
            assert!(is_cert_response_topic(ok, &id), "{ok}");
        }
        for bad in [
            "devices/remo-2/cert/response",
            "devices/remo-10/cert/response",
            "devices/remo-1/cert/responses",
            "devices/remo-1/cert/response/",
            "devices/remo-1/cert/response/+",
            "devices/remo-1/commands",
            "devices/remo-1/cert/request",
            "devices/remo-1/acks",
        ] {
            assert!(!is_cert_response_topic(bad, &id), "{bad}");
        }
    }

    #[test]
    fn rejects_malformed_device_topics() {
        for bad in [
            "devices/remo-1",
            "devices//state",
            "devices/+/state",
            "devices/remo-1/sensors/xx",
            "devices/remo-1/state/extra",
            "other/remo-1/state",
        ] {
            assert_eq!(parse_device_topic(bad), None, "{bad}");
        }
    }
}
