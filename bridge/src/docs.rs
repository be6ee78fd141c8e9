//! The reference documentation the bridge serves: the OpenAPI documents of
//! `/1` (the Nature-compatible paths) and `/v1`, a small viewer at `/docs`
//! (plain JavaScript modules from `bridge/docs-viewer/`, embedded; no build
//! step) and the markdown reference pages of `docs/`, which it renders.
//!
//! Everything here is static and public (no token): it must not read the
//! database or say anything about an account.

use axum::extract::Path;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use serde_json::json;

use crate::error::ApiError;

/// The OpenAPI 3 document of the Nature-compatible paths (`/1`, `/2`).
pub const OPENAPI_1: &str = include_str!("api/openapi-1.json");
/// The OpenAPI 3 document of Kumo's own API (`/v1`) and the health checks.
pub const OPENAPI_V1: &str = include_str!("api/openapi.json");

const INDEX: &str = include_str!("../docs-viewer/index.html");
const VIEWER_JS: &str = include_str!("../docs-viewer/viewer.js");
const VIEWER_CSS: &str = include_str!("../docs-viewer/viewer.css");

/// A markdown page of `docs/`, served at `/docs/ref/{name}.md`.
pub struct RefPage {
    pub name: &'static str,
    pub title: &'static str,
    pub body: &'static str,
}

macro_rules! page {
    ($name:literal, $title:literal) => {
        RefPage {
            name: $name,
            title: $title,
            body: include_str!(concat!("../../docs/", $name, ".md")),
        }
    };
}

/// The reference pages, in the order the viewer lists them.
pub static REF_PAGES: &[RefPage] = &[
    page!("appliance-catalogue", "Appliance catalogue"),
    page!("scopes", "Token scopes"),
    page!("webhooks", "Webhooks"),
    page!("config", "Configuration"),
    page!("energy", "Energy history"),
    page!("device-protocol", "Device protocol (MQTT)"),
    page!("mqtt-conformance", "MQTT conformance"),
    page!("nature-api-differences", "Differences from Nature"),
];

/// The documentation routes, merged into the API router (they need no state).
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/1/openapi.json", get(|| async { json_doc(OPENAPI_1) }))
        .route("/v1/openapi.json", get(|| async { json_doc(OPENAPI_V1) }))
        .route("/docs", get(|| async { Redirect::to("/docs/") }))
        .route(
            "/docs/",
            get(|| async { file("text/html; charset=utf-8", INDEX) }),
        )
        .route(
            "/docs/viewer.js",
            get(|| async { file("text/javascript; charset=utf-8", VIEWER_JS) }),
        )
        .route(
            "/docs/viewer.css",
            get(|| async { file("text/css; charset=utf-8", VIEWER_CSS) }),
        )
        .route("/docs/ref/index.json", get(ref_index))
        .route("/docs/ref/{file}", get(ref_page))
}

fn json_doc(body: &'static str) -> Response {
    ([(CONTENT_TYPE, "application/json")], body).into_response()
}

fn file(content_type: &'static str, body: &'static str) -> Response {
    let mut r = ([(CONTENT_TYPE, content_type)], body).into_response();
    crate::console::secure(&mut r, "no-cache");
    r
}

async fn ref_index() -> Response {
    let pages: Vec<_> = REF_PAGES
        .iter()
        .map(|p| json!({"name": p.name, "title": p.title}))
        .collect();
    let mut r = axum::Json(pages).into_response();
    crate::console::secure(&mut r, "no-cache");
    r
}

