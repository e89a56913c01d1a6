//! Stage 1, recall: the BM25 leg and the dense leg, side by side. The BM25 leg runs on a second thread while
//! this one embeds the query and walks the graph; a request with one leg runs it here. Filters apply to both
//! legs: to the BM25 scorer directly, and to the graph as the list of slots that pass them.
//!
//! A dense leg that cannot run (no embeddings, model slow or failing) is left out with a reason when the BM25
//! leg runs beside it; a dense-only request fails instead.

use std::time::{Duration, Instant};

use sieve_core::{Hit, StageTiming};
use sieve_text::Bm25Query;
use sieve_vector::{SearchStrategy, VectorHit, VectorSearch};

use super::timing;
use crate::engine::Engine;
use crate::response::Bm25Report;
use crate::worker::WorkerError;
use crate::{PipelineError, SearchRequest};

/// A product code carried by more documents than this identifies none of them (see
/// [`sieve_text::TextIndex::code_carriers`]).
pub const MAX_CODE_CARRIERS: usize = 3;

/// The most dense matches a sorted search takes into its set (the nearest first).
pub const MAX_DENSE_MATCHES: usize = 10_000;

/// What the legs found.
#[derive(Debug, Clone)]
pub struct Recall {
    pub bm25: Option<Bm25Leg>,
    pub dense: Option<DenseLeg>,
    /// The documents that carry a product code of the query exactly, with the codes (every mode looks them
    /// up; the fuse stage puts them first).
    pub codes: Vec<sieve_text::CodeCarrier>,
    pub reasons: Vec<String>,
    pub notes: Vec<String>,
    pub timings: Vec<StageTiming>,
    pub started: Instant,
}

/// The BM25 leg's candidates, best first.
#[derive(Debug, Clone)]
pub struct Bm25Leg {
    pub hits: Vec<Hit>,
    pub report: Bm25Report,
}

/// The dense leg's candidates, best first, and how it searched.
#[derive(Debug, Clone)]
pub struct DenseLeg {
    pub hits: Vec<VectorHit>,
    /// For a sorted search: the slots of every document whose similarity reaches the index's dense threshold
    /// (up to [`MAX_DENSE_MATCHES`]); empty otherwise.
    pub matches: Vec<u64>,
    pub strategy: SearchStrategy,
    pub candidates: usize,
}

enum DenseFailure {
    /// The leg could not run (model slow or failing); the request goes on without it.
    Degraded(String),
    /// A real error (bad index state, a cancelled request).
    Error(PipelineError),
}

impl Engine {
    /// Runs the legs `req` asks for, `req.recall_depth()` candidates each.
    pub fn recall(&self, req: &SearchRequest) -> Result<Recall, PipelineError> {
        let started = Instant::now();
        let span = tracing::debug_span!("recall", bm25 = req.legs.bm25, dense = req.legs.dense);
        let _entered = span.enter();
        let mut out = Recall {
            bm25: None,
            dense: None,
            codes: Vec::new(),
            reasons: Vec::new(),
            notes: Vec::new(),
            timings: Vec::new(),
            started,
        };
        let use_dense = req.legs.dense && self.dense_leg_available(req, &mut out)?;
        let depth = req.recall_depth();
        let (bm25, dense) = if req.legs.bm25 && use_dense {
            std::thread::scope(|scope| {
                let bm25 = scope.spawn(|| {
                    let _entered = span.enter();
                    self.bm25_leg(req, depth)
                });
                let dense = self.dense_leg(req, depth);
                (Some(bm25.join().expect("BM25 thread panicked")), Some(dense))
            })
        } else if req.legs.bm25 {
            (Some(self.bm25_leg(req, depth)), None)
        } else {
            (None, Some(self.dense_leg(req, depth)))
        };
        if let Some(bm25) = bm25 {
            let (leg, took) = bm25?;
            out.timings.push(timing("bm25", took));
            out.bm25 = Some(leg);
        }
        match dense {
            Some(Ok((leg, times))) => {
                out.timings.extend(times);
                out.dense = Some(leg);
            }
            Some(Err(DenseFailure::Degraded(reason))) if req.legs.bm25 => {
                out.reasons.push(format!("dense leg skipped: {reason}"));
            }
            Some(Err(DenseFailure::Degraded(reason))) => return Err(PipelineError::DenseUnavailable { reason }),
            Some(Err(DenseFailure::Error(e))) => return Err(e),
            None => {}
        }
        let t = Instant::now();
        out.codes = self.text().code_carriers(&req.query, req.lang.as_ref(), &req.filters, MAX_CODE_CARRIERS)?;
        out.timings.push(timing("codes", t.elapsed()));
        Ok(out)
    }

