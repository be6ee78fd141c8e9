//! The smart-meter gateway: a household's load curve and its meter's ECHONET Lite
//! properties.
//!
//! Instantaneous power (EPC 0xE7, W, signed: negative while exporting), cumulative
//! energy bought (0xE0) and sold (0xE3) as integer counts, with the coefficient
//! (0xD3) and unit (0xE1) that turn counts into kWh. Counters never go backwards.
//! The load is the household's own (base, morning and evening peaks, bursts of
//! a kettle or dryer) plus what its controllable appliances draw, which the
//! caller passes in: a commanded air conditioner changes the meter.

use super::rng::SimRng;

/// EPC of measured instantaneous electric power (W).
pub const EPC_INSTANTANEOUS_POWER: u8 = 0xE7;
/// EPC of normal-direction (bought) cumulative energy.
pub const EPC_CUMULATIVE_BOUGHT: u8 = 0xE0;
/// EPC of reverse-direction (sold) cumulative energy.
pub const EPC_CUMULATIVE_SOLD: u8 = 0xE3;
/// EPC of the coefficient multiplying the cumulative counts.
pub const EPC_COEFFICIENT: u8 = 0xD3;
/// EPC of the cumulative energy unit code.
pub const EPC_UNIT: u8 = 0xE1;
/// EPC of the number of effective digits of the cumulative counts.
pub const EPC_EFFECTIVE_DIGITS: u8 = 0xD7;

/// Unit code 0x01: one count is 0.1 kWh.
const UNIT_CODE: u8 = 0x01;
const KWH_PER_COUNT: f64 = 0.1;
const COEFFICIENT: u32 = 1;
const EFFECTIVE_DIGITS: u32 = 6;

/// One reading of the meter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MeterReading {
    /// Net power now, W; positive while buying, negative while selling.
    pub instantaneous_w: i64,
    /// Cumulative bought energy, counts of `unit`.
    pub bought_count: u64,
    /// Cumulative sold energy, counts of `unit`.
    pub sold_count: u64,
    /// Coefficient (0xD3).
    pub coefficient: u32,
    /// Unit code (0xE1).
    pub unit: u8,
    /// Effective digits (0xD7); counts wrap at `10^digits`.
    pub effective_digits: u32,
}

/// One household behind a smart meter.
#[derive(Debug, Clone)]
pub struct SmartMeter {
    rng: SimRng,
    /// Always-on load (fridge, standby), W.
    base_w: f64,
    /// Extra load at the evening peak, W.
    evening_w: f64,
    /// Rooftop solar peak output, W; zero for most homes.
    solar_peak_w: f64,
    /// A running high-power appliance (kettle, dryer): watts and seconds left.
    burst: Option<(f64, f64)>,
    bought_kwh: f64,
    sold_kwh: f64,
}

impl SmartMeter {
    /// A household with parameters drawn from `rng`; about a third have solar.
    pub fn new(mut rng: SimRng) -> Self {
        let solar_peak_w = if rng.chance(0.3) {
            rng.range(2500.0, 5000.0)
        } else {
            0.0
        };
        Self {
            base_w: rng.range(150.0, 400.0),
            evening_w: rng.range(600.0, 1800.0),
            solar_peak_w,
            burst: None,
            // Meters in the field have history.
            bought_kwh: rng.range(1000.0, 20_000.0),
            sold_kwh: if solar_peak_w > 0.0 {
                rng.range(500.0, 8000.0)
            } else {
                0.0
            },
            rng,
        }
    }

    /// Advances by `dt_secs` to local time `hour`, with appliances drawing
    /// `appliance_w` on top of the household's own load, and reads the meter.
    pub fn step(&mut self, hour: f64, dt_secs: f64, appliance_w: f64) -> MeterReading {
        let dt = dt_secs.max(0.0);
        let load = self.load_w(hour, dt) + appliance_w.max(0.0);
        let net = load - self.solar_w(hour);
        let kwh = net.abs() * dt / 3600.0 / 1000.0;
        if net >= 0.0 {
            self.bought_kwh += kwh;
        } else {
            self.sold_kwh += kwh;
        }
        MeterReading {
            instantaneous_w: net.round() as i64,
            bought_count: to_count(self.bought_kwh),
            sold_count: to_count(self.sold_kwh),
            coefficient: COEFFICIENT,
            unit: UNIT_CODE,
            effective_digits: EFFECTIVE_DIGITS,
        }
    }

    /// Energy bought and sold so far, kWh (what the counters count).
    pub fn totals_kwh(&self) -> (f64, f64) {
        (self.bought_kwh, self.sold_kwh)
    }

    /// Takes `bought` and `sold` kWh off the totals (not below zero): a
    /// meter that will have counted them by the time it reaches today.
    pub fn rewind(&mut self, bought: f64, sold: f64) {
        self.bought_kwh = (self.bought_kwh - bought).max(0.0);
        self.sold_kwh = (self.sold_kwh - sold).max(0.0);
    }

    /// Whether this home exports power at times.
    pub fn has_solar(&self) -> bool {
        self.solar_peak_w > 0.0
    }

