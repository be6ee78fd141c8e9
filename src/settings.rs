//! The `kumo` binary's settings: one tree holding every component's section.
//!
//! Sources, later ones winning: built-in defaults → optional `kumo.toml` (or the
//! file given with `--config`) → environment variables `KUMO__SECTION__KEY`.
//! Unknown keys are errors, so a typo never silently falls back to a default.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// Everything `kumo` can be configured with.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Where Kumo keeps its state (private PostgreSQL, certificates); default `.kumo`.
    pub data_dir: PathBuf,
    pub log: LogSettings,
    pub database: kumo_schema::DatabaseSettings,
    pub certs: CertsSettings,
    pub broker: kumo_broker::Settings,
    pub bridge: kumo_bridge::Settings,
    pub sim: kumo_sim::Settings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from(".kumo"),
            log: LogSettings::default(),
            database: Default::default(),
            certs: CertsSettings::default(),
            broker: Default::default(),
            bridge: Default::default(),
            sim: Default::default(),
        }
    }
}

/// `[log]`: tracing output.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// `text` or `json`.
    pub format: LogFormat,
    /// Default filter when `RUST_LOG` is unset.
    pub filter: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            // PostgreSQL NOTICEs (e.g. "already exists, skipping") are not news.
            filter: "info,rumqttd=warn,tokio_postgres=warn".into(),
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// `[certs]`: where the PKI lives and what the generated node certificate names.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct CertsSettings {
    /// PKI directory; default `<data_dir>/pki`.
    pub dir: Option<PathBuf>,
    /// DNS names / IPs put in the broker node certificate Kumo creates
    /// (default `localhost`, `127.0.0.1`). Comma-separated in the environment.
    pub node_sans: Vec<String>,
}

impl Default for CertsSettings {
    fn default() -> Self {
        Self {
            dir: None,
            node_sans: vec!["localhost".into(), "127.0.0.1".into()],
        }
    }
}

/// Every key whose value is a list (`a.b.c`), found from the defaults, so
/// that `KUMO__A__B__C=x,y` is read as a list for each of them.
fn list_keys() -> Vec<String> {
    fn walk(prefix: &str, v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&key, v, out);
                }
            }
            serde_json::Value::Array(_) => out.push(prefix.to_string()),
            _ => {}
        }
    }
    let mut keys = Vec::new();
    // Serializing plain settings structs cannot fail; an empty list would
    // only turn list variables back into strings, which the load then refuses.
    if let Ok(tree) = serde_json::to_value(Settings::default()) {
        walk("", &tree, &mut keys);
    }
    keys
}

