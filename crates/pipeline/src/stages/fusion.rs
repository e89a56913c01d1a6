//! Fusion of ranked lists: pure functions, no engine types.
//!
//! Both functions take lists in rank order (best first) and return one list sorted by fused score, best
//! first. Ties are broken by the best rank the item reached in any list, then by the list order (earlier
//! lists first), then by position, so the output is deterministic.

use std::collections::HashMap;
use std::hash::Hash;

/// Weighted reciprocal rank fusion (Cormack, Clarke & Büttcher, "Reciprocal Rank Fusion outperforms
/// Condorcet and individual Rank Learning Methods", SIGIR 2009):
///
/// `score(d) = Σ_i w_i / (k + rank_i(d))`, ranks 1-based, summed over the lists that contain `d`.
///
/// `k` (60 in the paper and in Elasticsearch, OpenSearch and Qdrant) damps the weight of the very top ranks.
/// Only ranks matter, so the legs' incomparable score scales (BM25's unbounded sums, cosine similarities)
/// need no calibration.
pub fn rrf<K: Clone + Eq + Hash>(lists: &[(f32, &[K])], k: f32) -> Vec<(K, f32)> {
    let mut acc = Accumulator::default();
    for (list_index, (weight, items)) in lists.iter().enumerate() {
        for (pos, item) in items.iter().enumerate() {
            acc.add(item, weight / (k + pos as f32 + 1.0), list_index, pos);
        }
    }
    acc.finish()
}

/// Normalised linear combination (the "convex combination" of Bruch, Gai & Ingber, "An Analysis of Fusion
/// Functions for Hybrid Retrieval", TOIS 2023):
///
/// `score(d) = Σ_i w_i · (s_i(d) − min_i) / (max_i − min_i)`, with min/max taken over list `i`; a list whose
/// scores are all equal maps them to 1; a document missing from a list gets 0 from it.
///
/// Unlike RRF it keeps how far apart the scores are, at the price of depending on each list's score range.
pub fn linear<K: Clone + Eq + Hash>(lists: &[(f32, &[(K, f32)])]) -> Vec<(K, f32)> {
    let mut acc = Accumulator::default();
    for (list_index, (weight, items)) in lists.iter().enumerate() {
        let (lo, hi) =
            items.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), (_, s)| (lo.min(*s), hi.max(*s)));
        for (pos, (item, s)) in items.iter().enumerate() {
            let norm = if hi > lo { (s - lo) / (hi - lo) } else { 1.0 };
            acc.add(item, weight * norm, list_index, pos);
        }
    }
    acc.finish()
}

/// How much to trust the BM25 leg on this query, in 0..=1: the mean of how far its top score stands above its
/// 10th (`(s_1 − s_10) / s_1`, with `s_10 = 0` when it matched fewer than 10 documents: a selective match)
/// and the share of query words it matched as written (not only through a typo correction). 0.5 is neutral.
pub fn bm25_confidence(scores: &[f32], words: usize, corrected: usize) -> f32 {
    let gap = match scores.first() {
        Some(&top) if top > 0.0 => (top - scores.get(9).copied().unwrap_or(0.0)).max(0.0) / top,
        _ => 0.0,
    };
    let exact = if words == 0 { 0.0 } else { 1.0 - corrected.min(words) as f32 / words as f32 };
    0.5 * gap + 0.5 * exact
}

/// Weights adapted to one query's evidence: `(w_bm25 · m, w_dense / m)` with `m = exp(strength · (2c − 1))`,
/// `c` from [`bm25_confidence`]. A confident lexical match (a clear winner, every word found) leans on BM25, a
/// flat or corrected one on the dense leg; `strength` 0 leaves the weights as they are. Sieve's own rule (a
/// log-linear shift of the legs' weights by a confidence signal, in the spirit of query-performance-prediction
/// weighting in hybrid retrieval); `sieve tune` chooses `strength` by cross-validation, 0 included.
pub fn adapt_weights(bm25_weight: f32, dense_weight: f32, confidence: f32, strength: f32) -> (f32, f32) {
    let m = (strength * (2.0 * confidence.clamp(0.0, 1.0) - 1.0)).exp();
    (bm25_weight * m, dense_weight / m)
}

/// Sums contributions per item and remembers the best (position, list) seen, for tie-breaking.
struct Accumulator<K> {
    items: Vec<(K, f32, (usize, usize))>,
    index: HashMap<K, usize>,
}

impl<K> Default for Accumulator<K> {
    fn default() -> Self {
        Accumulator { items: Vec::new(), index: HashMap::new() }
    }
}

impl<K: Clone + Eq + Hash> Accumulator<K> {
    fn add(&mut self, item: &K, contribution: f32, list: usize, pos: usize) {
        match self.index.get(item) {
            Some(&i) => {
                let entry = &mut self.items[i];
                entry.1 += contribution;
                entry.2 = entry.2.min((pos, list));
            }
            None => {
                self.index.insert(item.clone(), self.items.len());
                self.items.push((item.clone(), contribution, (pos, list)));
            }
        }
    }

