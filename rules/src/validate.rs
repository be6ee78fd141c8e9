//! Turning untrusted JSON into a [`Rule`], with errors that name the field.
//!
//! Owns the limits and the wording of every rejection `/v1/rules` returns. Serde
//! catches shape errors (mapped to `<path> must be …`); [`validate`] catches what
//! types cannot (negative hysteresis, empty action lists, duplicate days). It must
//! not look anything up: device ownership is checked by the caller.

use std::collections::HashSet;

use serde_json::Value;

use crate::clock::Weekday;
use crate::model::{Action, ApplianceCommand, Condition, HomeEdge, Rule, Sensor, Trigger, Who};

/// Most actions one rule may run.
pub const MAX_ACTIONS: usize = 10;
/// Most conditions one rule may carry.
pub const MAX_CONDITIONS: usize = 10;
/// Longest `for_secs` hold: one week.
pub const MAX_HOLD_SECS: u32 = 7 * 24 * 3600;
/// Longest motion quiet/absence period: one week, in minutes.
pub const MAX_MOTION_MINUTES: u32 = 7 * 24 * 60;
/// Longest rule name, in characters.
pub const MAX_NAME_CHARS: usize = 100;
/// Longest webhook URL, in bytes.
pub const MAX_URL_LEN: usize = 2048;

/// Why a rule document was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// The body is not JSON at all.
    #[error("rule is not valid JSON: {0}")]
    Syntax(String),
    /// A field has the wrong shape or value; `field` is a dotted path such as
    /// `trigger.threshold.value` or `actions[2].command.appliance`.
    #[error("{field} {problem}")]
    Invalid { field: String, problem: String },
}

impl RuleError {
    fn invalid(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            problem: problem.into(),
        }
    }

    /// The offending field's path, when there is one.
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::Invalid { field, .. } => Some(field),
            Self::Syntax(_) => None,
        }
    }
}

/// Parses and validates a rule from a request body.
pub fn parse_rule(body: &[u8]) -> Result<Rule, RuleError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    match serde_path_to_error::deserialize::<_, Rule>(de).map_err(shape_error) {
        Ok(rule) => {
            validate(&rule)?;
            Ok(rule)
        }
        // Streaming into an enum reports some valid JSON (an empty `trigger`
        // object) as a syntax error; the value path words it properly.
        Err(RuleError::Syntax(e)) => match serde_json::from_slice::<Value>(body) {
            Ok(value) => parse_rule_value(value),
            Err(_) => Err(RuleError::Syntax(e)),
        },
        Err(e) => Err(e),
    }
}

/// Parses and validates a rule from an already-decoded JSON value.
pub fn parse_rule_value(value: Value) -> Result<Rule, RuleError> {
    let rule: Rule = serde_path_to_error::deserialize(value).map_err(shape_error)?;
    validate(&rule)?;
    Ok(rule)
}

fn shape_error(err: serde_path_to_error::Error<serde_json::Error>) -> RuleError {
    let path = err.path().to_string();
    let inner = err.into_inner();
    if inner.is_syntax() || inner.is_eof() {
        return RuleError::Syntax(inner.to_string());
    }
    let msg = strip_position(&inner.to_string());
    let field = if path == "." { String::new() } else { path };
    let join = |name: &str| {
        if field.is_empty() {
            name.to_owned()
        } else {
            format!("{field}.{name}")
        }
    };
    if let Some(name) = between(&msg, "missing field `", "`") {
        return RuleError::invalid(join(name), "is required");
    }
    let expected = msg.split_once(", expected ").map_or("", |(_, e)| e);
    if msg.starts_with("unknown field `") {
        // The path already ends with the unknown field's name.
        return RuleError::invalid(field, format!("is not a known field (expected {expected})"));
    }
    let field = if field.is_empty() {
        "rule".to_owned()
    } else {
        field
    };
    if let Some(kind) = between(&msg, "unknown variant `", "`") {
        return RuleError::invalid(
            field,
            format!("has unknown kind `{kind}` (expected {expected})"),
        );
    }
    if msg.starts_with("invalid type") || msg.starts_with("invalid value") {
        if let Some((got, expected)) = msg.split_once(", expected ") {
            let got = got.split_once(": ").map(|(_, g)| g).unwrap_or(got);
            return RuleError::invalid(field, format!("must be {} (got {got})", plain(expected)));
        }
    }
    // Our own `try_from` messages already read as "<field> must be …".
    RuleError::invalid(field, msg)
}

