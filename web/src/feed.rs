//! The feed page (`/feed`): a news feed for a topic, each story once with its cluster, source and age, "why
//! here" (relevance × freshness, the MMR penalty, the source cap), and the next page through the cursor the
//! API returns, carried in the link's URL. The state is the URL (`index`, `q`, `max_per_source`,
//! `diversity`, `scale`, `cursor`); the page builds a `/v1/feed` body and runs the API's conversion and
//! engine call.

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use leptos::prelude::*;
use serde_json::json;
use sieve_api::{FeedBody, FeedItem, FeedResult};
use sieve_server::{convert, ApiError, SharedState};

use crate::layout::{document, Tab};
use crate::params::Params;
use crate::parts;

/// Items per page.
pub const PAGE: usize = 20;

pub async fn page(State(state): State<SharedState>, RawQuery(raw): RawQuery) -> Response {
    let p = Params::parse(raw.as_deref());
    // the news index when there is one by that name, else the one asked for, else the first
    let wanted = p.get("index").or(state.indexes.contains_key("news").then_some("news"));
    let index = match state.index(wanted) {
        Ok(i) => i.clone(),
        Err(e) => return crate::html(StatusCode::NOT_FOUND, document("Not found", Tab::Feed, error_view(&e))),
    };
    let indexes: Vec<String> = state.indexes.keys().cloned().collect();
    let q = p.get("q").unwrap_or("").to_owned();
    if q.trim().is_empty() {
        return crate::html(StatusCode::OK, document("Feed", Tab::Feed, view! { {form(&p, &indexes, &index.name)} }));
    }
    let body = match feed_body(&p, &index.name) {
        Ok(b) => b,
        Err(m) => {
            return render(&p, &indexes, &index.name, Err(ApiError::new(sieve_server::ErrorCode::InvalidRequest, m)))
        }
    };
    let req = match convert::feed_request(&body, state.models.reranker.is_some()) {
        Ok(r) => r,
        Err(e) => return render(&p, &indexes, &index.name, Err(e)),
    };
    let (engine, name) = (index.engine.clone(), index.name.clone());
    let result = sieve_server::blocking(move |cancel| {
        let mut req = req;
        req.cancel = Some(cancel);
        let res = engine.feed(&req).map_err(ApiError::from)?;
        Ok(convert::feed_result(&name, res))
    })
    .await;
    render(&p, &indexes, &index.name, result)
}

fn feed_body(p: &Params, index: &str) -> Result<FeedBody, String> {
    let number = |key: &str| -> Result<Option<f64>, String> {
        p.get(key)
            .map(|v| v.trim().parse::<f64>().map_err(|_| format!("`{key}`: expected a number, found {v:?}")))
            .transpose()
    };
    let body = json!({
        "index": index,
        "query": p.get("q"),
        "limit": PAGE,
        "cursor": p.get("cursor"),
        "max_per_source": number("max_per_source")?.map(|n| n as u64),
        "diversity": number("diversity")?,
        "decay": {"scale": p.get("scale").unwrap_or("1d")},
        "explain": true,
    });
    serde_json::from_value(body).map_err(|e| e.to_string())
}

fn error_view(e: &ApiError) -> impl IntoView {
    crate::error_view("The feed could not run", e)
}

fn form(p: &Params, indexes: &[String], index: &str) -> impl IntoView {
    let options = indexes
        .iter()
        .map(|i| view! { <option value=i.clone() selected=i == index>{i.clone()}</option> })
        .collect_view();
    view! {
        <h1 class="visually-hidden">"Feed"</h1>
        <form class="search" role="search" action="/feed" method="get">
            <div class="row">
                <label for="q">"Topic"</label>
                <input id="q" name="q" type="search" value=p.get("q").unwrap_or("").to_owned() placeholder="央行, smartphones …"/>
                <button type="submit">"Show feed"</button>
            </div>
            <div class="row options">
                <label>"Index " <select name="index">{options}</select></label>
                <label>"At most per source " <input name="max_per_source" type="number" min="1" step="1" value=p.get("max_per_source").unwrap_or("").to_owned()/></label>
                <label>"Diversity " <input name="diversity" type="number" min="0" max="1" step="0.1" value=p.get("diversity").unwrap_or("0.3").to_owned()/></label>
                <label>"Half-life " <input name="scale" value=p.get("scale").unwrap_or("1d").to_owned() size="5"/></label>
            </div>
        </form>
    }
}

