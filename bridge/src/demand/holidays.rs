//! Japan's public holidays, for the baseline's choice of similar days: the
//! ERAB guideline compares a weekday event with weekdays and a weekend or
//! holiday event with weekends and holidays, and a household on a holiday
//! uses power as on a Sunday.
//!
//! The Act on National Holidays (国民の祝日に関する法律) as it stands, for
//! 2000–2099: the named holidays (fixed dates, the "Happy Monday" ones, the
//! equinoxes), the substitute holiday (a holiday on a Sunday moves the day
//! off to the next day that is not one, from 2007; the Monday before), the
//! citizens' holiday (a day between two named holidays) and the one-off
//! changes of 2019–2021 (the enthronement; the Olympic year moves). The
//! equinox days are fixed each February for the next year from the
//! astronomical almanac; the formula here is the standard approximation for
//! 1980–2099, which matches every announced day so far. Later changes of
//! the law cannot be known here.

use time::{Date, Month, Weekday};

/// Whether `d` is a public holiday in Japan (named, substitute or citizens').
/// Outside 2000–2099: never.
pub fn is_holiday(d: Date) -> bool {
    if !(2000..=2099).contains(&d.year()) {
        return false;
    }
    if is_named(d) {
        return true;
    }
    // Substitute holiday: the first day after a Sunday holiday that is not
    // itself a named holiday (from 2007); the Monday after, before.
    if d.year() >= 2007 {
        let mut prev = d.previous_day();
        while let Some(p) = prev.filter(|p| is_named(*p)) {
            if p.weekday() == Weekday::Sunday {
                return true;
            }
            prev = p.previous_day();
        }
    } else if d.weekday() == Weekday::Monday && d.previous_day().is_some_and(is_named) {
        return true;
    }
    // Citizens' holiday: between two named holidays.
    d.previous_day().is_some_and(is_named) && d.next_day().is_some_and(is_named)
}

/// The `n`th (1-based) `weekday` of a month.
fn nth(d: Date, n: u8, weekday: Weekday) -> bool {
    d.weekday() == weekday && (d.day() - 1) / 7 + 1 == n
}

/// Vernal (March) and autumnal (September) equinox days, 1980–2099.
fn equinox(year: i32, month: Month) -> u8 {
    let y = f64::from(year - 1980);
    let base = if month == Month::March {
        20.8431
    } else {
        23.2488
    };
    (base + 0.242194 * y - (y / 4.0).floor()).floor() as u8
}

