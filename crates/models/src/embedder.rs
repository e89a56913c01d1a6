//! Embedders: Qwen3-Embedding (last-token pooling, instruction on queries) and the BERT family
//! (mean pooling; all-MiniLM-L6-v2 is the small default that runs anywhere).

use candle_core::{DType, Tensor, D};

use crate::bert::Bert;
use crate::error::{ModelError, Result};
use crate::files::ModelDir;
use crate::qwen3::{Qwen3, Row};
use crate::{EmbedInput, EmbedOptions, Embedder, Embeddings, ModelInfo, Placement};

pub const DEFAULT_TASK: &str = "Given a web search query, retrieve relevant passages that answer the query";
const ENDOFTEXT: &str = "<|endoftext|>";
/// The reference's default `max_length` for Qwen3-Embedding.
pub const QWEN3_MAX_LENGTH: usize = 8192;

/// The text a Qwen3-Embedding model sees for one input.
pub fn qwen3_text(input: &EmbedInput<'_>) -> String {
    match input {
        EmbedInput::Query { text, instruction } => {
            let task = instruction.filter(|s| !s.trim().is_empty()).unwrap_or(DEFAULT_TASK);
            format!("Instruct: {task}\nQuery:{text}")
        }
        EmbedInput::Document(text) => (*text).to_string(),
    }
}

/// Keeps the first `dim` components (Matryoshka), then L2-normalises each row.
fn finish(pooled: &Tensor, dim: usize) -> Result<Vec<Vec<f32>>> {
    let x = pooled.to_dtype(DType::F32)?.narrow(D::Minus1, 0, dim)?;
    let norm = x.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?.clamp(1e-12, f64::INFINITY)?;
    Ok(x.broadcast_div(&norm)?.to_vec2::<f32>()?)
}

fn check_dim(opts: &EmbedOptions, full: usize, min: usize) -> Result<usize> {
    match opts.dimensions {
        None => Ok(full),
        Some(d) if (min.min(full)..=full).contains(&d) => Ok(d),
        Some(d) => Err(ModelError::input("dimensions", format!("{}..={full}", min.min(full)), d)),
    }
}

/// Splits `rows` (by token count) into passes of at most `budget` tokens and concatenates the results.
fn in_passes<T>(
    lens: &[usize],
    budget: usize,
    mut run: impl FnMut(std::ops::Range<usize>) -> Result<T>,
) -> Result<Vec<T>> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < lens.len() {
        let (mut end, mut tokens) = (start, 0);
        while end < lens.len() && (end == start || tokens + lens[end] <= budget) {
            tokens += lens[end];
            end += 1;
        }
        out.push(run(start..end)?);
        start = end;
    }
    Ok(out)
}

/// The shared part of both embedders: tokenize each input, run packed passes, pool, cut, normalise.
fn embed_rows(
    inputs: &[EmbedInput<'_>],
    batch_tokens: usize,
    max_length: usize,
    dim: usize,
    encode: impl Fn(&EmbedInput<'_>, usize) -> Result<(Vec<u32>, bool)> + Sync,
    pooled: impl Fn(&[&[u32]]) -> Result<Tensor> + Sync,
) -> Result<Embeddings> {
    let encoded: Vec<(Vec<u32>, bool)> = {
        use rayon::prelude::*;
        inputs.par_iter().map(|input| encode(input, max_length)).collect::<Result<_>>()?
    };
    let (ids, truncated): (Vec<Vec<u32>>, Vec<bool>) = encoded.into_iter().unzip();
    let lens: Vec<usize> = ids.iter().map(Vec::len).collect();
    let parts = in_passes(&lens, batch_tokens, |r| {
        let rows: Vec<&[u32]> = ids[r].iter().map(Vec::as_slice).collect();
        crate::ops::on_pool(|| finish(&pooled(&rows)?, dim))
    })?;
    Ok(Embeddings { vectors: parts.into_iter().flatten().collect(), tokens: lens, truncated })
}

/// Qwen3-Embedding (0.6B/4B/8B).
pub struct Qwen3Embedder {
    model: Qwen3,
    dir: ModelDir,
    eos: u32,
    max_length: usize,
    info: ModelInfo,
}

impl std::fmt::Debug for Qwen3Embedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Qwen3Embedder").field("info", &self.info).finish()
    }
}

/// The size of BERT's English uncased WordPiece vocabulary.
const ENGLISH_UNCASED_VOCAB: usize = 30_522;

impl Qwen3Embedder {
    pub fn load(dir: ModelDir, placement: &Placement, max_length: usize) -> Result<Qwen3Embedder> {
        let prefix = if dir.has("model.embed_tokens.weight") { "model." } else { "" };
        let model = Qwen3::load(&dir, prefix, &placement.device, placement.dtype)?;
        let eos = dir.token_id(ENDOFTEXT)?;
        let c = &model.config;
        let max_length = max_length.min(c.max_position_embeddings);
        let info = ModelInfo::new(&dir, "embedder", placement, c.hidden_size, max_length, c.non_embedding_params());
        Ok(Qwen3Embedder { model, dir, eos, max_length, info })
    }

