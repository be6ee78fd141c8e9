//! An ECHONET Lite home air conditioner (class 0x0130, instance 1) on a
//! smart-meter gateway's home network: operation status (0x80), mode (0xB0)
//! and set temperature (0xB3) can be set; the room temperature (0xBB) drifts
//! toward the set temperature while the unit runs and toward the outdoors
//! while it is off. The outdoor temperature follows the day (warmest at
//! 14:00). While it runs the unit draws power (`power_w`) — what the
//! household's meter adds to its load — by how much heat it must move: what
//! leaks through the walls at the set temperature, plus pulling the room to
//! it. Like an ECHONET Lite node announcing status changes, the gateway
//! reports the unit's properties once per connection and then only when one
//! of them changed.
//!
//! Sets are checked with `kumo_contract::appliance::echonet`, the cloud's own
//! rules, so the unit refuses exactly what the cloud would. Pure: no I/O.

use kumo_contract::appliance::echonet::{
    self, hex, Eoj, EPC_OPERATION_MODE, EPC_OPERATION_STATUS, EPC_ROOM_TEMPERATURE,
    EPC_SET_TEMPERATURE, HOME_AIR_CONDITIONER, OFF, ON,
};
use kumo_contract::payload::{EchonetProperty, MeterReport};

use super::rng::SimRng;

/// Mode code for automatic (cools or heats toward the set temperature).
const MODE_AUTO: u8 = 0x41;
/// Mode code for cooling.
const MODE_COOL: u8 = 0x42;
/// Mode code for heating.
const MODE_HEAT: u8 = 0x43;
/// Mode code for dehumidifying.
const MODE_DRY: u8 = 0x44;

/// Fan and electronics while running, W.
const FAN_W: f64 = 40.0;
/// Draw while dehumidifying, W.
const DRY_W: f64 = 300.0;
/// Most the unit draws (a 2.8 kW-class room unit), W.
const RATED_W: f64 = 1_500.0;
/// Heat leaking into the room per kelvin between outdoors and the set
/// temperature, W/K (a 15–20 m² room).
const LEAK_W_PER_K: f64 = 180.0;
/// Extra heat moved per kelvin the room is off its set temperature, W/K.
const PULL_W_PER_K: f64 = 600.0;
/// Heat moved per watt drawn.
const COP: f64 = 3.0;
/// Half the day's outdoor swing, K.
const OUTDOOR_SWING: f64 = 4.0;

