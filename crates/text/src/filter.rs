//! Translating [`sieve_core::Filter`]s into tantivy queries and per-segment document sets.

use std::ops::Bound;

use sieve_core::{Filter, RangeField, RangeValue, TermField};
use tantivy::query::{AllQuery, BooleanQuery, EnableScoring, Occur, Query, RangeQuery, TermQuery};
use tantivy::schema::{Facet, IndexRecordOption};
use tantivy::{DateTime, DocSet, Searcher, SegmentReader, Term, TERMINATED};

use crate::schema::Fields;

/// The tantivy query matching every document that passes all `filters`.
pub(crate) fn to_query(fields: &Fields, filters: &[Filter]) -> Box<dyn Query> {
    let clauses: Vec<(Occur, Box<dyn Query>)> = filters.iter().map(|f| (Occur::Must, one(fields, f))).collect();
    Box::new(BooleanQuery::new(clauses))
}

fn one(fields: &Fields, filter: &Filter) -> Box<dyn Query> {
    match filter {
        Filter::Term { field, values, negate } => {
            let alternatives: Vec<(Occur, Box<dyn Query>)> = values
                .iter()
                .map(|v| {
                    (
                        Occur::Should,
                        Box::new(TermQuery::new(term(fields, *field, v), IndexRecordOption::Basic)) as Box<dyn Query>,
                    )
                })
                .collect();
            let any = Box::new(BooleanQuery::new(alternatives));
            if *negate {
                Box::new(BooleanQuery::new(vec![(Occur::Must, Box::new(AllQuery)), (Occur::MustNot, any)]))
            } else {
                any
            }
        }
        Filter::Range { field, lower, upper } => {
            let to_term = |v: &RangeValue| match (field, v) {
                (RangeField::Price, RangeValue::Number(n)) => Term::from_field_f64(fields.price, *n),
                (RangeField::PublishedAt, RangeValue::Time(t)) => {
                    Term::from_field_date(fields.published_at, DateTime::from_timestamp_secs(t.unix_seconds()))
                }
                // The parser pairs each field with its own value kind; a mismatched pair matches nothing.
                (RangeField::Price, RangeValue::Time(_)) => Term::from_field_f64(fields.price, f64::NAN),
                (RangeField::PublishedAt, RangeValue::Number(n)) => {
                    Term::from_field_date(fields.published_at, DateTime::from_timestamp_secs(*n as i64))
                }
                (RangeField::Seq, RangeValue::Number(n)) => Term::from_field_u64(fields.seq, n.max(0.0) as u64),
                (RangeField::Seq, RangeValue::Time(_)) => Term::from_field_u64(fields.seq, u64::MAX),
            };
            let map = |b: &Bound<RangeValue>| match b {
                Bound::Included(v) => Bound::Included(to_term(v)),
                Bound::Excluded(v) => Bound::Excluded(to_term(v)),
                Bound::Unbounded => Bound::Unbounded,
            };
            let (lower, upper) = (map(lower), map(upper));
            // tantivy needs the field even when both ends are open: bound it by the type's extremes.
            let (lower, upper) = match (lower, upper) {
                (Bound::Unbounded, Bound::Unbounded) => match field {
                    RangeField::Price => {
                        (Bound::Included(Term::from_field_f64(fields.price, f64::MIN)), Bound::Unbounded)
                    }
                    RangeField::PublishedAt => {
                        (Bound::Included(Term::from_field_date(fields.published_at, DateTime::MIN)), Bound::Unbounded)
                    }
                    RangeField::Seq => (Bound::Included(Term::from_field_u64(fields.seq, 0)), Bound::Unbounded),
                },
                pair => pair,
            };
            Box::new(RangeQuery::new(lower, upper))
        }
    }
}

/// The indexed term a keyword filter value is compared with (see `index::to_tantivy`).
pub(crate) fn term(fields: &Fields, field: TermField, value: &str) -> Term {
    match field {
        TermField::Id => Term::from_field_text(fields.id, value),
        TermField::Brand => Term::from_field_text(fields.brand, &value.to_lowercase()),
        TermField::Source => Term::from_field_text(fields.source_name, &value.to_lowercase()),
        TermField::Lang => Term::from_field_text(fields.lang, &value.to_lowercase().replace('_', "-")),
        TermField::Tags => Term::from_field_text(fields.tags, &value.to_lowercase()),
        TermField::Category => Term::from_facet(fields.category, &category_facet(&value.to_lowercase())),
    }
}

pub(crate) fn category_facet(path: &str) -> Facet {
    let segments: Vec<&str> = path.trim_matches('/').split('/').map(str::trim).collect();
    Facet::from_path(segments)
}

/// A fixed-size bit set over a segment's doc ids.
#[derive(Debug)]
pub(crate) struct DocBits(Vec<u64>);

impl DocBits {
    pub(crate) fn contains(&self, doc: u32) -> bool {
        self.0.get(doc as usize / 64).is_some_and(|w| w & (1 << (doc % 64)) != 0)
    }
}

/// For each segment of `searcher`, the documents matching `query`.
pub(crate) fn matching_docs(searcher: &Searcher, query: &dyn Query) -> tantivy::Result<Vec<DocBits>> {
    let weight = query.weight(EnableScoring::disabled_from_searcher(searcher))?;
    searcher
        .segment_readers()
        .iter()
        .map(|reader: &SegmentReader| {
            let mut bits = vec![0u64; (reader.max_doc() as usize).div_ceil(64)];
            let mut scorer = weight.scorer(reader, 1.0)?;
            let mut doc = scorer.doc();
            while doc != TERMINATED {
                bits[doc as usize / 64] |= 1 << (doc % 64);
                doc = scorer.advance();
            }
            Ok(DocBits(bits))
        })
        .collect()
}
