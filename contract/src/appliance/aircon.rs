//! Air conditioners: the settings a unit holds and how a settings change
//! applies to them under a model's capabilities.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::catalog::{AcMode, AirconCaps};
use super::Refusal;

/// Air conditioner settings, as the Nature API's `AirconSettingsResponse`
/// (without `updated_at`, which is when the cloud stored them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AirconState {
    /// Set temperature; relative (`"-2"`..`"2"`) in dry and auto mode, empty in blow mode.
    pub temp: String,
    /// `c` or `f`, fixed by the model.
    pub temp_unit: String,
    /// `cool`, `warm`, `dry`, `blow` or `auto`.
    pub mode: String,
    /// Air volume: `""` (automatic), `auto` or `1`–`5`.
    pub vol: String,
    /// Vertical air direction: `""`, `auto`, `swing` or `1`–`5`.
    pub dir: String,
    /// Horizontal air direction: `""`, `auto`, `swing`, `left`, `center`, `right`.
    pub dirh: String,
    /// The last button: `""` = on, `power-off` = off, or a fixed button.
    pub button: String,
}

/// A settings change; an absent field keeps its value (or, if the new mode
/// does not accept it, takes the mode's default). `""` for `vol`, `dir` and
/// `dirh` means automatic and is always accepted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AirconPatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vol: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dirh: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub button: Option<String>,
}

impl From<&AirconState> for AirconPatch {
    /// Every setting given: applying it yields exactly `s` (if the model accepts `s`).
    fn from(s: &AirconState) -> Self {
        Self {
            temp: Some(s.temp.clone()),
            mode: Some(s.mode.clone()),
            vol: Some(s.vol.clone()),
            dir: Some(s.dir.clone()),
            dirh: Some(s.dirh.clone()),
            button: Some(s.button.clone()),
        }
    }
}

impl AirconCaps {
    /// A new unit: off, cooling at the mode's default temperature.
    pub fn initial(&self) -> AirconState {
        let mode = self.mode("cool").or(self.modes.first());
        let first = |l: Option<&[&str]>| {
            l.and_then(|l| l.first().copied())
                .unwrap_or_default()
                .to_string()
        };
        AirconState {
            temp: mode.map(|m| m.default_temp).unwrap_or_default().to_string(),
            temp_unit: self.temp_unit.to_string(),
            mode: mode.map(|m| m.name).unwrap_or_default().to_string(),
            vol: first(mode.map(|m| m.vol)),
            dir: first(mode.map(|m| m.dir)),
            dirh: first(mode.map(|m| m.dirh)),
            button: "power-off".into(),
        }
    }

    /// `patch` applied to `state`, or why the model cannot do it. A refused
    /// patch changes nothing (the caller keeps `state`).
    pub fn apply(&self, state: &AirconState, patch: &AirconPatch) -> Result<AirconState, Refusal> {
        let mode_name = patch.mode.as_deref().unwrap_or(&state.mode);
        let mode = self.mode(mode_name).ok_or_else(|| {
            Refusal::new(
                "mode",
                mode_name,
                format!("this {}", self.noun),
                &self.mode_names(),
            )
        })?;
        let scope = || format!("mode {:?} of this {}", mode.name, self.noun);
        let temp = match patch.temp.as_deref() {
            Some(t) if mode.temp.contains(&t) => t.to_string(),
            Some(t) => return Err(Refusal::new("temp", t, scope(), mode.temp)),
            None if mode.temp.contains(&state.temp.as_str()) => state.temp.clone(),
            None => mode.default_temp.to_string(),
        };
        let button = match patch.button.as_deref() {
            Some(b) if self.buttons().contains(&b) => b.to_string(),
            Some(b) => {
                return Err(Refusal::new(
                    "button",
                    b,
                    format!("this {}", self.noun),
                    &self.buttons(),
                ))
            }
            None => state.button.clone(),
        };
        Ok(AirconState {
            temp,
            temp_unit: self.temp_unit.to_string(),
            mode: mode.name.to_string(),
            vol: pick("vol", patch.vol.as_deref(), &state.vol, mode.vol, &scope)?,
            dir: pick("dir", patch.dir.as_deref(), &state.dir, mode.dir, &scope)?,
            dirh: pick(
                "dirh",
                patch.dirh.as_deref(),
                &state.dirh,
                mode.dirh,
                &scope,
            )?,
            button,
        })
    }

    /// Whether `state` is one this model can be in.
    pub fn check(&self, state: &AirconState) -> Result<(), Refusal> {
        if state.temp_unit != self.temp_unit {
            return Err(Refusal::new(
                "temp_unit",
                &state.temp_unit,
                format!("this {}", self.noun),
                &[self.temp_unit],
            ));
        }
        self.apply(state, &AirconPatch::from(state)).map(|_| ())
    }

