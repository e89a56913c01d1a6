//! Near-duplicate signatures of articles: MinHash (Broder, "On the resemblance and containment of documents",
//! 1997) over shingles, through the `gaoya` crate. Two articles' signature similarity (the share of equal
//! minima) estimates the Jaccard similarity of their shingle sets.
//!
//! Shingles: for Han text, every run of [`SHINGLE`] consecutive Han characters (Chinese has no spaces between
//! words); for other scripts, every run of [`SHINGLE`] consecutive lowercased words (UAX #29 word boundaries).
//! A text with both gets both. A text shorter than one shingle is its own single shingle.
//!
//! Signatures are deterministic (gaoya's `MinHasher64V1`: FNV hashing, a fixed seed), so one computed at ingest
//! compares with one computed later, by another process.

use gaoya::minhash::{compute_minhash_similarity, MinHasher, MinHasher64V1};
use unicode_segmentation::UnicodeSegmentation;

/// Characters (Han) or words (other scripts) per shingle.
pub const SHINGLE: usize = 3;
/// Minima per signature: the estimate's standard error is at most 1 / (2 √64) = 0.0625.
pub const NUM_HASHES: usize = 64;

fn is_han(c: char) -> bool {
    matches!(c as u32, 0x4E00..=0x9FFF | 0x3400..=0x4DBF | 0xF900..=0xFAFF | 0x20000..=0x2A6DF)
}

/// The shingles of `text` (see the module doc).
pub fn shingles(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let han: Vec<char> = text.chars().filter(|&c| is_han(c)).collect();
    if !han.is_empty() {
        if han.len() < SHINGLE {
            out.push(han.iter().collect());
        }
        out.extend(han.windows(SHINGLE).map(|w| w.iter().collect::<String>()));
    }
    let words: Vec<String> = text.unicode_words().filter(|w| !w.chars().any(is_han)).map(str::to_lowercase).collect();
    if !words.is_empty() {
        if words.len() < SHINGLE {
            out.push(words.join(" "));
        }
        out.extend(words.windows(SHINGLE).map(|w| w.join(" ")));
    }
    out
}

/// An article's MinHash signature and the size of the shingle set it summarises.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    /// [`NUM_HASHES`] minima.
    pub minima: Vec<u64>,
    /// Distinct shingles of the text.
    pub shingles: u32,
}

/// Makes signatures; one per process is enough (it holds the hash functions' coefficients).
pub struct Signer {
    hasher: MinHasher64V1<fnv::FnvBuildHasher>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").field("num_hashes", &NUM_HASHES).finish()
    }
}

impl Default for Signer {
    fn default() -> Self {
        Signer { hasher: MinHasher64V1::new(NUM_HASHES) }
    }
}

impl Signer {
    /// The signature of `text`; `None` for a text without shingles.
    pub fn sign(&self, text: &str) -> Option<Signature> {
        let mut sh = shingles(text);
        if sh.is_empty() {
            return None;
        }
        let minima = self.hasher.create_signature(sh.iter());
        sh.sort_unstable();
        sh.dedup();
        Some(Signature { minima, shingles: sh.len() as u32 })
    }
}

/// The estimated Jaccard similarity `|A ∩ B| / |A ∪ B|` of two signatures' shingle sets, in 0..=1 (0 for
/// signatures of different lengths): the share of equal minima.
pub fn similarity(a: &[u64], b: &[u64]) -> f64 {
    if a.len() != b.len() || a.is_empty() {
        return 0.0;
    }
    compute_minhash_similarity(a, b)
}

