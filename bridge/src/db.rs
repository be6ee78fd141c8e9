//! The one database error of the bridge: no connection from the pool, or a
//! statement that failed. Stores return it (or carry it in their own error
//! next to their domain cases); the REST layer maps it once, in `error.rs`.

/// Why a database call failed.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("no database connection: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("database error: {0}")]
    Query(#[from] tokio_postgres::Error),
}

/// `From` the pool's and the driver's errors, through [`DbError`], for an
/// error enum with a `Db(DbError)` variant, so `?` works on both.
macro_rules! db_error_from {
    ($t:ty) => {
        impl From<deadpool_postgres::PoolError> for $t {
            fn from(e: deadpool_postgres::PoolError) -> Self {
                Self::Db(e.into())
            }
        }
        impl From<tokio_postgres::Error> for $t {
            fn from(e: tokio_postgres::Error) -> Self {
                Self::Db(e.into())
            }
        }
    };
}
pub(crate) use db_error_from;
