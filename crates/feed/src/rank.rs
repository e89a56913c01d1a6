//! The feed's own ranking, after the pipeline's recall, fusion and reranking: freshness, near-duplicate
//! clusters, then diversification with a per-source cap, over plain numbers.
//!
//! For each candidate `d`:
//!
//! - `relevance(d)` in 0..1 ([`relevance`]): the cross-encoder's probability when it scored `d`; otherwise the
//!   fused score min-max normalised over the candidates (scaled below the lowest probability when a window was
//!   reranked, so the reranked window keeps its place in front, as in a search);
//! - `freshness(d) = decay(|published_at(d) − origin|)` ([`crate::decay`]; 1 without a decay or a date, as
//!   Elasticsearch's decay functions give a document that lacks the field);
//! - `score(d) = relevance(d) · freshness(d)`: Elasticsearch's `boost_mode: multiply`, applied after fusion and
//!   reranking, never inside RRF (a rank fusion has no scale a factor could act on).
//!
//! Then the candidates collapse into clusters ([`crate::cluster`]); a cluster's representative is its
//! best-scored member (ties: the newer), its key the member stored first (the original post), which does not
//! change between pages. Clusters with a member shown on an earlier page are left out. The rest are ordered by
//! their representative's score (ties: the newer, then the earlier candidate) and diversified
//! ([`crate::diversify`]): MMR over that score with document–document similarity ([`crate::cluster::similarity`])
//! and the per-source cap.

use crate::cluster::{components, duplicate_pairs, similarity, Thresholds};
use crate::decay::Decay;
use crate::diversify::diversify;
use crate::signature::Signature;

/// One candidate, as the index and the pipeline know it.
#[derive(Debug, Clone, Copy, Default)]
pub struct FeedCandidate<'a> {
    /// In 0..=1 (see [`relevance`]).
    pub relevance: f64,
    /// Unix seconds.
    pub published_at: Option<i64>,
    /// Ingest sequence number (smaller: stored earlier).
    pub seq: u64,
    pub source: Option<&'a str>,
    pub signature: Option<&'a Signature>,
    /// A unit vector, given only when the embedding model covers the request's language.
    pub vector: Option<&'a [f32]>,
    /// On an earlier page (as an item or a cluster member).
    pub shown: bool,
}

/// How to rank a page.
#[derive(Debug, Clone, Copy)]
pub struct FeedParams {
    /// Unix seconds that ages are measured from.
    pub origin: i64,
    pub decay: Option<Decay>,
    pub collapse: bool,
    /// MMR's trade-off: 0 is pure score, 1 pure novelty.
    pub diversity: f64,
    pub max_per_source: Option<usize>,
    pub limit: usize,
    pub thresholds: Thresholds,
}

/// One item of the page: a cluster (of one, without collapse), as indexes into the candidates.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedItem {
    pub representative: usize,
    /// Every member, the representative first, then by score.
    pub members: Vec<usize>,
    /// The member stored first: the cluster's stable identity.
    pub key: usize,
    pub score: f64,
    pub relevance: f64,
    pub freshness: f64,
    /// MMR's penalty (`diversity · max similarity` to the items before it on the page).
    pub penalty: f64,
    /// It is here because the source cap held back an item of higher value.
    pub promoted: bool,
}

/// A page, and whether another can follow.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedPage {
    pub items: Vec<FeedItem>,
    /// Representatives the source cap kept off this page (they stay for the next ones).
    pub held_back: Vec<usize>,
    /// Clusters not shown yet beyond this page.
    pub remaining: usize,
    /// Clusters among all the candidates (shown ones included).
    pub clusters: usize,
}

/// Relevance in 0..=1 for each candidate (see the module doc): `probability[i]` when the reranker scored it,
/// else `(fused[i] − min) / (max − min)` over all candidates (1 when they are all equal), times the lowest
/// probability when any candidate has one.
pub fn relevance(fused: &[f64], probability: &[Option<f64>]) -> Vec<f64> {
    let (lo, hi) = fused.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &x| (l.min(x), h.max(x)));
    let floor = probability.iter().flatten().copied().fold(f64::INFINITY, f64::min);
    let floor = if floor.is_finite() { floor } else { 1.0 };
    fused
        .iter()
        .enumerate()
        .map(|(i, &f)| match probability.get(i).copied().flatten() {
            Some(p) => p.clamp(0.0, 1.0),
            None => {
                let n = if hi > lo { (f - lo) / (hi - lo) } else { 1.0 };
                n * floor
            }
        })
        .collect()
}