/// `/docs/ref/{name}.md`: the page's markdown, as text.
async fn ref_page(Path(name): Path<String>) -> Response {
    let page = name
        .strip_suffix(".md")
        .and_then(|name| REF_PAGES.iter().find(|p| p.name == name));
    match page {
        Some(p) => file("text/markdown; charset=utf-8", p.body),
        None => ApiError::not_found().into_response(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;

    /// Every `.route("path", methods…)` in a router's source, with the HTTP
    /// methods of its method router. Axum cannot list a router's routes, so
    /// the source that builds them is what is compared.
    fn routes_in(source: &str) -> BTreeMap<String, BTreeSet<String>> {
        let mut out = BTreeMap::new();
        let mut rest = source;
        while let Some(at) = rest.find(".route(") {
            rest = &rest[at + ".route(".len()..];
            let Some(path) = rest.trim_start().strip_prefix('"') else {
                continue;
            };
            let path = &path[..path.find('"').unwrap()];
            // The call's arguments run to its closing parenthesis.
            let mut depth = 1;
            let end = rest
                .char_indices()
                .find(|&(_, c)| {
                    depth += match c {
                        '(' => 1,
                        ')' => -1,
                        _ => 0,
                    };
                    depth == 0
                })
                .map_or(rest.len(), |(i, _)| i);
            let expr = &rest[..end];
            let methods = ["get", "post", "put", "patch", "delete"]
                .into_iter()
                .filter(|m| {
                    expr.match_indices(&format!("{m}(")).any(|(i, _)| {
                        let before = expr[..i].chars().next_back();
                        !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':')
                    })
                })
                .map(str::to_string)
                .collect();
            out.insert(path.to_string(), methods);
        }
        out
    }

    /// Paths and methods of an OpenAPI document.
    fn documented(doc: &str) -> BTreeMap<String, BTreeSet<String>> {
        let doc: serde_json::Value = serde_json::from_str(doc).unwrap();
        doc["paths"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(path, item)| {
                let methods = item
                    .as_object()
                    .unwrap()
                    .keys()
                    .filter(|k| ["get", "post", "put", "patch", "delete"].contains(&k.as_str()))
                    .cloned()
                    .collect();
                (path.clone(), methods)
            })
            .collect()
    }

    /// Pages for people, not API: the console and this viewer.
    fn is_page(path: &str) -> bool {
        path == "/" || path.starts_with("/console") || path.starts_with("/docs")
    }

    #[test]
    fn every_route_the_router_serves_is_in_the_openapi_documents_and_nothing_else() {
        // Only the code that builds routers, never a test module's text.
        let code = |s: &'static str| s.split("#[cfg(test)]").next().unwrap();
        let mut served = routes_in(code(include_str!("api/mod.rs")));
        served.extend(routes_in(code(include_str!("docs.rs"))));
        served.extend(routes_in(code(include_str!("console/mod.rs"))));
        served.retain(|path, _| !is_page(path));
        assert!(served.len() > 40, "the route parser found {served:?}");
        let mut docs = documented(OPENAPI_1);
        for (path, methods) in documented(OPENAPI_V1) {
            assert!(docs.insert(path.clone(), methods).is_none(), "{path} twice");
        }
        let undocumented: Vec<_> = served
            .iter()
            .filter(|(path, methods)| docs.get(*path) != Some(methods))
            .collect();
        assert!(
            undocumented.is_empty(),
            "served but not documented with these methods: {undocumented:?}"
        );
        let unserved: Vec<_> = docs
            .iter()
            .filter(|(path, methods)| served.get(*path) != Some(methods))
            .collect();
        assert!(
            unserved.is_empty(),
            "documented but not served: {unserved:?}"
        );
    }

    #[test]
    fn the_route_parser_reads_chained_method_routers() {
        let src = r#".route("/a/{id}", get(x::show).put(x::replace).delete(x::delete))
            .route("/b", post(y::get))"#;
        let r = routes_in(src);
        assert_eq!(
            r["/a/{id}"],
            BTreeSet::from(["get".into(), "put".into(), "delete".into()])
        );
        assert_eq!(r["/b"], BTreeSet::from(["post".into()]));
    }

    #[test]
    fn every_reference_page_is_listed_once() {
        let names: BTreeSet<_> = REF_PAGES.iter().map(|p| p.name).collect();
        assert_eq!(names.len(), REF_PAGES.len());
        for p in REF_PAGES {
            assert!(p.body.starts_with("# "), "{} has a title", p.name);
        }
    }
}
