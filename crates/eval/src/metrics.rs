//! Ranking metrics, as pure functions of a ranked list of ids and the graded judgments of one query.
//!
//! Conventions (those of the baselines in `shared/data/README.md`, trec_eval and BEIR):
//! - a document's gain is its grade; unjudged documents have grade 0; relevant means grade > 0;
//! - DCG@k = Σ_{i=1..k} gain_i / log2(i + 1) (linear gain, Järvelin & Kekäläinen 2002);
//!   nDCG@k = DCG@k / IDCG@k, where IDCG sorts *all* judged grades of the query descending;
//! - MRR@k = 1 / rank of the first relevant document within the top k, else 0;
//! - Recall@k = relevant documents in the top k / all relevant documents.
//! - overlap@k = |top k of A ∩ top k of B| / k;
//! - RBO (rank-biased overlap, Webber, Moffat & Zobel 2010, eq. 32, "RBO_ext" for two lists seen to the same
//!   depth k): RBO = (X_k/k)·p^k + ((1−p)/p)·Σ_{d=1..k} (X_d/d)·p^d, where X_d is the overlap of the two
//!   top-d prefixes; p = 0.9 weighs the top 10 at about 86%.
//! - Queries with no relevant judgment are skipped by the caller (all metrics would be undefined or 0).
//!
//! The ranked list is taken as given: ties in score must already be broken by the engine, deterministically.

use std::collections::HashMap;

/// Graded judgments of one query: doc id → grade.
pub type Judgments = HashMap<String, u32>;

fn gain(judged: &Judgments, id: &str) -> f64 {
    judged.get(id).copied().unwrap_or(0) as f64
}

fn discount(rank_1_based: usize) -> f64 {
    ((rank_1_based + 1) as f64).log2()
}

/// The share of the first `k` ids two rankings have in common (overlap@k): |A@k ∩ B@k| / d, with
/// d = min(k, the longer list's length), so two identical lists shorter than `k` overlap fully.
pub fn overlap_at_k(a: &[&str], b: &[&str], k: usize) -> f64 {
    let d = k.min(a.len().max(b.len()));
    if d == 0 {
        return if k == 0 { 0.0 } else { 1.0 };
    }
    let top_b: std::collections::HashSet<&str> = b.iter().take(k).copied().collect();
    a.iter().take(k).filter(|id| top_b.contains(*id)).count() as f64 / d as f64
}

/// Rank-biased overlap of two rankings seen to the same depth (the shorter one's length), extrapolated
/// (`RBO_ext`); 1 for identical lists, 0 for disjoint ones. `p` in (0, 1): the persistence.
pub fn rbo(a: &[&str], b: &[&str], p: f64) -> f64 {
    let k = a.len().min(b.len());
    if k == 0 || !(p > 0.0 && p < 1.0) {
        return if a.is_empty() && b.is_empty() { 1.0 } else { 0.0 };
    }
    let (mut seen_a, mut seen_b) = (std::collections::HashSet::new(), std::collections::HashSet::new());
    let (mut overlap, mut sum, mut weight) = (0usize, 0.0, 1.0);
    for d in 1..=k {
        let (x, y) = (a[d - 1], b[d - 1]);
        if x == y {
            overlap += 1;
        } else {
            overlap += usize::from(seen_b.contains(x)) + usize::from(seen_a.contains(y));
        }
        seen_a.insert(x);
        seen_b.insert(y);
        weight *= p;
        sum += overlap as f64 / d as f64 * weight;
    }
    overlap as f64 / k as f64 * weight + (1.0 - p) / p * sum
}

/// DCG of the first `k` ids.
pub fn dcg_at_k(ranked: &[&str], judged: &Judgments, k: usize) -> f64 {
    ranked.iter().take(k).enumerate().map(|(i, id)| gain(judged, id) / discount(i + 1)).sum()
}

/// nDCG@k; 0 when the query has no relevant document.
pub fn ndcg_at_k(ranked: &[&str], judged: &Judgments, k: usize) -> f64 {
    let mut ideal: Vec<u32> = judged.values().copied().filter(|&g| g > 0).collect();
    ideal.sort_unstable_by(|a, b| b.cmp(a));
    let idcg: f64 = ideal.iter().take(k).enumerate().map(|(i, &g)| g as f64 / discount(i + 1)).sum();
    if idcg == 0.0 {
        0.0
    } else {
        dcg_at_k(ranked, judged, k) / idcg
    }
}

/// Reciprocal rank of the first relevant id within the top `k`.
pub fn mrr_at_k(ranked: &[&str], judged: &Judgments, k: usize) -> f64 {
    ranked.iter().take(k).position(|id| gain(judged, id) > 0.0).map_or(0.0, |i| 1.0 / (i + 1) as f64)
}

