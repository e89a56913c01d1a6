//! The request strings Sieve parses, as JSON Schema `pattern`s (ECMA 262, which Python's `re` and Rust's
//! `regex` read the same way for these), so that the OpenAPI document says what the parsers take. Each pattern
//! is checked against its parser in the tests below: a string matches exactly when the parser accepts it, on
//! samples of both kinds. Field names are matched in lower case, as documented (the parsers also take upper
//! case, which the patterns leave out).

/// Characters a document id may not hold: control characters, the zero-width and bidi-control characters of
/// [`crate::DocId::parse`].
const ID_EXCLUDED: &str = r"\u0000-\u001f\u007f-\u009f\u061c\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff";

/// A document id ([`crate::DocId::parse`], the byte limit aside): not blank, none of the excluded characters.
pub fn id_pattern() -> String {
    format!(r"^[^{ID_EXCLUDED}]*[^\s{ID_EXCLUDED}][^{ID_EXCLUDED}]*$")
}

const NUMBER: &str = r"[+-]?(\d+(\.\d+)?|\.\d+)([eE][+-]?\d{1,2})?";
const DATE: &str = r"[12]\d{3}-(0[1-9]|1[0-2])-(0[1-9]|1\d|2[0-8])(T([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d{1,9})?(Z|[+-]([01]\d|2[0-3]):[0-5]\d))?";

/// A filter ([`crate::Filter`]'s `FromStr`): a keyword field with `=`/`!=` and `|`-separated values, or
/// `price`/`published_at` with a comparison or an `=` value or `LOW..HIGH` range. Dates are the ones valid in
/// every month (days 1–28); the parser takes every real date.
pub fn filter_pattern() -> String {
    let range = |field: &str, value: &str| {
        format!(r"\s*({field})\s*((<|<=|>|>=|=)\s*{value}|=\s*({value})?\s*\.\.\s*({value})?)\s*")
    };
    format!(
        r"^(\s*(id|brand|category|source|lang|tags?)\s*!?=.*[^\s|].*|{}|{})$",
        range("price", NUMBER),
        range("published_at|date", DATE)
    )
}

/// A sort ([`crate::SortBy`]'s `FromStr`).
pub const SORT_PATTERN: &str = r"^\s*(price|published_at)\s*(:\s*(asc|desc)\s*)?$";

/// A point in time ([`crate::Timestamp::parse`]): a date, or an RFC 3339 date-time.
pub fn time_pattern() -> String {
    format!("^{DATE}$")
}

/// A positive time span in Elasticsearch's units (`12h`, `1.5d`; a bare number is seconds), as the feed's
/// `decay.scale` takes it (`sieve_feed::parse_span`, and not zero).
pub const POSITIVE_SPAN_PATTERN: &str = r"^\s*(0*[1-9]\d*(\.\d+)?|0*\.\d*[1-9]\d*)\s*(ms|s|m|h|d|w)?\s*$";
/// A time span that may be zero (`decay.offset`).
pub const SPAN_PATTERN: &str = r"^\s*\d+(\.\d+)?\s*(ms|s|m|h|d|w)?\s*$";

/// A language tag ([`crate::Lang::parse`]).
pub const LANG_PATTERN: &str = r"^\s*[A-Za-z]{2,3}([-_][A-Za-z0-9]{1,8})*\s*$";

#[cfg(test)]
mod tests {
    use super::*;

    fn agree(pattern: &str, parses: impl Fn(&str) -> bool, samples: &[&str]) {
        let re = regex::Regex::new(pattern).unwrap();
        for s in samples {
            assert_eq!(re.is_match(s), parses(s), "pattern {pattern} and parser disagree on {s:?}");
        }
    }

    #[test]
    fn the_time_pattern_takes_only_what_timestamps_parse() {
        let re = regex::Regex::new(&time_pattern()).unwrap();
        for ok in ["2025-12-05", "2025-12-05T10:00:00Z", "2025-02-28T23:59:59.5+08:00"] {
            assert!(re.is_match(ok) && crate::Timestamp::parse(ok).is_some(), "{ok}");
        }
        for bad in ["2025-13-01", "yesterday", "2025-12-05 10:00"] {
            assert!(!re.is_match(bad), "{bad}");
        }
    }

    #[test]
    fn the_span_patterns_take_positive_spans_and_zero_where_allowed() {
        let positive = regex::Regex::new(POSITIVE_SPAN_PATTERN).unwrap();
        let any = regex::Regex::new(SPAN_PATTERN).unwrap();
        for ok in ["12h", "1.5d", " 30 ", "0.5ms", "2w", "007m"] {
            assert!(positive.is_match(ok) && any.is_match(ok), "{ok}");
        }
        for zero in ["0", "0d", "0.0h"] {
            assert!(!positive.is_match(zero) && any.is_match(zero), "{zero}");
        }
        for bad in ["", "d", "1y", "1 day", "-1h", "1e3s"] {
            assert!(!positive.is_match(bad) && !any.is_match(bad), "{bad}");
        }
    }

    #[test]
    fn the_id_pattern_takes_what_doc_id_takes() {
        agree(
            &id_pattern(),
            |s| crate::DocId::parse(s, usize::MAX).is_ok(),
            &[
                "p1",
                "a b",
                "  x ",
                "产品-1",
                "",
                "   ",
                "\t",
                "a\u{1f}b",
                "a\u{7f}",
                "x\u{200b}y",
                "x\u{202e}y",
                "\u{feff}id",
                "x\u{2066}",
                "x\u{061c}",
                "ok/with/slashes",
                "é",
            ],
        );
    }

    #[test]
    fn the_filter_pattern_takes_what_the_filter_parser_takes() {
        agree(
            &filter_pattern(),
            |s| s.parse::<crate::Filter>().is_ok(),
            &[
                "brand=Sony",
                "brand != sony|lg",
                "tags=a",
                "tag=a",
                "category=audio/headphones",
                "id=p1",
                "lang=zh",
                "source=BBC",
                "brand=",
                "brand=|",
                "brand= | ",
                "brand<x",
                "brand",
                "colour=red",
                "=x",
                "brand==x",
                "price<200",
                "price <= 1.5",
                "price>=.5",
                "price>1e3",
                "price=10..20",
                "price=..20",
                "price=10..",
                "price=..",
                "price!=3",
                "price<cheap",
                "price<",
                "price<1..2",
                "price=+4",
                "price<1e400",
                "published_at>=2024-01-01",
                "date<2024-05-01T10:00:00Z",
                "published_at=2024-01-01..2024-02-01",
                "published_at>last week",
                "published_at>2024-02-30",
                "published_at<2024-01-01T10:00:00+02:00",
                "published_at=..2024-01-01",
                "published_at<2024-1-1",
            ],
        );
    }

    #[test]
    fn the_sort_pattern_takes_what_sort_by_takes() {
        agree(
            SORT_PATTERN,
            |s| s.parse::<crate::SortBy>().is_ok(),
            &[
                "price",
                "price:asc",
                "price:desc",
                "published_at:desc",
                " price : asc ",
                "price:up",
                "colour",
                "",
                "price:",
                "date:asc",
            ],
        );
    }

    #[test]
    fn the_lang_pattern_takes_what_lang_takes() {
        agree(
            LANG_PATTERN,
            |s| crate::Lang::parse(s).is_ok(),
            &[
                "en",
                "zh",
                "zh-Hant",
                "zh_hant_tw",
                "en-US",
                "eng",
                "e",
                "engl",
                "zh-",
                "zh-toolongtag",
                "中文",
                "",
                "de-1996",
            ],
        );
    }
}
