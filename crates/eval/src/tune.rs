//! Choosing settings on labelled queries without fooling oneself: k-fold cross-validation over a grid of
//! candidate settings, as pure functions of a score table (`scores[setting][query]`, e.g. each query's
//! nDCG@10 under each fusion setting).
//!
//! For each fold, the setting with the best mean over the *other* folds' queries is chosen, and scored on the
//! fold's own queries, which played no part in choosing it. The mean of those held-out scores, over all
//! queries, estimates what choosing by this procedure gives on queries not seen (Hastie, Tibshirani &
//! Friedman, *The Elements of Statistical Learning*, 2nd ed., §7.10). The in-sample figure (the best
//! setting's mean over every query) is optimistic and reported beside it, never instead of it.

/// The folds of `n` queries: query `i` goes to fold `order[i] % k`, where `order` ranks the queries by a
/// hash of their ids (`keys`), so folds are deterministic, independent of file order, and of near-equal size.
pub fn folds(keys: &[&str], k: usize) -> Vec<usize> {
    let k = k.max(1);
    let mut idx: Vec<usize> = (0..keys.len()).collect();
    idx.sort_by_key(|&i| (fnv1a(keys[i]), i));
    let mut out = vec![0; keys.len()];
    for (rank, &i) in idx.iter().enumerate() {
        out[i] = rank % k;
    }
    out
}

fn fnv1a(s: &str) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in s.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// The setting with the best mean over the queries `include` admits; ties go to the lower index (list the
/// default, then simpler settings, first).
pub fn best(scores: &[Vec<f64>], include: impl Fn(usize) -> bool) -> Option<(usize, f64)> {
    let mut out: Option<(usize, f64)> = None;
    for (s, row) in scores.iter().enumerate() {
        let (sum, n) =
            row.iter().enumerate().filter(|(q, _)| include(*q)).fold((0.0, 0usize), |a, (_, v)| (a.0 + v, a.1 + 1));
        if n == 0 {
            continue;
        }
        let mean = sum / n as f64;
        if out.is_none_or(|(_, m)| mean > m + 1e-12) {
            out = Some((s, mean));
        }
    }
    out
}

/// What [`cross_validate`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct CrossValidation {
    /// Mean over every query of its score under the setting chosen without its fold.
    pub estimate: f64,
    /// The setting each fold chose (by the other folds' queries).
    pub chosen_per_fold: Vec<usize>,
    /// The setting chosen on every query, and its (in-sample) mean.
    pub chosen: usize,
    pub in_sample: f64,
}

/// k-fold cross-validation of "choose the best setting" over `scores[setting][query]`, with the queries'
/// folds from [`folds`]. Needs at least one setting and one query.
pub fn cross_validate(scores: &[Vec<f64>], fold_of: &[usize], k: usize) -> CrossValidation {
    let n = fold_of.len();
    let mut held_out = vec![0.0; n];
    let mut chosen_per_fold = Vec::with_capacity(k);
    for f in 0..k {
        let Some((s, _)) = best(scores, |q| fold_of[q] != f) else {
            chosen_per_fold.push(0);
            continue;
        };
        chosen_per_fold.push(s);
        for q in (0..n).filter(|&q| fold_of[q] == f) {
            held_out[q] = scores[s][q];
        }
    }
    let (chosen, in_sample) = best(scores, |_| true).expect("at least one setting and one query");
    CrossValidation { estimate: held_out.iter().sum::<f64>() / n.max(1) as f64, chosen_per_fold, chosen, in_sample }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_are_balanced_and_do_not_depend_on_order() {
        let keys: Vec<String> = (0..103).map(|i| format!("q{i}")).collect();
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let f = folds(&refs, 5);
        for fold in 0..5 {
            let n = f.iter().filter(|&&x| x == fold).count();
            assert!(n == 20 || n == 21, "fold {fold} has {n}");
        }
        let mut rev = refs.clone();
        rev.reverse();
        let g = folds(&rev, 5);
        for (i, k) in refs.iter().enumerate() {
            assert_eq!(f[i], g[rev.iter().position(|r| r == k).unwrap()], "a query keeps its fold");
        }
    }

    #[test]
    fn the_estimate_scores_each_fold_with_a_setting_chosen_without_it() {
        // setting 1 is better on folds 0 and 1, setting 0 on fold 2; four queries, folds [0, 1, 2, 2]
        let scores = vec![vec![0.5, 0.5, 0.9, 0.9], vec![0.8, 0.8, 0.1, 0.1]];
        let fold_of = [0, 1, 2, 2];
        let cv = cross_validate(&scores, &fold_of, 3);
        // fold 0 (q0) chosen on q1..q3: setting 0 (mean 0.767 vs 0.333) → 0.5
        // fold 1 (q1) likewise → 0.5; fold 2 (q2, q3) chosen on q0, q1: setting 1 → 0.1 each
        assert_eq!(cv.chosen_per_fold, [0, 0, 1]);
        assert!((cv.estimate - (0.5 + 0.5 + 0.1 + 0.1) / 4.0).abs() < 1e-12);
        assert_eq!(cv.chosen, 0);
        assert!((cv.in_sample - 0.7).abs() < 1e-12, "{}", cv.in_sample);
        assert!(cv.estimate < cv.in_sample, "choosing on the same queries is optimistic");
    }

    #[test]
    fn ties_go_to_the_first_setting() {
        let scores = vec![vec![0.5, 0.5], vec![0.5, 0.5]];
        assert_eq!(best(&scores, |_| true), Some((0, 0.5)));
    }
}
