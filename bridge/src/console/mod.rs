//! The web console: `/console/` serves a single page that signs in with an
//! API token and then uses only the public REST API with that token (so it
//! can never show more than the token may see). `GET /` redirects here.
//!
//! Owns the routes and the response headers of the console's files: a strict
//! Content-Security-Policy (scripts, styles and connections from this origin
//! only, no inline code, no framing), `index.html` revalidated on every load,
//! versioned assets cached for good, gzip when the client accepts it. It must
//! not read the database or know any token: the page does everything through
//! `/1` and `/v1`, sending the token in the `Authorization` header.

mod assets;

use axum::extract::Path;
use axum::http::header::{
    ACCEPT_ENCODING, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_TYPE, ETAG, IF_NONE_MATCH, VARY,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;

pub use assets::{Asset, FILES};
use assets::{Encoded, CONSOLE};

/// Where the console lives.
pub const ROOT: &str = "/console/";
/// Versioned asset directory: `/console/a/{version}/{path}`.
pub const ASSET_ROOT: &str = "/console/a";

/// The policy on every console response. `connect-src 'self'` is what lets
/// the page call the API and read the event stream; nothing else may load.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// The console's routes, merged into the API router (they need no state).
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|| async { Redirect::to(ROOT) }))
        .route("/console", get(|| async { Redirect::to(ROOT) }))
        .route("/console/", get(index))
        .route("/console/a/{version}/{*path}", get(asset))
}

/// The version of this build's assets (the page's URLs carry it).
pub fn version() -> &'static str {
    &CONSOLE.version
}

/// The bytes a first visit downloads, gzipped: the page and every asset
/// (everything is loaded up front; there are no lazy chunks).
pub fn first_load_gzip_bytes() -> usize {
    CONSOLE.index.gzip.len() + CONSOLE.files.iter().map(|f| f.gzip.len()).sum::<usize>()
}

async fn index(headers: HeaderMap) -> Response {
    let etag = format!("\"{}\"", CONSOLE.version);
    if headers
        .get(IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag))
    {
        let mut r = StatusCode::NOT_MODIFIED.into_response();
        secure(&mut r, "no-cache");
        return r;
    }
    let mut r = encoded(&headers, "text/html; charset=utf-8", &CONSOLE.index);
    if let Ok(v) = HeaderValue::from_str(&etag) {
        r.headers_mut().insert(ETAG, v);
    }
    secure(&mut r, "no-cache");
    r
}

async fn asset(Path((version, path)): Path<(String, String)>, headers: HeaderMap) -> Response {
    let Some((file, body)) = CONSOLE.file(&path) else {
        return crate::error::ApiError::not_found().into_response();
    };
    let mut r = encoded(&headers, file.content_type, body);
    // A page of an older build asking for its version gets today's file,
    // revalidated: right after an upgrade that beats a broken page.
    let cache = if version == CONSOLE.version {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    secure(&mut r, cache);
    r
}

/// `body` gzipped if the client takes gzip, else as is.
fn encoded(headers: &HeaderMap, content_type: &'static str, body: &Encoded) -> Response {
    let gzip = accepts_gzip(headers) && !body.gzip.is_empty();
    let bytes = if gzip { &body.gzip } else { &body.plain };
    let mut r = bytes.clone().into_response();
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(VARY, HeaderValue::from_static("accept-encoding"));
    if gzip {
        h.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    r
}

/// Whether `Accept-Encoding` lists gzip (or `*`) without `q=0`.
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or_default().trim();
            let refused = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !refused
        })
}

/// The console's security and caching headers (also on `/docs`' files).
pub(crate) fn secure(r: &mut Response, cache: &'static str) {
    let h = r.headers_mut();
    h.insert(CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert("content-security-policy", HeaderValue::from_static(CSP));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn with(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(ACCEPT_ENCODING, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn gzip_is_used_only_when_accepted() {
        assert!(accepts_gzip(&with("gzip, deflate, br")));
        assert!(accepts_gzip(&with("br;q=1.0, gzip;q=0.8")));
        assert!(accepts_gzip(&with("*")));
        assert!(!accepts_gzip(&with("gzip;q=0")));
        assert!(!accepts_gzip(&with("br, identity")));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }
}
