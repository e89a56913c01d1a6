//! Facets and sorting over the final ranked set: pure functions of the ranked documents, so the counts a
//! client sees describe what the ranking actually returned (after fusion and reranking), not the raw matches.

use std::collections::{BTreeMap, HashMap};

use sieve_core::{Document, FacetCount, FacetField, SortBy, SortField, SortOrder};

/// Upper bounds (exclusive) of the price facet's ranges; the last range is open.
pub const PRICE_RANGES: [f64; 6] = [10.0, 50.0, 100.0, 250.0, 500.0, 1000.0];

fn price_bucket(p: f64) -> String {
    let i = PRICE_RANGES.partition_point(|&b| b <= p);
    match i {
        0 => format!("<{}", PRICE_RANGES[0]),
        i if i == PRICE_RANGES.len() => format!(">={}", PRICE_RANGES[i - 1]),
        i => format!("{}-{}", PRICE_RANGES[i - 1], PRICE_RANGES[i]),
    }
}

fn values(doc: &Document, field: FacetField) -> Vec<String> {
    match field {
        FacetField::Brand => doc.brand.iter().map(|b| b.trim().to_lowercase()).filter(|b| !b.is_empty()).collect(),
        FacetField::Category => doc
            .category
            .as_ref()
            .map(|c| (1..=c.segments().len()).map(|n| c.segments()[..n].join("/")).collect())
            .unwrap_or_default(),
        FacetField::Source => doc.source.iter().cloned().collect(),
        FacetField::Lang => doc.lang.iter().map(|l| l.as_str().to_owned()).collect(),
        FacetField::Tags => {
            let mut t: Vec<String> = doc.tags.clone();
            t.sort();
            t.dedup();
            t
        }
        FacetField::Price => doc.price.filter(|p| p.is_finite()).map(price_bucket).into_iter().collect(),
    }
}

/// Counts each field's values over `docs`; per field the `max_values` most frequent (ties by value), price
/// ranges in ascending order instead.
pub fn facet_counts(docs: &[&Document], fields: &[FacetField], max_values: usize) -> BTreeMap<String, Vec<FacetCount>> {
    let mut out = BTreeMap::new();
    for &field in fields {
        let mut counts: HashMap<String, usize> = HashMap::new();
        for doc in docs {
            for v in values(doc, field) {
                *counts.entry(v).or_default() += 1;
            }
        }
        let mut list: Vec<FacetCount> = counts.into_iter().map(|(value, count)| FacetCount { value, count }).collect();
        if field == FacetField::Price {
            let lower = |v: &str| -> f64 {
                v.trim_start_matches(['<', '>', '=']).split('-').next().and_then(|x| x.parse().ok()).unwrap_or(0.0)
                    + if v.starts_with('<') { -1.0 } else { 0.0 }
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

fn sort_key(doc: Option<&Document>, field: SortField) -> Option<f64> {
    let doc = doc?;
    match field {
        SortField::Price => doc.price.filter(|p| p.is_finite()),
        SortField::PublishedAt => doc.published_at.map(|t| t.unix_nanos() as f64),
    }
}

/// The order (indices into `docs`) `sort` gives a relevance-ranked list: stable, missing values last.
pub fn sort_order(docs: &[Option<&Document>], sort: SortBy) -> Vec<usize> {
    let keys: Vec<Option<f64>> = docs.iter().map(|d| sort_key(*d, sort.field)).collect();
    let mut idx: Vec<usize> = (0..docs.len()).collect();
    idx.sort_by(|&a, &b| match (keys[a], keys[b]) {
        (Some(x), Some(y)) => match sort.order {
            SortOrder::Asc => x.total_cmp(&y),
            SortOrder::Desc => y.total_cmp(&x),
        },
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    });
    idx
}

#[cfg(test)]
mod tests {
    use super::*;
    use sieve_core::{Category, DocId};

    fn doc(id: &str, brand: Option<&str>, category: Option<&str>, price: Option<f64>, tags: &[&str]) -> Document {
        let mut d = Document::new(DocId::parse(id, 64).unwrap(), id, "");
        d.brand = brand.map(Into::into);
        d.category = category.map(|c| Category::parse(c).unwrap());
        d.price = price;
        d.tags = tags.iter().map(|t| t.to_string()).collect();
        d
    }

    #[test]
    fn counts_cover_every_ranked_document_and_each_category_level() {
        let docs = [
            doc("a", Some("Sony"), Some("audio/headphones"), Some(99.0), &["x", "x", "y"]),
            doc("b", Some("sony "), Some("audio/speakers"), Some(10.0), &["y"]),
            doc("c", Some("Bose"), Some("audio/headphones"), Some(2000.0), &[]),
            doc("d", None, None, None, &[]),
        ];
        let refs: Vec<&Document> = docs.iter().collect();
        let f =
            facet_counts(&refs, &[FacetField::Brand, FacetField::Category, FacetField::Tags, FacetField::Price], 10);
        let pairs = |k: &str| f[k].iter().map(|c| (c.value.as_str(), c.count)).collect::<Vec<_>>();
        assert_eq!(pairs("brand"), vec![("sony", 2), ("bose", 1)]);
        assert_eq!(pairs("category"), vec![("audio", 3), ("audio/headphones", 2), ("audio/speakers", 1)]);
        assert_eq!(pairs("tags"), vec![("y", 2), ("x", 1)], "a tag counts once per document");
        assert_eq!(pairs("price"), vec![("10-50", 1), ("50-100", 1), (">=1000", 1)]);
    }

    #[test]
    fn max_values_keeps_the_most_frequent() {
        let docs = [
            doc("a", Some("b1"), None, None, &[]),
            doc("b", Some("b2"), None, None, &[]),
            doc("c", Some("b2"), None, None, &[]),
        ];
        let refs: Vec<&Document> = docs.iter().collect();
        let f = facet_counts(&refs, &[FacetField::Brand], 1);
        assert_eq!(f["brand"], vec![FacetCount { value: "b2".into(), count: 2 }]);
    }

    #[test]
    fn price_buckets_have_inclusive_lower_bounds() {
        assert_eq!(price_bucket(0.0), "<10");
        assert_eq!(price_bucket(10.0), "10-50");
        assert_eq!(price_bucket(999.99), "500-1000");
        assert_eq!(price_bucket(1000.0), ">=1000");
    }

    #[test]
    fn sorting_is_stable_and_puts_missing_values_last() {
        let docs = [
            doc("a", None, None, Some(5.0), &[]),
            doc("b", None, None, None, &[]),
            doc("c", None, None, Some(1.0), &[]),
            doc("d", None, None, Some(5.0), &[]),
        ];
        let refs: Vec<Option<&Document>> = docs.iter().map(Some).collect();
        let asc = SortBy { field: SortField::Price, order: SortOrder::Asc };
        assert_eq!(sort_order(&refs, asc), vec![2, 0, 3, 1]);
        let desc = SortBy { field: SortField::Price, order: SortOrder::Desc };
        assert_eq!(sort_order(&refs, desc), vec![0, 3, 2, 1]);
        let mut with_gap = refs.clone();
        with_gap[0] = None;
        assert_eq!(sort_order(&with_gap, asc), vec![2, 3, 0, 1]);
    }
}
