//! The homes and home_members tables: every statement of the `/1/homes…`
//! endpoints. A change that depends on the caller's role locks the home row
//! first, so an owner transfer, a kick and a part never interleave.

use deadpool_postgres::Pool;
use deadpool_postgres::{GenericClient, Transaction};
use uuid::Uuid;

use super::{Home, HomeError, Location, Member, Presence, Role};

/// Renders homes `ids` with their members, in the order the homes were made.
async fn load(client: &impl GenericClient, ids: &[String]) -> Result<Vec<Home>, HomeError> {
    let homes = client
        .query(
            "SELECT id, name, latitude, longitude, radius FROM homes
             WHERE id = ANY($1) ORDER BY created_at, id",
            &[&ids],
        )
        .await?;
    let members = client
        .query(
            "SELECT m.home_id, m.user_id, u.nickname, m.role, m.location_state, m.joined_at
             FROM home_members m JOIN users u ON u.id = m.user_id
             WHERE m.home_id = ANY($1)
             ORDER BY m.role = 'owner' DESC, m.joined_at, m.user_id",
            &[&ids],
        )
        .await?;
    Ok(homes
        .iter()
        .map(|h| {
            let id: String = h.get(0);
            let location = match (h.get(2), h.get(3), h.get(4)) {
                (Some(latitude), Some(longitude), Some(radius)) => Some(Location {
                    latitude,
                    longitude,
                    radius,
                }),
                _ => None,
            };
            let members = members
                .iter()
                .filter(|m| m.get::<_, &str>(0) == id)
                .map(|m| Member {
                    id: m.get(1),
                    nickname: m.get(2),
                    role: Role::parse(m.get(3)),
                    location_state: Presence::from_db(m.get(4)),
                    joined_at: m.get(5),
                })
                .collect();
            Home {
                id,
                name: h.get(1),
                location,
                members,
            }
        })
        .collect())
}

async fn load_one(client: &impl GenericClient, id: &str) -> Result<Home, HomeError> {
    load(client, &[id.to_string()])
        .await?
        .pop()
        .ok_or_else(|| HomeError::NotFound(id.into()))
}

/// The caller's role in `home`, locking the home row until the transaction
/// ends; [`HomeError::NotFound`] if it is not a member (or there is no such home).
async fn role_locked(tx: &Transaction<'_>, home: &str, user: &str) -> Result<Role, HomeError> {
    tx.query_opt(
        "SELECT m.role FROM homes h JOIN home_members m ON m.home_id = h.id AND m.user_id = $2
         WHERE h.id = $1 FOR UPDATE OF h",
        &[&home, &user],
    )
    .await?
    .map(|r| Role::parse(r.get(0)))
    .ok_or_else(|| HomeError::NotFound(home.into()))
}

/// Like [`role_locked`], but the caller must be the owner.
async fn owner_locked(tx: &Transaction<'_>, home: &str, user: &str) -> Result<(), HomeError> {
    match role_locked(tx, home, user).await? {
        Role::Owner => Ok(()),
        Role::Member => Err(HomeError::NotOwner(home.into())),
    }
}

/// Every home `user` is a member of.
pub async fn list(pool: &Pool, user: &str) -> Result<Vec<Home>, HomeError> {
    let client = pool.get().await?;
    let ids: Vec<String> = client
        .query(
            "SELECT home_id FROM home_members WHERE user_id = $1",
            &[&user],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    load(&client, &ids).await
}

/// Home `id`, if `user` is a member.
pub async fn get(pool: &Pool, user: &str, id: &str) -> Result<Home, HomeError> {
    let client = pool.get().await?;
    let member = client
        .query_opt(
            "SELECT 1 FROM home_members WHERE home_id = $1 AND user_id = $2",
            &[&id, &user],
        )
        .await?;
    if member.is_none() {
        return Err(HomeError::NotFound(id.into()));
    }
    load_one(&client, id).await
}

/// A new home owned by `user` (its only member so far).
pub async fn create(pool: &Pool, user: &str, name: &str) -> Result<Home, HomeError> {
    let client = pool.get().await?;
    let id = Uuid::new_v4().to_string();
    client
        .execute(
            "INSERT INTO homes (id, name, owner_id) VALUES ($1, $2, $3)",
            &[&id, &name, &user],
        )
        .await?;
    load_one(&client, &id).await
}

/// Renames home `id` (the owner only).
pub async fn rename(pool: &Pool, user: &str, id: &str, name: &str) -> Result<Home, HomeError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    owner_locked(&tx, id, user).await?;
    tx.execute(
        "UPDATE homes SET name = $2, updated_at = now() WHERE id = $1",
        &[&id, &name],
    )
    .await?;
    let home = load_one(&tx, id).await?;
    tx.commit().await?;
    Ok(home)
}

/// Deletes home `id` with its members and invites (the owner only; a home
/// with devices is refused — they have to go somewhere first).
pub async fn delete(pool: &Pool, user: &str, id: &str) -> Result<(), HomeError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    owner_locked(&tx, id, user).await?;
    let devices = tx
        .query_opt("SELECT 1 FROM devices WHERE home_id = $1 LIMIT 1", &[&id])
        .await?;
    if devices.is_some() {
        return Err(HomeError::HasDevices);
    }
    tx.execute("DELETE FROM homes WHERE id = $1", &[&id])
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Removes `target` from home `id` (the owner only; not the owner).
pub async fn kick(pool: &Pool, user: &str, id: &str, target: &str) -> Result<(), HomeError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    owner_locked(&tx, id, user).await?;
    remove_member(&tx, id, target).await?;
    tx.commit().await?;
    Ok(())
}

