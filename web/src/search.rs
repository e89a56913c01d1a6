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

/// One facet's values as links that add or remove the filter (counts from the final ranked set). The list is
/// written as one HTML string (a page has a dozen or more values, each a link with its own URL): the values
/// are escaped as Leptos escapes text ([`parts::push_text`]), and the links by
/// [`Link::push_attr_url`](crate::params::Link::push_attr_url).
fn facet(p: &Params, field: &str, counts: Vec<sieve_core::FacetCount>) -> impl IntoView {
    let mut items = String::with_capacity(200 * counts.len());
    for c in &counts {
        let (lo, hi) = if field == "price" { price_range(&c.value) } else { (None, None) };
        let (selected, link, depth) = match field {
            "price" => {
                let on = p.get("price_min") == lo.as_deref() && p.get("price_max") == hi.as_deref();
                let next = if on {
                    p.with("price_min", None).with("price_max", None)
                } else {
                    p.with("price_min", lo.as_deref()).with("price_max", hi.as_deref())
                };
                (on, next, 0)
            }
            "category" => {
                let on = p.get("category") == Some(c.value.as_str());
                (on, p.with("category", (!on).then_some(c.value.as_str())), c.value.matches('/').count())
            }
            f => (p.has(f, &c.value), p.toggle(f, &c.value), 0),
        };
        items.push_str(
            [
                "<li class=\"facet depth0\">",
                "<li class=\"facet depth1\">",
                "<li class=\"facet depth2\">",
                "<li class=\"facet depth3\">",
            ][depth.min(3)],
        );
        items.push_str("<a href=\"");
        link.with("page", None).push_attr_url(&mut items, "/");
        items.push_str(if selected {
            "\" aria-current=\"true\"><span class=\"box\" aria-hidden=\"true\">☑</span>"
        } else {
            "\"><span class=\"box\" aria-hidden=\"true\">☐</span>"
        });
        // a category shows its last level (the tree's indent says the rest); a brand like `AC/DC` shows whole
        let label = if field == "category" { c.value.rsplit('/').next().unwrap_or(&c.value) } else { &c.value };
        parts::push_text(&mut items, label);
        if selected {
            items.push_str("<span class=\"visually-hidden\"> (selected)</span>");
        }
        items.push_str("<span class=\"count\">");
        items.push_str(itoa::Buffer::new().format(c.count));
        items.push_str("</span></a></li>");
    }
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
            <ul inner_html=items></ul>
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
                <details class="why" inner_html=why_html(h, max)></details>
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

/// "Why here?": every stage's raw score and rank, with bars normalised within the page, as the HTML inside its
/// `<details>`. A page has ten of these tables of about twenty elements each, so they are written as one
/// string rather than as views (BENCHMARKS.md, "The web UI's search page"). The only text from the index is
/// the BM25 field names, escaped as Leptos escapes text ([`parts::push_text`]); every other piece is a number
/// or a fixed label. Numbers are written with [`parts::push_fixed`].
fn why_html(h: &Hit, max: &Max) -> String {
    let s = &h.scores;
    let mut out = String::with_capacity(1200);
    out.push_str("<summary>Why here?</summary><table><caption>Rank ");
    out.push_str(itoa::Buffer::new().format(h.rank));
    out.push_str(", score ");
    parts::push_fixed(&mut out, h.score.into(), 4);
    out.push_str(". ");
    if let Some(b) = &s.bm25 {
        out.push_str("BM25 alone: #");
        out.push_str(itoa::Buffer::new().format(b.rank));
    }
    if let Some(d) = &s.dense {
        out.push_str(if s.bm25.is_some() { ", dense alone: #" } else { "dense alone: #" });
        out.push_str(itoa::Buffer::new().format(d.rank));
    }
    out.push_str(
        "</caption><thead><tr><th scope=\"col\">Stage</th><th scope=\"col\">Score</th><th scope=\"col\">Rank</th>\
         <th scope=\"col\">Within this page</th></tr></thead><tbody>",
    );
    if let Some(b) = &s.bm25 {
        let row = WhyRow { stage: "BM25", label: "BM25 ", score: b.score, decimals: 3, rank: b.rank };
        row.open(&mut out, b.score, max.bm25);
        out.push_str("<span class=\"parts\">");
        for (i, (f, v)) in b.fields.iter().enumerate() {
            out.push_str(if i == 0 { "" } else { ", " });
            parts::push_text(&mut out, f);
            out.push(' ');
            parts::push_fixed(&mut out, (*v).into(), 3);
        }
        out.push_str("</span></td></tr>");
    }
    if let Some(d) = &s.dense {
        let row = WhyRow { stage: "Dense (cosine)", label: "cosine ", score: d.similarity, decimals: 3, rank: d.rank };
        row.open(&mut out, d.similarity.max(0.0), 1.0);
        out.push_str("</td></tr>");
    }
    if let Some(f) = &s.fused {
        let row = WhyRow { stage: "Fused", label: "fused ", score: f.score, decimals: 4, rank: f.rank };
        row.open(&mut out, f.score, max.fused);
        out.push_str("</td></tr>");
    }
    if let Some(r) = &s.rerank {
        let row = WhyRow { stage: "Rerank", label: "probability ", score: r.score, decimals: 4, rank: r.rank };
        row.open(&mut out, r.score, 1.0);
        out.push_str("<span class=\"parts\">logit ");
        parts::push_fixed(&mut out, r.raw.into(), 3);
        out.push_str(if r.cached { " (cached)</span></td></tr>" } else { "</span></td></tr>" });
    }
    out.push_str("</tbody></table>");
    out
}

/// One stage's row of "why here?": its name, score, rank and bar. Labels are fixed strings, not index text.
struct WhyRow {
    stage: &'static str,
    label: &'static str,
    score: f32,
    decimals: u32,
    rank: u32,
}

impl WhyRow {
    /// The row up to its last cell's bar, which `value` fills out of `scale`; the caller closes the cell.
    fn open(&self, out: &mut String, value: f32, scale: f32) {
        out.push_str("<tr><th scope=\"row\">");
        out.push_str(self.stage);
        out.push_str("</th><td>");
        parts::push_fixed(out, self.score.into(), self.decimals);
        out.push_str("</td><td>#");
        out.push_str(itoa::Buffer::new().format(self.rank));
        out.push_str("</td><td><meter min=\"0\" max=\"");
        parts::push_fixed(out, scale.into(), 6);
        out.push_str("\" value=\"");
        parts::push_fixed(out, value.into(), 6);
        out.push_str("\" aria-label=\"");
        out.push_str(self.label);
        parts::push_fixed(out, self.score.into(), self.decimals);
        out.push_str("\"></meter>");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{attrs, texts};

    #[test]
    fn price_buckets_become_ranges() {
        assert_eq!(price_range("<10"), (None, Some("10".into())));
        assert_eq!(price_range("10-50"), (Some("10".into()), Some("50".into())));
        assert_eq!(price_range(">=1000"), (Some("1000".into()), None));
    }

    #[test]
    fn why_here_shows_every_stage_and_escapes_field_names() {
        use sieve_core::{Bm25Score, DenseScore, DocId, FusedScore, RerankScore, ScoreBreakdown};
        let field = "<b>ti&tle</b> \"x\"";
        let hit = Hit {
            id: DocId::parse("d1", 64).unwrap(),
            rank: 3,
            score: 0.81234,
            scores: ScoreBreakdown {
                bm25: Some(Bm25Score {
                    score: 12.5,
                    rank: 2,
                    fields: vec![(field.into(), 10.0), ("body".into(), 2.5)],
                }),
                dense: Some(DenseScore { similarity: -0.25, rank: 41 }),
                fused: Some(FusedScore { score: 0.0312, rank: 4, method: "rrf".into() }),
                rerank: Some(RerankScore { score: 0.81234, raw: 1.4629, rank: 3, cached: true }),
                ..ScoreBreakdown::default()
            },
            document: None,
        };
        let max = Max { bm25: 25.0, fused: 0.0625 };
        let html = scraper::Html::parse_fragment(&format!("<details class=why>{}</details>", why_html(&hit, &max)));
        assert_eq!(texts(&html, "summary"), ["Why here?"]);
        assert_eq!(texts(&html, "caption"), ["Rank 3, score 0.8123. BM25 alone: #2, dense alone: #41"]);
        assert_eq!(texts(&html, "thead th"), ["Stage", "Score", "Rank", "Within this page"]);
        assert_eq!(texts(&html, "tbody th[scope=row]"), ["BM25", "Dense (cosine)", "Fused", "Rerank"]);
        assert_eq!(texts(&html, "tbody td:nth-child(2)"), ["12.500", "-0.250", "0.0312", "0.8123"]);
        assert_eq!(texts(&html, "tbody td:nth-child(3)"), ["#2", "#41", "#4", "#3"]);
        assert_eq!(attrs(&html, "meter", "max"), ["25.000000", "1.000000", "0.062500", "1.000000"]);
        assert_eq!(attrs(&html, "meter", "value"), ["12.500000", "0.000000", "0.031200", "0.812340"]);
        assert_eq!(
            attrs(&html, "meter", "aria-label"),
            ["BM25 12.500", "cosine -0.250", "fused 0.0312", "probability 0.8123"]
        );
        // the field's name is text, not markup
        assert_eq!(texts(&html, ".parts"), [format!("{field} 10.000, body 2.500"), "logit 1.463 (cached)".into()]);
        assert!(texts(&html, "b").is_empty());
        // a BM25-only hit: one row, one single-leg rank
        let bm25_only =
            Hit { scores: ScoreBreakdown { bm25: hit.scores.bm25.clone(), ..ScoreBreakdown::default() }, ..hit };
        let html = scraper::Html::parse_fragment(&why_html(&bm25_only, &max));
        assert_eq!(texts(&html, "caption"), ["Rank 3, score 0.8123. BM25 alone: #2"]);
        assert_eq!(texts(&html, "tbody tr").len(), 1);
    }

    #[test]
    fn facet_values_are_escaped_links_that_toggle_their_filter() {
        use sieve_core::FacetCount;
        let p = Params::parse(Some("index=products&q=tv+%26+hifi&brand=b%26o&page=3&price_min=10&price_max=50"));
        let render = |field: &str, values: &[(&str, usize)]| {
            let counts = values.iter().map(|(v, n)| FacetCount { value: (*v).to_owned(), count: *n }).collect();
            scraper::Html::parse_fragment(&leptos::prelude::RenderHtml::to_html(facet(&p, field, counts)))
        };
        let brands = render("brand", &[("b&o", 4), ("<script>alert(1)</script>", 2), ("ac/dc", 1)]);
        assert_eq!(texts(&brands, "h2"), ["Brand"]);
        assert_eq!(texts(&brands, "li a"), ["☑b&o (selected)4", "☐<script>alert(1)</script>2", "☐ac/dc1"]);
        assert!(texts(&brands, "script").is_empty());
        assert_eq!(attrs(&brands, "li a", "aria-current"), ["true", "(none)", "(none)"]);
        assert_eq!(texts(&brands, ".count"), ["4", "2", "1"]);
        // each link is the page's URL with that value toggled and the page number dropped
        assert_eq!(
            attrs(&brands, "li a", "href"),
            [
                p.toggle("brand", "b&o").with("page", None).url("/"),
                p.toggle("brand", "<script>alert(1)</script>").with("page", None).url("/"),
                p.toggle("brand", "ac/dc").with("page", None).url("/"),
            ]
        );
        let prices = render("price", &[("10-50", 7), (">=1000", 1)]);
        assert_eq!(
            attrs(&prices, "li a", "href"),
            [
                p.with("price_min", None).with("price_max", None).with("page", None).url("/"),
                p.with("price_min", Some("1000")).with("price_max", None).with("page", None).url("/"),
            ]
        );
        assert_eq!(attrs(&prices, "li a", "aria-current"), ["true", "(none)"]);
        let categories = render("category", &[("electronics", 9), ("electronics/audio/turntables", 3)]);
        assert_eq!(attrs(&categories, "li", "class"), ["facet depth0", "facet depth2"]);
        assert_eq!(texts(&categories, "li a"), ["☐electronics9", "☐turntables3"]);
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
