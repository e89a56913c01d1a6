//! Slot and id bookkeeping: every stored vector has a slot (a `u64` the writer hands out, never twice), and
//! every segment has a table from its doc numbers to document ids. The vector index asks here which slots
//! are live, which are new, and which pass a filter; the scorer turns doc numbers into ids here.

use std::collections::HashSet;
use std::sync::Arc;

use sieve_core::{DocId, Filter};
use tantivy::columnar::StrColumn;
use tantivy::index::SegmentId;
use tantivy::schema::Value;
use tantivy::TantivyDocument;

use crate::filter::{self};

use crate::index::{engine, io_engine, TextError, TextIndex};

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

/// The ids of one segment's documents, packed: `text[offsets[doc]..offsets[doc + 1]]`.
#[derive(Debug)]
pub(crate) struct SegmentIds {
    pub(crate) text: String,
    pub(crate) offsets: Vec<u32>,
}

impl SegmentIds {
    pub(crate) fn get(&self, doc: u32) -> Option<&str> {
        let (start, end) = (*self.offsets.get(doc as usize)?, *self.offsets.get(doc as usize + 1)?);
        (end > start).then(|| &self.text[start as usize..end as usize])
    }
}

impl TextIndex {
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

    /// The documents of each segment that pass every filter, as bit sets; `None` when there is no filter.
    pub(crate) fn filter_bits(
        &self,
        searcher: &tantivy::Searcher,
        filters: &[Filter],
    ) -> Result<Option<Vec<filter::DocBits>>, TextError> {
        if filters.is_empty() {
            return Ok(None);
        }
        let q = filter::to_query(&self.fields, filters);
        Ok(Some(filter::matching_docs(searcher, q.as_ref()).map_err(engine("filter"))?))
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

    pub(crate) fn segment_ids(&self, searcher: &tantivy::Searcher, seg: u32) -> Result<Arc<SegmentIds>, TextError> {
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
