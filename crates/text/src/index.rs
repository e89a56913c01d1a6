//! The BM25 index's lifecycle: a directory holding `sieve.json` (the manifest) and `bm25/` (a tantivy
//! index), created, opened and reloaded here, with document lookups. The scorer is `topk.rs`, the writer
//! `writer.rs`, the slot and id bookkeeping `slots.rs`.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use sieve_core::{Checkpoint, DocId, Document, Limits};
use tantivy::index::SegmentId;
use tantivy::schema::{IndexRecordOption, Value};
use tantivy::{DocAddress, DocSet, Index, IndexReader, ReloadPolicy, TantivyDocument, Term, TERMINATED};

use crate::analyzer::Analyzer;
use crate::bm25::{Bm25Params, ParamError};
use crate::expand::Tolerance;
use crate::schema::{self, Fields, SCHEMA_VERSION};
use crate::slots::SegmentIds;

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

pub(crate) fn engine(context: &'static str) -> impl FnOnce(tantivy::TantivyError) -> TextError {
    move |e| TextError::Engine { context, message: e.to_string() }
}

pub(crate) fn io_engine(context: &'static str) -> impl FnOnce(std::io::Error) -> TextError {
    move |e| TextError::Engine { context, message: e.to_string() }
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TextError + '_ {
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
    /// Default typo tolerance and prefix matching (absent from manifests written before they existed: the
    /// defaults).
    #[serde(default)]
    pub tolerance: Tolerance,
    /// What ingest does with markup in titles and bodies (absent from older manifests: clean, keep no raw).
    #[serde(default)]
    pub html: crate::HtmlSettings,
    /// The order of a blank query's documents when the request names none (`None`: by id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_sort: Option<sieve_core::SortBy>,
}

/// What a commit stores besides the documents: the ingest checkpoint, the next unused vector slot and the next
/// document sequence number.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Payload {
    pub(crate) checkpoint: Checkpoint,
    pub(crate) next_slot: u64,
    /// The sequence number the next stored document gets (`_seq`).
    #[serde(default)]
    pub(crate) next_seq: u64,
}

impl Payload {
    pub(crate) fn parse(raw: Option<&str>) -> Payload {
        raw.and_then(|p| serde_json::from_str(p).ok()).unwrap_or_default()
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    format: String,
    schema_version: u32,
    settings: IndexSettings,
}

/// An open Sieve text index.
pub struct TextIndex {
    pub(crate) path: Option<PathBuf>,
    pub(crate) index: Index,
    pub(crate) reader: IndexReader,
    pub(crate) fields: Fields,
    pub(crate) settings: IndexSettings,
    pub(crate) analyzer: Analyzer,
    /// Each live segment's doc → id table, built on first use (segments never change once written).
    pub(crate) ids: Mutex<HashMap<SegmentId, Arc<SegmentIds>>>,
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

    pub(crate) fn payload(&self) -> Result<Payload, TextError> {
        let metas = self.index.load_metas().map_err(engine("read commit"))?;
        Ok(Payload::parse(metas.payload.as_deref()))
    }

    /// The last commit's generation (tantivy's opstamp): the stamp a derived structure such as the vector
    /// graph records, to tell whether it reflects this commit.
    pub fn generation(&self) -> Result<u64, TextError> {
        Ok(self.index.load_metas().map_err(engine("read commit"))?.opstamp)
    }

    /// The stored documents with these ids, in the same order (`None` where there is none).
    pub fn get_many(&self, ids: &[DocId]) -> Result<Vec<Option<Document>>, TextError> {
        ids.iter().map(|id| self.get(id.as_str())).collect()
    }

    /// The stored document with this id, if any.
    pub fn get(&self, id: &str) -> Result<Option<Document>, TextError> {
        let searcher = self.reader.searcher();
        match self.address_of(&searcher, id)? {
            Some((seg, doc)) => self.load(DocAddress::new(seg, doc)).map(Some),
            None => Ok(None),
        }
    }

    /// Where the live document with this id is.
    pub(crate) fn address_of(&self, searcher: &tantivy::Searcher, id: &str) -> Result<Option<(u32, u32)>, TextError> {
        let term = Term::from_field_text(self.fields.id, id);
        for (ord, segment) in searcher.segment_readers().iter().enumerate() {
            let inverted = segment.inverted_index(self.fields.id).map_err(engine("read ids"))?;
            if let Some(mut postings) =
                inverted.read_postings(&term, IndexRecordOption::Basic).map_err(io_engine("read ids"))?
            {
                let mut doc = postings.doc();
                while doc != TERMINATED {
                    if !segment.is_deleted(doc) {
                        return Ok(Some((ord as u32, doc)));
                    }
                    doc = postings.advance();
                }
            }
        }
        Ok(None)
    }

    pub(crate) fn load(&self, address: DocAddress) -> Result<Document, TextError> {
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
}

pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), TextError> {
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