impl Settings {
    /// Loads defaults, then `file` (required when given explicitly, else `kumo.toml`
    /// if present), then the environment; then validates.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        Self::load_from(file, std::env::vars())
    }

    /// [`Settings::load`] with an explicit environment, so tests need not mutate
    /// the process environment.
    pub fn load_from(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> anyhow::Result<Self> {
        let file_source = match file {
            Some(path) => config::File::from(path).required(true),
            None => config::File::with_name("kumo.toml")
                .format(config::FileFormat::Toml)
                .required(false),
        };
        let env: config::Map<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("KUMO__"))
            .collect();
        let mut environment = config::Environment::with_prefix("KUMO")
            .prefix_separator("__")
            .separator("__")
            .try_parsing(true)
            .list_separator(",");
        for key in list_keys() {
            environment = environment.with_list_parse_key(&key);
        }
        let raw = config::Config::builder()
            .add_source(file_source)
            .add_source(environment.source(Some(env)))
            .build()
            .context("reading configuration")?;
        let mut settings: Settings = raw
            .try_deserialize()
            .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
        settings.resolve_paths()?;
        settings
            .database
            .resolve_password()
            .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
        settings.validate()?;
        Ok(settings)
    }

    /// Makes `data_dir` absolute and fills path defaults derived from it.
    fn resolve_paths(&mut self) -> anyhow::Result<()> {
        if self.data_dir.is_relative() {
            let cwd = std::env::current_dir().context("reading the current directory")?;
            self.data_dir = cwd.join(&self.data_dir);
        }
        if self.certs.dir.is_none() {
            self.certs.dir = Some(self.data_dir.join("pki"));
        }
        self.database.resolve_paths(&self.data_dir);
        Ok(())
    }

    /// Checks every section; errors name the offending key.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.certs.node_sans.is_empty() {
            anyhow::bail!("invalid configuration: certs.node_sans must name at least one host");
        }
        if self.log.filter.trim().is_empty() {
            anyhow::bail!("invalid configuration: log.filter must not be empty");
        }
        let sections = [
            self.database.validate(),
            self.broker.validate(),
            self.bridge.validate(),
            self.sim.validate(),
        ];
        for section in sections {
            section.map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
        }
        Ok(())
    }

    /// The PKI directory (always set after loading).
    pub fn certs_dir(&self) -> PathBuf {
        self.certs
            .dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("pki"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_load_without_any_file_or_environment() {
        let s = Settings::load_from(None, env(&[])).expect("defaults are valid");
        assert!(s.data_dir.is_absolute());
        assert!(
            s.database.url.is_none(),
            "the embedded database is the default"
        );
    }

    #[test]
    fn environment_overrides_defaults_and_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("kumo.toml");
        std::fs::write(
            &file,
            "data_dir = \"/srv/kumo\"\n[database]\npool_size = 4\n",
        )
        .expect("write");
        let s = Settings::load_from(
            Some(&file),
            env(&[
                ("KUMO__DATABASE__URL", "postgres://u@db/kumo"),
                ("KUMO__DATABASE__POOL_SIZE", "7"),
                ("KUMO__LOG__FORMAT", "json"),
                ("KUMO__CERTS__NODE_SANS", "broker,10.0.0.5"),
                ("KUMO__BRIDGE__MQTT__NODES", "broker-1:8883,broker-2:8883"),
                ("KUMO__BROKER__PEERS", "broker-2:8883,broker-3:8883"),
            ]),
        )
        .expect("valid");
        assert_eq!(s.data_dir, PathBuf::from("/srv/kumo"));
        assert_eq!(s.database.url.as_deref(), Some("postgres://u@db/kumo"));
        assert_eq!(s.database.pool_size, 7);
        assert_eq!(s.log.format, LogFormat::Json);
        assert_eq!(s.certs.node_sans, ["broker", "10.0.0.5"]);
        assert_eq!(s.bridge.mqtt.nodes, ["broker-1:8883", "broker-2:8883"]);
        assert_eq!(s.broker.peers, ["broker-2:8883", "broker-3:8883"]);
    }

    #[test]
    fn every_list_setting_takes_a_comma_separated_environment_variable() {
        let s = Settings::load_from(
            None,
            env(&[
                ("KUMO__BRIDGE__PROVISION__NODES", "mqtt.example.net:8883"),
                ("KUMO__SIM__NODES", "a:1,b:2"),
                (
                    "KUMO__DATABASE__EMBEDDED__SHARED_PRELOAD_LIBRARIES",
                    "pg_stat_statements",
                ),
            ]),
        )
        .expect("valid");
        assert_eq!(s.bridge.provision.nodes, ["mqtt.example.net:8883"]);
        assert_eq!(s.sim.nodes, ["a:1", "b:2"]);
        assert_eq!(
            s.database.embedded.shared_preload_libraries,
            ["pg_stat_statements"]
        );
        let keys = list_keys();
        for key in ["certs.node_sans", "bridge.mqtt.nodes", "broker.peers"] {
            assert!(keys.iter().any(|k| k == key), "{key} in {keys:?}");
        }
    }

    #[test]
    fn an_unknown_key_is_an_error_that_names_it() {
        let err = Settings::load_from(None, env(&[("KUMO__DATABASE__POOLSIZE", "3")]))
            .expect_err("typo must fail");
        assert!(format!("{err:#}").contains("poolsize"), "{err:#}");
    }

    #[test]
    fn a_bad_value_is_an_error_that_names_the_key() {
        let err = Settings::load_from(None, env(&[("KUMO__DATABASE__POOL_SIZE", "0")]))
            .expect_err("zero pool must fail");
        assert!(format!("{err:#}").contains("database.pool_size"), "{err:#}");
        let err = Settings::load_from(None, env(&[("KUMO__DATABASE__POOL_SIZE", "many")]))
            .expect_err("non-number must fail");
        assert!(format!("{err:#}").contains("pool_size"), "{err:#}");
    }
}
