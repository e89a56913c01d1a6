//! What a search answers: the [`SearchResponse`] and the reports of the stages that ran.

use std::collections::BTreeMap;

use sieve_core::{FacetCount, Hit, StageTiming};
use sieve_vector::SearchStrategy;

use crate::cache::CacheReport;

/// The answer to a [`crate::SearchRequest`]: the page of the final ranking, and how each stage went. Front ends
/// turn it into their own shape (the HTTP and `--json` shape is `sieve_api::SearchResult`).
#[derive(Debug, Clone)]
pub struct SearchResponse {
    /// The requested page (`offset`, `k`) of the final ranked set.
    pub hits: Vec<Hit>,
    /// How many candidates the final ranked set holds (what `offset` pages through and facets count).
    pub total: usize,
    /// Value counts over the whole final ranked set, per requested field.
    pub facets: Option<BTreeMap<String, Vec<FacetCount>>>,
    /// The hits are in the cross-encoder's order.
    pub reranked: bool,
    /// A stage did not run as asked (`reasons` says which); the hits are the best order the others give.
    pub degraded: bool,
    pub reasons: Vec<String>,
    /// What this index does not do, without anything having failed (a hybrid request on an index without
    /// embeddings runs BM25 alone).
    pub notes: Vec<String>,
    /// Each stage's time, `total` last.
    pub timings: Vec<StageTiming>,
    /// The legs' and the reranker's reports, when they ran.
    pub bm25: Option<Bm25Report>,
    pub dense: Option<DenseReport>,
    pub cache: Option<CacheReport>,
}

/// What the BM25 leg did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Bm25Report {
    /// Documents that matched and passed the filters (a lower bound when `pruned`).
    pub matched: u64,
    /// Top-k pruning skipped postings that could not change the candidates.
    pub pruned: bool,
    /// The analyzed query terms (for highlighting and explanations).
    pub terms: Vec<String>,
    /// The typo corrections and prefix completions the leg searched with ("showing results for …").
    pub expansions: Vec<sieve_text::Expansion>,
    /// The leg's own stages: `analyze`, `stats`, `bm25`.
    pub stages: Vec<StageTiming>,
}

/// How the dense leg searched.
#[derive(Debug, Clone)]
pub struct DenseReport {
    /// The graph (with its candidate list) or an exact scan.
    pub strategy: SearchStrategy,
    pub candidates: usize,
}
