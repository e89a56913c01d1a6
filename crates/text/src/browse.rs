//! Browsing a whole match set: every document that matches a query (or, for an empty query, every live
//! document), after filters, ordered by a sort key read from the fast-field columns, counted into facets from
//! those columns, and cut to one exact page. What a catalog's "sort by price" and its empty search box need:
//! the set itself, not a candidate window. Also the facet counts of any given list of documents
//! ([`TextIndex::facets_of`]), from the same columns, so both kinds of answer count alike.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use sieve_core::{DocId, FacetCount, FacetField, FacetTally, Filter, Lang, SortBy, SortField, SortOrder};
use tantivy::columnar::{Column, StrColumn};

use crate::expand::{Expansion, Tolerance};
use crate::index::{engine, io_engine, TextError, TextIndex};
use crate::slots::SegmentIds;
use crate::topk::Member;

/// A browse: which documents form the set, how it is ordered, which page and which facets come back.
#[derive(Debug, Clone, Default)]
pub struct BrowseQuery {
    /// The query; blank means every live document (a placeholder search).
    pub text: String,
    pub lang: Option<Lang>,
    /// Every filter must hold, for every member of the set.
    pub filters: Vec<Filter>,
    /// Overrides the index's typo tolerance and prefix matching.
    pub tolerance: Option<Tolerance>,
    /// Embedding slots also in the set (the dense leg's matches above the index's similarity threshold), when
    /// the text is not blank. They pass the filters like the rest.
    pub slots: Vec<u64>,
    /// Documents already ranked by relevance (the fused or reranked candidates), best first: among documents
    /// with equal sort keys they come first, in this order; the rest follow by BM25 score, then id.
    pub ranked: Vec<DocId>,
    /// The order; `None` is relevance for a query and the index's default order (id order when it has none)
    /// for a blank one.
    pub sort: Option<SortBy>,
    pub offset: usize,
    pub k: usize,
    pub facets: Vec<FacetField>,
    /// Values per facet (the most frequent).
    pub facet_size: usize,
}

/// One document of a browsed page.
#[derive(Debug, Clone, PartialEq)]
pub struct BrowseHit {
    pub id: DocId,
    /// Its BM25 score for the query (0 for a blank query, or a document in the set through its embedding only).
    pub bm25: f32,
}

/// The answer to a [`BrowseQuery`].
#[derive(Debug, Clone)]
pub struct BrowseResults {
    /// How many documents the set holds (exact).
    pub total: u64,
    /// The page, in order.
    pub hits: Vec<BrowseHit>,
    /// Counted over the whole set.
    pub facets: BTreeMap<String, Vec<FacetCount>>,
    /// The analyzed query terms.
    pub terms: Vec<String>,
    pub expansions: Vec<Expansion>,
}

/// A member with what orders it.
struct Keyed {
    member: Member,
    key: Option<f64>,
    /// Position among `BrowseQuery::ranked`, or `usize::MAX`.
    ranked: usize,
}

