//! How a low-voltage smart meter's (ECHONET Lite class 0x0288) cumulative
//! counts become energy: coefficient (EPC 0xD3), unit (0xE1) and effective
//! digits (0xD7, the counters wrap at `10^digits`).
//!
//! Energy is kept in whole tenths of a watt-hour ([`Energy`]): every unit the
//! class defines is a whole multiple of 0.0001 kWh, so sums are exact and only
//! the final division to kWh rounds.

/// EPC of the coefficient multiplying the cumulative counts.
pub const EPC_COEFFICIENT: i32 = 0xD3;
/// EPC of the number of effective digits of the cumulative counts.
pub const EPC_EFFECTIVE_DIGITS: i32 = 0xD7;
/// EPC of the cumulative energy unit code.
pub const EPC_UNIT: i32 = 0xE1;

/// Tenths of a watt-hour (0.0001 kWh) per kWh.
const UNITS_PER_KWH: u128 = 10_000;

/// An amount of energy, exact, in tenths of a watt-hour.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Energy(pub u128);

impl Energy {
    /// The amount in kWh (the one rounding step).
    pub fn kwh(self) -> f64 {
        self.0 as f64 / UNITS_PER_KWH as f64
    }
}

impl std::ops::Add for Energy {
    type Output = Energy;
    fn add(self, rhs: Energy) -> Energy {
        Energy(self.0.saturating_add(rhs.0))
    }
}

impl std::ops::AddAssign for Energy {
    fn add_assign(&mut self, rhs: Energy) {
        *self = *self + rhs;
    }
}

/// What one count of the cumulative counters is worth, and where they wrap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scale {
    /// 0xD3, 1 to 999,999; 1 when the meter does not implement it.
    pub coefficient: u32,
    /// 0xE1 unit code.
    pub unit: u8,
    /// 0xD7, 1 to 8; `None` if never reported (then no wrap is assumed).
    pub digits: Option<u8>,
}

/// Why a reported scale property cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScaleError {
    #[error("unit code {0:?} is not one ECHONET Lite defines for EPC 0xE1")]
    Unit(String),
    #[error("coefficient {0:?} is not 1 to 999999 (EPC 0xD3)")]
    Coefficient(String),
    #[error("effective digits {0:?} is not 1 to 8 (EPC 0xD7)")]
    Digits(String),
}

/// Tenths of a watt-hour per count for unit code `code` (EPC 0xE1):
/// 0x00 = 1 kWh, 0x01 = 0.1, 0x02 = 0.01, 0x03 = 0.001, 0x04 = 0.0001,
/// 0x0A = 10, 0x0B = 100, 0x0C = 1000, 0x0D = 10000 kWh.
pub fn unit_tenth_wh(code: u8) -> Option<u128> {
    Some(match code {
        0x00 => 10_000,
        0x01 => 1_000,
        0x02 => 100,
        0x03 => 10,
        0x04 => 1,
        0x0A => 100_000,
        0x0B => 1_000_000,
        0x0C => 10_000_000,
        0x0D => 100_000_000,
        _ => return None,
    })
}

