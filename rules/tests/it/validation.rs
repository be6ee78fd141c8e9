//! `/v1/rules` documents: what parses, and what is rejected with which message.

use kumo_rules::{parse_rule, Action, ApplianceCommand, RuleError, Trigger};
use serde_json::{json, Value};

fn base() -> Value {
    json!({
        "name": "cool the bedroom",
        "trigger": {"threshold": {"device": "remo-1", "sensor": "te", "op": "above",
                                  "value": 28.0, "hysteresis": 0.5, "for_secs": 300}},
        "conditions": [
            {"time_window": {"from": "22:00", "to": "06:00", "time_zone": "Asia/Tokyo"}},
            {"sensor": {"device": "remo-2", "sensor": "hu", "op": "above", "value": 60}}
        ],
        "actions": [
            {"command": {"appliance": "ac-1", "kind": "aircon_settings",
                         "params": {"operation_mode": "cool", "temperature": "26"}}},
            {"webhook": {"url": "https://example.com/hook"}},
            {"event": {"name": "bedroom.hot", "data": {"note": "x"}}}
        ]
    })
}

fn reject(doc: Value) -> String {
    let body = serde_json::to_vec(&doc).expect("serializes");
    match parse_rule(&body) {
        Ok(rule) => panic!("expected rejection, parsed {rule:?}"),
        Err(e) => e.to_string(),
    }
}

fn with(path: &[&str], value: Value) -> Value {
    let mut doc = base();
    let mut at = &mut doc;
    for key in &path[..path.len() - 1] {
        at = match key.parse::<usize>() {
            Ok(i) => &mut at[i],
            Err(_) => &mut at[*key],
        };
    }
    let last = path[path.len() - 1];
    match last.parse::<usize>() {
        Ok(i) => at[i] = value,
        Err(_) => at[last] = value,
    }
    doc
}

#[test]
fn a_complete_rule_parses_and_round_trips() {
    let body = serde_json::to_vec(&base()).expect("serializes");
    let rule = parse_rule(&body).expect("valid");
    assert!(rule.enabled, "enabled defaults to true");
    assert!(matches!(rule.trigger, Trigger::Threshold(ref t) if t.for_secs == 300));
    let Action::Command(c) = &rule.actions[0] else {
        panic!("first action is a command");
    };
    assert_eq!(c.command.kind(), "aircon_settings");
    assert_eq!(
        c.command.params(),
        json!({"operation_mode": "cool", "temperature": "26"})
    );
    assert!(matches!(c.command, ApplianceCommand::AirconSettings(_)));
    let again = serde_json::to_value(&rule).expect("serializes");
    assert_eq!(
        parse_rule(&serde_json::to_vec(&again).expect("bytes")),
        Ok(rule)
    );
}

#[test]
fn every_trigger_and_action_kind_parses() {
    let triggers = [
        json!({"motion_seen": {"device": "d1", "quiet_minutes": 10}}),
        json!({"motion_not_seen": {"device": "d1", "minutes": 30}}),
        json!({"presence": {"device": "d1", "online": false, "for_secs": 60}}),
        json!({"schedule": {"days": ["mon", "fri"], "at": "07:30", "time_zone": "America/New_York"}}),
        json!({"schedule": {"at": "00:00", "time_zone": "UTC"}}),
        json!({"meter_power": {"device": "m1", "op": "below", "watts": 100, "hysteresis": 20}}),
    ];
    for t in triggers {
        let doc = with(&["trigger"], t.clone());
        parse_rule(&serde_json::to_vec(&doc).expect("bytes"))
            .unwrap_or_else(|e| panic!("{t}: {e}"));
    }
    let actions = [
        json!({"command": {"appliance": "tv-1", "kind": "tv", "params": {"button": "power"}}}),
        json!({"command": {"appliance": "l-1", "kind": "light", "params": {"button": "on"}}}),
        json!({"command": {"appliance": "ir-1", "kind": "signal", "params": {"signal": "sig-9"}}}),
    ];
    for a in actions {
        let doc = with(&["actions"], json!([a.clone()]));
        parse_rule(&serde_json::to_vec(&doc).expect("bytes"))
            .unwrap_or_else(|e| panic!("{a}: {e}"));
    }
}

