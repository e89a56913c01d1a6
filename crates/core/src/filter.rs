//! Search filters: `brand=Sony`, `brand=Sony|Bose`, `source!=abt.com`, `category=electronics` (matches the
//! whole subtree), `price<200`, `price=10..200`, `published_at>=2024-01-01`.
//!
//! Parsed once into [`Filter`]; engines translate a `Filter` into their own query, so BM25 and (later) dense
//! recall apply the same filters.

use std::fmt;
use std::ops::Bound;
use std::str::FromStr;

use crate::document::Timestamp;

/// A filterable keyword field. Matching is exact after lowercasing, except `category`, which matches a
/// path and everything below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TermField {
    Id,
    Brand,
    Category,
    Source,
    Lang,
    Tags,
}

/// A filterable ordered field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RangeField {
    Price,
    PublishedAt,
    /// The ingest sequence number every stored document gets (`_seq`): not a filter a user writes (the parser
    /// knows no such name) but the news feed's snapshot, "documents stored before this page's first".
    Seq,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RangeValue {
    Number(f64),
    Time(Timestamp),
}

/// One filter; a search ANDs all of its filters.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// The field equals one of `values` (or, with `negate`, none of them).
    Term { field: TermField, values: Vec<String>, negate: bool },
    /// The field lies between the bounds. Documents without the field never match.
    Range { field: RangeField, lower: Bound<RangeValue>, upper: Bound<RangeValue> },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error(
        "filter {found:?}: expected FIELD OP VALUE with OP one of = != < <= > >=, e.g. \"brand=Sony\" or \"price<200\""
    )]
    MissingOperator { found: String },
    #[error("filter {found:?}: unknown field `{field}`; filterable fields are {expected}")]
    UnknownField { found: String, field: String, expected: &'static str },
    #[error("filter {found:?}: operator `{op}` does not apply to `{field}`; expected one of {allowed}")]
    OperatorNotAllowed { found: String, field: &'static str, op: String, allowed: &'static str },
    #[error("filter {found:?}: expected {expected} for `{field}`, found {value:?}")]
    BadValue { found: String, field: &'static str, expected: &'static str, value: String },
}

const FIELDS: &str = "id, brand, category, source, lang, tags, price, published_at";

impl TermField {
    pub fn name(self) -> &'static str {
        match self {
            TermField::Id => "id",
            TermField::Brand => "brand",
            TermField::Category => "category",
            TermField::Source => "source",
            TermField::Lang => "lang",
            TermField::Tags => "tags",
        }
    }
}

impl RangeField {
    pub fn name(self) -> &'static str {
        match self {
            RangeField::Price => "price",
            RangeField::PublishedAt => "published_at",
            RangeField::Seq => "_seq",
        }
    }
}

enum AnyField {
    Term(TermField),
    Range(RangeField),
}

fn field_by_name(name: &str) -> Option<AnyField> {
    Some(match name {
        "id" => AnyField::Term(TermField::Id),
        "brand" => AnyField::Term(TermField::Brand),
        "category" => AnyField::Term(TermField::Category),
        "source" => AnyField::Term(TermField::Source),
        "lang" => AnyField::Term(TermField::Lang),
        "tags" | "tag" => AnyField::Term(TermField::Tags),
        "price" => AnyField::Range(RangeField::Price),
        "published_at" | "date" => AnyField::Range(RangeField::PublishedAt),
        _ => return None,
    })
}

impl FromStr for Filter {
    type Err = FilterError;

    fn from_str(expr: &str) -> Result<Filter, FilterError> {
        let found = expr.to_owned();
        // The first operator character splits field from value; two-character operators win.
        let pos =
            expr.find(['=', '<', '>', '!']).ok_or_else(|| FilterError::MissingOperator { found: found.clone() })?;
        let field_name = expr[..pos].trim().to_ascii_lowercase();
        let rest = &expr[pos..];
        let op = ["!=", "<=", ">=", "=", "<", ">"]
            .into_iter()
            .find(|op| rest.starts_with(op))
            .ok_or_else(|| FilterError::MissingOperator { found: found.clone() })?;
        let value = rest[op.len()..].trim();
        if field_name.is_empty() {
            return Err(FilterError::MissingOperator { found });
        }
        let field = field_by_name(&field_name).ok_or_else(|| FilterError::UnknownField {
            found: found.clone(),
            field: field_name.clone(),
            expected: FIELDS,
        })?;
        match field {
            AnyField::Term(field) => {
                let negate = match op {
                    "=" => false,
                    "!=" => true,
                    _ => {
                        return Err(FilterError::OperatorNotAllowed {
                            found,
                            field: field.name(),
                            op: op.into(),
                            allowed: "= and != (alternatives separated by |)",
                        })
                    }
                };
                let values: Vec<String> =
                    value.split('|').map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned).collect();
                if values.is_empty() {
                    return Err(FilterError::BadValue {
                        found,
                        field: field.name(),
                        expected: "a non-empty value",
                        value: value.into(),
                    });
                }
                Ok(Filter::Term { field, values, negate })
            }
            AnyField::Range(field) => {
                let parse = |v: &str| parse_range_value(field, v, &found);
                let (lower, upper) = match op {
                    "<" => (Bound::Unbounded, Bound::Excluded(parse(value)?)),
                    "<=" => (Bound::Unbounded, Bound::Included(parse(value)?)),
                    ">" => (Bound::Excluded(parse(value)?), Bound::Unbounded),
                    ">=" => (Bound::Included(parse(value)?), Bound::Unbounded),
                    "=" => match value.split_once("..") {
                        Some((lo, hi)) => (
                            if lo.trim().is_empty() { Bound::Unbounded } else { Bound::Included(parse(lo)?) },
                            if hi.trim().is_empty() { Bound::Unbounded } else { Bound::Included(parse(hi)?) },
                        ),
                        None => {
                            let v = parse(value)?;
                            (Bound::Included(v), Bound::Included(v))
                        }
                    },
                    _ => {
                        return Err(FilterError::OperatorNotAllowed {
                            found,
                            field: field.name(),
                            op: op.into(),
                            allowed: "<, <=, >, >=, = (a value or a range LOW..HIGH)",
                        })
                    }
                };
                Ok(Filter::Range { field, lower, upper })
            }
        }
    }
}

