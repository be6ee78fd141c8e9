//! `[database]`: an external server URL, or the private server's options.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// `[database]` section.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseSettings {
    /// An existing server, e.g. `postgres://kumo:secret@db:5432/kumo` or
    /// `host=/run/postgresql dbname=kumo`. Unset: Kumo runs its own private server.
    pub url: Option<String>,
    /// A file holding the password for `url` (e.g. a container secret), so
    /// the password need not be written into the URL. Read once at start-up;
    /// trailing line breaks are ignored.
    pub password_file: Option<PathBuf>,
    /// Connections in the bridge's pool (default 16). Half of them, at most
    /// 8, are the report shards' (presence, state, acks, meter properties),
    /// each kept while its shard has work queued and for 2 s after; the reading
    /// writer keeps one while readings keep coming and for 2 s after; the rest
    /// serve REST calls (a command takes
    /// one three times: token, appliance, insert) and background work. Size it
    /// so REST calls do not queue for one (`kumo_bridge_db_pool_waiting` in the
    /// bridge's `/metrics`): a 250,000-device fleet with 200 commands a second
    /// queued with 16 and ran with 48 (BENCHMARKS.md, "Fleet", runs 26–29);
    /// the private PostgreSQL allows 200 connections.
    pub pool_size: usize,
    /// Seconds to wait for a connection (default 10).
    pub connect_timeout_secs: u64,
    pub embedded: EmbeddedSettings,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: None,
            password_file: None,
            pool_size: 16,
            connect_timeout_secs: 10,
            embedded: EmbeddedSettings::default(),
        }
    }
}

