//! Slot, wrap-around and gap arithmetic of [`super`].
#![allow(clippy::unwrap_used)]

use time::macros::{datetime, offset};
use time::{Duration, OffsetDateTime, UtcOffset};

use super::*;

const T0: OffsetDateTime = datetime!(2024-05-01 00:00:00 UTC);

fn tenth_kwh() -> Scale {
    Scale {
        coefficient: 1,
        unit: 0x01,
        digits: Some(6),
    }
}

fn half_hours(len: usize) -> Grid {
    Grid::covering(
        T0,
        T0 + Duration::minutes(30) * len as u32,
        Duration::minutes(30),
        UtcOffset::UTC,
    )
    .unwrap()
}

fn sample(minute: i64, count: u64, scale: Scale) -> CounterSample {
    CounterSample {
        at: T0 + Duration::minutes(minute),
        count,
        scale,
    }
}

/// One sample a minute from `from` to `to` minutes (inclusive), the count
/// rising by one every `every` minutes from `start`, modulo `10^6`.
fn steady(from: i64, to: i64, start: u64, every: i64) -> Vec<CounterSample> {
    (from..=to)
        .map(|m| {
            sample(
                m,
                (start + ((m - from) / every) as u64) % 1_000_000,
                tenth_kwh(),
            )
        })
        .collect()
}

fn kwh(slots: &[Option<Energy>]) -> Vec<Option<f64>> {
    slots.iter().map(|e| e.map(Energy::kwh)).collect()
}

const GAP: Duration = Duration::minutes(10);

#[test]
fn slots_are_aligned_to_the_clock_of_the_offset() {
    let g = Grid::covering(
        datetime!(2024-05-01 10:10 UTC),
        datetime!(2024-05-01 11:05 UTC),
        Duration::minutes(30),
        UtcOffset::UTC,
    )
    .unwrap();
    assert_eq!((g.start, g.len), (datetime!(2024-05-01 10:00 UTC), 3));
    assert_eq!(g.end(), datetime!(2024-05-01 11:30 UTC));
    // A day in Japan starts at 15:00 UTC the day before.
    let day = Grid::covering(
        datetime!(2024-05-01 16:00 UTC),
        datetime!(2024-05-03 15:00 UTC),
        Duration::days(1),
        offset!(+9),
    )
    .unwrap();
    assert_eq!(day.start, datetime!(2024-05-02 00:00 +9));
    assert_eq!(day.len, 2);
    // Hours in India start at half past UTC hours.
    let hour = Grid::covering(
        datetime!(2024-05-01 10:00 UTC),
        datetime!(2024-05-01 10:01 UTC),
        Duration::hours(1),
        offset!(+5:30),
    )
    .unwrap();
    assert_eq!((hour.start, hour.len), (datetime!(2024-05-01 09:30 UTC), 1));
    assert!(Grid::covering(T0, T0, Duration::hours(1), UtcOffset::UTC).is_none());
}

#[test]
fn a_slot_gets_the_counts_read_in_it() {
    // 0.1 kWh every 3 minutes: 1 kWh per half hour, 2 kW.
    let samples = steady(-1, 91, 5000, 3);
    let slots = energy_per_slot(&half_hours(3), &samples, GAP);
    assert_eq!(kwh(&slots), [Some(1.0), Some(1.0), Some(1.0)]);
}

#[test]
fn complete_slots_add_up_to_the_counter_difference() {
    let samples: Vec<CounterSample> = (0..=240)
        .map(|m| sample(m, 100 + (m * m / 37) as u64, tenth_kwh()))
        .collect();
    let slots = energy_per_slot(&half_hours(8), &samples, GAP);
    assert!(slots.iter().all(Option::is_some));
    let total: Energy = slots
        .iter()
        .flatten()
        .fold(Energy::default(), |a, b| a + *b);
    let counts = samples[240].count - samples[0].count;
    assert_eq!(total, Energy(u128::from(counts) * 1_000));
}

#[test]
fn the_counter_wrapping_around_inside_a_slot_is_counted_once() {
    let samples = steady(-1, 61, 999_995, 3);
    let slots = energy_per_slot(&half_hours(2), &samples, GAP);
    assert_eq!(kwh(&slots), [Some(1.0), Some(1.0)]);
    assert!(samples.iter().any(|s| s.count < 10), "the counter wrapped");
}

