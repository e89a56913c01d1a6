//! The BM25 scorer: exact top-k over tantivy's postings, term at a time with upper-bound pruning. Terms are
//! taken in decreasing bound `idf·(k1+1)`; once the bounds of the terms left cannot lift an unseen document
//! past the k-th score, the rest are scored only for the candidates that still can (`exhaustive` turns this
//! off). Ties at the k-th score are settled by id, so results do not depend on segment layout. The per-field
//! BM25F math is `bm25.rs`.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::time::Instant;

use sieve_core::{Bm25Score, DocId, Filter, Hit, Lang, ScoreBreakdown, StageTiming};
use tantivy::fieldnorm::FieldNormReader;
use tantivy::schema::IndexRecordOption;
use tantivy::{DocAddress, DocSet, Term, TERMINATED};

use crate::analyzer::Analysis;
use crate::bm25::{self, Bm25Params};
use crate::expand::{self, Dictionary, Expansion, ExpansionKind, Tolerance};
use crate::filter::DocBits;
use crate::schema::TEXT_FIELDS;

use crate::index::{engine, io_engine, FieldBoosts, TextError, TextIndex};
use crate::slots::SegmentIds;

/// A BM25 query.
#[derive(Debug, Clone)]
pub struct Bm25Query {
    pub text: String,
    /// How many hits to return.
    pub k: usize,
    /// Every filter must hold.
    pub filters: Vec<Filter>,
    /// Language of the query text, when known (selects bigram analysis for `ja`/`ko`).
    pub lang: Option<Lang>,
    /// Overrides the index's BM25 parameters.
    pub params: Option<Bm25Params>,
    /// Overrides the index's field boosts.
    pub boosts: Option<FieldBoosts>,
    /// Load the stored documents into the hits.
    pub with_documents: bool,
    /// Score every posting of every term instead of pruning what cannot reach the top k (same hits; makes
    /// `matched` exact).
    pub exhaustive: bool,
    /// Overrides the index's typo tolerance and prefix matching.
    pub tolerance: Option<Tolerance>,
}

impl Bm25Query {
    pub fn new(text: impl Into<String>, k: usize) -> Bm25Query {
        Bm25Query {
            text: text.into(),
            k,
            filters: Vec::new(),
            lang: None,
            params: None,
            boosts: None,
            with_documents: true,
            exhaustive: false,
            tolerance: None,
        }
    }
}

/// A document that carries product codes of a query (see [`TextIndex::code_carriers`]).
#[derive(Debug, Clone, PartialEq)]
pub struct CodeCarrier {
    pub id: DocId,
    /// The query's codes it carries.
    pub codes: Vec<String>,
    /// Σ (1 + chars / 100) / (documents carrying the code) over its codes.
    pub weight: f32,
}

/// A term that can name one product: a model number of 5 characters or more with letters and at least two
/// digits (`pslx350h`, `7737a001`, `dscw120`), or a part number of 6 digits or more (`0100057730`). Shorter
/// codes, codes with one digit and measures (a number and a unit of up to 4 letters) are words of the trade
/// (`ipv6`, `mp3`, `python3`, `h264`, `64bit`, `1080p`), which many documents name without being them.
pub fn is_product_code(t: &str) -> bool {
    let n = t.chars().count();
    let digits = t.chars().filter(|c| c.is_ascii_digit()).count();
    // a number with a unit is a measure (`64bit`, `1080p`, `500gb`, `120hz`), not a model
    let letters_after = t.trim_start_matches(|c: char| c.is_ascii_digit());
    let measure =
        letters_after.len() < t.len() && letters_after.chars().all(char::is_alphabetic) && letters_after.len() <= 4;
    (expand::is_code(t) && n >= 5 && digits >= 2 && !measure) || (n >= 6 && digits == n)
}

/// The answer to a [`Bm25Query`].
#[derive(Debug, Clone)]
pub struct Bm25Results {
    pub hits: Vec<Hit>,
    /// Documents that matched at least one query term and passed the filters. When `pruned`, documents that
    /// matched only terms too weak to lift them into the top k were skipped, and this is a lower bound.
    pub matched: u64,
    /// Top-k pruning skipped postings that could not change the result (the hits are exact either way).
    pub pruned: bool,
    /// The analyzed query terms.
    pub terms: Vec<String>,
    /// The typo corrections and prefix completions the query was expanded with.
    pub expansions: Vec<Expansion>,
    pub timings: Vec<StageTiming>,
}

