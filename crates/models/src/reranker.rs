//! Qwen3-Reranker: a causal LM asked whether a document meets a query, scored `sigmoid(l_yes - l_no)` at the
//! last position. The contract (template, truncation, ids) is `../shared/reference/models.md`; the reference
//! implementation is the model authors' transformers code.

use candle_core::Tensor;

use crate::error::{ModelError, Result};
use crate::files::ModelDir;
use crate::qwen3::{row_dot, PrefixKv, Qwen3, Row};
use crate::{ModelInfo, Placement, RerankInput, RerankScore, Reranker};

pub const DEFAULT_INSTRUCTION: &str = "Given a web search query, retrieve relevant passages that answer the query";
pub const PREFIX: &str = "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the Instruct provided. Note that the answer can only be \"yes\" or \"no\".<|im_end|>\n<|im_start|>user\n";
pub const SUFFIX: &str = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n";
/// The reference's default `max_length` (prefix + body + suffix tokens).
pub const DEFAULT_MAX_LENGTH: usize = 8192;
/// Rows sharing a prefix shorter than this are run unshared (the saving would not pay for the extra pass).
const MIN_SHARED_PREFIX: usize = 8;

/// The body between prefix and suffix, exactly as the reference formats it.
pub fn format_body(instruction: &str, query: &str, document: &str) -> String {
    format!("<Instruct>: {instruction}\n<Query>: {query}\n<Document>: {document}")
}

/// Engine-wide reranker settings.
#[derive(Debug, Clone)]
pub struct RerankerConfig {
    /// Upper bound on any request's `max_length` (tokens per pair, template included).
    pub max_length_cap: usize,
    /// Tokens per forward pass; larger requests are split into several passes. `None`: the device's default
    /// (`attention::default_batch_tokens`: 16,384 on the CPU, 65,536 on a GPU).
    pub max_batch_tokens: Option<usize>,
}

impl Default for RerankerConfig {
    fn default() -> Self {
        RerankerConfig { max_length_cap: 32_768, max_batch_tokens: None }
    }
}

/// A Qwen3-Reranker checkpoint (0.6B/4B/8B layouts, tied or untied head).
pub struct Qwen3Reranker {
    model: Qwen3,
    dir: ModelDir,
    prefix_ids: Vec<u32>,
    suffix_ids: Vec<u32>,
    /// `W[yes] - W[no]`: the only part of the vocabulary head scoring needs.
    head: Tensor,
    config: RerankerConfig,
    info: ModelInfo,
}

impl std::fmt::Debug for Qwen3Reranker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Qwen3Reranker").field("info", &self.info).finish()
    }
}

/// One tokenized pair.
struct Pair {
    ids: Vec<u32>,
    truncated: bool,
}

impl Qwen3Reranker {
    pub fn load(dir: ModelDir, placement: &Placement, config: RerankerConfig) -> Result<Qwen3Reranker> {
        let prefix = if dir.has("model.embed_tokens.weight") { "model." } else { "" };
        let model = Qwen3::load(&dir, prefix, &placement.device, placement.dtype)?;
        let yes = dir.token_id("yes")?;
        let no = dir.token_id("no")?;
        let c = &model.config;
        for (tok, id) in [("yes", yes), ("no", no)] {
            if id as usize >= c.vocab_size {
                return Err(ModelError::Tokenizer {
                    file: dir.tokenizer_file(),
                    message: format!("token {tok:?} has id {id}, expected < vocab_size {}", c.vocab_size),
                });
            }
        }
        let head_weight = if dir.has("lm_head.weight") {
            dir.tensor("lm_head.weight", &[c.vocab_size, c.hidden_size], placement.dtype, &placement.device)?
        } else if c.tie_word_embeddings {
            model.embed_tokens().clone()
        } else {
            return Err(ModelError::MissingTensor {
                dir: dir.dir.clone(),
                tensor: "lm_head.weight".into(),
                expected: format!(
                    "[{}, {}] (config.json says tie_word_embeddings = false)",
                    c.vocab_size, c.hidden_size
                ),
            });
        };
        let w_yes = head_weight.get(yes as usize)?.to_dtype(candle_core::DType::F32)?;
        let w_no = head_weight.get(no as usize)?.to_dtype(candle_core::DType::F32)?;
        let head = (w_yes - w_no)?;
        let encode = |s: &str| -> Result<Vec<u32>> {
            Ok(dir
                .tokenizer
                .encode(s, false)
                .map_err(|e| ModelError::Tokenizer { file: dir.tokenizer_file(), message: e.to_string() })?
                .get_ids()
                .to_vec())
        };
        let prefix_ids = encode(PREFIX)?;
        let suffix_ids = encode(SUFFIX)?;
        let max_len = config.max_length_cap.min(c.max_position_embeddings);
        let mut info = ModelInfo::new(&dir, "reranker", placement, c.hidden_size, max_len, c.non_embedding_params());
        info.min_length = prefix_ids.len() + suffix_ids.len() + 1;
        Ok(Qwen3Reranker {
            config: RerankerConfig { max_length_cap: max_len, ..config },
            model,
            dir,
            prefix_ids,
            suffix_ids,
            head,
            info,
        })
    }

    pub fn model(&self) -> &Qwen3 {
        &self.model
    }

    /// The exact token ids of one (instruction, query, document) input, truncated to `max_length`.
    pub fn pair_ids(&self, instruction: &str, query: &str, document: &str, max_length: usize) -> Result<Vec<u32>> {
        Ok(self.pair(instruction, query, document, max_length)?.ids)
    }