    /// Token ids for one input: text tokens (truncated to `max_length - 1`), then `<|endoftext|>` exactly once,
    /// whether or not the loaded tokenizer's post-processor appends it.
    pub fn input_ids(&self, input: &EmbedInput<'_>, max_length: usize) -> Result<(Vec<u32>, bool)> {
        let text = qwen3_text(input);
        let enc = self
            .dir
            .tokenizer
            .encode(text.as_str(), true)
            .map_err(|e| ModelError::Tokenizer { file: self.dir.tokenizer_file(), message: e.to_string() })?;
        let mut ids = enc.get_ids().to_vec();
        if ids.last() == Some(&self.eos) && !text.ends_with(ENDOFTEXT) {
            ids.pop(); // the post-processor's; re-added below after truncation
        }
        let truncated = ids.len() > max_length - 1;
        ids.truncate(max_length - 1);
        ids.push(self.eos);
        Ok((ids, truncated))
    }
}

impl Embedder for Qwen3Embedder {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn embed(&self, inputs: &[EmbedInput<'_>], opts: &EmbedOptions) -> Result<Embeddings> {
        let dim = check_dim(opts, self.model.config.hidden_size, 32)?;
        let max_length = opts.max_length.unwrap_or(self.max_length).clamp(2, self.max_length);
        embed_rows(
            inputs,
            crate::attention::default_batch_tokens(self.model.device()),
            max_length,
            dim,
            |i, m| self.input_ids(i, m),
            |rows| {
                let rows: Vec<Row<'_>> = rows.iter().map(|ids| Row { ids, prefix: None }).collect();
                self.model.last_hidden(&rows)
            },
        )
    }
}

/// BERT-family sentence embedder (mean pooling, L2-normalised), e.g. all-MiniLM-L6-v2.
pub struct BertEmbedder {
    model: Bert,
    dir: ModelDir,
    max_length: usize,
    info: ModelInfo,
}

impl std::fmt::Debug for BertEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BertEmbedder").field("info", &self.info).finish()
    }
}

impl BertEmbedder {
    pub fn load(dir: ModelDir, placement: &Placement) -> Result<BertEmbedder> {
        let model = Bert::load(&dir, &placement.device, placement.dtype)?;
        // sentence-transformers' max_seq_length (256 for MiniLM) when the directory says it.
        let st = std::fs::read_to_string(dir.dir.join("sentence_bert_config.json"))
            .ok()
            .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
            .and_then(|v| v.get("max_seq_length").and_then(|m| m.as_u64()))
            .map(|m| m as usize);
        let c = &model.config;
        let max_length = st.unwrap_or(c.max_position_embeddings).min(c.max_position_embeddings);
        let params =
            c.num_hidden_layers * (4 * c.hidden_size * c.hidden_size + 2 * c.hidden_size * c.intermediate_size);
        let mut info = ModelInfo::new(&dir, "embedder", placement, c.hidden_size, max_length, params);
        // BERT's English uncased WordPiece vocabulary (30,522 pieces, all-MiniLM-L6-v2's) covers English only:
        // Chinese comes out as single characters it was not trained to compose.
        if c.vocab_size == ENGLISH_UNCASED_VOCAB {
            info.languages = vec!["en".to_owned()];
        }
        Ok(BertEmbedder { model, dir, max_length, info })
    }

    /// `[CLS] tokens [SEP]`, truncated so that `[SEP]` stays.
    pub fn input_ids(&self, text: &str, max_length: usize) -> Result<(Vec<u32>, bool)> {
        let enc = self
            .dir
            .tokenizer
            .encode(text, true)
            .map_err(|e| ModelError::Tokenizer { file: self.dir.tokenizer_file(), message: e.to_string() })?;
        let mut ids = enc.get_ids().to_vec();
        let truncated = ids.len() > max_length;
        if truncated {
            let last = *ids.last().unwrap_or(&0);
            ids.truncate(max_length - 1);
            ids.push(last);
        }
        Ok((ids, truncated))
    }
}

impl Embedder for BertEmbedder {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn embed(&self, inputs: &[EmbedInput<'_>], opts: &EmbedOptions) -> Result<Embeddings> {
        let dim = check_dim(opts, self.model.config.hidden_size, 1)?;
        let max_length = opts.max_length.unwrap_or(self.max_length).clamp(2, self.max_length);
        // Symmetric model: queries and documents are encoded alike (no instruction).
        let encode = |input: &EmbedInput<'_>, m| match input {
            EmbedInput::Query { text, .. } | EmbedInput::Document(text) => self.input_ids(text, m),
        };
        let batch_tokens = crate::attention::default_batch_tokens(self.model.device());
        embed_rows(inputs, batch_tokens, max_length, dim, encode, |rows| self.model.mean_pooled(rows))
    }
}