impl TextIndex {
    /// Runs a BM25 query: analyze, score every posting of every query term (term at a time), filter, keep the
    /// top `k`.
    pub fn search(&self, query: &Bm25Query) -> Result<Bm25Results, TextError> {
        let started = Instant::now();
        let params = query.params.unwrap_or(self.settings.bm25).validate()?;
        let boosts = query.boosts.unwrap_or(self.settings.boosts);
        let analysis = Analysis::for_lang(query.lang.as_ref().map(Lang::primary));
        let mut terms = self.analyzer.terms(&query.text, analysis);
        dedup_in_order(&mut terms);
        let analyzed = Instant::now();

        let searcher = self.reader.searcher();
        let tolerance = query.tolerance.unwrap_or(self.settings.tolerance);
        let (prep, expansions) =
            self.prepare(&searcher, &terms, &query.text, &tolerance, params, boosts, &query.filters)?;
        let prepared = Instant::now();

        let mut top = TopK::new(query.k);
        let mut pruned = false;
        if !prep.terms.is_empty() {
            for (seg_ord, segment) in searcher.segment_readers().iter().enumerate() {
                pruned |= self.score_segment(seg_ord, segment, &prep, query, &mut top)?;
            }
        }
        let matched = top.matched;
        let mut ranked = top.into_ranked();
        self.rank_by_score_then_id(&searcher, &mut ranked, query.k)?;
        let scored = Instant::now();

        let hits = self.hits(&searcher, &ranked, query.with_documents)?;
        let fetched = Instant::now();
        let us = |a: Instant, b: Instant| b.duration_since(a).as_micros() as u64;
        let timings = vec![
            StageTiming { stage: "analyze".into(), micros: us(started, analyzed) },
            StageTiming { stage: "stats".into(), micros: us(analyzed, prepared) },
            StageTiming { stage: "bm25".into(), micros: us(prepared, scored) },
            StageTiming { stage: "fetch".into(), micros: us(scored, fetched) },
        ];
        Ok(Bm25Results { hits, matched, pruned, terms, expansions, timings })
    }

    /// The documents that carry a product code of `text` exactly in their title, best first. A code is an
    /// analyzed query term that [`is_product_code`] (`PS-LX350H` gives `pslx350h` and its part `lx350h`;
    /// `010-00577-30` gives `0100057730`); a code more than `max_carriers`
    /// documents carry identifies nothing and is ignored. A document's weight is the sum, over the codes it
    /// carries, of (1 + chars / 100) / (documents carrying that code): one code only it carries outweighs
    /// several shared ones, and of two codes carried alike the longer (more specific) one weighs a little more.
    /// Exact terms only, no typo or prefix expansion; codes as written (`Analyzer::written_terms`).
    pub fn code_carriers(
        &self,
        text: &str,
        lang: Option<&Lang>,
        filters: &[Filter],
        max_carriers: usize,
    ) -> Result<Vec<CodeCarrier>, TextError> {
        let mut codes = self.analyzer.written_terms(text, Analysis::for_lang(lang.map(Lang::primary)));
        codes.retain(|t| is_product_code(t));
        dedup_in_order(&mut codes);
        let mut carriers: Vec<CodeCarrier> = Vec::new();
        for code in codes {
            let mut q = Bm25Query::new(code.clone(), max_carriers + 1);
            q.filters = filters.to_vec();
            q.with_documents = false;
            q.exhaustive = true;
            q.tolerance = Some(Tolerance::EXACT);
            // a product's own code is in its title; a body that names codes lists what it fits
            q.boosts = Some(FieldBoosts { title: 1.0, body: 0.0 });
            let found = self.search(&q)?;
            if found.hits.len() > max_carriers {
                continue;
            }
            // 1 / carriers; a longer code (`dscw120p` against `dscw120`) is a little more specific
            let weight = (1.0 + 0.01 * code.chars().count() as f32) / found.hits.len() as f32;
            for hit in found.hits {
                match carriers.iter_mut().find(|c| c.id == hit.id) {
                    Some(c) => {
                        c.codes.push(code.clone());
                        c.weight += weight;
                    }
                    None => carriers.push(CodeCarrier { id: hit.id, codes: vec![code.clone()], weight }),
                }
            }
        }
        carriers.sort_by(|a, b| b.weight.total_cmp(&a.weight).then_with(|| a.id.cmp(&b.id)));
        Ok(carriers)
    }