impl Scale {
    /// The scale from the properties' reported values (decimal strings, as
    /// the Nature API carries them).
    pub fn from_reported(
        coefficient: Option<&str>,
        unit: &str,
        digits: Option<&str>,
    ) -> Result<Self, ScaleError> {
        let unit_code = unit
            .trim()
            .parse::<u8>()
            .ok()
            .filter(|c| unit_tenth_wh(*c).is_some())
            .ok_or_else(|| ScaleError::Unit(unit.to_string()))?;
        let coefficient = match coefficient {
            None => 1,
            Some(raw) => raw
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|c| (1..=999_999).contains(c))
                .ok_or_else(|| ScaleError::Coefficient(raw.to_string()))?,
        };
        let digits = digits
            .map(|raw| {
                raw.trim()
                    .parse::<u8>()
                    .ok()
                    .filter(|d| (1..=8).contains(d))
                    .ok_or_else(|| ScaleError::Digits(raw.to_string()))
            })
            .transpose()?;
        Ok(Self {
            coefficient,
            unit: unit_code,
            digits,
        })
    }

    /// Energy of one count.
    pub fn per_count(&self) -> Energy {
        // `unit` was checked when the scale was made.
        Energy(u128::from(self.coefficient) * unit_tenth_wh(self.unit).unwrap_or(0))
    }

    /// Where the counters wrap to zero: `10^digits`, if known.
    pub fn modulus(&self) -> Option<u64> {
        self.digits.map(|d| 10u64.pow(u32::from(d)))
    }

    /// Counts from `before` to `after`, across one wrap-around if the
    /// counter went down; `None` if it went down with no known modulus or a
    /// count is out of the counter's range.
    pub fn counts_between(&self, before: u64, after: u64) -> Option<u64> {
        match self.modulus() {
            Some(m) if before >= m || after >= m => None,
            Some(m) => Some((after + m - before) % m),
            None => after.checked_sub(before),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scale(coefficient: u32, unit: u8, digits: u8) -> Scale {
        Scale {
            coefficient,
            unit,
            digits: Some(digits),
        }
    }

    #[test]
    fn every_unit_code_the_class_defines_has_its_multiplier() {
        let kwh = |code| Energy(unit_tenth_wh(code).expect("defined")).kwh();
        let table = [
            (0x00, 1.0),
            (0x01, 0.1),
            (0x02, 0.01),
            (0x03, 0.001),
            (0x04, 0.0001),
            (0x0A, 10.0),
            (0x0B, 100.0),
            (0x0C, 1000.0),
            (0x0D, 10_000.0),
        ];
        for (code, want) in table {
            assert_eq!(kwh(code), want, "unit code {code:#04x}");
        }
        for undefined in [0x05, 0x09, 0x0E, 0xFF] {
            assert_eq!(unit_tenth_wh(undefined), None, "{undefined:#04x}");
        }
    }

    #[test]
    fn the_coefficient_multiplies_the_unit() {
        assert_eq!(scale(1, 0x01, 6).per_count().kwh(), 0.1);
        assert_eq!(scale(40, 0x02, 6).per_count().kwh(), 0.4);
        assert_eq!(scale(3, 0x0A, 6).per_count().kwh(), 30.0);
        assert_eq!(scale(999_999, 0x0D, 8).per_count().kwh(), 9_999_990_000.0);
    }

    #[test]
    fn reported_values_are_decimal_strings_and_the_coefficient_defaults_to_one() {
        let s = Scale::from_reported(None, "1", Some("6")).expect("valid");
        assert_eq!(s, scale(1, 0x01, 6));
        let s = Scale::from_reported(Some("10"), "10", Some("8")).expect("valid");
        assert_eq!(s, scale(10, 0x0A, 8));
        assert_eq!(
            Scale::from_reported(None, "0", None).map(|s| s.modulus()),
            Ok(None)
        );
    }

    #[test]
    fn scale_values_outside_the_class_are_refused() {
        assert!(matches!(
            Scale::from_reported(None, "5", Some("6")),
            Err(ScaleError::Unit(_))
        ));
        assert!(matches!(
            Scale::from_reported(None, "x", Some("6")),
            Err(ScaleError::Unit(_))
        ));
        assert!(matches!(
            Scale::from_reported(Some("0"), "1", Some("6")),
            Err(ScaleError::Coefficient(_))
        ));
        assert!(matches!(
            Scale::from_reported(Some("1000000"), "1", Some("6")),
            Err(ScaleError::Coefficient(_))
        ));
        for d in ["0", "9", "-1"] {
            assert!(matches!(
                Scale::from_reported(None, "1", Some(d)),
                Err(ScaleError::Digits(_))
            ));
        }
    }

    #[test]
    fn counters_wrap_at_ten_to_the_effective_digits() {
        let s = scale(1, 0x01, 6);
        assert_eq!(s.modulus(), Some(1_000_000));
        assert_eq!(s.counts_between(10, 25), Some(15));
        assert_eq!(s.counts_between(999_990, 5), Some(15));
        assert_eq!(s.counts_between(999_999, 0), Some(1));
        assert_eq!(s.counts_between(7, 7), Some(0));
        // A value the counter cannot hold is not a reading of it.
        assert_eq!(s.counts_between(1_000_000, 5), None);
        assert_eq!(s.counts_between(5, 1_000_000), None);
        let one_digit = scale(1, 0x00, 1);
        assert_eq!(one_digit.counts_between(9, 2), Some(3));
    }

    #[test]
    fn without_effective_digits_a_counter_that_goes_down_is_not_a_wrap() {
        let s = Scale {
            coefficient: 1,
            unit: 0x01,
            digits: None,
        };
        assert_eq!(s.counts_between(10, 12), Some(2));
        assert_eq!(s.counts_between(12, 10), None);
    }

    #[test]
    fn energy_sums_exactly_in_tenths_of_a_watt_hour() {
        let tenth = scale(1, 0x01, 6).per_count();
        let mut sum = Energy::default();
        for _ in 0..3 {
            sum += tenth;
        }
        assert_eq!(sum.kwh(), 0.3, "no 0.30000000000000004");
    }
}
