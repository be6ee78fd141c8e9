//! Homes: a household's devices shared by its members (Nature's `/1/homes…`,
//! `/1/invites…`; schema and invariants in migration 0013).
//!
//! Owns the rules of who may do what to a home: any member sees it, its
//! members and its devices, and sets their own location state; only the
//! owner renames, deletes, invites, kicks, hands ownership over, moves
//! devices out and sets the location. A home the caller is not a member of
//! is [`HomeError::NotFound`], exactly like one that does not exist. Who sees
//! which device everywhere else is the `device_access` view, not this module.
//! It holds no HTTP: the handlers are `api/homes.rs`.

mod invites;
mod store;

pub use invites::*;
pub use store::*;

use time::OffsetDateTime;

use crate::db::{db_error_from, DbError};

/// Longest home name accepted, in characters.
pub const MAX_NAME_CHARS: usize = 64;

/// Why a home operation was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum HomeError {
    #[error(transparent)]
    Db(#[from] DbError),
    /// No such home, or the caller is not one of its members.
    #[error("no home {0} of the caller")]
    NotFound(String),
    /// The caller is a member, but the operation is the owner's.
    #[error("only the owner of home {0} may do this")]
    NotOwner(String),
    /// The user named is not a member of the home.
    #[error("user {0} is not a member of this home")]
    NotMember(String),
    /// The owner cannot part or be kicked: ownership goes first.
    #[error("the owner cannot leave the home; transfer the ownership first")]
    OwnerStays,
    /// A home with devices cannot be deleted.
    #[error("the home still has devices; transfer them to another home first")]
    HasDevices,
    /// A device named is not in the home.
    #[error("device {0} is not in this home")]
    NotInHome(String),
    /// Devices can only move between two different homes.
    #[error("devices can only be transferred to another home")]
    SameHome,
    /// The invite token is unknown.
    #[error("no such invite")]
    NoInvite,
    /// The invite's time ran out.
    #[error("the invite has expired")]
    InviteExpired,
    /// The invite was accepted already.
    #[error("the invite has already been used")]
    InviteUsed,
    /// The caller already belongs to the home.
    #[error("you are already a member of this home")]
    AlreadyMember,
}

db_error_from!(HomeError);

/// A member's role in a home.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Owner,
    Member,
}

impl Role {
    fn parse(s: &str) -> Self {
        if s == "owner" {
            Self::Owner
        } else {
            Self::Member
        }
    }

    /// The role as the API names it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Owner => "owner",
            Self::Member => "member",
        }
    }
}

/// Where a member's phone last said they are (geofencing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    Unknown,
    Home,
    Away,
}

impl Presence {
    /// `home` or `away` as a client sends it (`unknown` is never sent).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "home" => Some(Self::Home),
            "away" => Some(Self::Away),
            _ => None,
        }
    }

    fn from_db(s: &str) -> Self {
        Self::parse(s).unwrap_or(Self::Unknown)
    }

    /// The state as the API names it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Home => "home",
            Self::Away => "away",
        }
    }
}

/// One member of a home.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub id: String,
    pub nickname: String,
    pub role: Role,
    pub location_state: Presence,
    pub joined_at: OffsetDateTime,
}

/// A home's geofence: a circle around it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Location {
    pub latitude: f64,
    pub longitude: f64,
    /// Metres.
    pub radius: f64,
}

impl Location {
    /// Largest radius accepted, metres.
    pub const MAX_RADIUS: f64 = 100_000.0;

    /// A location, or what is wrong with it (the field and the rule).
    pub fn new(latitude: f64, longitude: f64, radius: f64) -> Result<Self, String> {
        if !(-90.0..=90.0).contains(&latitude) {
            return Err("latitude must be between -90 and 90".into());
        }
        if !(-180.0..=180.0).contains(&longitude) {
            return Err("longitude must be between -180 and 180".into());
        }
        if !(radius > 0.0 && radius <= Self::MAX_RADIUS) {
            return Err(format!(
                "radius must be more than 0 and at most {} metres",
                Self::MAX_RADIUS
            ));
        }
        Ok(Self {
            latitude,
            longitude,
            radius,
        })
    }
}

/// A home as its members see it.
#[derive(Debug, Clone, PartialEq)]
pub struct Home {
    pub id: String,
    pub name: String,
    pub location: Option<Location>,
    /// Owner first, then members in the order they joined.
    pub members: Vec<Member>,
}

/// A home name, or what is wrong with it: not blank, at most
/// [`MAX_NAME_CHARS`] characters (control characters never get this far:
/// the form extractor refuses them).
pub fn check_name(name: &str) -> Result<&str, String> {
    let name = name.trim();
    if name.is_empty() {
        return Err("name must not be empty".into());
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(format!("name must be at most {MAX_NAME_CHARS} characters"));
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_trimmed_and_must_be_short_and_not_blank() {
        assert_eq!(check_name("  Flat  "), Ok("Flat"));
        assert!(check_name("   ").is_err());
        assert!(check_name(&"é".repeat(MAX_NAME_CHARS)).is_ok());
        assert!(check_name(&"é".repeat(MAX_NAME_CHARS + 1)).is_err());
    }

    #[test]
    fn a_location_outside_the_globe_or_with_no_radius_is_refused() {
        assert!(Location::new(35.6, 139.7, 150.0).is_ok());
        assert!(Location::new(91.0, 0.0, 1.0).is_err());
        assert!(Location::new(0.0, -181.0, 1.0).is_err());
        assert!(Location::new(0.0, 0.0, 0.0).is_err());
        assert!(Location::new(0.0, 0.0, f64::NAN).is_err());
        assert!(Location::new(f64::NAN, 0.0, 1.0).is_err());
    }

    #[test]
    fn only_home_and_away_are_location_states_a_client_may_send() {
        assert_eq!(Presence::parse("home"), Some(Presence::Home));
        assert_eq!(Presence::parse("away"), Some(Presence::Away));
        assert_eq!(Presence::parse("unknown"), None);
        assert_eq!(Presence::parse("HOME"), None);
    }
}