#[test]
fn the_counter_wrapping_around_at_a_slot_boundary_is_counted_once() {
    let s = tenth_kwh();
    let samples = [
        sample(-1, 999_990, s),
        sample(1, 999_991, s),
        sample(29, 999_998, s),
        sample(31, 3, s),
        sample(59, 9, s),
        sample(61, 10, s),
    ];
    let slots = energy_per_slot(&half_hours(2), &samples, GAP);
    assert_eq!(kwh(&slots), [Some(0.8), Some(1.1)]);
}

#[test]
fn the_coefficient_and_unit_scale_the_counts() {
    // 0x0A: 10 kWh per count, coefficient 3: 30 kWh per count (a big site).
    let big = Scale {
        coefficient: 3,
        unit: 0x0A,
        digits: Some(8),
    };
    let fine = Scale {
        coefficient: 1,
        unit: 0x03,
        digits: Some(8),
    };
    let grid = half_hours(1);
    let s = [sample(0, 10, big), sample(30, 12, big)];
    assert_eq!(kwh(&energy_per_slot(&grid, &s, GAP)), [Some(60.0)]);
    let s = [sample(0, 10, fine), sample(30, 1_260, fine)];
    assert_eq!(kwh(&energy_per_slot(&grid, &s, GAP)), [Some(1.25)]);
}

#[test]
fn missing_samples_across_a_boundary_make_both_slots_gaps() {
    let mut samples = steady(-1, 20, 100, 3);
    samples.extend(steady(45, 121, 200, 3));
    let slots = energy_per_slot(&half_hours(4), &samples, GAP);
    assert_eq!(
        kwh(&slots),
        [None, None, Some(1.0), Some(1.0)],
        "20 min to 45 min unknown: neither slot is invented"
    );
}

#[test]
fn a_long_pause_inside_one_slot_still_gives_its_exact_energy() {
    let s = tenth_kwh();
    let samples = [
        sample(-1, 100, s),
        sample(2, 101, s),
        sample(27, 110, s),
        sample(31, 111, s),
    ];
    let slots = energy_per_slot(&half_hours(1), &samples, GAP);
    assert_eq!(kwh(&slots), [Some(1.0)]);
}

#[test]
fn a_pair_spanning_a_whole_slot_is_a_gap_whatever_the_allowed_gap() {
    let s = tenth_kwh();
    let samples = [
        sample(-1, 100, s),
        sample(29, 110, s),
        sample(30, 110, s),
        sample(91, 120, s),
    ];
    let slots = energy_per_slot(&half_hours(3), &samples, Duration::hours(2));
    assert_eq!(kwh(&slots), [Some(1.0), None, None]);
}

#[test]
fn slots_before_the_first_sample_and_after_the_last_are_gaps() {
    let samples = steady(40, 95, 100, 3);
    let slots = energy_per_slot(&half_hours(4), &samples, GAP);
    assert_eq!(kwh(&slots), [None, None, Some(1.0), None]);
    assert_eq!(energy_per_slot(&half_hours(2), &[], GAP), [None, None]);
}

#[test]
fn a_sample_exactly_on_the_boundaries_covers_the_slot() {
    let s = tenth_kwh();
    let samples = [sample(0, 100, s), sample(15, 104, s), sample(30, 110, s)];
    let slots = energy_per_slot(&half_hours(1), &samples, GAP);
    assert_eq!(kwh(&slots), [Some(1.0)]);
}

#[test]
fn a_counter_reset_is_a_gap_not_a_wrap_around() {
    let s = tenth_kwh();
    // A replaced meter starts again from zero: (0 - 150000) mod 10^6 counts
    // would be 85 MWh in a minute.
    let samples = [
        sample(-1, 149_990, s),
        sample(20, 150_000, s),
        sample(21, 0, s),
        sample(30, 0, s),
        sample(60, 10, s),
    ];
    let slots = energy_per_slot(&half_hours(2), &samples, GAP);
    assert_eq!(kwh(&slots), [None, Some(1.0)]);
}

