//! The index dashboard (`/dashboard`): per served index its documents, vectors, embedding model, HNSW and
//! BM25 settings, the vector graph's saved state, its size on disk and its recent tasks; and two charts drawn
//! here as SVG from the server's own metrics (no JavaScript): latency per stage (p50 and p99, estimated from
//! the stage histograms as Prometheus' `histogram_quantile` does) and the distribution of rerank
//! probabilities.

use std::path::Path;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use leptos::prelude::*;
use sieve_pipeline::{HistogramSnapshot, VectorSettings};
use sieve_server::{IndexHandle, SharedState};

use crate::layout::{document, Tab};

/// The stages in the order a search runs them.
const STAGE_ORDER: [&str; 8] = ["analyze", "bm25", "embed", "ann", "fuse", "rerank", "fetch", "total"];

/// Bytes under `dir`, files of every subfolder included (unreadable entries count 0).
pub fn disk_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => disk_size(&e.path()),
            Ok(_) => e.metadata().map(|m| m.len()).unwrap_or(0),
            Err(_) => 0,
        })
        .sum()
}

/// `1.2 MiB` for a byte count.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Each stage's (name, p50, p99) in milliseconds, in the order a search runs them (unknown stages after).
pub fn stage_quantiles(hists: &[(String, HistogramSnapshot)]) -> Vec<(String, f64, f64)> {
    let mut rows: Vec<(String, f64, f64)> = hists
        .iter()
        .filter_map(|(stage, h)| Some((stage.clone(), h.quantile(0.5)? * 1000.0, h.quantile(0.99)? * 1000.0)))
        .collect();
    let pos = |s: &str| STAGE_ORDER.iter().position(|x| *x == s).unwrap_or(STAGE_ORDER.len());
    rows.sort_by(|a, b| pos(&a.0).cmp(&pos(&b.0)).then(a.0.cmp(&b.0)));
    rows
}

/// Counts per bucket `(lower, upper, count)` from cumulative histograms added together (the `+Inf` bucket
/// folds into the last finite one: probabilities never exceed 1).
pub fn buckets(hists: &[(String, HistogramSnapshot)]) -> Vec<(f64, f64, u64)> {
    let Some((_, first)) = hists.first() else { return Vec::new() };
    let mut cumulative: Vec<(f64, u64)> = first.buckets.iter().map(|(b, _)| (*b, 0)).collect();
    for (_, h) in hists {
        for (slot, (_, c)) in cumulative.iter_mut().zip(&h.buckets) {
            slot.1 += c;
        }
    }
    let mut out: Vec<(f64, f64, u64)> = Vec::new();
    let mut prev = (0.0, 0u64);
    for (upper, c) in cumulative {
        let n = c - prev.1;
        if upper.is_finite() {
            out.push((prev.0, upper, n));
        } else if let Some(last) = out.last_mut() {
            last.2 += n;
        }
        prev = (upper, c);
    }
    out
}

