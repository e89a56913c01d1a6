//! What a search asks for: the [`SearchRequest`], the names its modes and fusion methods go by, and the one
//! [`SearchRequest::validate`] every front end (CLI, HTTP, web UI) runs, so the limits live here only.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sieve_core::{FacetField, Filter, Lang, SortBy};
use sieve_text::Bm25Params;

use crate::worker::CancelToken;
use crate::PipelineError;

/// Largest `k`, `recall_k`, `offset + k`, facet size or rerank window a request may ask for.
pub const MAX_DEPTH: usize = 1_000;
/// Largest HNSW candidate list a request may ask for.
pub const MAX_EF: usize = 10_000;
/// Candidates each leg recalls when neither the request nor the index's settings say.
pub const DEFAULT_RECALL_K: usize = 100;

/// The rerank window's range (`1..=MAX_DEPTH`), for a front end that takes a window without reranking too.
pub fn check_window(window: usize) -> Result<(), PipelineError> {
    check_depth("rerank.window", window)
}

/// `1..=MAX_DEPTH`: hits, candidates per leg, facet values, the rerank window.
fn check_depth(field: &'static str, v: usize) -> Result<(), PipelineError> {
    if v == 0 || v > MAX_DEPTH {
        return Err(PipelineError::BadRequest { field, expected: "1..=1000", found: v.to_string() });
    }
    Ok(())
}

/// A retrieval mode by name: which legs run and whether the cross-encoder reranks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Mode {
    #[serde(rename = "bm25")]
    Bm25,
    #[serde(rename = "dense")]
    Dense,
    #[serde(rename = "hybrid")]
    Hybrid,
    #[serde(rename = "hybrid+rerank")]
    HybridRerank,
}

impl Mode {
    pub const ALL: [Mode; 4] = [Mode::Bm25, Mode::Dense, Mode::Hybrid, Mode::HybridRerank];
    /// The names [`Mode::from_str`](std::str::FromStr) accepts, in [`Mode::ALL`] order.
    pub const NAMES: [&'static str; 4] = ["bm25", "dense", "hybrid", "hybrid+rerank"];

    pub fn name(self) -> &'static str {
        Mode::NAMES[Mode::ALL.iter().position(|&m| m == self).expect("every mode is listed")]
    }

    /// The first-stage legs of this mode.
    pub fn legs(self) -> Legs {
        match self {
            Mode::Bm25 => Legs { bm25: true, dense: false },
            Mode::Dense => Legs { bm25: false, dense: true },
            Mode::Hybrid | Mode::HybridRerank => Legs { bm25: true, dense: true },
        }
    }

    /// Whether this mode has a dense leg (and so needs an embedder and an index with embeddings).
    pub fn dense(self) -> bool {
        self.legs().dense
    }

    pub fn reranks(self) -> bool {
        self == Mode::HybridRerank
    }
}

impl std::str::FromStr for Mode {
    type Err = PipelineError;

    fn from_str(s: &str) -> Result<Mode, PipelineError> {
        match Mode::NAMES.iter().position(|n| *n == s) {
            Some(i) => Ok(Mode::ALL[i]),
            None => Err(PipelineError::BadRequest {
                field: "mode",
                expected: "bm25, dense, hybrid or hybrid+rerank",
                found: format!("{s:?}"),
            }),
        }
    }
}

/// Which first-stage legs a request runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Legs {
    pub bm25: bool,
    pub dense: bool,
}

/// A fusion method by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FusionMethod {
    Rrf,
    Linear,
}

impl FusionMethod {
    pub const NAMES: [&'static str; 2] = ["rrf", "linear"];

    pub fn name(self) -> &'static str {
        match self {
            FusionMethod::Rrf => "rrf",
            FusionMethod::Linear => "linear",
        }
    }
}

impl std::str::FromStr for FusionMethod {
    type Err = PipelineError;

