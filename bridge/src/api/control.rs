//! Appliance control: `aircon_settings` (`/1` and `/2`), `tv` and `light`.
//!
//! Every request is validated against the appliance model's capabilities: a
//! mode, temperature or button the model does not have is a 400 naming what
//! is allowed, never a silent no-op. A valid request becomes a durable
//! command; the stored (confirmed) state changes only when the device acks,
//! while the response shows the state the command will produce, as Nature's does.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use deadpool_postgres::Pool;
use serde_json::{json, Value};

use crate::api::dispatch::{dispatch, Dispatch};
use crate::auth::{Caller, SENDIR};
use crate::catalog::{self, AcMode, ApplianceType, Model};
use crate::commands::CommandKind;
use crate::error::{ApiError, ApiResult};
use crate::form::Form;
use crate::json::rfc3339;
use crate::state::AppState;

/// An appliance being controlled.
pub(crate) struct Target {
    pub id: String,
    pub device: String,
    kind: ApplianceType,
    model: Option<&'static Model>,
    settings: Option<Value>,
    state: Option<Value>,
}

/// The control endpoints a command can come from (rules send the same ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Control {
    Aircon,
    Tv,
    Light,
}

/// A validated control request: the command to queue and the state it leads to.
pub(crate) struct Planned {
    pub kind: CommandKind,
    pub payload: Value,
    /// The settings or state the response shows.
    pub projected: Value,
}

async fn target(state: &AppState, caller: &Caller, id: &str) -> ApiResult<Target> {
    target_of(&state.pool, &caller.user_id, id).await
}

/// Appliance `id` of `user_id`, or a 404 (also for other users' appliances).
pub(crate) async fn target_of(pool: &Pool, user_id: &str, id: &str) -> ApiResult<Target> {
    let client = pool.get().await?;
    let select = client
        .prepare_cached(
            "SELECT device_id, type, model_id, settings, state FROM appliances
             WHERE id = $1 AND user_id = $2",
        )
        .await?;
    let r = client
        .query_opt(&select, &[&id, &user_id])
        .await?
        .ok_or_else(ApiError::not_found)?;
    Ok(Target {
        id: id.to_string(),
        device: r.get(0),
        kind: ApplianceType::parse(&r.get::<_, String>(1)).unwrap_or(ApplianceType::Ir),
        model: r
            .get::<_, Option<String>>(2)
            .and_then(|m| catalog::model(&m)),
        settings: r.get(3),
        state: r.get(4),
    })
}

/// Queues `payload` for the appliance's device; answers with `body`.
async fn queue(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    t: &Target,
    kind: CommandKind,
    payload: Value,
    body: Value,
) -> ApiResult<Response> {
    dispatch(
        state,
        caller,
        headers,
        Dispatch {
            device: &t.device,
            appliance: Some(&t.id),
            kind,
            payload,
            body,
        },
    )
    .await
}

