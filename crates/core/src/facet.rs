//! The names of what a ranked set can be counted and ordered by: facet fields, their counts, and sort keys,
//! the words the wire contract, the CLI and the web UI share. Also the counting itself ([`FacetTally`], pure):
//! the text index feeds it each document's values from its columns.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

/// A field facets can be counted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FacetField {
    Brand,
    /// Every level of the path counts: `electronics` and `electronics/audio`.
    Category,
    Source,
    Lang,
    Tags,
    /// Counted in price ranges.
    Price,
}

impl FacetField {
    pub const ALL: [FacetField; 6] = [
        FacetField::Brand,
        FacetField::Category,
        FacetField::Source,
        FacetField::Lang,
        FacetField::Tags,
        FacetField::Price,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FacetField::Brand => "brand",
            FacetField::Category => "category",
            FacetField::Source => "source",
            FacetField::Lang => "lang",
            FacetField::Tags => "tags",
            FacetField::Price => "price",
        }
    }
}

/// One value of a facet and how many ranked documents have it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FacetCount {
    pub value: String,
    pub count: usize,
}

/// Upper bounds (exclusive) of the price facet's ranges; the last range is open.
pub const PRICE_RANGES: [f64; 6] = [10.0, 50.0, 100.0, 250.0, 500.0, 1000.0];

/// The price facet's value for `price`: `<10`, `10-50`, …, `>=1000` (lower bounds inclusive).
pub fn price_bucket(price: f64) -> String {
    let i = PRICE_RANGES.partition_point(|&b| b <= price);
    match i {
        0 => format!("<{}", PRICE_RANGES[0]),
        i if i == PRICE_RANGES.len() => format!(">={}", PRICE_RANGES[i - 1]),
        i => format!("{}-{}", PRICE_RANGES[i - 1], PRICE_RANGES[i]),
    }
}

/// Counts facet values over a set of documents, one document at a time. The caller gives each document's
/// values per field as the index keeps them (lowercased keywords, the category path); the tally counts a
/// value once per document, every level of a category path (`audio` and `audio/headphones`), prices in
/// [`PRICE_RANGES`].
#[derive(Debug, Clone)]
pub struct FacetTally {
    fields: Vec<FacetField>,
    counts: Vec<HashMap<String, usize>>,
    seen: Vec<String>,
}

impl FacetTally {
    pub fn new(fields: &[FacetField]) -> FacetTally {
        FacetTally { fields: fields.to_vec(), counts: vec![HashMap::new(); fields.len()], seen: Vec::new() }
    }

    pub fn fields(&self) -> &[FacetField] {
        &self.fields
    }

    /// Adds one document's values of the field at `index` (in [`FacetTally::fields`] order). Keyword values
    /// are trimmed; empty ones and repeats within the document are not counted.
    pub fn add_keywords<'a>(&mut self, index: usize, values: impl IntoIterator<Item = &'a str>) {
        self.seen.clear();
        for v in values {
            let v = v.trim();
            if v.is_empty() || self.seen.iter().any(|s| s == v) {
                continue;
            }
            self.seen.push(v.to_owned());
            *self.counts[index].entry(v.to_owned()).or_default() += 1;
        }
    }

    /// Adds one document's category path (`audio/headphones`): each of its levels counts.
    pub fn add_category(&mut self, index: usize, path: &str) {
        let segments: Vec<&str> = path.split('/').map(str::trim).filter(|s| !s.is_empty()).collect();
        for n in 1..=segments.len() {
            *self.counts[index].entry(segments[..n].join("/")).or_default() += 1;
        }
    }

    /// Adds one document's price (ignored unless finite).
    pub fn add_price(&mut self, index: usize, price: f64) {
        if price.is_finite() {
            *self.counts[index].entry(price_bucket(price)).or_default() += 1;
        }
    }

    /// Per field the `max_values` most frequent values (ties by value); price ranges in ascending order, all
    /// of them.
    pub fn finish(self, max_values: usize) -> BTreeMap<String, Vec<FacetCount>> {
        let mut out = BTreeMap::new();
        for (field, counts) in self.fields.into_iter().zip(self.counts) {
            let mut list: Vec<FacetCount> =
                counts.into_iter().map(|(value, count)| FacetCount { value, count }).collect();
            if field == FacetField::Price {
                let lower = |v: &str| -> f64 {
                    if v.starts_with('<') {
                        return f64::NEG_INFINITY;
                    }
                    v.trim_start_matches(">=").split('-').next().and_then(|x| x.parse().ok()).unwrap_or(0.0)
                };
                list.sort_by(|a, b| lower(&a.value).total_cmp(&lower(&b.value)));
            } else {
                list.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.value.cmp(&b.value)));
                list.truncate(max_values);
            }
            out.insert(field.name().to_owned(), list);
        }
        out
    }
}

