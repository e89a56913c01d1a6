//! Freshness: Elasticsearch's decay functions (`function_score` → `gauss`, `exp`, `linear`; Elasticsearch
//! reference, "Function score query", "Decay functions"), on `published_at` measured from an origin.
//!
//! With `distance = max(0, |value − origin| − offset)`, and `decay` the score a document gets at exactly
//! `scale` past the offset:
//!
//! - gauss: `exp(−distance² / (2σ²))`, with `σ² = −scale² / (2 · ln(decay))`;
//! - exp: `exp(λ · distance)`, with `λ = ln(decay) / scale`;
//! - linear: `max(0, (s − distance) / s)`, with `s = scale / (1 − decay)`.
//!
//! Elasticsearch's defaults: `offset` 0, `decay` 0.5. A document within `offset` of the origin scores 1.

use serde::{Deserialize, Serialize};

/// The curve's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecayShape {
    Gauss,
    Exp,
    Linear,
}

/// A decay on a document's distance from the origin (for the feed: its age, in seconds).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Decay {
    pub shape: DecayShape,
    /// Distance past `offset` at which the score is `decay` (> 0).
    pub scale: f64,
    /// Distance within which the score stays 1 (>= 0).
    pub offset: f64,
    /// Score at `offset + scale`, in (0, 1).
    pub decay: f64,
}

/// A decay whose parameters cannot define a curve.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecayError {
    #[error("`scale` expected a finite number > 0, found {0}")]
    Scale(f64),
    #[error("`offset` expected a finite number >= 0, found {0}")]
    Offset(f64),
    #[error("`decay` expected a number strictly between 0 and 1, found {0}")]
    Decay(f64),
}

impl Decay {
    /// A decay with Elasticsearch's defaults for what is not given: offset 0, decay 0.5.
    pub fn new(shape: DecayShape, scale: f64) -> Decay {
        Decay { shape, scale, offset: 0.0, decay: 0.5 }
    }

    /// Checks the parameters, naming the one that is wrong.
    pub fn validate(&self) -> Result<(), DecayError> {
        if !(self.scale.is_finite() && self.scale > 0.0) {
            return Err(DecayError::Scale(self.scale));
        }
        if !(self.offset.is_finite() && self.offset >= 0.0) {
            return Err(DecayError::Offset(self.offset));
        }
        if !(self.decay > 0.0 && self.decay < 1.0) {
            return Err(DecayError::Decay(self.decay));
        }
        Ok(())
    }

    /// The factor for a document `distance` from the origin (either side: `|value − origin|`), in 0..=1.
    pub fn factor(&self, distance: f64) -> f64 {
        let d = (distance.abs() - self.offset).max(0.0);
        match self.shape {
            DecayShape::Gauss => {
                let sigma2 = -self.scale * self.scale / (2.0 * self.decay.ln());
                (-d * d / (2.0 * sigma2)).exp()
            }
            DecayShape::Exp => {
                let lambda = self.decay.ln() / self.scale;
                (lambda * d).exp()
            }
            DecayShape::Linear => {
                // `1 − d / s`, not `(s − d) / s`: the same, and finite for a scale near f64's limit
                let s = self.scale / (1.0 - self.decay);
                (1.0 - d / s).max(0.0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: f64 = 86_400.0;

    #[test]
    fn every_shape_gives_decay_at_offset_plus_scale_and_one_within_the_offset() {
        for shape in [DecayShape::Gauss, DecayShape::Exp, DecayShape::Linear] {
            let d = Decay { shape, scale: 2.0 * DAY, offset: DAY, decay: 0.3 };
            d.validate().unwrap();
            assert_eq!(d.factor(0.0), 1.0, "{shape:?}");
            assert_eq!(d.factor(0.5 * DAY), 1.0, "{shape:?}: within the offset");
            assert!((d.factor(3.0 * DAY) - 0.3).abs() < 1e-12, "{shape:?}: {}", d.factor(3.0 * DAY));
            assert_eq!(d.factor(-3.0 * DAY), d.factor(3.0 * DAY), "{shape:?}: either side of the origin");
            assert!(d.factor(10.0 * DAY) < 0.3);
        }
    }

    #[test]
    fn the_shapes_follow_elasticsearchs_formulas() {
        // scale 10, decay 0.5, offset 0, at distance 20 (two scales):
        // gauss: σ² = −100 / (2 ln 0.5) = 72.13…; exp(−400 / 144.27) = 0.5^4 = 0.0625
        // exp: exp(ln 0.5 / 10 · 20) = 0.25;  linear: s = 20, (20 − 20) / 20 = 0
        let at = |shape| Decay::new(shape, 10.0).factor(20.0);
        assert!((at(DecayShape::Gauss) - 0.0625).abs() < 1e-12);
        assert!((at(DecayShape::Exp) - 0.25).abs() < 1e-12);
        assert_eq!(at(DecayShape::Linear), 0.0);
        assert!((Decay::new(DecayShape::Linear, 10.0).factor(5.0) - 0.75).abs() < 1e-12);
    }

    #[test]
    fn bad_parameters_are_named() {
        let bad = |scale, offset, decay| Decay { shape: DecayShape::Exp, scale, offset, decay }.validate();
        assert_eq!(bad(0.0, 0.0, 0.5).unwrap_err().to_string(), "`scale` expected a finite number > 0, found 0");
        assert!(matches!(bad(1.0, -1.0, 0.5), Err(DecayError::Offset(_))));
        assert!(matches!(bad(1.0, 0.0, 1.0), Err(DecayError::Decay(_))));
        assert!(matches!(bad(1.0, 0.0, f64::NAN), Err(DecayError::Decay(_))));
    }
}

/// Seconds in a span written as Elasticsearch writes time units: a number and one of `ms`, `s`, `m`, `h`, `d`,
/// `w` (`12h`, `1.5d`, `90m`); a bare number is seconds. `None` for anything else.
pub fn parse_span(text: &str) -> Option<f64> {
    let t = text.trim();
    let split = t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: f64 = number.trim().parse().ok()?;
    let unit_secs = match unit.trim() {
        "" | "s" => 1.0,
        "ms" => 0.001,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86_400.0,
        "w" => 604_800.0,
        _ => return None,
    };
    let secs = n * unit_secs;
    secs.is_finite().then_some(secs)
}

#[cfg(test)]
mod span_tests {
    use super::parse_span;

    #[test]
    fn spans_read_as_elasticsearch_time_units() {
        // | written | seconds |
        for (text, secs) in [
            ("12h", 43_200.0),
            ("1.5d", 129_600.0),
            ("90m", 5_400.0),
            ("30", 30.0),
            ("2w", 1_209_600.0),
            ("500ms", 0.5),
            (" 1d ", 86_400.0),
        ] {
            assert_eq!(parse_span(text), Some(secs), "{text}");
        }
        for bad in ["", "d", "1y", "1 day", "abc", "1e400s"] {
            assert_eq!(parse_span(bad), None, "{bad}");
        }
    }
}