impl TextIndex {
    /// Builds the set of `query`, orders it, counts its facets and returns its page. The order is total (sort
    /// key, with missing values last; then relevance; then id), so pages never overlap or skip.
    pub fn browse(&self, query: &BrowseQuery) -> Result<BrowseResults, TextError> {
        let searcher = self.reader.searcher();
        let blank = query.text.trim().is_empty();
        let (mut members, terms, expansions) = if blank {
            (self.every_live(&searcher, &query.filters)?, Vec::new(), Vec::new())
        } else {
            self.matches(&searcher, &query.text, query.lang.as_ref(), query.tolerance, &query.filters)?
        };
        if !blank && !query.slots.is_empty() {
            self.add_slots(&searcher, &query.filters, &query.slots, &mut members)?;
        }
        let total = members.len() as u64;
        let facets = self.tally(&searcher, &members, &query.facets, query.facet_size)?;

        let sort = query.sort.or(if blank { self.settings.default_sort } else { None });
        let tables = self.id_tables(&searcher, &members)?;
        let id = |m: &Member| tables[m.seg as usize].as_ref().and_then(|t| t.get(m.doc)).unwrap_or("");
        let rank_of: HashMap<&str, usize> = query.ranked.iter().enumerate().map(|(i, d)| (d.as_str(), i)).collect();
        let mut keyed: Vec<Keyed> = Vec::with_capacity(members.len());
        let columns = SortColumns::open(&searcher, sort.map(|s| s.field))?;
        for m in members {
            let key = columns.key(m.seg, m.doc);
            let ranked = rank_of.get(id(&m)).copied().unwrap_or(usize::MAX);
            keyed.push(Keyed { member: m, key, ranked });
        }
        let order = |a: &Keyed, b: &Keyed| {
            let by_key = match (a.key, b.key, sort.map(|s| s.order)) {
                (Some(x), Some(y), Some(SortOrder::Desc)) => y.total_cmp(&x),
                (Some(x), Some(y), _) => x.total_cmp(&y),
                (Some(_), None, _) => std::cmp::Ordering::Less,
                (None, Some(_), _) => std::cmp::Ordering::Greater,
                (None, None, _) => std::cmp::Ordering::Equal,
            };
            by_key
                .then_with(|| a.ranked.cmp(&b.ranked))
                .then_with(|| b.member.score.total_cmp(&a.member.score))
                .then_with(|| id(&a.member).cmp(id(&b.member)))
        };
        let end = (query.offset + query.k).min(keyed.len());
        if end == 0 || query.offset >= keyed.len() {
            keyed.clear();
        } else {
            if end < keyed.len() {
                keyed.select_nth_unstable_by(end - 1, order);
                keyed.truncate(end);
            }
            keyed.sort_by(order);
            keyed.drain(..query.offset);
        }
        let hits = keyed
            .iter()
            .map(|k| {
                let raw = id(&k.member);
                let id = DocId::parse(raw, usize::MAX).map_err(|e| TextError::CorruptDocument {
                    address: format!("segment {}, doc {}", k.member.seg, k.member.doc),
                    message: e.to_string(),
                })?;
                Ok(BrowseHit { id, bm25: k.member.score })
            })
            .collect::<Result<Vec<_>, TextError>>()?;
        Ok(BrowseResults { total, hits, facets, terms, expansions })
    }

