//! An index's search settings (`search.json` in the index directory): the fusion and the candidates per leg a
//! request gets when it names none, and the similarity above which a document is a dense match of a sorted
//! query. `sieve tune` fits the first two on labelled queries by k-fold cross-validation and records here what
//! it fitted, with both estimates; a missing file is the defaults.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::request::{Fusion, DEFAULT_RECALL_K};
use crate::PipelineError;

const FILE: &str = "search.json";

/// Cosine similarity above which a document is one of a sorted query's dense matches, by default. Measured for
/// all-MiniLM-L6-v2 on abt-buy-products' dev queries: every judged-relevant document in the top 100 was above
/// 0.59 (median 0.74), the 10th hit's median was 0.52 and the 100th's 0.33.
pub const DEFAULT_DENSE_THRESHOLD: f32 = 0.5;

/// What a search of this index uses when the request does not say.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchSettings {
    pub fusion: Fusion,
    /// Candidates each leg recalls before fusion.
    pub recall_k: usize,
    /// A sorted query's set holds the documents whose similarity to it is at least this (besides every BM25
    /// match).
    #[serde(default = "default_threshold")]
    pub dense_threshold: f32,
    /// How strongly the legs' weights follow each query's BM25 evidence
    /// ([`crate::fusion::adapt_weights`]); 0: fixed weights.
    #[serde(default)]
    pub adapt: f32,
    /// How `fusion` and `recall_k` were fitted, when `sieve tune` fitted them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tuned: Option<TuneRecord>,
}

fn default_threshold() -> f32 {
    DEFAULT_DENSE_THRESHOLD
}

impl Default for SearchSettings {
    fn default() -> Self {
        SearchSettings {
            fusion: Fusion::default(),
            recall_k: DEFAULT_RECALL_K,
            dense_threshold: DEFAULT_DENSE_THRESHOLD,
            adapt: 0.0,
            tuned: None,
        }
    }
}

/// What `sieve tune` recorded with the settings it fitted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TuneRecord {
    /// The labelled query set, as named on the command line.
    pub dataset: String,
    pub queries: usize,
    pub folds: usize,
    /// The metric, e.g. `ndcg@10`.
    pub metric: String,
    /// Mean over the folds of the held-out queries' metric under the settings fitted without them.
    pub cross_validated: f64,
    /// The fitted settings' metric on every query (optimistic: fitted on the same queries).
    pub in_sample: f64,
    /// The default settings' metric on every query.
    pub default: f64,
    /// RFC 3339 time of the fit.
    pub at: String,
}

impl SearchSettings {
    /// The settings of index `dir`; the defaults when it has none.
    pub fn load(dir: &Path) -> Result<SearchSettings, PipelineError> {
        let path = dir.join(FILE);
        match std::fs::read(&path) {
            Ok(raw) => {
                let s: SearchSettings = serde_json::from_slice(&raw)
                    .map_err(|e| PipelineError::Config { path: path.display().to_string(), message: e.to_string() })?;
                s.check().map_err(|message| PipelineError::Config { path: path.display().to_string(), message })?;
                Ok(s)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(SearchSettings::default()),
            Err(e) => Err(PipelineError::Io { path: path.display().to_string(), message: e.to_string() }),
        }
    }

    /// Writes the settings into index `dir` (atomically: a temporary file renamed over the old one).
    pub fn save(&self, dir: &Path) -> Result<(), PipelineError> {
        let path = dir.join(FILE);
        let tmp = dir.join("search.json.tmp");
        let io = |p: &Path| {
            let p = p.display().to_string();
            move |e: std::io::Error| PipelineError::Io { path: p, message: e.to_string() }
        };
        std::fs::write(&tmp, serde_json::to_vec_pretty(self).expect("settings serialize")).map_err(io(&tmp))?;
        std::fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))
    }

    /// What a request with these values would be refused for, as a sentence.
    fn check(&self) -> Result<(), String> {
        let mut req = crate::SearchRequest::new("q");
        req.fusion = Some(self.fusion);
        req.recall_k = Some(self.recall_k);
        req.validate().map_err(|e| e.to_string())?;
        if !(self.adapt.is_finite() && (0.0..=10.0).contains(&self.adapt)) {
            return Err(format!("`adapt` expected a strength in 0..=10, found {}", self.adapt));
        }
        if !(self.dense_threshold.is_finite() && (-1.0..=1.0).contains(&self.dense_threshold)) {
            return Err(format!("`dense_threshold` expected a similarity in -1..=1, found {}", self.dense_threshold));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_round_trip_and_a_bad_file_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(SearchSettings::load(dir.path()).unwrap(), SearchSettings::default());
        let s = SearchSettings {
            fusion: Fusion::Linear { bm25_weight: 0.7, dense_weight: 0.3 },
            recall_k: 200,
            dense_threshold: 0.4,
            adapt: 0.5,
            tuned: None,
        };
        s.save(dir.path()).unwrap();
        assert_eq!(SearchSettings::load(dir.path()).unwrap(), s);
        std::fs::write(
            dir.path().join(FILE),
            r#"{"fusion": {"method": "rrf", "k": -1, "bm25_weight": 1, "dense_weight": 1}, "recall_k": 100}"#,
        )
        .unwrap();
        let err = SearchSettings::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("search.json") && err.contains("`fusion.k` expected a finite number >= 0"), "{err}");
    }
}
