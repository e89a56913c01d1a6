//! Aggregating per-query results into a report, and writing it as Markdown and JSON.

use serde::{Deserialize, Serialize};

use crate::dataset::{Dataset, Query};
use crate::metrics;

/// One query's outcome.
#[derive(Debug, Clone)]
pub struct QueryRun<'a> {
    pub query: &'a Query,
    /// Ranked doc ids, best first (at least 100 for Recall@100).
    pub ranked: Vec<String>,
    pub latency_ms: f64,
    /// Time per stage of the engine for this query, `(stage, ms)`.
    pub stages: Vec<(String, f64)>,
}

/// Aggregated metrics of one system on one dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub dataset: String,
    pub system: String,
    pub docs: u64,
    pub queries: usize,
    pub queries_skipped: usize,
    pub ndcg_at_10: f64,
    pub mrr_at_10: f64,
    pub recall_at_10: f64,
    pub recall_at_100: f64,
    pub latency_ms_mean: f64,
    pub latency_ms_p50: f64,
    pub latency_ms_p90: f64,
    pub latency_ms_p99: f64,
    pub latency_ms_max: f64,
    /// Indexing throughput, when the run built its own index.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub index_docs_per_s: Option<f64>,
    /// Mean time per engine stage over all queries, in ms, in stage order.
    #[serde(default)]
    pub stage_ms_mean: Vec<(String, f64)>,
    /// Wall time of each full pass over all the queries, in seconds (a query's latency is its median over the
    /// passes; throughput is queries / a pass's time, as peers that time whole batches report it).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub pass_seconds: Vec<f64>,
    /// Free-form settings of the system (k1, b, analyzer, ...).
    pub settings: serde_json::Value,
}

/// Computes a report from per-query runs of the judged queries of `dataset`.
pub fn summarize(
    dataset: &Dataset,
    system: &str,
    docs: u64,
    runs: &[QueryRun<'_>],
    settings: serde_json::Value,
) -> Report {
    let n = runs.len().max(1) as f64;
    let mean = |f: &dyn Fn(&QueryRun<'_>) -> f64| runs.iter().map(f).sum::<f64>() / n;
    let judged = |r: &QueryRun<'_>| dataset.qrels.get(&r.query.id).cloned().unwrap_or_default();
    let ids = |r: &QueryRun<'_>| r.ranked.clone();
    let with = |k: usize, m: fn(&[&str], &metrics::Judgments, usize) -> f64| {
        mean(&|r: &QueryRun<'_>| {
            let ranked = ids(r);
            let refs: Vec<&str> = ranked.iter().map(String::as_str).collect();
            m(&refs, &judged(r), k)
        })
    };
    let latencies: Vec<f64> = runs.iter().map(|r| r.latency_ms).collect();
    let pct = |q| metrics::percentile(&latencies, q).unwrap_or(0.0);
    Report {
        dataset: dataset.name.clone(),
        system: system.to_owned(),
        docs,
        queries: runs.len(),
        queries_skipped: dataset.queries.len() - runs.len(),
        ndcg_at_10: with(10, metrics::ndcg_at_k),
        mrr_at_10: with(10, metrics::mrr_at_k),
        recall_at_10: with(10, metrics::recall_at_k),
        recall_at_100: with(100, metrics::recall_at_k),
        latency_ms_mean: latencies.iter().sum::<f64>() / n,
        latency_ms_p50: pct(0.5),
        latency_ms_p90: pct(0.9),
        latency_ms_p99: pct(0.99),
        latency_ms_max: pct(1.0),
        index_docs_per_s: None,
        stage_ms_mean: stage_means(runs),
        pass_seconds: Vec::new(),
        settings,
    }
}

/// A Markdown table of reports, one row each.
pub fn markdown_table(reports: &[Report]) -> String {
    let mut out = String::from(
        "| dataset | system | docs | queries | nDCG@10 | MRR@10 | R@10 | R@100 | p50 ms | p99 ms | index docs/s |\n|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in reports {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {:.4} | {:.4} | {:.4} | {:.4} | {:.3} | {:.3} | {} |\n",
            r.dataset,
            r.system,
            r.docs,
            r.queries,
            r.ndcg_at_10,
            r.mrr_at_10,
            r.recall_at_10,
            r.recall_at_100,
            r.latency_ms_p50,
            r.latency_ms_p99,
            r.index_docs_per_s.map_or("–".into(), |v| format!("{v:.0}")),
        ));
    }
    out
}

fn stage_means(runs: &[QueryRun<'_>]) -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64)> = Vec::new();
    for run in runs {
        for (stage, ms) in &run.stages {
            match out.iter_mut().find(|(s, _)| s == stage) {
                Some(slot) => slot.1 += ms,
                None => out.push((stage.clone(), *ms)),
            }
        }
    }
    let n = runs.len().max(1) as f64;
    out.iter_mut().for_each(|(_, ms)| *ms /= n);
    out
}
