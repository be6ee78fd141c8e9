//! The IR hub's environment sensors: temperature, humidity, illuminance, motion.
//!
//! A pure model of one room: given the local time of day, the time step and what
//! the appliances are doing, it produces the next readings. No I/O, no clock: the
//! caller supplies time, so tests can walk a whole day in microseconds.

use super::rng::SimRng;

/// One set of readings, rounded the way a real hub reports them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SensorReadings {
    /// °C, one decimal.
    pub temperature: f64,
    /// Relative humidity, %, integer.
    pub humidity: f64,
    /// Illuminance in the hub's arbitrary units, one decimal, never negative.
    pub illuminance: f64,
    /// Whether motion was detected during the step.
    pub motion: bool,
}

/// What the appliances contribute to the room.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RoomInfluence {
    /// The air conditioner's set point while it runs in a heating or cooling mode.
    pub ac_setpoint: Option<f64>,
    /// Whether the ceiling light is on.
    pub light_on: bool,
}

/// Per-room parameters drawn once, so homes differ from each other.
#[derive(Debug, Clone)]
pub struct HubSensors {
    rng: SimRng,
    /// Daily mean temperature, °C.
    mean_temp: f64,
    /// Half the day–night swing, °C.
    swing: f64,
    mean_humidity: f64,
    /// Peak daylight reaching the hub.
    daylight_peak: f64,
    lamp_level: f64,
    /// Slowly wandering noise (AR(1)) so consecutive readings correlate.
    drift: f64,
    /// How far the air conditioner has pulled the room away from its natural curve.
    ac_pull: f64,
}

/// Sensor limits of the hub hardware; readings are clamped to them.
pub const TEMPERATURE_RANGE: (f64, f64) = (-10.0, 50.0);
/// Relative humidity limits, %.
pub const HUMIDITY_RANGE: (f64, f64) = (5.0, 95.0);
/// Illuminance limits.
pub const ILLUMINANCE_RANGE: (f64, f64) = (0.0, 500.0);

impl HubSensors {
    /// A room with parameters drawn from `rng`.
    pub fn new(mut rng: SimRng) -> Self {
        Self {
            mean_temp: rng.range(19.0, 26.0),
            swing: rng.range(1.5, 4.0),
            mean_humidity: rng.range(40.0, 60.0),
            daylight_peak: rng.range(80.0, 250.0),
            lamp_level: rng.range(40.0, 90.0),
            drift: 0.0,
            ac_pull: 0.0,
            rng,
        }
    }

    /// Advances the room by `dt_secs` to local time `hour` (0.0–24.0) and reads it.
    pub fn step(&mut self, hour: f64, dt_secs: f64, influence: RoomInfluence) -> SensorReadings {
        let dt = dt_secs.max(0.0);
        // Warmest mid-afternoon, coolest before dawn.
        let daily = self.swing * (std::f64::consts::TAU * (hour - 15.0) / 24.0).cos();
        let natural = self.mean_temp + daily;

        // AR(1) drift with a ~20 minute memory.
        let keep = (-dt / 1200.0).exp();
        self.drift = self.drift * keep + (1.0 - keep * keep).sqrt() * 0.4 * self.rng.normal();

        // The AC pulls the room towards its set point over ~10 minutes; off, the
        // room relaxes back to its natural curve.
        let target_pull = influence.ac_setpoint.map_or(0.0, |sp| sp - natural);
        let relax = 1.0 - (-dt / 600.0).exp();
        self.ac_pull += (target_pull - self.ac_pull) * relax;

        let temperature = natural + self.drift + self.ac_pull + 0.05 * self.rng.normal();
        // Warmer air holds more water: relative humidity falls as temperature rises.
        let humidity =
            self.mean_humidity - 2.5 * (temperature - self.mean_temp) + 1.5 * self.rng.normal();
        let illuminance = self.daylight(hour)
            + if influence.light_on {
                self.lamp_level
            } else {
                0.0
            }
            + 0.5 * self.rng.normal();
        let motion = self
            .rng
            .poisson_fires(motion_rate_per_hour(hour) / 3600.0, dt);

        SensorReadings {
            temperature: round_to(clamp(temperature, TEMPERATURE_RANGE), 1),
            humidity: round_to(clamp(humidity, HUMIDITY_RANGE), 0),
            illuminance: round_to(clamp(illuminance, ILLUMINANCE_RANGE), 1),
            motion,
        }
    }

    fn daylight(&self, hour: f64) -> f64 {
        if (6.0..18.0).contains(&hour) {
            self.daylight_peak * (std::f64::consts::PI * (hour - 6.0) / 12.0).sin()
        } else {
            0.0
        }
    }
}

