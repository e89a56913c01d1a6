//! The search page (`/`): the catalog site's and the news page's search, browsing with an empty query.
//! The URL holds the state (`q`, `index`, `mode`, `sort`, `page`, `brand`, `source`, `category`,
//! `price_min`, `price_max`, `date_from`, `date_to`); the page builds a `/v1/search` body from it and runs it through the same
//! conversion and engine call as the API.

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use leptos::prelude::*;
use serde_json::json;
use sieve_api::{SearchBody, SearchResult};
use sieve_core::{Document, Hit};
use sieve_pipeline::SnippetLimits;
use sieve_server::{ApiError, SharedState};

use crate::layout::{document, Tab};
use crate::params::Params;
use crate::parts;

/// Hits per page.
pub const PAGE: usize = 10;
const MODES: [&str; 4] = ["bm25", "dense", "hybrid", "hybrid+rerank"];
const SORTS: [(&str, &str); 4] = [
    ("", "Relevance"),
    ("price:asc", "Price, low to high"),
    ("price:desc", "Price, high to low"),
    ("published_at:desc", "Newest"),
];

/// What the form offers for the index being searched.
struct Choices {
    indexes: Vec<String>,
    index: String,
    modes: Vec<&'static str>,
    mode: &'static str,
}

pub async fn page(State(state): State<SharedState>, RawQuery(raw): RawQuery) -> Response {
    let p = Params::parse(raw.as_deref());
    let index = match state.index(p.get("index")) {
        Ok(i) => i.clone(),
        Err(e) => return crate::html(StatusCode::NOT_FOUND, document("Not found", Tab::Search, error_view(&e))),
    };
    let engine = index.engine.clone();
    let dense = engine.dense_ready();
    let rerank = state.models.reranker.is_some();
    // bm25 always; the dense modes where the index has embeddings and a model; reranking with a reranker
    let modes: Vec<&'static str> = MODES
        .into_iter()
        .filter(|m| match *m {
            "bm25" => true,
            "hybrid+rerank" => rerank,
            _ => dense,
        })
        .collect();
    let best = *modes.last().unwrap_or(&"bm25");
    let mode = p.get("mode").and_then(|m| modes.iter().find(|x| **x == m).copied()).unwrap_or(best);
    let choices = Choices { indexes: state.indexes.keys().cloned().collect(), index: index.name.clone(), modes, mode };
    let page_no: usize = p.get("page").and_then(|n| n.parse().ok()).filter(|n| (1..=100).contains(n)).unwrap_or(1);

    let body = match search_body(&p, &index.name, mode, page_no) {
        Ok(b) => b,
        Err(message) => {
            let e = ApiError::new(sieve_server::ErrorCode::InvalidRequest, message);
            return render(&p, &choices, Err(e), &Closest::default());
        }
    };
    let started = std::time::Instant::now();
    let mut result = sieve_server::run_search(&state, body).await;
    let searched = started.elapsed();
    let sentences = match &mut result {
        Ok(r) if dense => closest_sentences(&engine, p.get("q").unwrap_or(""), r).await,
        _ => Closest::default(),
    };
    let snippets = started.elapsed() - searched;
    let mut res = render(&p, &choices, result, &sentences);
    // what the page cost beyond the search (BENCHMARKS.md, "Web UI"), for browsers' devtools and the bench
    let rendered = started.elapsed() - searched - snippets;
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
    let timing =
        format!("search;dur={:.3}, snippets;dur={:.3}, render;dur={:.3}", ms(searched), ms(snippets), ms(rendered));
    if let Ok(v) = axum::http::HeaderValue::from_str(&timing) {
        res.headers_mut().insert("server-timing", v);
    }
    res
}

/// Dense-only hits' closest sentences by id: (the sentence, its cosine to the query).
type Closest = std::collections::HashMap<String, (String, f32)>;

