//! The baseline of an event's results: what a home would have used in the
//! event's half hours without the event, from its own meter. Pure: the
//! caller reads the meter (`crate::energy`) and hands over kWh per slot.
//!
//! Method: "High 4 of 5", as Japan's ERAB guideline describes for household
//! resources, without its same-day adjustment. The candidates are the days
//! before the event day (on the home's clock) of the same kind — working
//! days for an event on a working day; Saturdays, Sundays and Japan's public
//! holidays ([`super::holidays`]) for one on a day off — that had no event of the
//! same program and whose meter covers every one of the event's half hours
//! at the same clock times (no gap). The 5 most recent such days, looking
//! back at most [`LOOKBACK_DAYS`], are taken; of those the 4 with the most
//! energy over the window; the baseline of each half hour is their mean in
//! it. Fewer than 5 such days: no baseline.

use time::{Date, Weekday};

/// How far back candidate days are looked for.
pub const LOOKBACK_DAYS: i64 = 30;
/// Candidate days taken.
pub const DAYS: usize = 5;
/// Of those, the days with the most energy averaged.
pub const HIGHEST: usize = 4;

/// One candidate day: its date and kWh in each of the event's half hours
/// (at the same clock times), `None` where the meter has a gap.
#[derive(Debug, Clone, PartialEq)]
pub struct Day {
    pub date: Date,
    pub kwh: Vec<Option<f64>>,
}

/// A baseline: kWh per half hour and the days it was made of.
#[derive(Debug, Clone, PartialEq)]
pub struct Baseline {
    pub kwh: Vec<f64>,
    pub days: Vec<Date>,
}

/// A Saturday, a Sunday or a public holiday.
fn is_day_off(d: Date) -> bool {
    matches!(d.weekday(), Weekday::Saturday | Weekday::Sunday) || super::holidays::is_holiday(d)
}

