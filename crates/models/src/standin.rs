//! Deterministic stand-in models for testing the plumbing around models (batching, time-outs, degradation,
//! HTTP shapes) without loading weights: a hashed bag-of-words embedder that knows a few synonyms (so dense
//! recall finds what BM25 cannot) and a word-overlap reranker that can be told to be slow, fail or panic.
//! They implement the same traits as the real models; nothing about their scores is meaningful beyond that.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crate::synthetic::fnv1a64;
use crate::{
    EmbedInput, EmbedOptions, Embedder, Embeddings, ModelError, ModelInfo, RerankInput, RerankScore, Reranker,
};

fn info(role: &str, dim: usize) -> ModelInfo {
    ModelInfo {
        path: format!("stand-in:{role}"),
        architecture: "stand-in".into(),
        role: role.into(),
        device: "cpu".into(),
        dtype: "f32".into(),
        hidden_size: dim,
        max_length: 512,
        min_length: 1,
        languages: Vec::new(),
        non_embedding_params: 0,
        fallback: None,
    }
}

fn canonical(word: &str) -> &str {
    match word {
        "notebook" | "laptop" => "laptop",
        "headphones" | "earphones" | "headset" => "headphones",
        other => other,
    }
}

fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_lowercase)
}

/// Hashed bag of words (synonyms share a bucket), L2-normalised.
#[derive(Debug)]
pub struct WordsEmbedder {
    info: ModelInfo,
    /// Model calls made so far.
    pub calls: Arc<AtomicUsize>,
}

impl WordsEmbedder {
    pub fn new(dim: usize) -> WordsEmbedder {
        WordsEmbedder { info: info("embedder", dim), calls: Arc::new(AtomicUsize::new(0)) }
    }

    /// Declares the languages the stand-in covers (as an English-only model would).
    pub fn with_languages(mut self, languages: &[&str]) -> WordsEmbedder {
        self.info.languages = languages.iter().map(|l| (*l).to_owned()).collect();
        self
    }

    fn vector(&self, text: &str, dim: usize) -> Vec<f32> {
        let mut v = vec![0.0f32; dim];
        for w in words(text) {
            v[(fnv1a64(canonical(&w).as_bytes()) % dim as u64) as usize] += 1.0;
        }
        if v.iter().all(|x| *x == 0.0) {
            v[0] = 1.0;
        }
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter().map(|x| x / n).collect()
    }
}

impl Embedder for WordsEmbedder {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn embed(&self, inputs: &[EmbedInput<'_>], opts: &EmbedOptions) -> crate::Result<Embeddings> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let dim = opts.dimensions.unwrap_or(self.info.hidden_size).min(self.info.hidden_size);
        let texts: Vec<&str> = inputs
            .iter()
            .map(|i| match i {
                EmbedInput::Query { text, .. } | EmbedInput::Document(text) => *text,
            })
            .collect();
        Ok(Embeddings {
            vectors: texts.iter().map(|t| self.vector(t, dim)).collect(),
            tokens: texts.iter().map(|t| words(t).count() + 1).collect(),
            truncated: vec![false; texts.len()],
        })
    }
}

/// How a [`WordsReranker`] behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Behaviour {
    /// Scores by how many query words the document contains (+5 for the word "reviews").
    Good,
    /// Like `Good`, after sleeping this long on every call.
    Slow(Duration),
    /// Like `Good`, once the gate is open: every call blocks until the test opens it, so a test decides when
    /// the model is busy instead of guessing with a clock.
    Gated(Gate),
    /// Every call fails (as a model out of memory would).
    Fail,
    /// Every call panics (as a CUDA error would).
    Panic,
}

/// A gate a [`Behaviour::Gated`] model waits at; clones share it. Closed until [`Gate::open`].
#[derive(Debug, Clone, Default)]
pub struct Gate(Arc<(Mutex<bool>, Condvar)>);

impl Gate {
    pub fn new() -> Gate {
        Gate::default()
    }

    /// Lets every waiting and later call through.
    pub fn open(&self) {
        *self.0 .0.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.0 .1.notify_all();
    }

    /// Makes later calls wait again.
    pub fn close(&self) {
        *self.0 .0.lock().unwrap_or_else(|p| p.into_inner()) = false;
    }

    /// Blocks until the gate is open.
    pub fn wait(&self) {
        let mut open = self.0 .0.lock().unwrap_or_else(|p| p.into_inner());
        while !*open {
            open = self.0 .1.wait(open).unwrap_or_else(|p| p.into_inner());
        }
    }
}

impl PartialEq for Gate {
    fn eq(&self, other: &Gate) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Gate {}

/// A reranker scoring word overlap.
#[derive(Debug)]
pub struct WordsReranker {
    info: ModelInfo,
    behaviour: Behaviour,
    /// Model calls made so far.
    pub calls: Arc<AtomicUsize>,
}

impl WordsReranker {
    pub fn new(behaviour: Behaviour) -> WordsReranker {
        WordsReranker { info: info("reranker", 1), behaviour, calls: Arc::new(AtomicUsize::new(0)) }
    }
}

impl Reranker for WordsReranker {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn rerank(&self, batch: &[RerankInput<'_>]) -> crate::Result<Vec<Vec<RerankScore>>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        match &self.behaviour {
            Behaviour::Slow(d) => std::thread::sleep(*d),
            Behaviour::Gated(gate) => gate.wait(),
            Behaviour::Fail => {
                return Err(ModelError::Device {
                    requested: "cpu".into(),
                    reason: "the model ran out of memory".into(),
                })
            }
            Behaviour::Panic => panic!("CUDA error"),
            Behaviour::Good => {}
        }
        Ok(batch
            .iter()
            .map(|input| {
                let query: Vec<String> = words(input.query).collect();
                input
                    .documents
                    .iter()
                    .map(|d| {
                        let doc: Vec<String> = words(d).collect();
                        // "reviews" in a document makes it the most relevant: an order BM25 would not give
                        let hits = query.iter().filter(|w| doc.contains(w)).count() as f32
                            + if doc.iter().any(|w| w == "reviews") { 5.0 } else { 0.0 };
                        let raw = hits - 2.0;
                        let tokens = query.len() + doc.len() + 20;
                        RerankScore { score: 1.0 / (1.0 + (-raw).exp()), raw, tokens, truncated: false }
                    })
                    .collect()
            })
            .collect())
    }
}