/// The closest sentence to the query of each hit that only the dense leg found (no query term to mark), by
/// the embedder, within [`SnippetLimits`]' budget (BENCHMARKS.md, "Web UI"). When the embedder cannot answer,
/// the hits keep their usual snippet and the page says why.
async fn closest_sentences(engine: &std::sync::Arc<sieve_pipeline::Engine>, q: &str, r: &mut SearchResult) -> Closest {
    let wanted: Vec<(String, String)> = r
        .hits
        .iter()
        // a hit the dense leg scored at or below 0 is no nearer the query than noise: no sentence will explain it
        .filter(|h| h.scores.bm25.is_none() && h.scores.dense.as_ref().is_some_and(|d| d.similarity > 0.0))
        .filter_map(|h| {
            let body = h.document.as_deref()?.body.clone()?;
            Some((h.id.as_str().to_owned(), body))
        })
        .collect();
    if wanted.is_empty() || q.trim().is_empty() {
        return Closest::default();
    }
    let (engine, query) = (engine.clone(), q.to_owned());
    let job = tokio::task::spawn_blocking(move || {
        let texts: Vec<&str> = wanted.iter().map(|(_, b)| b.as_str()).collect();
        let best = engine.best_sentences(&query, &texts, SnippetLimits::default())?;
        Ok::<_, sieve_pipeline::PipelineError>(
            wanted
                .iter()
                .zip(best)
                .filter_map(|((id, body), b)| b.filter(|b| b.similarity > 0.0).map(|b| (id.clone(), b, body)))
                .map(|(id, b, body)| (id, (body[b.range].to_owned(), b.similarity)))
                .collect(),
        )
    });
    let why = match job.await {
        Ok(Ok(found)) => return found,
        Ok(Err(e)) => e.to_string(),
        Err(e) => e.to_string(),
    };
    r.notes.push(format!("closest-sentence snippets skipped: {why}"));
    Closest::default()
}

/// The `/v1/search` body the page's URL asks for.
fn search_body(p: &Params, index: &str, mode: &str, page_no: usize) -> Result<SearchBody, String> {
    let mut filters: Vec<String> = Vec::new();
    for field in ["brand", "source"] {
        let values = p.all(field);
        if !values.is_empty() {
            filters.push(format!("{field}={}", values.join("|")));
        }
    }
    if let Some(c) = p.get("category") {
        filters.push(format!("category={c}"));
    }
    for (key, op) in [("price_min", ">="), ("price_max", "<=")] {
        if let Some(v) = p.get(key) {
            let n: f64 = v.trim().parse().map_err(|_| format!("`{key}`: expected a number, found {v:?}"))?;
            filters.push(format!("price{op}{n}"));
        }
    }
    // a date range by calendar day, UTC: from the start of the first day to the end of the last
    for (key, op, suffix) in [("date_from", ">=", "T00:00:00Z"), ("date_to", "<=", "T23:59:59Z")] {
        if let Some(v) = p.get(key) {
            let v = v.trim();
            let ok = v.len() == 10
                && v.bytes().enumerate().all(|(i, b)| if i == 4 || i == 7 { b == b'-' } else { b.is_ascii_digit() });
            if !ok {
                return Err(format!("`{key}`: expected a date YYYY-MM-DD, found {v:?}"));
            }
            filters.push(format!("published_at{op}{v}{suffix}"));
        }
    }
    let (search_mode, rerank) = match mode {
        "hybrid+rerank" => ("hybrid", true),
        m => (m, false),
    };
    let body = json!({
        "query": p.get("q").unwrap_or(""),
        "index": index,
        "mode": search_mode,
        "rerank": rerank,
        "limit": PAGE,
        "offset": (page_no - 1) * PAGE,
        "filters": filters,
        "facets": ["brand", "category", "source", "price"],
        "sort": p.get("sort"),
        "explain": true,
        "with_documents": true,
        // a tuning knob the page passes on: a short budget shows what a degraded answer looks like
        "rerank_timeout_ms": p.get("rerank_timeout_ms").and_then(|t| t.parse::<u64>().ok()),
    });
    serde_json::from_value(body).map_err(|e| e.to_string())
}

fn error_view(e: &ApiError) -> impl IntoView {
    crate::error_view("The search could not run", e)
}