fn one_of(field: &str, value: &str, allowed: &[&str], what: &str) -> ApiResult<()> {
    if allowed.contains(&value) {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "{field} {value:?} is not supported by {what}; allowed: {}",
            allowed
                .iter()
                .map(|a| format!("{a:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        )))
    }
}

/// Resolves one per-mode setting: the given value (empty means automatic and
/// is always accepted, as Nature documents and clients rely on), else the
/// current one if the mode allows it, else the mode's first value.
fn pick(
    form: &Form,
    field: &str,
    current: Option<&str>,
    allowed: &[&str],
    mode: &str,
) -> ApiResult<String> {
    let what = format!("mode {mode:?} of this air conditioner");
    match form.get(field) {
        Some("") => Ok(String::new()),
        Some(v) => one_of(field, v, allowed, &what).map(|()| v.to_string()),
        None => Ok(current
            .filter(|c| c.is_empty() || allowed.contains(c))
            .or_else(|| allowed.first().copied())
            .unwrap_or_default()
            .to_string()),
    }
}

/// Validates an aircon request against the model; returns the new settings
/// (without `updated_at`, so an idempotent retry carries the same payload).
fn aircon_settings(t: &Target, form: &Form) -> ApiResult<Value> {
    let (unit, modes, fixed) = match (t.kind, t.model.and_then(Model::aircon)) {
        (ApplianceType::Ac, Some(caps)) => caps,
        _ => {
            return Err(ApiError::bad_request(
                "this appliance is not an air conditioner with known capabilities",
            ))
        }
    };
    let current = t.settings.clone().unwrap_or(Value::Null);
    let cur = |k: &str| current.get(k).and_then(Value::as_str);
    let names: Vec<&str> = modes.iter().map(|m| m.name).collect();
    // An absent or empty field keeps the current value, as clients that
    // always send every field expect.
    let given = |k: &str| form.get(k).filter(|v| !v.is_empty());
    let mode_name = match given("operation_mode") {
        Some(m) => m,
        None => cur("mode").unwrap_or_default(),
    };
    one_of("operation_mode", mode_name, &names, "this air conditioner")?;
    let mode: &AcMode = modes
        .iter()
        .find(|m| m.name == mode_name)
        .ok_or_else(|| ApiError::bad_request("operation_mode is not supported"))?;
    if let Some(u) = form.get("temperature_unit") {
        if !u.is_empty() && u != unit {
            return Err(ApiError::bad_request(format!(
                "temperature_unit {u:?} is not supported; this air conditioner uses {unit:?}"
            )));
        }
    }
    let temp = match given("temperature") {
        Some(v) => {
            one_of(
                "temperature",
                v,
                mode.temp,
                &format!("mode {mode_name:?} of this air conditioner"),
            )?;
            v.to_string()
        }
        None => cur("temp")
            .filter(|c| mode.temp.contains(c))
            .or_else(|| {
                mode.temp
                    .iter()
                    .find(|t| **t == "26")
                    .or(mode.temp.first())
                    .copied()
            })
            .unwrap_or_default()
            .to_string(),
    };
    let vol = pick(form, "air_volume", cur("vol"), mode.vol, mode_name)?;
    let dir = pick(form, "air_direction", cur("dir"), mode.dir, mode_name)?;
    let dirh = pick(form, "air_direction_h", cur("dirh"), mode.dirh, mode_name)?;
    // Absent keeps the power state; some clients say `power-on` for
    // Nature's empty "on" button.
    let button = match form.get("button") {
        None => cur("button").unwrap_or("power-off"),
        Some("power-on") => "",
        Some(other) => other,
    };
    let mut buttons = vec!["", "power-off"];
    buttons.extend_from_slice(fixed);
    one_of("button", button, &buttons, "this air conditioner")?;
    if let Some((id, _)) = form.prefixed("extra").first() {
        return Err(ApiError::bad_request(format!(
            "extra.{id} is not supported by this air conditioner"
        )));
    }
    Ok(json!({
        "temp": temp, "temp_unit": unit, "mode": mode_name, "vol": vol, "dir": dir,
        "dirh": dirh, "button": button,
    }))
}

fn stamped(mut settings: Value) -> Value {
    settings["updated_at"] = Value::String(rfc3339(time::OffsetDateTime::now_utc()));
    settings
}

/// `POST /1/appliances/{id}/aircon_settings`: responds with the settings.
pub async fn aircon_v1(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    form: Form,
) -> ApiResult<Response> {
    caller.require(SENDIR)?;
    let t = target(&state, &caller, &id).await?;
    let p = plan(&t, Control::Aircon, &form)?;
    let body = stamped(p.projected);
    queue(&state, &caller, &headers, &t, p.kind, p.payload, body).await
}

/// `POST /2/appliances/{id}/aircon_settings`: responds with the whole appliance.
pub async fn aircon_v2(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    form: Form,
) -> ApiResult<Response> {
    caller.require(SENDIR)?;
    let t = target(&state, &caller, &id).await?;
    let p = plan(&t, Control::Aircon, &form)?;
    let mut appliance = super::appliances::one(&state, &caller, &id).await?;
    appliance["settings"] = stamped(p.projected);
    queue(&state, &caller, &headers, &t, p.kind, p.payload, appliance).await
}

fn button<'f>(t: &Target, form: &'f Form, kind: ApplianceType) -> ApiResult<&'f str> {
    let model = match (t.kind == kind, t.model) {
        (true, Some(m)) => m,
        _ => {
            return Err(ApiError::bad_request(format!(
                "this appliance is not a {} with known buttons",
                kind.as_str()
            )))
        }
    };
    let pressed = form.required_nonempty("button")?;
    let names: Vec<&str> = model.buttons().iter().map(|b| b.name).collect();
    one_of("button", pressed, &names, "this appliance")?;
    Ok(pressed)
}

