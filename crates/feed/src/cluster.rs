//! Near-duplicate clusters: the connected components ("single link") of the graph whose edges join two
//! candidates that are near-duplicates by one of these rules (J: the MinHash estimate of their shingle sets'
//! Jaccard similarity; C: the containment of the smaller set in the larger, [`containment`]):
//!
//! - **MinHash**: `J ≥` [`Thresholds::jaccard`] (re-posts with punctuation, script or a suffix changed);
//! - **containment**: `C ≥` [`Thresholds::containment`] and `J ≥` [`Thresholds::floor`], when the smaller
//!   text has at least [`MIN_CONTAINED_SHINGLES`] shingles (a re-post with sentences dropped: a part of its
//!   original, whatever its Jaccard similarity);
//! - **embedding** (when both candidates have one from a model that covers the request's language): cosine
//!   `≥` [`Thresholds::embedding`] and `J ≥` [`Thresholds::floor`]. The floor keeps two stories that merely share
//!   a topic (close in embedding space, few shared shingles) apart.
//!
//! Every pair of a page's candidates (at most `MAX_DEPTH`, 1,000) is compared exactly: 64 equality tests per
//! pair, which the compiler vectorises, cost less than building an LSH index for so few (gaoya's
//! `MinHashIndex` is the tool for deduplicating a whole index) and miss no pair. Components depend only on
//! which candidates there are, not on their scores or order, so a cluster's membership does not change between
//! pages of the same snapshot.
//!
//! How the defaults were chosen: EVALUATION.md, "Near-duplicate thresholds" (planted re-posts of LCSTS news
//! against distinct stories on the same topic).

use crate::signature::{containment, Signature};

/// The smallest shingle set the containment rule applies to: below it, a few shared shingles would be "most
/// of" a text.
pub const MIN_CONTAINED_SHINGLES: u32 = 12;

/// When two candidates are near-duplicates (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    pub jaccard: f64,
    pub containment: f64,
    pub embedding: f64,
    pub floor: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds { jaccard: 0.5, containment: 0.8, embedding: 0.9, floor: 0.15 }
    }
}

/// Whether two candidates are near-duplicates (see the module doc); `a`'s and `b`'s vectors are unit vectors.
pub fn is_duplicate(
    a: &Signature,
    b: &Signature,
    vec_a: Option<&[f32]>,
    vec_b: Option<&[f32]>,
    t: &Thresholds,
) -> bool {
    if a.minima.len() != b.minima.len() || a.minima.is_empty() {
        return false;
    }
    let equal = a.minima.iter().zip(&b.minima).filter(|(x, y)| x == y).count();
    let j = equal as f64 / a.minima.len() as f64;
    if j >= t.jaccard {
        return true;
    }
    if j < t.floor {
        return false;
    }
    if a.shingles.min(b.shingles) >= MIN_CONTAINED_SHINGLES && containment(a, b) >= t.containment {
        return true;
    }
    matches!((vec_a, vec_b), (Some(x), Some(y)) if dot(x, y) as f64 >= t.embedding)
}

/// The near-duplicate pairs `(i, j)`, `i < j`, among the candidates (`vectors[i]`: candidate i's unit
/// vector, when the request's language is covered).
pub fn duplicate_pairs(
    signatures: &[Option<&Signature>],
    vectors: &[Option<&[f32]>],
    thresholds: Thresholds,
) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for (i, a) in signatures.iter().enumerate() {
        let Some(a) = a else { continue };
        for (j, b) in signatures.iter().enumerate().skip(i + 1) {
            let Some(b) = b else { continue };
            let (va, vb) = (vectors.get(i).copied().flatten(), vectors.get(j).copied().flatten());
            if is_duplicate(a, b, va, vb, &thresholds) {
                out.push((i, j));
            }
        }
    }
    out
}

/// Each of `n` items' component under `pairs`: the smallest index in it (union–find with path halving).
pub fn components(n: usize, pairs: &[(usize, usize)]) -> Vec<usize> {
    let mut parent: Vec<usize> = (0..n).collect();
    fn root(parent: &mut [usize], mut x: usize) -> usize {
        while parent[x] != x {
            parent[x] = parent[parent[x]];
            x = parent[x];
        }
        x
    }
    for &(a, b) in pairs {
        let (ra, rb) = (root(&mut parent, a), root(&mut parent, b));
        if ra != rb {
            // the smaller index becomes the root, so a component's label is its smallest member
            parent[ra.max(rb)] = ra.min(rb);
        }
    }
    (0..n).map(|i| root(&mut parent, i)).collect()
}