    fn finish(mut self) -> Vec<(K, f32)> {
        self.items.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.2.cmp(&b.2)));
        self.items.into_iter().map(|(k, s, _)| (k, s)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (lists, k, expected fused order with scores)
    type RrfCase<'a> = (Vec<(f32, &'a [&'a str])>, f32, Vec<(&'a str, f32)>);
    /// (lists, expected fused order with scores)
    type LinearCase<'a> = (Vec<(f32, &'a [(&'a str, f32)])>, Vec<(&'a str, f32)>);

    fn close(a: f32, b: f32) -> bool {
        (a - b).abs() < 1e-6
    }

    #[test]
    fn rrf_table() {
        // (lists, k, expected fused order with scores), each score computed by hand
        let bm25 = ["a", "b", "c"];
        let dense = ["c", "a", "d"];
        let cases: Vec<RrfCase> = vec![
            // a: 1/61 + 1/62, c: 1/63 + 1/61, b: 1/62, d: 1/63
            (
                vec![(1.0, &bm25[..]), (1.0, &dense[..])],
                60.0,
                vec![
                    ("a", 1.0 / 61.0 + 1.0 / 62.0),
                    ("c", 1.0 / 63.0 + 1.0 / 61.0),
                    ("b", 1.0 / 62.0),
                    ("d", 1.0 / 63.0),
                ],
            ),
            // weights: dense counts double; c: 1/63 + 2/61 beats a: 1/61 + 2/62
            (
                vec![(1.0, &bm25[..]), (2.0, &dense[..])],
                60.0,
                vec![
                    ("c", 1.0 / 63.0 + 2.0 / 61.0),
                    ("a", 1.0 / 61.0 + 2.0 / 62.0),
                    ("d", 2.0 / 63.0),
                    ("b", 1.0 / 62.0),
                ],
            ),
            // k = 0: plain reciprocal ranks (a: 1/1 + 1/2, c: 1/3 + 1/1)
            (
                vec![(1.0, &bm25[..]), (1.0, &dense[..])],
                0.0,
                vec![("a", 1.0 + 0.5), ("c", 1.0 / 3.0 + 1.0), ("b", 0.5), ("d", 1.0 / 3.0)],
            ),
            // a leg switched off (weight 0) leaves the other's order
            (
                vec![(1.0, &bm25[..]), (0.0, &dense[..])],
                60.0,
                vec![("a", 1.0 / 61.0), ("b", 1.0 / 62.0), ("c", 1.0 / 63.0), ("d", 0.0)],
            ),
            // one list only
            (vec![(1.0, &dense[..])], 60.0, vec![("c", 1.0 / 61.0), ("a", 1.0 / 62.0), ("d", 1.0 / 63.0)]),
            // nothing
            (vec![], 60.0, vec![]),
        ];
        for (i, (lists, k, expected)) in cases.into_iter().enumerate() {
            let got = rrf(&lists, k);
            assert_eq!(got.len(), expected.len(), "case {i}");
            for ((gk, gs), (ek, es)) in got.iter().zip(&expected) {
                assert_eq!(gk, ek, "case {i}: {got:?}");
                assert!(close(*gs, *es), "case {i}: {gk} {gs} vs {es}");
            }
        }
    }

    #[test]
    fn rrf_ties_go_to_the_better_single_rank_then_the_earlier_list() {
        // x is 1st in list 0 and 3rd in list 1; y is 2nd in both: equal sums only if k makes them so; use two
        // lists where items swap places exactly.
        let l0 = ["x", "y"];
        let l1 = ["y", "x"];
        let got = rrf(&[(1.0, &l0[..]), (1.0, &l1[..])], 60.0);
        assert!(close(got[0].1, got[1].1));
        assert_eq!(got[0].0, "x", "both reached rank 1; list 0 comes first");
    }

    #[test]
    fn linear_table() {
        let bm25 = [("a", 12.0), ("b", 8.0), ("c", 2.0)];
        let dense = [("c", 0.9), ("a", 0.5), ("d", 0.4)];
        let cases: Vec<LinearCase> = vec![
            // bm25 norm: a 1, b 0.6, c 0; dense norm: c 1, a 0.2, d 0
            (vec![(0.5, &bm25[..]), (0.5, &dense[..])], vec![("a", 0.6), ("c", 0.5), ("b", 0.3), ("d", 0.0)]),
            (vec![(0.2, &bm25[..]), (0.8, &dense[..])], vec![("c", 0.8), ("a", 0.36), ("b", 0.12), ("d", 0.0)]),
            // equal scores map to 1
            (vec![(1.0, &[("p", 3.0), ("q", 3.0)][..])], vec![("p", 1.0), ("q", 1.0)]),
        ];
        for (i, (lists, expected)) in cases.into_iter().enumerate() {
            let got = linear(&lists);
            for ((gk, gs), (ek, es)) in got.iter().zip(&expected) {
                assert_eq!(gk, ek, "case {i}: {got:?}");
                assert!(close(*gs, *es), "case {i}: {gk} {gs} vs {es}");
            }
        }
    }

    #[test]
    fn weights_lean_on_bm25_when_it_is_confident_and_on_dense_when_it_is_not() {
        // a clear winner and every word found: confidence near 1
        let sure = bm25_confidence(&[10.0, 2.0, 1.0], 2, 0);
        assert!((sure - 1.0).abs() < 1e-6, "{sure}");
        // ten flat scores and one of two words only through a correction
        let flat = [5.0; 12];
        let unsure = bm25_confidence(&flat, 2, 1);
        assert!((unsure - 0.25).abs() < 1e-6, "{unsure}");
        assert_eq!(bm25_confidence(&[], 0, 0), 0.0);
        let (b, d) = adapt_weights(1.0, 1.0, sure, 1.0);
        assert!(b > 2.7 && d < 0.37, "{b} {d}");
        let (b, d) = adapt_weights(1.0, 1.0, unsure, 1.0);
        assert!(b < 1.0 && d > 1.0);
        assert_eq!(adapt_weights(0.6, 0.4, unsure, 0.0), (0.6, 0.4), "strength 0 changes nothing");
        assert_eq!(adapt_weights(0.6, 0.4, 0.5, 3.0), (0.6, 0.4), "neutral evidence changes nothing");
    }
}
