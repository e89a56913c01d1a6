//! Diversification of a scored list: maximal marginal relevance (Carbonell & Goldstein, "The Use of MMR,
//! Diversity-Based Reranking for Reordering Documents and Producing Summaries", SIGIR 1998) with a per-source
//! cap.
//!
//! Greedy: at each step, among the items not yet picked whose source has not reached `max_per_source` in this
//! page, pick the one maximising
//!
//! `(1 − diversity) · score(d) − diversity · max_{p ∈ picked} sim(d, p)`
//!
//! where `score` is the **final feed score** (relevance × freshness, in 0..1), not the query-vector
//! similarity that MMR implementations usually take, and `sim` is document–document similarity in 0..1.
//! `diversity` 0 is the score order; 1 picks by novelty alone. Ties go to the earlier item (the input order).
//! Items held back by the cap are not lost: they come after the page, in score order, for the next one.
//! An item picked while the cap held back an item of higher value is marked `promoted`: the cap put it there.

/// One pick: the input index, the MMR penalty it carried (`diversity · max sim` to what was picked before it),
/// and what the source cap did to it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Picked {
    pub index: usize,
    pub penalty: f64,
    /// Picked while the cap held back an item of higher value (of a source that had reached the cap).
    pub promoted: bool,
    /// Held back by its source's cap (so it comes after the page).
    pub held_back: bool,
    /// On the page; false for the items after it (a page is short when the cap leaves no source to take).
    pub on_page: bool,
}

/// The picks for a page of `page` items of `scores` (input order: best first), then the rest in their input
/// order. The page is shorter when the cap leaves no source to take from.
/// `source(i)` names item i's source; `sim(i, j)` is their similarity in 0..=1.
pub fn diversify(
    scores: &[f64],
    page: usize,
    diversity: f64,
    max_per_source: Option<usize>,
    source: impl Fn(usize) -> Option<String>,
    sim: impl Fn(usize, usize) -> f64,
) -> Vec<Picked> {
    let n = scores.len();
    let diversity = diversity.clamp(0.0, 1.0);
    let mut taken = vec![false; n];
    let mut capped = vec![false; n];
    // the largest similarity of each item to anything picked so far
    let mut nearest = vec![0.0f64; n];
    let mut per_source: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut out = Vec::with_capacity(n);
    while out.len() < page.min(n) {
        let mut best: Option<(usize, f64)> = None;
        let mut best_held = f64::NEG_INFINITY;
        for i in 0..n {
            if taken[i] {
                continue;
            }
            let value = (1.0 - diversity) * scores[i] - diversity * nearest[i];
            if let (Some(cap), Some(s)) = (max_per_source, source(i)) {
                if per_source.get(&s).copied().unwrap_or(0) >= cap {
                    capped[i] = true;
                    best_held = best_held.max(value);
                    continue;
                }
            }
            if best.is_none_or(|(_, v)| value > v) {
                best = Some((i, value));
            }
        }
        let Some((i, value)) = best else { break };
        taken[i] = true;
        out.push(Picked {
            index: i,
            penalty: diversity * nearest[i],
            promoted: best_held > value,
            held_back: false,
            on_page: true,
        });
        if let Some(s) = source(i) {
            *per_source.entry(s).or_default() += 1;
        }
        for j in 0..n {
            if !taken[j] {
                nearest[j] = nearest[j].max(sim(i, j).clamp(0.0, 1.0));
            }
        }
    }
    for i in 0..n {
        if !taken[i] {
            out.push(Picked { index: i, penalty: 0.0, promoted: false, held_back: capped[i], on_page: false });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(p: &[Picked]) -> Vec<usize> {
        p.iter().map(|p| p.index).collect()
    }

    #[test]
    fn no_diversity_and_no_cap_keep_the_score_order() {
        let p = diversify(&[0.9, 0.8, 0.7], 3, 0.0, None, |_| None, |_, _| 1.0);
        assert_eq!(order(&p), [0, 1, 2]);
        assert!(p.iter().all(|p| p.penalty == 0.0 && !p.promoted && !p.held_back));
    }

    #[test]
    fn mmr_passes_over_a_near_copy_of_what_was_picked() {
        // 0 and 1 are near copies (0.95), 2 is different and a little less relevant
        let sim = |a: usize, b: usize| if a.min(b) == 0 && a.max(b) == 1 { 0.95 } else { 0.1 };
        let p = diversify(&[0.9, 0.88, 0.8], 3, 0.5, None, |_| None, sim);
        assert_eq!(order(&p), [0, 2, 1]);
        // 1's value: 0.5·0.88 − 0.5·0.95 = −0.035 against 2's 0.5·0.8 − 0.5·0.1 = 0.35
        assert!((p[2].penalty - 0.475).abs() < 1e-12, "{:?}", p[2]);
    }

    #[test]
    fn the_source_cap_holds_per_page_and_nothing_is_lost() {
        let sources = ["a", "a", "a", "b", "c"];
        let p = diversify(&[0.9, 0.8, 0.7, 0.6, 0.5], 4, 0.0, Some(2), |i| Some(sources[i].to_owned()), |_, _| 0.0);
        assert_eq!(order(&p), [0, 1, 3, 4, 2], "the third `a` waits past the page");
        assert!(p[4].held_back && !p[0].held_back);
        assert_eq!(p.iter().map(|p| p.on_page).collect::<Vec<_>>(), [true, true, true, true, false]);
        // 3 (b) and 4 (c) took the third and fourth places because the cap held back 2 (a), of higher score
        assert!(p[2].promoted && p[3].promoted && !p[1].promoted, "{p:?}");
        // with every source at its cap the page ends short: the second `b` is not put on it
        let p = diversify(&[0.9, 0.8, 0.7], 3, 0.0, Some(1), |i| Some(["a", "b", "b"][i].to_owned()), |_, _| 0.0);
        assert_eq!(p.iter().filter(|p| p.on_page).map(|p| p.index).collect::<Vec<_>>(), [0, 1]);
        assert!(p[2].held_back && !p[2].on_page);
    }
}
