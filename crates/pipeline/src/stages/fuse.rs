//! Stage 2, fuse: the candidate merge. The legs' lists become one candidate list, in the order
//! [`fusion`](super::fusion)'s formula gives when both legs ran (the one leg's order otherwise), and every
//! candidate carries both legs' evidence: its BM25 breakdown and rank, its cosine and rank, and the fused
//! score and rank.
//!
//! **Exact codes first.** A document that carries a product code of the query exactly (in any spelling the
//! analyzer joins: `PS-LX350H`, `PSLX350H`, `ps lx350h`) goes before every document that does not, in every
//! mode, more codes before fewer, and otherwise in the order fusion gave. The dense leg does not see codes
//! and BM25 can be outvoted in fusion, so a shopper who types a model number would otherwise not always get
//! that model first. The rule is [`pin_codes`]; the rerank stage keeps it ([`codes_first`]).

use std::collections::HashMap;
use std::time::Instant;

use sieve_core::{DenseScore, DocId, FusedScore, Hit, ScoreBreakdown};
use sieve_text::CodeCarrier;
use sieve_vector::VectorHit;

use super::fusion;
use super::recall::Recall;
use super::{timing, Candidate, Ranking};
use crate::response::DenseReport;
use crate::Fusion;

/// Merges the recalled lists into one ranking (pure: no index, no model). The legs' hits are moved, not
/// copied: a one-leg request costs no more than the leg itself.
pub fn fuse(recall: Recall, method: Fusion) -> Ranking {
    fuse_adapted(recall, method, 0.0)
}

/// [`fuse`] with the legs' weights adapted to this query's BM25 evidence ([`fusion::adapt_weights`], by
/// `strength`; 0 is [`fuse`]).
pub fn fuse_adapted(recall: Recall, method: Fusion, strength: f32) -> Ranking {
    let t = Instant::now();
    let Recall { bm25, dense, codes, reasons, notes, mut timings, started } = recall;
    let (bm25_hits, bm25_report) = bm25.map_or((None, None), |l| (Some(l.hits), Some(l.report)));
    let mut dense_matches = Vec::new();
    let (dense_hits, dense_report) = dense.map_or((None, None), |l| {
        dense_matches = l.matches;
        (Some(l.hits), Some(DenseReport { strategy: l.strategy, candidates: l.candidates }))
    });
    let candidates = match (bm25_hits, dense_hits) {
        (Some(b), Some(d)) => {
            let method = if strength != 0.0 {
                let scores: Vec<f32> = b.iter().take(10).map(|h| h.score).collect();
                let (words, corrected) = bm25_report.as_ref().map_or((0, 0), |r| {
                    let typos = r.expansions.iter().filter(|e| e.kind == sieve_text::ExpansionKind::Typo).count();
                    (r.terms.len(), typos)
                });
                let c = fusion::bm25_confidence(&scores, words, corrected);
                match method {
                    Fusion::Rrf { k, bm25_weight, dense_weight } => {
                        let (bm25_weight, dense_weight) = fusion::adapt_weights(bm25_weight, dense_weight, c, strength);
                        Fusion::Rrf { k, bm25_weight, dense_weight }
                    }
                    Fusion::Linear { bm25_weight, dense_weight } => {
                        let (bm25_weight, dense_weight) = fusion::adapt_weights(bm25_weight, dense_weight, c, strength);
                        Fusion::Linear { bm25_weight, dense_weight }
                    }
                }
            } else {
                method
            };
            let merged = merge(b, d, method);
            timings.push(timing("fuse", t.elapsed()));
            merged
        }
        (Some(b), None) => b
            .into_iter()
            .map(|h| Candidate {
                id: h.id,
                score: h.score,
                scores: ScoreBreakdown { bm25: h.scores.bm25, ..ScoreBreakdown::default() },
                pin: 0.0,
            })
            .collect(),
        (None, Some(d)) => d.into_iter().map(dense_candidate).collect(),
        (None, None) => Vec::new(),
    };
    let mut candidates = candidates;
    pin_codes(&mut candidates, codes);
    Ranking {
        candidates,
        documents: HashMap::new(),
        reasons,
        notes,
        timings,
        reranked: false,
        bm25: bm25_report,
        dense: dense_report,
        cache: None,
        dense_matches,
        started,
    }
}

