//! Ingest into an engine's index: the [`BatchSink`] the ingest driver writes through. Each batch is embedded
//! (when the index has a dense side) and stored with its vectors in the same commit, so the documents and
//! their vectors are durable together.

use sieve_core::{Checkpoint, DocId, Document};
use sieve_ingest::BatchSink;
use sieve_text::{HtmlSettings, TextWriter, WriterOptions};

use crate::engine::{doc_text, Engine};
use crate::PipelineError;

impl Engine {
    /// A sink that ingests into this engine's index, embedding every document when the index has a dense side.
    pub fn sink(&self, options: WriterOptions) -> Result<EngineSink<'_>, PipelineError> {
        if self.settings.is_some() && self.embedder.is_none() {
            let model = self.settings.as_ref().map_or("", |s| s.model.as_str());
            return Err(PipelineError::DenseUnavailable {
                reason: format!("the index stores {model} embeddings; load that model to ingest into it"),
            });
        }
        Ok(EngineSink {
            engine: self,
            writer: self.text.writer(options)?,
            embed: self.settings.is_some(),
            html: self.text.settings().html,
        })
    }
}

/// Ingests into an [`Engine`]'s index: embeds each batch (when the index has a dense side) and stores the
/// vectors with the documents, in the same commit.
pub struct EngineSink<'e> {
    engine: &'e Engine,
    writer: TextWriter,
    embed: bool,
    /// Markup in titles and bodies becomes text before anything else sees the document
    /// ([`sieve_text::clean_document`]); the index's setting unless [`EngineSink::set_html`] says otherwise.
    html: HtmlSettings,
}

impl EngineSink<'_> {
    /// Treats markup as `html` says for this ingest, whatever the index's setting.
    pub fn set_html(&mut self, html: HtmlSettings) {
        self.html = html;
    }
}

impl std::fmt::Debug for EngineSink<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineSink").field("embed", &self.embed).finish()
    }
}

impl EngineSink<'_> {
    /// Deletes a document (and retires its vector) at the next commit.
    pub fn delete(&mut self, id: &DocId) {
        self.writer.delete(id);
    }

    /// Waits for merges and releases the writer; then [`Engine::sync_vectors`] brings the graph up to date.
    pub fn finish(self) -> Result<(), PipelineError> {
        self.writer.finish()?;
        Ok(())
    }
}

impl BatchSink for EngineSink<'_> {
    type Error = PipelineError;

    fn committed(&self) -> Checkpoint {
        self.writer.checkpoint().clone()
    }

    fn upsert(&mut self, docs: &[Document]) -> Result<(), PipelineError> {
        let cleaned: Vec<Document>;
        let docs = if self.html.clean && docs.iter().any(has_markup) {
            cleaned = docs
                .iter()
                .cloned()
                .map(|mut d| {
                    sieve_text::clean_document(&mut d, self.html);
                    d
                })
                .collect();
            &cleaned[..]
        } else {
            docs
        };
        if !self.embed {
            self.writer.upsert_batch(docs)?;
            return Ok(());
        }
        let texts: Vec<String> = docs.iter().map(doc_text).collect();
        let wanted: Vec<usize> = (0..docs.len()).filter(|&i| !texts[i].is_empty()).collect();
        let batch: Vec<String> = wanted.iter().map(|&i| texts[i].clone()).collect();
        let vectors = if batch.is_empty() { Vec::new() } else { self.engine.embed_documents(batch)? };
        if vectors.len() != wanted.len() {
            return Err(PipelineError::DenseUnavailable {
                reason: format!("the embedder returned {} vectors for {} documents", vectors.len(), wanted.len()),
            });
        }
        let mut per_doc: Vec<Option<Vec<f32>>> = vec![None; docs.len()];
        for (i, v) in wanted.into_iter().zip(vectors) {
            per_doc[i] = Some(v);
        }
        self.writer.upsert_batch_with_vectors(docs, Some(&per_doc))?;
        Ok(())
    }

    fn commit(&mut self, checkpoint: Checkpoint) -> Result<(), PipelineError> {
        self.writer.commit(Some(checkpoint))?;
        Ok(())
    }
}

fn has_markup(d: &Document) -> bool {
    [&d.title, &d.body].iter().any(|f| f.as_deref().is_some_and(sieve_text::looks_like_html))
}
