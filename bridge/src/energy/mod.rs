//! Energy history of a smart meter: kWh bought and sold and the peak power
//! per clock-aligned slot (30 minutes, an hour or a day), computed from the
//! meter's cumulative counters as ECHONET Lite defines them (`scale`), with
//! wrap-around, gaps and resets handled by `slots`, for the caller's current
//! ownership only (`store`). No HTTP here: `api/energy.rs` parses and renders.

pub mod scale;
pub mod slots;
pub mod store;

use deadpool_postgres::Pool;
use time::{Duration, OffsetDateTime, UtcOffset};

use crate::db::DbError;
pub use scale::Energy;
use slots::Grid;

/// The longest range one request may cover (4,464 half-hour slots).
pub const MAX_SPAN: Duration = Duration::days(93);

/// Slot lengths offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    HalfHour,
    Hour,
    Day,
}

impl Step {
    /// `30m`, `1h` or `1d`.
    pub fn parse(raw: &str) -> Option<Step> {
        match raw {
            "30m" => Some(Step::HalfHour),
            "1h" => Some(Step::Hour),
            "1d" => Some(Step::Day),
            _ => None,
        }
    }

    /// The name [`Step::parse`] takes.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::HalfHour => "30m",
            Step::Hour => "1h",
            Step::Day => "1d",
        }
    }

    /// The slot length.
    pub fn duration(self) -> Duration {
        match self {
            Step::HalfHour => Duration::minutes(30),
            Step::Hour => Duration::hours(1),
            Step::Day => Duration::days(1),
        }
    }
}

/// What is asked for.
#[derive(Debug, Clone, Copy)]
pub struct Query {
    pub from: OffsetDateTime,
    pub to: OffsetDateTime,
    pub step: Step,
    /// Slots follow this offset's clock (a day starts at its midnight).
    pub offset: UtcOffset,
    /// Consecutive readings further apart than this across a slot boundary
    /// leave a gap (`bridge.energy.max_sample_gap_secs`).
    pub max_gap: Duration,
}

/// One slot of energy history.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Slot {
    pub start: OffsetDateTime,
    /// Bought (normal direction); `None` if not fully known.
    pub bought: Option<Energy>,
    /// Sold (reverse direction); `None` if not fully known, or if the meter
    /// reported no reverse counter (0xE3) at all in the range.
    pub sold: Option<Energy>,
    /// Largest instantaneous power read in the slot, W (negative while
    /// selling).
    pub peak_w: Option<f64>,
    /// Whether the slot's energy is not fully known: bought, or sold for a
    /// meter that reports its reverse counter.
    pub gap: bool,
}

