//! Accounts, access tokens and device ownership as a library, for the CLI
//! (`kumo users …`, `kumo tokens …`, `kumo devices …`), the `/v1` token endpoints,
//! `/1/devices/{id}/delete` and the readers of `device_ownership_log`: one
//! module per concept below, re-exported here.
//!
//! Plaintext tokens exist only in the return value of [`create_token`].

mod devices;
mod ownership_log;
mod tokens;
mod users;

pub use devices::*;
pub use ownership_log::*;
pub use tokens::*;
pub use users::*;

use crate::db::{db_error_from, DbError};

/// Why an account operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("unknown scope {0:?}; known scopes: basic, basic.read, basic.write, sendir, sendrawir, detectappliance, provision, echonetlite.*.read, echonetlite.*.write, home, home.read, home.write")]
    UnknownScope(String),
    #[error("a token needs at least one scope")]
    NoScopes,
    #[error("no user with id {0}")]
    NoSuchUser(String),
    #[error("the email address {0} is already taken")]
    EmailTaken(String),
    #[error("nickname must not be empty")]
    EmptyNickname,
}

db_error_from!(AccountError);
