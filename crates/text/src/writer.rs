//! The writer: upserts and deletes are buffered and become visible, durable and crash-safe together at
//! [`TextWriter::commit`], which stores the ingest [`Checkpoint`] and the next free vector slot as the
//! commit's payload. tantivy's commit is atomic (one rename swaps the segment list), so a process killed at
//! any moment leaves the last commit intact: never half a batch, never a checkpoint ahead of its documents.

use sieve_core::{Checkpoint, DocId, Document, Lang};
use tantivy::directory::error::LockError;
use tantivy::tokenizer::{PreTokenizedString, Token};
use tantivy::{DateTime, IndexWriter, TantivyDocument, Term};

use crate::analyzer::{Analysis, Analyzer};
use crate::filter::{self};
use crate::schema::Fields;

use crate::index::{engine, Payload, TextError, TextIndex};

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

impl TextIndex {
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
            next_seq: payload.next_seq,
            analysis_threads: threads,
        })
    }
}

/// The index's only writer.
pub struct TextWriter {
    writer: IndexWriter,
    fields: Fields,
    analyzer: Analyzer,
    checkpoint: Checkpoint,
    /// The slot the next embedding gets; committed with the documents, so a slot is never handed out twice.
    next_slot: u64,
    /// The sequence number the next stored document gets; committed like `next_slot`.
    next_seq: u64,
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
            tantivy_doc.add_u64(self.fields.seq, self.next_seq);
            self.next_seq += 1;
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
        let payload =
            Payload { checkpoint: self.checkpoint.clone(), next_slot: self.next_slot, next_seq: self.next_seq };
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
    if let Some(signature) = crate::story::signature(doc) {
        for value in crate::story::encode_signature(&signature) {
            out.add_u64(f.sig, value);
        }
    }
    out
}