    fn from_str(s: &str) -> Result<FusionMethod, PipelineError> {
        match s {
            "rrf" => Ok(FusionMethod::Rrf),
            "linear" => Ok(FusionMethod::Linear),
            _ => Err(PipelineError::BadRequest { field: "fusion", expected: "rrf or linear", found: format!("{s:?}") }),
        }
    }
}

/// How the two legs' lists are merged.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "lowercase")]
pub enum Fusion {
    /// Weighted reciprocal rank fusion ([`crate::fusion::rrf`]).
    Rrf { k: f32, bm25_weight: f32, dense_weight: f32 },
    /// Min-max normalised linear combination ([`crate::fusion::linear`]).
    Linear { bm25_weight: f32, dense_weight: f32 },
}

impl Default for Fusion {
    fn default() -> Self {
        Fusion::Rrf { k: 60.0, bm25_weight: 1.0, dense_weight: 1.0 }
    }
}

impl Fusion {
    /// `method` with the values given and the defaults for the rest: RRF k = 60 and weights 1 : 1; linear
    /// weights 0.5 : 0.5 (the fused score then stays in 0..1).
    pub fn new(method: FusionMethod, k: Option<f32>, bm25_weight: Option<f32>, dense_weight: Option<f32>) -> Fusion {
        match method {
            FusionMethod::Rrf => Fusion::Rrf {
                k: k.unwrap_or(60.0),
                bm25_weight: bm25_weight.unwrap_or(1.0),
                dense_weight: dense_weight.unwrap_or(1.0),
            },
            FusionMethod::Linear => {
                Fusion::Linear { bm25_weight: bm25_weight.unwrap_or(0.5), dense_weight: dense_weight.unwrap_or(0.5) }
            }
        }
    }

    pub fn method(&self) -> FusionMethod {
        match self {
            Fusion::Rrf { .. } => FusionMethod::Rrf,
            Fusion::Linear { .. } => FusionMethod::Linear,
        }
    }

    pub fn name(&self) -> &'static str {
        self.method().name()
    }
}

/// Reranking settings of one request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RerankRequest {
    /// How many of the fused candidates the cross-encoder scores.
    pub window: usize,
    pub instruction: Option<String>,
    /// Tokens per (query, document) pair, template included.
    pub max_length: Option<usize>,
    /// Overrides the engine's rerank latency budget.
    pub timeout: Option<Duration>,
}

impl Default for RerankRequest {
    fn default() -> Self {
        RerankRequest { window: 50, instruction: None, max_length: None, timeout: None }
    }
}

/// One search.
#[derive(Debug, Clone)]
pub struct SearchRequest {
    pub query: String,
    /// Hits to return.
    pub k: usize,
    pub filters: Vec<Filter>,
    pub lang: Option<Lang>,
    pub legs: Legs,
    /// Candidates each leg recalls before fusion (`None`: the index's setting, see
    /// [`crate::SearchSettings`]).
    pub recall_k: Option<usize>,
    /// How the legs' lists are merged (`None`: the index's setting).
    pub fusion: Option<Fusion>,
    /// How strongly the fusion weights follow the query's BM25 evidence (`None`: the index's setting; see
    /// [`crate::fusion::adapt_weights`]).
    pub adapt: Option<f32>,
    pub rerank: Option<RerankRequest>,
    /// HNSW candidate list size for this request.
    pub ef: Option<usize>,
    pub with_documents: bool,
    /// Attach every stage's timing to each hit.
    pub explain: bool,
    /// Hits of the final ranked set to skip (pagination); `k` are returned after them.
    pub offset: usize,
    /// Fields whose value counts over the final ranked set are returned.
    pub facets: Vec<FacetField>,
    /// Values per facet (the most frequent).
    pub facet_size: usize,
    /// Order by a field instead of relevance. A sorted search orders **every** document that matches (each
    /// BM25 match, and each document whose similarity reaches the index's dense threshold), not a candidate
    /// window; a blank query browses every document (see [`SearchRequest::browses_all`]).
    pub sort: Option<SortBy>,
    /// Set when the caller is gone; queued model work for this request is skipped.
    pub cancel: Option<CancelToken>,
    /// Overrides the index's BM25 k1 and b for the BM25 leg.
    pub bm25_params: Option<Bm25Params>,
    /// The BM25 leg scores every posting instead of pruning (same candidates; `bm25_matched` becomes exact).
    pub exhaustive: bool,
    /// Turns the index's typo tolerance on or off for this search (the word sizes stay the index's).
    pub typos: Option<bool>,
    /// Turns prefix matching of the word being typed and of codes on or off for this search.
    pub prefix: Option<bool>,
    /// The dense leg's query vector, given by the caller instead of embedding `query` (the news feed's reader
    /// profile: the centroid of liked documents); a unit vector of the index's dimension.
    pub vector: Option<Vec<f32>>,
}