    /// The mode named `name`, for callers that show a mode's ranges.
    pub fn mode_or_refusal(&self, name: &str) -> Result<&'static AcMode, Refusal> {
        self.mode(name).ok_or_else(|| {
            Refusal::new(
                "mode",
                name,
                format!("this {}", self.noun),
                &self.mode_names(),
            )
        })
    }
}

/// One per-mode setting: the given value (`""` is automatic, always
/// accepted), else the current one if the mode allows it, else the mode's first.
fn pick(
    field: &'static str,
    given: Option<&str>,
    current: &str,
    allowed: &'static [&'static str],
    scope: &dyn Fn() -> String,
) -> Result<String, Refusal> {
    match given {
        Some("") => Ok(String::new()),
        Some(v) if allowed.contains(&v) => Ok(v.to_string()),
        Some(v) => Err(Refusal::new(field, v, scope(), allowed)),
        None if current.is_empty() || allowed.contains(&current) => Ok(current.to_string()),
        None => Ok(allowed.first().copied().unwrap_or_default().to_string()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::appliance::catalog::generic;
    use crate::appliance::ApplianceKind;

    fn caps() -> &'static AirconCaps {
        generic(ApplianceKind::Aircon).aircon().unwrap()
    }

    fn patch(f: impl FnOnce(&mut AirconPatch)) -> AirconPatch {
        let mut p = AirconPatch::default();
        f(&mut p);
        p
    }

    #[test]
    fn a_new_unit_is_off_and_valid_for_its_model() {
        let s = caps().initial();
        assert_eq!(s.button, "power-off");
        assert_eq!((s.mode.as_str(), s.temp.as_str()), ("cool", "26"));
        caps().check(&s).unwrap();
    }

    #[test]
    fn the_unit_turns_on_and_off_with_the_button() {
        let s = caps().initial();
        let on = caps()
            .apply(&s, &patch(|p| p.button = Some("".into())))
            .unwrap();
        assert_eq!(on.button, "");
        let off = caps()
            .apply(&on, &patch(|p| p.button = Some("power-off".into())))
            .unwrap();
        assert_eq!(off.button, "power-off");
    }

    #[test]
    fn a_new_mode_keeps_a_temperature_it_accepts_and_else_takes_its_default() {
        let s = caps().initial();
        let warm = caps()
            .apply(&s, &patch(|p| p.mode = Some("warm".into())))
            .unwrap();
        assert_eq!(warm.temp, "26", "26 is a valid warm temperature");
        let blow = caps()
            .apply(&warm, &patch(|p| p.mode = Some("blow".into())))
            .unwrap();
        assert_eq!(blow.temp, "");
        let auto = caps()
            .apply(&blow, &patch(|p| p.mode = Some("auto".into())))
            .unwrap();
        assert_eq!(auto.temp, "0");
        let dry = caps()
            .apply(&s, &patch(|p| p.mode = Some("dry".into())))
            .unwrap();
        assert_eq!(dry.vol, "auto", "dry mode has only an automatic air volume");
    }

    #[test]
    fn impossible_settings_are_refused_naming_the_field_and_what_is_allowed() {
        let s = caps().initial();
        for (bad, field) in [
            (patch(|p| p.temp = Some("40".into())), "temp"),
            (patch(|p| p.temp = Some("hot".into())), "temp"),
            (patch(|p| p.mode = Some("turbo".into())), "mode"),
            (patch(|p| p.vol = Some("9".into())), "vol"),
            (patch(|p| p.dir = Some("up".into())), "dir"),
            (patch(|p| p.dirh = Some("up".into())), "dirh"),
            (patch(|p| p.button = Some("explode".into())), "button"),
            (
                patch(|p| {
                    p.mode = Some("blow".into());
                    p.temp = Some("25".into())
                }),
                "temp",
            ),
        ] {
            let r = caps().apply(&s, &bad).unwrap_err();
            assert_eq!(r.field, field, "{bad:?}");
            assert!(!r.allowed.is_empty());
            assert!(r.to_string().contains("allowed"), "{r}");
        }
    }

    #[test]
    fn a_full_patch_of_a_state_yields_that_state() {
        let s = caps()
            .apply(
                &caps().initial(),
                &patch(|p| {
                    p.mode = Some("warm".into());
                    p.temp = Some("18".into());
                    p.vol = Some("3".into());
                    p.dirh = Some("left".into());
                    p.button = Some("".into());
                }),
            )
            .unwrap();
        let other = caps().initial();
        assert_eq!(caps().apply(&other, &AirconPatch::from(&s)).unwrap(), s);
    }
}
