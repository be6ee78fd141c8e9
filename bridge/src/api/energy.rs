//! `GET /v1/devices/{id}/energy?from=…&to=…&step=30m|1h|1d&tz=…&format=json|csv`:
//! a smart meter's energy bought and sold and its peak power per slot
//! (`crate::energy`), as JSON or CSV.

use std::collections::HashMap;
use std::fmt::Write as _;

use axum::extract::{Path, RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime, UtcOffset};

use crate::auth::{Caller, BASIC_READ};
use crate::energy::{self, EnergyError, Query, Slot, Step};
use crate::error::{ApiError, ApiResult};
use crate::json::number;
use crate::state::AppState;

impl From<EnergyError> for ApiError {
    fn from(e: EnergyError) -> Self {
        match e {
            EnergyError::NotFound(_) => ApiError::not_found(),
            EnergyError::Db(e) => e.into(),
            bad @ (EnergyError::Order | EnergyError::Span | EnergyError::NotAMeter(_)) => {
                ApiError::bad_request(bad.to_string())
            }
        }
    }
}

/// `tz`: `Z`, `UTC` or `±HH:MM`. An unencoded `+` arrives as a space (form
/// decoding) and is read as `+`.
pub(crate) fn parse_offset(raw: &str) -> Option<UtcOffset> {
    if raw == "Z" || raw == "UTC" {
        return Some(UtcOffset::UTC);
    }
    let (sign, rest) = match raw.as_bytes().first()? {
        b'+' | b' ' => (1, &raw[1..]),
        b'-' => (-1, &raw[1..]),
        _ => return None,
    };
    let (h, m) = rest.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (i8, i8) = (h.parse().ok()?, m.parse().ok()?);
    if !(0..=14).contains(&h) || !(0..60).contains(&m) {
        return None;
    }
    UtcOffset::from_hms(sign * h, sign * m, 0).ok()
}

fn parse_query(params: &HashMap<String, String>, max_gap: Duration) -> ApiResult<Query> {
    let time = |key: &str| super::history::parse_time(params, key);
    let to = time("to")?.unwrap_or_else(OffsetDateTime::now_utc);
    let from = time("from")?.unwrap_or(to - Duration::days(1));
    let step = match params.get("step") {
        None => Step::HalfHour,
        Some(raw) => Step::parse(raw)
            .ok_or_else(|| ApiError::bad_request("step must be one of 30m, 1h, 1d"))?,
    };
    let offset = match params.get("tz") {
        None => UtcOffset::UTC,
        Some(raw) => parse_offset(raw).ok_or_else(|| {
            ApiError::bad_request("tz must be Z or a UTC offset like +09:00 (write + as %2B)")
        })?,
    };
    Ok(Query {
        from,
        to,
        step,
        offset,
        max_gap,
    })
}

/// RFC 3339 in the slot's offset, whole seconds.
fn local(t: OffsetDateTime, offset: UtcOffset) -> String {
    let t = t.to_offset(offset);
    t.format(&Rfc3339).unwrap_or_else(|_| format!("{t:?}"))
}

/// `Z` or `±HH:MM`.
fn offset_name(o: UtcOffset) -> String {
    let secs = o.whole_seconds();
    if secs == 0 {
        return "Z".into();
    }
    let sign = if secs < 0 { '-' } else { '+' };
    let abs = secs.unsigned_abs();
    format!("{sign}{:02}:{:02}", abs / 3600, abs % 3600 / 60)
}

fn kwh(e: Option<energy::Energy>) -> Value {
    e.map_or(Value::Null, |e| number(e.kwh()))
}

/// The handler.
pub async fn energy(
    State(state): State<AppState>,
    caller: Caller,
    Path(device): Path<String>,
    RawQuery(query): RawQuery,
) -> ApiResult<Response> {
    caller.require(BASIC_READ)?;
    let params = super::query_params(query.as_deref())?;
    let csv = match params.get("format").map(String::as_str) {
        None | Some("json") => false,
        Some("csv") => true,
        Some(_) => return Err(ApiError::bad_request("format must be json or csv")),
    };
    let q = parse_query(&params, state.energy.max_gap())?;
    let (grid, slots) = energy::history(&state.pool, &caller.user_id, &device, &q).await?;
    if csv {
        return Ok(render_csv(&slots, &q).into_response());
    }
    let rendered: Vec<Value> = slots
        .iter()
        .map(|s| {
            json!({
                "start": local(s.start, q.offset),
                "bought_kwh": kwh(s.bought),
                "sold_kwh": kwh(s.sold),
                "peak_w": s.peak_w.map_or(Value::Null, number),
                "gap": s.gap,
            })
        })
        .collect();
    let known = |f: fn(&Slot) -> Option<energy::Energy>| {
        kwh(Some(
            slots
                .iter()
                .filter_map(f)
                .fold(Default::default(), |a, b| a + b),
        ))
    };
    Ok(Json(json!({
        "device": device,
        "from": local(grid.start, q.offset),
        "to": local(grid.end(), q.offset),
        "step": q.step.as_str(),
        "tz": offset_name(q.offset),
        "slots": rendered,
        "total": {
            "bought_kwh": known(|s| s.bought),
            "sold_kwh": known(|s| s.sold),
            "gaps": slots.iter().filter(|s| s.gap).count(),
        },
    }))
    .into_response())
}

fn render_csv(slots: &[Slot], q: &Query) -> Response {
    let mut out = String::from("start,end,bought_kwh,sold_kwh,peak_w,gap\r\n");
    let cell = |v: Value| {
        if v.is_null() {
            String::new()
        } else {
            v.to_string()
        }
    };
    for s in slots {
        // Writing to a String cannot fail.
        let _ = write!(
            out,
            "{},{},{},{},{},{}\r\n",
            local(s.start, q.offset),
            local(s.start + q.step.duration(), q.offset),
            cell(kwh(s.bought)),
            cell(kwh(s.sold)),
            cell(s.peak_w.map_or(Value::Null, number)),
            s.gap,
        );
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/csv; charset=utf-8; header=present",
        )],
        out,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_z_or_signed_hours_and_minutes() {
        assert_eq!(parse_offset("Z"), Some(UtcOffset::UTC));
        assert_eq!(parse_offset("+09:00"), UtcOffset::from_hms(9, 0, 0).ok());
        assert_eq!(parse_offset(" 09:00"), UtcOffset::from_hms(9, 0, 0).ok());
        assert_eq!(parse_offset("-03:30"), UtcOffset::from_hms(-3, -30, 0).ok());
        for bad in [
            "", "9", "+9", "+09", "+0900", "+15:00", "+09:60", "JST", "-1:00",
        ] {
            assert_eq!(parse_offset(bad), None, "{bad}");
        }
    }

    #[test]
    fn steps_are_the_three_slot_lengths() {
        assert_eq!(Step::parse("30m"), Some(Step::HalfHour));
        assert_eq!(
            Step::parse("1d").map(Step::duration),
            Some(Duration::days(1))
        );
        for bad in ["", "5m", "1800", "60m", "1H"] {
            assert_eq!(Step::parse(bad), None, "{bad}");
        }
    }
}
