//! `sieve-eval`: measuring retrieval quality the way the field does.
//!
//! It owns dataset loading ([`Dataset`], in the `shared/data` and BEIR layouts), the metrics ([`metrics`]:
//! nDCG@k with graded gains, MRR@k, Recall@k, latency percentiles) and the report ([`Report`], written as a
//! Markdown table and JSON). It does not know how a system ranks: callers hand it ranked id lists.
//!
//! Key design decision: metrics are pure functions over `(&[id], judgments)`, tested against hand-computed
//! cases, so a number in `EVALUATION.md` can be traced to a formula without running the engine.

pub mod chart;
mod dataset;
pub mod metrics;
pub mod news;
mod report;
pub mod tune;
pub mod variants;

pub use dataset::{beir_row_to_document, Dataset, DatasetError, Layout, Query};
pub use report::{markdown_table, summarize, QueryRun, Report};
