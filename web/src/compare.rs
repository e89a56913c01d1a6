//! The compare view (`/compare`): one query under two or three configurations side by side (`a`, `b`, `c`:
//! BM25, dense, hybrid with the index's fusion, RRF, linear, reranked with a window of 50 or 20), each hit
//! marked with its move against the first column (▲3, ▼2, new) and each column with what it dropped, plus
//! overlap@10 and rank-biased overlap (p = 0.9) against the first column.
//!
//! With a labelled set for the index (`sieve serve --judgments products=DIR`), a picker lists its queries,
//! judged documents show their grade and each column its nDCG@10 for the query.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Extension, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use leptos::prelude::*;
use serde_json::json;
use sieve_api::{SearchBody, SearchResult};
use sieve_eval::metrics::{ndcg_at_k, overlap_at_k, rbo, Judgments};
use sieve_server::{ApiError, SharedState};

use crate::layout::{document, Tab};
use crate::params::Params;
use crate::ui::Ui;

/// Hits per column.
const DEPTH: usize = 10;
/// RBO's persistence: the weight of the top d ranks is about 1 − p^d (0.65 at 10).
const RBO_P: f64 = 0.9;

/// The configurations a column can take: (key, label).
pub const CONFIGS: [(&str, &str); 7] = [
    ("bm25", "BM25"),
    ("dense", "Dense"),
    ("hybrid", "Hybrid (index fusion)"),
    ("hybrid-rrf", "Hybrid, RRF k=60"),
    ("hybrid-linear", "Hybrid, linear 0.5/0.5"),
    ("hybrid+rerank", "Hybrid + rerank (window 50)"),
    ("hybrid+rerank@20", "Hybrid + rerank (window 20)"),
];

fn label(config: &str) -> &'static str {
    CONFIGS.iter().find(|(k, _)| *k == config).map_or("?", |(_, l)| *l)
}

/// The `/v1/search` body of one column.
pub fn column_body(config: &str, index: &str, query: &str) -> Result<SearchBody, String> {
    let mut body = json!({
        "query": query, "index": index, "limit": DEPTH, "with_documents": true, "rerank": false,
    });
    let o = body.as_object_mut().expect("an object");
    match config {
        "bm25" => _ = o.insert("mode".into(), "bm25".into()),
        "dense" => _ = o.insert("mode".into(), "dense".into()),
        "hybrid" => _ = o.insert("mode".into(), "hybrid".into()),
        "hybrid-rrf" => {
            o.insert("mode".into(), "hybrid".into());
            o.insert("fusion".into(), json!({"method": "rrf", "k": 60.0, "bm25_weight": 1.0, "dense_weight": 1.0}));
        }
        "hybrid-linear" => {
            o.insert("mode".into(), "hybrid".into());
            o.insert("fusion".into(), json!({"method": "linear", "bm25_weight": 0.5, "dense_weight": 0.5}));
        }
        "hybrid+rerank" | "hybrid+rerank@20" => {
            o.insert("mode".into(), "hybrid".into());
            o.insert("rerank".into(), true.into());
            o.insert("window".into(), (if config.ends_with("@20") { 20 } else { 50 }).into());
        }
        other => {
            let known: Vec<&str> = CONFIGS.iter().map(|(k, _)| *k).collect();
            return Err(format!("configuration: expected one of {}, found {other:?}", known.join(", ")));
        }
    }
    serde_json::from_value(body).map_err(|e| e.to_string())
}

/// One column's answer.
struct Column {
    config: String,
    result: Result<SearchResult, ApiError>,
}

impl Column {
    fn ids(&self) -> Vec<&str> {
        match &self.result {
            Ok(r) => r.hits.iter().map(|h| h.id.as_str()).collect(),
            Err(_) => Vec::new(),
        }
    }
}

/// A hit's move from `rank` (1-based, in this column) against its rank in the first column.
pub fn movement(rank: usize, before: Option<usize>) -> (String, &'static str) {
    match before {
        None => ("new".to_owned(), "new"),
        Some(b) if b > rank => (format!("▲{}", b - rank), "up"),
        Some(b) if b < rank => (format!("▼{}", rank - b), "down"),
        Some(_) => ("=".to_owned(), "same"),
    }
}

