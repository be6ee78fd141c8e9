//! Text at the API boundary: every string a request carries — form fields,
//! query parameters, path segments, JSON strings — is decoded strictly and
//! checked once here, before anything reaches a store.
//!
//! Refused, with a 400 naming the field: invalid UTF-8 after percent-decoding
//! (a lossy decode would store something other than what was sent), NUL and
//! other control characters (C0 except tab, line feed and carriage return;
//! DEL; C1). PostgreSQL cannot store NUL in text at all; the others have no
//! place in names, ids or settings.

use serde_json::Value;

use crate::error::ApiError;

/// The first character of `s` that no text field may hold.
pub fn forbidden_char(s: &str) -> Option<char> {
    s.chars()
        .find(|&c| (c.is_control() && !matches!(c, '\t' | '\n' | '\r')) || c == '\u{7f}')
}

/// `Ok` if `value` may be stored as the text of `field`.
pub fn check(field: &str, value: &str) -> Result<(), ApiError> {
    match forbidden_char(value) {
        None => Ok(()),
        Some(c) => Err(ApiError::bad_request(format!(
            "{field} contains the control character U+{:04X}",
            u32::from(c)
        ))),
    }
}

/// Every key and string in a JSON document, named by its path (`name`,
/// `actions[0].event.name`).
pub fn check_json(value: &Value) -> Result<(), ApiError> {
    fn walk(path: &str, v: &Value) -> Result<(), ApiError> {
        match v {
            Value::String(s) => check(if path.is_empty() { "the body" } else { path }, s),
            Value::Array(items) => items
                .iter()
                .enumerate()
                .try_for_each(|(i, item)| walk(&format!("{path}[{i}]"), item)),
            Value::Object(map) => map.iter().try_for_each(|(k, item)| {
                let here = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                check(&format!("the key {here:?}"), k)?;
                walk(&here, item)
            }),
            _ => Ok(()),
        }
    }
    walk("", value)
}

/// Decodes one `application/x-www-form-urlencoded` component (`+` is a
/// space, `%XX` a byte) into UTF-8, or `None` if the bytes are not UTF-8.
/// A `%` not followed by two hex digits stands for itself, as browsers send it.
pub fn decode_component(raw: &[u8], plus_is_space: bool) -> Option<String> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        let hex = |j: usize| raw.get(j).and_then(|h| (*h as char).to_digit(16));
        match b {
            b'+' if plus_is_space => out.push(b' '),
            b'%' => match (hex(i + 1), hex(i + 2)) {
                (Some(hi), Some(lo)) => {
                    // Two hex digits make one byte (at most 0xFF).
                    out.push((hi * 16 + lo) as u8);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            _ => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// A form-urlencoded body or query string as `(name, value)` pairs, strictly
/// decoded and checked.
pub fn decode_form(raw: &[u8], what: &str) -> Result<Vec<(String, String)>, ApiError> {
    let mut fields = Vec::new();
    for pair in raw.split(|b| *b == b'&').filter(|p| !p.is_empty()) {
        let (k, v) = match pair.iter().position(|b| *b == b'=') {
            Some(eq) => (&pair[..eq], &pair[eq + 1..]),
            None => (pair, &[][..]),
        };
        let key = decode_component(k, true)
            .ok_or_else(|| ApiError::bad_request(format!("a {what} name is not valid UTF-8")))?;
        check(&format!("the {what} name {key:?}"), &key)?;
        let value = decode_component(v, true)
            .ok_or_else(|| ApiError::bad_request(format!("{key} is not valid UTF-8")))?;
        check(&key, &value)?;
        fields.push((key, value));
    }
    Ok(fields)
}

/// `Ok` if every segment of a request path decodes to text a field may hold.
pub fn check_path(path: &str) -> Result<(), ApiError> {
    for (i, segment) in path.split('/').filter(|s| !s.is_empty()).enumerate() {
        let decoded = decode_component(segment.as_bytes(), false).ok_or_else(|| {
            ApiError::bad_request(format!("path segment {} is not valid UTF-8", i + 1))
        })?;
        check(&format!("path segment {}", i + 1), &decoded)?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_refused_and_ordinary_text_is_not() {
        for ok in [
            "Living room",
            "リビング",
            "tab\there",
            "two\nlines",
            "emoji 🌡",
        ] {
            assert!(forbidden_char(ok).is_none(), "{ok:?}");
        }
        for bad in ["a\0b", "bell\u{7}", "del\u{7f}", "c1\u{85}", "esc\u{1b}[0m"] {
            assert!(forbidden_char(bad).is_some(), "{bad:?}");
        }
    }

    #[test]
    fn forms_decode_strictly() {
        let f = decode_form(b"nickname=a+b%21&empty=&flag", "field").unwrap();
        assert_eq!(
            f,
            vec![
                ("nickname".into(), "a b!".into()),
                ("empty".into(), String::new()),
                ("flag".into(), String::new())
            ]
        );
        assert_eq!(decode_form(b"x=100%", "field").unwrap()[0].1, "100%");
        for bad in [
            &b"nickname=%FF%FE"[..],
            b"nickname=a%00b",
            b"%00=1",
            b"n=%1B",
        ] {
            assert!(decode_form(bad, "field").is_err(), "{bad:?}");
        }
        let e = decode_form(b"nickname=a%00b", "field").unwrap_err();
        assert!(e.message().contains("nickname"), "{}", e.message());
    }

    #[test]
    fn paths_with_control_characters_or_broken_utf8_are_refused() {
        assert!(check_path("/1/devices/remo-1/appliances").is_ok());
        assert!(check_path("/1/devices/%E3%83%AA/appliances").is_ok());
        assert!(check_path("/1/devices/a%00/appliances").is_err());
        assert!(check_path("/1/signals/%FF/send").is_err());
    }

    #[test]
    fn json_strings_and_keys_are_checked_by_path() {
        let ok = serde_json::json!({"name": "hot", "actions": [{"event": {"name": "x"}}]});
        assert!(check_json(&ok).is_ok());
        let bad = serde_json::json!({"name": "hot", "actions": [{"event": {"name": "a\u{0}"}}]});
        let e = check_json(&bad).unwrap_err();
        assert!(
            e.message().contains("actions[0].event.name"),
            "{}",
            e.message()
        );
        assert!(check_json(&serde_json::json!({"a\u{0}": 1})).is_err());
    }
}

#[cfg(test)]
#[path = "text_fuzz.rs"]
mod fuzz;
