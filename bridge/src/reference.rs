//! Reference pages generated from the code, so they cannot drift: the
//! appliance catalogue (`docs/appliance-catalogue.md`, from the models in
//! `kumo_contract::appliance::catalog`) and the token scopes
//! (`docs/scopes.md`, from `crate::auth` and the OpenAPI documents).
//!
//! A test compares each page with what this module renders; after changing
//! the catalogue or a scope, `KUMO_BLESS=1 cargo test -p kumo-bridge --lib
//! reference` rewrites the pages. Only renders text: it serves nothing.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::Value;

use crate::catalog::{ApplianceType, Capabilities, MODELS};

/// `docs/appliance-catalogue.md` as this build's catalogue has it.
pub fn catalogue_markdown() -> String {
    let mut out = String::from(
        "# Appliance catalogue\n\n\
         The models an `AC`, `TV`, `LIGHT`, `FLOOR_HEATER`, `LIGHT_PROJECTOR` or \
         `SESAME_BOT` appliance is created with: \
         `POST /1/appliances` with `device`, `nickname` and `model=<model id>` \
         (`model_type` may be given too and must agree). Without a model the \
         appliance is a learned-IR one (`IR`), controlled with the signals it learns. \
         Every command is checked against its model, in the cloud and on the device: \
         a value the model does not list is a 400 that names what is allowed.\n\n\
         Generated from the catalogue in the code (`kumo_contract::appliance::catalog`); \
         a test fails when this page is stale.\n\n\
         | model id | type | name | manufacturer | series | remote | image |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for m in MODELS {
        let _ = writeln!(
            out,
            "| `{}` | `{}` | {} | {} | {} | `{}` | `{}` |",
            m.id,
            ApplianceType::of(m).as_str(),
            m.name,
            m.manufacturer,
            m.series,
            m.remote_name,
            m.image
        );
    }
    for m in MODELS {
        let _ = write!(out, "\n## `{}`\n\n", m.id);
        match &m.capabilities {
            Capabilities::Aircon(caps) | Capabilities::FloorHeater(caps) => {
                let path = if m.aircon().is_some() {
                    "aircon_settings"
                } else {
                    "floor_heater_settings"
                };
                let _ = writeln!(
                    out,
                    "{}. Temperature unit `{}`. `POST /1/appliances/{{id}}/{path}` \
                     takes, per mode (`operation_mode`), these values; `air_volume`, \
                     `air_direction` and `air_direction_h` also take `\"\"` (automatic) \
                     in every mode. A field left out keeps its value, or takes the \
                     mode's first value when the new mode does not accept it (the \
                     temperature: the one in \"starts at\").\n",
                    m.name, caps.temp_unit
                );
                mode_table(&mut out, caps.modes);
                let _ = writeln!(
                    out,
                    "\n`button`: `\"\"` (on), `power-off` (off){}.",
                    caps.fixed_buttons
                        .iter()
                        .map(|b| format!(", `{b}`"))
                        .collect::<String>()
                );
            }
            Capabilities::Tv { buttons }
            | Capabilities::Light { buttons }
            | Capabilities::LightProjector { buttons } => {
                let path = match m.capabilities {
                    Capabilities::Tv { .. } => "tv",
                    Capabilities::Light { .. } => "light",
                    _ => "light_projector",
                };
                let _ = writeln!(
                    out,
                    "{}. `POST /1/appliances/{{id}}/{path}` takes `button`, one of:\n",
                    m.name
                );
                out.push_str("| `button` | label | image |\n|---|---|---|\n");
                for b in *buttons {
                    let _ = writeln!(out, "| `{}` | {} | `{}` |", b.name, b.label, b.image);
                }
            }
            Capabilities::SesameBot { macros } => {
                let _ = writeln!(
                    out,
                    "{}, a BLE switch pusher. `POST /1/appliances/{{id}}/sesame_bot/click` \
                     toggles its arm (`up` ↔ `down`). Each bot also gets these BLE private \
                     macros, listed with their ids by \
                     `GET /1/ble/appliances/{{id}}/private_macros` and run with \
                     `POST /1/ble/private_macros/{{macro id}}/exec`:\n",
                    m.name
                );
                out.push_str("| macro | label | arm after |\n|---|---|---|\n");
                for b in *macros {
                    let after = m
                        .operate_sesame(&Default::default(), b.name)
                        .map(|s| s.arm)
                        .unwrap_or_default();
                    let _ = writeln!(out, "| `{}` | {} | `{after}` |", b.name, b.label);
                }
            }
        }
    }
    out
}

/// The per-mode table of an aircon or floor heater model.
fn mode_table(out: &mut String, modes: &[kumo_contract::appliance::AcMode]) {
    out.push_str(
        "| `operation_mode` | `temperature` | starts at | `air_volume` | `air_direction` | `air_direction_h` |\n\
         |---|---|---|---|---|---|\n",
    );
    for mode in modes {
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} | {} | {} |",
            mode.name,
            values(mode.temp),
            values(&[mode.default_temp]),
            values(mode.vol),
            values(mode.dir),
            values(mode.dirh)
        );
    }
}