pub async fn page(
    State(state): State<SharedState>,
    Extension(ui): Extension<Arc<Ui>>,
    RawQuery(raw): RawQuery,
) -> Response {
    let p = Params::parse(raw.as_deref());
    let (index, dense) = match state.index(p.get("index")) {
        Ok(i) => (i.name.clone(), i.engine.dense_ready()),
        Err(e) => {
            let main = crate::error_view("The comparison could not run", &e);
            return crate::html(StatusCode::NOT_FOUND, document("Not found", Tab::Compare, main));
        }
    };
    let judged = ui.judgments.get(&index);
    // a picked query of the labelled set fills the box
    let picked = p.get("qid").and_then(|id| judged.and_then(|d| d.queries.iter().find(|q| q.id == id)));
    let q = picked.map(|q| q.text.clone()).or_else(|| p.get("q").map(str::to_owned)).unwrap_or_default();
    let judgments: Option<&Judgments> = picked.and_then(|pq| judged.and_then(|d| d.qrels.get(&pq.id)));

    let rerank = state.models.reranker.is_some();
    let defaults = if rerank && dense {
        ["bm25", "hybrid", "hybrid+rerank"]
    } else if dense {
        ["bm25", "dense", "hybrid"]
    } else {
        ["bm25", "", ""]
    };
    let configs: Vec<String> = ["a", "b", "c"]
        .iter()
        .zip(defaults)
        .map(|(k, d)| p.0.iter().find(|(key, _)| key == k).map_or(d.to_owned(), |(_, v)| v.clone()))
        .filter(|c| !c.is_empty())
        .collect();

    let mut columns = Vec::new();
    if !q.trim().is_empty() {
        for config in &configs {
            let result = match column_body(config, &index, &q) {
                Ok(body) => sieve_server::run_search(&state, body).await,
                Err(m) => Err(ApiError::new(sieve_server::ErrorCode::InvalidRequest, m)),
            };
            columns.push(Column { config: config.clone(), result });
        }
    }
    let main = view! {
        <h1>"Compare rankings"</h1>
        {form(&p, &state, &index, &q, &configs, judged)}
        {(!columns.is_empty()).then(|| results(&columns, judgments, &q))}
    };
    crate::html(StatusCode::OK, document(if q.is_empty() { "Compare" } else { &q }, Tab::Compare, main))
}

fn form(
    p: &Params,
    state: &SharedState,
    index: &str,
    q: &str,
    configs: &[String],
    judged: Option<&sieve_eval::Dataset>,
) -> impl IntoView {
    let indexes = state
        .indexes
        .keys()
        .map(|n| view! { <option value=n.clone() selected=n == index>{n.clone()}</option> })
        .collect_view();
    let select = |name: &'static str, text: &'static str, chosen: Option<&String>| {
        let none = (name == "c").then(|| view! { <option value="" selected=chosen.is_none()>"(none)"</option> });
        let options = CONFIGS
            .iter()
            .map(|(k, l)| view! { <option value=*k selected=chosen.is_some_and(|c| c == k)>{*l}</option> })
            .collect_view();
        view! { <label>{text}<select name=name>{none}{options}</select></label> }
    };
    let picker = judged.map(|d| {
        let qid = p.get("qid").unwrap_or("");
        let options = d
            .judged_queries()
            .into_iter()
            .map(|jq| {
                let text = format!("{}: {}", jq.id, jq.text.chars().take(70).collect::<String>());
                view! { <option value=jq.id.clone() selected=jq.id == qid>{text}</option> }
            })
            .collect_view();
        view! {
            <label>{format!("Labelled query ({}) ", d.name)}
                <select name="qid"><option value="">"(type a query instead)"</option>{options}</select>
            </label>
        }
    });
    view! {
        <form class="search" action="/compare" method="get">
            <div class="row">
                <label for="q">"Query"</label>
                <input id="q" name="q" type="search" value=q.to_owned() autocomplete="off"/>
                <button type="submit">"Compare"</button>
            </div>
            <div class="row options">
                <label>"Index " <select name="index">{indexes}</select></label>
                {select("a", "First ", configs.first())}
                {select("b", "Second ", configs.get(1))}
                {select("c", "Third ", configs.get(2))}
                {picker}
            </div>
        </form>
    }
}