impl SearchRequest {
    /// Hybrid recall, no rerank, 10 hits.
    pub fn new(query: impl Into<String>) -> SearchRequest {
        SearchRequest {
            query: query.into(),
            k: 10,
            filters: Vec::new(),
            lang: None,
            legs: Mode::Hybrid.legs(),
            recall_k: None,
            fusion: None,
            adapt: None,
            rerank: None,
            ef: None,
            with_documents: true,
            explain: false,
            offset: 0,
            facets: Vec::new(),
            facet_size: 10,
            sort: None,
            cancel: None,
            bm25_params: None,
            exhaustive: false,
            typos: None,
            prefix: None,
            vector: None,
        }
    }

    /// A request in `mode`: its legs, and a rerank of the default window when the mode reranks.
    pub fn in_mode(query: impl Into<String>, mode: Mode) -> SearchRequest {
        let mut req = SearchRequest::new(query);
        req.legs = mode.legs();
        req.rerank = mode.reranks().then(RerankRequest::default);
        req
    }

    /// How deep each leg recalls: `recall_k`, and never fewer than the page needs.
    pub fn recall_depth(&self) -> usize {
        self.recall_k.unwrap_or(DEFAULT_RECALL_K).max((self.offset + self.k).min(MAX_DEPTH))
    }

    /// The fusion asked for, else the default one.
    pub fn fusion_or_default(&self) -> Fusion {
        self.fusion.unwrap_or_default()
    }

    /// A blank query: no leg runs, the answer is every document that passes the filters, in the requested
    /// order (or the index's default order), with its facets: a catalog's placeholder search.
    pub fn browses_all(&self) -> bool {
        self.query.trim().is_empty()
    }

    /// Whether the answer is a whole match set (a blank query, or a sort), paged exactly, rather than the
    /// top of a relevance ranking.
    pub fn browses(&self) -> bool {
        self.browses_all() || self.sort.is_some()
    }