#[test]
fn a_non_numeric_threshold_value_names_the_field() {
    let msg = reject(with(&["trigger", "threshold", "value"], json!("hot")));
    assert!(
        msg.starts_with("trigger.threshold.value must be a number"),
        "{msg}"
    );
}

#[test]
fn a_missing_field_is_required() {
    let mut doc = base();
    doc["trigger"]["threshold"]
        .as_object_mut()
        .expect("object")
        .remove("sensor");
    assert_eq!(reject(doc), "trigger.threshold.sensor is required");
}

#[test]
fn an_unknown_field_is_rejected_by_name() {
    let msg = reject(with(&["trigger", "threshold", "treshold"], json!(1)));
    assert!(
        msg.starts_with("trigger.threshold.treshold is not a known field"),
        "{msg}"
    );
}

#[test]
fn an_unknown_trigger_kind_is_rejected() {
    let msg = reject(with(&["trigger"], json!({"earthquake": {}})));
    assert!(
        msg.starts_with("trigger has unknown kind `earthquake`"),
        "{msg}"
    );
}

#[test]
fn a_trigger_without_a_kind_is_rejected_in_plain_words() {
    let msg = reject(with(&["trigger"], json!({})));
    assert!(
        msg.starts_with("trigger must be an object with exactly one key naming its kind"),
        "{msg}"
    );
}

#[test]
fn an_unknown_time_zone_is_rejected() {
    let msg = reject(with(
        &["conditions", "0", "time_window", "time_zone"],
        json!("Mars/Olympus"),
    ));
    assert_eq!(
        msg,
        "conditions[0].time_window.time_zone is not a known IANA time zone: \"Mars/Olympus\""
    );
}

#[test]
fn an_out_of_range_time_is_rejected() {
    let schedule = json!({"schedule": {"at": "24:30", "time_zone": "Asia/Tokyo"}});
    let msg = reject(with(&["trigger"], schedule));
    assert_eq!(
        msg,
        "trigger.schedule.at 24:30 is out of range (00:00 to 23:59)"
    );
    let schedule = json!({"schedule": {"at": "7:30", "time_zone": "Asia/Tokyo"}});
    let msg = reject(with(&["trigger"], schedule));
    assert_eq!(
        msg,
        "trigger.schedule.at must be HH:MM (24-hour), got \"7:30\""
    );
}

#[test]
fn negative_hysteresis_is_rejected() {
    let msg = reject(with(&["trigger", "threshold", "hysteresis"], json!(-1)));
    assert_eq!(msg, "trigger.threshold.hysteresis must not be negative");
}

#[test]
fn a_rule_without_actions_is_rejected() {
    assert_eq!(
        reject(with(&["actions"], json!([]))),
        "actions must contain at least one action"
    );
}

#[test]
fn too_many_actions_are_rejected() {
    let event = json!({"event": {"name": "e"}});
    let msg = reject(with(&["actions"], Value::Array(vec![event; 11])));
    assert_eq!(msg, "actions has 11 entries; at most 10 are allowed");
}

#[test]
fn semantic_errors_name_the_offending_list_entry() {
    let msg = reject(with(&["actions", "1", "webhook", "url"], json!("ftp://x")));
    assert!(
        msg.starts_with("actions[1].webhook.url must be an http:// or https:// URL"),
        "{msg}"
    );
    let msg = reject(with(
        &["actions", "0", "command", "appliance"],
        json!("a/b"),
    ));
    assert!(
        msg.starts_with("actions[0].command.appliance must be an appliance id"),
        "{msg}"
    );
    let msg = reject(with(&["actions", "0", "command", "params"], json!({})));
    assert_eq!(
        msg,
        "actions[0].command.params must set at least one setting"
    );
}