fn parse_range_value(field: RangeField, raw: &str, found: &str) -> Result<RangeValue, FilterError> {
    let raw = raw.trim();
    match field {
        RangeField::Price | RangeField::Seq => match raw.parse::<f64>() {
            Ok(v) if v.is_finite() => Ok(RangeValue::Number(v)),
            _ => Err(FilterError::BadValue {
                found: found.into(),
                field: field.name(),
                expected: "a finite number",
                value: raw.into(),
            }),
        },
        RangeField::PublishedAt => Timestamp::parse(raw).map(RangeValue::Time).ok_or_else(|| FilterError::BadValue {
            found: found.into(),
            field: field.name(),
            expected: "an RFC 3339 date-time or a date YYYY-MM-DD (midnight UTC)",
            value: raw.into(),
        }),
    }
}

impl fmt::Display for RangeValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RangeValue::Number(n) => write!(f, "{n}"),
            RangeValue::Time(t) => f.write_str(&t.to_rfc3339()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(s: &str) -> Filter {
        s.parse().unwrap()
    }

    #[test]
    fn term_filters() {
        assert_eq!(
            f("brand=Sony|Bose"),
            Filter::Term { field: TermField::Brand, values: vec!["Sony".into(), "Bose".into()], negate: false }
        );
        assert_eq!(
            f(" source != abt.com "),
            Filter::Term { field: TermField::Source, values: vec!["abt.com".into()], negate: true }
        );
    }

    #[test]
    fn range_filters() {
        use RangeValue::Number as N;
        let cases = [
            ("price<200", Bound::Unbounded, Bound::Excluded(N(200.0))),
            ("price<=200", Bound::Unbounded, Bound::Included(N(200.0))),
            ("price>10", Bound::Excluded(N(10.0)), Bound::Unbounded),
            ("price>=10", Bound::Included(N(10.0)), Bound::Unbounded),
            ("price=10..200", Bound::Included(N(10.0)), Bound::Included(N(200.0))),
            ("price=..200", Bound::Unbounded, Bound::Included(N(200.0))),
            ("price=99", Bound::Included(N(99.0)), Bound::Included(N(99.0))),
        ];
        for (expr, lower, upper) in cases {
            assert_eq!(f(expr), Filter::Range { field: RangeField::Price, lower, upper }, "{expr}");
        }
        let Filter::Range { lower: Bound::Included(RangeValue::Time(t)), .. } = f("published_at>=2024-01-01") else {
            panic!("expected a date range");
        };
        assert_eq!(t.unix_seconds(), 1704067200);
    }

    #[test]
    fn errors_say_what_was_expected() {
        let cases = [
            ("brand", "filter \"brand\": expected FIELD OP VALUE with OP one of = != < <= > >=, e.g. \"brand=Sony\" or \"price<200\""),
            ("colour=red", "filter \"colour=red\": unknown field `colour`; filterable fields are id, brand, category, source, lang, tags, price, published_at"),
            ("brand<x", "filter \"brand<x\": operator `<` does not apply to `brand`; expected one of = and != (alternatives separated by |)"),
            ("price<cheap", "filter \"price<cheap\": expected a finite number for `price`, found \"cheap\""),
            ("price!=3", "filter \"price!=3\": operator `!=` does not apply to `price`; expected one of <, <=, >, >=, = (a value or a range LOW..HIGH)"),
            ("published_at>last week", "filter \"published_at>last week\": expected an RFC 3339 date-time or a date YYYY-MM-DD (midnight UTC) for `published_at`, found \"last week\""),
            ("brand=", "filter \"brand=\": expected a non-empty value for `brand`, found \"\""),
        ];
        for (expr, message) in cases {
            assert_eq!(expr.parse::<Filter>().unwrap_err().to_string(), message);
        }
    }
}
