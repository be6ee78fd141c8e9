//! What energy history is computed from: a meter's counter and power
//! readings (`readings`: `energy` = EPC 0xE0, `energy_sold` = 0xE3, `power` =
//! 0xE7) and the scale it reported over time (`meter_scale_log`, migration
//! 0014), read for the caller's current ownership only.

use std::collections::HashMap;

use deadpool_postgres::Pool;
use time::OffsetDateTime;

use super::scale::{Scale, EPC_COEFFICIENT, EPC_EFFECTIVE_DIGITS, EPC_UNIT};
use super::slots::CounterSample;
use crate::db::DbError;

/// A device the caller sees, as energy history needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MeterAccess {
    /// Whether the device is a smart-meter gateway.
    pub is_meter: bool,
    /// History starts here: the later of the ownership's start and the
    /// time asked for.
    pub since: OffsetDateTime,
}

/// `device` if `user` sees it (its homes'), else `None`.
pub async fn access(
    pool: &Pool,
    user: &str,
    device: &str,
    not_before: OffsetDateTime,
) -> Result<Option<MeterAccess>, DbError> {
    let client = pool.get().await?;
    let row = client
        .query_opt(
            "SELECT kind = 'smart_meter', greatest(owner_since, $3) FROM devices
             WHERE id = $1 AND id IN (SELECT device_id FROM device_access WHERE user_id = $2)",
            &[&device, &user, &not_before],
        )
        .await?;
    Ok(row.map(|r| MeterAccess {
        is_meter: r.get(0),
        since: r.get(1),
    }))
}

/// [`access`] for several `(user, device)` pairs at once; answers in order.
pub async fn access_many(
    pool: &Pool,
    pairs: &[(String, String)],
    not_before: &[OffsetDateTime],
) -> Result<Vec<Option<MeterAccess>>, DbError> {
    let users: Vec<&str> = pairs.iter().map(|p| p.0.as_str()).collect();
    let devices: Vec<&str> = pairs.iter().map(|p| p.1.as_str()).collect();
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT q.i, d.kind = 'smart_meter', greatest(d.owner_since, q.nb)
             FROM unnest($1::text[], $2::text[], $3::timestamptz[]) WITH ORDINALITY
                  AS q(usr, device, nb, i)
             JOIN devices d ON d.id = q.device
             WHERE EXISTS (SELECT 1 FROM device_access a
                           WHERE a.device_id = q.device AND a.user_id = q.usr)",
            &[&users, &devices, &not_before],
        )
        .await?;
    let mut out = vec![None; pairs.len()];
    for r in &rows {
        let i: i64 = r.get(0);
        if let Some(slot) = usize::try_from(i - 1).ok().and_then(|i| out.get_mut(i)) {
            *slot = Some(MeterAccess {
                is_meter: r.get(1),
                since: r.get(2),
            });
        }
    }
    Ok(out)
}

/// A meter's readings in a time range, oldest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MeterSamples {
    /// Normal direction (bought), with the scale in effect at each.
    pub bought: Vec<CounterSample>,
    /// Reverse direction (sold).
    pub sold: Vec<CounterSample>,
    /// Instantaneous power, W.
    pub power: Vec<(OffsetDateTime, f64)>,
}

/// The readings of `device` in `[from, to]`. A counter reading for which no
/// usable unit (0xE1) is known is left out: it cannot become energy.
pub async fn samples(
    pool: &Pool,
    device: &str,
    from: OffsetDateTime,
    to: OffsetDateTime,
) -> Result<MeterSamples, DbError> {
    let many = samples_many(pool, &[(device.to_string(), from, to)], &ALL).await?;
    Ok(many.into_iter().next().unwrap_or_default())
}

/// The readings' sensors energy history is made of: bought (0xE0), sold
/// (0xE3), instantaneous power (0xE7).
pub const ALL: [&str; 3] = [BOUGHT, "energy_sold", "power"];

/// The sensor of the normal-direction counter (0xE0): all that energy
/// bought needs.
pub const BOUGHT: &str = "energy";