    /// The facet counts of these documents (the live ones among them), from the index's columns: the same
    /// counting as [`TextIndex::browse`]'s, for an answer ranked elsewhere (the relevance candidates).
    pub fn facets_of(
        &self,
        ids: &[DocId],
        fields: &[FacetField],
        max_values: usize,
    ) -> Result<BTreeMap<String, Vec<FacetCount>>, TextError> {
        let searcher = self.reader.searcher();
        let mut members = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some((seg, doc)) = self.address_of(&searcher, id.as_str())? {
                members.push(Member { seg, doc, score: 0.0 });
            }
        }
        self.tally(&searcher, &members, fields, max_values)
    }

    /// Every live document that passes `filters`.
    fn every_live(&self, searcher: &tantivy::Searcher, filters: &[Filter]) -> Result<Vec<Member>, TextError> {
        let bits = self.filter_bits(searcher, filters)?;
        let mut out = Vec::new();
        for (seg, segment) in searcher.segment_readers().iter().enumerate() {
            for doc in segment.doc_ids_alive() {
                if bits.as_ref().is_none_or(|b| b[seg].contains(doc)) {
                    out.push(Member { seg: seg as u32, doc, score: 0.0 });
                }
            }
        }
        Ok(out)
    }

    /// Adds the live documents whose embedding slot is in `slots` (sorted or not) and that pass `filters`,
    /// unless already members.
    fn add_slots(
        &self,
        searcher: &tantivy::Searcher,
        filters: &[Filter],
        slots: &[u64],
        members: &mut Vec<Member>,
    ) -> Result<(), TextError> {
        let wanted: std::collections::HashSet<u64> = slots.iter().copied().collect();
        let present: std::collections::HashSet<(u32, u32)> = members.iter().map(|m| (m.seg, m.doc)).collect();
        let bits = self.filter_bits(searcher, filters)?;
        for (seg, segment) in searcher.segment_readers().iter().enumerate() {
            let Ok(vids) = segment.fast_fields().u64("_vid") else { continue };
            for doc in segment.doc_ids_alive() {
                let Some(slot) = vids.first(doc) else { continue };
                if wanted.contains(&slot)
                    && !present.contains(&(seg as u32, doc))
                    && bits.as_ref().is_none_or(|b| b[seg].contains(doc))
                {
                    members.push(Member { seg: seg as u32, doc, score: 0.0 });
                }
            }
        }
        Ok(())
    }

    fn id_tables(
        &self,
        searcher: &tantivy::Searcher,
        members: &[Member],
    ) -> Result<Vec<Option<Arc<SegmentIds>>>, TextError> {
        let mut tables: Vec<Option<Arc<SegmentIds>>> = vec![None; searcher.segment_readers().len()];
        for m in members {
            if tables[m.seg as usize].is_none() {
                tables[m.seg as usize] = Some(self.segment_ids(searcher, m.seg)?);
            }
        }
        Ok(tables)
    }

    /// Counts `fields` over `members` from the columns: brand, source, tags and lang as indexed (lowercased;
    /// a language tag counts as written, `zh-CN`, not also as its primary subtag), every level of the category,
    /// price in ranges.
    fn tally(
        &self,
        searcher: &tantivy::Searcher,
        members: &[Member],
        fields: &[FacetField],
        max_values: usize,
    ) -> Result<BTreeMap<String, Vec<FacetCount>>, TextError> {
        if fields.is_empty() {
            return Ok(BTreeMap::new());
        }
        let mut tally = FacetTally::new(fields);
        let segments = searcher.segment_readers();
        let mut by_segment: Vec<Vec<u32>> = vec![Vec::new(); segments.len()];
        for m in members {
            by_segment[m.seg as usize].push(m.doc);
        }
        let mut values: Vec<String> = Vec::new();
        for (segment, docs) in segments.iter().zip(&by_segment) {
            if docs.is_empty() {
                continue;
            }
            let ff = segment.fast_fields();
            let column = |name: &str| -> Result<Option<StrColumn>, TextError> {
                ff.str(name).map_err(engine("read facet values"))
            };
            let columns: Vec<Option<StrColumn>> = fields
                .iter()
                .map(|f| match f {
                    FacetField::Brand => column("brand"),
                    FacetField::Category => column("category"),
                    FacetField::Source => column("source"),
                    FacetField::Lang => column("lang"),
                    FacetField::Tags => column("tags"),
                    FacetField::Price => Ok(None),
                })
                .collect::<Result<_, _>>()?;
            let price: Option<Column<f64>> = ff.f64("price").ok();
            for &doc in docs {
                for (i, field) in fields.iter().enumerate() {
                    if *field == FacetField::Price {
                        if let Some(p) = price.as_ref().and_then(|c| c.first(doc)) {
                            tally.add_price(i, p);
                        }
                        continue;
                    }
                    let Some(col) = &columns[i] else { continue };
                    values.clear();
                    for ord in col.term_ords(doc) {
                        let mut s = String::new();
                        if col.ord_to_str(ord, &mut s).map_err(io_engine("read facet values"))? {
                            values.push(s);
                        }
                    }
                    match field {
                        FacetField::Category => {
                            for v in &values {
                                // a facet's path is stored with NUL between its segments
                                tally.add_category(i, &v.replace('\0', "/"));
                            }
                        }
                        FacetField::Lang => {
                            // the full tag and its primary subtag are both indexed (for filters): count the tag
                            let tag = values.iter().max_by_key(|v| v.len());
                            tally.add_keywords(i, tag.map(String::as_str));
                        }
                        _ => tally.add_keywords(i, values.iter().map(String::as_str)),
                    }
                }
            }
        }
        Ok(tally.finish(max_values))
    }
}

/// The sort key's column in every segment.
struct SortColumns {
    price: Vec<Option<Column<f64>>>,
    date: Vec<Option<Column<tantivy::DateTime>>>,
}

impl SortColumns {
    fn open(searcher: &tantivy::Searcher, field: Option<SortField>) -> Result<SortColumns, TextError> {
        let mut out = SortColumns { price: Vec::new(), date: Vec::new() };
        for segment in searcher.segment_readers() {
            let ff = segment.fast_fields();
            out.price.push(if field == Some(SortField::Price) { ff.f64("price").ok() } else { None });
            out.date.push(if field == Some(SortField::PublishedAt) { ff.date("published_at").ok() } else { None });
        }
        Ok(out)
    }

    fn key(&self, seg: u32, doc: u32) -> Option<f64> {
        let seg = seg as usize;
        if let Some(c) = &self.price[seg] {
            return c.first(doc).filter(|p| p.is_finite());
        }
        if let Some(c) = &self.date[seg] {
            return c.first(doc).map(|d| d.into_timestamp_secs() as f64);
        }
        None
    }
}
