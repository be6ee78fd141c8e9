//! Energy per clock-aligned slot from a meter's cumulative counter samples.
//!
//! Rules (also in `docs/energy.md`):
//! - The energy between two consecutive samples `p`, `q` (counts between
//!   them, across a wrap-around, times the scale) belongs to the slot where
//!   the interval `(p, q]` ends: the counter was read there, and a sample
//!   exactly on a boundary closes the slot before it. Such a pair is
//!   *usable* if both samples share a scale, `(p, q]` lies in one slot or
//!   crosses one boundary with `p`, `q` at most `max_gap` apart, and the
//!   energy is physically possible
//!   (below [`MAX_PLAUSIBLE_KW`] on average, allowing one count of
//!   quantisation) — a meter replaced or reset is not a wrap-around.
//! - A slot is *complete* when usable pairs cover it from its start to its
//!   end; any slot an unusable pair overlaps, or with no sample before its
//!   start or after its end, is a gap: its energy is `None`, never guessed.
//!
//! Pure: no database, no clock.

use time::{Duration, OffsetDateTime, UtcOffset};

use super::scale::{Energy, Scale};

/// Average power above which a counter step is taken for a reset, not use:
/// far above any low-voltage supply (they end at 50 kW).
pub const MAX_PLAUSIBLE_KW: u128 = 200;

/// One reading of a cumulative counter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CounterSample {
    pub at: OffsetDateTime,
    pub count: u64,
    pub scale: Scale,
}

/// Equal slots aligned to the clock of a fixed UTC offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grid {
    /// Start of the first slot.
    pub start: OffsetDateTime,
    /// Slot length.
    pub step: Duration,
    /// Number of slots.
    pub len: usize,
}

impl Grid {
    /// The slots that overlap `[from, to)`, aligned to whole `step`s of the
    /// local clock at `offset` (a day starts at local midnight). `None` if
    /// `from >= to` or `step` is not positive.
    pub fn covering(
        from: OffsetDateTime,
        to: OffsetDateTime,
        step: Duration,
        offset: UtcOffset,
    ) -> Option<Grid> {
        let step_s = step.whole_seconds();
        if from >= to || step_s <= 0 {
            return None;
        }
        let off = i64::from(offset.whole_seconds());
        let align = |t: OffsetDateTime| (t.unix_timestamp() + off).div_euclid(step_s) * step_s;
        let first = align(from);
        let last = align(to - Duration::nanoseconds(1));
        let len = usize::try_from((last - first) / step_s + 1).ok()?;
        let start = OffsetDateTime::from_unix_timestamp(first - off).ok()?;
        Some(Grid { start, step, len })
    }

    /// Start of slot `i`.
    pub fn slot_start(&self, i: usize) -> OffsetDateTime {
        self.start + self.step * i as u32
    }

    /// End of the last slot.
    pub fn end(&self) -> OffsetDateTime {
        self.slot_start(self.len)
    }

    /// The slot holding `t`, counted from the first (negative before it,
    /// `len` or more after the last).
    pub fn slot_of(&self, t: OffsetDateTime) -> i64 {
        let step_ns = self.step.whole_nanoseconds();
        ((t - self.start).whole_nanoseconds().div_euclid(step_ns)) as i64
    }

    /// The slot in which an interval ending at `t` (exclusive start,
    /// inclusive end) ends.
    pub fn slot_ending(&self, t: OffsetDateTime) -> i64 {
        self.slot_of(t - Duration::nanoseconds(1))
    }

    fn index(&self, slot: i64) -> Option<usize> {
        usize::try_from(slot).ok().filter(|i| *i < self.len)
    }
}