/// Exact codes first (see the module doc): marks the carriers among `candidates` with their codes and weight,
/// adds the carriers the legs did not recall, and moves them to the front, heaviest first.
pub fn pin_codes(candidates: &mut Vec<Candidate>, carriers: Vec<CodeCarrier>) {
    if carriers.is_empty() {
        return;
    }
    for carrier in carriers {
        let at = match candidates.iter().position(|c| c.id == carrier.id) {
            Some(i) => i,
            None => {
                candidates.push(Candidate::new(carrier.id));
                candidates.len() - 1
            }
        };
        candidates[at].scores.exact_codes = Some(carrier.codes);
        candidates[at].pin = carrier.weight;
    }
    codes_first(candidates);
}

/// The heaviest carriers of exact codes first; a stable sort, so every other order (fusion's, the
/// reranker's) holds among equals.
pub fn codes_first(candidates: &mut [Candidate]) {
    candidates.sort_by(|a, b| b.pin.total_cmp(&a.pin));
}

/// A dense-only candidate, ranked by its cosine.
fn dense_candidate(h: VectorHit) -> Candidate {
    let mut c = Candidate::new(h.id);
    c.score = h.similarity;
    c.scores.dense = Some(DenseScore { similarity: h.similarity, rank: h.rank });
    c
}

