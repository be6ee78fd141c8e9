//! Shared pieces of the property-based fuzz harnesses (`proptest`, stable
//! Rust): the case count, JSON documents edited as trees, and bodies damaged
//! as bytes. Each crate's harness owns its seeds and its properties.
//!
//! `PROPTEST_CASES` overrides every harness's default case count
//! (`bench/fuzz/run.sh` sets it for a long run).

use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{json, Value};

/// Cases per property: `cases` in a normal test run, `PROPTEST_CASES` if set.
pub fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

/// Values at the edges of every JSON type and of the ranges the types check.
pub fn edge_value() -> impl Strategy<Value = Value> {
    let deep = |n: usize| {
        let mut v = json!(0);
        for _ in 0..n {
            v = json!([v]);
        }
        v
    };
    prop_oneof![
        select(vec![
            Value::Null,
            json!(true),
            json!(0),
            json!(-1),
            json!(-0.0),
            json!(u64::MAX),
            json!(i64::MIN),
            json!(1e308),
            json!(-1e308),
            json!(5e-324),
            json!(253_402_300_800_000u64),
            json!(""),
            json!("\u{0}"),
            json!("é😀\u{202e}"),
            json!("x".repeat(70_000)),
            json!([]),
            json!({}),
            json!({"": null}),
            deep(200),
        ]),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("JSON numbers are finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        "[a-z_]{0,12}".prop_map(Value::String),
    ]
}

/// One change to a JSON tree; the position is a fraction of its nodes in
/// depth-first order.
#[derive(Debug, Clone)]
pub enum Edit {
    /// Replace the node with another value.
    Replace(f64, Value),
    /// Remove the first field of an object or the last item of an array.
    Remove(f64),
    /// Add (or overwrite) a field of an object.
    AddField(f64, String, Value),
    /// Put the node inside a one-item array.
    Wrap(f64),
}

/// Any [`Edit`], at any node.
pub fn edit() -> impl Strategy<Value = Edit> {
    let at = 0.0..1.0f64;
    let key = prop_oneof![
        select(vec![
            "val",
            "ts",
            "id",
            "type",
            "result",
            "extra",
            "__proto__"
        ])
        .prop_map(String::from),
        "[a-z]{1,8}",
    ];
    prop_oneof![
        3 => (at.clone(), edge_value()).prop_map(|(a, v)| Edit::Replace(a, v)),
        2 => at.clone().prop_map(Edit::Remove),
        1 => (at.clone(), key, edge_value()).prop_map(|(a, k, v)| Edit::AddField(a, k, v)),
        1 => at.prop_map(Edit::Wrap),
    ]
}

fn count(v: &Value) -> usize {
    1 + match v {
        Value::Array(a) => a.iter().map(count).sum(),
        Value::Object(o) => o.values().map(count).sum(),
        _ => 0,
    }
}

/// The node `n` places into `v` (depth first), counting down `n`.
fn nth<'a>(v: &'a mut Value, n: &mut usize) -> Option<&'a mut Value> {
    if *n == 0 {
        return Some(v);
    }
    *n -= 1;
    match v {
        Value::Array(a) => a.iter_mut().find_map(|c| nth(c, n)),
        Value::Object(o) => o.values_mut().find_map(|c| nth(c, n)),
        _ => None,
    }
}

/// Applies one edit to a document.
pub fn apply(doc: &mut Value, edit: &Edit) {
    let pick = |at: f64, doc: &Value| ((at * count(doc) as f64) as usize).min(count(doc) - 1);
    match edit {
        Edit::Replace(at, value) => {
            let mut n = pick(*at, doc);
            if let Some(node) = nth(doc, &mut n) {
                *node = value.clone();
            }
        }
        Edit::Remove(at) => {
            let mut n = pick(*at, doc);
            match nth(doc, &mut n) {
                Some(Value::Object(o)) if !o.is_empty() => {
                    let k = o.keys().next().cloned().unwrap_or_default();
                    o.remove(&k);
                }
                Some(Value::Array(a)) => {
                    a.pop();
                }
                _ => {}
            }
        }
        Edit::AddField(at, key, value) => {
            let mut n = pick(*at, doc);
            if let Some(Value::Object(o)) = nth(doc, &mut n) {
                o.insert(key.clone(), value.clone());
            }
        }
        Edit::Wrap(at) => {
            let mut n = pick(*at, doc);
            if let Some(node) = nth(doc, &mut n) {
                *node = json!([node.take()]);
            }
        }
    }
}

/// Byte-level damage after the tree edits.
#[derive(Debug, Clone)]
pub enum Damage {
    /// The body as it is.
    None,
    /// Cut at a fraction of its length.
    Truncate(f64),
    /// One byte replaced.
    Byte(f64, u8),
    /// Bytes inserted (invalid UTF-8, a lone surrogate escape, a stray field).
    Insert(f64, Vec<u8>),
}

/// Mostly no damage, else one [`Damage`].
pub fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        4 => Just(Damage::None),
        1 => (0.0..1.0f64).prop_map(Damage::Truncate),
        1 => (0.0..1.0f64, any::<u8>()).prop_map(|(a, b)| Damage::Byte(a, b)),
        1 => (0.0..1.0f64, select(vec![vec![0xc0u8, 0x80], vec![0xed, 0xa0, 0x80], vec![0xff], b"\\ud800".to_vec(), b",\"ts\":1".to_vec()]))
            .prop_map(|(a, b)| Damage::Insert(a, b)),
    ]
}

/// The body with the damage done.
pub fn damaged(mut body: Vec<u8>, damage: &Damage) -> Vec<u8> {
    let at = |f: f64, len: usize| ((f * len as f64) as usize).min(len);
    match damage {
        Damage::None => {}
        Damage::Truncate(f) => body.truncate(at(*f, body.len())),
        Damage::Byte(f, b) if !body.is_empty() => {
            let i = at(*f, body.len() - 1);
            body[i] = *b;
        }
        Damage::Insert(f, bytes) => {
            let i = at(*f, body.len());
            body.splice(i..i, bytes.iter().copied());
        }
        Damage::Byte(..) => {}
    }
    body
}

/// Whether two documents are equal but for floats a few ULPs apart:
/// serde_json's default float parser (without its `float_roundtrip`
/// feature) may land beside the nearest float on long mantissas, so a
/// number it printed can read back as a neighbour.
pub fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) if x.is_finite() && y.is_finite() => {
                x == y || (x - y).abs() <= 1e-14 * x.abs().max(y.abs())
            }
            _ => x == y,
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_json(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}
