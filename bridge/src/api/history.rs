//! `GET /v1/devices/{id}/readings?sensor=te&from=…&to=…&step=…`: reading
//! history in buckets with avg/min/max/count; `sensor=power` or `energy`
//! gives a meter's power history.

use std::collections::HashMap;

use axum::extract::{Path, RawQuery, State};
use axum::Json;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::auth::{Caller, BASIC_READ};
use crate::error::{ApiError, ApiResult};
use crate::json::rfc3339;
use crate::state::AppState;

/// Quantities kept in `readings`.
pub const SENSORS: &[&str] = &["te", "hu", "il", "mo", "power", "energy"];
/// Most buckets one request may ask for.
const MAX_BUCKETS: i64 = 10_000;

/// `300`, `300s`, `5m`, `1h` or `1d` as seconds.
fn parse_step(raw: &str) -> Option<i64> {
    let raw = raw.trim();
    let (digits, unit) = match raw.char_indices().last()? {
        (i, c) if c.is_ascii_alphabetic() => (&raw[..i], c),
        _ => (raw, 's'),
    };
    let n: i64 = digits.parse().ok().filter(|n| *n > 0)?;
    let mult = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return None,
    };
    n.checked_mul(mult)
}

fn parse_time(params: &HashMap<String, String>, key: &str) -> ApiResult<Option<OffsetDateTime>> {
    params
        .get(key)
        .map(|raw| {
            OffsetDateTime::parse(raw, &Rfc3339).map_err(|_| {
                ApiError::bad_request(format!("{key} must be an RFC 3339 time, not {raw:?}"))
            })
        })
        .transpose()
}

/// The history handler.
pub async fn readings(
    State(state): State<AppState>,
    caller: Caller,
    Path(device): Path<String>,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<Value>> {
    caller.require(BASIC_READ)?;
    let params = super::query_params(query.as_deref())?;
    let sensor = params
        .get("sensor")
        .ok_or_else(|| ApiError::bad_request("sensor is required"))?;
    if !SENSORS.contains(&sensor.as_str()) {
        return Err(ApiError::bad_request(format!(
            "sensor must be one of {}",
            SENSORS.join(", ")
        )));
    }
    let to = parse_time(&params, "to")?.unwrap_or_else(OffsetDateTime::now_utc);
    let from = parse_time(&params, "from")?.unwrap_or(to - time::Duration::days(1));
    if from >= to {
        return Err(ApiError::bad_request("from must be before to"));
    }
    let step = match params.get("step") {
        None => 3600,
        Some(raw) => parse_step(raw).ok_or_else(|| {
            ApiError::bad_request("step must be a duration like 300, 5m, 1h or 1d")
        })?,
    };
    let span = (to - from).whole_seconds();
    if span / step >= MAX_BUCKETS {
        return Err(ApiError::bad_request(format!(
            "from..to / step gives more than {MAX_BUCKETS} buckets; use a larger step"
        )));
    }
    let client = state.pool.get().await?;
    // History starts when the caller's ownership did: what the device
    // measured for a previous owner is not the caller's.
    let owner_since: OffsetDateTime = client
        .query_opt(
            "SELECT greatest(owner_since, $3) FROM devices WHERE id = $1 AND user_id = $2",
            &[&device, &caller.user_id, &from],
        )
        .await?
        .ok_or_else(ApiError::not_found)?
        .get(0);
    let step_secs = step as f64;
    let rows = client
        .query(
            "SELECT date_bin(make_interval(secs => $5), at, $3) AS bucket,
                    avg(val), min(val), max(val), count(*)
             FROM readings
             WHERE device_id = $1 AND sensor = $2 AND at >= $6 AND at < $4
             GROUP BY bucket ORDER BY bucket",
            &[&device, sensor, &from, &to, &step_secs, &owner_since],
        )
        .await?;
    let buckets: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({
                "start": rfc3339(r.get(0)),
                "avg": r.get::<_, f64>(1),
                "min": r.get::<_, f64>(2),
                "max": r.get::<_, f64>(3),
                "count": r.get::<_, i64>(4),
            })
        })
        .collect();
    Ok(Json(json!({
        "device": device,
        "sensor": sensor,
        "from": rfc3339(from),
        "to": rfc3339(to),
        "step": step,
        "buckets": buckets,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_accept_seconds_and_units() {
        assert_eq!(parse_step("300"), Some(300));
        assert_eq!(parse_step("5m"), Some(300));
        assert_eq!(parse_step("1h"), Some(3600));
        assert_eq!(parse_step("2d"), Some(172_800));
        for bad in ["", "0", "-5", "5w", "m", "1.5h"] {
            assert_eq!(parse_step(bad), None, "{bad}");
        }
    }
}
