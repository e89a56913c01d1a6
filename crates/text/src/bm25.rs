//! BM25F, as pure functions over plain numbers.
//!
//! Robertson, Zaragoza & Taylor, "Simple BM25 extension to multiple weighted fields" (CIKM 2004), with
//! Lucene's non-negative IDF (the variant tantivy, Lucene ≥ 6 and bm25s `method="lucene"` use):
//!
//! ```text
//! idf(t)     = ln(1 + (N − df(t) + 0.5) / (df(t) + 0.5)),   df(t) = max over fields of df_f(t)
//! tf~(t, d)  = Σ_fields w_f · tf_f(t, d) / (1 − b + b · |d_f| / avgdl_f)
//! score(q,d) = Σ_{t ∈ q} idf(t) · tf~ · (k1 + 1) / (tf~ + k1)
//! ```
//!
//! Fields are combined *before* saturation. Summing per-field BM25 scores instead saturates each field on
//! its own, so a one-word title matching a query word earns nearly a full term score on top of the body's;
//! on the Debian package set that cost 0.05 nDCG@10. With one field and w = 1 this is exactly classic BM25
//! (`term_score`). Taking the maximum per-field df is how Lucene's `CombinedFieldQuery` approximates the df
//! of the union of fields.
//!
//! tantivy hard-codes k1 = 1.2 and b = 0.75 and has no BM25F; Sieve scores postings itself so both are
//! settings (per index, overridable per query), and so every hit can say how much each field contributed.

use serde::{Deserialize, Serialize};

/// BM25 parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Bm25Params {
    /// Term-frequency saturation. 0 turns term frequency off; 1.2 is the textbook value.
    pub k1: f32,
    /// Length normalisation, 0..=1. 0 ignores document length; 1 normalises fully.
    pub b: f32,
}

impl Default for Bm25Params {
    /// k1 = 0.9, b = 0.4: the Anserini/Pyserini defaults, and what the baselines in `shared/data` use.
    fn default() -> Self {
        Bm25Params { k1: 0.9, b: 0.4 }
    }
}

/// Why a parameter set was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("bm25 parameter `{name}`: expected {expected}, found {found}")]
pub struct ParamError {
    pub name: &'static str,
    pub expected: &'static str,
    pub found: f32,
}

impl Bm25Params {
    pub fn validate(self) -> Result<Bm25Params, ParamError> {
        if !(self.k1.is_finite() && self.k1 >= 0.0) {
            return Err(ParamError { name: "k1", expected: "a finite number >= 0", found: self.k1 });
        }
        if !(self.b.is_finite() && (0.0..=1.0).contains(&self.b)) {
            return Err(ParamError { name: "b", expected: "a number in 0..=1", found: self.b });
        }
        Ok(self)
    }
}

/// Inverse document frequency of a term found in `df` of `n` documents (never negative).
pub fn idf(n: u64, df: u64) -> f32 {
    let (n, df) = (n as f64, df.min(n) as f64);
    (1.0 + (n - df + 0.5) / (df + 0.5)).ln() as f32
}

/// The length normaliser of a field `1 − b + b · len / avgdl`.
pub fn length_norm(b: f32, len: f32, avgdl: f32) -> f32 {
    let ratio = if avgdl > 0.0 { len / avgdl } else { 1.0 };
    1.0 - b + b * ratio
}

/// A field's share of the pseudo term frequency: `weight · tf / norm`, with `norm` from [`length_norm`].
pub fn field_tf(weight: f32, tf: f32, norm: f32) -> f32 {
    weight * tf / norm
}

/// Saturation of the combined pseudo term frequency: `tf~ · (k1 + 1) / (tf~ + k1)`.
pub fn saturate(k1: f32, pseudo_tf: f32) -> f32 {
    if pseudo_tf <= 0.0 {
        0.0
    } else {
        pseudo_tf * (k1 + 1.0) / (pseudo_tf + k1)
    }
}

/// Classic single-field BM25 of one term in one document (BM25F with one field of weight 1).
pub fn term_score(params: Bm25Params, idf: f32, tf: f32, len: f32, avgdl: f32) -> f32 {
    idf * saturate(params.k1, field_tf(1.0, tf, length_norm(params.b, len, avgdl)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f32, b: f32) -> bool {
        (a - b).abs() < 1e-5
    }

    #[test]
    fn idf_table() {
        // hand-computed: ln(1 + (N - df + .5)/(df + .5))
        for (n, df, expected) in [(10, 1, 1.992_43_f32), (10, 10, 0.046_52), (1000, 1, 6.503_29), (10, 0, 3.091_042)] {
            assert!(close(idf(n, df), expected), "idf({n},{df}) = {} != {expected}", idf(n, df));
        }
        assert!(idf(5, 9) >= 0.0, "df > N (stale stats) must not go negative");
    }

    #[test]
    fn term_score_table() {
        let p = Bm25Params { k1: 1.2, b: 0.75 };
        // tf=1, len=avgdl: tf·(k1+1)/(tf+k1) = 2.2/2.2 = 1 → score = idf
        assert!(close(term_score(p, 2.0, 1.0, 10.0, 10.0), 2.0));
        // tf=2, len=2·avgdl: norm = 1.2·(0.25+1.5) = 2.1 → 2·2.2/4.1 = 1.0731707
        assert!(close(term_score(p, 1.0, 2.0, 20.0, 10.0), 1.073_170_7));
        // b=0: length ignored
        let p0 = Bm25Params { k1: 1.2, b: 0.0 };
        assert!(close(term_score(p0, 1.0, 3.0, 100.0, 1.0), term_score(p0, 1.0, 3.0, 1.0, 1.0)));
        // k1=0: term frequency ignored, score = idf
        let pk = Bm25Params { k1: 0.0, b: 0.75 };
        assert!(close(term_score(pk, 1.5, 7.0, 3.0, 10.0), 1.5));
    }

    #[test]
    fn bm25f_combines_fields_before_saturation() {
        let p = Bm25Params { k1: 1.2, b: 0.75 };
        // title: tf 1, len = avg → norm 1; body: tf 2, len = 2·avg → norm 1.75; weights 2 and 1
        let tt = field_tf(2.0, 1.0, length_norm(p.b, 5.0, 5.0)) + field_tf(1.0, 2.0, length_norm(p.b, 20.0, 10.0));
        assert!(close(tt, 2.0 + 2.0 / 1.75));
        let combined = saturate(p.k1, tt);
        assert!(close(combined, tt * 2.2 / (tt + 1.2)));
        // less than the two fields saturated separately, and bounded by k1 + 1
        let separate = saturate(p.k1, 2.0) + saturate(p.k1, 2.0 / 1.75);
        assert!(combined < separate && combined < p.k1 + 1.0);
        assert_eq!(saturate(p.k1, 0.0), 0.0);
    }

    #[test]
    fn params_are_validated() {
        assert!(Bm25Params { k1: -1.0, b: 0.5 }.validate().is_err());
        assert_eq!(
            Bm25Params { k1: 1.0, b: 1.5 }.validate().unwrap_err().to_string(),
            "bm25 parameter `b`: expected a number in 0..=1, found 1.5"
        );
        assert!(Bm25Params::default().validate().is_ok());
    }
}