    /// Collection statistics: each field's average length; each term's idf (max df over fields) and the
    /// fields it occurs in; the typo corrections and prefix completions (`expand.rs`) as terms of their own; the
    /// filters as per-segment bit sets; the terms in scoring order with their bounds.
    #[allow(clippy::too_many_arguments)]
    fn prepare(
        &self,
        searcher: &tantivy::Searcher,
        terms: &[String],
        text: &str,
        tolerance: &Tolerance,
        params: Bm25Params,
        boosts: FieldBoosts,
        filters: &[Filter],
    ) -> Result<(Prepared, Vec<Expansion>), TextError> {
        let segments = searcher.segment_readers();
        let total_docs: u64 = segments.iter().map(|s| s.max_doc() as u64).sum();
        let fields = self.fields.text_fields();
        let field_boosts = [boosts.title, boosts.body];
        let mut avgdl = [0f32; 2];
        for (f, &field) in fields.iter().enumerate() {
            let mut tokens = 0u64;
            for s in segments {
                tokens += s.inverted_index(field).map_err(engine("read postings"))?.total_num_tokens();
            }
            avgdl[f] = if total_docs > 0 { tokens as f32 / total_docs as f32 } else { 0.0 };
        }
        let dict = Dictionary { searcher, fields };
        // the group of indexed terms one query word stands for, per field, with the largest df among them
        let group = |words: &[(String, u64)]| -> Result<(u64, [Vec<Term>; 2]), TextError> {
            let mut per_field: [Vec<Term>; 2] = [Vec::new(), Vec::new()];
            let mut df = 0u64;
            for (word, _) in words {
                for (f, &field) in fields.iter().enumerate() {
                    let term = Term::from_field_text(field, word);
                    let field_df = searcher.doc_freq(&term).map_err(engine("read postings"))?;
                    if field_df > 0 && field_boosts[f] > 0.0 {
                        df = df.max(field_df);
                        per_field[f].push(term);
                    }
                }
            }
            Ok((df, per_field))
        };
        let mut query_terms: Vec<(f32, [Vec<Term>; 2])> = Vec::with_capacity(terms.len());
        let mut expansions = Vec::new();
        let mut typed = if tolerance.prefix { expand::typed_word(text) } else { None };
        for t in terms {
            let (df, per_field) = group(&[(t.clone(), 0)])?;
            let exact_idf = (df > 0).then(|| bm25::idf(total_docs, df));
            if let Some(idf) = exact_idf {
                query_terms.push((idf, per_field));
            } else {
                let fixes = expand::corrections(&dict, t, tolerance, terms)?;
                let (df, per_field) = group(&fixes)?;
                if df > 0 {
                    query_terms.push((expand::TYPO_WEIGHT * bm25::idf(total_docs, df), per_field));
                    expansions.push(Expansion {
                        word: t.clone(),
                        kind: ExpansionKind::Typo,
                        terms: fixes.into_iter().map(|f| f.0).collect(),
                    });
                }
            }
            // product codes complete as prefixes wherever they stand in the query
            if tolerance.prefix && expand::is_code(t) && t.chars().count() >= 4 {
                if typed.as_deref() == Some(t.as_str()) {
                    typed = None;
                }
                let args: (&Dictionary<'_>, u64, &GroupOf<'_>) = (&dict, total_docs, &group);
                push_completions(args, t, exact_idf, terms, &mut query_terms, &mut expansions)?;
            }
        }
        if let Some(word) = typed {
            let (df, _) = group(&[(word.clone(), 0)])?;
            let exact_idf = (df > 0).then(|| bm25::idf(total_docs, df));
            let args: (&Dictionary<'_>, u64, &GroupOf<'_>) = (&dict, total_docs, &group);
            push_completions(args, &word, exact_idf, terms, &mut query_terms, &mut expansions)?;
        }
        let filter_bits = self.filter_bits(searcher, filters)?;
        // Terms by upper bound, highest first; rest[i] bounds what terms i.. can still add to any document.
        // BM25F saturation never exceeds k1 + 1, so idf·(k1 + 1) bounds a term's contribution.
        let mut order: Vec<usize> = (0..query_terms.len()).collect();
        order.sort_by(|&a, &b| query_terms[b].0.total_cmp(&query_terms[a].0));
        let mut rest = vec![0f32; order.len() + 1];
        for i in (0..order.len()).rev() {
            rest[i] = rest[i + 1] + query_terms[order[i]].0 * (params.k1 + 1.0);
        }
        Ok((Prepared { params, field_boosts, avgdl, terms: query_terms, order, rest, filter_bits }, expansions))
    }