/// Why energy history cannot be given.
#[derive(Debug, thiserror::Error)]
pub enum EnergyError {
    #[error("from must be before to")]
    Order,
    #[error("from..to must span at most {} days", MAX_SPAN.whole_days())]
    Span,
    #[error("device {0} is not found")]
    NotFound(String),
    #[error("device {0} is not a smart meter")]
    NotAMeter(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

/// The grid of slots for `q`, checked.
pub fn grid(q: &Query) -> Result<Grid, EnergyError> {
    if q.from >= q.to {
        return Err(EnergyError::Order);
    }
    if q.to - q.from > MAX_SPAN {
        return Err(EnergyError::Span);
    }
    Grid::covering(q.from, q.to, q.step.duration(), q.offset).ok_or(EnergyError::Order)
}

/// `device`'s energy history as `user` may see it: slots before the current
/// ownership began are gaps.
pub async fn history(
    pool: &Pool,
    user: &str,
    device: &str,
    q: &Query,
) -> Result<(Grid, Vec<Slot>), EnergyError> {
    let one = [(user.to_string(), device.to_string(), *q)];
    let mut many = history_many(pool, &one).await?;
    many.pop().unwrap_or(Err(EnergyError::Order))
}

/// [`history`] of several `(user, device, query)` at once, in a fixed number
/// of round trips (demand-response results read thousands of meters); each
/// answer in order, with its own error.
pub async fn history_many(
    pool: &Pool,
    asks: &[(String, String, Query)],
) -> Result<Vec<Result<(Grid, Vec<Slot>), EnergyError>>, DbError> {
    let grids: Vec<Result<Grid, EnergyError>> = asks.iter().map(|a| grid(&a.2)).collect();
    let pairs: Vec<(String, String)> = asks.iter().map(|a| (a.0.clone(), a.1.clone())).collect();
    let lookbacks: Vec<OffsetDateTime> = asks
        .iter()
        .zip(&grids)
        .map(|(a, g)| g.as_ref().map_or(a.2.from, |g| g.start) - a.2.max_gap)
        .collect();
    let access = store::access_many(pool, &pairs, &lookbacks).await?;
    // Only meters the caller sees, with a valid grid, are read.
    let mut ranges = Vec::new();
    for ((a, g), acc) in asks.iter().zip(&grids).zip(&access) {
        if let (Ok(g), Some(acc)) = (g, acc) {
            if acc.is_meter {
                ranges.push((a.1.clone(), acc.since, g.end() + a.2.max_gap));
            }
        }
    }
    let mut samples = store::samples_many(pool, &ranges, &store::ALL)
        .await?
        .into_iter();
    let mut out = Vec::with_capacity(asks.len());
    for ((a, g), acc) in asks.iter().zip(grids).zip(access) {
        let answer = match (g, acc) {
            (Err(e), _) => Err(e),
            (Ok(_), None) => Err(EnergyError::NotFound(a.1.clone())),
            (Ok(_), Some(acc)) if !acc.is_meter => Err(EnergyError::NotAMeter(a.1.clone())),
            (Ok(g), Some(_)) => {
                let s = samples.next().unwrap_or_default();
                let slots = slots_of(&g, &s, a.2.max_gap);
                Ok((g, slots))
            }
        };
        out.push(answer);
    }
    Ok(out)
}

/// Energy bought in each slot of several grids per meter, for several
/// `(user, meter, grids)` at once: each grid's slots as [`history`] would
/// give them (the same gaps and ownership rule), computed from only the
/// samples around each grid, and only those are read
/// ([`slots::read_window`]). Demand-response results need an event's half
/// hours on each of 30 days, not a month of readings per home. The grids of
/// an ask must lie within [`MAX_SPAN`]; each answer in order, with its own
/// error.
pub async fn bought_many(
    pool: &Pool,
    asks: &[(String, String, Vec<Grid>)],
    max_gap: Duration,
) -> Result<Vec<Result<Vec<Vec<Option<Energy>>>, EnergyError>>, DbError> {
    let spans: Vec<Result<(OffsetDateTime, OffsetDateTime), EnergyError>> = asks
        .iter()
        .map(|a| {
            let from = a.2.iter().map(|g| g.start).min();
            let to = a.2.iter().map(Grid::end).max();
            match from.zip(to) {
                None => Err(EnergyError::Order),
                Some((from, to)) if to - from > MAX_SPAN => Err(EnergyError::Span),
                Some(span) => Ok(span),
            }
        })
        .collect();
    let pairs: Vec<(String, String)> = asks.iter().map(|a| (a.0.clone(), a.1.clone())).collect();
    let lookbacks: Vec<OffsetDateTime> = spans
        .iter()
        .map(|s| s.as_ref().map_or(OffsetDateTime::UNIX_EPOCH, |s| s.0) - max_gap)
        .collect();
    let access = store::access_many(pool, &pairs, &lookbacks).await?;
    // One range per grid, none before the ownership began.
    let mut ranges = Vec::new();
    for ((a, span), acc) in asks.iter().zip(&spans).zip(&access) {
        if let (Ok(_), Some(acc)) = (span, acc) {
            if acc.is_meter {
                for g in &a.2 {
                    let (lo, hi) = slots::read_window(g, max_gap);
                    ranges.push((a.1.clone(), lo.max(acc.since), hi));
                }
            }
        }
    }
    let mut samples = store::samples_many(pool, &ranges, &[store::BOUGHT])
        .await?
        .into_iter();
    let mut out = Vec::with_capacity(asks.len());
    for ((a, span), acc) in asks.iter().zip(spans).zip(access) {
        let answer = match (span, acc) {
            (Err(e), _) => Err(e),
            (Ok(_), None) => Err(EnergyError::NotFound(a.1.clone())),
            (Ok(_), Some(acc)) if !acc.is_meter => Err(EnergyError::NotAMeter(a.1.clone())),
            (Ok(_), Some(_)) => Ok(a
                .2
                .iter()
                .map(|g| {
                    let s = samples.next().unwrap_or_default();
                    slots::energy_within(g, &s.bought, max_gap)
                })
                .collect()),
        };
        out.push(answer);
    }
    Ok(out)
}

/// The slots of `grid` from a meter's samples.
fn slots_of(grid: &Grid, samples: &store::MeterSamples, max_gap: Duration) -> Vec<Slot> {
    let bought = slots::energy_per_slot(grid, &samples.bought, max_gap);
    let sold = slots::energy_per_slot(grid, &samples.sold, max_gap);
    let peaks = slots::peak_per_slot(grid, &samples.power);
    // A meter without a reverse counter (no 0xE3 at all) is not missing data.
    let sells = !samples.sold.is_empty();
    (0..grid.len)
        .map(|i| Slot {
            start: grid.slot_start(i),
            bought: bought[i],
            sold: sold[i],
            peak_w: peaks[i],
            gap: bought[i].is_none() || (sells && sold[i].is_none()),
        })
        .collect()
}