fn results(columns: &[Column], judgments: Option<&Judgments>, q: &str) -> impl IntoView {
    let marks = crate::parts::QueryMarks::new(q);
    let base: Vec<&str> = columns[0].ids();
    let base_rank: HashMap<&str, usize> = base.iter().enumerate().map(|(i, id)| (*id, i + 1)).collect();
    // each document's rank in every column, for the "elsewhere" line
    let ranks: Vec<HashMap<&str, usize>> =
        columns.iter().map(|c| c.ids().into_iter().enumerate().map(|(i, id)| (id, i + 1)).collect()).collect();
    let cols = columns
        .iter()
        .enumerate()
        .map(|(ci, c)| {
            let ids = c.ids();
            let heading = label(&c.config);
            let stats = match (&c.result, ci) {
                (Err(_), _) => None,
                (Ok(_), 0) => Some("the baseline".to_owned()),
                (Ok(_), _) => Some(format!(
                    "overlap@10 {:.2} · RBO {:.3}",
                    overlap_at_k(&base, &ids, DEPTH),
                    rbo(&base, &ids, RBO_P)
                )),
            };
            let ndcg = judgments.map(|j| {
                view! { <p class="ndcg"><strong>{format!("nDCG@10 {:.3}", ndcg_at_k(&ids, j, DEPTH))}</strong></p> }
            });
            let body = match &c.result {
                Err(e) => view! { <p class="banner error" role="alert">{e.message.clone()}</p> }.into_any(),
                Ok(r) => {
                    let items = r
                        .hits
                        .iter()
                        .enumerate()
                        .map(|(i, h)| {
                            let id = h.id.as_str();
                            let (mark, class) = if ci == 0 {
                                (String::new(), "same")
                            } else {
                                movement(i + 1, base_rank.get(id).copied())
                            };
                            let elsewhere: Vec<String> = columns
                                .iter()
                                .enumerate()
                                .filter(|(oj, _)| *oj != ci)
                                .map(|(oj, o)| match ranks[oj].get(id) {
                                    Some(r) => format!("{} #{r}", label(&o.config)),
                                    None => format!("{}: not in top 10", label(&o.config)),
                                })
                                .collect();
                            let title = h
                                .document
                                .as_deref()
                                .and_then(|d| d.title.clone().or_else(|| d.body.clone()))
                                .unwrap_or_else(|| id.to_owned());
                            let lang = h.document.as_deref().and_then(|d| d.lang.as_ref()).map(|l| l.primary().to_owned());
                            let grade = judgments.map(|j| {
                                let g = j.get(id).copied();
                                let (text, cls) = match g {
                                    Some(g) if g > 0 => (format!("grade {g}"), "grade rel"),
                                    Some(_) => ("grade 0".to_owned(), "grade"),
                                    None => ("unjudged".to_owned(), "grade none"),
                                };
                                view! { <span class=cls>{text}</span> }
                            });
                            let elsewhere_text = elsewhere.join(" · ");
                            let tip = elsewhere_text.clone();
                            view! {
                                <li title=tip>
                                    {(ci > 0).then(|| view! { <span class=format!("move {class}")>{mark.clone()}</span> })}
                                    <span class="t" inner_html=crate::parts::marked_html(&title, marks.for_lang(lang.as_deref()), 90)></span>
                                    {grade}
                                    <span class="elsewhere">{elsewhere_text}</span>
                                </li>
                            }
                        })
                        .collect_view();
                    let dropped: Vec<String> = if ci == 0 {
                        Vec::new()
                    } else {
                        base.iter().filter(|id| !ids.contains(id)).map(|id| (*id).to_owned()).collect()
                    };
                    let dropped_view = (!dropped.is_empty()).then(|| {
                        let titles: Vec<String> = dropped
                            .iter()
                            .map(|id| {
                                let t = columns[0].result.as_ref().ok().and_then(|r| {
                                    r.hits.iter().find(|h| h.id.as_str() == id).and_then(|h| {
                                        h.document.as_deref().and_then(|d| d.title.clone().or_else(|| d.body.clone()))
                                    })
                                });
                                let t: String = t.unwrap_or_else(|| id.clone()).chars().take(60).collect();
                                format!("{t} (was #{})", base_rank[id.as_str()])
                            })
                            .collect();
                        let items = titles.into_iter().map(|t| view! { <li>{t}</li> }).collect_view();
                        view! {
                            <details class="dropped"><summary>{format!("dropped: {}", dropped.len())}</summary><ul>{items}</ul></details>
                        }
                    });
                    let took = r.timings.iter().find(|t| t.stage == "total").map(|t| t.micros).unwrap_or(0);
                    view! {
                        {crate::parts::degraded(&r.reasons)}
                        <p class="meta">{format!("{:.1} ms", took as f64 / 1000.0)}</p>
                        <ol>{items}</ol>
                        {dropped_view}
                    }
                    .into_any()
                }
            };
            view! {
                <section class="column" aria-label=heading>
                    <h2>{heading}</h2>
                    {stats.map(|s| view! { <p class="meta">{s}</p> })}
                    {ndcg}
                    {body}
                </section>
            }
        })
        .collect_view();
    view! { <div class="compare">{cols}</div> }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moves_are_marked_against_the_first_column() {
        assert_eq!(movement(1, Some(4)), ("▲3".to_owned(), "up"));
        assert_eq!(movement(5, Some(3)), ("▼2".to_owned(), "down"));
        assert_eq!(movement(2, Some(2)), ("=".to_owned(), "same"));
        assert_eq!(movement(7, None), ("new".to_owned(), "new"));
    }

    #[test]
    fn each_configuration_is_a_search_body() {
        let b = column_body("hybrid+rerank@20", "p", "tv").unwrap();
        assert_eq!((b.rerank, b.window), (Some(true), Some(20)));
        let b = column_body("hybrid-linear", "p", "tv").unwrap();
        assert!(matches!(b.fusion.unwrap().method, sieve_api::FusionMethod::Linear));
        assert_eq!(column_body("bm25", "p", "tv").unwrap().rerank, Some(false));
        assert!(column_body("magic", "p", "tv").unwrap_err().contains("hybrid-rrf"));
    }
}