/// `[database.embedded]`: the private PostgreSQL server.
#[derive(Debug, Clone, Deserialize, Serialize)]
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
    /// PostgreSQL's `random_page_cost` (default 1.1; PostgreSQL's own, 4,
    /// prices a random read as a spinning disk's). The private server's
    /// working set sits in its buffers and the page cache; at 4 the planner
    /// scanned the whole appliances table for a round of state reports
    /// rather than look up a few hundred devices in its index.
    pub random_page_cost: f64,
    /// PostgreSQL's `shared_preload_libraries`, e.g. `["pg_stat_statements"]`
    /// to see which statements take the server's time (default none).
    pub shared_preload_libraries: Vec<String>,
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
            random_page_cost: 1.1,
            shared_preload_libraries: Vec::new(),
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

    /// Puts the password from `password_file` into `url`; the error names
    /// the key. A URL that already holds a password is refused with one.
    pub fn resolve_password(&mut self) -> Result<(), String> {
        let Some(file) = &self.password_file else {
            return Ok(());
        };
        let Some(url) = &self.url else {
            return Err("database.password_file needs database.url".into());
        };
        let raw = std::fs::read_to_string(file).map_err(|e| {
            format!(
                "database.password_file {}: cannot read: {e}",
                file.display()
            )
        })?;
        let password = raw.trim_end_matches(['\r', '\n']);
        if password.is_empty() {
            return Err(format!(
                "database.password_file {} is empty",
                file.display()
            ));
        }
        self.url = Some(with_password(url, password)?);
        Ok(())
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
        if !(e.random_page_cost > 0.0 && e.random_page_cost <= 100.0) {
            return Err(format!(
                "database.embedded.random_page_cost must be above 0 and at most 100, not {}",
                e.random_page_cost
            ));
        }
        if let Some(bad) = e
            .shared_preload_libraries
            .iter()
            .find(|l| l.is_empty() || !l.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        {
            return Err(format!(
                "database.embedded.shared_preload_libraries: {bad:?} is not a library name \
                 (letters, digits and '_')"
            ));
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

    #[test]
    fn random_page_cost_is_a_positive_number() {
        let mut s = DatabaseSettings::default();
        for bad in [0.0, -1.0, f64::NAN, 1000.0] {
            s.embedded.random_page_cost = bad;
            let e = s.validate().expect_err("refused");
            assert!(e.contains("database.embedded.random_page_cost"), "{e}");
        }
    }

    #[test]
    fn preload_libraries_are_plain_names() {
        let mut s = DatabaseSettings::default();
        s.embedded.shared_preload_libraries = vec!["pg_stat_statements".into()];
        assert_eq!(s.validate(), Ok(()));
        for bad in ["", "a,b", "x'; fsync=off", "../lib"] {
            s.embedded.shared_preload_libraries = vec![bad.into()];
            let e = s.validate().expect_err(bad);
            assert!(
                e.contains("database.embedded.shared_preload_libraries"),
                "{e}"
            );
        }
    }
}

/// `url` with `password` in it: in the userinfo of a `postgres://` URL
/// (percent-encoded), or as a `password='…'` pair of a key/value string.
fn with_password(url: &str, password: &str) -> Result<String, String> {
    const BOTH: &str = "database.url already holds a password; drop it or database.password_file";
    let Some((scheme, rest)) = url.split_once("://") else {
        if url.split_whitespace().any(|kv| kv.starts_with("password=")) {
            return Err(BOTH.into());
        }
        let quoted = password.replace('\\', "\\\\").replace('\'', "\\'");
        return Ok(format!("{url} password='{quoted}'"));
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return Err("database.url names no user to go with database.password_file".into());
    };
    let user = &rest[..at];
    if user.contains(':') {
        return Err(BOTH.into());
    }
    let encoded: String = password
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    Ok(format!("{scheme}://{user}:{encoded}{}", &rest[at..]))
}

/// `url` with any password replaced by `***`, for printing.
pub fn redacted_url(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@') {
            if let Some((user, _)) = rest[..at].split_once(':') {
                return format!("{scheme}://{user}:***{}", &rest[at..]);
            }
        }
        return url.to_string();
    }
    let Some(at) = url.find("password=") else {
        return url.to_string();
    };
    let value = &url[at + "password=".len()..];
    let len = match value.strip_prefix('\'') {
        // A quoted value runs to the first quote not escaped by a backslash.
        Some(quoted) => {
            let mut escaped = false;
            let end = quoted
                .char_indices()
                .find(|&(_, c)| {
                    let closes = c == '\'' && !escaped;
                    escaped = c == '\\' && !escaped;
                    closes
                })
                .map_or(quoted.len(), |(i, _)| i + 1);
            end + 1
        }
        None => value.find(char::is_whitespace).unwrap_or(value.len()),
    };
    format!("{}password=***{}", &url[..at], &value[len..])
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod password_tests {
    use super::*;

    #[test]
    fn a_password_file_goes_into_a_url_percent_encoded_and_parses() {
        let url = with_password("postgres://kumo@db:5432/kumo", "p@ss:w/rd").unwrap();
        assert_eq!(url, "postgres://kumo:p%40ss%3Aw%2Frd@db:5432/kumo");
        let config: tokio_postgres::Config = url.parse().unwrap();
        assert_eq!(config.get_password(), Some(&b"p@ss:w/rd"[..]));
        assert_eq!(redacted_url(&url), "postgres://kumo:***@db:5432/kumo");
    }

    #[test]
    fn a_password_file_goes_into_a_key_value_string_quoted() {
        let url = with_password("host=db user=kumo dbname=kumo", "it's a \\ secret").unwrap();
        let config: tokio_postgres::Config = url.parse().unwrap();
        assert_eq!(config.get_password(), Some(&b"it's a \\ secret"[..]));
        assert_eq!(
            redacted_url(&url),
            "host=db user=kumo dbname=kumo password=***"
        );
    }

    #[test]
    fn a_url_with_its_own_password_and_a_file_is_refused() {
        assert!(with_password("postgres://kumo:x@db/kumo", "y").is_err());
        assert!(with_password("host=db password=x", "y").is_err());
    }

    #[test]
    fn the_file_is_read_and_its_line_break_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "s3cret\n").unwrap();
        let mut s = DatabaseSettings {
            url: Some("postgres://kumo@db/kumo".into()),
            password_file: Some(file),
            ..Default::default()
        };
        s.resolve_password().unwrap();
        assert_eq!(s.url.as_deref(), Some("postgres://kumo:s3cret@db/kumo"));
    }
}