fn render(p: &Params, choices: &Choices, result: Result<SearchResult, ApiError>, closest: &Closest) -> Response {
    let status = match &result {
        Ok(_) => StatusCode::OK,
        Err(e) => StatusCode::from_u16(e.code.http_status()).unwrap_or(StatusCode::BAD_REQUEST),
    };
    let q = p.get("q").unwrap_or("").to_owned();
    let title = if q.is_empty() { "Browse".to_owned() } else { q.clone() };
    let main = view! {
        <h1 class="visually-hidden">"Search"</h1>
        {form(p, choices)}
        // `Either`, not `into_any`: erasing the type first moves the whole tree through `into_owned`
        {match result {
            Ok(r) => leptos::either::Either::Left(results(p, r, closest)),
            Err(e) => leptos::either::Either::Right(error_view(&e)),
        }}
    };
    crate::html(status, document(&title, Tab::Search, main))
}

fn form(p: &Params, c: &Choices) -> impl IntoView {
    let q = p.get("q").unwrap_or("").to_owned();
    let index_options = c
        .indexes
        .iter()
        .map(|i| view! { <option value=i.clone() selected=*i == c.index>{i.clone()}</option> })
        .collect_view();
    let mode_options =
        c.modes.iter().map(|m| view! { <option value=*m selected=*m == c.mode>{*m}</option> }).collect_view();
    let sort = p.get("sort").unwrap_or("").to_owned();
    let sort_options =
        SORTS.iter().map(|(v, label)| view! { <option value=*v selected=*v == sort>{*label}</option> }).collect_view();
    // the filters chosen by facet links stay when the form is sent again
    let kept = ["brand", "source", "category"]
        .iter()
        .flat_map(|k| p.all(k).into_iter().map(move |v| (*k, v.to_owned())))
        .map(|(k, v)| view! { <input type="hidden" name=k value=v/> })
        .collect_view();
    view! {
        <form class="search" role="search" action="/" method="get">
            <div class="row">
                <label for="q">"Search"</label>
                <input id="q" name="q" type="search" value=q placeholder="sony turntable, 智能手机 …" autocomplete="off"/>
                <button type="submit">"Search"</button>
            </div>
            <div class="row options">
                <label>"Index " <select name="index">{index_options}</select></label>
                <label>"Mode " <select name="mode">{mode_options}</select></label>
                <label>"Sort " <select name="sort">{sort_options}</select></label>
                <label>"Price from " <input name="price_min" type="number" min="0" step="any" inputmode="decimal" value=p.get("price_min").unwrap_or("").to_owned()/></label>
                <label>"to " <input name="price_max" type="number" min="0" step="any" inputmode="decimal" value=p.get("price_max").unwrap_or("").to_owned()/></label>
                <label>"Published from " <input name="date_from" type="date" value=p.get("date_from").unwrap_or("").to_owned()/></label>
                <label>"to " <input name="date_to" type="date" value=p.get("date_to").unwrap_or("").to_owned()/></label>
            </div>
            {kept}
        </form>
    }
}

fn results(p: &Params, mut r: SearchResult, closest: &Closest) -> impl IntoView {
    let page_no = r.offset / PAGE + 1;
    let pages = r.total.div_ceil(PAGE).max(1);
    let count = if r.total == 1 { "1 result".to_owned() } else { format!("{} results", r.total) };
    let corrections = (!r.corrections.is_empty()).then(|| {
        let words: Vec<String> = r.corrections.iter().map(|c| format!("{} → {}", c.word, c.terms.join(", "))).collect();
        view! { <p class="corrections">"Showing results for: " {words.join("; ")}</p> }
    });
    let facets = r.facets.take().unwrap_or_default();
    let facet_view = facets
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(field, counts)| facet(p, &field, counts))
        .collect_view();
    let max = Max::of(&r.hits);
    let marks = parts::QueryMarks::new(p.get("q").unwrap_or(""));
    let hits = r.hits.iter().map(|h| hit(h, &max, &marks, closest.get(h.id.as_str()))).collect_view();
    let prev = (page_no > 1).then(|| {
        let url = p.with("page", Some(&(page_no - 1).to_string())).url("/");
        view! { <a rel="prev" href=url>"← Previous"</a> }
    });
    let next = (page_no < pages && page_no < 100).then(|| {
        let url = p.with("page", Some(&(page_no + 1).to_string())).url("/");
        view! { <a rel="next" href=url>"Next →"</a> }
    });
    view! {
        {parts::degraded(&r.reasons)}
        <div class="summary">
            <p aria-live="polite"><strong>{count}</strong>{r.reranked.then_some(" · reranked by the cross-encoder")}</p>
            {corrections}
            {parts::notes(&r.notes)}
            {parts::timings(&r.timings)}
        </div>
        <div class="layout">
            <aside class="facets" aria-label="Filters">{facet_view}</aside>
            <section class="hits" aria-label="Results">
                <ol start=(r.offset + 1).to_string()>{hits}</ol>
                <nav class="pages" aria-label="Pages of results">
                    {prev}
                    <span>{format!("Page {page_no} of {pages}")}</span>
                    {next}
                </nav>
            </section>
        </div>
    }
}

