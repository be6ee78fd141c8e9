//! Wall-clock vocabulary for rules: `HH:MM` times, weekdays and IANA time zones,
//! and the two calendar questions the evaluator asks (the latest scheduled instant
//! at or before now; whether now falls in a daily window).
//!
//! All zone arithmetic goes through jiff's bundled tz database so results do not
//! depend on the host's `/usr/share/zoneinfo`. Nothing here reads the system clock.

use std::fmt;

use jiff::civil::{Date, Weekday as JiffWeekday};
use jiff::tz::TimeZone;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// A wall-clock minute, written `HH:MM` (24-hour) in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct LocalTime {
    hour: u8,
    minute: u8,
}

impl LocalTime {
    /// A validated time; `None` when `hour > 23` or `minute > 59`.
    pub fn new(hour: u8, minute: u8) -> Option<Self> {
        (hour < 24 && minute < 60).then_some(Self { hour, minute })
    }

    /// Hour of the day, 0–23.
    pub fn hour(self) -> u8 {
        self.hour
    }

    /// Minute of the hour, 0–59.
    pub fn minute(self) -> u8 {
        self.minute
    }

    fn minute_of_day(self) -> u16 {
        u16::from(self.hour) * 60 + u16::from(self.minute)
    }
}

impl TryFrom<String> for LocalTime {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        let bad_shape = || format!("must be HH:MM (24-hour), got {s:?}");
        let (h, m) = s.split_once(':').ok_or_else(bad_shape)?;
        let two_digits = |p: &str| p.len() == 2 && p.bytes().all(|b| b.is_ascii_digit());
        if !two_digits(h) || !two_digits(m) {
            return Err(bad_shape());
        }
        let (hour, minute) = (
            h.parse().map_err(|_| bad_shape())?,
            m.parse().map_err(|_| bad_shape())?,
        );
        Self::new(hour, minute).ok_or_else(|| format!("{s} is out of range (00:00 to 23:59)"))
    }
}

impl From<LocalTime> for String {
    fn from(t: LocalTime) -> String {
        t.to_string()
    }
}

impl fmt::Display for LocalTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.hour, self.minute)
    }
}

/// A day of the week, written `mon` … `sun` in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Weekday {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

impl Weekday {
    /// Every day, Monday first.
    pub const ALL: [Weekday; 7] = [
        Self::Mon,
        Self::Tue,
        Self::Wed,
        Self::Thu,
        Self::Fri,
        Self::Sat,
        Self::Sun,
    ];

    fn of(date: Date) -> Self {
        match date.weekday() {
            JiffWeekday::Monday => Self::Mon,
            JiffWeekday::Tuesday => Self::Tue,
            JiffWeekday::Wednesday => Self::Wed,
            JiffWeekday::Thursday => Self::Thu,
            JiffWeekday::Friday => Self::Fri,
            JiffWeekday::Saturday => Self::Sat,
            JiffWeekday::Sunday => Self::Sun,
        }
    }
}

impl fmt::Display for Weekday {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Self::Mon => "mon",
            Self::Tue => "tue",
            Self::Wed => "wed",
            Self::Thu => "thu",
            Self::Fri => "fri",
            Self::Sat => "sat",
            Self::Sun => "sun",
        };
        f.write_str(name)
    }
}

/// An IANA time zone name (`Asia/Tokyo`), checked against the bundled database
/// when parsed.
#[derive(Clone, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Zone {
    name: String,
    tz: TimeZone,
}

impl Zone {
    /// Looks `name` up in the bundled tz database.
    pub fn parse(name: &str) -> Result<Self, String> {
        jiff::tz::db()
            .get(name)
            .map(|tz| Self {
                name: name.to_owned(),
                tz,
            })
            .map_err(|_| format!("is not a known IANA time zone: {name:?}"))
    }

    /// The name as given.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl TryFrom<String> for Zone {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(&s)
    }
}

impl From<Zone> for String {
    fn from(z: Zone) -> String {
        z.name
    }
}

impl PartialEq for Zone {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl fmt::Debug for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Zone({})", self.name)
    }
}

fn to_jiff(at: OffsetDateTime) -> Timestamp {
    let nanos = at.unix_timestamp_nanos();
    // Every OffsetDateTime with the default `time` range fits jiff's range
    // (years -9999..=9999); fall back to the epoch rather than panic.
    Timestamp::from_nanosecond(nanos).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn from_jiff(ts: Timestamp) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(ts.as_nanosecond())
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// The latest instant at or before `at` whose local time in `zone` is `time` on
/// one of `days`. A local time skipped by a DST jump maps to the instant after the
/// jump; a repeated local time maps to its first occurrence only.
pub fn latest_occurrence(
    at: OffsetDateTime,
    zone: &Zone,
    days: &[Weekday],
    time: LocalTime,
) -> Option<OffsetDateTime> {
    let now = to_jiff(at);
    let mut date = now.to_zoned(zone.tz.clone()).date();
    // Eight days back always covers a full week plus today.
    for _ in 0..8 {
        if days.contains(&Weekday::of(date)) {
            let local = date.at(time.hour as i8, time.minute as i8, 0, 0);
            if let Ok(zoned) = local.to_zoned(zone.tz.clone()) {
                if zoned.timestamp() <= now {
                    return Some(from_jiff(zoned.timestamp()));
                }
            }
        }
        date = date.yesterday().ok()?;
    }
    None
}

/// Whether `at`, read in `zone`, falls in the daily window `[from, to)`. A window
/// with `to < from` wraps past midnight; `days` (empty = every day) names the day
/// the window opens on.
pub fn in_window(
    at: OffsetDateTime,
    zone: &Zone,
    days: &[Weekday],
    from: LocalTime,
    to: LocalTime,
) -> bool {
    let local = to_jiff(at).to_zoned(zone.tz.clone());
    let minute = local.hour() as u16 * 60 + local.minute() as u16;
    let (start, end) = (from.minute_of_day(), to.minute_of_day());
    let opened_on = if start <= end {
        if !(start..end).contains(&minute) {
            return false;
        }
        local.date()
    } else if minute >= start {
        local.date()
    } else if minute < end {
        match local.date().yesterday() {
            Ok(d) => d,
            Err(_) => return false,
        }
    } else {
        return false;
    };
    days.is_empty() || days.contains(&Weekday::of(opened_on))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_time_parses_only_two_digit_hours_and_minutes() {
        assert_eq!(
            LocalTime::try_from("07:05".to_owned()),
            Ok(LocalTime { hour: 7, minute: 5 })
        );
        for bad in ["7:05", "07:5", "0705", "07:05:00", "aa:bb", "-1:00"] {
            assert!(LocalTime::try_from(bad.to_owned()).is_err(), "{bad}");
        }
        let err = LocalTime::try_from("24:00".to_owned()).expect_err("out of range");
        assert!(err.contains("out of range"), "{err}");
    }

    #[test]
    fn zone_rejects_unknown_names() {
        assert!(Zone::parse("Asia/Tokyo").is_ok());
        assert!(Zone::parse("Mars/Olympus_Mons").is_err());
    }
}