/// Both legs: the fused order, each candidate with its fused score and rank and both legs' evidence.
fn merge(bm25: Vec<Hit>, dense: Vec<VectorHit>, method: Fusion) -> Vec<Candidate> {
    let order: Vec<(DocId, f32)> = match method {
        Fusion::Rrf { k, bm25_weight, dense_weight } => {
            let a: Vec<&DocId> = bm25.iter().map(|h| &h.id).collect();
            let b: Vec<&DocId> = dense.iter().map(|h| &h.id).collect();
            fusion::rrf(&[(bm25_weight, &a), (dense_weight, &b)], k)
                .into_iter()
                .map(|(id, s)| (id.clone(), s))
                .collect()
        }
        Fusion::Linear { bm25_weight, dense_weight } => {
            let a: Vec<(&DocId, f32)> = bm25.iter().map(|h| (&h.id, h.score)).collect();
            let b: Vec<(&DocId, f32)> = dense.iter().map(|h| (&h.id, h.similarity)).collect();
            fusion::linear(&[(bm25_weight, &a), (dense_weight, &b)])
                .into_iter()
                .map(|(id, s)| (id.clone(), s))
                .collect()
        }
    };
    let mut candidates: Vec<Candidate> = Vec::with_capacity(order.len());
    let mut by_id: HashMap<DocId, usize> = HashMap::with_capacity(order.len());
    for (rank, (id, score)) in order.into_iter().enumerate() {
        let mut c = Candidate::new(id.clone());
        c.score = score;
        c.scores.fused = Some(FusedScore { score, rank: rank as u32 + 1, method: method.name().into() });
        by_id.insert(id, candidates.len());
        candidates.push(c);
    }
    // every id of either list is in the fused order, so each finds its candidate
    for h in bm25 {
        if let Some(&i) = by_id.get(&h.id) {
            candidates[i].scores.bm25 = h.scores.bm25;
        }
    }
    for h in dense {
        if let Some(&i) = by_id.get(&h.id) {
            candidates[i].scores.dense = Some(DenseScore { similarity: h.similarity, rank: h.rank });
        }
    }
    candidates
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::response::Bm25Report;
    use crate::stages::recall::{Bm25Leg, DenseLeg};
    use sieve_core::Bm25Score;
    use sieve_vector::SearchStrategy;

    fn id(s: &str) -> DocId {
        DocId::parse(s, 64).unwrap()
    }

    fn bm25(ids: &[(&str, f32)]) -> Bm25Leg {
        let hits = ids
            .iter()
            .enumerate()
            .map(|(i, (d, s))| Hit {
                id: id(d),
                rank: i as u32 + 1,
                score: *s,
                scores: ScoreBreakdown {
                    bm25: Some(Bm25Score { score: *s, rank: i as u32 + 1, fields: Default::default() }),
                    ..Default::default()
                },
                document: None,
            })
            .collect();
        Bm25Leg { hits, report: Bm25Report::default() }
    }

    fn dense(ids: &[(&str, f32)]) -> DenseLeg {
        let hits = ids
            .iter()
            .enumerate()
            .map(|(i, (d, s))| VectorHit { id: id(d), slot: i as u64, similarity: *s, rank: i as u32 + 1 })
            .collect();
        DenseLeg {
            hits,
            matches: Vec::new(),
            strategy: SearchStrategy::Exact { scanned: ids.len() },
            candidates: ids.len(),
        }
    }

    fn recall(b: Option<Bm25Leg>, d: Option<DenseLeg>) -> Recall {
        Recall {
            bm25: b,
            dense: d,
            codes: vec![],
            reasons: vec![],
            notes: vec![],
            timings: vec![],
            started: Instant::now(),
        }
    }

    #[test]
    fn both_legs_merge_in_rrf_order_with_each_legs_evidence() {
        let r = fuse(
            recall(Some(bm25(&[("a", 9.0), ("b", 5.0)])), Some(dense(&[("b", 0.9), ("c", 0.8)]))),
            Fusion::default(),
        );
        let ids: Vec<&str> = r.candidates.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["b", "a", "c"], "b is in both lists");
        let b = &r.candidates[0];
        assert!((b.score - (1.0 / 62.0 + 1.0 / 61.0)).abs() < 1e-7);
        assert_eq!(b.scores.fused.as_ref().map(|f| (f.rank, f.method.as_str())), Some((1, "rrf")));
        assert_eq!(b.scores.bm25.as_ref().map(|s| s.rank), Some(2));
        assert_eq!(b.scores.dense.as_ref().map(|s| s.rank), Some(1));
        assert!(r.candidates[2].scores.bm25.is_none() && r.candidates[2].scores.dense.is_some());
        assert!(r.timings.iter().any(|t| t.stage == "fuse"));
    }

    #[test]
    fn one_leg_keeps_its_own_order_and_scores_without_a_fused_score() {
        let r = fuse(recall(Some(bm25(&[("a", 9.0), ("b", 5.0)])), None), Fusion::default());
        assert_eq!(r.candidates.iter().map(|c| c.score).collect::<Vec<_>>(), [9.0, 5.0]);
        assert!(r.candidates.iter().all(|c| c.scores.fused.is_none()));
        assert!(r.timings.is_empty(), "no fuse timing when nothing was fused");
        let r = fuse(recall(None, Some(dense(&[("c", 0.7)]))), Fusion::default());
        assert_eq!(r.candidates[0].score, 0.7);
        assert!(r.dense.is_some() && r.bm25.is_none());
    }

    #[test]
    fn linear_fusion_normalises_each_leg() {
        let method = Fusion::Linear { bm25_weight: 0.5, dense_weight: 0.5 };
        let r = fuse(recall(Some(bm25(&[("a", 10.0), ("b", 0.0)])), Some(dense(&[("b", 1.0), ("a", 0.0)]))), method);
        assert!(r.candidates.iter().all(|c| (c.score - 0.5).abs() < 1e-6), "each gets 0.5 from one leg");
        assert_eq!(r.candidates[0].scores.fused.as_ref().unwrap().method, "linear");
    }
}