    /// Scores one segment into `top`: phase 1 walks every posting of the terms with the highest bounds; once the
    /// bounds of the terms left cannot lift an unseen document past θ (a lower bound of the final k-th score),
    /// phase 2 scores only the documents that can still reach it, seeking their postings. Returns whether it
    /// pruned.
    fn score_segment(
        &self,
        seg_ord: usize,
        segment: &tantivy::SegmentReader,
        prep: &Prepared,
        query: &Bm25Query,
        top: &mut TopK,
    ) -> Result<bool, TextError> {
        let k = query.k;
        let mut scratch = SCRATCH.with(|s| std::mem::take(&mut *s.borrow_mut()));
        scratch.prepare(segment.max_doc() as usize);
        let Scratch { acc, touched, term_touched, threshold_buf, .. } = &mut scratch;
        let postings = SegmentPostings::open(&self.fields, segment, prep)?;
        let bits: Option<&DocBits> = prep.filter_bits.as_ref().map(|b| &b[seg_ord]);
        let eligible = |doc: u32| !segment.is_deleted(doc) && bits.is_none_or(|b| b.contains(doc));
        let (order, params) = (&prep.order, prep.params);
        let mut pruned = false;
        let mut next = 0;
        while next < order.len() {
            let (idf, per_field) = &prep.terms[order[next]];
            term_touched.clear();
            postings.add_all(per_field, acc, term_touched)?;
            add_term_scores(acc, term_touched, touched, *idf, params.k1, true);
            next += 1;
            if query.exhaustive || next == order.len() || k == 0 {
                continue;
            }
            let global = top.worst().unwrap_or(f32::MIN);
            let local =
                kth_best(touched.iter().filter(|&&d| eligible(d)).map(|&d| acc[d as usize].total), k, threshold_buf);
            let theta = global.max(local.unwrap_or(f32::MIN));
            if theta > f32::MIN && prep.rest[next] < theta * (1.0 - 1e-5) {
                pruned = true;
                let margin = theta * (1.0 - 1e-5) - prep.rest[next];
                let mut candidates: Vec<u32> =
                    touched.iter().copied().filter(|&d| eligible(d) && acc[d as usize].total >= margin).collect();
                candidates.sort_unstable();
                for &t in &order[next..] {
                    let (idf, per_field) = &prep.terms[t];
                    term_touched.clear();
                    postings.add_candidates(per_field, &candidates, acc, term_touched)?;
                    add_term_scores(acc, term_touched, touched, *idf, params.k1, false);
                }
                break;
            }
        }
        for &doc in scratch.touched.iter() {
            if eligible(doc) {
                let a = scratch.acc[doc as usize];
                top.offer(Ranked { score: a.total, seg: seg_ord as u32, doc, title: a.title });
            }
        }
        scratch.clear();
        SCRATCH.with(|s| *s.borrow_mut() = scratch);
        Ok(pruned)
    }