/// Fraction of the relevant ids found in the top `k`; 0 when there are none.
pub fn recall_at_k(ranked: &[&str], judged: &Judgments, k: usize) -> f64 {
    let relevant = judged.values().filter(|&&g| g > 0).count();
    if relevant == 0 {
        return 0.0;
    }
    let found = ranked.iter().take(k).filter(|id| gain(judged, id) > 0.0).count();
    found as f64 / relevant as f64
}

/// α-nDCG@k (Clarke et al., "Novelty and Diversity in Information Retrieval Evaluation", SIGIR 2008) for
/// documents that each cover one subtopic: `subtopic` maps every relevant id to its subtopic (for the feed: its
/// story); others gain nothing. The document at rank i gains `(1 − α)^c`, c being the documents above it that
/// cover its subtopic, discounted by log2(i + 1); the ideal list takes one document of each subtopic before a
/// second of any (greedy, exact when each document covers one subtopic). 0 when nothing is relevant.
pub fn alpha_ndcg_at_k(ranked: &[&str], subtopic: &HashMap<String, String>, alpha: f64, k: usize) -> f64 {
    let mut seen: HashMap<&str, i32> = HashMap::new();
    let mut dcg = 0.0;
    for (i, id) in ranked.iter().take(k).enumerate() {
        if let Some(s) = subtopic.get(*id) {
            let c = seen.entry(s.as_str()).or_default();
            dcg += (1.0 - alpha).powi(*c) / discount(i + 1);
            *c += 1;
        }
    }
    let mut sizes: HashMap<&str, usize> = HashMap::new();
    for s in subtopic.values() {
        *sizes.entry(s.as_str()).or_default() += 1;
    }
    let sizes: Vec<usize> = sizes.into_values().collect();
    let mut ideal = 0.0;
    let mut round = 0;
    let mut rank = 0;
    while rank < k && sizes.iter().any(|&n| n > round) {
        let here = sizes.iter().filter(|&&n| n > round).count();
        for _ in 0..here {
            if rank == k {
                break;
            }
            rank += 1;
            ideal += (1.0 - alpha).powi(round as i32) / discount(rank);
        }
        round += 1;
    }
    if ideal == 0.0 {
        0.0
    } else {
        dcg / ideal
    }
}

