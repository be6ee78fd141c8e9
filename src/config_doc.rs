//! Every configuration key with its default, generated from the settings
//! types so it cannot drift: `Settings::default()` is serialized and walked,
//! and each key's description is the doc comment on its field (read from the
//! settings sources, embedded at build time). Renders `docs/config.md` and
//! `kumo config defaults` (a `kumo.toml` holding every key at its default).
//!
//! Owns only rendering; loading and validating settings is `settings.rs`.

use std::fmt::Write as _;

use serde_json::{Map, Value};

use crate::settings::Settings;

/// A section of the settings tree and the struct (in its source) behind it.
struct Section {
    key: &'static str,
    source: &'static str,
    name: &'static str,
}

const ROOT: &str = include_str!("settings.rs");
const DATABASE: &str = include_str!("../schema/src/settings.rs");
const BROKER: &str = include_str!("../broker/src/settings.rs");
const BRIDGE: &str = include_str!("../bridge/src/settings.rs");
const SIM: &str = include_str!("../device-sim/src/settings.rs");

const SECTIONS: &[Section] = &[
    Section {
        key: "",
        source: ROOT,
        name: "Settings",
    },
    Section {
        key: "log",
        source: ROOT,
        name: "LogSettings",
    },
    Section {
        key: "certs",
        source: ROOT,
        name: "CertsSettings",
    },
    Section {
        key: "database",
        source: DATABASE,
        name: "DatabaseSettings",
    },
    Section {
        key: "database.embedded",
        source: DATABASE,
        name: "EmbeddedSettings",
    },
    Section {
        key: "broker",
        source: BROKER,
        name: "Settings",
    },
    Section {
        key: "bridge",
        source: BRIDGE,
        name: "Settings",
    },
    Section {
        key: "bridge.rate_limit",
        source: BRIDGE,
        name: "RateLimitSettings",
    },
    Section {
        key: "bridge.mqtt",
        source: BRIDGE,
        name: "MqttSettings",
    },
    Section {
        key: "bridge.events",
        source: BRIDGE,
        name: "EventSettings",
    },
    Section {
        key: "bridge.webhooks",
        source: BRIDGE,
        name: "WebhookSettings",
    },
    Section {
        key: "bridge.provision",
        source: BRIDGE,
        name: "ProvisionSettings",
    },
    Section {
        key: "bridge.certs",
        source: BRIDGE,
        name: "DeviceCertSettings",
    },
    Section {
        key: "bridge.homes",
        source: BRIDGE,
        name: "HomeSettings",
    },
    Section {
        key: "bridge.ingest",
        source: BRIDGE,
        name: "IngestSettings",
    },
    Section {
        key: "bridge.energy",
        source: BRIDGE,
        name: "EnergySettings",
    },
    Section {
        key: "bridge.demand_response",
        source: BRIDGE,
        name: "DemandResponseSettings",
    },
    Section {
        key: "sim",
        source: SIM,
        name: "Settings",
    },
    Section {
        key: "sim.chaos",
        source: SIM,
        name: "ChaosSettings",
    },
];

/// One key: its dotted name, default and description.
pub struct Key {
    pub name: String,
    pub default: Value,
    pub doc: String,
}

/// The fields of `pub struct {name}` in `source`, in order, with their doc
/// comments (a field without one shares the comment of the one before it,
/// as in `/// The certificate and key.` over `cert` and `key`).
fn fields(source: &str, name: &str) -> Vec<(String, String)> {
    let start = format!("pub struct {name} {{");
    let Some(at) = source.find(&start) else {
        return Vec::new();
    };
    let mut out: Vec<(String, String)> = Vec::new();
    let mut comment: Vec<&str> = Vec::new();
    for line in source[at + start.len()..].lines() {
        let line = line.trim();
        if line == "}" {
            break;
        }
        if let Some(c) = line.strip_prefix("///") {
            comment.push(c.trim());
        } else if let Some((field, _)) = line
            .strip_prefix("pub ")
            .and_then(|rest| rest.split_once(':'))
        {
            let doc = if comment.is_empty() {
                out.last().map(|(_, d)| d.clone()).unwrap_or_default()
            } else {
                comment.join(" ")
            };
            out.push((field.trim().to_string(), doc));
            comment.clear();
        } else if !line.starts_with("#[") {
            comment.clear();
        }
    }
    out
}

/// Every section's keys, sections in [`SECTIONS`] order, keys in field order.
pub fn sections() -> Vec<(&'static str, Vec<Key>)> {
    // Settings are plain data; serializing them cannot fail.
    let tree = serde_json::to_value(Settings::default()).unwrap_or(Value::Null);
    SECTIONS
        .iter()
        .map(|s| {
            let node = s
                .key
                .split('.')
                .filter(|k| !k.is_empty())
                .fold(&tree, |v, k| &v[k]);
            let empty = Map::new();
            let values = node.as_object().unwrap_or(&empty);
            let keys = fields(s.source, s.name)
                .into_iter()
                .filter(|(f, _)| values.get(f).is_some_and(|v| !v.is_object()))
                .map(|(f, doc)| Key {
                    name: if s.key.is_empty() {
                        f.clone()
                    } else {
                        format!("{}.{f}", s.key)
                    },
                    default: values[&f].clone(),
                    doc,
                })
                .collect();
            (s.key, keys)
        })
        .collect()
}