    /// The ranked documents as hits, with each field's share of the score, and their ids (or documents).
    fn hits(
        &self,
        searcher: &tantivy::Searcher,
        ranked: &[Ranked],
        with_documents: bool,
    ) -> Result<Vec<Hit>, TextError> {
        let mut hits = Vec::with_capacity(ranked.len());
        let mut ids = if with_documents { Vec::new() } else { self.ids_of(searcher, ranked)? }.into_iter();
        for (i, r) in ranked.iter().enumerate() {
            let parts = [r.title, (r.score - r.title).max(0.0)];
            let fields: Vec<(String, f32)> =
                TEXT_FIELDS.iter().zip(parts).filter(|(_, s)| *s > 0.0).map(|(n, s)| ((*n).to_owned(), s)).collect();
            let (id, document) = if with_documents {
                let doc = self.load(DocAddress::new(r.seg, r.doc))?;
                (doc.id.clone(), Some(Box::new(doc)))
            } else {
                (ids.next().expect("one id per ranked hit"), None)
            };
            let rank = i as u32 + 1;
            hits.push(Hit {
                id,
                rank,
                score: r.score,
                scores: ScoreBreakdown { bm25: Some(Bm25Score { score: r.score, rank, fields }), ..Default::default() },
                document,
            });
        }
        Ok(hits)
    }

    /// The best `k` of `ranked`, best score first, equal scores in id order (bytewise), so that a result does
    /// not depend on segment layout: the same documents rank the same before and after a merge, or in an index
    /// built in another order.
    fn rank_by_score_then_id(
        &self,
        searcher: &tantivy::Searcher,
        ranked: &mut Vec<Ranked>,
        k: usize,
    ) -> Result<(), TextError> {
        let mut tables: Vec<Option<Arc<SegmentIds>>> = vec![None; searcher.segment_readers().len()];
        for r in ranked.iter() {
            if tables[r.seg as usize].is_none() {
                tables[r.seg as usize] = Some(self.segment_ids(searcher, r.seg)?);
            }
        }
        let id = |r: &Ranked| tables[r.seg as usize].as_ref().and_then(|t| t.get(r.doc)).unwrap_or("");
        let order = |a: &Ranked, b: &Ranked| b.score.total_cmp(&a.score).then_with(|| id(a).cmp(id(b)));
        if k == 0 {
            ranked.clear();
        } else if ranked.len() > k {
            // (many documents can tie at the k-th score: pick the k first in linear time, then sort those)
            ranked.select_nth_unstable_by(k - 1, order);
            ranked.truncate(k);
        }
        ranked.sort_by(order);
        Ok(())
    }

    /// The ids of ranked documents, from the per-segment id tables (no document-store read).
    fn ids_of(&self, searcher: &tantivy::Searcher, ranked: &[Ranked]) -> Result<Vec<DocId>, TextError> {
        ranked
            .iter()
            .map(|r| {
                let table = self.segment_ids(searcher, r.seg)?;
                let corrupt = |message: &str| TextError::CorruptDocument {
                    address: format!("{:?}", DocAddress::new(r.seg, r.doc)),
                    message: message.into(),
                };
                let id = table.get(r.doc).ok_or_else(|| corrupt("document has no id"))?;
                DocId::parse(id, usize::MAX).map_err(|e| corrupt(&e.to_string()))
            })
            .collect()
    }
}

/// What every segment's scoring shares: the parameters, the fields' average lengths, the query's terms with
/// their idf, the order they are scored in and the bounds of what the terms after each can add.
struct Prepared {
    params: Bm25Params,
    field_boosts: [f32; 2],
    avgdl: [f32; 2],
    terms: Vec<(f32, [Vec<Term>; 2])>,
    order: Vec<usize>,
    rest: Vec<f32>,
    filter_bits: Option<Vec<DocBits>>,
}

/// One segment's postings and field lengths for the two text fields, with `weight_f / (1 − b + b·len/avgdl_f)`
/// precomputed for every encoded field length.
struct SegmentPostings {
    tf_scale: [[f32; 256]; 2],
    readers: Vec<(Arc<tantivy::InvertedIndexReader>, FieldNormReader)>,
}

