//! The search path as four named stages, each a function over a [`Ranking`]:
//!
//! 1. [`recall`]: the BM25 leg beside the dense leg (filters become slot lists for the graph);
//! 2. [`fuse`]: the candidate merge, ordered by [`fusion`]'s formulas;
//! 3. [`rerank`]: the cross-encoder over the top window, through the score cache, degrading on failure;
//! 4. [`present`]: the page (of the ranking, or of the whole match set when the request sorts or its query is
//!    blank), facets and the documents, into a [`crate::SearchResponse`].
//!
//! [`crate::Engine::search`] runs them in order. A caller with its own ranking (the news feed) runs recall,
//! fuse and rerank, reorders [`Ranking::candidates`], and then presents.

pub mod fuse;
pub mod fusion;
pub mod present;
pub mod recall;
pub mod rerank;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use sieve_core::{DocId, Document, ScoreBreakdown, StageTiming};

use crate::cache::CacheReport;
use crate::response::{Bm25Report, DenseReport};

/// One candidate on its way through the stages.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub id: DocId,
    /// The score it is ranked by before reranking: the fused score, or the one leg's score.
    pub score: f32,
    /// Every stage's score and rank so far.
    pub scores: ScoreBreakdown,
    /// How strongly exact product codes of the query pin it to the front (0: not at all); see
    /// [`fuse::pin_codes`].
    pub pin: f32,
}

impl Candidate {
    pub fn new(id: DocId) -> Candidate {
        Candidate { id, score: 0.0, scores: ScoreBreakdown::default(), pin: 0.0 }
    }
}

/// A request's candidates between the stages, in their current order, with what the stages report.
#[derive(Debug)]
pub struct Ranking {
    pub candidates: Vec<Candidate>,
    /// Stored documents fetched so far (the rerank window, then what present needs), by id.
    pub documents: HashMap<DocId, Document>,
    /// Why a stage did not run as asked (`degraded`).
    pub reasons: Vec<String>,
    /// What the index does not do, without anything having failed.
    pub notes: Vec<String>,
    pub timings: Vec<StageTiming>,
    /// The candidates are in the cross-encoder's order.
    pub reranked: bool,
    pub bm25: Option<Bm25Report>,
    pub dense: Option<DenseReport>,
    pub cache: Option<CacheReport>,
    /// The embedding slots whose similarity to the query reaches the index's dense threshold, looked up only
    /// for a sorted search (whose set they join).
    pub dense_matches: Vec<u64>,
    /// When the request started (for the `total` timing).
    pub started: Instant,
}

impl Ranking {
    /// A ranking with no candidates yet (a blank query's, which no leg runs for).
    pub fn empty(started: Instant) -> Ranking {
        Ranking {
            candidates: Vec::new(),
            documents: HashMap::new(),
            reasons: Vec::new(),
            notes: Vec::new(),
            timings: Vec::new(),
            reranked: false,
            bm25: None,
            dense: None,
            cache: None,
            dense_matches: Vec::new(),
            started,
        }
    }

    pub(crate) fn time(&mut self, stage: &str, took: Duration) {
        self.timings.push(timing(stage, took));
    }
}

pub(crate) fn timing(stage: &str, d: Duration) -> StageTiming {
    StageTiming { stage: stage.into(), micros: d.as_micros() as u64 }
}