#[test]
fn other_semantic_limits_are_enforced() {
    let cases = [
        (with(&["name"], json!("  ")), "name must not be empty"),
        (with(&["trigger", "threshold", "for_secs"], json!(700_000)), "trigger.threshold.for_secs must be at most 604800 (one week)"),
        (with(&["trigger", "threshold", "for_secs"], json!(-5)), "trigger.threshold.for_secs must be a non-negative integer (got integer `-5`)"),
        (with(&["trigger"], json!({"motion_not_seen": {"device": "d", "minutes": 0}})), "trigger.motion_not_seen.minutes must be between 1 and 10080"),
        (with(&["trigger"], json!({"schedule": {"days": [], "at": "07:00", "time_zone": "UTC"}})), "trigger.schedule.days must name at least one day (omit it for every day)"),
        (with(&["trigger"], json!({"schedule": {"days": ["mon", "mon"], "at": "07:00", "time_zone": "UTC"}})), "trigger.schedule.days lists mon more than once"),
        (with(&["conditions", "1", "sensor", "value"], json!(150)), "conditions[1].sensor.value must be a humidity between 0 and 100 (%)"),
        (with(&["conditions", "0", "time_window", "to"], json!("22:00")), "conditions[0].time_window.to must differ from `from`"),
        (with(&["trigger", "threshold", "device"], json!("bad/id")), "trigger.threshold.device device id contains '/'; only letters, digits, '-' and '_' are allowed"),
    ];
    for (doc, want) in cases {
        assert_eq!(reject(doc), want);
    }
}

#[test]
fn malformed_json_is_a_syntax_error() {
    assert!(matches!(
        parse_rule(b"{\"name\": "),
        Err(RuleError::Syntax(_))
    ));
}

#[test]
fn rule_lists_the_devices_and_appliances_it_touches() {
    let rule = parse_rule(&serde_json::to_vec(&base()).expect("bytes")).expect("valid");
    let devices: Vec<&str> = rule.devices().iter().map(|d| d.as_str()).collect();
    assert_eq!(devices, ["remo-1", "remo-2"]);
    assert_eq!(rule.appliances(), ["ac-1"]);
}

#[test]
fn command_errors_keep_their_path_inside_params() {
    let cmd = |c: Value| with(&["actions", "0"], json!({ "command": c }));
    let cases = [
        (
            json!({"appliance": "tv-1", "kind": "tv", "params": {"button": 5}}),
            "actions[0].command.params.button must be a string (got integer `5`)",
        ),
        (
            json!({"appliance": "tv-1", "kind": "fan", "params": {}}),
            "actions[0].command.kind has unknown kind `fan` (expected one of `aircon_settings`, `tv`, `light`, `signal`)",
        ),
        (
            json!({"appliance": "tv-1", "kind": "tv", "params": {"button": "x"}, "typo": 1}),
            "actions[0].command.typo is not a known field (expected one of `appliance`, `kind`, `params`)",
        ),
        (
            json!({"appliance": "tv-1", "kind": "tv"}),
            "actions[0].command.params is required",
        ),
    ];
    for (c, want) in cases {
        assert_eq!(reject(cmd(c)), want);
    }
    let msg = reject(cmd(
        json!({"appliance": "ac-1", "kind": "aircon_settings", "params": {"temp": "26"}}),
    ));
    assert!(
        msg.starts_with("actions[0].command.params.temp is not a known field"),
        "{msg}"
    );
}

#[test]
fn command_params_may_come_before_kind_in_the_body() {
    let body = br#"{"name": "n", "trigger": {"motion_seen": {"device": "d1"}},
        "actions": [{"command": {"params": {"button": "on"}, "appliance": "l-1", "kind": "light"}}]}"#;
    let rule = parse_rule(body).expect("valid");
    let Action::Command(c) = &rule.actions[0] else {
        panic!("a command");
    };
    assert_eq!(
        (c.command.kind(), c.command.params()),
        ("light", json!({"button": "on"}))
    );
    let bad = br#"{"name": "n", "trigger": {"motion_seen": {"device": "d1"}},
        "actions": [{"command": {"params": {"button": 1}, "appliance": "l-1", "kind": "light"}}]}"#;
    let msg = parse_rule(bad).expect_err("bad params").to_string();
    assert!(
        msg.starts_with("actions[0].command params: invalid type"),
        "{msg}"
    );
}