impl SegmentPostings {
    fn open(
        fields: &crate::schema::Fields,
        segment: &tantivy::SegmentReader,
        prep: &Prepared,
    ) -> Result<SegmentPostings, TextError> {
        let mut tf_scale = [[0f32; 256]; 2];
        let mut readers = Vec::with_capacity(2);
        for (f, &field) in fields.text_fields().iter().enumerate() {
            for (id, slot) in tf_scale[f].iter_mut().enumerate() {
                let len = FieldNormReader::id_to_fieldnorm(id as u8) as f32;
                let norm = bm25::length_norm(prep.params.b, len, prep.avgdl[f]);
                *slot = bm25::field_tf(prep.field_boosts[f], 1.0, norm);
            }
            let inverted = segment.inverted_index(field).map_err(engine("read postings"))?;
            let norms: FieldNormReader = segment.get_fieldnorms_reader(field).map_err(engine("read field lengths"))?;
            readers.push((inverted, norms));
        }
        Ok(SegmentPostings { tf_scale, readers })
    }

    /// Phase 1: every posting of one term, whole decoded blocks of (doc, tf) at a time, into the accumulators
    /// (deleted documents are dropped later).
    fn add_all(&self, per_field: &[Vec<Term>; 2], acc: &mut [Acc], touched: &mut Vec<u32>) -> Result<(), TextError> {
        // a group's terms add their tf into one pseudo-frequency (an expansion scores as one term)
        for (f, term) in per_field.iter().enumerate().flat_map(|(f, ts)| ts.iter().map(move |t| (f, t))) {
            let (inverted, norms) = &self.readers[f];
            let Some(mut block) =
                inverted.read_block_postings(term, IndexRecordOption::WithFreqs).map_err(io_engine("read postings"))?
            else {
                continue;
            };
            let scale = &self.tf_scale[f];
            loop {
                let docs = block.docs();
                if docs.is_empty() {
                    break;
                }
                for (&doc, &tf) in docs.iter().zip(block.freqs()) {
                    let a = &mut acc[doc as usize];
                    if a.pseudo == [0.0, 0.0] {
                        touched.push(doc);
                    }
                    a.pseudo[f] += tf as f32 * scale[norms.fieldnorm_id(doc) as usize];
                }
                block.advance();
            }
        }
        Ok(())
    }

    /// Phase 2: one term's postings of the sorted `candidates` only, by seeking.
    fn add_candidates(
        &self,
        per_field: &[Vec<Term>; 2],
        candidates: &[u32],
        acc: &mut [Acc],
        touched: &mut Vec<u32>,
    ) -> Result<(), TextError> {
        for (f, term) in per_field.iter().enumerate().flat_map(|(f, ts)| ts.iter().map(move |t| (f, t))) {
            let (inverted, norms) = &self.readers[f];
            let Some(mut postings) =
                inverted.read_postings(term, IndexRecordOption::WithFreqs).map_err(io_engine("read postings"))?
            else {
                continue;
            };
            for &c in candidates {
                let mut doc = postings.doc();
                if doc < c {
                    doc = postings.seek(c);
                }
                if doc == TERMINATED {
                    break;
                }
                if doc == c {
                    let a = &mut acc[c as usize];
                    if a.pseudo == [0.0, 0.0] {
                        touched.push(c);
                    }
                    let tf = tantivy::postings::Postings::term_freq(&postings) as f32;
                    a.pseudo[f] += tf * self.tf_scale[f][norms.fieldnorm_id(c) as usize];
                }
            }
        }
        Ok(())
    }
}

/// The best k across segments, with the documents tied with the k-th score (settled by id at the end, not by
/// where a document happens to sit in the segments, which merges change), and the count of matches.
struct TopK {
    k: usize,
    heap: BinaryHeap<Reverse<Ranked>>,
    ties: Vec<Ranked>,
    matched: u64,
}

impl TopK {
    fn new(k: usize) -> TopK {
        TopK { k, heap: BinaryHeap::with_capacity(k + 1), ties: Vec::new(), matched: 0 }
    }

    /// The k-th best score so far, once there are k.
    fn worst(&self) -> Option<f32> {
        (self.heap.len() == self.k).then(|| self.heap.peek().map(|r| r.0.score)).flatten()
    }

