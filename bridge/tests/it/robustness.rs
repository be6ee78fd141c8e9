//! No input gives a 5xx. Requests are generated from the operations of the
//! official Nature document (`shared/reference/nature-api/cloud-api.swagger.json`)
//! and of Kumo's own `/v1/openapi.json`: every path parameter, form field,
//! query parameter and JSON body gets a NUL character, invalid UTF-8 and a
//! plain value in turn. Nothing may answer 5xx; text with a NUL or broken
//! UTF-8 must be refused (400 in Nature's shape) wherever Kumo serves the
//! operation (404/405 where it does not yet).
//!
//! Left out: `GET /v1/events`, a stream that never ends.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value;

use crate::common::{start, Harness};

/// One operation of an OpenAPI 3 document.
#[derive(Debug)]
struct Operation {
    method: String,
    path: String,
    form: Vec<String>,
    query: Vec<String>,
    json: bool,
}

fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(r) => r
            .trim_start_matches("#/")
            .split('/')
            .fold(doc, |v, part| &v[part]),
        None => schema,
    }
}

fn operations(doc: &Value) -> Vec<Operation> {
    let mut out = Vec::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            if !["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                continue;
            }
            let query = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| resolve(doc, p))
                .filter(|p| p["in"] == "query")
                .map(|p| p["name"].as_str().unwrap().to_string())
                .collect();
            let content = &op["requestBody"]["content"];
            let form_schema = resolve(doc, &content["application/x-www-form-urlencoded"]["schema"]);
            let form = form_schema["properties"]
                .as_object()
                .map(|p| p.keys().cloned().collect())
                .unwrap_or_default();
            out.push(Operation {
                method: method.to_uppercase(),
                path: path.clone(),
                form,
                query,
                json: content.get("application/json").is_some(),
            });
        }
    }
    out
}

/// What each field gets: a NUL, broken UTF-8, or a plain value (already encoded).
const VARIANTS: [(&str, &str); 3] = [("nul", "a%00b"), ("utf8", "%FF%FE"), ("plain", "x")];

/// Probes `op` with `variant` text; aggregator operations with `aggregator`'s token.
async fn probe(h: &Harness, op: &Operation, variant: &str, value: &str, aggregator: &str) -> u16 {
    let mut path = String::new();
    for (i, part) in op.path.split('{').enumerate() {
        if i == 0 {
            path.push_str(part);
        } else {
            let (_, rest) = part.split_once('}').unwrap();
            path.push_str(value);
            path.push_str(rest);
        }
    }
    let query: Vec<String> = op.query.iter().map(|q| format!("{q}={value}")).collect();
    let url = if query.is_empty() {
        format!("{}{path}", h.base)
    } else {
        format!("{}{path}?{}", h.base, query.join("&"))
    };
    let method = reqwest::Method::from_bytes(op.method.as_bytes()).unwrap();
    let token = if op.path.starts_with("/v1/aggregator/") {
        aggregator
    } else {
        &h.token
    };
    let mut req = h.http.request(method, url).bearer_auth(token);
    if op.json {
        let body: Vec<u8> = match variant {
            "nul" => br#"{"name": "a\u0000b", "trigger": {"x": "\u0000"}}"#.to_vec(),
            "utf8" => b"{\"name\": \"\xff\xfe\"}".to_vec(),
            _ => br#"{"name": "x"}"#.to_vec(),
        };
        req = req.header("content-type", "application/json").body(body);
    } else if !op.form.is_empty() {
        let body: Vec<String> = op.form.iter().map(|f| format!("{f}={value}")).collect();
        req = req
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.join("&"));
    }
    h.send(req).await.status.as_u16()
}

fn doc(path: PathBuf) -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap()
}

#[tokio::test]
async fn no_generated_request_gets_a_server_error_and_bad_text_is_refused() {
    let h = start().await;
    h.add_device("remo-1", kumo_bridge::DeviceKind::Remo).await;
    let (_, aggregator) = kumo_bridge::demand::principal::create(&h.pool, "Grid Co")
        .await
        .unwrap();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    // The official document is reference data beside the repository (`../shared`,
    // as CI lays it out), never a copy inside it.
    let nature = root.join("../shared/reference/nature-api/cloud-api.swagger.json");
    let kumo = root.join("bridge/src/api/openapi.json");
    let mut ops = operations(&doc(nature));
    ops.extend(operations(&doc(kumo)));
    ops.retain(|op| op.path != "/v1/events");
    assert!(ops.len() > 50, "{} operations", ops.len());

    let mut seen: BTreeMap<(String, u16), usize> = BTreeMap::new();
    let mut server_errors = Vec::new();
    for op in &ops {
        let takes_text =
            op.path.contains('{') || !op.form.is_empty() || !op.query.is_empty() || op.json;
        for (variant, value) in VARIANTS {
            let status = probe(&h, op, variant, value, &aggregator).await;
            *seen.entry((variant.to_string(), status)).or_default() += 1;
            if status >= 500 {
                server_errors.push(format!("{} {} ({variant}): {status}", op.method, op.path));
            }
            if variant != "plain" && takes_text {
                assert!(
                    matches!(status, 400 | 404 | 405),
                    "{} {} with {variant} text answered {status}",
                    op.method,
                    op.path
                );
            }
        }
    }
    assert!(server_errors.is_empty(), "{server_errors:#?}");
    // Not vacuous: most bad text reached a served route and was refused.
    let refused = seen.get(&("nul".into(), 400)).copied().unwrap_or(0);
    assert!(refused >= 30, "{seen:?}");
    h.stop().await;
}