/// `user` leaves home `id` (not its owner).
pub async fn part(pool: &Pool, user: &str, id: &str) -> Result<(), HomeError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    role_locked(&tx, id, user).await?;
    remove_member(&tx, id, user).await?;
    tx.commit().await?;
    Ok(())
}

async fn remove_member(tx: &Transaction<'_>, home: &str, target: &str) -> Result<(), HomeError> {
    let row = tx
        .query_opt(
            "SELECT role FROM home_members WHERE home_id = $1 AND user_id = $2",
            &[&home, &target],
        )
        .await?
        .ok_or_else(|| HomeError::NotMember(target.into()))?;
    if Role::parse(row.get(0)) == Role::Owner {
        return Err(HomeError::OwnerStays);
    }
    // Migration 0013's triggers fail the member's unfinished commands on the
    // home's devices and log the devices for the live-event router.
    tx.execute(
        "DELETE FROM home_members WHERE home_id = $1 AND user_id = $2",
        &[&home, &target],
    )
    .await?;
    Ok(())
}

/// Makes member `target` the owner of home `id` (the owner only); the
/// previous owner stays as a member, the devices move to the new owner's
/// account (migration 0013).
pub async fn transfer_owner(
    pool: &Pool,
    user: &str,
    id: &str,
    target: &str,
) -> Result<Home, HomeError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    owner_locked(&tx, id, user).await?;
    let member = tx
        .query_opt(
            "SELECT 1 FROM home_members WHERE home_id = $1 AND user_id = $2",
            &[&id, &target],
        )
        .await?;
    if member.is_none() {
        return Err(HomeError::NotMember(target.into()));
    }
    tx.execute(
        "UPDATE homes SET owner_id = $2, updated_at = now() WHERE id = $1 AND owner_id <> $2",
        &[&id, &target],
    )
    .await?;
    let home = load_one(&tx, id).await?;
    tx.commit().await?;
    Ok(home)
}

/// Moves `devices` from home `from` to home `to`; the caller must own both.
/// For the device this is a change of hands (migration 0013): what it
/// recorded before stays with the people of `from`.
pub async fn move_devices(
    pool: &Pool,
    user: &str,
    from: &str,
    to: &str,
    devices: &[String],
) -> Result<(), HomeError> {
    if from == to {
        return Err(HomeError::SameHome);
    }
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    // Lock both homes in one order so two opposite moves cannot deadlock.
    let (first, second) = if from < to { (from, to) } else { (to, from) };
    owner_locked(&tx, first, user).await?;
    owner_locked(&tx, second, user).await?;
    let moved = tx
        .query(
            "UPDATE devices SET home_id = $2, updated_at = now()
             WHERE id = ANY($3) AND home_id = $1 RETURNING id",
            &[&from, &to, &devices],
        )
        .await?;
    if let Some(missing) = devices
        .iter()
        .find(|d| !moved.iter().any(|r| r.get::<_, &str>(0) == d.as_str()))
    {
        return Err(HomeError::NotInHome(missing.clone()));
    }
    tx.commit().await?;
    Ok(())
}

/// Sets (or with `None` clears) the geofence of home `id` (the owner only).
pub async fn set_location(
    pool: &Pool,
    user: &str,
    id: &str,
    location: Option<Location>,
) -> Result<Home, HomeError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    owner_locked(&tx, id, user).await?;
    let (lat, lon, radius) = match location {
        Some(l) => (Some(l.latitude), Some(l.longitude), Some(l.radius)),
        None => (None, None, None),
    };
    tx.execute(
        "UPDATE homes SET latitude = $2, longitude = $3, radius = $4, updated_at = now()
         WHERE id = $1",
        &[&id, &lat, &lon, &radius],
    )
    .await?;
    let home = load_one(&tx, id).await?;
    tx.commit().await?;
    Ok(home)
}

/// What a location-state update changed.
#[derive(Debug, Clone, PartialEq)]
pub struct PresenceChange {
    /// The member's state before.
    pub before: Presence,
    /// Members of the home at home now, this one included.
    pub at_home: i64,
    /// Members of the home.
    pub members: i64,
}

/// Records that `user` is now `state` (at home or away) for home `id`.
pub async fn set_presence(
    pool: &Pool,
    user: &str,
    id: &str,
    state: Presence,
) -> Result<PresenceChange, HomeError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    role_locked(&tx, id, user).await?;
    let before = tx
        .query_one(
            "SELECT location_state FROM home_members WHERE home_id = $1 AND user_id = $2",
            &[&id, &user],
        )
        .await?;
    tx.execute(
        "UPDATE home_members SET location_state = $3, location_updated_at = now()
         WHERE home_id = $1 AND user_id = $2",
        &[&id, &user, &state.as_str()],
    )
    .await?;
    let counts = tx
        .query_one(
            "SELECT count(*) FILTER (WHERE location_state = 'home'), count(*)
             FROM home_members WHERE home_id = $1",
            &[&id],
        )
        .await?;
    tx.commit().await?;
    Ok(PresenceChange {
        before: Presence::from_db(before.get(0)),
        at_home: counts.get(0),
        members: counts.get(1),
    })
}
