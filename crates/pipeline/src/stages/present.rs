//! Stage 4, present: the final ranked set becomes the answer. It is sorted by a field when asked (stable, so
//! ties keep their relevance order), counted into facets (over every ranked candidate, not only the page), cut
//! to the page (`offset`, `k`; ranks past [`MAX_DEPTH`] are never served, so a page that reaches past it is cut
//! there, with a note), and given its stored documents. A hit's score is the cross-encoder's
//! probability when the ranking was reranked, else the fused (or single-leg) score.

use std::collections::HashMap;
use std::time::Instant;

use sieve_core::{DocId, Document, Hit};

use super::facets::{facet_counts, sort_order};
use super::{Candidate, Ranking};
use crate::{Engine, PipelineError, SearchRequest, SearchResponse, MAX_DEPTH};

impl Engine {
    /// Sorts, counts facets, pages and fetches documents: `ranking` as the answer to `req`.
    pub fn present(&self, req: &SearchRequest, mut ranking: Ranking) -> Result<SearchResponse, PipelineError> {
        let _span = tracing::debug_span!("present").entered();
        let total = ranking.candidates.len();
        let mut facets = None;
        if !req.facets.is_empty() || req.sort.is_some() {
            let t = Instant::now();
            let ids: Vec<DocId> = ranking.candidates.iter().map(|c| c.id.clone()).collect();
            self.fetch_documents(&ids, &mut ranking.documents)?;
            if let Some(sort) = req.sort {
                let docs: Vec<Option<&Document>> =
                    ranking.candidates.iter().map(|c| ranking.documents.get(&c.id)).collect();
                let order = sort_order(&docs, sort);
                let mut slots: Vec<Option<Candidate>> = ranking.candidates.drain(..).map(Some).collect();
                ranking.candidates = order.into_iter().filter_map(|i| slots[i].take()).collect();
            }
            if !req.facets.is_empty() {
                let docs: Vec<&Document> =
                    ranking.candidates.iter().filter_map(|c| ranking.documents.get(&c.id)).collect();
                facets = Some(facet_counts(&docs, &req.facets, req.facet_size));
            }
            ranking.time("facets", t.elapsed());
        }

        let mut page = std::mem::take(&mut ranking.candidates);
        page.drain(..req.offset.min(page.len()));
        let room = MAX_DEPTH.saturating_sub(req.offset);
        if req.k > room {
            ranking.notes.push(format!(
                "results end at rank {MAX_DEPTH}, the deepest a search pages: this page holds ranks {}..={MAX_DEPTH}",
                req.offset + 1
            ));
        }
        page.truncate(req.k.min(room));
        if req.with_documents {
            let t = Instant::now();
            let ids: Vec<DocId> = page.iter().map(|c| c.id.clone()).collect();
            self.fetch_documents(&ids, &mut ranking.documents)?;
            ranking.time("documents", t.elapsed());
        }
        let total_time = ranking.started.elapsed();
        ranking.time("total", total_time);
        let Ranking { mut documents, reasons, notes, timings, reranked, bm25, dense, cache, .. } = ranking;
        let hits = page
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                let score = match (&c.scores.rerank, reranked) {
                    (Some(r), true) => r.score,
                    _ => c.score,
                };
                let mut scores = c.scores;
                if req.explain {
                    scores.timings = Some(timings.clone());
                }
                let document = if req.with_documents { documents.remove(&c.id).map(Box::new) } else { None };
                Hit { id: c.id, rank: (req.offset + i) as u32 + 1, score, scores, document }
            })
            .collect();
        let degraded = !reasons.is_empty();
        Ok(SearchResponse { hits, total, facets, reranked, degraded, reasons, notes, timings, bm25, dense, cache })
    }

    /// Adds to `documents` the stored documents of those `ids` it lacks.
    pub fn fetch_documents(
        &self,
        ids: &[DocId],
        documents: &mut HashMap<DocId, Document>,
    ) -> Result<(), PipelineError> {
        let missing: Vec<DocId> = ids.iter().filter(|id| !documents.contains_key(*id)).cloned().collect();
        if missing.is_empty() {
            return Ok(());
        }
        for (id, doc) in missing.iter().zip(self.text().get_many(&missing)?) {
            if let Some(doc) = doc {
                documents.insert(id.clone(), doc);
            }
        }
        Ok(())
    }
}
