//! Deterministic random-weight checkpoints, for tests and benchmarks (no real Qwen3 weights are reachable).
//!
//! Every weight is a pure function of (seed, tensor name, element index): a counter-based hash (splitmix64)
//! mapped to a uniform value. `crates/models/fixtures/make_fixtures.py` implements the very same generator in
//! numpy, so the reference outputs computed there with Hugging Face transformers can be checked against a
//! checkpoint this module rebuilds, and no weights need to be committed.
//!
//! Value rules by tensor name: `*norm.weight` → `1 + 0.2u`; `*.bias` → `0.1u`; embeddings and heads → `0.5u`;
//! other matrices `[out, in]` → `sqrt(3/in)·u` (unit output variance); `u ∈ [-1, 1)` with 24 random bits.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use serde_json::json;

use crate::error::{ModelError, Result};
use crate::qwen3::Qwen3Config;

pub const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;
const INDEX_MIX: u64 = 0xD1B5_4A32_D192_ED03;

pub fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(GOLDEN);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xCBF2_9CE4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01B3);
    }
    h
}

/// Uniform in `[-1, 1)`, exactly representable in f32.
pub fn uniform(key: u64, index: u64) -> f32 {
    let h = splitmix64(key ^ index.wrapping_mul(INDEX_MIX)) >> 40;
    (h as f32) * (1.0 / (1u32 << 23) as f32) - 1.0
}

pub fn tensor_key(seed: u64, name: &str) -> u64 {
    fnv1a64(format!("{seed}:{name}").as_bytes())
}

/// The values of tensor `name` with `shape`, by the rules in the module doc.
pub fn tensor_values(seed: u64, name: &str, shape: &[usize]) -> Vec<f32> {
    let key = tensor_key(seed, name);
    let n: usize = shape.iter().product();
    let (scale, offset) = if name.ends_with("norm.weight") || name.ends_with("LayerNorm.weight") {
        (0.2f32, 1.0f32)
    } else if name.ends_with(".bias") {
        (0.1, 0.0)
    } else if name.contains("embed") || name.contains("lm_head") {
        (0.5, 0.0)
    } else {
        let fan_in = *shape.last().unwrap_or(&1);
        ((3.0f64 / fan_in as f64).sqrt() as f32, 0.0)
    };
    (0..n).map(|i| offset + scale * uniform(key, i as u64)).collect()
}

/// Shapes of random Qwen3 checkpoints (the forward's own [`Qwen3Config`]; RMS eps 1e-6, RoPE θ 1e6, no biases).
pub mod shapes {
    use crate::qwen3::Qwen3Config;

    fn qwen3(
        hidden: usize,
        inter: usize,
        layers: usize,
        heads: (usize, usize),
        head_dim: usize,
        max_pos: usize,
    ) -> Qwen3Config {
        Qwen3Config {
            vocab_size: 151_669,
            hidden_size: hidden,
            intermediate_size: inter,
            num_hidden_layers: layers,
            num_attention_heads: heads.0,
            num_key_value_heads: heads.1,
            head_dim,
            rms_norm_eps: 1e-6,
            rope_theta: 1_000_000.0,
            max_position_embeddings: max_pos,
            tie_word_embeddings: true,
            attention_bias: false,
        }
    }

    /// The tiny shape the parity fixtures use (real vocabulary, so the real tokenizer fits).
    pub fn tiny() -> Qwen3Config {
        qwen3(64, 128, 2, (4, 2), 16, 4096)
    }

    /// The shape of the CPU benchmark peer (`../shared/peers/peer_rerank_cpu.py` defaults).
    pub fn bench() -> Qwen3Config {
        qwen3(256, 768, 4, (4, 2), 64, 4096)
    }

    /// Qwen3-0.6B's shape (for the GPU benchmark).
    pub fn qwen3_0_6b() -> Qwen3Config {
        qwen3(1024, 3072, 28, (16, 8), 128, 40960)
    }
}

/// Which of the real checkpoint layouts to imitate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Qwen3-Reranker: `model.` prefix, head tied to the embeddings.
    RerankerTied,
    /// Like the 8B reranker: `model.` prefix and a separate `lm_head.weight`.
    RerankerUntied,
    /// Qwen3-Embedding: no prefix, no head.
    Embedding,
}

