//! What a search answers: the [`SearchResponse`] and the reports of the stages that ran.

use std::collections::BTreeMap;

use serde::Serialize;
use sieve_core::{FacetCount, Hit, StageTiming};
use sieve_vector::SearchStrategy;

use crate::cache::CacheReport;

/// The answer to a [`crate::SearchRequest`].
#[derive(Debug, Clone, Serialize)]
pub struct SearchResponse {
    pub hits: Vec<Hit>,
    /// Some stage could not run as asked (reranker slow, failing or absent; query embedding failed); `reasons`
    /// says which and why. The hits are still the best order the stages that did run produce.
    pub degraded: bool,
    pub reasons: Vec<String>,
    /// What the request asked for that this index does not do, without anything having failed (e.g. a hybrid
    /// request on an index without embeddings runs BM25 alone).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    pub timings: Vec<StageTiming>,
    /// The cross-encoder scored the window and the hits are in its order.
    pub reranked: bool,
    /// Documents the BM25 leg matched (a lower bound when it pruned).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bm25_matched: Option<u64>,
    /// What the BM25 leg did, in detail (query terms, its own stage timings); not part of the JSON answer.
    #[serde(skip)]
    pub bm25: Option<Bm25Report>,
    /// How the dense leg searched (graph or exact scan) and over how many candidates.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dense: Option<DenseReport>,
    /// Rerank cache use, when the reranker ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheReport>,
    /// Size of the final ranked set (all fused candidates) that `offset` pages through and facets count.
    pub total: usize,
    /// Value counts over the final ranked set, per requested field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub facets: Option<BTreeMap<String, Vec<FacetCount>>>,
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
    /// The leg's own stages: `analyze`, `stats`, `bm25`.
    pub stages: Vec<StageTiming>,
}

/// How the dense leg searched.
#[derive(Debug, Clone, Serialize)]
pub struct DenseReport {
    /// `{"kind": "hnsw", "ef": N}` or `{"kind": "exact", "scanned": N}`.
    pub strategy: SearchStrategy,
    pub candidates: usize,
}
