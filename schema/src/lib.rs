//! Kumo's database: the SQL migrations, the connection pool and the private
//! PostgreSQL server that `kumo up` and the tests run when no URL is configured.
//!
//! This crate knows nothing about devices or the REST API; it owns getting a
//! migrated database and handing out connections to it.

pub mod embedded;
pub mod migrate;
pub mod pool;
pub mod settings;

pub use embedded::{running_server_url, EmbeddedError, EmbeddedOptions, EmbeddedPostgres};
pub use migrate::{migrate, MigrateError, MigrationReport, MIGRATIONS};
pub use pool::{connect_pool, PoolError};
pub use settings::{redacted_url, DatabaseSettings, EmbeddedSettings};