/// People move about in the morning and evening, less by day, rarely at night.
fn motion_rate_per_hour(hour: f64) -> f64 {
    match hour {
        h if (6.5..9.0).contains(&h) => 20.0,
        h if (9.0..17.0).contains(&h) => 4.0,
        h if (17.0..23.0).contains(&h) => 15.0,
        _ => 0.5,
    }
}

fn clamp(v: f64, (lo, hi): (f64, f64)) -> f64 {
    v.clamp(lo, hi)
}

fn round_to(v: f64, decimals: i32) -> f64 {
    let f = 10f64.powi(decimals);
    (v * f).round() / f
}

#[cfg(test)]
mod tests {
    use super::*;

    fn walk_day(seed: u64, influence: RoomInfluence) -> Vec<(f64, SensorReadings)> {
        let mut room = HubSensors::new(SimRng::new(seed));
        (0..24 * 60)
            .map(|minute| {
                let hour = minute as f64 / 60.0;
                (hour, room.step(hour, 60.0, influence))
            })
            .collect()
    }

    #[test]
    fn readings_stay_within_the_hardware_ranges_for_many_homes() {
        for seed in 0..50 {
            for (_, r) in walk_day(seed, RoomInfluence::default()) {
                assert!((TEMPERATURE_RANGE.0..=TEMPERATURE_RANGE.1).contains(&r.temperature));
                assert!((HUMIDITY_RANGE.0..=HUMIDITY_RANGE.1).contains(&r.humidity));
                assert!((ILLUMINANCE_RANGE.0..=ILLUMINANCE_RANGE.1).contains(&r.illuminance));
                assert!((12.0..35.0).contains(&r.temperature), "implausible {r:?}");
            }
        }
    }

    #[test]
    fn afternoons_are_warmer_than_nights_and_drier() {
        let day = walk_day(3, RoomInfluence::default());
        let avg = |from: f64, to: f64, f: fn(&SensorReadings) -> f64| {
            let xs: Vec<f64> = day
                .iter()
                .filter(|(h, _)| (from..to).contains(h))
                .map(|(_, r)| f(r))
                .collect();
            xs.iter().sum::<f64>() / xs.len() as f64
        };
        let afternoon_t = avg(14.0, 16.0, |r| r.temperature);
        let night_t = avg(2.0, 4.0, |r| r.temperature);
        assert!(afternoon_t > night_t + 1.0, "{afternoon_t} vs {night_t}");
        let afternoon_h = avg(14.0, 16.0, |r| r.humidity);
        let night_h = avg(2.0, 4.0, |r| r.humidity);
        assert!(afternoon_h < night_h, "humidity must fall as it warms");
    }

    #[test]
    fn it_is_dark_at_night_and_bright_at_noon_unless_the_light_is_on() {
        let day = walk_day(5, RoomInfluence::default());
        let at = |h: f64| {
            day.iter()
                .find(|(x, _)| *x >= h)
                .map(|(_, r)| r.illuminance)
        };
        assert!(at(2.0).expect("2am") < 3.0);
        assert!(at(12.0).expect("noon") > 50.0);
        let lit = walk_day(
            5,
            RoomInfluence {
                light_on: true,
                ac_setpoint: None,
            },
        );
        let night_lit = lit
            .iter()
            .find(|(x, _)| *x >= 2.0)
            .map(|(_, r)| r.illuminance);
        assert!(night_lit.expect("2am") > 30.0);
    }

    #[test]
    fn motion_is_an_occasional_event_more_common_in_the_evening() {
        let mut evening = 0;
        let mut night = 0;
        for seed in 0..20 {
            for (h, r) in walk_day(seed, RoomInfluence::default()) {
                if r.motion && (18.0..20.0).contains(&h) {
                    evening += 1;
                }
                if r.motion && (2.0..4.0).contains(&h) {
                    night += 1;
                }
            }
        }
        assert!(evening > night * 3, "evening {evening}, night {night}");
        assert!(evening < 20 * 120, "motion must not fire every minute");
    }

    #[test]
    fn a_running_air_conditioner_pulls_the_room_to_its_set_point() {
        let mut room = HubSensors::new(SimRng::new(9));
        let cool = RoomInfluence {
            ac_setpoint: Some(18.0),
            light_on: false,
        };
        let mut last = room.step(14.0, 60.0, cool);
        for minute in 0..90 {
            last = room.step(14.0 + minute as f64 / 60.0, 60.0, cool);
        }
        assert!((last.temperature - 18.0).abs() < 1.5, "{last:?}");
    }

    #[test]
    fn the_same_seed_walks_the_same_day() {
        assert_eq!(
            walk_day(11, RoomInfluence::default()),
            walk_day(11, RoomInfluence::default())
        );
    }
}
