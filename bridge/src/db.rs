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

/// A pooled connection a long-running worker keeps while work keeps coming,
/// so its work never queues behind REST calls for a free one: taken from the
/// pool when needed, given back when the worker has had no work for
/// [`Held::IDLE`] ([`Held::release`]) and after a failure (the pool checks it
/// before anyone reuses it).
#[derive(Default)]
pub struct Held(Option<deadpool_postgres::Object>);

impl Held {
    /// How long a worker keeps its connection once its work runs out. Work
    /// that QoS 1 acknowledgements pace arrives in bursts with short gaps;
    /// a worker giving its connection back in every gap took a fresh one per
    /// batch, behind every REST call waiting for the pool (fleet run 42: up
    /// to 377 waiting, readings stored at half the rate devices sent them).
    pub const IDLE: std::time::Duration = std::time::Duration::from_secs(2);

    /// Whether a connection is held.
    pub fn is_held(&self) -> bool {
        self.0.is_some()
    }

    /// Runs `work` on the held connection, taking one from `pool` first if
    /// none is held; gives it back if `work` fails.
    pub async fn run<T>(
        &mut self,
        pool: &deadpool_postgres::Pool,
        work: impl AsyncFnOnce(&mut deadpool_postgres::Object) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        let client = match &mut self.0 {
            Some(client) => client,
            None => self.0.insert(pool.get().await?),
        };
        let outcome = work(client).await;
        if outcome.is_err() {
            self.0 = None;
        }
        outcome
    }

    /// Gives the connection back to the pool (if one is held).
    pub fn release(&mut self) {
        self.0 = None;
    }

    /// The worker's next piece of work from `rx` (`None` once it is closed);
    /// the connection is given back if none comes within [`Held::IDLE`].
    pub async fn next<T>(&mut self, rx: &mut tokio::sync::mpsc::Receiver<T>) -> Option<T> {
        if self.is_held() {
            match tokio::time::timeout(Self::IDLE, rx.recv()).await {
                Ok(next) => return next,
                Err(_) => self.release(),
            }
        }
        rx.recv().await
    }
}
