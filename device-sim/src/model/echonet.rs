//! An ECHONET Lite home air conditioner (class 0x0130, instance 1) on a
//! smart-meter gateway's home network: operation status (0x80), mode (0xB0)
//! and set temperature (0xB3) can be set; the room temperature (0xBB) drifts
//! toward the set temperature while the unit runs and toward the outdoors
//! while it is off. Like an ECHONET Lite node announcing status changes, the
//! gateway reports the unit's properties once per connection and then only
//! when one of them changed.
//!
//! Sets are checked with `kumo_contract::appliance::echonet`, the cloud's own
//! rules, so the unit refuses exactly what the cloud would. Pure: no I/O.

use kumo_contract::appliance::echonet::{
    self, hex, Eoj, EPC_OPERATION_MODE, EPC_OPERATION_STATUS, EPC_ROOM_TEMPERATURE,
    EPC_SET_TEMPERATURE, HOME_AIR_CONDITIONER, OFF, ON,
};
use kumo_contract::payload::{EchonetProperty, MeterReport};

use super::rng::SimRng;

/// Mode code for cooling.
const MODE_COOL: u8 = 0x42;
/// Mode code for heating.
const MODE_HEAT: u8 = 0x43;

/// One air conditioner.
#[derive(Debug, Clone)]
pub struct ElAircon {
    on: bool,
    mode: u8,
    set_temp: u8,
    room: f64,
    /// Where the room drifts while the unit is off, °C.
    outdoor: f64,
    /// What the last report carried on this connection.
    reported: Option<Vec<EchonetProperty>>,
}

impl ElAircon {
    /// A unit that is off, in cooling mode at 26 °C, in a room drawn from `rng`.
    pub fn new(rng: &mut SimRng) -> Self {
        let outdoor = rng.range(15.0, 31.0);
        Self {
            on: false,
            mode: MODE_COOL,
            set_temp: 26,
            room: outdoor,
            outdoor,
            reported: None,
        }
    }

    /// The object this unit is.
    pub const EOJ: Eoj = Eoj::HOME_AIR_CONDITIONER;

    /// Advances by `dt_secs`: the room approaches its target by a fraction
    /// per minute (a unit that cools when asked to heat changes nothing).
    pub fn step(&mut self, dt_secs: f64) {
        let target = match (self.on, self.mode) {
            (true, MODE_COOL) => self.outdoor.min(f64::from(self.set_temp)),
            (true, MODE_HEAT) => self.outdoor.max(f64::from(self.set_temp)),
            (true, 0x41 | 0x44) => f64::from(self.set_temp),
            _ => self.outdoor,
        };
        let k = 1.0 - (-dt_secs.max(0.0) / 600.0).exp();
        self.room += (target - self.room) * k;
    }

    /// Applies a set of `epc` to the hex value `edt`; a refusal says why and
    /// changes nothing.
    pub fn set(&mut self, epc: u8, edt: &str) -> Result<(), String> {
        let v = echonet::check_set(Self::EOJ, epc, edt).map_err(|e| e.to_string())?;
        let v = v.first().copied().unwrap_or_default();
        match epc {
            EPC_OPERATION_STATUS => self.on = v == ON,
            EPC_OPERATION_MODE => self.mode = v,
            EPC_SET_TEMPERATURE => self.set_temp = v,
            _ => return Err(format!("epc \"{epc:02x}\" cannot be set")),
        }
        Ok(())
    }

    /// The current value (EDT) of `epc`, if the unit has the property.
    pub fn get(&self, epc: u8) -> Option<Vec<u8>> {
        Some(vec![match epc {
            EPC_OPERATION_STATUS => {
                if self.on {
                    ON
                } else {
                    OFF
                }
            }
            EPC_OPERATION_MODE => self.mode,
            EPC_SET_TEMPERATURE => self.set_temp,
            // Signed whole degrees, as the class defines it.
            EPC_ROOM_TEMPERATURE => self.room.round().clamp(-127.0, 125.0) as i8 as u8,
            _ => return None,
        }])
    }

    /// Properties `epcs` as the ack and the report carry them; `None` if the
    /// unit lacks one of them.
    pub fn properties(&self, epcs: &[u8]) -> Option<Vec<EchonetProperty>> {
        epcs.iter()
            .map(|&epc| {
                let def = HOME_AIR_CONDITIONER.iter().find(|d| d.epc == epc)?;
                Some(EchonetProperty {
                    name: def.name.into(),
                    epc,
                    val: hex(&self.get(epc)?),
                })
            })
            .collect()
    }