/// A default as TOML writes it; `None` for an unset optional key.
fn toml_value(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::Array(items) => Some(format!(
            "[{}]",
            items
                .iter()
                .filter_map(toml_value)
                .collect::<Vec<_>>()
                .join(", ")
        )),
        // JSON's string and number syntax is valid TOML for these values.
        other => Some(other.to_string()),
    }
}

/// The environment variable that sets `key`.
fn env_var(key: &str) -> String {
    format!("KUMO__{}", key.replace('.', "__").to_uppercase())
}

/// `kumo config defaults`: a `kumo.toml` with every key at its default.
pub fn defaults_toml() -> String {
    let mut out = String::from(
        "# Kumo configuration: every key at its built-in default (`kumo config defaults`).\n\
         # Keep only what you change. Unset optional keys are commented out.\n",
    );
    for (section, keys) in sections() {
        if !section.is_empty() {
            let _ = write!(out, "\n[{section}]\n");
        }
        for k in keys {
            let short = k.name.rsplit('.').next().unwrap_or(&k.name);
            if !k.doc.is_empty() {
                let _ = writeln!(out, "# {}", k.doc);
            }
            match toml_value(&k.default) {
                Some(v) => {
                    let _ = writeln!(out, "{short} = {v}");
                }
                None => {
                    let _ = writeln!(out, "# {short} =");
                }
            }
        }
    }
    out
}

/// `docs/config.md`.
pub fn reference_markdown() -> String {
    let mut out = String::from(
        "# Configuration reference\n\n\
         Every key Kumo reads, with its default. Sources, later ones winning: the \
         built-in defaults, then `kumo.toml` in the current directory (or the file given \
         with `--config`), then environment variables `KUMO__SECTION__KEY` (lists \
         comma-separated, e.g. `KUMO__BRIDGE__MQTT__NODES=broker-1:8883,broker-2:8883`). \
         Unknown keys and bad values are errors that name the key. \
         `kumo config defaults` prints a `kumo.toml` with every key at its default.\n\n\
         Generated from the settings types (`Settings::default()` and the doc comments \
         of their fields); a test fails when this page is stale.\n",
    );
    for (section, keys) in sections() {
        let title = if section.is_empty() {
            "Top level".to_string()
        } else {
            format!("`[{section}]`")
        };
        let _ = write!(
            out,
            "\n## {title}\n\n| key | default | environment | description |\n|---|---|---|---|\n"
        );
        for k in keys {
            let default = toml_value(&k.default).map_or("unset".to_string(), |v| format!("`{v}`"));
            let _ = writeln!(
                out,
                "| `{}` | {} | `{}` | {} |",
                k.name,
                default.replace('|', "\\|"),
                env_var(&k.name),
                k.doc.replace('|', "\\|")
            );
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn leaves(prefix: &str, v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    leaves(&key, v, out);
                }
            }
            _ => out.push(prefix.to_string()),
        }
    }

    #[test]
    fn every_key_of_the_settings_is_in_the_reference_once_and_described() {
        let mut all = Vec::new();
        leaves(
            "",
            &serde_json::to_value(Settings::default()).unwrap(),
            &mut all,
        );
        let listed: Vec<String> = sections()
            .into_iter()
            .flat_map(|(_, keys)| keys)
            .map(|k| {
                assert!(!k.doc.is_empty(), "{} has no doc comment", k.name);
                k.name
            })
            .collect();
        let mut sorted = listed.clone();
        sorted.sort();
        all.sort();
        assert_eq!(sorted, all, "every key once (a new section needs SECTIONS)");
    }

    #[test]
    fn the_printed_defaults_load_back_as_the_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("kumo.toml");
        std::fs::write(&file, defaults_toml()).unwrap();
        let loaded = Settings::load_from(Some(&file), Vec::new()).unwrap();
        // Only the paths `load` derives from the data directory differ.
        let mut expected = Settings {
            data_dir: loaded.data_dir.clone(),
            ..Settings::default()
        };
        expected.certs.dir.clone_from(&loaded.certs.dir);
        expected
            .database
            .embedded
            .data_dir
            .clone_from(&loaded.database.embedded.data_dir);
        assert_eq!(
            serde_json::to_value(&loaded).unwrap(),
            serde_json::to_value(&expected).unwrap()
        );
    }

    #[test]
    fn docs_config_md_is_current() {
        let rendered = reference_markdown();
        if include_str!("../docs/config.md") == rendered {
            return;
        }
        if std::env::var_os("KUMO_BLESS").is_some() {
            std::fs::write(
                concat!(env!("CARGO_MANIFEST_DIR"), "/docs/config.md"),
                rendered,
            )
            .unwrap();
            return;
        }
        panic!("docs/config.md is stale: run `KUMO_BLESS=1 cargo test -p kumo --bin kumo config_doc` and commit it");
    }
}
