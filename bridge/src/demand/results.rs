//! An event's measured results (#15, part 3): per home and in aggregate, for
//! each half hour the event's window touches, the baseline (`baseline`,
//! High 4 of 5 from the home's own meter), what the meter counted, and the
//! reduction; how many homes were commanded, responded (their unit acked the
//! event's command) and how many commands failed or expired.
//!
//! Reads the meters through `crate::energy` exactly as energy history does
//! (the same slots, gaps and ownership rules); writes nothing.
//!
//! The aggregator sees every home and the aggregate; a user sees the same
//! for their own homes in the event and nothing of anyone else's ([`Viewer`]).

use std::collections::{BTreeMap, HashMap};

use deadpool_postgres::Pool;
use serde_json::{json, Value};
use time::{Duration, OffsetDateTime, UtcOffset};

use super::baseline::{high_4_of_5, Day, LOOKBACK_DAYS};
use super::DemandError;
use crate::energy::{self, slots::Grid, Step};
use crate::json::rfc3339;

/// One home of an event, as results need it.
struct Home {
    id: Option<String>,
    user: String,
    offset: UtcOffset,
    meter: Option<String>,
    commanded: bool,
    responded: bool,
    failed: usize,
}

/// Homes whose meters are read together (one connection, a few statements).
const MEASURE_CHUNK: usize = 500;

fn round(kwh: f64) -> f64 {
    (kwh * 10_000.0).round() / 10_000.0
}

/// Who asks for an event's results.
#[derive(Debug, Clone, Copy)]
pub enum Viewer<'a> {
    /// The aggregator that runs the event's program: every home, and the aggregate.
    Aggregator(&'a str),
    /// A user, about an event of `program`: their own homes only, no aggregate.
    User { user: &'a str, program: &'a str },
}