/// Energy per slot of one counter: `None` where the slot is a gap.
pub fn energy_per_slot(
    grid: &Grid,
    samples: &[CounterSample],
    max_gap: Duration,
) -> Vec<Option<Energy>> {
    let mut sums = vec![Energy::default(); grid.len];
    let mut complete = vec![true; grid.len];
    // Slots overlapping the open interval (a, b) are not covered.
    let mut uncover = |a: Option<OffsetDateTime>, b: Option<OffsetDateTime>| {
        let first = a.map_or(0, |a| grid.slot_of(a));
        let last = b.map_or(grid.len as i64, |b| grid.slot_ending(b));
        for slot in first.max(0)..=last.min(grid.len as i64 - 1) {
            if let Some(i) = grid.index(slot) {
                complete[i] = false;
            }
        }
    };
    uncover(None, samples.first().map(|s| s.at));
    uncover(samples.last().map(|s| s.at), None);
    for pair in samples.windows(2) {
        let (p, q) = (&pair[0], &pair[1]);
        match usable_energy(grid, p, q, max_gap) {
            Some(e) => {
                if let Some(i) = grid.index(grid.slot_ending(q.at)) {
                    sums[i] += e;
                }
            }
            None => uncover(Some(p.at), Some(q.at)),
        }
    }
    sums.into_iter()
        .zip(complete)
        .map(|(e, ok)| ok.then_some(e))
        .collect()
}

/// [`energy_per_slot`] for the slots of `grid` alone, from a counter's
/// samples (oldest first) over any longer time: the same answer as those
/// slots of a larger grid aligned alike, computed from the same samples,
/// but reading only the samples around `grid`. Demand-response results
/// need an event's half hours on each of 30 days, not a month of slots.
pub fn energy_within(
    grid: &Grid,
    samples: &[CounterSample],
    max_gap: Duration,
) -> Vec<Option<Energy>> {
    // A pair of samples touches the grid's slots only if it ends after the
    // grid's start and begins before its end: the last sample at or before
    // the start and the first at or after the end bound all such pairs, and
    // the pairs outside them (and the uncovered time before the first and
    // after the last sample) fall in slots outside the grid.
    let from = samples
        .partition_point(|s| s.at <= grid.start)
        .saturating_sub(1);
    let to = (samples.partition_point(|s| s.at < grid.end()) + 1).min(samples.len());
    energy_per_slot(grid, &samples[from..to.max(from)], max_gap)
}

/// The time whose counter samples decide `grid`'s slots: from `max_gap`
/// before its start to `max_gap` after its end, both included. A pair that
/// ends in the grid and starts further back, or starts in it and ends
/// further on, spans more than `max_gap` across a boundary, so it is not
/// usable and leaves the same slots gaps as having no sample there at all.
pub fn read_window(grid: &Grid, max_gap: Duration) -> (OffsetDateTime, OffsetDateTime) {
    (grid.start - max_gap, grid.end() + max_gap)
}

/// The energy counted from `p` to `q`, if the pair is usable.
fn usable_energy(
    grid: &Grid,
    p: &CounterSample,
    q: &CounterSample,
    max_gap: Duration,
) -> Option<Energy> {
    let dt = q.at - p.at;
    let slots_apart = grid.slot_ending(q.at) - grid.slot_of(p.at);
    let near = slots_apart == 0 || (slots_apart == 1 && dt <= max_gap);
    if !near || p.scale != q.scale || dt <= Duration::ZERO {
        return None;
    }
    let counts = u128::from(q.scale.counts_between(p.count, q.count)?);
    let per_count = q.scale.per_count().0;
    // Plausible: (counts - 1) × per_count ≤ MAX kW × dt, in 0.1 Wh and ms.
    let limit = MAX_PLAUSIBLE_KW * 10_000 * dt.whole_milliseconds().max(0) as u128 / 3_600_000;
    if counts.saturating_sub(1) * per_count > limit {
        return None;
    }
    Some(Energy(counts * per_count))
}

/// Largest value per slot of `samples` (`(at, value)`, any order); `None`
/// for slots without one.
pub fn peak_per_slot(grid: &Grid, samples: &[(OffsetDateTime, f64)]) -> Vec<Option<f64>> {
    let mut peaks: Vec<Option<f64>> = vec![None; grid.len];
    for (at, v) in samples {
        if let Some(i) = grid.index(grid.slot_of(*at)) {
            peaks[i] = Some(peaks[i].map_or(*v, |p: f64| p.max(*v)));
        }
    }
    peaks
}

#[cfg(test)]
#[path = "slots_tests.rs"]
mod tests;