/// One air conditioner.
#[derive(Debug, Clone)]
pub struct ElAircon {
    on: bool,
    mode: u8,
    set_temp: u8,
    room: f64,
    /// The day's mean outdoor temperature, °C.
    outdoor_mean: f64,
    /// Outdoors now: where the room drifts while the unit is off, °C.
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
            outdoor_mean: outdoor,
            outdoor,
            reported: None,
        }
    }

    /// The household runs the unit as it usually does: cooling at 25–28 °C
    /// where the days are warm, heating at 20–23 °C where they are cool.
    pub fn run_as_usual(&mut self, rng: &mut SimRng) {
        self.on = true;
        let step = rng.below(4) as u8;
        (self.mode, self.set_temp) = if self.outdoor_mean >= 22.0 {
            (MODE_COOL, 25 + step)
        } else {
            (MODE_HEAT, 20 + step)
        };
    }

    /// Electrical power the unit draws now, W: nothing while off.
    pub fn power_w(&self) -> f64 {
        if !self.on {
            return 0.0;
        }
        let set = f64::from(self.set_temp);
        let (leak_k, pull_k) = match self.mode {
            MODE_COOL => ((self.outdoor - set).max(0.0), (self.room - set).max(0.0)),
            MODE_HEAT => ((set - self.outdoor).max(0.0), (set - self.room).max(0.0)),
            MODE_AUTO => ((self.outdoor - set).abs(), (self.room - set).abs()),
            MODE_DRY => return DRY_W,
            _ => return FAN_W,
        };
        let heat = LEAK_W_PER_K * leak_k + PULL_W_PER_K * pull_k;
        (FAN_W + heat / COP).min(RATED_W)
    }

    /// The object this unit is.
    pub const EOJ: Eoj = Eoj::HOME_AIR_CONDITIONER;

    /// Advances by `dt_secs` to local time `hour`: the room approaches its
    /// target by a fraction per minute (a unit that cools when asked to heat
    /// changes nothing).
    pub fn step(&mut self, hour: f64, dt_secs: f64) {
        let day = std::f64::consts::TAU * (hour - 14.0) / 24.0;
        self.outdoor = self.outdoor_mean + OUTDOOR_SWING * day.cos();
        let target = match (self.on, self.mode) {
            (true, MODE_COOL) => self.outdoor.min(f64::from(self.set_temp)),
            (true, MODE_HEAT) => self.outdoor.max(f64::from(self.set_temp)),
            (true, MODE_AUTO | MODE_DRY) => f64::from(self.set_temp),
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
        ac.outdoor_mean = 33.0;
        ac.room = 33.0;
        ac.set(0x80, "30").unwrap();
        ac.set(0xB3, "18").unwrap();
        for _ in 0..120 {
            ac.step(14.0, 60.0);
        }
        assert_eq!(val(&ac, 0xBB), "18", "cooled to 24 °C");
        ac.set(0x80, "31").unwrap();
        for _ in 0..120 {
            ac.step(14.0, 60.0);
        }
        assert_eq!(
            val(&ac, 0xBB),
            "25",
            "back to 37 °C (14:00 on a 33 °C day) once off"
        );
    }

    /// Power drawn after an hour at `hour` on a day averaging `mean` °C.
    fn settled_w(ac: &mut ElAircon, mean: f64, hour: f64) -> f64 {
        ac.outdoor_mean = mean;
        for _ in 0..60 {
            ac.step(hour, 60.0);
        }
        ac.power_w()
    }

    #[test]
    fn an_idle_unit_draws_nothing_and_a_running_one_works_harder_in_the_heat() {
        let mut ac = unit();
        assert_eq!(settled_w(&mut ac, 30.0, 14.0), 0.0, "off");
        ac.set(0x80, "30").unwrap();
        let afternoon = settled_w(&mut ac, 30.0, 14.0);
        let night = settled_w(&mut ac, 30.0, 3.0);
        assert!(afternoon > night + 200.0, "{afternoon} W vs {night} W");
        assert!((300.0..1_500.0).contains(&afternoon), "{afternoon} W");
        let cool_day = settled_w(&mut ac, 20.0, 14.0);
        assert_eq!(cool_day, FAN_W, "nothing to cool: only the fan");
    }

    #[test]
    fn a_higher_setpoint_or_switching_off_draws_less_while_cooling() {
        let mut ac = unit();
        ac.set(0x80, "30").unwrap();
        ac.set(0xB3, "1a").unwrap();
        let at_26 = settled_w(&mut ac, 31.0, 15.0);
        ac.set(0xB3, "1c").unwrap();
        let just_raised = ac.power_w();
        let at_28 = settled_w(&mut ac, 31.0, 15.0);
        assert!(
            just_raised < at_26,
            "the room is below 28 °C: less work at once"
        );
        assert!(
            at_26 - at_28 > 80.0,
            "{at_26} W at 26 °C, {at_28} W at 28 °C"
        );
        ac.set(0x80, "31").unwrap();
        assert_eq!(ac.power_w(), 0.0);
    }

    #[test]
    fn heating_in_the_cold_draws_power_and_never_more_than_rated() {
        let mut ac = unit();
        ac.set(0x80, "30").unwrap();
        ac.set(0xB0, "43").unwrap();
        ac.set(0xB3, "16").unwrap();
        let heating = settled_w(&mut ac, 5.0, 6.0);
        assert!(heating > 500.0, "{heating} W");
        ac.room = -10.0;
        ac.set(0xB3, "1e").unwrap();
        assert_eq!(ac.power_w(), RATED_W);
        ac.set(0xB0, "44").unwrap();
        assert_eq!(ac.power_w(), DRY_W);
    }

    #[test]
    fn a_household_that_uses_its_unit_runs_it_for_its_climate() {
        let mut rng = SimRng::new(9);
        let mut warm = unit();
        warm.outdoor_mean = 29.0;
        warm.run_as_usual(&mut rng);
        assert_eq!(
            (val(&warm, 0x80).as_str(), val(&warm, 0xB0).as_str()),
            ("30", "42")
        );
        assert!((25..=28).contains(&warm.set_temp));
        let mut cool = unit();
        cool.outdoor_mean = 12.0;
        cool.run_as_usual(&mut rng);
        assert_eq!(val(&cool, 0xB0), "43");
        assert!((20..=23).contains(&cool.set_temp));
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
