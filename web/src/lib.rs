//! `sieve-web`: Sieve's web UI, server-rendered with Leptos (`ssr` only: this project has no wasm32 target, so
//! there is no hydration). Every page is an HTML form or a link with all its state in the URL, so each works
//! with JavaScript off; the pages render from the wire types of `sieve-api` and run the same engine calls as
//! the JSON API (`sieve_server::convert`), never a copy of them.
//!
//! - `/`: search (the catalog site and the news page): index picker, query, mode, facets with counts from the
//!   final ranked set, price range, sort, pages, result cards with "Why here?" (every stage's score and rank,
//!   bars normalised within the page), the request's stage timings, a banner when the answer is degraded;
//! - `/feed`: the news feed: one item per story with its cluster ("+11 similar from …"), source and age, why
//!   here (relevance × freshness, the MMR penalty, the source cap) and the next page by cursor;
//! - `/compare`: one query under two or three configurations side by side, rank moves, overlap@10 and RBO,
//!   and a judgments overlay (grades, nDCG@10) when the server has a labelled set for the index;
//! - `/playground`: the cross-encoder on pasted documents, with the equivalent `curl`;
//! - `/ingest`, `/tasks/{id}`: uploads as write tasks, and their progress and rejected rows;
//! - `/dashboard`: each index's settings and state, and SVG charts of the server's stage latencies and rerank
//!   scores.
//!
//! `sieve serve` mounts [`routes`] beside `/v1/*`. The stylesheet and the one small script are compiled into
//! the binary and served with a content hash in their URL (cached for a year); every page carries a
//! Content-Security-Policy that allows only the server's own assets.

// Leptos views are nested types; a page of them needs more than the default 128 levels.
#![recursion_limit = "512"]

mod compare;
mod dashboard;
mod feed;
mod ingest;
mod layout;
mod params;
mod parts;
mod playground;
mod search;
#[cfg(test)]
mod testing;
mod ui;

pub use ui::{JudgmentsError, UiOptions};

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use leptos::prelude::*;
use sieve_server::{ApiError, SharedState};

/// The stylesheet, compiled in.
pub const CSS: &str = include_str!("../assets/sieve.css");

/// The script, compiled in: a task page's live progress and copy buttons (progressive; pages work without it).
pub const JS: &str = include_str!("../assets/sieve.js");

/// The Content-Security-Policy of every page: the server's own stylesheet and script, fetches only to this
/// server, no frame, forms posting only here.
pub const CSP: &str = "default-src 'none'; style-src 'self'; script-src 'self'; connect-src 'self'; img-src 'self' data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// FNV-1a of an asset, enough to tell builds apart.
fn hash(text: &str) -> u32 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3)) as u32
}

/// The stylesheet's URL: its content hash in the name, so a new build never meets a stale cache (hashed once).
pub fn css_path() -> &'static str {
    static PATH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PATH.get_or_init(|| format!("/assets/sieve-{:08x}.css", hash(CSS)))
}

/// The script's URL, hashed the same way.
pub fn js_path() -> &'static str {
    static PATH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PATH.get_or_init(|| format!("/assets/sieve-{:08x}.js", hash(JS)))
}

/// The UI's routes, for `sieve serve` to merge beside the API; fails when a labelled set cannot be read.
pub fn routes(options: &UiOptions) -> Result<Router<SharedState>, JudgmentsError> {
    let ui = std::sync::Arc::new(ui::Ui::open(options)?);
    Ok(Router::new()
        .route("/", get(search::page))
        .route("/feed", get(feed::page))
        .route("/compare", get(compare::page))
        .route("/playground", get(playground::get).post(playground::post))
        // an upload checks its size against `max_body_bytes` itself, while it streams in
        .route("/ingest", get(ingest::get).post(ingest::post).layer(axum::extract::DefaultBodyLimit::disable()))
        .route("/login", post(ingest::login_post))
        .route("/tasks/{id}", get(ingest::task))
        .route("/dashboard", get(dashboard::page))
        .route("/assets/{file}", get(asset))
        .layer(Extension(ui)))
}

async fn asset(axum::extract::Path(file): axum::extract::Path<String>) -> Response {
    let path = format!("/assets/{file}");
    let (body, kind) = if path == css_path() {
        (CSS, "text/css; charset=utf-8")
    } else if path == js_path() {
        (JS, "text/javascript; charset=utf-8")
    } else {
        return (StatusCode::NOT_FOUND, "no such asset").into_response();
    };
    let mut res = body.into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=31536000, immutable"));
    res
}

/// An error as a page's banner: `what` failed, and the error's message.
pub(crate) fn error_view(what: &str, e: &ApiError) -> impl IntoView {
    view! { <div class="banner error" role="alert"><strong>{format!("{what}: ")}</strong>{e.message.clone()}</div> }
}

/// A 403 page for a form post from another site (or with a stale token).
pub(crate) fn forbidden(tab: layout::Tab, why: &str) -> Response {
    let main = view! {
        <h1>"Not sent"</h1>
        <div class="banner error" role="alert"><strong>"This form post was refused: "</strong>{why.to_owned()}</div>
    };
    html(StatusCode::FORBIDDEN, layout::document("Refused", tab, main))
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
