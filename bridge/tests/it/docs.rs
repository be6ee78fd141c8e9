//! The reference docs: both OpenAPI documents are served without a token,
//! every documented operation reaches a route of the router (none falls to
//! the 404 fallback or a 405), and `/docs` serves the viewer and the pages.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

use crate::common::*;

/// A documented path with its `{id}`s filled with a value no account has, so
/// every handler answers without changing anything real.
fn concrete(path: &str) -> String {
    path.split('/')
        .map(|seg| {
            if seg.starts_with('{') {
                "no-such-id"
            } else {
                seg
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test]
async fn every_documented_operation_reaches_a_route_of_the_router() {
    let h = start().await;
    let mut operations = 0;
    for doc_path in ["/1/openapi.json", "/v1/openapi.json"] {
        // Public: no token.
        let doc = h
            .send(h.http.get(format!("{}{doc_path}", h.base)))
            .await
            .ok();
        assert_eq!(doc["openapi"], "3.0.3", "{doc_path}");
        for (path, item) in doc["paths"].as_object().unwrap() {
            let methods = item
                .as_object()
                .unwrap()
                .keys()
                .filter(|k| ["get", "post", "put", "patch", "delete"].contains(&k.as_str()));
            for method in methods {
                let url = format!("{}{}", h.base, concrete(path));
                let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
                // Headers only: `/v1/events` streams for ever.
                let resp = h
                    .http
                    .request(m, &url)
                    .bearer_auth(&h.token)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .send()
                    .await
                    .unwrap();
                assert_ne!(resp.status(), 405, "{method} {path}");
                operations += 1;
            }
        }
    }
    assert!(operations > 50, "{operations} operations");
    // The metrics name every request's route pattern: none fell through.
    let text = h.metrics_text().await;
    let unmatched: Vec<_> = text
        .lines()
        .filter(|l| l.contains("route=\"unmatched\"") || l.contains("status=\"405\""))
        .collect();
    assert!(unmatched.is_empty(), "{unmatched:#?}");
    h.stop().await;
}

#[tokio::test]
async fn the_nature_document_describes_every_nature_path_kumo_serves_with_its_scope() {
    let h = start().await;
    let doc = h
        .send(h.http.get(format!("{}/1/openapi.json", h.base)))
        .await
        .ok();
    let paths: BTreeSet<&str> = doc["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for path in [
        "/1/users/me",
        "/1/devices",
        "/1/appliances/{id}/aircon_settings",
        "/2/appliances/{id}/aircon_settings",
        "/1/signals/{id}/send",
        "/1/echonetlite/appliances/{id}/set",
    ] {
        assert!(paths.contains(path), "{path}");
    }
    for item in doc["paths"].as_object().unwrap().values() {
        for (key, op) in item.as_object().unwrap() {
            if key == "parameters" {
                continue;
            }
            let public = op["security"] == serde_json::json!([]);
            assert!(
                public || op["x-kumo-scope"].is_string(),
                "every operation names its scope: {op}"
            );
        }
    }
    h.stop().await;
}

#[tokio::test]
async fn docs_serves_the_viewer_and_the_reference_pages() {
    let h = start().await;
    let page = h.http.get(format!("{}/docs", h.base)).send().await.unwrap();
    assert_eq!(page.status(), 200, "/docs redirects to /docs/");
    assert!(page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("script-src 'self'"));
    let html = page.text().await.unwrap();
    assert!(html.contains("/docs/viewer.js"), "{html}");
    let js = h
        .http
        .get(format!("{}/docs/viewer.js", h.base))
        .send()
        .await
        .unwrap();
    assert_eq!(js.status(), 200);
    assert!(js.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/javascript"));
    let pages = h
        .send(h.http.get(format!("{}/docs/ref/index.json", h.base)))
        .await
        .ok();
    let pages = pages.as_array().unwrap();
    assert!(!pages.is_empty());
    for p in pages {
        let name = p["name"].as_str().unwrap();
        let r = h
            .http
            .get(format!("{}/docs/ref/{name}.md", h.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{name}");
        assert!(r.text().await.unwrap().starts_with("# "), "{name}");
    }
    h.get("/docs/ref/../Cargo.toml").await.assert_error(404001);
    h.get("/docs/ref/nothing.md").await.assert_error(404001);
    h.stop().await;
}