/// One facet's values as links that add or remove the filter (counts from the final ranked set).
fn facet(p: &Params, field: &str, counts: Vec<sieve_core::FacetCount>) -> impl IntoView {
    let items = counts
        .into_iter()
        .map(|c| {
            let (selected, url, depth) = match field {
                "price" => {
                    let (lo, hi) = price_range(&c.value);
                    let on = p.get("price_min") == lo.as_deref() && p.get("price_max") == hi.as_deref();
                    let next = if on {
                        p.with("price_min", None).with("price_max", None)
                    } else {
                        p.with("price_min", lo.as_deref()).with("price_max", hi.as_deref())
                    };
                    (on, next.with("page", None).url("/"), 0)
                }
                "category" => {
                    let on = p.get("category") == Some(c.value.as_str());
                    let next = p.with("category", (!on).then_some(c.value.as_str()));
                    (on, next.with("page", None).url("/"), c.value.matches('/').count())
                }
                f => (p.has(f, &c.value), p.toggle(f, &c.value).with("page", None).url("/"), 0),
            };
            let label = c.value.rsplit('/').next().unwrap_or(&c.value).to_owned();
            let class = ["facet depth0", "facet depth1", "facet depth2", "facet depth3"][depth.min(3)];
            view! {
                <li class=class>
                    <a href=url aria-current=selected.then_some("true")>
                        <span class="box" aria-hidden="true">{if selected { "☑" } else { "☐" }}</span>
                        {label}
                        {selected.then_some(view! { <span class="visually-hidden">" (selected)"</span> })}
                        <span class="count">{c.count}</span>
                    </a>
                </li>
            }
        })
        .collect_view();
    let heading = match field {
        "brand" => "Brand",
        "category" => "Category",
        "source" => "Source",
        "price" => "Price",
        other => other,
    }
    .to_owned();
    view! {
        <section class="facet-group">
            <h2>{heading}</h2>
            <ul>{items}</ul>
        </section>
    }
}

/// A price bucket (`<10`, `10-50`, `>=1000`) as (from, to).
fn price_range(bucket: &str) -> (Option<String>, Option<String>) {
    if let Some(hi) = bucket.strip_prefix('<') {
        return (None, Some(hi.to_owned()));
    }
    if let Some(lo) = bucket.strip_prefix(">=") {
        return (Some(lo.to_owned()), None);
    }
    match bucket.split_once('-') {
        Some((lo, hi)) => (Some(lo.to_owned()), Some(hi.to_owned())),
        None => (None, None),
    }
}

/// The largest score of each stage on the page: the bars' scale.
struct Max {
    bm25: f32,
    fused: f32,
}

impl Max {
    fn of(hits: &[Hit]) -> Max {
        let m = |f: &dyn Fn(&Hit) -> Option<f32>| hits.iter().filter_map(f).fold(0f32, f32::max).max(f32::MIN_POSITIVE);
        Max {
            bm25: m(&|h| h.scores.bm25.as_ref().map(|s| s.score)),
            fused: m(&|h| h.scores.fused.as_ref().map(|s| s.score)),
        }
    }
}