/// A named holiday (国民の祝日) of the law as it applied in `d`'s year.
fn is_named(d: Date) -> bool {
    let (y, m, day) = (d.year(), d.month(), d.day());
    match m {
        Month::January => day == 1 || nth(d, 2, Weekday::Monday),
        Month::February => day == 11 || (day == 23 && y >= 2020),
        Month::March => day == equinox(y, Month::March),
        Month::April => day == 29,
        Month::May => matches!(day, 3..=5) || (y == 2019 && day == 1),
        Month::July => match y {
            2020 => matches!(day, 23 | 24),
            2021 => matches!(day, 22 | 23),
            ..=2002 => day == 20,
            _ => nth(d, 3, Weekday::Monday),
        },
        Month::August => match y {
            2020 => day == 10,
            2021 => day == 8,
            2016.. => day == 11,
            _ => false,
        },
        Month::September => {
            day == equinox(y, Month::September)
                || if y <= 2002 {
                    day == 15
                } else {
                    nth(d, 3, Weekday::Monday)
                }
        }
        Month::October => {
            (y == 2019 && day == 22) || (!matches!(y, 2020 | 2021) && nth(d, 2, Weekday::Monday))
        }
        Month::November => day == 3 || day == 23,
        Month::December => day == 23 && (1989..=2018).contains(&y),
        Month::June => false,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use time::macros::date;

    /// Every holiday of `year`, in order.
    fn of(year: i32) -> Vec<Date> {
        let mut d = Date::from_calendar_date(year, Month::January, 1).unwrap();
        let mut got = Vec::new();
        while d.year() == year {
            if is_holiday(d) {
                got.push(d);
            }
            d = d.next_day().unwrap();
        }
        got
    }

    #[test]
    fn the_2026_calendar_is_the_cabinet_offices() {
        // 内閣府「令和8年（2026年）の国民の祝日・休日」: 18 days, with the
        // substitute holiday of 6 May and the citizens' holiday of 22 September.
        assert_eq!(
            of(2026),
            vec![
                date!(2026 - 01 - 01),
                date!(2026 - 01 - 12),
                date!(2026 - 02 - 11),
                date!(2026 - 02 - 23),
                date!(2026 - 03 - 20),
                date!(2026 - 04 - 29),
                date!(2026 - 05 - 03),
                date!(2026 - 05 - 04),
                date!(2026 - 05 - 05),
                date!(2026 - 05 - 06),
                date!(2026 - 07 - 20),
                date!(2026 - 08 - 11),
                date!(2026 - 09 - 21),
                date!(2026 - 09 - 22),
                date!(2026 - 09 - 23),
                date!(2026 - 10 - 12),
                date!(2026 - 11 - 03),
                date!(2026 - 11 - 23),
            ]
        );
    }

    #[test]
    fn the_2025_calendar_is_the_cabinet_offices() {
        // Three substitute holidays: 24 Feb, 6 May (for Sunday 4 May, after
        // the 5th) and 24 Nov.
        assert_eq!(
            of(2025),
            vec![
                date!(2025 - 01 - 01),
                date!(2025 - 01 - 13),
                date!(2025 - 02 - 11),
                date!(2025 - 02 - 23),
                date!(2025 - 02 - 24),
                date!(2025 - 03 - 20),
                date!(2025 - 04 - 29),
                date!(2025 - 05 - 03),
                date!(2025 - 05 - 04),
                date!(2025 - 05 - 05),
                date!(2025 - 05 - 06),
                date!(2025 - 07 - 21),
                date!(2025 - 08 - 11),
                date!(2025 - 09 - 15),
                date!(2025 - 09 - 23),
                date!(2025 - 10 - 13),
                date!(2025 - 11 - 03),
                date!(2025 - 11 - 23),
                date!(2025 - 11 - 24),
            ]
        );
    }

    #[test]
    fn the_one_off_years_follow_their_special_laws() {
        // 2019: the enthronement (1 May, 22 Oct) with 30 Apr and 2 May between
        // holidays; no Emperor's Birthday.
        for d in [
            date!(2019 - 04 - 30),
            date!(2019 - 05 - 01),
            date!(2019 - 05 - 02),
            date!(2019 - 10 - 22),
        ] {
            assert!(is_holiday(d), "{d}");
        }
        assert!(!is_holiday(date!(2019 - 12 - 23)));
        assert!(is_holiday(date!(2018 - 12 - 23)));
        // 2020 and 2021: the Olympic moves (Mountain Day 2021 on a Sunday:
        // its substitute on the 9th), and not the usual days.
        for d in [
            date!(2020 - 07 - 23),
            date!(2020 - 07 - 24),
            date!(2020 - 08 - 10),
            date!(2021 - 07 - 22),
            date!(2021 - 07 - 23),
            date!(2021 - 08 - 08),
            date!(2021 - 08 - 09),
        ] {
            assert!(is_holiday(d), "{d}");
        }
        for d in [
            date!(2020 - 07 - 20),
            date!(2020 - 08 - 11),
            date!(2020 - 10 - 12),
            date!(2021 - 07 - 19),
            date!(2021 - 10 - 11),
        ] {
            assert!(!is_holiday(d), "{d}");
        }
    }

    #[test]
    fn the_equinoxes_match_the_announced_days() {
        // Vernal / autumnal equinox days as gazetted, 2000–2027.
        let announced = [
            (2000, 20, 23),
            (2004, 20, 23),
            (2008, 20, 23),
            (2012, 20, 22),
            (2016, 20, 22),
            (2020, 20, 22),
            (2023, 21, 23),
            (2024, 20, 22),
            (2025, 20, 23),
            (2026, 20, 23),
            (2027, 21, 23),
        ];
        for (y, spring, autumn) in announced {
            assert_eq!(equinox(y, Month::March), spring, "{y} March");
            assert_eq!(equinox(y, Month::September), autumn, "{y} September");
        }
    }

    #[test]
    fn outside_the_supported_years_nothing_is_a_holiday() {
        assert!(!is_holiday(date!(1999 - 01 - 01)));
        assert!(!is_holiday(date!(2100 - 01 - 01)));
    }
}
