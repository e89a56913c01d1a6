//! `POST /v1/search`: the body, the answer, and the reports inside it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sieve_core::{CacheReport, FacetCount, FacetField, Hit, StageTiming};
use utoipa::ToSchema;

/// Which first-stage legs run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SearchMode {
    Bm25,
    Dense,
    /// BM25 and dense, fused (BM25 alone on an index without embeddings).
    #[default]
    Hybrid,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FusionMethod {
    Rrf,
    Linear,
}

/// How the two legs' lists are merged.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FusionBody {
    pub method: FusionMethod,
    /// RRF's k (default 60); values past [`MAX_FUSION_PARAM`] act as it.
    #[schema(minimum = 0)]
    pub k: Option<f64>,
    /// The legs' weights count by their ratio: a pair whose larger weight is past [`MAX_FUSION_PARAM`] is
    /// scaled down to it, ratio kept.
    #[schema(minimum = 0)]
    pub bm25_weight: Option<f64>,
    #[schema(minimum = 0)]
    pub dense_weight: Option<f64>,
}

/// The largest fusion `k` or weight a search uses (larger ones are brought down to it, see [`FusionBody`]).
pub const MAX_FUSION_PARAM: f64 = 1_000_000.0;

/// The largest `rerank_timeout_ms` a search takes (the schema's `maximum` says the same).
pub const MAX_RERANK_TIMEOUT_MS: u64 = 600_000;

/// `POST /v1/search`.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchBody {
    /// The query. An empty (or blank) query browses: every document that passes `filters`, in the `sort`
    /// order (the index's default order when none is given), paged exactly, with facets over all of them.
    pub query: String,
    /// Index to search (default: the server's first).
    pub index: Option<String>,
    #[serde(default)]
    pub mode: SearchMode,
    /// Rerank the top `window` fused candidates with the cross-encoder (default: on when a reranker is loaded).
    pub rerank: Option<bool>,
    /// Candidates the cross-encoder rescores (default 50).
    #[schema(minimum = 1, maximum = 1000)]
    #[serde(default, deserialize_with = "crate::int::opt_count")]
    pub window: Option<usize>,
    /// The reranker's task instruction (Qwen3-Reranker's instruct slot).
    pub instruction: Option<String>,
    /// Tokens per (query, document) pair given to the reranker, template included.
    #[serde(default, deserialize_with = "crate::int::opt_count")]
    #[schema(minimum = 1)]
    pub max_length: Option<usize>,
    /// Hits per page (default 10).
    #[schema(minimum = 1, maximum = 1000)]
    #[serde(default, deserialize_with = "crate::int::opt_count")]
    pub limit: Option<usize>,
    /// Hits of the final ranked set to skip.
    #[schema(minimum = 0, maximum = 999)]
    #[serde(default, deserialize_with = "crate::int::opt_count")]
    pub offset: Option<usize>,
    /// Filters such as `brand=sony`, `price<300`, `category=audio/headphones`, `published_at>=2024-01-01`.
    #[serde(default)]
    pub filters: Vec<String>,
    /// Fields to count over the final ranked set.
    #[serde(default)]
    #[schema(value_type = Vec<String>, example = json!(["brand", "price"]))]
    pub facets: Vec<FacetField>,
    /// Values per facet (default 10).
    #[schema(minimum = 1, maximum = 1000)]
    #[serde(default, deserialize_with = "crate::int::opt_count")]
    pub facet_size: Option<usize>,
    /// `price:asc`, `price:desc`, `published_at:asc` or `published_at:desc` (default: relevance). A sorted
    /// search orders every document that matches (each BM25 match and each document whose similarity to the
    /// query reaches the index's threshold), not a candidate window; `total` and `facets` count that set.
    pub sort: Option<String>,
    pub fusion: Option<FusionBody>,
    /// Candidates each leg recalls (default: the index's setting, fitted by `sieve tune`, else 100).
    #[schema(minimum = 1, maximum = 1000)]
    #[serde(default, deserialize_with = "crate::int::opt_count")]
    pub recall_k: Option<usize>,
    /// HNSW candidate list size.
    #[schema(minimum = 1, maximum = 10000)]
    #[serde(default, deserialize_with = "crate::int::opt_count")]
    pub ef: Option<usize>,
    /// Query language for BM25 analysis (e.g. `zh`, `en`).
    pub lang: Option<String>,
    /// Attach every stage's timing to each hit.
    #[serde(default)]
    pub explain: bool,
    /// Include each hit's stored document (default true).
    pub with_documents: Option<bool>,
    /// Correct words that match nothing to indexed words within one or two edits (default: the index's
    /// setting, on unless the index was created without it).
    pub typos: Option<bool>,
    /// Match the word being typed (the last one, when the query does not end in a space) and product codes as
    /// prefixes (default: the index's setting, on).
    pub prefix: Option<bool>,
    /// Reranker time budget for this request; past it the fused order is returned, `degraded`. At most
    /// [`MAX_RERANK_TIMEOUT_MS`] (10 minutes).
    #[serde(default, deserialize_with = "crate::int::opt_count_u64")]
    #[schema(minimum = 0, maximum = 600000)]
    pub rerank_timeout_ms: Option<u64>,
}

/// `POST /v1/search` answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SearchResult {
    pub index: String,
    /// Hits with every stage's score and rank (`scores.bm25`, `.dense`, `.fused`, `.rerank`).
    pub hits: Vec<Hit>,
    /// Size of the set that `offset` pages through and facets count: the ranked candidates for a relevance
    /// search, every matching document (exactly) for a sorted or empty-query search.
    pub total: usize,
    pub offset: usize,
    pub limit: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub facets: Option<BTreeMap<String, Vec<FacetCount>>>,
    /// A stage could not run as asked; `reasons` say which. The hits are still the best order available.
    pub degraded: bool,
    pub reasons: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    pub timings: Vec<StageTiming>,
    pub reranked: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dense: Option<DenseInfo>,
    /// Documents the BM25 leg matched (a lower bound unless the search was exhaustive), when it ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bm25_matched: Option<u64>,
    /// The typo corrections and prefix completions the BM25 leg searched with: what a search box shows as
    /// "showing results for …".
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub corrections: Vec<Correction>,
}

/// How the dense leg searched.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DenseInfo {
    pub strategy: DenseStrategy,
    /// Vectors the leg could return (all live ones, or those passing the filters).
    pub candidates: usize,
}

/// `{"kind": "hnsw", "ef": N}` (the graph, with this candidate list) or `{"kind": "exact", "scanned": N}`
/// (every candidate vector compared).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DenseStrategy {
    Hnsw { ef: usize },
    Exact { scanned: usize },
}

/// A query word and the indexed terms it was expanded to.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, ToSchema)]
pub struct Correction {
    /// The word as analyzed (for the word being typed: as typed, lowercased).
    pub word: String,
    pub kind: CorrectionKind,
    /// The indexed terms searched instead (typo) or as well (prefix), most frequent first.
    pub terms: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CorrectionKind {
    /// Within one or two edits of a word that matched nothing.
    Typo,
    /// Indexed words that begin with the word being typed or a product code.
    Prefix,
}