/// A field results can be ordered by instead of relevance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SortField {
    Price,
    PublishedAt,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SortOrder {
    Asc,
    Desc,
}

/// Orders the ranked set by a field; documents without it go last, and ties keep their relevance order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SortBy {
    pub field: SortField,
    pub order: SortOrder,
}

/// What a sort expression may be.
pub const SORT_EXPECTED: &str = "`price:asc`, `price:desc`, `published_at:asc` or `published_at:desc`";

/// A sort expression that is not one of [`SORT_EXPECTED`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected {SORT_EXPECTED}, found {found:?}")]
pub struct SortError {
    pub found: String,
}

impl std::str::FromStr for SortBy {
    type Err = SortError;

    /// `price:asc`, `published_at:desc`; the order defaults to ascending (`price`).
    fn from_str(raw: &str) -> Result<SortBy, SortError> {
        let bad = || SortError { found: raw.to_owned() };
        let (field, order) = raw.split_once(':').unwrap_or((raw, "asc"));
        let field = match field.trim() {
            "price" => SortField::Price,
            "published_at" => SortField::PublishedAt,
            _ => return Err(bad()),
        };
        let order = match order.trim() {
            "asc" => SortOrder::Asc,
            "desc" => SortOrder::Desc,
            _ => return Err(bad()),
        };
        Ok(SortBy { field, order })
    }
}

impl std::fmt::Display for SortBy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let field = match self.field {
            SortField::Price => "price",
            SortField::PublishedAt => "published_at",
        };
        let order = match self.order {
            SortOrder::Asc => "asc",
            SortOrder::Desc => "desc",
        };
        write!(f, "{field}:{order}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tally_counts_each_document_once_per_value_and_every_category_level() {
        let fields = [FacetField::Brand, FacetField::Category, FacetField::Tags, FacetField::Price];
        let mut t = FacetTally::new(&fields);
        // (brands, category, tags, price) per document
        type Row<'a> = (&'a [&'a str], Option<&'a str>, &'a [&'a str], Option<f64>);
        let docs: [Row; 4] = [
            (&["sony"], Some("audio/headphones"), &["x", "x", "y"], Some(99.0)),
            (&["sony "], Some("audio/speakers"), &["y"], Some(10.0)),
            (&["bose"], Some("audio/headphones"), &[], Some(2000.0)),
            (&[" "], None, &[], Some(f64::NAN)),
        ];
        for (brand, category, tags, price) in docs {
            t.add_keywords(0, brand.iter().copied());
            if let Some(c) = category {
                t.add_category(1, c);
            }
            t.add_keywords(2, tags.iter().copied());
            if let Some(p) = price {
                t.add_price(3, p);
            }
        }
        let f = t.finish(10);
        let pairs = |k: &str| f[k].iter().map(|c| (c.value.as_str(), c.count)).collect::<Vec<_>>();
        assert_eq!(pairs("brand"), vec![("sony", 2), ("bose", 1)]);
        assert_eq!(pairs("category"), vec![("audio", 3), ("audio/headphones", 2), ("audio/speakers", 1)]);
        assert_eq!(pairs("tags"), vec![("y", 2), ("x", 1)], "a tag counts once per document");
        assert_eq!(pairs("price"), vec![("10-50", 1), ("50-100", 1), (">=1000", 1)]);
    }

    #[test]
    fn a_tally_keeps_the_most_frequent_values_and_every_price_range_in_order() {
        let mut t = FacetTally::new(&[FacetField::Brand, FacetField::Price]);
        for (b, p) in [("b1", 5.0), ("b2", 1500.0), ("b2", 20.0)] {
            t.add_keywords(0, [b]);
            t.add_price(1, p);
        }
        let f = t.finish(1);
        assert_eq!(f["brand"], vec![FacetCount { value: "b2".into(), count: 2 }]);
        let prices: Vec<&str> = f["price"].iter().map(|c| c.value.as_str()).collect();
        assert_eq!(prices, ["<10", "10-50", ">=1000"]);
    }

    #[test]
    fn price_buckets_have_inclusive_lower_bounds() {
        assert_eq!(price_bucket(0.0), "<10");
        assert_eq!(price_bucket(10.0), "10-50");
        assert_eq!(price_bucket(999.99), "500-1000");
        assert_eq!(price_bucket(1000.0), ">=1000");
    }

    #[test]
    fn sort_expressions_parse_and_print_back() {
        for s in ["price:asc", "price:desc", "published_at:asc", "published_at:desc"] {
            assert_eq!(s.parse::<SortBy>().unwrap().to_string(), s);
        }
        assert_eq!("price".parse::<SortBy>().unwrap().order, SortOrder::Asc);
        let err = "colour:up".parse::<SortBy>().unwrap_err().to_string();
        assert_eq!(err, format!("expected {SORT_EXPECTED}, found \"colour:up\""));
    }
}
