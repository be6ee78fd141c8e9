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
pub const SENSORS: &[&str] = &["te", "hu", "il", "mo", "power", "energy", "energy_sold"];
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

/// `key` as an RFC 3339 time, if present; a 400 naming it if malformed.
pub(super) fn parse_time(
    params: &HashMap<String, String>,
    key: &str,
) -> ApiResult<Option<OffsetDateTime>> {
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
    // History starts when the caller's ownership did: what the device
    // measured for a previous owner is not the caller's.
    let since = crate::accounts::owned_since(&state.pool, &caller.user_id, &device, from)
        .await?
        .ok_or_else(ApiError::not_found)?;
    let window = crate::ingest::Window {
        from,
        to,
        step_secs: step as f64,
        since,
    };
    let buckets: Vec<Value> = crate::ingest::buckets(&state.pool, &device, sensor, &window)
        .await?
        .into_iter()
        .map(|b| {
            json!({
                "start": rfc3339(b.start),
                "avg": b.avg,
                "min": b.min,
                "max": b.max,
                "count": b.count,
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