/// The High 4 of 5 baseline of an event on `event_day` from `candidates`
/// (any order), leaving out `excluded` days (other events of the program).
pub fn high_4_of_5(event_day: Date, candidates: &[Day], excluded: &[Date]) -> Option<Baseline> {
    let mut eligible: Vec<(Date, Vec<f64>)> = candidates
        .iter()
        .filter(|d| d.date < event_day && is_day_off(d.date) == is_day_off(event_day))
        .filter(|d| (event_day - d.date).whole_days() <= LOOKBACK_DAYS)
        .filter(|d| !excluded.contains(&d.date))
        .filter_map(|d| {
            let kwh: Option<Vec<f64>> = d.kwh.iter().copied().collect();
            kwh.filter(|k| !k.is_empty()).map(|k| (d.date, k))
        })
        .collect();
    eligible.sort_by_key(|d| std::cmp::Reverse(d.0));
    eligible.truncate(DAYS);
    if eligible.len() < DAYS {
        return None;
    }
    let total = |k: &[f64]| k.iter().sum::<f64>();
    // Most energy first; on a tie the more recent day.
    eligible.sort_by(|a, b| total(&b.1).total_cmp(&total(&a.1)).then(b.0.cmp(&a.0)));
    eligible.truncate(HIGHEST);
    let slots = eligible[0].1.len();
    let kwh = (0..slots)
        .map(|i| eligible.iter().map(|(_, k)| k[i]).sum::<f64>() / HIGHEST as f64)
        .collect();
    let mut days: Vec<Date> = eligible.iter().map(|(d, _)| *d).collect();
    days.sort();
    Some(Baseline { kwh, days })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use time::macros::date;

    fn day(date: Date, kwh: &[f64]) -> Day {
        Day {
            date,
            kwh: kwh.iter().map(|k| Some(*k)).collect(),
        }
    }

    // 2026-07-10 is a Friday.
    const EVENT: Date = date!(2026 - 07 - 10);

    #[test]
    fn the_lowest_of_the_five_most_recent_weekdays_is_dropped() {
        let days = [
            day(date!(2026 - 07 - 09), &[1.0, 1.0]),
            day(date!(2026 - 07 - 08), &[0.2, 0.2]), // the lowest: dropped
            day(date!(2026 - 07 - 07), &[2.0, 0.0]),
            day(date!(2026 - 07 - 06), &[0.5, 0.5]),
            day(date!(2026 - 07 - 03), &[1.5, 0.5]),
            day(date!(2026 - 07 - 02), &[9.0, 9.0]), // the sixth: too old
            day(date!(2026 - 07 - 05), &[9.0, 9.0]), // a Sunday
            day(date!(2026 - 07 - 04), &[9.0, 9.0]), // a Saturday
        ];
        let b = high_4_of_5(EVENT, &days, &[]).unwrap();
        assert_eq!(
            b.kwh,
            vec![(1.0 + 2.0 + 0.5 + 1.5) / 4.0, (1.0 + 0.0 + 0.5 + 0.5) / 4.0]
        );
        assert_eq!(
            b.days,
            vec![
                date!(2026 - 07 - 03),
                date!(2026 - 07 - 06),
                date!(2026 - 07 - 07),
                date!(2026 - 07 - 09)
            ]
        );
    }

    #[test]
    fn days_with_gaps_or_events_are_passed_over_and_too_few_give_none() {
        let mut days: Vec<Day> = (1..=7)
            .map(|k| day(EVENT - time::Duration::days(k), &[1.0]))
            .collect();
        // Weekdays among them: 9, 8, 7, 6, 3 July. A gap on the 9th and an
        // event on the 8th leave three.
        days[0].kwh = vec![None];
        let excluded = [date!(2026 - 07 - 08)];
        assert_eq!(high_4_of_5(EVENT, &days, &excluded), None);
        // Two more weekdays further back make five.
        days.push(day(date!(2026 - 07 - 02), &[3.0]));
        assert_eq!(high_4_of_5(EVENT, &days, &excluded), None);
        days.push(day(date!(2026 - 07 - 01), &[1.0]));
        let b = high_4_of_5(EVENT, &days, &excluded).unwrap();
        assert_eq!(b.days.first(), Some(&date!(2026 - 07 - 02)));
        assert_eq!(b.kwh, vec![(3.0 + 1.0 + 1.0 + 1.0) / 4.0]);
    }

    #[test]
    fn a_weekend_event_uses_weekend_days_within_the_lookback() {
        let sunday = date!(2026 - 07 - 12);
        let days: Vec<Day> = (1..=40)
            .map(|k| day(sunday - time::Duration::days(k), &[k as f64]))
            .collect();
        let b = high_4_of_5(sunday, &days, &[]).unwrap();
        assert!(b.days.iter().all(|d| is_day_off(*d)));
        // Weekend days back from the 11th: 11, 5, 4, 28 Jun, 27 Jun (1, 7, 8,
        // 14, 15 days back); the highest four are the older ones.
        assert_eq!(b.kwh, vec![(7.0 + 8.0 + 14.0 + 15.0) / 4.0]);
        // From 21 days back only four weekend days are within the lookback.
        let old: Vec<Day> = days
            .into_iter()
            .filter(|d| (sunday - d.date).whole_days() > 20)
            .collect();
        assert_eq!(high_4_of_5(sunday, &old, &[]), None, "beyond the lookback");
    }

    #[test]
    fn holidays_count_as_days_off_on_both_sides() {
        // Friday 24 July 2026 against the weekdays before it; Monday 20 July
        // is Marine Day: it is passed over.
        let days: Vec<Day> = (1..=10)
            .map(|k| day(date!(2026 - 07 - 24) - time::Duration::days(k), &[k as f64]))
            .collect();
        let b = high_4_of_5(date!(2026 - 07 - 24), &days, &[]).unwrap();
        assert!(!b.days.contains(&date!(2026 - 07 - 20)));
        // An event on Marine Day compares with the weekend days before it.
        let days: Vec<Day> = (1..=30)
            .map(|k| day(date!(2026 - 07 - 20) - time::Duration::days(k), &[1.0]))
            .collect();
        let b = high_4_of_5(date!(2026 - 07 - 20), &days, &[]).unwrap();
        assert!(b
            .days
            .iter()
            .all(|d| d.weekday() == Weekday::Saturday || d.weekday() == Weekday::Sunday));
    }
}