/// A document's heading: its title, or the start of its body (news posts often have none).
fn title_of(d: &Document) -> (&str, bool) {
    match d.title.as_deref().filter(|t| !t.trim().is_empty()) {
        Some(t) => (t, true),
        None => (d.body.as_deref().unwrap_or_default(), false),
    }
}

fn hit(h: &Hit, max: &Max, marks: &parts::QueryMarks, closest: Option<&(String, f32)>) -> impl IntoView {
    use leptos::either::Either;
    let doc = h.document.as_deref();
    let (title, has_title) = doc.map(title_of).unwrap_or((h.id.as_str(), true));
    let marker = marks.for_lang(doc.and_then(|d| d.lang.as_ref()).map(|l| l.primary()));
    let title = parts::marked_html(title, marker, if has_title { 200 } else { 80 });
    let heading = match doc.and_then(|d| d.url.as_deref()) {
        Some(u) if u.starts_with("http://") || u.starts_with("https://") => {
            Either::Left(view! { <h3><a href=u.to_owned() inner_html=title></a></h3> })
        }
        _ => Either::Right(view! { <h3 inner_html=title></h3> }),
    };
    let body = doc.and_then(|d| d.body.as_deref()).filter(|_| has_title);
    let snippet = match closest {
        // found by meaning alone: the sentence the embedder puts closest, said so
        Some((sentence, cosine)) => Either::Left(view! {
            <p class="snippet closest">
                <span class="label">{format!("Closest sentence by meaning (cosine {cosine:.2}): ")}</span>
                <span inner_html=parts::marked_html(sentence, marker, 300)></span>
            </p>
        }),
        None => {
            Either::Right(body.map(|b| view! { <p class="snippet" inner_html=parts::marked_html(b, marker, 220)></p> }))
        }
    };
    let meta = doc.map(meta);
    let codes =
        h.scores.exact_codes.as_ref().map(|c| view! { <p class="badge">{format!("exact code: {}", c.join(", "))}</p> });
    view! {
        <li>
            <article class="card">
                {heading}
                {snippet}
                {meta}
                {codes}
                {why(h, max)}
            </article>
        </li>
    }
}

/// Price and brand for a product; source and age for an article.
fn meta(d: &Document) -> impl IntoView {
    let mut bits: Vec<String> = Vec::new();
    if let Some(p) = d.price {
        bits.push(parts::fixed("$", p, 2));
    }
    if let Some(b) = &d.brand {
        bits.push(b.clone());
    }
    if let Some(s) = &d.source {
        bits.push(s.clone());
    }
    if let Some(t) = d.published_at {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        bits.push(parts::age(now - t.unix_seconds()));
    }
    if let Some(c) = &d.category {
        bits.push(c.path());
    }
    (!bits.is_empty()).then(|| view! { <p class="meta">{bits.join(" · ")}</p> })
}