/// Writes `config.json`, `model.safetensors` and a copy of `tokenizer_json` into `dir`.
/// `spec.tie_word_embeddings` is set by the layout; biases are not generated (`attention_bias` must be false).
pub fn write_qwen3(dir: &Path, spec: &Qwen3Config, layout: Layout, seed: u64, tokenizer_json: &Path) -> Result<()> {
    let io = |path: &Path, e: std::io::Error| ModelError::Io {
        path: path.to_path_buf(),
        message: "cannot write the synthetic checkpoint".into(),
        source: e,
    };
    if spec.attention_bias {
        return Err(ModelError::input("attention_bias", "false (no biases are generated)", true));
    }
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let s = spec;
    let p = if layout == Layout::Embedding { "" } else { "model." };
    let (q, kv) = (s.num_attention_heads * s.head_dim, s.num_key_value_heads * s.head_dim);
    let mut shapes: Vec<(String, Vec<usize>)> = vec![
        (format!("{p}embed_tokens.weight"), vec![s.vocab_size, s.hidden_size]),
        (format!("{p}norm.weight"), vec![s.hidden_size]),
    ];
    for i in 0..s.num_hidden_layers {
        let l = format!("{p}layers.{i}.");
        for (n, shape) in [
            ("input_layernorm.weight", vec![s.hidden_size]),
            ("post_attention_layernorm.weight", vec![s.hidden_size]),
            ("self_attn.q_proj.weight", vec![q, s.hidden_size]),
            ("self_attn.k_proj.weight", vec![kv, s.hidden_size]),
            ("self_attn.v_proj.weight", vec![kv, s.hidden_size]),
            ("self_attn.o_proj.weight", vec![s.hidden_size, q]),
            ("self_attn.q_norm.weight", vec![s.head_dim]),
            ("self_attn.k_norm.weight", vec![s.head_dim]),
            ("mlp.gate_proj.weight", vec![s.intermediate_size, s.hidden_size]),
            ("mlp.up_proj.weight", vec![s.intermediate_size, s.hidden_size]),
            ("mlp.down_proj.weight", vec![s.hidden_size, s.intermediate_size]),
        ] {
            shapes.push((format!("{l}{n}"), shape));
        }
    }
    let tied = layout != Layout::RerankerUntied;
    if !tied {
        shapes.push(("lm_head.weight".into(), vec![s.vocab_size, s.hidden_size]));
    }
    let mut tensors = HashMap::new();
    for (name, shape) in shapes {
        let values = tensor_values(seed, &name, &shape);
        tensors.insert(name, Tensor::from_vec(values, shape.as_slice(), &Device::Cpu)?);
    }
    let weights = dir.join("model.safetensors");
    candle_core::safetensors::save(&tensors, &weights)?;
    let config = json!({
        "architectures": [if layout == Layout::Embedding { "Qwen3Model" } else { "Qwen3ForCausalLM" }],
        "model_type": "qwen3",
        "vocab_size": s.vocab_size,
        "hidden_size": s.hidden_size,
        "intermediate_size": s.intermediate_size,
        "num_hidden_layers": s.num_hidden_layers,
        "num_attention_heads": s.num_attention_heads,
        "num_key_value_heads": s.num_key_value_heads,
        "head_dim": s.head_dim,
        "max_position_embeddings": s.max_position_embeddings,
        "rms_norm_eps": s.rms_norm_eps,
        "rope_theta": s.rope_theta,
        "tie_word_embeddings": tied,
        "attention_bias": false,
        "hidden_act": "silu",
        "torch_dtype": "float32",
        "bos_token_id": 151643,
        "eos_token_id": 151645,
        "sieve_synthetic": {"seed": seed, "note": "random weights from sieve_models::synthetic; not a trained model"},
    });
    let cfg_path = dir.join("config.json");
    std::fs::write(&cfg_path, serde_json::to_string_pretty(&config).unwrap_or_default())
        .map_err(|e| io(&cfg_path, e))?;
    let tok = dir.join("tokenizer.json");
    std::fs::copy(tokenizer_json, &tok).map_err(|e| io(&tok, e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generator_is_stable() {
        // Pinned values: the Python fixture generator must produce the same numbers.
        assert_eq!(splitmix64(0), 0xE220_A839_7B1D_CDAF);
        assert_eq!(fnv1a64(b"a"), 0xAF63_DC4C_8601_EC8C);
        let u: Vec<f32> = (0..4).map(|i| uniform(tensor_key(7, "x"), i)).collect();
        assert!(u.iter().all(|v| (-1.0..1.0).contains(v)));
        assert_ne!(u[0], u[1]);
        let mean: f32 = (0..10_000).map(|i| uniform(1, i)).sum::<f32>() / 10_000.0;
        assert!(mean.abs() < 0.03, "{mean}");
    }
}
