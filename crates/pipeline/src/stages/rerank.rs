//! Stage 3, rerank: the cross-encoder rescores the top `window` candidates and reorders them by its
//! probability (ties keep the fused order). Scores come from the score cache first and the model for the
//! rest, within the request's time budget. The fused order is always a valid answer, so a reranker that is
//! absent, slow or failing leaves the ranking as it was and says why in `reasons` (`degraded`); only a
//! cancelled request is an error.

use std::time::Instant;

use sieve_core::{DocId, RerankScore, StageTiming};

use super::Ranking;
use crate::engine::doc_text;
use crate::models::{CachedRerank, RerankJob};
use crate::worker::WorkerError;
use crate::{Engine, PipelineError, RerankRequest, SearchRequest};

impl Engine {
    /// Reranks the top of `ranking` when `req.rerank` asks for it.
    pub fn rerank(&self, req: &SearchRequest, ranking: &mut Ranking) -> Result<(), PipelineError> {
        let Some(rr) = &req.rerank else { return Ok(()) };
        let window = rr.window.min(ranking.candidates.len());
        if self.reranker().is_none() {
            ranking.reasons.push("not reranked: no reranker is loaded".into());
            return Ok(());
        }
        if window == 0 {
            return Ok(());
        }
        let _span = tracing::debug_span!("rerank", window).entered();
        let t = Instant::now();
        let ids: Vec<DocId> = ranking.candidates[..window].iter().map(|c| c.id.clone()).collect();
        self.fetch_documents(&ids, &mut ranking.documents)?;
        ranking.time("fetch", t.elapsed());
        let t = Instant::now();
        let texts: Vec<String> =
            ids.iter().map(|id| ranking.documents.get(id).map(doc_text).unwrap_or_default()).collect();
        let outcome = self.score_window(req, rr, texts);
        ranking.time("rerank", t.elapsed());
        match outcome {
            Ok(CachedRerank { scores, cached, report, .. }) => {
                ranking.timings.push(StageTiming { stage: "rerank_queue".into(), micros: report.queued_micros });
                ranking.cache = Some(report);
                let top = &mut ranking.candidates[..window];
                for ((c, s), cached) in top.iter_mut().zip(scores).zip(cached) {
                    c.scores.rerank = Some(RerankScore { score: s.score, raw: s.raw, rank: 0, cached });
                }
                // best probability first; ties keep the fused order (stable sort)
                let p = |c: &super::Candidate| c.scores.rerank.as_ref().map_or(0.0, |s| s.score);
                top.sort_by(|a, b| p(b).total_cmp(&p(a)));
                for (i, c) in top.iter_mut().enumerate() {
                    if let Some(r) = c.scores.rerank.as_mut() {
                        r.rank = i as u32 + 1;
                    }
                }
                // exact codes stay first (the fuse stage's rule), in the reranker's order among themselves
                super::fuse::codes_first(&mut ranking.candidates);
                ranking.reranked = true;
            }
            Err((WorkerError::Cancelled { worker }, _)) => return Err(WorkerError::Cancelled { worker }.into()),
            Err((reason, report)) => {
                ranking.cache = Some(report);
                ranking.reasons.push(format!("not reranked: {reason}"));
            }
        }
        Ok(())
    }

    /// Scores the window's texts: cached scores first, the model for the rest (within the time budget).
    fn score_window(
        &self,
        req: &SearchRequest,
        rr: &RerankRequest,
        texts: Vec<String>,
    ) -> Result<CachedRerank, (WorkerError, crate::CacheReport)> {
        let handle = self.reranker().expect("checked by the caller");
        let job = RerankJob {
            query: req.query.clone(),
            instruction: rr.instruction.clone(),
            docs: texts,
            max_length: rr.max_length,
        };
        let timeout = rr.timeout.unwrap_or(self.rerank_timeout());
        handle.rerank_cached(self.cache().as_ref(), true, job, Some(timeout), req.cancel.as_ref())
    }
}
