//! Search results and the per-stage evidence behind each of them.

use serde::{Deserialize, Serialize};

use crate::document::{DocId, Document};

/// One ranked result. `rank` is 1-based; `score` is the score of the stage that produced the final order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hit {
    pub id: DocId,
    pub rank: u32,
    pub score: f32,
    pub scores: ScoreBreakdown,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub document: Option<Document>,
}

/// Every stage's score for one hit. A stage that did not run (or did not retrieve this document) is `None`;
/// later stages (dense similarity, fusion, rerank) add their own fields here.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ScoreBreakdown {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bm25: Option<Bm25Score>,
}

/// The BM25 leg's evidence: the total, its rank in the BM25 list, and the part each field contributed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bm25Score {
    pub score: f32,
    pub rank: u32,
    /// `(field, boosted score)` for every field that matched.
    pub fields: Vec<(String, f32)>,
}

/// How long one stage of a request took.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageTiming {
    pub stage: String,
    pub micros: u64,
}