fn plain(expected: &str) -> &str {
    match expected {
        "f64" | "f32" => "a number",
        "u8" | "u16" | "u32" | "u64" => "a non-negative integer",
        "i8" | "i16" | "i32" | "i64" => "an integer",
        // serde's wording for an externally tagged enum (`trigger`, `actions[i]`).
        "map with a single key" => "an object with exactly one key naming its kind",
        other => other,
    }
}

fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_owned(),
        None => msg.to_owned(),
    }
}

fn between<'a>(s: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let rest = &s[s.find(start)? + start.len()..];
    Some(&rest[..rest.find(end)?])
}

/// Checks what the types cannot express. Called by the parsers; call it again
/// on rules built in code.
pub fn validate(rule: &Rule) -> Result<(), RuleError> {
    let name = rule.name.trim();
    if name.is_empty() {
        return Err(RuleError::invalid("name", "must not be empty"));
    }
    if rule.name.chars().count() > MAX_NAME_CHARS {
        return Err(RuleError::invalid(
            "name",
            format!("must be at most {MAX_NAME_CHARS} characters"),
        ));
    }
    validate_trigger(&rule.trigger)?;
    if rule.conditions.len() > MAX_CONDITIONS {
        return Err(RuleError::invalid(
            "conditions",
            format!(
                "has {} entries; at most {MAX_CONDITIONS} are allowed",
                rule.conditions.len()
            ),
        ));
    }
    for (i, c) in rule.conditions.iter().enumerate() {
        validate_condition(&format!("conditions[{i}]"), c)?;
    }
    if rule.actions.is_empty() {
        return Err(RuleError::invalid(
            "actions",
            "must contain at least one action",
        ));
    }
    if rule.actions.len() > MAX_ACTIONS {
        return Err(RuleError::invalid(
            "actions",
            format!(
                "has {} entries; at most {MAX_ACTIONS} are allowed",
                rule.actions.len()
            ),
        ));
    }
    for (i, a) in rule.actions.iter().enumerate() {
        validate_action(&format!("actions[{i}]"), a)?;
    }
    Ok(())
}

fn validate_trigger(trigger: &Trigger) -> Result<(), RuleError> {
    match trigger {
        Trigger::Threshold(t) => {
            let at = "trigger.threshold";
            finite(at, "value", t.value)?;
            sensor_range(at, t.sensor, t.value)?;
            band(at, t.hysteresis)?;
            hold(at, t.for_secs)
        }
        Trigger::MeterPower(t) => {
            let at = "trigger.meter_power";
            finite(at, "watts", t.watts)?;
            band(at, t.hysteresis)?;
            hold(at, t.for_secs)
        }
        Trigger::Presence(t) => hold("trigger.presence", t.for_secs),
        Trigger::MotionSeen(t) if t.quiet_minutes > MAX_MOTION_MINUTES => Err(RuleError::invalid(
            "trigger.motion_seen.quiet_minutes",
            format!("must be at most {MAX_MOTION_MINUTES}"),
        )),
        Trigger::MotionSeen(_) => Ok(()),
        Trigger::MotionNotSeen(t) if t.minutes == 0 || t.minutes > MAX_MOTION_MINUTES => {
            Err(RuleError::invalid(
                "trigger.motion_not_seen.minutes",
                format!("must be between 1 and {MAX_MOTION_MINUTES}"),
            ))
        }
        Trigger::MotionNotSeen(_) => Ok(()),
        Trigger::Home(t) => {
            let id = t.home.trim();
            if id.is_empty() || id.len() > 64 || id.chars().any(char::is_control) {
                return Err(RuleError::invalid(
                    "trigger.home.home",
                    "must be a home id (1 to 64 characters)",
                ));
            }
            if (t.on == HomeEdge::Arrive && t.who == Who::Last)
                || (t.on == HomeEdge::Leave && t.who == Who::First)
            {
                return Err(RuleError::invalid(
                    "trigger.home.who",
                    "first goes with arrive, last with leave",
                ));
            }
            Ok(())
        }
        Trigger::Schedule(s) => {
            if s.days.is_empty() {
                return Err(RuleError::invalid(
                    "trigger.schedule.days",
                    "must name at least one day (omit it for every day)",
                ));
            }
            distinct_days("trigger.schedule.days", &s.days)
        }
    }
}

