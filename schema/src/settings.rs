//! `[database]`: an external server URL, or the private server's options.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// `[database]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseSettings {
    /// An existing server, e.g. `postgres://kumo:secret@db:5432/kumo` or
    /// `host=/run/postgresql dbname=kumo`. Unset: Kumo runs its own private server.
    pub url: Option<String>,
    /// Connections in the pool (default 16).
    pub pool_size: usize,
    /// Seconds to wait for a connection (default 10).
    pub connect_timeout_secs: u64,
    pub embedded: EmbeddedSettings,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: None,
            pool_size: 16,
            connect_timeout_secs: 10,
            embedded: EmbeddedSettings::default(),
        }
    }
}

/// `[database.embedded]`: the private PostgreSQL server.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmbeddedSettings {
    /// Directory holding `initdb` and `postgres`; default: `PATH`, then the
    /// newest `/usr/lib/postgresql/*/bin`.
    pub bin_dir: Option<PathBuf>,
    /// Cluster directory; default `<data_dir>/postgres`.
    pub data_dir: Option<PathBuf>,
    /// Unprivileged user to run the server as when Kumo runs as root (default `postgres`).
    pub run_as: String,
    /// Port number in the socket name; the server listens on no TCP port (default 5432).
    pub port: u16,
    /// Seconds to wait for the server to accept connections (default 60).
    pub start_timeout_secs: u64,
    /// Database name (default `kumo`).
    pub database: String,
}

impl Default for EmbeddedSettings {
    fn default() -> Self {
        Self {
            bin_dir: None,
            data_dir: None,
            run_as: "postgres".into(),
            port: 5432,
            start_timeout_secs: 60,
            database: "kumo".into(),
        }
    }
}

impl DatabaseSettings {
    /// Fills path defaults that derive from Kumo's data directory.
    pub fn resolve_paths(&mut self, data_dir: &Path) {
        if self.embedded.data_dir.is_none() {
            self.embedded.data_dir = Some(data_dir.join("postgres"));
        }
    }

    /// Checks values; the error names the offending key.
    pub fn validate(&self) -> Result<(), String> {
        if self.pool_size == 0 {
            return Err("database.pool_size must be at least 1".into());
        }
        if self.connect_timeout_secs == 0 {
            return Err("database.connect_timeout_secs must be at least 1".into());
        }
        if let Some(url) = &self.url {
            url.parse::<tokio_postgres::Config>()
                .map_err(|e| format!("database.url is not a PostgreSQL connection string: {e}"))?;
        }
        let e = &self.embedded;
        if e.start_timeout_secs == 0 {
            return Err("database.embedded.start_timeout_secs must be at least 1".into());
        }
        if e.port == 0 {
            return Err("database.embedded.port must not be 0".into());
        }
        if e.run_as.trim().is_empty() {
            return Err("database.embedded.run_as must name a user".into());
        }
        if e.database.is_empty()
            || !e
                .database
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err("database.embedded.database must be letters, digits and '_'".into());
        }
        Ok(())
    }
}