/// The estimated containment of the smaller shingle set in the larger, `|A ∩ B| / min(|A|, |B|)`, in 0..=1:
/// from the Jaccard estimate J and the set sizes, `|A ∩ B| = J · (|A| + |B|) / (1 + J)`. A copy with a sentence
/// dropped is contained in its original whatever their Jaccard similarity.
pub fn containment(a: &Signature, b: &Signature) -> f64 {
    let j = similarity(&a.minima, &b.minima);
    let small = a.shingles.min(b.shingles).max(1) as f64;
    (j * (a.shingles as f64 + b.shingles as f64) / (1.0 + j) / small).min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shingles_are_han_characters_or_words() {
        assert_eq!(shingles("央行降息"), ["央行降", "行降息"]);
        assert_eq!(shingles("Fed cuts rates again"), ["fed cuts rates", "cuts rates again"]);
        assert_eq!(shingles("Hi"), ["hi"]);
        assert_eq!(shingles("苹果 iPhone 发布"), ["苹果发", "果发布", "iphone"]);
        assert!(shingles("  ").is_empty());
    }

    #[test]
    fn near_copies_are_similar_and_other_stories_are_not() {
        let s = Signer::default();
        let a = "The central bank cut its main interest rate by a quarter point on Tuesday, citing slowing growth \
                 and easing inflation across the region, and signalled more cuts could follow this year.";
        let copy = "The central bank cut its main interest rate by a quarter point on Tuesday, citing slowing growth \
                    and easing inflation across the region, and signalled further cuts could follow this year.";
        let other = "A new smartphone with a larger battery and a faster chip goes on sale next week in twelve \
                     countries, the company said at its launch event in the capital.";
        let (sa, sc, so) = (s.sign(a).unwrap().minima, s.sign(copy).unwrap().minima, s.sign(other).unwrap().minima);
        assert_eq!(sa.len(), NUM_HASHES);
        assert!(similarity(&sa, &sc) > 0.7, "{}", similarity(&sa, &sc));
        assert!(similarity(&sa, &so) < 0.1, "{}", similarity(&sa, &so));
        let zh = "国家统计局今天发布数据显示，十月份全国居民消费价格同比上涨百分之零点二，环比下降百分之零点一。";
        let zh_copy = "国家统计局今天发布数据显示，十月份全国居民消费价格同比上涨百分之零点二，环比下降百分之零点三。";
        let (z1, z2) = (s.sign(zh).unwrap().minima, s.sign(zh_copy).unwrap().minima);
        assert!(similarity(&z1, &z2) > 0.7, "{}", similarity(&z1, &z2));
        assert!(similarity(&z1, &so) < 0.1);
        assert_eq!(s.sign(""), None);
    }

    #[test]
    fn signatures_do_not_change_between_signers_or_processes() {
        // a stored signature must compare with one computed later: same coefficients, same hashing
        let one = Signer::default().sign("stable signatures across processes").unwrap().minima;
        let two = Signer::default().sign("stable signatures across processes").unwrap().minima;
        assert_eq!(one, two);
        // pinned: a change of gaoya's hashing or seed would make stored signatures useless, and fails here
        assert_eq!(one[0], PINNED_FIRST_MINIMUM, "{}", one[0]);
    }

    #[test]
    fn a_copy_with_a_part_dropped_is_contained_in_its_original() {
        let s = Signer::default();
        let original = "国家统计局今天发布数据显示，十月份全国居民消费价格同比上涨百分之零点二，环比下降百分之零点一。\
                        分析人士认为，食品价格回落是主要原因，预计年底前物价将保持平稳运行，全年目标可以实现。";
        let part = "国家统计局今天发布数据显示，十月份全国居民消费价格同比上涨百分之零点二。";
        let (o, p) = (s.sign(original).unwrap(), s.sign(part).unwrap());
        assert_eq!(o.shingles as usize, shingles(original).into_iter().collect::<std::collections::HashSet<_>>().len());
        let j = similarity(&o.minima, &p.minima);
        assert!(j < 0.5, "{j}");
        assert!(containment(&o, &p) > 0.8, "{}", containment(&o, &p));
        assert_eq!(containment(&o, &p), containment(&p, &o));
    }

    const PINNED_FIRST_MINIMUM: u64 = 49_156_898_559_987_547;
}