/// `POST /1/appliances/{id}/tv`: `button`; responds with the TV state.
pub async fn tv(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    form: Form,
) -> ApiResult<Response> {
    press(&state, &caller, &id, &headers, &form, Control::Tv).await
}

/// TV and light: validates the button, queues the command, responds with the
/// state it leads to.
async fn press(
    state: &AppState,
    caller: &Caller,
    id: &str,
    headers: &HeaderMap,
    form: &Form,
    control: Control,
) -> ApiResult<Response> {
    caller.require(SENDIR)?;
    let t = target(state, caller, id).await?;
    let p = plan(&t, control, form)?;
    queue(state, caller, headers, &t, p.kind, p.payload, p.projected).await
}

/// Validates `form` against the appliance's capabilities exactly as the REST
/// endpoint for `control` does, and builds the command it would queue.
pub(crate) fn plan(t: &Target, control: Control, form: &Form) -> ApiResult<Planned> {
    match control {
        Control::Aircon => {
            let settings = aircon_settings(t, form)?;
            Ok(Planned {
                kind: CommandKind::Aircon,
                payload: json!({"settings": settings}),
                projected: settings,
            })
        }
        Control::Tv => tv_plan(t, button(t, form, ApplianceType::Tv)?),
        Control::Light => {
            let pressed = button(t, form, ApplianceType::Light)?;
            let projected = light_after(t.state.as_ref(), pressed);
            Ok(Planned {
                kind: CommandKind::Light,
                payload: json!({"button": pressed, "state": projected}),
                projected,
            })
        }
    }
}

/// The TV input a button press leads to.
fn tv_plan(t: &Target, pressed: &str) -> ApiResult<Planned> {
    let mut input = t
        .state
        .as_ref()
        .and_then(|s| s.get("input"))
        .and_then(Value::as_str)
        .unwrap_or("t")
        .to_string();
    match pressed {
        "input-terrestrial" => input = "t".into(),
        "input-bs" => input = "bs".into(),
        "input-cs" => input = "cs".into(),
        _ => {}
    }
    let projected = json!({"input": input});
    Ok(Planned {
        kind: CommandKind::Tv,
        payload: json!({"button": pressed, "state": projected}),
        projected,
    })
}

/// The light state a button press leads to.
fn light_after(current: Option<&Value>, pressed: &str) -> Value {
    let get = |k: &str| current.and_then(|s| s.get(k)).and_then(Value::as_str);
    let mut power = get("power").unwrap_or("off").to_string();
    let mut brightness: String = get("brightness").unwrap_or("0").to_string();
    let level = brightness.parse::<i32>().unwrap_or(100);
    match pressed {
        "on" => power = "on".into(),
        "off" => power = "off".into(),
        "onoff" => {
            power = if power == "on" {
                "off".into()
            } else {
                "on".into()
            }
        }
        "on-100" => (power, brightness) = ("on".into(), "100".into()),
        "night" => (power, brightness) = ("on".into(), "night".into()),
        "bright-up" => brightness = (level + 10).clamp(10, 100).to_string(),
        "bright-down" => brightness = (level - 10).clamp(10, 100).to_string(),
        _ => {}
    }
    if power == "on" && brightness == "0" {
        brightness = "100".into();
    }
    json!({"brightness": brightness, "power": power, "last_button": pressed})
}

/// `POST /1/appliances/{id}/light`: `button`; responds with the light state.
pub async fn light(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    form: Form,
) -> ApiResult<Response> {
    press(&state, &caller, &id, &headers, &form, Control::Light).await
}
