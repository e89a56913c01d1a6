//! Stage 4, present: the final ranked set becomes the answer.
//!
//! - **Relevance** (a query, no sort): the page is cut from the ranking (`offset`, `k`; ranks past
//!   [`MAX_DEPTH`] are never served, so a page that reaches past it is cut there, with a note), facets count
//!   every ranked candidate, `total` is how many were ranked.
//! - **A whole set** ([`SearchRequest::browses`]: a sort, or a blank query): the text index builds the set
//!   (every BM25 match and every dense match above the index's threshold, or every document for a blank
//!   query, after filters), orders all of it by the sort key (ties: the ranking's order first, then BM25
//!   score, then id: a total order, so pages neither overlap nor skip), counts facets over all of it and
//!   returns the page; `total` is the set's exact size.
//!
//! Then the page's stored documents are fetched. A hit's score is the cross-encoder's probability when the
//! ranking was reranked, else the fused (or single-leg) score; a hit of a sorted page that the ranking did not
//! hold carries its BM25 score (0 for a blank query).

use std::collections::HashMap;
use std::time::Instant;

use sieve_core::{DocId, Document, Hit};
use sieve_text::BrowseQuery;

use super::recall::tolerance;
use super::{Candidate, Ranking};
use crate::{Engine, PipelineError, SearchRequest, SearchResponse, MAX_DEPTH};

impl Engine {
    /// Pages, counts facets and fetches documents: `ranking` as the answer to `req`.
    pub fn present(&self, req: &SearchRequest, mut ranking: Ranking) -> Result<SearchResponse, PipelineError> {
        let _span = tracing::debug_span!("present").entered();
        let room = MAX_DEPTH.saturating_sub(req.offset);
        if req.k > room {
            ranking.notes.push(format!(
                "results end at rank {MAX_DEPTH}, the deepest a search pages: this page holds ranks {}..={MAX_DEPTH}",
                req.offset + 1
            ));
        }
        let (total, facets, page) = if req.browses() {
            let t = Instant::now();
            let query = BrowseQuery {
                text: req.query.clone(),
                lang: req.lang.clone(),
                filters: req.filters.clone(),
                tolerance: tolerance(self, req),
                slots: std::mem::take(&mut ranking.dense_matches),
                ranked: ranking.candidates.iter().map(|c| c.id.clone()).collect(),
                sort: req.sort,
                offset: req.offset,
                k: req.k.min(room),
                facets: req.facets.clone(),
                facet_size: req.facet_size,
            };
            let res = self.text().browse(&query)?;
            let mut ranked: HashMap<DocId, Candidate> =
                ranking.candidates.drain(..).map(|c| (c.id.clone(), c)).collect();
            let page: Vec<Candidate> = res
                .hits
                .into_iter()
                .map(|h| {
                    ranked.remove(&h.id).unwrap_or_else(|| {
                        let mut c = Candidate::new(h.id);
                        c.score = h.bm25;
                        c
                    })
                })
                .collect();
            ranking.time("browse", t.elapsed());
            (res.total as usize, (!req.facets.is_empty()).then_some(res.facets), page)
        } else {
            let total = ranking.candidates.len();
            let mut facets = None;
            if !req.facets.is_empty() {
                let t = Instant::now();
                let ids: Vec<DocId> = ranking.candidates.iter().map(|c| c.id.clone()).collect();
                facets = Some(self.text().facets_of(&ids, &req.facets, req.facet_size)?);
                ranking.time("facets", t.elapsed());
            }
            let mut page = std::mem::take(&mut ranking.candidates);
            page.drain(..req.offset.min(page.len()));
            page.truncate(req.k.min(room));
            (total, facets, page)
        };
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