/// A list of accepted values as code spans, ranges of numbers shortened.
fn values(list: &[&str]) -> String {
    let quoted = |v: &str| format!("`{}`", if v.is_empty() { "\"\"" } else { v });
    let numbers: Option<Vec<f64>> = list.iter().map(|v| v.parse().ok()).collect();
    if let Some(n) = numbers.filter(|n| n.len() > 4) {
        let step = n[1] - n[0];
        let even = n.windows(2).all(|w| (w[1] - w[0] - step).abs() < 1e-9);
        if even {
            return format!(
                "{}–{} (step {})",
                quoted(list[0]),
                quoted(list[list.len() - 1]),
                step
            );
        }
    }
    list.iter()
        .map(|v| quoted(v))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every `pub const NAME: &str = "scope";` of `crate::auth` with its doc comment.
fn scope_docs() -> Vec<(&'static str, String)> {
    let source = include_str!("auth.rs");
    let mut docs = Vec::new();
    let mut comment = Vec::new();
    for line in source.lines() {
        let line = line.trim();
        if let Some(c) = line.strip_prefix("///") {
            comment.push(c.trim());
            continue;
        }
        if let Some(rest) = line.strip_prefix("pub const ") {
            if let Some((_, value)) = rest.split_once(": &str = \"") {
                if let Some(scope) = value.strip_suffix("\";") {
                    docs.push((scope, comment.join(" ")));
                }
            }
        }
        comment.clear();
    }
    docs
}

/// `docs/scopes.md`: every scope, what it allows and the operations that need it.
pub fn scopes_markdown() -> String {
    let mut needs: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for doc in [crate::docs::OPENAPI_1, crate::docs::OPENAPI_V1] {
        let Ok(doc) = serde_json::from_str::<Value>(doc) else {
            continue;
        };
        let Some(paths) = doc["paths"].as_object() else {
            continue;
        };
        for (path, item) in paths {
            for (method, op) in item.as_object().into_iter().flatten() {
                if !["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                    continue;
                }
                if let Some(scope) = operation_scope(op) {
                    needs
                        .entry(scope)
                        .or_default()
                        .push(format!("`{} {path}`", method.to_uppercase()));
                }
            }
        }
    }
    let mut out = String::from(
        "# Token scopes\n\n\
         A bearer token carries scopes; every operation needs one (a 403 `403001` \
         names it otherwise). Scopes follow Nature's OAuth scopes. Give them with \
         `kumo tokens create --scope …` (repeatable) or `POST /v1/tokens` (a subset \
         of the caller's own). `basic` stands for `basic.read` and `basic.write`.\n\n\
         Generated from `bridge/src/auth.rs` and the OpenAPI documents; a test fails \
         when this page is stale.\n\n\
         | scope | allows | operations |\n|---|---|---|\n",
    );
    for (scope, doc) in scope_docs() {
        let ops = needs.remove(scope).unwrap_or_default();
        let ops = if ops.is_empty() {
            "—".to_string()
        } else {
            ops.join(", ")
        };
        let _ = writeln!(out, "| `{scope}` | {doc} | {ops} |");
    }
    out
}

/// The scope an OpenAPI operation states: `x-kumo-scope`, or "Scope X." in
/// its summary (the `/v1` document's convention).
fn operation_scope(op: &Value) -> Option<String> {
    if let Some(s) = op["x-kumo-scope"].as_str() {
        return Some(s.to_string());
    }
    let summary = op["summary"].as_str()?;
    let rest = &summary[summary.rfind("Scope ")? + "Scope ".len()..];
    Some(rest.trim_end_matches('.').trim().to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Compares `docs/{name}` with `rendered`; `KUMO_BLESS=1` rewrites it.
    fn check(name: &str, committed: &str, rendered: &str) {
        if committed == rendered {
            return;
        }
        if std::env::var_os("KUMO_BLESS").is_some() {
            let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/").to_string() + name;
            std::fs::write(&path, rendered).unwrap();
            return;
        }
        panic!(
            "docs/{name} is stale: run `KUMO_BLESS=1 cargo test -p kumo-bridge --lib reference` \
             and commit it"
        );
    }

    #[test]
    fn the_appliance_catalogue_page_is_current() {
        check(
            "appliance-catalogue.md",
            include_str!("../../docs/appliance-catalogue.md"),
            &catalogue_markdown(),
        );
    }

    #[test]
    fn the_scopes_page_is_current_and_names_every_scope() {
        let page = scopes_markdown();
        for scope in crate::auth::ALL_SCOPES {
            assert!(page.contains(&format!("| `{scope}` |")), "{scope}");
        }
        check("scopes.md", include_str!("../../docs/scopes.md"), &page);
    }

    #[test]
    fn every_operation_states_a_known_scope() {
        for doc in [crate::docs::OPENAPI_1, crate::docs::OPENAPI_V1] {
            let doc: Value = serde_json::from_str(doc).unwrap();
            for (path, item) in doc["paths"].as_object().unwrap() {
                for (method, op) in item.as_object().unwrap() {
                    let is_operation =
                        ["get", "post", "put", "patch", "delete"].contains(&method.as_str());
                    if !is_operation || op["security"] == serde_json::json!([]) {
                        continue;
                    }
                    let scope = operation_scope(op).unwrap_or_default();
                    assert!(
                        crate::auth::ALL_SCOPES.contains(&scope.as_str())
                            || scope == crate::auth::AGGREGATOR,
                        "{method} {path}: scope {scope:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn numeric_ranges_are_shortened() {
        assert_eq!(
            values(&["16", "17", "18", "19", "20"]),
            "`16`–`20` (step 1)"
        );
        assert_eq!(values(&["", "auto", "1"]), "`\"\"`, `auto`, `1`");
    }
}