/// The readings of several ranges, each `(device, from, to)` as [`samples`]
/// reads one, of `sensors` only (some of [`ALL`]), in two round trips
/// whatever their number; answers in order. A device may have several
/// ranges (an event's half hours on many days): each is read and answered on
/// its own.
pub async fn samples_many(
    pool: &Pool,
    ranges: &[(String, OffsetDateTime, OffsetDateTime)],
    sensors: &[&str],
) -> Result<Vec<MeterSamples>, DbError> {
    let devices: Vec<&str> = ranges.iter().map(|r| r.0.as_str()).collect();
    let froms: Vec<OffsetDateTime> = ranges.iter().map(|r| r.1).collect();
    let tos: Vec<OffsetDateTime> = ranges.iter().map(|r| r.2).collect();
    let mut distinct = devices.clone();
    distinct.sort_unstable();
    distinct.dedup();
    let client = pool.get().await?;
    let log = client
        .query(
            "SELECT device_id, epc, val, at FROM meter_scale_log
             WHERE device_id = ANY($1) ORDER BY device_id, at, id",
            &[&distinct],
        )
        .await?;
    let mut logs: HashMap<&str, Vec<(i32, String, OffsetDateTime)>> = HashMap::new();
    for r in &log {
        logs.entry(r.get(0))
            .or_default()
            .push((r.get(1), r.get(2), r.get(3)));
    }
    let timelines: HashMap<&str, ScaleTimeline> = distinct
        .iter()
        .map(|d| {
            let log = logs.remove(d).unwrap_or_default();
            (*d, ScaleTimeline::from_log(log.into_iter()))
        })
        .collect();
    let rows = client
        .query(
            "SELECT w.i, r.sensor, r.at, r.val
             FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[])
                  WITH ORDINALITY AS w(device, lo, hi, i)
             JOIN readings r ON r.device_id = w.device AND r.at >= w.lo AND r.at <= w.hi
             WHERE r.sensor = ANY($4)
             ORDER BY w.i, r.sensor, r.at, r.val",
            &[&devices, &froms, &tos, &sensors],
        )
        .await?;
    let mut readings: Vec<Vec<(&str, OffsetDateTime, f64)>> = vec![Vec::new(); ranges.len()];
    for r in &rows {
        let i: i64 = r.get(0);
        if let Some(range) = usize::try_from(i - 1)
            .ok()
            .and_then(|i| readings.get_mut(i))
        {
            range.push((r.get(1), r.get(2), r.get(3)));
        }
    }
    let none = ScaleTimeline::default();
    Ok(devices
        .iter()
        .zip(&readings)
        .map(|(d, rows)| build(timelines.get(d).unwrap_or(&none), rows))
        .collect())
}

/// One meter's samples from its `(sensor, at, val)` rows, ordered by sensor,
/// time and value.
fn build(timeline: &ScaleTimeline, rows: &[(&str, OffsetDateTime, f64)]) -> MeterSamples {
    let mut out = MeterSamples::default();
    for &(sensor, at, val) in rows {
        let series = match sensor {
            "power" => {
                out.power.push((at, val));
                continue;
            }
            "energy" => &mut out.bought,
            _ => &mut out.sold,
        };
        // Counts are whole and not negative; two values stamped alike are
        // one reading read twice: the first stands.
        let usable = val >= 0.0 && val.fract() == 0.0 && val < 1e15;
        if !usable || series.last().is_some_and(|s| s.at == at) {
            continue;
        }
        if let Some(scale) = timeline.at(at) {
            series.push(CounterSample {
                at,
                count: val as u64,
                scale,
            });
        }
    }
    out
}

/// The scale a meter reported, as it changed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScaleTimeline(Vec<(OffsetDateTime, Option<Scale>)>);

impl ScaleTimeline {
    /// From `(epc, value, at)` log entries, oldest first. After each entry
    /// the scale is the newest value of each property; it is unusable
    /// (`None`) while the unit is unknown or a value is out of range.
    pub fn from_log(entries: impl Iterator<Item = (i32, String, OffsetDateTime)>) -> Self {
        let (mut coefficient, mut unit, mut digits) = (None, None, None);
        let mut out = Vec::new();
        for (epc, val, at) in entries {
            match epc {
                EPC_COEFFICIENT => coefficient = Some(val),
                EPC_UNIT => unit = Some(val),
                EPC_EFFECTIVE_DIGITS => digits = Some(val),
                _ => continue,
            }
            let scale = unit.as_deref().and_then(|u| {
                Scale::from_reported(coefficient.as_deref(), u, digits.as_deref()).ok()
            });
            // Entries stamped alike are one report: keep the scale after all of them.
            match out.last_mut() {
                Some((last, s)) if *last == at => *s = scale,
                _ => out.push((at, scale)),
            }
        }
        Self(out)
    }

    /// The scale in effect at `t`: the newest reported at or before it.
    /// Before the first report the first applies — a meter's scale is fixed
    /// until it is replaced, and its first report can be stored after
    /// readings stamped earlier.
    pub fn at(&self, t: OffsetDateTime) -> Option<Scale> {
        let n = self.0.partition_point(|(at, _)| *at <= t);
        let i = n.saturating_sub(1);
        self.0.get(i).and_then(|(_, s)| *s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn the_scale_in_effect_is_the_newest_reported_before_the_reading() {
        let t = datetime!(2024-05-01 00:00 UTC);
        let h = time::Duration::hours(1);
        let log = [
            (0xE1, "1".to_string(), t),
            (0xD7, "6".to_string(), t),
            (0xD3, "10".to_string(), t + h),
            (0xE1, "99".to_string(), t + h * 2),
        ];
        let tl = ScaleTimeline::from_log(log.into_iter());
        let tenth = Scale {
            coefficient: 1,
            unit: 1,
            digits: Some(6),
        };
        assert_eq!(tl.at(t - h), Some(tenth), "before the first report");
        assert_eq!(tl.at(t), Some(tenth));
        assert_eq!(
            tl.at(t + h),
            Some(Scale {
                coefficient: 10,
                ..tenth
            })
        );
        assert_eq!(tl.at(t + h * 3), None, "unit 99 is not a unit");
        assert_eq!(ScaleTimeline::default().at(t), None, "nothing reported");
        let no_unit = ScaleTimeline::from_log([(0xD7, "6".to_string(), t)].into_iter());
        assert_eq!(no_unit.at(t), None);
    }
}
