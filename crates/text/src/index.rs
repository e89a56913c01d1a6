//! The BM25 index: a directory holding `sieve.json` (the manifest) and `bm25/` (a tantivy index).
//!
//! Writes go through [`TextWriter`]: upserts and deletes are buffered and become visible, durable and
//! crash-safe together at [`TextWriter::commit`], which also stores the ingest [`Checkpoint`] as the commit's
//! payload. tantivy's commit is atomic (the segment list is swapped with one rename), so a process killed at
//! any moment leaves the last commit intact: never half a batch, never a checkpoint ahead of its documents.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use sieve_core::{Bm25Score, Checkpoint, DocId, Document, Filter, Hit, Lang, Limits, ScoreBreakdown, StageTiming};
use tantivy::columnar::StrColumn;
use tantivy::directory::error::LockError;
use tantivy::fieldnorm::FieldNormReader;
use tantivy::index::SegmentId;
use tantivy::schema::{IndexRecordOption, Value};
use tantivy::tokenizer::{PreTokenizedString, Token};
use tantivy::{
    DateTime, DocAddress, DocSet, Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term, TERMINATED,
};

use crate::analyzer::{Analysis, Analyzer};
use crate::bm25::{self, Bm25Params, ParamError};
use crate::filter::{self, DocBits};
use crate::schema::{self, Fields, SCHEMA_VERSION, TEXT_FIELDS};

const MANIFEST: &str = "sieve.json";
const TANTIVY_DIR: &str = "bm25";

/// Errors of the text index.
#[derive(Debug, thiserror::Error)]
pub enum TextError {
    #[error("{path}: not a Sieve index (no {MANIFEST} in it); create one with `sieve ingest --index {path} FILE`")]
    NotAnIndex { path: String },
    #[error("{path}: index was built with schema version {found}, this build reads version {expected}; re-ingest into a new index")]
    IncompatibleIndex { path: String, expected: u32, found: u32 },
    #[error("{path}: already holds a Sieve index; open it, or choose an empty directory")]
    AlreadyAnIndex { path: String },
    #[error("{path}: expected a new or empty folder, or a Sieve index; found a folder holding other files ({found}); choose another --index")]
    ForeignFolder { path: String, found: String },
    #[error("{path}: another process is writing to this index (its writer lock is held); wait for it or stop it")]
    Locked { path: String },
    #[error("{path}: invalid manifest: {message}")]
    Manifest { path: String, message: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("index {context} failed: {message}")]
    Engine { context: &'static str, message: String },
    #[error("stored document at {address} is corrupt: {message}")]
    CorruptDocument { address: String, message: String },
    #[error(transparent)]
    Params(#[from] ParamError),
}

fn engine(context: &'static str) -> impl FnOnce(tantivy::TantivyError) -> TextError {
    move |e| TextError::Engine { context, message: e.to_string() }
}

fn io_engine(context: &'static str) -> impl FnOnce(std::io::Error) -> TextError {
    move |e| TextError::Engine { context, message: e.to_string() }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TextError + '_ {
    move |source| TextError::Io { path: path.display().to_string(), source }
}

/// Per-field score multipliers.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FieldBoosts {
    pub title: f32,
    pub body: f32,
}

impl Default for FieldBoosts {
    /// Title 2, body 1: better than or equal to 1/1 on all five evaluation sets (see EVALUATION.md).
    fn default() -> Self {
        FieldBoosts { title: 2.0, body: 1.0 }
    }
}

/// Settings fixed when an index is created and recorded in its manifest.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct IndexSettings {
    /// Default BM25 parameters (a query may override them).
    pub bm25: Bm25Params,
    /// Default field boosts.
    pub boosts: FieldBoosts,
}

/// What a commit stores besides the documents: the ingest checkpoint and the next unused vector slot.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Payload {
    checkpoint: Checkpoint,
    next_slot: u64,
}

impl Payload {
    fn parse(raw: Option<&str>) -> Payload {
        raw.and_then(|p| serde_json::from_str(p).ok()).unwrap_or_default()
    }
}

/// A live document's embedding slot, and its vector when asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorEntry {
    pub slot: u64,
    pub id: DocId,
    pub vector: Option<Vec<f32>>,
}

/// What [`TextIndex::live_vectors`] found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LiveVectors {
    /// Every live slot, sorted.
    pub slots: Vec<u64>,
    /// The live slots the caller did not know yet, with their document ids (and stored vectors where asked
    /// for), sorted by slot.
    pub new: Vec<VectorEntry>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    format: String,
    schema_version: u32,
    settings: IndexSettings,
}