fn validate_condition(at: &str, condition: &Condition) -> Result<(), RuleError> {
    match condition {
        Condition::TimeWindow(w) => {
            let at = format!("{at}.time_window");
            if w.from == w.to {
                return Err(RuleError::invalid(
                    format!("{at}.to"),
                    "must differ from `from`",
                ));
            }
            distinct_days(&format!("{at}.days"), &w.days)
        }
        Condition::Sensor(s) => {
            let at = format!("{at}.sensor");
            finite(&at, "value", s.value)?;
            sensor_range(&at, s.sensor, s.value)
        }
    }
}

fn validate_action(at: &str, action: &Action) -> Result<(), RuleError> {
    match action {
        Action::Command(c) => {
            let at = format!("{at}.command");
            if !is_id(&c.appliance) {
                return Err(RuleError::invalid(
                    format!("{at}.appliance"),
                    "must be an appliance id (1 to 64 letters, digits, '-' or '_')",
                ));
            }
            match &c.command {
                ApplianceCommand::AirconSettings(p) if *p == Default::default() => Err(
                    RuleError::invalid(format!("{at}.params"), "must set at least one setting"),
                ),
                ApplianceCommand::Tv(p) | ApplianceCommand::Light(p) if p.button.is_empty() => Err(
                    RuleError::invalid(format!("{at}.params.button"), "must not be empty"),
                ),
                ApplianceCommand::Signal(p) if !is_id(&p.signal) => Err(RuleError::invalid(
                    format!("{at}.params.signal"),
                    "must be a signal id (1 to 64 letters, digits, '-' or '_')",
                )),
                _ => Ok(()),
            }
        }
        Action::Webhook(w) => {
            let url = w.url.as_str();
            let host = url
                .strip_prefix("https://")
                .or_else(|| url.strip_prefix("http://"))
                .unwrap_or("");
            let host_ok = !host.is_empty() && !host.starts_with('/');
            if !host_ok || url.len() > MAX_URL_LEN || url.chars().any(char::is_whitespace) {
                return Err(RuleError::invalid(
                    format!("{at}.webhook.url"),
                    format!("must be an http:// or https:// URL of at most {MAX_URL_LEN} bytes"),
                ));
            }
            Ok(())
        }
        Action::Event(e) => {
            let ok = !e.name.is_empty()
                && e.name.len() <= 64
                && e.name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
            if ok {
                Ok(())
            } else {
                Err(RuleError::invalid(
                    format!("{at}.event.name"),
                    "must be 1 to 64 letters, digits, '-', '_' or '.'",
                ))
            }
        }
    }
}

fn finite(at: &str, name: &str, v: f64) -> Result<(), RuleError> {
    if v.is_finite() {
        Ok(())
    } else {
        Err(RuleError::invalid(
            format!("{at}.{name}"),
            "must be a finite number",
        ))
    }
}

fn sensor_range(at: &str, sensor: Sensor, v: f64) -> Result<(), RuleError> {
    let (lo, hi, what) = match sensor {
        Sensor::Te => (-60.0, 100.0, "a temperature between -60 and 100 (°C)"),
        Sensor::Hu => (0.0, 100.0, "a humidity between 0 and 100 (%)"),
        Sensor::Il => (0.0, 200_000.0, "an illuminance between 0 and 200000"),
    };
    if (lo..=hi).contains(&v) {
        Ok(())
    } else {
        Err(RuleError::invalid(
            format!("{at}.value"),
            format!("must be {what}"),
        ))
    }
}

fn band(at: &str, hysteresis: f64) -> Result<(), RuleError> {
    if !hysteresis.is_finite() {
        return Err(RuleError::invalid(
            format!("{at}.hysteresis"),
            "must be a finite number",
        ));
    }
    if hysteresis < 0.0 {
        return Err(RuleError::invalid(
            format!("{at}.hysteresis"),
            "must not be negative",
        ));
    }
    Ok(())
}

fn hold(at: &str, secs: u32) -> Result<(), RuleError> {
    if secs > MAX_HOLD_SECS {
        return Err(RuleError::invalid(
            format!("{at}.for_secs"),
            format!("must be at most {MAX_HOLD_SECS} (one week)"),
        ));
    }
    Ok(())
}

fn distinct_days(at: &str, days: &[Weekday]) -> Result<(), RuleError> {
    let mut seen = HashSet::new();
    match days.iter().find(|d| !seen.insert(**d)) {
        Some(d) => Err(RuleError::invalid(at, format!("lists {d} more than once"))),
        None => Ok(()),
    }
}

fn is_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}