fn render(p: &Params, indexes: &[String], index: &str, result: Result<FeedResult, ApiError>) -> Response {
    let status = match &result {
        Ok(_) => StatusCode::OK,
        Err(e) => StatusCode::from_u16(e.code.http_status()).unwrap_or(StatusCode::BAD_REQUEST),
    };
    let main = view! {
        {form(p, indexes, index)}
        {match result {
            Ok(r) => items(p, r).into_any(),
            Err(e) => error_view(&e).into_any(),
        }}
    };
    crate::html(status, document(&format!("Feed: {}", p.get("q").unwrap_or("")), Tab::Feed, main))
}

fn items(p: &Params, r: FeedResult) -> impl IntoView {
    let next = r.next_cursor.clone().map(|c| {
        let url = p.with("cursor", Some(&c)).url("/feed");
        view! { <a rel="next" href=url>"Next page →"</a> }
    });
    let first = r.items.first().map_or(0, |i| i.rank);
    let marks = parts::QueryMarks::new(p.get("q").unwrap_or(""));
    let list = r.items.iter().map(|i| item(i, &marks)).collect_view();
    let held = (!r.held_back.is_empty())
        .then(|| view! { <p class="notes">{format!("{} stories held back by the source cap for the next pages", r.held_back.len())}</p> });
    view! {
        {parts::degraded(&r.reasons)}
        <div class="summary">
            <p aria-live="polite"><strong>{format!("{} stories", r.clusters)}</strong>{format!(" from {} articles · ages from {}", r.candidates, r.origin)}</p>
            {held}
            {parts::notes(&r.notes)}
            {parts::timings(&r.timings)}
        </div>
        <section class="hits feed" aria-label="Stories">
            <ol start=first.max(1).to_string()>{list}</ol>
            <nav class="pages" aria-label="Pages of the feed">{next}</nav>
        </section>
    }
}

fn text(doc: Option<&serde_json::Value>, key: &str) -> String {
    doc.and_then(|d| d.get(key)).and_then(|v| v.as_str()).unwrap_or("").trim().to_owned()
}

fn item(i: &FeedItem, marks: &parts::QueryMarks) -> impl IntoView {
    let doc = i.document.as_ref();
    let lang = Some(text(doc, "lang")).filter(|l| !l.is_empty());
    let has_title = !text(doc, "title").is_empty();
    let heading = if has_title { text(doc, "title") } else { text(doc, "body") };
    let marker = marks.for_lang(lang.as_deref());
    let title = parts::marked_html(&heading, marker, if has_title { 200 } else { 80 });
    let body = has_title
        .then(|| view! { <p class="snippet" inner_html=parts::marked_html(&text(doc, "body"), marker, 220)></p> });
    let source = text(doc, "source");
    let age = i.explain.as_ref().and_then(|e| e.age_secs).map(parts::age);
    let meta: Vec<String> = [Some(source).filter(|s| !s.is_empty()), age].into_iter().flatten().collect();
    let cluster = (i.cluster.size > 1).then(|| {
        let names: Vec<&str> = i.cluster.sources.iter().map(String::as_str).take(5).collect();
        let others = i.cluster.members[1..].join(", ");
        view! {
            <details class="cluster">
                <summary>{format!("+{} similar from {}", i.cluster.size - 1, names.join(", "))}</summary>
                <p>{format!("Also: {others}")}</p>
            </details>
        }
    });
    let why = i.explain.as_ref().map(|e| {
        view! {
            <details class="why">
                <summary>"Why here?"</summary>
                <table>
                    <caption>{format!("Score {:.4} = relevance {:.4} × freshness {:.4}", i.score, e.relevance, e.freshness)}</caption>
                    <tbody>
                        <tr><th scope="row">"Relevance"</th><td>{format!("{:.4} ({})", e.relevance, e.relevance_from)}</td>
                            <td><meter min="0" max="1" value=format!("{}", e.relevance) aria-label="relevance"></meter></td></tr>
                        <tr><th scope="row">"Freshness"</th><td>{format!("{:.4}", e.freshness)}</td>
                            <td><meter min="0" max="1" value=format!("{}", e.freshness) aria-label="freshness"></meter></td></tr>
                        <tr><th scope="row">"MMR penalty"</th><td>{format!("{:.4}", e.mmr_penalty)}</td><td></td></tr>
                        <tr><th scope="row">"Source cap"</th><td colspan="2">{if e.promoted_by_cap { "placed here because the cap held back a story of a full source" } else { "no effect" }}</td></tr>
                    </tbody>
                </table>
            </details>
        }
    });
    view! {
        <li>
            <article class="card">
                <h3 inner_html=title></h3>
                {body}
                <p class="meta">{meta.join(" · ")}</p>
                {cluster}
                {why}
            </article>
        </li>
    }
}