#[test]
fn one_count_in_a_short_interval_is_quantisation_not_a_reset() {
    // 10 kWh per count: one count within a second is plausible, two are not.
    let s = Scale {
        coefficient: 1,
        unit: 0x0A,
        digits: Some(6),
    };
    let at = |secs: i64| T0 + Duration::seconds(secs);
    let pair = |a: u64, b: u64| {
        let grid = half_hours(1);
        let samples = [
            CounterSample {
                at: at(-1),
                count: a,
                scale: s,
            },
            CounterSample {
                at: at(0),
                count: a,
                scale: s,
            },
            CounterSample {
                at: at(1),
                count: b,
                scale: s,
            },
            CounterSample {
                at: at(1800),
                count: b,
                scale: s,
            },
        ];
        kwh(&energy_per_slot(&grid, &samples, GAP))
    };
    assert_eq!(pair(5, 6), [Some(10.0)]);
    assert_eq!(pair(5, 7), [None]);
}

#[test]
fn a_scale_change_between_two_samples_makes_a_gap() {
    let a = tenth_kwh();
    let b = Scale {
        coefficient: 1,
        unit: 0x02,
        digits: Some(6),
    };
    let samples = [
        sample(-1, 100, a),
        sample(29, 110, a),
        sample(31, 1_100, b),
        sample(60, 1_200, b),
    ];
    let slots = energy_per_slot(&half_hours(2), &samples, GAP);
    assert_eq!(kwh(&slots), [None, None]);
}

#[test]
fn the_peak_is_the_largest_value_in_each_slot() {
    let grid = half_hours(3);
    let at = |m: i64| T0 + Duration::minutes(m);
    let samples = [
        (at(5), 300.0),
        (at(10), 1_200.0),
        (at(29), -50.0),
        (at(70), -800.0),
        (at(-5), 9_999.0),
        (at(90), 9_999.0),
    ];
    assert_eq!(
        peak_per_slot(&grid, &samples),
        [Some(1_200.0), None, Some(-800.0)]
    );
}

mod within {
    use kumo_testkit::fuzz::config;
    use proptest::prelude::*;

    use super::*;

    /// Samples from steps of (minutes since the previous, counts added,
    /// whether the scale changes): gaps, resets (large jumps), wrap-arounds
    /// and scale changes all occur.
    fn samples() -> impl Strategy<Value = Vec<CounterSample>> {
        prop::collection::vec((1i64..90, 0u64..3_000, prop::bool::weighted(0.05)), 0..80).prop_map(
            |steps| {
                let other = Scale {
                    coefficient: 1,
                    unit: 0x02,
                    digits: Some(6),
                };
                let (mut minute, mut count, mut scale) = (-120, 999_000, tenth_kwh());
                let mut out = Vec::new();
                for (gap, add, switch) in steps {
                    minute += gap;
                    count = (count + add) % 1_000_000;
                    if switch {
                        scale = if scale == other { tenth_kwh() } else { other };
                    }
                    out.push(sample(minute, count, scale));
                }
                out
            },
        )
    }

    proptest! {
        #![proptest_config(config(2_000))]

        /// The slots of a small grid, alone, are those slots of a big one.
        #[test]
        fn a_grid_alone_gives_its_slots_of_a_larger_grid(
            samples in samples(),
            first in 0usize..96,
            len in 1usize..96,
            gap in prop::sample::select(vec![5i64, 10, 45]),
        ) {
            let max_gap = Duration::minutes(gap);
            let big = half_hours(96);
            let len = len.min(96 - first);
            let small = Grid { start: big.slot_start(first), len, ..big };
            let whole = energy_per_slot(&big, &samples, max_gap);
            prop_assert_eq!(energy_within(&small, &samples, max_gap), whole[first..first + len].to_vec());
        }

        /// A grid's slots need only the samples from `max_gap` before its
        /// start to `max_gap` after its end: what the database is asked for
        /// (`store::samples_many`, one range per grid).
        #[test]
        fn a_grid_needs_only_the_samples_within_max_gap_of_it(
            samples in samples(),
            first in 0usize..96,
            len in 1usize..96,
            gap in prop::sample::select(vec![5i64, 10, 45, 90]),
        ) {
            let max_gap = Duration::minutes(gap);
            let big = half_hours(96);
            let len = len.min(96 - first);
            let grid = Grid { start: big.slot_start(first), len, ..big };
            let (lo, hi) = read_window(&grid, max_gap);
            let near: Vec<_> = samples.iter().copied().filter(|s| s.at >= lo && s.at <= hi).collect();
            prop_assert_eq!(energy_within(&grid, &near, max_gap), energy_within(&grid, &samples, max_gap));
        }
    }
}