    fn offer(&mut self, entry: Ranked) {
        self.matched += 1;
        if self.heap.len() < self.k {
            self.heap.push(Reverse(entry));
        } else if let Some(&Reverse(worst)) = self.heap.peek() {
            if entry.score > worst.score {
                self.heap.pop();
                self.heap.push(Reverse(entry));
                // every tie scores the old worst: keep them only while it is still the worst
                if self.heap.peek().is_some_and(|r| r.0.score > worst.score) {
                    self.ties.clear();
                } else {
                    self.ties.push(worst);
                }
            } else if entry.score == worst.score {
                self.ties.push(entry);
            }
        }
    }

    fn into_ranked(self) -> Vec<Ranked> {
        self.heap.into_iter().map(|Reverse(r)| r).chain(self.ties).collect()
    }
}

/// One document's accumulators while a query is scored, packed so that one document is one cache access.
#[derive(Debug, Clone, Copy, Default)]
struct Acc {
    /// The current term's weighted, length-normalised tf per field (title, body).
    pseudo: [f32; 2],
    /// Score so far.
    total: f32,
    /// The title's share of `total` (the body's is the rest).
    title: f32,
}

/// Per-thread score accumulators, reused across queries: allocating and zeroing doc-sized arrays per segment
/// per query cost more than scoring on small indexes. Only touched entries are reset after use; a query that
/// failed half-way leaves its scratch `dirty`, and the next one zeroes it whole.
#[derive(Default)]
struct Scratch {
    acc: Vec<Acc>,
    /// Reused by [`kth_best`].
    threshold_buf: Vec<f32>,
    touched: Vec<u32>,
    term_touched: Vec<u32>,
    dirty: bool,
}

impl Scratch {
    fn prepare(&mut self, max_doc: usize) {
        if self.dirty {
            self.acc.iter_mut().for_each(|a| *a = Acc::default());
        }
        if self.acc.len() < max_doc {
            self.acc.resize(max_doc, Acc::default());
        }
        self.touched.clear();
        self.term_touched.clear();
        self.dirty = true;
    }

    fn clear(&mut self) {
        for &doc in &self.touched {
            self.acc[doc as usize] = Acc::default();
        }
        self.touched.clear();
        self.dirty = false;
    }
}

/// Adds one term's BM25F score to the documents in `term_touched` (whose per-field pseudo-tf is set) and
/// resets their pseudo-tf. New documents are appended to `touched` when `may_add` (phase 1 only).
fn add_term_scores(acc: &mut [Acc], term_touched: &[u32], touched: &mut Vec<u32>, idf: f32, k1: f32, may_add: bool) {
    for &doc in term_touched {
        let a = &mut acc[doc as usize];
        let tt = a.pseudo[0] + a.pseudo[1];
        let s = idf * bm25::saturate(k1, tt);
        if a.total == 0.0 && may_add {
            touched.push(doc);
        }
        a.total += s;
        a.title += s * a.pseudo[0] / tt;
        a.pseudo = [0.0, 0.0];
    }
}

/// The k-th largest of `scores`, or `None` when there are fewer than k.
fn kth_best(scores: impl Iterator<Item = f32>, k: usize, buf: &mut Vec<f32>) -> Option<f32> {
    buf.clear();
    buf.extend(scores);
    if k == 0 || buf.len() < k {
        return None;
    }
    let (_, kth, _) = buf.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a));
    Some(*kth)
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

/// A scored document; ordered by score, then by position in the index (earlier first) for the heap. The
/// result's order settles equal scores by id instead (`rank_by_score_then_id`).
#[derive(Debug, Clone, Copy)]
struct Ranked {
    score: f32,
    seg: u32,
    doc: u32,
    /// The title field's share of `score` (the body's is the rest); not part of the order.
    title: f32,
}

