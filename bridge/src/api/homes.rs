//! `/1/homes…` and `/1/invites/{token}`: homes, their members, invites,
//! owner transfer, moving devices between homes and geofencing, in the
//! official document's shapes (`HomeResponse`, `UserAndRole`, `HomeInvite`).
//! Handlers parse and answer; the rules are `crate::homes`.
//!
//! A change that takes devices away from someone (kick, part, devices moved
//! out) answers only once the live-event router and every connected broker
//! node have applied it, so no event of those devices reaches that person's
//! stream, and no message their integrations, after the answer.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::Json;
use serde_json::{json, Value};

use crate::auth::{Caller, HOME_READ, HOME_WRITE};
use crate::error::{ApiError, ApiResult};
use crate::form::Form;
use crate::homes::{self, Home, HomeError, Invite, Location, Presence};
use crate::json::{number, rfc3339};
use crate::state::AppState;

/// Most devices one transfer may move.
const MAX_TRANSFER: usize = 100;
/// How long an answer waits for the live-event router (it reads every 200 ms).
const SETTLE_LIMIT: Duration = Duration::from_secs(5);

impl From<HomeError> for ApiError {
    fn from(e: HomeError) -> Self {
        match e {
            HomeError::Db(e) => e.into(),
            HomeError::NotFound(_) | HomeError::NoInvite => ApiError::not_found(),
            HomeError::NotOwner(_) => ApiError::forbidden_because(e.to_string()),
            HomeError::HasDevices | HomeError::AlreadyMember => ApiError::conflict(e.to_string()),
            HomeError::NotMember(_)
            | HomeError::OwnerStays
            | HomeError::NotInHome(_)
            | HomeError::SameHome
            | HomeError::InviteExpired
            | HomeError::InviteUsed => ApiError::bad_request(e.to_string()),
        }
    }
}

/// Nature's `HomeResponse`. Kumo has no town database: `town` is null.
fn home_json(h: &Home) -> Value {
    json!({
        "id": h.id,
        "name": h.name,
        "town": Value::Null,
        "location": h.location.map(|l| json!({
            "latitude": number(l.latitude),
            "longitude": number(l.longitude),
            "radius": number(l.radius),
        })),
        "users": h.members.iter().map(|m| json!({
            "id": m.id,
            "nickname": m.nickname,
            "role": m.role.as_str(),
            "location_state": m.location_state.as_str(),
            "joined_at": rfc3339(m.joined_at),
        })).collect::<Vec<_>>(),
    })
}

/// Nature's `HomeInvite`; `url` is the path that shows and accepts it.
fn invite_json(token: &str, i: &Invite) -> Value {
    json!({
        "url": format!("/1/invites/{token}"),
        "home": {"id": i.home_id, "name": i.home_name},
        "user": {"id": i.user_id, "nickname": i.user_nickname},
        "expires_at": rfc3339(i.expires_at),
    })
}

fn name(form: &Form) -> ApiResult<&str> {
    homes::check_name(form.required("name")?).map_err(ApiError::bad_request)
}

/// Waits until the live-event router and every connected broker node have
/// applied every ownership-log row committed so far (see the module header).
async fn settle(state: &AppState) -> ApiResult<()> {
    let end = {
        let client = state.pool.get().await?;
        crate::accounts::ownership_log_end(&client).await?
    };
    let nodes = async {
        if let Some(sync) = &state.ownership {
            sync.wait_applied(end).await;
        }
    };
    let both = async { tokio::join!(state.events.wait_followed(end), nodes) };
    if tokio::time::timeout(SETTLE_LIMIT, both).await.is_err() {
        tracing::warn!(
            seq = end,
            "the live-event router or a broker node did not catch up with a home change"
        );
        return Err(ApiError::unavailable());
    }
    Ok(())
}

/// `GET /1/homes`.
pub async fn list(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Value>> {
    caller.require(HOME_READ)?;
    let homes = homes::list(&state.pool, &caller.user_id).await?;
    Ok(Json(homes.iter().map(home_json).collect()))
}

/// `POST /1/homes` with `name`.
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    form: Form,
) -> ApiResult<Json<Value>> {
    caller.require(HOME_WRITE)?;
    let home = homes::create(&state.pool, &caller.user_id, name(&form)?).await?;
    Ok(Json(home_json(&home)))
}

/// `POST /1/homes/{homeid}` with `name`.
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    form: Form,
) -> ApiResult<Json<Value>> {
    caller.require(HOME_WRITE)?;
    let home = homes::rename(&state.pool, &caller.user_id, &id, name(&form)?).await?;
    Ok(Json(home_json(&home)))
}

/// `POST /1/homes/{homeid}/delete`.
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    _form: Form,
) -> ApiResult<Json<Value>> {
    caller.require(HOME_WRITE)?;
    homes::delete(&state.pool, &caller.user_id, &id).await?;
    Ok(Json(json!({})))
}

/// `GET /1/homes/{homeid}/devices`.
pub async fn devices(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require(HOME_READ)?;
    homes::get(&state.pool, &caller.user_id, &id).await?;
    let client = state.pool.get().await?;
    let devices = crate::views::home_devices(&**client, &caller.user_id, &id).await?;
    Ok(Json(Value::Array(devices)))
}

