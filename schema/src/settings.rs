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
    /// PostgreSQL's `shared_buffers` (default `256MB`; PostgreSQL's own is
    /// 128MB, and a 250,000-device fleet run waited on buffer reads with it).
    pub shared_buffers: String,
    /// PostgreSQL's `max_wal_size` (default `2GB`): fewer checkpoints, and
    /// fewer full-page writes, under a steady stream of readings.
    pub max_wal_size: String,
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
            shared_buffers: "256MB".into(),
            max_wal_size: "2GB".into(),
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
        for (key, value) in [
            ("shared_buffers", &e.shared_buffers),
            ("max_wal_size", &e.max_wal_size),
        ] {
            if !is_memory_size(value) {
                return Err(format!(
                    "database.embedded.{key} must be a size like 512MB or 2GB, not {value:?}"
                ));
            }
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

/// A PostgreSQL memory size: digits and an optional unit (`kB`, `MB`, `GB`, `TB`).
fn is_memory_size(value: &str) -> bool {
    let digits = value.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &value[digits.len()..];
    !digits.is_empty()
        && digits.chars().all(|c| c.is_ascii_digit())
        && ["", "kB", "MB", "GB", "TB"].contains(&unit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_memory_sizes_take_postgresql_units_and_refuse_anything_else() {
        let mut s = DatabaseSettings::default();
        assert_eq!(s.validate(), Ok(()));
        for good in ["512MB", "2GB", "131072", "64kB"] {
            s.embedded.shared_buffers = good.into();
            assert_eq!(s.validate(), Ok(()), "{good}");
        }
        for bad in ["", "MB", "2 GB", "2gb", "1GB; fsync=off", "-1"] {
            s.embedded.max_wal_size = bad.into();
            let e = s.validate().expect_err(bad);
            assert!(e.contains("database.embedded.max_wal_size"), "{e}");
        }
    }
}
