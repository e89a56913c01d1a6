//! `sieve-web`: Sieve's web UI, server-rendered with Leptos (`ssr` only: this project has no wasm32 target, so
//! there is no hydration). Every page is an HTML form or a link with all its state in the URL, so each works
//! with JavaScript off; the pages render from the wire types of `sieve-api` and run the same engine calls as
//! the JSON API (`sieve_server::convert`), never a copy of them.
//!
//! - `/`: search (the catalog site and the news page): index picker, query, mode, facets with counts from the
//!   final ranked set, price range, sort, pages, result cards with "Why here?" (every stage's score and rank,
//!   bars normalised within the page), the request's stage timings, a banner when the answer is degraded;
//! - `/feed`: the news feed: one item per story with its cluster ("+11 similar from …"), source and age, why
//!   here (relevance × freshness, the MMR penalty, the source cap) and the next page by cursor.
//!
//! `sieve serve` mounts [`routes`] beside `/v1/*`. The stylesheet is compiled into the binary and served with
//! a content hash in its URL (cached for a year); every page carries a Content-Security-Policy that allows only
//! the server's own assets.

// Leptos views are nested types; a page of them needs more than the default 128 levels.
#![recursion_limit = "512"]

mod feed;
mod layout;
mod params;
mod parts;
mod search;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use sieve_server::SharedState;

/// The stylesheet, compiled in.
pub const CSS: &str = include_str!("../assets/sieve.css");

/// The Content-Security-Policy of every page: the server's own stylesheet, no script, no frame, forms posting
/// only here.
pub const CSP: &str =
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// The stylesheet's URL: its content hash in the name, so a new build never meets a stale cache.
pub fn css_path() -> String {
    // FNV-1a, enough to tell builds apart
    let hash = CSS.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
    format!("/assets/sieve-{:08x}.css", hash as u32)
}

/// The UI's routes, for `sieve serve` to merge beside the API.
pub fn routes() -> Router<SharedState> {
    Router::new().route("/", get(search::page)).route("/feed", get(feed::page)).route("/assets/{file}", get(asset))
}

async fn asset(axum::extract::Path(file): axum::extract::Path<String>) -> Response {
    if format!("/assets/{file}") != css_path() {
        return (StatusCode::NOT_FOUND, "no such asset").into_response();
    }
    let mut res = CSS.into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/css; charset=utf-8"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=31536000, immutable"));
    res
}

/// An HTML page with the UI's headers.
pub(crate) fn html(status: StatusCode, body: String) -> Response {
    let mut res = (status, body).into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}