impl PartialEq for Ranked {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Ranked {}

impl Ord for Ranked {
    fn cmp(&self, other: &Self) -> Ordering {
        self.score.total_cmp(&other.score).then_with(|| other.seg.cmp(&self.seg)).then_with(|| other.doc.cmp(&self.doc))
    }
}

impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

fn dedup_in_order(terms: &mut Vec<String>) {
    let mut seen = std::collections::HashSet::new();
    terms.retain(|t| seen.insert(t.clone()));
}

/// What [`push_completions`] reads: the term dictionary, the collection size, and how words become a term group.
type GroupOf<'g> = dyn Fn(&[(String, u64)]) -> Result<(u64, [Vec<Term>; 2]), TextError> + 'g;

/// Adds the completions of `prefix` as one term, weighted by [`expand::PREFIX_WEIGHT`] and never above the
/// exact word's idf.
fn push_completions(
    (dict, total_docs, group): (&Dictionary<'_>, u64, &GroupOf<'_>),
    prefix: &str,
    exact_idf: Option<f32>,
    terms: &[String],
    query_terms: &mut Vec<(f32, [Vec<Term>; 2])>,
    expansions: &mut Vec<Expansion>,
) -> Result<(), TextError> {
    let found = expand::completions(dict, prefix, terms)?;
    let (df, per_field) = group(&found)?;
    if df == 0 {
        return Ok(());
    }
    let idf = bm25::idf(total_docs, df).min(exact_idf.unwrap_or(f32::INFINITY));
    query_terms.push((expand::PREFIX_WEIGHT * idf, per_field));
    expansions.push(Expansion {
        word: prefix.to_owned(),
        kind: ExpansionKind::Prefix,
        terms: found.into_iter().map(|f| f.0).collect(),
    });
    Ok(())
}

/// A document of a match set (see [`TextIndex::matches`]): where it is and its BM25 score (0 when it is in the
/// set for another reason).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Member {
    pub(crate) seg: u32,
    pub(crate) doc: u32,
    pub(crate) score: f32,
}

/// A query's match set, its analyzed terms and the expansions it used.
pub(crate) type MatchSet = (Vec<Member>, Vec<String>, Vec<Expansion>);

impl TextIndex {
    /// Every live document that matches a query term (or a typo correction or completion of one) and passes
    /// the filters, with its full BM25 score: what a sort over every match needs. No pruning: each posting of
    /// each term is read once. Also returns the analyzed terms and the expansions used.
    pub(crate) fn matches(
        &self,
        searcher: &tantivy::Searcher,
        text: &str,
        lang: Option<&Lang>,
        tolerance: Option<Tolerance>,
        filters: &[Filter],
    ) -> Result<MatchSet, TextError> {
        let params = self.settings.bm25.validate()?;
        let analysis = Analysis::for_lang(lang.map(Lang::primary));
        let mut terms = self.analyzer.terms(text, analysis);
        dedup_in_order(&mut terms);
        let tolerance = tolerance.unwrap_or(self.settings.tolerance);
        let (prep, expansions) =
            self.prepare(searcher, &terms, text, &tolerance, params, self.settings.boosts, filters)?;
        let mut out = Vec::new();
        if prep.terms.is_empty() {
            return Ok((out, terms, expansions));
        }
        for (seg_ord, segment) in searcher.segment_readers().iter().enumerate() {
            let mut scratch = SCRATCH.with(|s| std::mem::take(&mut *s.borrow_mut()));
            scratch.prepare(segment.max_doc() as usize);
            let Scratch { acc, touched, term_touched, .. } = &mut scratch;
            let postings = SegmentPostings::open(&self.fields, segment, &prep)?;
            for (idf, per_field) in &prep.terms {
                term_touched.clear();
                postings.add_all(per_field, acc, term_touched)?;
                add_term_scores(acc, term_touched, touched, *idf, params.k1, true);
            }
            let bits: Option<&DocBits> = prep.filter_bits.as_ref().map(|b| &b[seg_ord]);
            for &doc in scratch.touched.iter() {
                if !segment.is_deleted(doc) && bits.is_none_or(|b| b.contains(doc)) {
                    out.push(Member { seg: seg_ord as u32, doc, score: scratch.acc[doc as usize].total });
                }
            }
            scratch.clear();
            SCRATCH.with(|s| *s.borrow_mut() = scratch);
        }
        Ok((out, terms, expansions))
    }
}
