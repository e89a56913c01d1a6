//! Whole numbers as JSON Schema means them: `integer` matches any number without a fractional part, so
//! `278.0` is as good as `278`. serde would refuse the first for a `usize`; the request fields that are counts
//! and sizes read through [`opt_count`] instead, and still refuse `2.5`, `-1` and `1e300` with the value named.
//! Either spelling is taken up to [`MAX_COUNT`] (2^53 − 1, the largest whole number a float holds exactly);
//! the OpenAPI document gives every such field that `maximum`, or a smaller one.

/// The largest count a request may carry in any field: 2^53 − 1.
pub const MAX_COUNT: u64 = 9_007_199_254_740_991;

use serde::de::{self, Deserializer, Visitor};

/// An optional count (`null` or absent: `None`), from an integer or an integral float.
pub fn opt_count<'de, D: Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    d.deserialize_option(OptCount)
}

/// [`opt_count`] for a `u64` field (milliseconds).
pub fn opt_count_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(opt_count(d)?.map(|n| n as u64))
}

struct OptCount;

impl<'de> Visitor<'de> for OptCount {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a whole number >= 0 and <= 2^53 - 1")
    }

    fn visit_none<E: de::Error>(self) -> Result<Option<usize>, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Option<usize>, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Option<usize>, D::Error> {
        d.deserialize_any(Count).map(Some)
    }
}

struct Count;

impl Visitor<'_> for Count {
    type Value = usize;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a whole number >= 0 and <= 2^53 - 1")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<usize, E> {
        usize::try_from(v)
            .ok()
            .filter(|&n| n as u64 <= MAX_COUNT)
            .ok_or_else(|| E::invalid_value(de::Unexpected::Unsigned(v), &self))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<usize, E> {
        u64::try_from(v).map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self)).and_then(|v| self.visit_u64(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<usize, E> {
        // whole, not negative, and exactly representable (below 2^53)
        if v.fract() == 0.0 && (0.0..9_007_199_254_740_992.0).contains(&v) {
            Ok(v as usize)
        } else {
            Err(E::invalid_value(de::Unexpected::Float(v), &self))
        }
    }
}

#[cfg(test)]
mod tests {
    #[derive(Debug, serde::Deserialize)]
    struct Body {
        #[serde(default, deserialize_with = "super::opt_count")]
        n: Option<usize>,
    }

    fn parse(json: &str) -> Result<Option<usize>, String> {
        serde_json::from_str::<Body>(json).map(|b| b.n).map_err(|e| e.to_string())
    }

    #[test]
    fn whole_numbers_pass_in_either_spelling_and_the_rest_is_named() {
        assert_eq!(parse(r#"{"n": 278}"#), Ok(Some(278)));
        assert_eq!(parse(r#"{"n": 278.0}"#), Ok(Some(278)));
        assert_eq!(parse(r#"{"n": null}"#), Ok(None));
        assert_eq!(parse("{}"), Ok(None));
        assert_eq!(parse(r#"{"n": 9007199254740991}"#), Ok(Some(9_007_199_254_740_991)));
        for bad in ["2.5", "-1", "1e300", "\"7\"", "9007199254740992", "18446744073709551615"] {
            let err = parse(&format!(r#"{{"n": {bad}}}"#)).unwrap_err();
            assert!(err.contains("a whole number >= 0"), "{bad}: {err}");
        }
    }
}