/// The `q`-quantile (0..=1) of `values` by the nearest-rank method; `None` when empty.
pub fn percentile(values: &[f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = (q.clamp(0.0, 1.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    Some(sorted[rank - 1])
}

#[cfg(test)]
mod alpha_tests {
    use super::*;

    #[test]
    fn alpha_ndcg_rewards_covering_new_stories_first() {
        // stories: a (a1, a2), b (b1); α = 0.5
        let sub: HashMap<String, String> =
            [("a1", "a"), ("a2", "a"), ("b1", "b")].iter().map(|(d, s)| (d.to_string(), s.to_string())).collect();
        // ideal: a1, b1, a2 → 1/log2 2 + 1/log2 3 + 0.5/log2 4 = 1 + 0.63093 + 0.25
        let ideal = 1.0 + 1.0 / 3f64.log2() + 0.25;
        let diverse = alpha_ndcg_at_k(&["a1", "b1", "a2"], &sub, 0.5, 10);
        assert!((diverse - 1.0).abs() < 1e-12);
        // a1, a2, b1: 1 + 0.5/log2 3 + 1/log2 4
        let repeated = alpha_ndcg_at_k(&["a1", "a2", "b1"], &sub, 0.5, 10);
        assert!((repeated - (1.0 + 0.5 / 3f64.log2() + 0.5) / ideal).abs() < 1e-12, "{repeated}");
        assert!(repeated < diverse);
        // cut at k, unjudged documents gain nothing, nothing relevant gives 0
        assert!((alpha_ndcg_at_k(&["x", "a1"], &sub, 0.5, 1)).abs() < 1e-12);
        assert_eq!(alpha_ndcg_at_k(&["a1"], &HashMap::new(), 0.5, 10), 0.0);
        // α = 0 is plain nDCG with binary gains
        let plain = alpha_ndcg_at_k(&["a1", "a2", "b1"], &sub, 0.0, 10);
        assert!((plain - 1.0).abs() < 1e-12);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judged(pairs: &[(&str, u32)]) -> Judgments {
        pairs.iter().map(|(id, g)| (id.to_string(), *g)).collect()
    }

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-9, "{a} != {b}");
    }

    #[test]
    fn binary_single_relevant() {
        let j = judged(&[("d1", 1)]);
        close(ndcg_at_k(&["d1", "x", "y"], &j, 10), 1.0);
        // at rank 3: 1/log2(4) = 0.5
        close(ndcg_at_k(&["x", "y", "d1"], &j, 10), 0.5);
        close(mrr_at_k(&["x", "y", "d1"], &j, 10), 1.0 / 3.0);
        close(recall_at_k(&["x", "y", "d1"], &j, 2), 0.0);
        close(recall_at_k(&["x", "y", "d1"], &j, 3), 1.0);
        // beyond k counts for nothing
        close(ndcg_at_k(&["x", "y", "d1"], &j, 2), 0.0);
    }

    #[test]
    fn graded_gains() {
        // grades a=3, b=2, c=1; ranking c, a, x, b
        let j = judged(&[("a", 3), ("b", 2), ("c", 1)]);
        let dcg = 1.0 / 1.0 + 3.0 / 3f64.log2() + 0.0 + 2.0 / 5f64.log2();
        let idcg = 3.0 + 2.0 / 3f64.log2() + 1.0 / 2.0;
        close(dcg_at_k(&["c", "a", "x", "b"], &j, 10), dcg);
        close(ndcg_at_k(&["c", "a", "x", "b"], &j, 10), dcg / idcg);
        close(ndcg_at_k(&["a", "b", "c"], &j, 10), 1.0);
        close(recall_at_k(&["c", "a", "x", "b"], &j, 2), 2.0 / 3.0);
    }

    #[test]
    fn unjudged_and_judged_nonrelevant_documents_gain_nothing() {
        // grade 0 judgments (LCSTS labels 1-2) behave like unjudged ones, and don't enter the ideal.
        let j = judged(&[("rel", 2), ("bad", 0)]);
        close(ndcg_at_k(&["bad", "rel"], &j, 10), (2.0 / 3f64.log2()) / 2.0);
        close(mrr_at_k(&["bad", "unjudged", "rel"], &j, 10), 1.0 / 3.0);
        close(recall_at_k(&["bad"], &j, 10), 0.0);
    }

    #[test]
    fn ties_in_grades_have_one_ideal() {
        // two documents of equal grade: either order is ideal
        let j = judged(&[("a", 1), ("b", 1)]);
        close(ndcg_at_k(&["a", "b"], &j, 10), 1.0);
        close(ndcg_at_k(&["b", "a"], &j, 10), 1.0);
        // only one of them found, at rank 1: DCG 1, IDCG 1 + 1/log2(3)
        close(ndcg_at_k(&["b", "x"], &j, 10), 1.0 / (1.0 + 1.0 / 3f64.log2()));
        close(recall_at_k(&["b", "x"], &j, 10), 0.5);
    }

    #[test]
    fn no_relevant_document_gives_zero_not_nan() {
        let j = judged(&[("a", 0)]);
        close(ndcg_at_k(&["a"], &j, 10), 0.0);
        close(recall_at_k(&["a"], &j, 10), 0.0);
        close(ndcg_at_k(&[], &judged(&[("a", 1)]), 10), 0.0);
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), Some(50.0));
        assert_eq!(percentile(&v, 0.99), Some(99.0));
        assert_eq!(percentile(&v, 1.0), Some(100.0));
        assert_eq!(percentile(&[7.0], 0.5), Some(7.0));
        assert_eq!(percentile(&[], 0.5), None);
    }

    #[test]
    fn overlap_and_rbo_agree_with_hand_worked_lists() {
        let a = ["a", "b", "c", "d"];
        assert_eq!(overlap_at_k(&a, &["d", "c", "x", "y"], 4), 0.5);
        // short lists count against the longer one's length, not k
        assert_eq!(overlap_at_k(&["a", "b"], &["b", "a"], 10), 1.0);
        assert_eq!(overlap_at_k(&["a", "b"], &["a", "b", "c", "d"], 10), 0.5);
        assert!((rbo(&a, &a, 0.9) - 1.0).abs() < 1e-12);
        assert_eq!(rbo(&a, &["w", "x", "y", "z"], 0.9), 0.0);
        // two lists of depth 2, swapped: X_1 = 0, X_2 = 2 → (2/2)·p² + ((1−p)/p)·(0 + 1·p²) = p² + (1−p)·p
        let p: f64 = 0.9;
        assert!((rbo(&["a", "b"], &["b", "a"], p) - (p * p + (1.0 - p) * p)).abs() < 1e-12);
        // a change at the top costs more than the same change at the bottom
        let top = rbo(&a, &["x", "b", "c", "d"], 0.9);
        let bottom = rbo(&a, &["a", "b", "c", "x"], 0.9);
        assert!(top < bottom && bottom < 1.0, "{top} {bottom}");
    }
}