/// The results of event `id` for `viewer` (not found: no such event of
/// theirs, or for a user, none of their units in it); `max_gap` is
/// `bridge.energy.max_sample_gap_secs`.
pub async fn of_event(
    pool: &Pool,
    viewer: Viewer<'_>,
    id: &str,
    max_gap: Duration,
) -> Result<Value, DemandError> {
    let client = pool.get().await?;
    let not_found = || DemandError::NotFound(format!("event {id}"));
    let (owner, user) = match viewer {
        Viewer::Aggregator(a) => (
            "SELECT ev.program_id, lower(ev.during), upper(ev.during) FROM dr_events ev
             JOIN dr_programs p ON p.id = ev.program_id WHERE ev.id = $1 AND p.aggregator_id = $2",
            (a, None),
        ),
        Viewer::User { user, program } => (
            "SELECT program_id, lower(during), upper(during) FROM dr_events
             WHERE id = $1 AND program_id = $2",
            (program, Some(user)),
        ),
    };
    let event = client
        .query_opt(owner, &[&id, &user.0])
        .await?
        .ok_or_else(not_found)?;
    let user = user.1;
    let (program, start, end): (String, OffsetDateTime, OffsetDateTime) =
        (event.get(0), event.get(1), event.get(2));
    let others: Vec<OffsetDateTime> = client
        .query(
            "SELECT lower(during) FROM dr_events WHERE program_id = $1 AND id <> $2",
            &[&program, &id],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let rows = client
        .query(
            "SELECT d.home_id, d.user_id, e.utc_offset_minutes, d.state, c.status,
                    (SELECT m.id FROM devices m WHERE m.home_id = d.home_id
                       AND m.kind = 'smart_meter' ORDER BY m.id LIMIT 1)
             FROM dr_dispatches d
             JOIN dr_enrolments e USING (program_id, appliance_id)
             LEFT JOIN commands c ON c.id = d.command_id
             WHERE d.event_id = $1 AND ($2::text IS NULL OR d.user_id = $2)
             ORDER BY d.home_id, d.appliance_id",
            &[&id, &user],
        )
        .await?;
    drop(client);
    if user.is_some() && rows.is_empty() {
        return Err(not_found());
    }
    // One entry per home: a home with two enrolled units has one meter.
    // (Units without a home are each their own.)
    let mut homes: Vec<Home> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for r in &rows {
        let home: Option<String> = r.get(0);
        let status: Option<String> = r.get(4);
        let commanded = matches!(
            r.get::<_, &str>(3),
            "dispatched" | "restored" | "restore_skipped"
        );
        let idx = match home.as_ref().and_then(|h| index.get(h)) {
            Some(i) => *i,
            None => {
                let minutes: i32 = r.get(2);
                if let Some(h) = &home {
                    index.insert(h.clone(), homes.len());
                }
                homes.push(Home {
                    id: home,
                    user: r.get(1),
                    offset: UtcOffset::from_whole_seconds(minutes * 60).unwrap_or(UtcOffset::UTC),
                    meter: r.get(5),
                    commanded: false,
                    responded: false,
                    failed: 0,
                });
                homes.len() - 1
            }
        };
        let h = &mut homes[idx];
        h.commanded |= commanded;
        h.responded |= status.as_deref() == Some("acked");
        h.failed += usize::from(matches!(status.as_deref(), Some("failed" | "expired")));
    }
    let mut aggregate: BTreeMap<i128, (f64, f64, usize)> = BTreeMap::new();
    let mut measured = 0;
    let mut out = Vec::with_capacity(homes.len());
    // The meters of many homes are read together: a few round trips per
    // chunk instead of a few per home.
    let mut measured_homes = Vec::with_capacity(homes.len());
    for chunk in homes.chunks(MEASURE_CHUNK) {
        measured_homes.extend(measure_chunk(pool, chunk, start, end, &others, max_gap).await?);
    }
    for (home, complete) in measured_homes {
        if let Some(slots) = complete {
            measured += 1;
            for (t, b, a) in slots {
                let e = aggregate.entry(t.unix_timestamp_nanos()).or_default();
                *e = (e.0 + b, e.1 + a, e.2 + 1);
            }
        }
        out.push(home);
    }
    let slots: Vec<Value> = aggregate
        .iter()
        .map(|(t, (b, a, n))| {
            let start = OffsetDateTime::from_unix_timestamp_nanos(*t).unwrap_or(start);
            json!({"start": rfc3339(start), "baseline_kwh": round(*b), "actual_kwh": round(*a),
                   "reduction_kwh": round(b - a), "homes": n})
        })
        .collect();
    let (b, a): (f64, f64) = aggregate
        .values()
        .fold((0.0, 0.0), |s, v| (s.0 + v.0, s.1 + v.1));
    let mut results = json!({
        "event": id,
        "method": "high-4-of-5",
        "homes": homes.len(),
        "commanded": homes.iter().filter(|h| h.commanded).count(),
        "responded": homes.iter().filter(|h| h.responded).count(),
        "commands_failed": homes.iter().map(|h| h.failed).sum::<usize>(),
        "per_home": out,
    });
    if user.is_none() {
        results["aggregate"] = json!({
            "homes_measured": measured,
            "baseline_kwh": round(b), "actual_kwh": round(a), "reduction_kwh": round(b - a),
            "slots": slots,
        });
    }
    Ok(results)
}

/// What a home's meter is read for: the event's half hours on its clock
/// (the first grid), and the same half hours on each of the
/// [`LOOKBACK_DAYS`] days before (grid `k`: `k` days before).
fn meter_grids(h: &Home, start: OffsetDateTime, end: OffsetDateTime) -> Option<Vec<Grid>> {
    let window = Grid::covering(start, end, Step::HalfHour.duration(), h.offset)?;
    Some(
        (0..=LOOKBACK_DAYS)
            .map(|k| Grid {
                start: window.start - Duration::days(k),
                ..window
            })
            .collect(),
    )
}

/// Energy bought per half hour of each of a home's grids ([`meter_grids`]).
type Bought = Result<Vec<Vec<Option<energy::Energy>>>, energy::EnergyError>;

/// [`measure`] for a chunk of homes, their meters read in one go.
#[allow(clippy::type_complexity)]
async fn measure_chunk(
    pool: &Pool,
    homes: &[Home],
    start: OffsetDateTime,
    end: OffsetDateTime,
    others: &[OffsetDateTime],
    max_gap: Duration,
) -> Result<Vec<(Value, Option<Vec<(OffsetDateTime, f64, f64)>>)>, DemandError> {
    let grids: Vec<_> = homes.iter().map(|h| meter_grids(h, start, end)).collect();
    let asks: Vec<_> = homes
        .iter()
        .zip(&grids)
        .filter_map(|(h, g)| Some((h.user.clone(), h.meter.clone()?, g.clone()?)))
        .collect();
    let mut read = energy::bought_many(pool, &asks, max_gap).await?.into_iter();
    let mut out = Vec::with_capacity(homes.len());
    for (h, g) in homes.iter().zip(grids) {
        let history = match (&h.meter, g) {
            (Some(_), Some(g)) => read.next().map(|r| (g[0], r)),
            _ => None,
        };
        out.push(measure(h, history, others));
    }
    Ok(out)
}

/// Baseline, actual and reduction per half hour of one home from its meter's
/// history (none: no meter, or a window with no half hour); with the (start,
/// baseline, actual) of every slot when all are known.
#[allow(clippy::type_complexity)]
fn measure(
    h: &Home,
    history: Option<(Grid, Bought)>,
    others: &[OffsetDateTime],
) -> (Value, Option<Vec<(OffsetDateTime, f64, f64)>>) {
    let mut home = json!({
        "home": h.id, "meter": h.meter, "commanded": h.commanded, "responded": h.responded,
        "commands_failed": h.failed, "baseline_days": [], "slots": [],
        "baseline_kwh": null, "actual_kwh": null, "reduction_kwh": null, "note": null,
    });
    if h.meter.is_none() {
        home["note"] = json!("the home has no smart meter");
        return (home, None);
    }
    let Some((window, read)) = history else {
        return (home, None);
    };
    let bought = match read {
        Ok(bought) => bought,
        Err(e) => {
            home["note"] = json!(format!("the meter cannot be read: {e}"));
            return (home, None);
        }
    };
    // Day `k` before the event, half hour `i` of the window.
    let at = |k: usize, i: usize| {
        bought
            .get(k)
            .and_then(|d| d.get(i).copied().flatten())
            .map(|e| e.kwh())
    };
    let local_day = |t: OffsetDateTime| t.to_offset(h.offset).date();
    let event_day = local_day(window.start);
    let days: Vec<Day> = (1..=LOOKBACK_DAYS)
        .map(|k| Day {
            date: event_day - Duration::days(k),
            kwh: (0..window.len).map(|i| at(k as usize, i)).collect(),
        })
        .collect();
    let excluded: Vec<_> = others.iter().map(|t| local_day(*t)).collect();
    let baseline = high_4_of_5(event_day, &days, &excluded);
    if let Some(b) = &baseline {
        home["baseline_days"] = json!(b.days.iter().map(|d| d.to_string()).collect::<Vec<_>>());
    } else {
        home["note"] = json!("fewer than 5 comparable days with complete meter data");
    }
    let mut complete = Vec::new();
    let mut slots = Vec::new();
    for i in 0..window.len {
        let t = window.slot_start(i);
        let b = baseline.as_ref().map(|b| b.kwh[i]);
        let a = at(0, i);
        if let (Some(b), Some(a)) = (b, a) {
            complete.push((t, b, a));
        }
        slots.push(json!({
            "start": rfc3339(t.to_offset(h.offset)),
            "baseline_kwh": b.map(round), "actual_kwh": a.map(round),
            "reduction_kwh": b.zip(a).map(|(b, a)| round(b - a)),
        }));
    }
    home["slots"] = Value::Array(slots);
    if complete.len() == window.len {
        let (b, a) = complete
            .iter()
            .fold((0.0, 0.0), |s, c| (s.0 + c.1, s.1 + c.2));
        home["baseline_kwh"] = json!(round(b));
        home["actual_kwh"] = json!(round(a));
        home["reduction_kwh"] = json!(round(b - a));
        (home, Some(complete))
    } else {
        if home["note"].is_null() {
            home["note"] =
                json!("the meter has a gap in the event's half hours (or they are not over)");
        }
        (home, None)
    }
}