    fn pair(&self, instruction: &str, query: &str, document: &str, max_length: usize) -> Result<Pair> {
        let body = format_body(instruction, query, document);
        let enc = self
            .dir
            .tokenizer
            .encode(body.as_str(), false)
            .map_err(|e| ModelError::Tokenizer { file: self.dir.tokenizer_file(), message: e.to_string() })?;
        let body_ids = enc.get_ids();
        let budget = max_length - self.prefix_ids.len() - self.suffix_ids.len();
        let keep = body_ids.len().min(budget);
        let mut ids = Vec::with_capacity(self.prefix_ids.len() + keep + self.suffix_ids.len());
        ids.extend_from_slice(&self.prefix_ids);
        ids.extend_from_slice(&body_ids[..keep]);
        ids.extend_from_slice(&self.suffix_ids);
        Ok(Pair { ids, truncated: keep < body_ids.len() })
    }

    fn max_length(&self, requested: Option<usize>) -> Result<usize> {
        let min = self.info.min_length;
        let cap = self.config.max_length_cap;
        let m = requested.unwrap_or(DEFAULT_MAX_LENGTH).min(cap);
        if let Some(r) = requested {
            if r < min {
                return Err(ModelError::input(
                    "max_length",
                    format!("at least {min} (the template alone is {} tokens)", min - 1),
                    r,
                ));
            }
        }
        Ok(m)
    }

    /// Scores packed rows in passes of at most `max_batch_tokens` tokens.
    fn score_rows(&self, rows: &[Row<'_>]) -> Result<Vec<f32>> {
        let mut out = Vec::with_capacity(rows.len());
        let mut start = 0;
        while start < rows.len() {
            let mut end = start;
            let mut tokens = 0;
            let budget = self
                .config
                .max_batch_tokens
                .unwrap_or_else(|| crate::attention::default_batch_tokens(self.model.device()));
            while end < rows.len() && (end == start || tokens + rows[end].ids.len() <= budget) {
                tokens += rows[end].ids.len();
                end += 1;
            }
            let part = &rows[start..end];
            out.extend(crate::ops::on_pool(|| row_dot(&self.model.last_hidden(part)?, &self.head))?);
            start = end;
        }
        Ok(out)
    }
}

/// Length of the longest common prefix of all `seqs`, kept short of the shortest (every row needs a token).
fn common_prefix<S: AsRef<[u32]>>(seqs: &[S]) -> usize {
    let Some(first) = seqs.first().map(AsRef::as_ref) else { return 0 };
    let mut n = seqs.iter().map(|s| s.as_ref().len()).min().unwrap_or(0).saturating_sub(1);
    for s in &seqs[1..] {
        n = n.min(first.iter().zip(s.as_ref()).take_while(|(a, b)| a == b).count());
    }
    n
}

pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

impl Reranker for Qwen3Reranker {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn rerank(&self, batch: &[RerankInput<'_>]) -> Result<Vec<Vec<RerankScore>>> {
        // Tokenize every pair, then find each group's shared prefix.
        let mut groups = Vec::with_capacity(batch.len());
        for input in batch {
            let max_length = self.max_length(input.max_length)?;
            let instruction = input.instruction.filter(|s| !s.trim().is_empty()).unwrap_or(DEFAULT_INSTRUCTION);
            // Tokenizing is a large share of a GPU rerank's time: spread it over the cores.
            let pairs = {
                use rayon::prelude::*;
                input
                    .documents
                    .par_iter()
                    .map(|d| self.pair(instruction, input.query, d, max_length))
                    .collect::<Result<Vec<_>>>()?
            };
            groups.push(pairs);
        }
        let mut prefixes: Vec<Option<PrefixKv>> = Vec::with_capacity(groups.len());
        for (input, pairs) in batch.iter().zip(&groups) {
            let ids: Vec<&[u32]> = pairs.iter().map(|p| p.ids.as_slice()).collect();
            let n = if input.share_prefix && pairs.len() > 1 { common_prefix(&ids) } else { 0 };
            prefixes.push(if n >= MIN_SHARED_PREFIX { Some(self.model.prefix(&pairs[0].ids[..n])?) } else { None });
        }
        let mut rows = Vec::new();
        for (pairs, prefix) in groups.iter().zip(&prefixes) {
            for p in pairs {
                let skip = prefix.as_ref().map_or(0, |k| k.len);
                rows.push(Row { ids: &p.ids[skip..], prefix: prefix.as_ref() });
            }
        }
        let raw = self.score_rows(&rows)?;
        let mut raw = raw.into_iter();
        Ok(groups
            .iter()
            .map(|pairs| {
                pairs
                    .iter()
                    .map(|p| {
                        let r = raw.next().unwrap_or(f32::NAN);
                        RerankScore { score: sigmoid(r), raw: r, tokens: p.ids.len(), truncated: p.truncated }
                    })
                    .collect()
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_prefix_leaves_every_row_a_token() {
        assert_eq!(common_prefix(&[vec![1, 2, 3, 4], vec![1, 2, 5]]), 2);
        assert_eq!(common_prefix(&[vec![1, 2, 3], vec![1, 2, 3]]), 2);
        assert_eq!(common_prefix(&[vec![1, 2, 3]]), 2);
        assert_eq!(common_prefix(&[vec![9], vec![1]]), 0);
        assert_eq!(common_prefix::<Vec<u32>>(&[]), 0);
    }

    #[test]
    fn sigmoid_is_the_two_way_softmax() {
        let (yes, no) = (1.3f32, -0.4f32);
        let softmax_yes = yes.exp() / (yes.exp() + no.exp());
        assert!((sigmoid(yes - no) - softmax_yes).abs() < 1e-6);
        assert_eq!(sigmoid(0.0), 0.5);
    }
}
