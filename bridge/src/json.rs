//! Small JSON helpers shared by the views: Nature's timestamp format.

use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

/// Nature's timestamps: RFC 3339 in UTC with whole seconds, e.g. `2024-05-01T09:30:00Z`.
pub fn rfc3339(t: OffsetDateTime) -> String {
    let t = t.to_offset(UtcOffset::UTC);
    let t = t.replace_nanosecond(0).unwrap_or(t);
    // Formatting a UTC time of a valid year as RFC 3339 cannot fail; fall back
    // to the Debug form rather than panic if it ever does.
    t.format(&Rfc3339).unwrap_or_else(|_| format!("{t:?}"))
}

/// A number as Nature renders it: whole values as JSON integers (`0`, not
/// `0.0`). Widely used Go clients decode offsets into `int64` and fail on `0.0`.
pub fn number(v: f64) -> Value {
    // Whole and well inside i64's range, so the cast is exact.
    if v.fract() == 0.0 && v.abs() < 9.0e15 {
        Value::from(v as i64)
    } else {
        Value::from(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_numbers_render_as_integers() {
        assert_eq!(number(0.0).to_string(), "0");
        assert_eq!(number(-2.0).to_string(), "-2");
        assert_eq!(number(1.5).to_string(), "1.5");
    }

    #[test]
    fn timestamps_are_utc_with_whole_seconds() {
        let t = time::macros::datetime!(2024-05-01 18:30:00.123 +09:00);
        assert_eq!(rfc3339(t), "2024-05-01T09:30:00Z");
    }
}