    /// Checks every limit of a search; the field names are the engine's (`k`, `recall_k`, `rerank.window`),
    /// which a front end may rename (HTTP says `limit` for `k`, see [`PipelineError::BadRequest`]).
    pub fn validate(&self) -> Result<(), PipelineError> {
        let bad = |field: &'static str, expected: &'static str, found: String| PipelineError::BadRequest {
            field,
            expected,
            found,
        };
        check_depth("k", self.k)?;
        if self.offset >= MAX_DEPTH {
            return Err(bad("offset", "0..=999 (ranks past 1000 are not served)", self.offset.to_string()));
        }
        if let Some(r) = self.recall_k {
            check_depth("recall_k", r)?;
        }
        check_depth("facet_size", self.facet_size)?;
        if !self.legs.bm25 && !self.legs.dense {
            return Err(bad("legs", "at least one of bm25 and dense", "neither".into()));
        }
        if let Some(ef) = self.ef {
            if ef == 0 || ef > MAX_EF {
                return Err(bad("ef", "1..=10000", ef.to_string()));
            }
        }
        if let Some(rr) = &self.rerank {
            check_window(rr.window)?;
            if rr.max_length == Some(0) {
                return Err(bad("rerank.max_length", "a number of tokens > 0", "0".into()));
            }
        }
        let non_negative = |field: &'static str, w: f32| {
            if !(w.is_finite() && w >= 0.0) {
                return Err(bad(field, "a finite number >= 0", w.to_string()));
            }
            Ok(())
        };
        if let Some(a) = self.adapt {
            non_negative("adapt", a)?;
        }
        match self.fusion_or_default() {
            Fusion::Rrf { k, bm25_weight, dense_weight } => {
                non_negative("fusion.k", k)?;
                non_negative("fusion.bm25_weight", bm25_weight)?;
                non_negative("fusion.dense_weight", dense_weight)?;
            }
            Fusion::Linear { bm25_weight, dense_weight } => {
                non_negative("fusion.bm25_weight", bm25_weight)?;
                non_negative("fusion.dense_weight", dense_weight)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_names_round_trip_and_say_what_they_run() {
        for mode in Mode::ALL {
            assert_eq!(mode.name().parse::<Mode>().unwrap(), mode);
        }
        assert_eq!(Mode::Bm25.legs(), Legs { bm25: true, dense: false });
        assert!(Mode::HybridRerank.reranks() && Mode::HybridRerank.dense() && !Mode::Hybrid.reranks());
        let err = "semantic".parse::<Mode>().unwrap_err().to_string();
        assert_eq!(err, "invalid request: `mode` expected bm25, dense, hybrid or hybrid+rerank, found \"semantic\"");
        assert_eq!(SearchRequest::in_mode("q", Mode::HybridRerank).rerank, Some(RerankRequest::default()));
    }

    #[test]
    fn fusion_defaults_fill_what_is_not_given() {
        assert_eq!(Fusion::new(FusionMethod::Rrf, None, None, None), Fusion::default());
        assert_eq!(
            Fusion::new(FusionMethod::Linear, Some(1.0), Some(0.7), None),
            Fusion::Linear { bm25_weight: 0.7, dense_weight: 0.5 }
        );
        assert_eq!("linear".parse::<FusionMethod>().unwrap(), FusionMethod::Linear);
        assert!("sum".parse::<FusionMethod>().is_err());
    }

    #[test]
    fn every_limit_is_checked_and_named() {
        let check = |f: &dyn Fn(&mut SearchRequest)| {
            let mut r = SearchRequest::new("q");
            f(&mut r);
            r.validate().map_err(|e| e.to_string())
        };
        assert!(check(&|_| {}).is_ok());
        type Case<'a> = (&'a dyn Fn(&mut SearchRequest), &'a str);
        let cases: [Case; 8] = [
            (&|r| r.k = 0, "`k` expected 1..=1000, found 0"),
            (&|r| r.offset = 1000, "`offset` expected 0..=999 (ranks past 1000 are not served), found 1000"),
            (&|r| r.recall_k = Some(1001), "`recall_k` expected 1..=1000"),
            (&|r| r.ef = Some(10_001), "`ef` expected 1..=10000, found 10001"),
            (&|r| r.legs = Legs { bm25: false, dense: false }, "`legs` expected at least one"),
            (&|r| r.rerank = Some(RerankRequest { window: 0, ..Default::default() }), "`rerank.window`"),
            (
                &|r| r.fusion = Some(Fusion::Rrf { k: -1.0, bm25_weight: 1.0, dense_weight: 1.0 }),
                "`fusion.k` expected a finite",
            ),
            (&|r| r.fusion = Some(Fusion::Linear { bm25_weight: f32::NAN, dense_weight: 1.0 }), "`fusion.bm25_weight`"),
        ];
        for (f, want) in cases {
            let err = check(f).unwrap_err();
            assert!(err.contains(want), "{err} should contain {want}");
        }
    }
}