    /// Whether the dense leg can run; when it cannot and the BM25 leg runs, why not goes to the notes (the
    /// index has no embeddings: nothing failed) or the reasons (no model loaded: degraded).
    fn dense_leg_available(&self, req: &SearchRequest, out: &mut Recall) -> Result<bool, PipelineError> {
        if self.dense_ready() {
            // a hybrid query in a language the embedder does not cover would fuse noise into BM25's ranking
            let covers = self.embedder().map(|e| e.info().languages.clone()).unwrap_or_default();
            let lang = query_language(req);
            if let (true, Some(lang)) = (req.legs.bm25, lang) {
                if !covers.is_empty() && !covers.iter().any(|c| c == lang) {
                    // a decision, not a failure: a note (as for an index without embeddings), not `degraded`
                    out.notes.push(format!(
                        "dense leg not run: the embedding model covers {}, and the query is {lang}",
                        covers.join(", ")
                    ));
                    return Ok(false);
                }
            }
            return Ok(true);
        }
        let no_vectors = self.settings().is_none();
        let reason = if no_vectors {
            "the index has no embeddings (ingest it with an embedding model)".to_owned()
        } else {
            "no embedding model is loaded".to_owned()
        };
        if !req.legs.bm25 {
            return Err(PipelineError::DenseUnavailable { reason });
        }
        if no_vectors {
            out.notes.push(format!("dense leg not run: {reason}"));
        } else {
            out.reasons.push(format!("dense leg skipped: {reason}"));
        }
        Ok(false)
    }

    fn bm25_leg(&self, req: &SearchRequest, depth: usize) -> Result<(Bm25Leg, Duration), PipelineError> {
        let _span = tracing::debug_span!("bm25").entered();
        let t = Instant::now();
        let mut q = Bm25Query::new(req.query.clone(), depth);
        q.filters = req.filters.clone();
        q.lang = req.lang.clone();
        q.with_documents = false;
        q.params = req.bm25_params;
        q.exhaustive = req.exhaustive;
        q.tolerance = tolerance(self, req);
        let res = self.text().search(&q)?;
        let report = Bm25Report {
            matched: res.matched,
            pruned: res.pruned,
            terms: res.terms,
            expansions: res.expansions,
            stages: res.timings,
        };
        Ok((Bm25Leg { hits: res.hits, report }, t.elapsed()))
    }

    fn dense_leg(&self, req: &SearchRequest, depth: usize) -> Result<(DenseLeg, Vec<StageTiming>), DenseFailure> {
        let _span = tracing::debug_span!("dense").entered();
        let t = Instant::now();
        let (query, queued) = match &req.vector {
            Some(v) => (v.clone(), Duration::ZERO),
            None => {
                let (v, call) = self.embed_query(&req.query, req.cancel.as_ref()).map_err(|e| match e {
                    WorkerError::Cancelled { .. } => DenseFailure::Error(e.into()),
                    e => DenseFailure::Degraded(e.to_string()),
                })?;
                (v, call.queued)
            }
        };
        let embed = t.elapsed();
        let t = Instant::now();
        let only = if req.filters.is_empty() {
            None
        } else {
            Some(self.text().filter_slots(&req.filters).map_err(|e| DenseFailure::Error(e.into()))?)
        };
        // a sorted search orders every match: one walk wide enough for every document this similar, whose
        // first `depth` are the leg's hits
        let search = match req.sort {
            Some(_) => VectorSearch {
                k: MAX_DENSE_MATCHES.max(depth),
                ef: Some(MAX_DENSE_MATCHES.max(depth)),
                only: only.as_deref(),
                exact: false,
            },
            None => VectorSearch { k: depth, ef: req.ef, only: only.as_deref(), exact: false },
        };
        let mut res = self
            .with_graph(|graph| graph.search(&query, &search))
            .ok_or_else(|| DenseFailure::Degraded("the vector graph is not loaded".into()))?
            .map_err(|e| DenseFailure::Error(e.into()))?;
        let mut matches = Vec::new();
        if req.sort.is_some() {
            let threshold = self.search_settings().dense_threshold;
            matches = res.hits.iter().filter(|h| h.similarity >= threshold).map(|h| h.slot).collect();
            res.hits.truncate(depth);
        }
        let times = vec![timing("embed", embed), timing("embed_queue", queued), timing("ann", t.elapsed())];
        Ok((DenseLeg { hits: res.hits, matches, strategy: res.strategy, candidates: res.candidates }, times))
    }
}

/// The index's typo tolerance and prefix matching with what `req` turns on or off (`None`: as the index has
/// them).
pub(crate) fn tolerance(engine: &Engine, req: &SearchRequest) -> Option<sieve_text::Tolerance> {
    if req.typos.is_none() && req.prefix.is_none() {
        return None;
    }
    let mut t = engine.text().settings().tolerance;
    t.typos = req.typos.unwrap_or(t.typos);
    t.prefix = req.prefix.unwrap_or(t.prefix);
    Some(t)
}

/// The query's language for the dense leg: the request's `lang` when given, else `zh`, `ja` or `ko` when the
/// query holds Han, Kana or Hangul characters (a Kana or Hangul character decides for Japanese or Korean),
/// else `en` when it holds Latin letters; `None` for a query without letters.
pub fn query_language(req: &SearchRequest) -> Option<&str> {
    if let Some(lang) = &req.lang {
        return Some(lang.primary());
    }
    let (mut han, mut kana, mut hangul, mut latin) = (false, false, false, false);
    for c in req.query.chars() {
        match c as u32 {
            0x3040..=0x30FF => kana = true,
            0xAC00..=0xD7AF | 0x1100..=0x11FF => hangul = true,
            0x4E00..=0x9FFF | 0x3400..=0x4DBF | 0xF900..=0xFAFF => han = true,
            _ if c.is_ascii_alphabetic() => latin = true,
            _ => {}
        }
    }
    match (kana, hangul, han, latin) {
        (true, _, _, _) => Some("ja"),
        (_, true, _, _) => Some("ko"),
        (_, _, true, _) => Some("zh"),
        (_, _, _, true) => Some("en"),
        _ => None,
    }
}