    fn load_w(&mut self, hour: f64, dt: f64) -> f64 {
        let morning = bump(hour, 7.5, 1.0) * 0.5 * self.evening_w;
        let evening = bump(hour, 19.5, 2.0) * self.evening_w;
        if self.burst.is_none() && self.rng.poisson_fires(2.0 / 3600.0, dt) {
            self.burst = Some((self.rng.range(800.0, 1500.0), self.rng.range(60.0, 900.0)));
        }
        let burst = match self.burst.as_mut() {
            Some((w, left)) => {
                let w = *w;
                *left -= dt;
                if *left <= 0.0 {
                    self.burst = None;
                }
                w
            }
            None => 0.0,
        };
        let noise = 0.05 * self.base_w * self.rng.normal();
        (self.base_w + morning + evening + burst + noise).max(30.0)
    }

    fn solar_w(&mut self, hour: f64) -> f64 {
        if self.solar_peak_w <= 0.0 || !(6.0..18.0).contains(&hour) {
            return 0.0;
        }
        let clouds = self.rng.range(0.6, 1.0);
        self.solar_peak_w * (std::f64::consts::PI * (hour - 6.0) / 12.0).sin() * clouds
    }
}

/// A smooth bump of height 1 centred at `centre` with width `sigma` hours.
fn bump(hour: f64, centre: f64, sigma: f64) -> f64 {
    let d = hour - centre;
    (-(d * d) / (2.0 * sigma * sigma)).exp()
}

fn to_count(kwh: f64) -> u64 {
    let wrap = 10u64.pow(EFFECTIVE_DIGITS);
    ((kwh / KWH_PER_COUNT).floor() as u64) % wrap
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day_of(meter: &mut SmartMeter) -> Vec<(f64, MeterReading)> {
        (0..24 * 60)
            .map(|m| {
                let h = m as f64 / 60.0;
                (h, meter.step(h, 60.0, 0.0))
            })
            .collect()
    }

    #[test]
    fn cumulative_counters_never_go_backwards() {
        for seed in 0..30 {
            let mut meter = SmartMeter::new(SimRng::new(seed));
            let mut prev = meter.step(0.0, 0.0, 0.0);
            for (_, r) in day_of(&mut meter) {
                assert!(r.bought_count >= prev.bought_count);
                assert!(r.sold_count >= prev.sold_count);
                prev = r;
            }
        }
    }

    #[test]
    fn evening_draws_more_than_the_small_hours() {
        let mut meter = SmartMeter::new(SimRng::new(4));
        let day = day_of(&mut meter);
        let mean = |a: f64, b: f64| {
            let v: Vec<f64> = day
                .iter()
                .filter(|(h, _)| (a..b).contains(h))
                .map(|(_, r)| r.instantaneous_w as f64)
                .collect();
            v.iter().sum::<f64>() / v.len() as f64
        };
        assert!(mean(19.0, 20.0) > mean(3.0, 4.0) + 300.0);
        assert!(mean(3.0, 4.0) > 0.0, "a house at night still draws power");
    }

    #[test]
    fn homes_with_solar_sell_at_noon_and_others_never_do() {
        let mut sold_any = false;
        for seed in 0..40 {
            let mut meter = SmartMeter::new(SimRng::new(seed));
            let solar = meter.has_solar();
            let day = day_of(&mut meter);
            let first = day.first().map(|(_, r)| r.sold_count);
            let last = day.last().map(|(_, r)| r.sold_count);
            if solar {
                sold_any |= last > first;
            } else {
                assert_eq!(first, last, "no solar, nothing sold");
                assert!(day.iter().all(|(_, r)| r.instantaneous_w > 0));
            }
        }
        assert!(sold_any, "some solar home must export on a sunny day");
    }

    #[test]
    fn appliance_power_adds_to_the_load_and_the_counter() {
        let seed = (0..).find(|s| !SmartMeter::new(SimRng::new(*s)).has_solar());
        let seed = seed.unwrap_or_default();
        let (mut plain, mut with_ac) = (
            SmartMeter::new(SimRng::new(seed)),
            SmartMeter::new(SimRng::new(seed)),
        );
        let (mut a, mut b) = (plain.step(14.0, 0.0, 0.0), with_ac.step(14.0, 0.0, 0.0));
        for m in 0..120 {
            let h = 14.0 + m as f64 / 60.0;
            a = plain.step(h, 60.0, 0.0);
            b = with_ac.step(h, 60.0, 600.0);
            assert_eq!(b.instantaneous_w - a.instantaneous_w, 600);
        }
        // 600 W for two hours: 1.2 kWh, 12 counts give or take one.
        let more = b.bought_count as i64 - a.bought_count as i64;
        assert!((11..=13).contains(&more), "{more} counts");
    }

    #[test]
    fn a_day_uses_a_plausible_amount_of_energy() {
        let mut meter = SmartMeter::new(SimRng::new(8));
        let start = meter.step(0.0, 0.0, 0.0).bought_count;
        let end = day_of(&mut meter)
            .last()
            .map(|(_, r)| r.bought_count)
            .unwrap_or(0);
        let kwh = (end - start) as f64 * KWH_PER_COUNT;
        assert!((2.0..40.0).contains(&kwh), "{kwh} kWh in a day");
    }
}