/// How a writer may use the machine.
#[derive(Debug, Clone, Copy)]
pub struct WriterOptions {
    pub threads: usize,
    /// Indexing memory budget shared by all threads, in bytes (tantivy needs ≥ 15 MB per thread).
    pub memory_bytes: usize,
}

impl Default for WriterOptions {
    fn default() -> Self {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(4);
        WriterOptions { threads, memory_bytes: 64 * 1024 * 1024 * threads }
    }
}

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
        }
    }
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
    pub timings: Vec<StageTiming>,
}

/// An open Sieve text index.
pub struct TextIndex {
    path: Option<PathBuf>,
    index: Index,
    reader: IndexReader,
    fields: Fields,
    settings: IndexSettings,
    analyzer: Analyzer,
    /// Each live segment's doc → id table, built on first use (segments never change once written).
    ids: Mutex<HashMap<SegmentId, Arc<SegmentIds>>>,
}

/// The ids of one segment's documents, packed: `text[offsets[doc]..offsets[doc + 1]]`.
#[derive(Debug)]
struct SegmentIds {
    text: String,
    offsets: Vec<u32>,
}

impl SegmentIds {
    fn get(&self, doc: u32) -> Option<&str> {
        let (start, end) = (*self.offsets.get(doc as usize)?, *self.offsets.get(doc as usize + 1)?);
        (end > start).then(|| &self.text[start as usize..end as usize])
    }
}

impl std::fmt::Debug for TextIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextIndex").field("path", &self.path).field("settings", &self.settings).finish()
    }
}

impl TextIndex {
    /// Opens the index at `dir`, creating it with `settings` if `dir` holds none. An existing index keeps the
    /// settings it was created with.
    pub fn open_or_create(dir: &Path, settings: IndexSettings) -> Result<TextIndex, TextError> {
        if dir.join(MANIFEST).exists() {
            return TextIndex::open(dir);
        }
        match TextIndex::create(dir, settings) {
            // Another process created it first (two ingests racing to create one index): open theirs. Whichever
            // then writes second waits for, or is told about, the first one's writer lock.
            Err(_) if dir.join(MANIFEST).exists() => TextIndex::open(dir),
            created => created,
        }
    }

