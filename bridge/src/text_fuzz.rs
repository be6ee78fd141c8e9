//! Fuzzing of what the REST layer decodes from untrusted requests before any
//! handler runs: form bodies and query strings, percent-encoded components,
//! path segments (device, appliance and signal ids), JSON strings and keys,
//! and the form's typed accessors. Properties: no panic, refusals are
//! [`ApiError`]s of status 400, what is accepted holds no forbidden
//! character, and encoded text decodes back to itself.

use super::*;
use crate::form::Form;
use axum::http::StatusCode;
use kumo_testkit::fuzz::{config, edge_value};
use proptest::prelude::*;
use proptest::sample::select;

/// Text with the characters that matter here: separators, escapes, controls,
/// multi-byte UTF-8.
fn text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            4 => select(vec!['a', 'Z', '0', ' ', '=', '&', '+', '%', '/', '.', '?', '#']),
            1 => select(vec!['\0', '\t', '\n', '\r', '\u{1b}', '\u{7f}', '\u{85}', '\u{a0}']),
            1 => select(vec!['é', 'リ', '🌡', '\u{202e}', '\u{feff}', '\u{fffd}']),
        ],
        0..16,
    )
    .prop_map(String::from_iter)
}

/// Raw bytes biased towards `%`, hex digits and invalid UTF-8.
fn raw() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            3 => select(b"%=&+/0123456789abcdefABCDEFxyz".to_vec()),
            1 => any::<u8>(),
        ],
        0..48,
    )
}

/// Percent-encodes every byte: the strictest thing a client can send.
fn encode(s: &str) -> String {
    s.bytes().map(|b| format!("%{b:02X}")).collect()
}

fn is_400(e: &ApiError) -> bool {
    e.status() == StatusCode::BAD_REQUEST
}

proptest! {
    #![proptest_config(config(2_000))]

    /// Any bytes as a form body or query string: fields of clean text, or a 400.
    #[test]
    fn any_form_body_decodes_to_clean_fields_or_a_400(body in raw()) {
        match decode_form(&body, "field") {
            Ok(fields) => {
                for (k, v) in fields {
                    prop_assert!(forbidden_char(&k).is_none() && forbidden_char(&v).is_none());
                }
            }
            Err(e) => prop_assert!(is_400(&e), "{}", e.message()),
        }
    }

    /// Fields a client encodes come back as sent, unless they hold a
    /// character no field may hold.
    #[test]
    fn encoded_fields_decode_to_themselves(pairs in prop::collection::vec((text(), text()), 1..5)) {
        let body = pairs
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let clean = pairs
            .iter()
            .all(|(k, v)| forbidden_char(k).is_none() && forbidden_char(v).is_none());
        match decode_form(body.as_bytes(), "field") {
            Ok(fields) => prop_assert_eq!(fields, pairs),
            Err(e) => prop_assert!(!clean && is_400(&e), "{}", e.message()),
        }
    }

    /// A component is UTF-8 of the bytes it encodes; `%` not followed by two
    /// hex digits stands for itself.
    #[test]
    fn components_decode_to_utf8_or_nothing(bytes in raw(), plus in any::<bool>()) {
        if let Some(s) = decode_component(&bytes, plus) {
            prop_assert!(s.len() <= bytes.len());
        }
        let s = String::from_utf8_lossy(&bytes).into_owned();
        prop_assert_eq!(decode_component(encode(&s).as_bytes(), plus), Some(s));
    }

    /// Request paths (ids in segments) are checked without panicking.
    #[test]
    fn any_path_is_checked_without_panicking(segments in prop::collection::vec(raw(), 0..5)) {
        let path = segments
            .iter()
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect::<Vec<_>>()
            .join("/");
        if let Err(e) = check_path(&format!("/1/devices/{path}")) {
            prop_assert!(is_400(&e));
        }
    }

    /// JSON documents with edge values and keys anywhere.
    #[test]
    fn any_json_document_is_checked_without_panicking(
        fields in prop::collection::vec((text(), edge_value()), 0..6),
    ) {
        let doc = serde_json::Value::Object(fields.into_iter().collect());
        if let Err(e) = check_json(&doc) {
            prop_assert!(is_400(&e));
        }
        prop_assert_eq!(check_json(&serde_json::json!([doc.clone()])).is_ok(), check_json(&doc).is_ok());
    }

    /// The form's typed accessors on arbitrary fields.
    #[test]
    fn form_accessors_never_panic(
        pairs in prop::collection::vec((select(vec!["nickname", "image", "value", "extra.x", "extra.", "extra"]), text()), 0..6),
    ) {
        let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let form = Form::from_pairs(&pairs);
        if let Ok(n) = form.required_number("value") {
            prop_assert!(n.is_finite());
        }
        let _ = form.required_nonempty("nickname");
        let _ = form.label_and_image("nickname");
        for (id, _) in form.prefixed("extra") {
            let key = format!("extra.{id}");
            prop_assert!(pairs.iter().any(|(k, _)| *k == key));
        }
    }

    /// Numbers render as Nature does without changing their value.
    #[test]
    fn numbers_render_without_changing_their_value(v in any::<f64>().prop_filter("finite", |v| v.is_finite())) {
        let rendered = crate::json::number(v);
        prop_assert_eq!(rendered.as_f64(), Some(v));
    }
}