    /// The report of every property, on `devices/{id}/meter`, if this
    /// connection has not seen these values yet.
    pub fn report_if_changed(&mut self, ts: u64) -> Option<MeterReport> {
        let report = self.report(ts);
        if self.reported.as_ref() == Some(&report.echonetlite_properties) {
            return None;
        }
        self.reported = Some(report.echonetlite_properties.clone());
        Some(report)
    }

    /// A new connection: the next report carries everything again.
    pub fn forget_reported(&mut self) {
        self.reported = None;
    }

    /// A report of every property.
    pub fn report(&self, ts: u64) -> MeterReport {
        let all: Vec<u8> = HOME_AIR_CONDITIONER.iter().map(|d| d.epc).collect();
        MeterReport {
            eoj: Some(Self::EOJ.to_string()),
            echonetlite_properties: self.properties(&all).unwrap_or_default(),
            ts: Some(ts),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn unit() -> ElAircon {
        ElAircon::new(&mut SimRng::new(5))
    }

    fn val(ac: &ElAircon, epc: u8) -> String {
        hex(&ac.get(epc).unwrap_or_default())
    }

    #[test]
    fn a_new_unit_is_off_cooling_at_26() {
        let ac = unit();
        assert_eq!(val(&ac, 0x80), "31");
        assert_eq!(val(&ac, 0xB0), "42");
        assert_eq!(val(&ac, 0xB3), "1a");
    }

    #[test]
    fn sets_change_what_the_unit_reports() {
        let mut ac = unit();
        ac.set(0x80, "30").unwrap();
        ac.set(0xB0, "43").unwrap();
        ac.set(0xB3, "16").unwrap();
        let props = ac.properties(&[0x80, 0xB0, 0xB3]).unwrap();
        let vals: Vec<&str> = props.iter().map(|p| p.val.as_str()).collect();
        assert_eq!(vals, ["30", "43", "16"]);
        assert_eq!(props[2].name, "set_temperature");
    }

    #[test]
    fn invalid_sets_are_refused_with_a_reason_and_change_nothing() {
        let mut ac = unit();
        for (epc, edt) in [
            (0xB3, "33"),
            (0x80, "00"),
            (0xBB, "10"),
            (0xCF, "30"),
            (0xB0, "4"),
        ] {
            let reason = ac.set(epc, edt).unwrap_err();
            assert!(
                reason.starts_with("val ") || reason.starts_with("epc "),
                "{reason}"
            );
        }
        assert_eq!(val(&ac, 0x80), "31");
        assert_eq!(val(&ac, 0xB3), "1a");
    }

    #[test]
    fn a_running_unit_pulls_the_room_to_its_set_temperature() {
        let mut ac = unit();
        ac.outdoor = 33.0;
        ac.room = 33.0;
        ac.set(0x80, "30").unwrap();
        ac.set(0xB3, "18").unwrap();
        for _ in 0..120 {
            ac.step(60.0);
        }
        assert_eq!(val(&ac, 0xBB), "18", "cooled to 24 °C");
        ac.set(0x80, "31").unwrap();
        for _ in 0..120 {
            ac.step(60.0);
        }
        assert_eq!(val(&ac, 0xBB), "21", "back to 33 °C once off");
    }

    #[test]
    fn the_unit_is_reported_once_per_connection_and_after_each_change() {
        let mut ac = unit();
        assert!(ac.report_if_changed(1).is_some());
        assert!(ac.report_if_changed(2).is_none());
        ac.set(0xB3, "14").unwrap();
        assert!(ac.report_if_changed(3).is_some());
        assert!(ac.report_if_changed(4).is_none());
        ac.forget_reported();
        assert!(ac.report_if_changed(5).is_some());
    }

    #[test]
    fn the_report_names_the_object_and_every_property() {
        let r = unit().report(7);
        assert_eq!(r.eoj.as_deref(), Some("013001"));
        let epcs: Vec<u8> = r.echonetlite_properties.iter().map(|p| p.epc).collect();
        assert_eq!(epcs, [0x80, 0xB0, 0xB3, 0xBB]);
    }
}