/// Document–document similarity for diversification: the cosine of the embeddings when both have one, else
/// the MinHash estimate of shingle overlap, else 0.
pub fn similarity(
    sig_a: Option<&Signature>,
    sig_b: Option<&Signature>,
    vec_a: Option<&[f32]>,
    vec_b: Option<&[f32]>,
) -> f64 {
    match (vec_a, vec_b, sig_a, sig_b) {
        (Some(a), Some(b), _, _) => (dot(a, b) as f64).clamp(0.0, 1.0),
        (_, _, Some(a), Some(b)) => crate::signature::similarity(&a.minima, &b.minima),
        _ => 0.0,
    }
}

/// The dot product, in eight lanes so that the compiler vectorises it.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            lanes[k] += x[k] * y[k];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signature::Signer;

    #[test]
    fn components_are_labelled_by_their_smallest_member() {
        assert_eq!(components(6, &[(3, 4), (1, 4), (2, 5)]), [0, 1, 2, 1, 1, 2]);
        assert_eq!(components(3, &[]), [0, 1, 2]);
        // order of the pairs does not matter
        assert_eq!(components(6, &[(2, 5), (1, 4), (3, 4)]), [0, 1, 2, 1, 1, 2]);
    }

    #[test]
    fn near_copies_pair_up_and_distinct_stories_on_a_topic_do_not() {
        let s = Signer::default();
        let texts = [
            "国家统计局今天发布数据显示，十月份全国居民消费价格同比上涨百分之零点二，环比下降百分之零点一。分析人士认为物价保持平稳。",
            // the same post, a sentence dropped and a source suffix added
            "国家统计局今天发布数据显示，十月份全国居民消费价格同比上涨百分之零点二，环比下降百分之零点一。（来源：新浪财经）",
            // another story on the same topic (prices)
            "国家发展改革委表示，今年以来猪肉价格持续回落，下一步将加强市场监测，适时启动冻猪肉储备收储工作，稳定市场预期。",
            // the first post's opening sentence alone: contained in it
            "国家统计局今天发布数据显示，十月份全国居民消费价格同比上涨百分之零点二。",
        ];
        let sigs: Vec<Signature> = texts.iter().map(|t| s.sign(t).unwrap()).collect();
        let refs: Vec<Option<&Signature>> = sigs.iter().map(Some).collect();
        let pairs = duplicate_pairs(&refs, &[None, None, None, None], Thresholds::default());
        assert!(pairs.contains(&(0, 1)) && pairs.contains(&(0, 3)), "{pairs:?}");
        assert!(!pairs.iter().any(|&(a, b)| a == 2 || b == 2), "{pairs:?}");
        assert_eq!(components(4, &pairs), [0, 0, 2, 0]);
    }

    #[test]
    fn an_embedding_pair_needs_both_the_cosine_and_the_floor() {
        let s = Signer::default();
        let a = s.sign("alpha beta gamma delta epsilon zeta eta theta iota kappa").unwrap();
        let b = s.sign("alpha beta gamma delta epsilon zeta omicron pi rho sigma").unwrap(); // J ~ 0.29
        let c = s.sign("one two three four five six seven eight nine ten").unwrap();
        let close = [1.0f32, 0.0];
        let t = Thresholds::default();
        assert!(is_duplicate(&a, &b, Some(&close), Some(&close), &t));
        assert!(!is_duplicate(&a, &c, Some(&close), Some(&close), &t), "same embedding, no shingles shared");
        assert!(!is_duplicate(&a, &b, None, None, &t), "without embeddings: J below 0.5, too small to contain");
    }

    #[test]
    fn similarity_prefers_embeddings_then_signatures() {
        let (a, b) = ([0.6f32, 0.8], [1.0f32, 0.0]);
        assert!((similarity(None, None, Some(&a), Some(&b)) - 0.6).abs() < 1e-6);
        let sig = |m: &[u64]| Signature { minima: m.to_vec(), shingles: 10 };
        assert_eq!(similarity(Some(&sig(&[1, 2])), Some(&sig(&[1, 3])), None, None), 0.5);
        assert_eq!(similarity(None, Some(&sig(&[1])), None, None), 0.0);
        let long: Vec<f32> = (0..19).map(|i| i as f32).collect();
        assert_eq!(dot(&long, &long), (0..19).map(|i| (i * i) as f32).sum::<f32>());
    }
}