pub async fn page(State(state): State<SharedState>) -> Response {
    let handles: Vec<std::sync::Arc<IndexHandle>> = state.indexes.values().cloned().collect();
    // the directory walks and settings reads touch the disk: off the async threads
    let sizes = tokio::task::spawn_blocking(move || {
        handles
            .iter()
            .map(|h| (disk_size(&h.path), VectorSettings::saved_graph(&h.path).ok().flatten()))
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    let cards =
        state.indexes.values().zip(sizes).map(|(h, (size, graph))| index_card(&state, h, size, graph)).collect_view();
    let stages = stage_quantiles(&state.metrics.stage_histograms());
    let scores = buckets(&state.metrics.rerank_score_histograms());
    let models = [
        state.models.embedder.as_ref().map(|e| format!("Embedder: {}", e.name())),
        state.models.reranker.as_ref().map(|r| format!("Reranker: {}", r.name())),
    ];
    let models: Vec<String> = models.into_iter().flatten().collect();
    let main = view! {
        <h1>"Indexes"</h1>
        <p class="meta">{if models.is_empty() { "No model loaded: BM25 only.".to_owned() } else { models.join(" · ") }}</p>
        <div class="cards">{cards}</div>
        <h2>"Since the server started"</h2>
        <div class="charts">
            <figure>
                {latency_chart(&stages)}
                <figcaption>"Latency per stage, p50 and p99 (ms), from the server's stage histograms"</figcaption>
            </figure>
            <figure>
                {score_chart(&scores)}
                <figcaption>"Rerank probabilities returned (searches and /v1/rerank)"</figcaption>
            </figure>
        </div>
    };
    crate::html(StatusCode::OK, document("Dashboard", Tab::Dashboard, main))
}

fn index_card(
    state: &SharedState,
    h: &IndexHandle,
    size: u64,
    graph: Option<sieve_vector::GraphState>,
) -> impl IntoView {
    let e = &h.engine;
    let text = e.text().settings();
    let search = e.search_settings();
    let vs = e.settings();
    let row = |k: &'static str, v: String| view! { <div><dt>{k}</dt><dd>{v}</dd></div> };
    let hnsw = vs.map(|s| {
        format!(
            "M {}, ef_construction {}, ef_search {}, {:?}, exact below {}",
            s.hnsw.m, s.hnsw.ef_construction, s.hnsw.ef_search, s.hnsw.metric, s.hnsw.exact_below
        )
    });
    let graph_state = match (&graph, vs) {
        (_, None) => "no dense side".to_owned(),
        (None, Some(_)) => "not saved yet".to_owned(),
        (Some(g), Some(_)) => format!("saved: {} points at commit {}", g.points, g.generation),
    };
    let tol = &text.tolerance;
    let bm25 = format!(
        "k1 {}, b {}; boosts {}; typos {}, prefixes {}",
        text.bm25.k1,
        text.bm25.b,
        serde_json::to_string(&text.boosts).unwrap_or_default(),
        if tol.typos { "on" } else { "off" },
        if tol.prefix { "on" } else { "off" }
    );
    let fusion = format!(
        "{:?}, {} per leg{}",
        search.fusion,
        search.recall_k,
        if search.tuned.is_some() { " (fitted by sieve tune)" } else { "" }
    );
    let tasks: Vec<sieve_api::Task> =
        state.tasks.recent(50).into_iter().filter(|t| t.index == h.name).take(5).collect();
    let task_list = if tasks.is_empty() {
        view! { <p class="meta">"No write task since the server started."</p> }.into_any()
    } else {
        let items = tasks
            .into_iter()
            .map(|t| {
                let text = format!("task {}: {:?}, {} indexed, {} rejected", t.id, t.status, t.indexed, t.rejected);
                view! { <li><a href=format!("/tasks/{}", t.id)>{text.to_lowercase()}</a></li> }
            })
            .collect_view();
        view! { <ul>{items}</ul> }.into_any()
    };
    view! {
        <section class="card index" aria-label=format!("Index {}", h.name)>
            <h2>{h.name.clone()}</h2>
            <dl class="facts">
                {row("Documents", e.text().num_docs().to_string())}
                {row("Vectors", e.vector_count().to_string())}
                {row("Embedding model", vs.map_or("none (BM25 only)".to_owned(), |s| format!("{} ({} dims)", s.model, s.dimensions.unwrap_or(s.dim))))}
                {row("Dense leg", if e.dense_ready() { "ready".to_owned() } else { "off".to_owned() })}
                {row("HNSW", hnsw.unwrap_or_else(|| "–".to_owned()))}
                {row("Graph", graph_state)}
                {row("BM25", bm25)}
                {row("Fusion", fusion)}
                {row("On disk", bytes(size))}
                {row("Path", h.path.display().to_string())}
            </dl>
            <h3>"Recent tasks"</h3>
            {task_list}
        </section>
    }
}

/// Horizontal bars: one row per stage, p50 solid, p99 outlined behind it, on one linear scale.
fn latency_chart(rows: &[(String, f64, f64)]) -> impl IntoView {
    if rows.is_empty() {
        return view! { <p class="meta">"No search has run yet."</p> }.into_any();
    }
    let (left, width, row_h) = (70.0, 330.0, 22.0);
    let max = rows.iter().map(|r| r.2).fold(0.0f64, f64::max).max(1e-3);
    let height = rows.len() as f64 * row_h + 24.0;
    let bars = rows
        .iter()
        .enumerate()
        .map(|(i, (stage, p50, p99))| {
            let y = i as f64 * row_h + 4.0;
            let w50 = (p50 / max * width).max(1.0);
            let w99 = (p99 / max * width).max(1.0);
            view! {
                <g>
                    <text x=format!("{}", left - 6.0) y=format!("{}", y + 13.0) text-anchor="end" class="label">{stage.clone()}</text>
                    <rect x=left.to_string() y=y.to_string() width=format!("{w99:.1}") height="16" class="p99"/>
                    <rect x=left.to_string() y=format!("{}", y + 4.0) width=format!("{w50:.1}") height="8" class="p50"/>
                    <text x=format!("{:.1}", left + w99 + 4.0) y=format!("{}", y + 13.0) class="value">{format!("{p50:.2} / {p99:.2}")}</text>
                </g>
            }
        })
        .collect_view();
    let desc: Vec<String> = rows.iter().map(|(s, a, b)| format!("{s}: p50 {a:.2} ms, p99 {b:.2} ms")).collect();
    view! {
        <svg class="chart" viewBox=format!("0 0 480 {height}") role="img" aria-label=format!("Latency per stage. {}", desc.join("; "))>
            {bars}
            <text x=left.to_string() y=format!("{}", height - 4.0) class="axis">"0"</text>
            <text x=format!("{}", left + width) y=format!("{}", height - 4.0) text-anchor="end" class="axis">{format!("{max:.1} ms")}</text>
        </svg>
    }
    .into_any()
}

/// Vertical bars: one per probability bucket.
fn score_chart(buckets: &[(f64, f64, u64)]) -> impl IntoView {
    let total: u64 = buckets.iter().map(|b| b.2).sum();
    if total == 0 {
        return view! { <p class="meta">"Nothing has been reranked yet."</p> }.into_any();
    }
    let (left, bottom, w, h) = (10.0, 150.0, 460.0, 130.0);
    let max = buckets.iter().map(|b| b.2).max().unwrap_or(1).max(1) as f64;
    let bw = w / buckets.len() as f64;
    let bars = buckets
        .iter()
        .enumerate()
        .map(|(i, (lo, hi, n))| {
            let bh = *n as f64 / max * h;
            let x = left + i as f64 * bw;
            view! {
                <g>
                    <rect x=format!("{:.1}", x + 1.0) y=format!("{:.1}", bottom - bh) width=format!("{:.1}", bw - 2.0) height=format!("{bh:.1}") class="p50">
                        <title>{format!("{lo:.2}–{hi:.2}: {n}")}</title>
                    </rect>
                    <text x=format!("{:.1}", x + bw / 2.0) y=format!("{}", bottom + 14.0) text-anchor="middle" class="axis">{format!("{hi:.1}")}</text>
                </g>
            }
        })
        .collect_view();
    let desc: Vec<String> = buckets.iter().map(|(lo, hi, n)| format!("{lo:.2} to {hi:.2}: {n}")).collect();
    view! {
        <svg class="chart" viewBox="0 0 480 170" role="img" aria-label=format!("Rerank probabilities, {total} scores. {}", desc.join("; "))>
            {bars}
        </svg>
    }
    .into_any()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(buckets: &[(f64, u64)]) -> HistogramSnapshot {
        HistogramSnapshot { buckets: buckets.to_vec(), sum: 0.0, count: buckets.last().map_or(0, |b| b.1) }
    }

    #[test]
    fn cumulative_buckets_become_counts_and_sum_over_labels() {
        let a = snap(&[(0.5, 2), (1.0, 5), (f64::INFINITY, 5)]);
        let b = snap(&[(0.5, 1), (1.0, 1), (f64::INFINITY, 2)]);
        let out = buckets(&[("search".into(), a), ("rerank".into(), b)]);
        assert_eq!(out, [(0.0, 0.5, 3), (0.5, 1.0, 4)]);
        assert!(buckets(&[]).is_empty());
    }

    #[test]
    fn stages_in_pipeline_order_with_quantiles_in_ms() {
        let h = snap(&[(0.001, 50), (0.01, 100), (f64::INFINITY, 100)]);
        let rows = stage_quantiles(&[("rerank".into(), h.clone()), ("bm25".into(), h)]);
        assert_eq!(rows.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(), ["bm25", "rerank"]);
        assert!((rows[0].1 - 1.0).abs() < 1e-9, "p50 is the first bucket's bound: {}", rows[0].1);
        assert!(rows[0].2 > 9.0 && rows[0].2 <= 10.0);
    }

    #[test]
    fn sizes_read_in_binary_units() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 * 1024 * 1024 * 1024), "3.0 GiB");
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("a"), [0u8; 10]).unwrap();
        std::fs::write(dir.path().join("sub/b"), [0u8; 5]).unwrap();
        assert_eq!(disk_size(dir.path()), 15);
    }
}