    /// Creates a new index in `dir` (created if missing; it must not already hold an index).
    pub fn create(dir: &Path, settings: IndexSettings) -> Result<TextIndex, TextError> {
        settings.bm25.validate()?;
        if dir.join(MANIFEST).exists() {
            return Err(TextError::AlreadyAnIndex { path: dir.display().to_string() });
        }
        // Never turn someone's folder into an index: only a new or empty one, or what a create that died (or
        // that another process is running) has put there so far: the tantivy folder and the manifest's
        // temporary file.
        if let Ok(entries) = fs::read_dir(dir) {
            let mut foreign: Vec<String> = entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| name != TANTIVY_DIR && !(name.starts_with(MANIFEST) && name.ends_with(".tmp")))
                .collect();
            if !foreign.is_empty() {
                foreign.sort();
                let more = foreign.len().saturating_sub(3);
                foreign.truncate(3);
                let found = foreign.join(", ") + &if more > 0 { format!(" and {more} more") } else { String::new() };
                return Err(TextError::ForeignFolder { path: dir.display().to_string(), found });
            }
        }
        let tantivy_dir = dir.join(TANTIVY_DIR);
        fs::create_dir_all(&tantivy_dir).map_err(io_err(&tantivy_dir))?;
        let (schema, fields) = schema::build();
        let index = if Index::exists(
            &tantivy::directory::MmapDirectory::open(&tantivy_dir)
                .map_err(|e| TextError::Engine { context: "open directory", message: e.to_string() })?,
        )
        .unwrap_or(false)
        {
            // A previous create died between the tantivy index and the manifest: reuse what is there.
            Index::open_in_dir(&tantivy_dir).map_err(engine("open"))?
        } else {
            // (another process may create it between the check and here: then open what it created)
            match Index::create_in_dir(&tantivy_dir, schema) {
                Ok(index) => index,
                Err(e) => Index::open_in_dir(&tantivy_dir).map_err(|_| engine("create")(e))?,
            }
        };
        // The manifest is written last: its presence means the index is complete.
        let manifest = Manifest { format: "sieve-index".into(), schema_version: SCHEMA_VERSION, settings };
        write_atomic(&dir.join(MANIFEST), &serde_json::to_vec_pretty(&manifest).expect("manifest serializes"))?;
        TextIndex::from_parts(Some(dir.to_path_buf()), index, fields, settings)
    }

    /// Opens an existing index.
    pub fn open(dir: &Path) -> Result<TextIndex, TextError> {
        let manifest_path = dir.join(MANIFEST);
        let raw = match fs::read(&manifest_path) {
            Ok(raw) => raw,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(TextError::NotAnIndex { path: dir.display().to_string() })
            }
            Err(e) => return Err(io_err(&manifest_path)(e)),
        };
        let manifest: Manifest = serde_json::from_slice(&raw)
            .map_err(|e| TextError::Manifest { path: manifest_path.display().to_string(), message: e.to_string() })?;
        if manifest.schema_version != SCHEMA_VERSION {
            return Err(TextError::IncompatibleIndex {
                path: dir.display().to_string(),
                expected: SCHEMA_VERSION,
                found: manifest.schema_version,
            });
        }
        manifest.settings.bm25.validate()?;
        let index = Index::open_in_dir(dir.join(TANTIVY_DIR)).map_err(engine("open"))?;
        let (_, fields) = schema::build();
        TextIndex::from_parts(Some(dir.to_path_buf()), index, fields, manifest.settings)
    }

    /// An index held in memory, for tests and throwaway evaluations.
    pub fn in_memory(settings: IndexSettings) -> Result<TextIndex, TextError> {
        settings.bm25.validate()?;
        let (schema, fields) = schema::build();
        TextIndex::from_parts(None, Index::create_in_ram(schema), fields, settings)
    }

    fn from_parts(
        path: Option<PathBuf>,
        index: Index,
        fields: Fields,
        settings: IndexSettings,
    ) -> Result<TextIndex, TextError> {
        let reader =
            index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into().map_err(engine("open reader"))?;
        Ok(TextIndex { path, index, reader, fields, settings, analyzer: Analyzer::shared(), ids: Mutex::default() })
    }

    pub fn settings(&self) -> IndexSettings {
        self.settings
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Live (not deleted) documents as of the last [`TextIndex::reload`].
    pub fn num_docs(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    /// Makes the latest commit visible to searches.
    pub fn reload(&self) -> Result<(), TextError> {
        self.reader.reload().map_err(engine("reload"))
    }

    /// The ingest checkpoint stored with the last commit.
    pub fn checkpoint(&self) -> Result<Checkpoint, TextError> {
        Ok(self.payload()?.checkpoint)
    }

    fn payload(&self) -> Result<Payload, TextError> {
        let metas = self.index.load_metas().map_err(engine("read commit"))?;
        Ok(Payload::parse(metas.payload.as_deref()))
    }

    /// The last commit's generation (tantivy's opstamp): the stamp a derived structure such as the vector
    /// graph records, to tell whether it reflects this commit.
    pub fn generation(&self) -> Result<u64, TextError> {
        Ok(self.index.load_metas().map_err(engine("read commit"))?.opstamp)
    }

    /// Every live document that has an embedding: its slot and id, and its stored vector where `want(slot)`
    /// (as of the last [`TextIndex::reload`]). Sorted by slot.
    pub fn vector_entries(&self, want: &dyn Fn(u64) -> bool) -> Result<Vec<VectorEntry>, TextError> {
        Ok(self.live_vectors(&|_| false, &|slot| !want(slot))?.new)
    }

    /// The live documents that have an embedding (as of the last [`TextIndex::reload`]): every live slot,
    /// and the id of each slot not `known`, with its stored vector unless `has_vector(slot)`. What keeps a
    /// vector graph in step with the index: the slots cost a column read each, the ids and vectors (a
    /// document-store read) only what is new to the caller.
    pub fn live_vectors(
        &self,
        known: &dyn Fn(u64) -> bool,
        has_vector: &dyn Fn(u64) -> bool,
    ) -> Result<LiveVectors, TextError> {
        let searcher = self.reader.searcher();
        let mut out = LiveVectors::default();
        for (ord, segment) in searcher.segment_readers().iter().enumerate() {
            let Some(vids) = segment.fast_fields().u64("_vid").ok() else { continue };
            let mut ids = None;
            let mut store = None;
            for doc in segment.doc_ids_alive() {
                let Some(slot) = vids.first(doc) else { continue };
                out.slots.push(slot);
                if known(slot) {
                    continue;
                }
                let corrupt = |message: String| TextError::CorruptDocument {
                    address: format!("segment {ord}, doc {doc}"),
                    message,
                };
                if ids.is_none() {
                    ids = Some(self.segment_ids(&searcher, ord as u32)?);
                }
                let id =
                    ids.as_ref().and_then(|ids| ids.get(doc)).ok_or_else(|| corrupt("document has no id".into()))?;
                let id = DocId::parse(id, usize::MAX).map_err(|e| corrupt(e.to_string()))?;
                let vector = if has_vector(slot) {
                    None
                } else {
                    if store.is_none() {
                        store = Some(segment.get_store_reader(64).map_err(io_engine("read documents"))?);
                    }
                    let store = store.as_ref().expect("opened above");
                    let stored: TantivyDocument = store.get(doc).map_err(engine("read document"))?;
                    let bytes = stored
                        .get_first(self.fields.vec)
                        .and_then(|v| v.as_bytes())
                        .ok_or_else(|| corrupt(format!("slot {slot} has no stored vector")))?;
                    if bytes.len() % 4 != 0 {
                        return Err(corrupt(format!("stored vector of {} bytes is not f32s", bytes.len())));
                    }
                    Some(bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
                };
                out.new.push(VectorEntry { slot, id, vector });
            }
        }
        out.slots.sort_unstable();
        out.new.sort_unstable_by_key(|e| e.slot);
        Ok(out)
    }

    /// The embedding slots of the live documents that pass every filter, sorted (for filtered dense search).
    pub fn filter_slots(&self, filters: &[Filter]) -> Result<Vec<u64>, TextError> {
        let searcher = self.reader.searcher();
        let q = filter::to_query(&self.fields, filters);
        let bits = filter::matching_docs(&searcher, q.as_ref()).map_err(engine("filter"))?;
        let mut slots = Vec::new();
        for (segment, bits) in searcher.segment_readers().iter().zip(&bits) {
            let Some(vids) = segment.fast_fields().u64("_vid").ok() else { continue };
            for doc in segment.doc_ids_alive() {
                if bits.contains(doc) {
                    if let Some(slot) = vids.first(doc) {
                        slots.push(slot);
                    }
                }
            }
        }
        slots.sort_unstable();
        Ok(slots)
    }

    /// The stored documents with these ids, in the same order (`None` where there is none).
    pub fn get_many(&self, ids: &[DocId]) -> Result<Vec<Option<Document>>, TextError> {
        ids.iter().map(|id| self.get(id.as_str())).collect()
    }

    /// Opens the single writer. Fails with [`TextError::Locked`] while another process writes.
    pub fn writer(&self, options: WriterOptions) -> Result<TextWriter, TextError> {
        let threads = options.threads.max(1);
        let memory = options.memory_bytes.max(threads * 20 * 1024 * 1024);
        let writer = self.index.writer_with_num_threads(threads, memory).map_err(|e| match e {
            tantivy::TantivyError::LockFailure(LockError::LockBusy, _) => {
                TextError::Locked { path: self.path.as_ref().map_or("<memory>".into(), |p| p.display().to_string()) }
            }
            other => engine("open writer")(other),
        })?;
        let payload = self.payload()?;
        Ok(TextWriter {
            writer,
            fields: self.fields,
            analyzer: self.analyzer.clone(),
            checkpoint: payload.checkpoint,
            next_slot: payload.next_slot,
            analysis_threads: threads,
        })
    }

    /// The stored document with this id, if any.
    pub fn get(&self, id: &str) -> Result<Option<Document>, TextError> {
        let searcher = self.reader.searcher();
        let term = Term::from_field_text(self.fields.id, id);
        for (ord, segment) in searcher.segment_readers().iter().enumerate() {
            let inverted = segment.inverted_index(self.fields.id).map_err(engine("read ids"))?;
            if let Some(mut postings) =
                inverted.read_postings(&term, IndexRecordOption::Basic).map_err(io_engine("read ids"))?
            {
                let mut doc = postings.doc();
                while doc != TERMINATED {
                    if !segment.is_deleted(doc) {
                        return self.load(DocAddress::new(ord as u32, doc)).map(Some);
                    }
                    doc = postings.advance();
                }
            }
        }
        Ok(None)
    }

    fn load(&self, address: DocAddress) -> Result<Document, TextError> {
        let searcher = self.reader.searcher();
        let stored: TantivyDocument = searcher.doc(address).map_err(engine("read document"))?;
        let corrupt = |message: String| TextError::CorruptDocument { address: format!("{address:?}"), message };
        let json = stored
            .get_first(self.fields.source)
            .and_then(|v| v.as_str())
            .ok_or_else(|| corrupt("no _source field".into()))?;
        let value: serde_json::Value = serde_json::from_str(json).map_err(|e| corrupt(e.to_string()))?;
        let limits = Limits { max_document_bytes: usize::MAX, max_id_bytes: usize::MAX };
        Document::from_json(value, &limits).map_err(|e| corrupt(e.to_string()))
    }

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
        let segments = searcher.segment_readers();
        let total_docs: u64 = segments.iter().map(|s| s.max_doc() as u64).sum();
        let field_handles = self.fields.text_fields();
        let field_boosts = [boosts.title, boosts.body];

        // Collection statistics: each field's average length; each term's idf (max df over fields) and the
        // fields it occurs in.
        let mut avgdl = [0f32; 2];
        for (f, &field) in field_handles.iter().enumerate() {
            let mut tokens = 0u64;
            for s in segments {
                tokens += s.inverted_index(field).map_err(engine("read postings"))?.total_num_tokens();
            }
            avgdl[f] = if total_docs > 0 { tokens as f32 / total_docs as f32 } else { 0.0 };
        }
        let mut query_terms: Vec<(f32, [Option<Term>; 2])> = Vec::with_capacity(terms.len());
        for t in &terms {
            let mut per_field: [Option<Term>; 2] = [None, None];
            let mut df = 0u64;
            for (f, &field) in field_handles.iter().enumerate() {
                let term = Term::from_field_text(field, t);
                let field_df = searcher.doc_freq(&term).map_err(engine("read postings"))?;
                if field_df > 0 && field_boosts[f] > 0.0 {
                    df = df.max(field_df);
                    per_field[f] = Some(term);
                }
            }
            if df > 0 {
                query_terms.push((bm25::idf(total_docs, df), per_field));
            }
        }

        let filter_bits = if query.filters.is_empty() {
            None
        } else {
            let q = filter::to_query(&self.fields, &query.filters);
            Some(filter::matching_docs(&searcher, q.as_ref()).map_err(engine("filter"))?)
        };
        let prepared = Instant::now();

        let k = query.k;
        let mut heap: BinaryHeap<Reverse<Ranked>> = BinaryHeap::with_capacity(k + 1);
        // Documents that score exactly the heap's worst but did not fit: with them, the k-th place is settled
        // by id at the end, not by where a document happens to sit in the segments (which merges change).
        let mut ties: Vec<Ranked> = Vec::new();
        let mut matched = 0u64;
        let mut pruned = false;
        // Terms by upper bound, highest first; rest[i] bounds what terms i.. can still add to any document.
        // BM25F saturation never exceeds k1 + 1, so idf·(k1 + 1) bounds a term's contribution.
        let mut order: Vec<usize> = (0..query_terms.len()).collect();
        order.sort_by(|&a, &b| query_terms[b].0.total_cmp(&query_terms[a].0));
        let mut rest = vec![0f32; order.len() + 1];
        for i in (0..order.len()).rev() {
            rest[i] = rest[i + 1] + query_terms[order[i]].0 * (params.k1 + 1.0);
        }
        for (seg_ord, segment) in segments.iter().enumerate() {
            if query_terms.is_empty() {
                break;
            }
            let max_doc = segment.max_doc() as usize;
            let mut scratch = SCRATCH.with(|s| std::mem::take(&mut *s.borrow_mut()));
            scratch.prepare(max_doc);
            let Scratch { acc, touched, term_touched, threshold_buf, .. } = &mut scratch;
            // weight_f / (1 − b + b·len/avgdl_f) for every encoded field length
            let mut tf_scale = [[0f32; 256]; 2];
            let mut readers = Vec::with_capacity(2);
            for (f, &field) in field_handles.iter().enumerate() {
                for (id, slot) in tf_scale[f].iter_mut().enumerate() {
                    let norm = bm25::length_norm(params.b, FieldNormReader::id_to_fieldnorm(id as u8) as f32, avgdl[f]);
                    *slot = bm25::field_tf(field_boosts[f], 1.0, norm);
                }
                let inverted = segment.inverted_index(field).map_err(engine("read postings"))?;
                let norms: FieldNormReader =
                    segment.get_fieldnorms_reader(field).map_err(engine("read field lengths"))?;
                readers.push((inverted, norms));
            }
            let bits: Option<&DocBits> = filter_bits.as_ref().map(|b| &b[seg_ord]);
            let eligible = |doc: u32| !segment.is_deleted(doc) && bits.is_none_or(|b| b.contains(doc));
            let mut next = 0;
            // Phase 1: every posting of the terms with the highest upper bounds.
            while next < order.len() {
                let (idf, per_field) = &query_terms[order[next]];
                term_touched.clear();
                for (f, term) in per_field.iter().enumerate() {
                    let Some(term) = term else { continue };
                    let (inverted, norms) = &readers[f];
                    // Whole decoded blocks of (doc, tf) at a time; deleted documents are dropped later.
                    let Some(mut block) = inverted
                        .read_block_postings(term, IndexRecordOption::WithFreqs)
                        .map_err(io_engine("read postings"))?
                    else {
                        continue;
                    };
                    let scale = &tf_scale[f];
                    loop {
                        let docs = block.docs();
                        if docs.is_empty() {
                            break;
                        }
                        for (&doc, &tf) in docs.iter().zip(block.freqs()) {
                            let a = &mut acc[doc as usize];
                            if a.pseudo == [0.0, 0.0] {
                                term_touched.push(doc);
                            }
                            a.pseudo[f] += tf as f32 * scale[norms.fieldnorm_id(doc) as usize];
                        }
                        block.advance();
                    }
                }
                add_term_scores(acc, term_touched, touched, *idf, params.k1, true);
                next += 1;
                if query.exhaustive || next == order.len() || k == 0 {
                    continue;
                }
                // θ: a lower bound of the final k-th best score.
                let global = if heap.len() == k { heap.peek().map_or(f32::MIN, |r| r.0.score) } else { f32::MIN };
                let local = kth_best(
                    touched.iter().filter(|&&d| eligible(d)).map(|&d| acc[d as usize].total),
                    k,
                    threshold_buf,
                );
                let theta = global.max(local.unwrap_or(f32::MIN));
                if theta > f32::MIN && rest[next] < theta * (1.0 - 1e-5) {
                    pruned = true;
                    // Phase 2: only documents that can still reach θ; their remaining postings by seeking.
                    let margin = theta * (1.0 - 1e-5) - rest[next];
                    let mut candidates: Vec<u32> =
                        touched.iter().copied().filter(|&d| eligible(d) && acc[d as usize].total >= margin).collect();
                    candidates.sort_unstable();
                    for &t in &order[next..] {
                        let (idf, per_field) = &query_terms[t];
                        term_touched.clear();
                        for (f, term) in per_field.iter().enumerate() {
                            let Some(term) = term else { continue };
                            let (inverted, norms) = &readers[f];
                            let Some(mut postings) = inverted
                                .read_postings(term, IndexRecordOption::WithFreqs)
                                .map_err(io_engine("read postings"))?
                            else {
                                continue;
                            };
                            for &c in &candidates {
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
                                        term_touched.push(c);
                                    }
                                    let tf = tantivy::postings::Postings::term_freq(&postings) as f32;
                                    a.pseudo[f] += tf * tf_scale[f][norms.fieldnorm_id(c) as usize];
                                }
                            }
                        }
                        add_term_scores(acc, term_touched, touched, *idf, params.k1, false);
                    }
                    break;
                }
            }
            for &doc in scratch.touched.iter() {
                if !eligible(doc) {
                    continue;
                }
                matched += 1;
                let a = scratch.acc[doc as usize];
                let entry = Ranked { score: a.total, seg: seg_ord as u32, doc, title: a.title };
                if heap.len() < k {
                    heap.push(Reverse(entry));
                } else if let Some(&Reverse(worst)) = heap.peek() {
                    if entry.score > worst.score {
                        heap.pop();
                        heap.push(Reverse(entry));
                        // every tie scores the old worst: keep them only while it is still the worst
                        if heap.peek().is_some_and(|r| r.0.score > worst.score) {
                            ties.clear();
                        } else {
                            ties.push(worst);
                        }
                    } else if entry.score == worst.score {
                        ties.push(entry);
                    }
                }
            }
            scratch.clear();
            SCRATCH.with(|s| *s.borrow_mut() = scratch);
        }
        let mut ranked: Vec<Ranked> = heap.into_iter().map(|Reverse(r)| r).chain(ties).collect();
        self.rank_by_score_then_id(&searcher, &mut ranked, k)?;
        let scored = Instant::now();

        let mut hits = Vec::with_capacity(ranked.len());
        let mut ids = if query.with_documents { Vec::new() } else { self.ids_of(&searcher, &ranked)? }.into_iter();
        for (i, r) in ranked.iter().enumerate() {
            let parts = [r.title, (r.score - r.title).max(0.0)];
            let fields: Vec<(String, f32)> =
                TEXT_FIELDS.iter().zip(parts).filter(|(_, s)| *s > 0.0).map(|(n, s)| ((*n).to_owned(), s)).collect();
            let address = DocAddress::new(r.seg, r.doc);
            let (id, document) = if query.with_documents {
                let doc = self.load(address)?;
                (doc.id.clone(), Some(doc))
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
        let fetched = Instant::now();
        let us = |a: Instant, b: Instant| b.duration_since(a).as_micros() as u64;
        let timings = vec![
            StageTiming { stage: "analyze".into(), micros: us(started, analyzed) },
            StageTiming { stage: "stats".into(), micros: us(analyzed, prepared) },
            StageTiming { stage: "bm25".into(), micros: us(prepared, scored) },
            StageTiming { stage: "fetch".into(), micros: us(scored, fetched) },
        ];
        Ok(Bm25Results { hits, matched, pruned, terms, timings })
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

    fn segment_ids(&self, searcher: &tantivy::Searcher, seg: u32) -> Result<Arc<SegmentIds>, TextError> {
        let reader = searcher.segment_reader(seg);
        let key = reader.segment_id();
        let mut cache = self.ids.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(table) = cache.get(&key) {
            return Ok(table.clone());
        }
        let column: StrColumn = reader
            .fast_fields()
            .str("id")
            .map_err(engine("read ids"))?
            .ok_or_else(|| TextError::Engine { context: "read ids", message: "segment has no id column".into() })?;
        // ordinal → id, streamed once in dictionary order
        let mut by_ord: Vec<(u32, u32)> = Vec::new();
        let mut ord_text = String::new();
        let mut stream = column.dictionary().stream().map_err(io_engine("read ids"))?;
        while stream.advance() {
            let start = ord_text.len() as u32;
            ord_text.push_str(&String::from_utf8_lossy(stream.key()));
            by_ord.push((start, ord_text.len() as u32));
        }
        let mut table = SegmentIds {
            text: String::with_capacity(ord_text.len()),
            offsets: Vec::with_capacity(reader.max_doc() as usize + 1),
        };
        table.offsets.push(0);
        for doc in 0..reader.max_doc() {
            if let Some(&(a, b)) = column.ords().first(doc).and_then(|ord| by_ord.get(ord as usize)) {
                table.text.push_str(&ord_text[a as usize..b as usize]);
            }
            table.offsets.push(table.text.len() as u32);
        }
        let table = Arc::new(table);
        // Forget segments that are gone (merged or deleted).
        let live: HashSet<SegmentId> = searcher.segment_readers().iter().map(|s| s.segment_id()).collect();
        cache.retain(|k, _| live.contains(k));
        cache.insert(key, table.clone());
        Ok(table)
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

/// The index's only writer.
pub struct TextWriter {
    writer: IndexWriter,
    fields: Fields,
    analyzer: Analyzer,
    checkpoint: Checkpoint,
    /// The slot the next embedding gets; committed with the documents, so a slot is never handed out twice.
    next_slot: u64,
    /// Threads that analyze a batch in [`TextWriter::upsert_batch`].
    analysis_threads: usize,
}

impl std::fmt::Debug for TextWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextWriter").finish_non_exhaustive()
    }
}

impl TextWriter {
    /// Adds `doc`, replacing any document with the same id (visible after the next commit).
    pub fn upsert(&mut self, doc: &Document) -> Result<(), TextError> {
        self.upsert_batch(std::slice::from_ref(doc))
    }

    /// Upserts a batch of documents, analyzing them on the writer's threads (text analysis, not indexing, is
    /// what limits ingest speed). Documents are added in order, so the last of two equal ids wins.
    pub fn upsert_batch(&mut self, docs: &[Document]) -> Result<(), TextError> {
        self.upsert_batch_with_vectors(docs, None)
    }

    /// Like [`TextWriter::upsert_batch`], storing each document's embedding with it under a fresh slot
    /// (`vectors[i]` belongs to `docs[i]`; `None` for a document without one).
    pub fn upsert_batch_with_vectors(
        &mut self,
        docs: &[Document],
        vectors: Option<&[Option<Vec<f32>>]>,
    ) -> Result<(), TextError> {
        if let Some(v) = vectors {
            assert_eq!(v.len(), docs.len(), "one vector per document");
        }
        let threads = self.analysis_threads.min(docs.len().div_ceil(64)).max(1);
        let (fields, analyzer) = (&self.fields, &self.analyzer);
        let converted: Vec<TantivyDocument> = if threads == 1 {
            docs.iter().map(|d| to_tantivy(fields, analyzer, d)).collect()
        } else {
            let chunk = docs.len().div_ceil(threads);
            std::thread::scope(|scope| {
                let handles: Vec<_> = docs
                    .chunks(chunk)
                    .map(|part| {
                        scope.spawn(move || part.iter().map(|d| to_tantivy(fields, analyzer, d)).collect::<Vec<_>>())
                    })
                    .collect();
                handles.into_iter().flat_map(|h| h.join().expect("analysis thread panicked")).collect()
            })
        };
        for (i, (doc, mut tantivy_doc)) in docs.iter().zip(converted).enumerate() {
            if let Some(Some(vector)) = vectors.map(|v| &v[i]) {
                let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
                tantivy_doc.add_u64(self.fields.vid, self.next_slot);
                tantivy_doc.add_bytes(self.fields.vec, &bytes);
                self.next_slot += 1;
            }
            self.writer.delete_term(Term::from_field_text(self.fields.id, doc.id.as_str()));
            self.writer.add_document(tantivy_doc).map_err(engine("add document"))?;
        }
        Ok(())
    }

    /// Deletes the document with this id, if any (effective at the next commit).
    pub fn delete(&mut self, id: &DocId) {
        self.writer.delete_term(Term::from_field_text(self.fields.id, id.as_str()));
    }

    /// The checkpoint as of the last commit (or as loaded when the writer opened).
    pub fn checkpoint(&self) -> &Checkpoint {
        &self.checkpoint
    }

    /// Makes every buffered change durable, atomically with `checkpoint` (or the previous checkpoint when
    /// `None`). When this returns, the changes survive any crash.
    pub fn commit(&mut self, checkpoint: Option<Checkpoint>) -> Result<(), TextError> {
        if let Some(cp) = checkpoint {
            self.checkpoint = cp;
        }
        let payload = Payload { checkpoint: self.checkpoint.clone(), next_slot: self.next_slot };
        let payload = serde_json::to_string(&payload).expect("payload serializes");
        let mut prepared = self.writer.prepare_commit().map_err(engine("commit"))?;
        prepared.set_payload(&payload);
        prepared.commit().map_err(engine("commit"))?;
        Ok(())
    }

    /// The slot the next embedding will get.
    pub fn next_slot(&self) -> u64 {
        self.next_slot
    }

    /// Discards every change since the last commit.
    pub fn rollback(&mut self) -> Result<(), TextError> {
        self.writer.rollback().map_err(engine("rollback"))?;
        Ok(())
    }

    /// Waits for background merges and releases the writer lock.
    pub fn finish(self) -> Result<(), TextError> {
        self.writer.wait_merging_threads().map_err(engine("finish merges"))
    }
}

/// The tantivy document for `doc`: ids, `_source`, pre-tokenized text (analyzed per the document's `lang`)
/// and the keyword, facet, numeric and date fields filters use.
fn to_tantivy(f: &Fields, analyzer: &Analyzer, doc: &Document) -> TantivyDocument {
    let mut out = TantivyDocument::new();
    out.add_text(f.id, doc.id.as_str());
    out.add_text(f.source, doc.to_json_string());
    let analysis = Analysis::for_lang(doc.lang.as_ref().map(Lang::primary));
    for (field, text) in [(f.title, &doc.title), (f.body, &doc.body)] {
        if let Some(text) = text {
            let terms = analyzer.terms(text, analysis);
            let tokens = terms
                .into_iter()
                .enumerate()
                .map(|(position, text)| Token { offset_from: 0, offset_to: 0, position, text, position_length: 1 })
                .collect();
            out.add_pre_tokenized_text(field, PreTokenizedString { text: String::new(), tokens });
        }
    }
    if let Some(brand) = &doc.brand {
        out.add_text(f.brand, brand.to_lowercase());
    }
    if let Some(source) = &doc.source {
        out.add_text(f.source_name, source.to_lowercase());
    }
    if let Some(lang) = &doc.lang {
        out.add_text(f.lang, lang.as_str());
        if lang.primary() != lang.as_str() {
            out.add_text(f.lang, lang.primary());
        }
    }
    for tag in &doc.tags {
        out.add_text(f.tags, tag.to_lowercase());
    }
    if let Some(category) = &doc.category {
        out.add_facet(f.category, filter::category_facet(&category.path().to_lowercase()));
    }
    if let Some(price) = doc.price {
        out.add_f64(f.price, price);
    }
    if let Some(ts) = doc.published_at {
        out.add_date(f.published_at, DateTime::from_timestamp_secs(ts.unix_seconds()));
    }
    out
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), TextError> {
    // A temporary name of this process and call, so that two writers racing (two ingests creating one index)
    // never rename each other's file away.
    static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_extension(format!("json.{}.{call}.tmp", std::process::id()));
    let mut file = fs::File::create(&tmp).map_err(io_err(&tmp))?;
    file.write_all(bytes).map_err(io_err(&tmp))?;
    file.sync_all().map_err(io_err(&tmp))?;
    fs::rename(&tmp, path).map_err(io_err(path))?;
    if let Some(parent) = path.parent() {
        if let Ok(dir) = fs::File::open(parent) {
            let _ = dir.sync_all();
        }
    }
    Ok(())
}
