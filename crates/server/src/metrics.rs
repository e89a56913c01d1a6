//! Prometheus metrics: request latency per route and per search stage, errors by code, model queues and
//! batches, rerank cache use and score distribution, degraded responses. Rendered in the text exposition
//! format at `/metrics`; the worker numbers are read from the workers' own counters at render time.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use sieve_pipeline::{Histogram, HistogramSnapshot, WorkerStats};

const LATENCY_BOUNDS: [f64; 14] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
const SCORE_BOUNDS: [f64; 9] = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9];

/// Histograms and counters keyed by a label set (rendered `{k="v",…}`).
#[derive(Debug)]
struct Family<T> {
    members: Mutex<BTreeMap<String, Arc<T>>>,
}

impl<T> Default for Family<T> {
    fn default() -> Self {
        Family { members: Mutex::new(BTreeMap::new()) }
    }
}

impl<T> Family<T> {
    fn get(&self, labels: &str, make: impl FnOnce() -> T) -> Arc<T> {
        let mut m = self.members.lock().unwrap_or_else(|p| p.into_inner());
        m.entry(labels.to_owned()).or_insert_with(|| Arc::new(make())).clone()
    }

    fn snapshot(&self) -> Vec<(String, Arc<T>)> {
        let m = self.members.lock().unwrap_or_else(|p| p.into_inner());
        m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

fn label_value(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Label set text from pairs.
pub fn labels(pairs: &[(&str, &str)]) -> String {
    pairs.iter().map(|(k, v)| format!("{k}=\"{}\"", label_value(v))).collect::<Vec<_>>().join(",")
}

/// Gauges the caller adds at render time: (name, help, rows of (labels, value)).
pub type ExtraGauge<'a> = (&'a str, &'a str, Vec<(String, f64)>);

/// The server's metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Family<AtomicU64>,
    request_seconds: Family<Histogram>,
    stage_seconds: Family<Histogram>,
    errors: Family<AtomicU64>,
    rerank_scores: Family<Histogram>,
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
    degraded: AtomicU64,
    abandoned: AtomicU64,
    /// Connections open now (served), and those answered once and closed at the connection limit.
    open_connections: AtomicU64,
    refused_connections: AtomicU64,
    /// Worker stats to read at render time: (worker name, stats).
    workers: Mutex<Vec<(String, Arc<WorkerStats>)>>,
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics::default()
    }

    pub fn watch_worker(&self, name: &str, stats: Arc<WorkerStats>) {
        self.workers.lock().unwrap_or_else(|p| p.into_inner()).push((name.to_owned(), stats));
    }

    pub fn request(&self, route: &str, method: &str, status: u16, seconds: f64) {
        let status = status.to_string();
        self.requests
            .get(&labels(&[("route", route), ("method", method), ("status", &status)]), || AtomicU64::new(0))
            .fetch_add(1, Ordering::Relaxed);
        self.request_seconds.get(&labels(&[("route", route)]), || Histogram::new(&LATENCY_BOUNDS)).observe(seconds);
    }

    pub fn error(&self, code: &str) {
        self.errors.get(&labels(&[("code", code)]), || AtomicU64::new(0)).fetch_add(1, Ordering::Relaxed);
    }

    pub fn stage(&self, stage: &str, seconds: f64) {
        self.stage_seconds.get(&labels(&[("stage", stage)]), || Histogram::new(&LATENCY_BOUNDS)).observe(seconds);
    }

    /// A rerank score from `route` (search or the rerank API).
    pub fn rerank_score(&self, route: &str, score: f32) {
        self.rerank_scores.get(&labels(&[("route", route)]), || Histogram::new(&SCORE_BOUNDS)).observe(score as f64);
    }

    pub fn cache(&self, hits: usize, misses: usize) {
        self.cache_hits.fetch_add(hits as u64, Ordering::Relaxed);
        self.cache_misses.fetch_add(misses as u64, Ordering::Relaxed);
    }

    pub fn degraded(&self) {
        self.degraded.fetch_add(1, Ordering::Relaxed);
    }

    /// A request whose client went away before its answer (its queued model work is then skipped).
    pub fn abandoned(&self) {
        self.abandoned.fetch_add(1, Ordering::Relaxed);
    }

    /// A connection is served (`+1`) or closed (`-1`).
    pub fn connection(&self, opened: bool) {
        if opened {
            self.open_connections.fetch_add(1, Ordering::Relaxed);
        } else {
            self.open_connections.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// A connection over `max_connections`: answered once (`/health` ok, else 503) and closed.
    pub fn connection_refused(&self) {
        self.refused_connections.fetch_add(1, Ordering::Relaxed);
    }

    /// Search latency by stage, `(stage, histogram)`, for the dashboard's chart.
    pub fn stage_histograms(&self) -> Vec<(String, HistogramSnapshot)> {
        by_label(&self.stage_seconds)
    }

    /// Rerank probabilities by route (`search`, `rerank`), for the dashboard's chart.
    pub fn rerank_score_histograms(&self) -> Vec<(String, HistogramSnapshot)> {
        by_label(&self.rerank_scores)
    }

    /// The text exposition format; `extra` adds gauges the caller knows (documents per index, tasks).
    pub fn render(&self, extra: &[ExtraGauge<'_>]) -> String {
        let mut out = String::new();
        counter_family(
            &mut out,
            "sieve_http_requests_total",
            "HTTP requests by route, method and status.",
            &self.requests,
        );
        histogram_family(
            &mut out,
            "sieve_http_request_duration_seconds",
            "HTTP request latency by route.",
            &self.request_seconds,
        );
        histogram_family(
            &mut out,
            "sieve_search_stage_duration_seconds",
            "Search latency by stage.",
            &self.stage_seconds,
        );
        counter_family(&mut out, "sieve_errors_total", "Error responses by code.", &self.errors);
        histogram_family(
            &mut out,
            "sieve_rerank_score",
            "Cross-encoder relevance probabilities returned.",
            &self.rerank_scores,
        );
        let (hits, misses) = (self.cache_hits.load(Ordering::Relaxed), self.cache_misses.load(Ordering::Relaxed));
        single(
            &mut out,
            "sieve_rerank_cache_hits_total",
            "counter",
            "Rerank scores served from the cache.",
            hits as f64,
        );
        single(
            &mut out,
            "sieve_rerank_cache_misses_total",
            "counter",
            "Rerank scores the model computed.",
            misses as f64,
        );
        let ratio = if hits + misses == 0 { 0.0 } else { hits as f64 / (hits + misses) as f64 };
        single(&mut out, "sieve_rerank_cache_hit_ratio", "gauge", "Cache hits over lookups since start.", ratio);
        single(
            &mut out,
            "sieve_degraded_total",
            "counter",
            "Search responses degraded (a stage skipped).",
            self.degraded.load(Ordering::Relaxed) as f64,
        );
        single(
            &mut out,
            "sieve_http_requests_abandoned_total",
            "counter",
            "Requests whose client disconnected before the answer was sent.",
            self.abandoned.load(Ordering::Relaxed) as f64,
        );
        single(
            &mut out,
            "sieve_http_connections_open",
            "gauge",
            "Connections being served now.",
            self.open_connections.load(Ordering::Relaxed) as f64,
        );
        single(
            &mut out,
            "sieve_http_connections_refused_total",
            "counter",
            "Connections over max_connections, answered once (/health ok, else 503) and closed.",
            self.refused_connections.load(Ordering::Relaxed) as f64,
        );
        let workers = self.workers.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let per_worker = |f: &dyn Fn(&WorkerStats) -> f64| -> Vec<(String, f64)> {
            workers.iter().map(|(n, s)| (labels(&[("worker", n)]), f(s))).collect()
        };
        gauge_rows(
            &mut out,
            "sieve_worker_queue_depth",
            "gauge",
            "Jobs waiting for a model.",
            per_worker(&|s| s.queued.load(Ordering::Relaxed) as f64),
        );
        gauge_rows(
            &mut out,
            "sieve_worker_batches_total",
            "counter",
            "Model calls.",
            per_worker(&|s| s.batches.load(Ordering::Relaxed) as f64),
        );
        gauge_rows(
            &mut out,
            "sieve_worker_jobs_total",
            "counter",
            "Jobs run by a model.",
            per_worker(&|s| s.jobs.load(Ordering::Relaxed) as f64),
        );
        gauge_rows(
            &mut out,
            "sieve_worker_rejected_total",
            "counter",
            "Jobs refused because the queue was full (429).",
            per_worker(&|s| s.rejected.load(Ordering::Relaxed) as f64),
        );
        let mut dropped = Vec::new();
        for (n, s) in &workers {
            dropped.push((labels(&[("worker", n), ("reason", "expired")]), s.expired.load(Ordering::Relaxed) as f64));
            dropped.push((
                labels(&[("worker", n), ("reason", "disconnected")]),
                s.cancelled.load(Ordering::Relaxed) as f64,
            ));
        }
        gauge_rows(
            &mut out,
            "sieve_worker_dropped_total",
            "counter",
            "Jobs dropped before compute: caller timed out or disconnected.",
            dropped,
        );
        let batch_jobs: Vec<(String, HistogramSnapshot)> =
            workers.iter().map(|(n, s)| (labels(&[("worker", n)]), s.batch_jobs.snapshot())).collect();
        histogram_rows(&mut out, "sieve_worker_batch_size", "Jobs per model call.", &batch_jobs);
        let batch_cost: Vec<(String, HistogramSnapshot)> =
            workers.iter().map(|(n, s)| (labels(&[("worker", n)]), s.batch_cost.snapshot())).collect();
        histogram_rows(&mut out, "sieve_worker_batch_tokens", "Approximate tokens per model call.", &batch_cost);
        for (name, help, rows) in extra {
            gauge_rows(&mut out, name, "gauge", help, rows.clone());
        }
        out
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn single(out: &mut String, name: &str, kind: &str, help: &str, value: f64) {
    header(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

fn gauge_rows(out: &mut String, name: &str, kind: &str, help: &str, rows: Vec<(String, f64)>) {
    header(out, name, kind, help);
    for (l, v) in rows {
        let _ = writeln!(out, "{name}{{{l}}} {v}");
    }
}

fn counter_family(out: &mut String, name: &str, help: &str, family: &Family<AtomicU64>) {
    let rows = family.snapshot().into_iter().map(|(l, v)| (l, v.load(Ordering::Relaxed) as f64)).collect();
    gauge_rows(out, name, "counter", help, rows);
}

/// A one-label family's histograms by the label's value.
fn by_label(family: &Family<Histogram>) -> Vec<(String, HistogramSnapshot)> {
    family
        .snapshot()
        .into_iter()
        .map(|(labels, h)| {
            let value = labels.split_once('=').map_or(labels.as_str(), |(_, v)| v).trim_matches('"').to_owned();
            (value, h.snapshot())
        })
        .collect()
}

fn histogram_family(out: &mut String, name: &str, help: &str, family: &Family<Histogram>) {
    let rows: Vec<(String, HistogramSnapshot)> =
        family.snapshot().into_iter().map(|(l, h)| (l, h.snapshot())).collect();
    histogram_rows(out, name, help, &rows);
}

fn histogram_rows(out: &mut String, name: &str, help: &str, rows: &[(String, HistogramSnapshot)]) {
    header(out, name, "histogram", help);
    for (l, s) in rows {
        let sep = if l.is_empty() { "" } else { "," };
        for (le, count) in &s.buckets {
            let le = if le.is_infinite() { "+Inf".to_owned() } else { le.to_string() };
            let _ = writeln!(out, "{name}_bucket{{{l}{sep}le=\"{le}\"}} {count}");
        }
        let _ = writeln!(out, "{name}_sum{{{l}}} {}", s.sum);
        let _ = writeln!(out, "{name}_count{{{l}}} {}", s.count);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_text_exposition_format() {
        let m = Metrics::new();
        m.request("/v1/search", "POST", 200, 0.003);
        m.request("/v1/search", "POST", 200, 0.2);
        m.error("overloaded");
        m.cache(3, 1);
        m.rerank_score("search", 0.95);
        let stats = Arc::new(WorkerStats::default());
        stats.batch_jobs.observe(4.0);
        m.watch_worker("reranker", stats);
        let text =
            m.render(&[("sieve_index_documents", "Documents per index.", vec![(labels(&[("index", "news")]), 7.0)])]);
        assert!(
            text.contains("sieve_http_requests_total{route=\"/v1/search\",method=\"POST\",status=\"200\"} 2"),
            "{text}"
        );
        assert!(text.contains("sieve_http_request_duration_seconds_bucket{route=\"/v1/search\",le=\"0.005\"} 1"));
        assert!(text.contains("sieve_http_request_duration_seconds_bucket{route=\"/v1/search\",le=\"+Inf\"} 2"));
        assert!(text.contains("sieve_errors_total{code=\"overloaded\"} 1"));
        assert!(text.contains("sieve_rerank_cache_hit_ratio 0.75"));
        assert!(text.contains("sieve_rerank_score_bucket{route=\"search\",le=\"0.9\"} 0"));
        assert!(text.contains("sieve_worker_batch_size_count{worker=\"reranker\"} 1"));
        assert!(text.contains("sieve_index_documents{index=\"news\"} 7"));
        // every sample line is `name{labels} value` or `name value`
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let value = line.rsplit(' ').next().unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
    }
}