/// `GET /1/homes/{homeid}/users`: `UserAndRole`s, the owner first.
pub async fn users(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require(HOME_READ)?;
    let home = homes::get(&state.pool, &caller.user_id, &id).await?;
    Ok(Json(
        home.members
            .iter()
            .map(|m| json!({"user": {"id": m.id, "nickname": m.nickname}, "role": m.role.as_str()}))
            .collect(),
    ))
}

/// `POST /1/homes/{homeid}/invites`: a new invite (the token is in `url`).
pub async fn invite(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    _form: Form,
) -> ApiResult<Json<Value>> {
    caller.require(HOME_WRITE)?;
    let ttl = time::Duration::seconds(
        i64::try_from(state.homes.invite_ttl_secs).unwrap_or(i64::MAX / 1_000_000),
    );
    let (token, invite) = homes::create_invite(&state.pool, &caller.user_id, &id, ttl).await?;
    Ok(Json(invite_json(&token, &invite)))
}

/// `GET /1/invites/{invitetoken}`.
pub async fn show_invite(
    State(state): State<AppState>,
    caller: Caller,
    Path(token): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require(HOME_READ)?;
    let invite = homes::show_invite(&state.pool, &token).await?;
    Ok(Json(invite_json(&token, &invite)))
}

/// `POST /1/invites/{invitetoken}`: join the home.
pub async fn accept_invite(
    State(state): State<AppState>,
    caller: Caller,
    Path(token): Path<String>,
    _form: Form,
) -> ApiResult<Json<Value>> {
    caller.require(HOME_WRITE)?;
    let home = homes::accept_invite(&state.pool, &caller.user_id, &token).await?;
    settle(&state).await?;
    let home = homes::get(&state.pool, &caller.user_id, &home).await?;
    Ok(Json(home_json(&home)))
}

/// `POST /1/homes/{homeid}/kick` with `user`.
pub async fn kick(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    form: Form,
) -> ApiResult<Json<Value>> {
    caller.require(HOME_WRITE)?;
    let user = form.required_nonempty("user")?;
    homes::kick(&state.pool, &caller.user_id, &id, user).await?;
    settle(&state).await?;
    Ok(Json(json!({})))
}

/// `POST /1/homes/{homeid}/part`.
pub async fn part(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    _form: Form,
) -> ApiResult<Json<Value>> {
    caller.require(HOME_WRITE)?;
    homes::part(&state.pool, &caller.user_id, &id).await?;
    settle(&state).await?;
    Ok(Json(json!({})))
}

/// `POST /1/homes/{homeid}/owner` with `user`.
pub async fn owner(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    form: Form,
) -> ApiResult<Json<Value>> {
    caller.require(HOME_WRITE)?;
    let user = form.required_nonempty("user")?;
    let home = homes::transfer_owner(&state.pool, &caller.user_id, &id, user).await?;
    settle(&state).await?;
    Ok(Json(home_json(&home)))
}

/// `POST /1/homes/{homeid}/transfer/{tohomeid}` with `devices`
/// (comma-separated ids).
pub async fn transfer(
    State(state): State<AppState>,
    caller: Caller,
    Path((from, to)): Path<(String, String)>,
    form: Form,
) -> ApiResult<Json<Value>> {
    caller.require(HOME_WRITE)?;
    let mut devices: Vec<String> = form
        .required_nonempty("devices")?
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(str::to_string)
        .collect();
    devices.sort();
    devices.dedup();
    if devices.is_empty() || devices.len() > MAX_TRANSFER {
        return Err(ApiError::bad_request(format!(
            "devices must list 1 to {MAX_TRANSFER} device ids, comma-separated"
        )));
    }
    homes::move_devices(&state.pool, &caller.user_id, &from, &to, &devices).await?;
    settle(&state).await?;
    Ok(Json(json!({})))
}

/// `POST /1/homes/{homeid}/location` with `latitude`, `longitude`, `radius` (metres).
pub async fn set_location(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    form: Form,
) -> ApiResult<Json<Value>> {
    caller.require(HOME_WRITE)?;
    let location = Location::new(
        form.required_number("latitude")?,
        form.required_number("longitude")?,
        form.required_number("radius")?,
    )
    .map_err(ApiError::bad_request)?;
    let home = homes::set_location(&state.pool, &caller.user_id, &id, Some(location)).await?;
    Ok(Json(home_json(&home)))
}

/// `POST /1/homes/{homeid}/location/delete`.
pub async fn delete_location(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    _form: Form,
) -> ApiResult<Json<Value>> {
    caller.require(HOME_WRITE)?;
    let home = homes::set_location(&state.pool, &caller.user_id, &id, None).await?;
    Ok(Json(home_json(&home)))
}

/// `POST /1/homes/{homeid}/location_state/update` with `state` (`home` or
/// `away`): where the caller is now.
pub async fn update_location_state(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    form: Form,
) -> ApiResult<Json<Value>> {
    caller.require(HOME_WRITE)?;
    let presence = Presence::parse(form.required("state")?)
        .ok_or_else(|| ApiError::bad_request("state must be home or away"))?;
    let change = homes::set_presence(&state.pool, &caller.user_id, &id, presence).await?;
    if change.before != presence {
        let at_home = u32::try_from(change.at_home).unwrap_or(u32::MAX);
        let arrived = presence == Presence::Home;
        state
            .rules
            .home_presence(&id, &caller.user_id, arrived, at_home)
            .await;
    }
    Ok(Json(json!({})))
}