/// The freshness factor of a document published at `published_at` (see the module doc).
pub fn freshness(decay: Option<&Decay>, origin: i64, published_at: Option<i64>) -> f64 {
    match (decay, published_at) {
        (Some(d), Some(t)) => d.factor((t - origin) as f64),
        _ => 1.0,
    }
}

/// Ranks one page (see the module doc).
pub fn rank(candidates: &[FeedCandidate<'_>], params: &FeedParams) -> FeedPage {
    let n = candidates.len();
    let fresh: Vec<f64> =
        candidates.iter().map(|c| freshness(params.decay.as_ref(), params.origin, c.published_at)).collect();
    let score: Vec<f64> = candidates.iter().zip(&fresh).map(|(c, f)| c.relevance * f).collect();
    // better: higher score, then newer, then earlier in the candidate list
    let better = |a: usize, b: usize| {
        score[b].total_cmp(&score[a]).then(candidates[b].published_at.cmp(&candidates[a].published_at)).then(a.cmp(&b))
    };
    let labels = if params.collapse {
        let sigs: Vec<Option<&Signature>> = candidates.iter().map(|c| c.signature).collect();
        let vecs: Vec<Option<&[f32]>> = candidates.iter().map(|c| c.vector).collect();
        components(n, &duplicate_pairs(&sigs, &vecs, params.thresholds))
    } else {
        (0..n).collect()
    };
    let mut groups: std::collections::BTreeMap<usize, Vec<usize>> = std::collections::BTreeMap::new();
    for (i, &label) in labels.iter().enumerate() {
        groups.entry(label).or_default().push(i);
    }
    let clusters = groups.len();
    let mut open: Vec<Vec<usize>> = groups
        .into_values()
        .filter(|members| !members.iter().any(|&m| candidates[m].shown))
        .map(|mut members| {
            members.sort_by(|&a, &b| better(a, b));
            members
        })
        .collect();
    open.sort_by(|a, b| better(a[0], b[0]));
    let reps: Vec<usize> = open.iter().map(|m| m[0]).collect();
    let rep_scores: Vec<f64> = reps.iter().map(|&r| score[r]).collect();
    let picks = diversify(
        &rep_scores,
        params.limit,
        params.diversity,
        params.max_per_source,
        |i| candidates[reps[i]].source.map(str::to_owned),
        |i, j| {
            let (a, b) = (&candidates[reps[i]], &candidates[reps[j]]);
            similarity(a.signature, b.signature, a.vector, b.vector)
        },
    );
    let items: Vec<FeedItem> = picks
        .iter()
        .filter(|p| p.on_page)
        .map(|p| {
            let members = open[p.index].clone();
            let r = members[0];
            let key = *members.iter().min_by_key(|&&m| (candidates[m].seq, m)).expect("a cluster has members");
            FeedItem {
                representative: r,
                members,
                key,
                score: score[r],
                relevance: candidates[r].relevance,
                freshness: fresh[r],
                penalty: p.penalty,
                promoted: p.promoted,
            }
        })
        .collect();
    let held_back = picks.iter().filter(|p| !p.on_page && p.held_back).map(|p| reps[p.index]).collect();
    FeedPage { remaining: open.len() - items.len(), items, held_back, clusters }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decay::DecayShape;

    const HOUR: i64 = 3600;

    fn params(limit: usize) -> FeedParams {
        FeedParams {
            origin: 100 * HOUR,
            decay: Some(Decay::new(DecayShape::Gauss, (24 * HOUR) as f64)),
            collapse: true,
            diversity: 0.0,
            max_per_source: None,
            limit,
            thresholds: Thresholds::default(),
        }
    }

    #[test]
    fn relevance_is_the_probability_else_the_normalised_fused_score_below_it() {
        // | fused | probability | relevance |
        let rows =
            [(0.9, Some(0.8), 0.8), (0.5, None, (0.5 - 0.1) / 0.8 * 0.6), (0.1, None, 0.0), (0.8, Some(0.6), 0.6)];
        let fused: Vec<f64> = rows.iter().map(|r| r.0).collect();
        let prob: Vec<Option<f64>> = rows.iter().map(|r| r.1).collect();
        for (got, row) in relevance(&fused, &prob).iter().zip(rows) {
            assert!((got - row.2).abs() < 1e-12, "{row:?}: {got}");
        }
        assert_eq!(relevance(&[2.0, 1.0, 0.0], &[None, None, None]), [1.0, 0.5, 0.0]);
        assert_eq!(relevance(&[3.0, 3.0], &[]), [1.0, 1.0], "all equal");
    }

    #[test]
    fn of_two_equally_relevant_items_the_newer_ranks_first() {
        let c =
            |published, seq| FeedCandidate { relevance: 0.7, published_at: Some(published), seq, ..Default::default() };
        let page = rank(&[c(90 * HOUR, 1), c(99 * HOUR, 2)], &params(2));
        assert_eq!(page.items.iter().map(|i| i.representative).collect::<Vec<_>>(), [1, 0]);
        assert!(page.items[0].freshness > page.items[1].freshness);
        // and without a decay, equal scores still put the newer first
        let mut p = params(2);
        p.decay = None;
        let page = rank(&[c(90 * HOUR, 1), c(99 * HOUR, 2)], &p);
        assert_eq!(page.items[0].representative, 1);
    }

    #[test]
    fn near_duplicates_collapse_into_one_item_keyed_by_the_original() {
        let signer = crate::signature::Signer::default();
        let story = "央行今天宣布下调存款准备金率零点五个百分点，释放长期资金约一万亿元，支持实体经济发展。";
        let repost =
            "央行今天宣布下调存款准备金率零点五个百分点，释放长期资金约一万亿元，支持实体经济发展。（来源：腾讯）";
        let other = "国家统计局发布数据，十月份规模以上工业增加值同比增长百分之四点六，比上月加快零点一个百分点。";
        let sigs: Vec<Signature> = [story, repost, other].iter().map(|t| signer.sign(t).unwrap()).collect();
        let cands = [
            FeedCandidate {
                relevance: 0.6,
                published_at: Some(99 * HOUR),
                seq: 5,
                signature: Some(&sigs[0]),
                ..Default::default()
            },
            FeedCandidate {
                relevance: 0.9,
                published_at: Some(99 * HOUR),
                seq: 7,
                signature: Some(&sigs[1]),
                ..Default::default()
            },
            FeedCandidate {
                relevance: 0.5,
                published_at: Some(99 * HOUR),
                seq: 6,
                signature: Some(&sigs[2]),
                ..Default::default()
            },
        ];
        let page = rank(&cands, &params(10));
        assert_eq!(page.clusters, 2);
        assert_eq!(page.items[0].members, [1, 0], "the repost scored best and represents the story");
        assert_eq!(page.items[0].key, 0, "the original (stored first) keys it");
        assert_eq!(page.items[1].members, [2]);
        // once any member was shown, the whole story stays off later pages
        let mut shown = cands;
        shown[0].shown = true;
        let page = rank(&shown, &params(10));
        assert_eq!(page.items.iter().map(|i| i.representative).collect::<Vec<_>>(), [2]);
        // without collapse each is an item
        let mut p = params(10);
        p.collapse = false;
        assert_eq!(rank(&cands, &p).items.len(), 3);
    }

    #[test]
    fn the_source_cap_and_the_page_size_hold() {
        let sources = ["a", "a", "a", "b", "a", "c"];
        let cands: Vec<FeedCandidate> = sources
            .iter()
            .enumerate()
            .map(|(i, s)| FeedCandidate {
                relevance: 1.0 - i as f64 / 10.0,
                published_at: Some(99 * HOUR),
                seq: i as u64,
                source: Some(s),
                ..Default::default()
            })
            .collect();
        let mut p = params(4);
        p.max_per_source = Some(2);
        let page = rank(&cands, &p);
        assert_eq!(page.items.iter().map(|i| i.representative).collect::<Vec<_>>(), [0, 1, 3, 5]);
        assert_eq!(page.remaining, 2);
        assert_eq!(page.held_back, [2, 4], "the third and fourth `a` wait for the next page");
        assert_eq!(page.items.iter().map(|i| i.promoted).collect::<Vec<_>>(), [false, false, true, true]);
        // a cap of one over two sources leaves a page of two, never a third from a full source
        p.max_per_source = Some(1);
        let two: Vec<FeedCandidate> = cands.iter().copied().filter(|c| c.source != Some("c")).collect();
        let page = rank(&two, &p);
        assert_eq!(page.items.iter().map(|i| i.representative).collect::<Vec<_>>(), [0, 3]);
        assert_eq!(page.remaining, 3);
    }
}