/// "Why here?": every stage's raw score and rank, with bars normalised within the page. Numbers are written
/// with [`parts::push_fixed`]: a page shows about ten of them a hit.
fn why(h: &Hit, max: &Max) -> impl IntoView {
    use parts::fixed;
    let s = &h.scores;
    let bar = |value: f32, scale: f32, label: String| {
        let (max, value) = (fixed("", scale.into(), 6), fixed("", value.into(), 6));
        view! { <meter min="0" max=max value=value aria-label=label></meter> }
    };
    let bm25 = s.bm25.as_ref().map(|b| {
        let mut parts = String::with_capacity(16 * b.fields.len());
        for (i, (f, v)) in b.fields.iter().enumerate() {
            parts.push_str(if i == 0 { "" } else { ", " });
            parts.push_str(f);
            parts.push(' ');
            parts::push_fixed(&mut parts, (*v).into(), 3);
        }
        view! {
            <tr><th scope="row">"BM25"</th><td>{fixed("", b.score.into(), 3)}</td><td>{ranked("#", b.rank)}</td>
                <td>{bar(b.score, max.bm25, fixed("BM25 ", b.score.into(), 3))}<span class="parts">{parts}</span></td></tr>
        }
    });
    let dense = s.dense.as_ref().map(|d| {
        view! {
            <tr><th scope="row">"Dense (cosine)"</th><td>{fixed("", d.similarity.into(), 3)}</td><td>{ranked("#", d.rank)}</td>
                <td>{bar(d.similarity.max(0.0), 1.0, fixed("cosine ", d.similarity.into(), 3))}</td></tr>
        }
    });
    let fused = s.fused.as_ref().map(|f| {
        view! {
            <tr><th scope="row">"Fused"</th><td>{fixed("", f.score.into(), 4)}</td><td>{ranked("#", f.rank)}</td>
                <td>{bar(f.score, max.fused, fixed("fused ", f.score.into(), 4))}</td></tr>
        }
    });
    let rerank = s.rerank.as_ref().map(|r| {
        let mut logit = fixed("logit ", r.raw.into(), 3);
        if r.cached {
            logit.push_str(" (cached)");
        }
        view! {
            <tr><th scope="row">"Rerank"</th><td>{fixed("", r.score.into(), 4)}</td><td>{ranked("#", r.rank)}</td>
                <td>{bar(r.score, 1.0, fixed("probability ", r.score.into(), 4))}<span class="parts">{logit}</span></td></tr>
        }
    });
    let mut caption = ranked("Rank ", h.rank);
    caption.push_str(", score ");
    parts::push_fixed(&mut caption, h.score.into(), 4);
    caption.push_str(". ");
    if let Some(b) = &s.bm25 {
        caption.push_str(&ranked("BM25 alone: #", b.rank));
    }
    if let Some(d) = &s.dense {
        caption.push_str(if s.bm25.is_some() { ", " } else { "" });
        caption.push_str(&ranked("dense alone: #", d.rank));
    }
    view! {
        <details class="why">
            <summary>"Why here?"</summary>
            <table>
                <caption>{caption}</caption>
                <thead><tr><th scope="col">"Stage"</th><th scope="col">"Score"</th><th scope="col">"Rank"</th><th scope="col">"Within this page"</th></tr></thead>
                <tbody>{bm25}{dense}{fused}{rerank}</tbody>
            </table>
        </details>
    }
}

/// `prefix` then `n`.
fn ranked(prefix: &str, n: u32) -> String {
    let mut out = String::with_capacity(prefix.len() + 10);
    out.push_str(prefix);
    out.push_str(itoa::Buffer::new().format(n));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn price_buckets_become_ranges() {
        assert_eq!(price_range("<10"), (None, Some("10".into())));
        assert_eq!(price_range("10-50"), (Some("10".into()), Some("50".into())));
        assert_eq!(price_range(">=1000"), (Some("1000".into()), None));
    }

    #[test]
    fn the_url_becomes_a_search_body_with_its_filters() {
        let p = Params::parse(Some("q=tv&brand=sony&brand=lg&category=electronics&price_min=10&page=3&sort=price:asc"));
        let b = search_body(&p, "products", "hybrid+rerank", 3).unwrap();
        assert_eq!(b.filters, ["brand=sony|lg", "category=electronics", "price>=10"]);
        assert_eq!(b.offset, Some(20));
        assert_eq!(b.rerank, Some(true));
        assert!(search_body(&Params::parse(Some("price_max=ten")), "p", "bm25", 1).unwrap_err().contains("price_max"));
        let dated =
            search_body(&Params::parse(Some("date_from=2026-11-01&date_to=2026-11-30")), "n", "bm25", 1).unwrap();
        assert_eq!(dated.filters, ["published_at>=2026-11-01T00:00:00Z", "published_at<=2026-11-30T23:59:59Z"]);
        for f in &dated.filters {
            f.parse::<sieve_core::Filter>().unwrap();
        }
        let bad = search_body(&Params::parse(Some("date_to=30/11/2026")), "n", "bm25", 1).unwrap_err();
        assert!(bad.contains("YYYY-MM-DD") && bad.contains("30/11/2026"), "{bad}");
    }
}
