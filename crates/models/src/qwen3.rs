//! The Qwen3 decoder, written for scoring and pooling rather than generation.
//!
//! What differs from a generation forward (and from candle-transformers' `qwen3`):
//! - Batches are **packed**: the rows of a batch are concatenated into one `[tokens, hidden]` matrix, so dense
//!   layers are single GEMMs with no padding, and attention runs per row (no cross-row attention, nothing to mask).
//! - There is no generation KV cache. A **prefix** (the part of the input shared by every row of a group: the
//!   reranker's system prompt, instruction and query) can be run once; its per-layer keys and values are then
//!   reused by every row, whose positions continue after it.
//! - Only the positions that are needed reach the head: in the last layer only each row's final position goes
//!   through the query projection, attention output, MLP and final norm.
//!
//! The math follows Hugging Face transformers' `Qwen3Model`: RMSNorm (pre-norm), per-head RMSNorm on q and k,
//! RoPE (rotate-half), grouped-query attention with scale `head_dim^-0.5`, SwiGLU MLP.

use candle_core::{DType, Device, Tensor, D};

use crate::attention::AttnPlan;
use crate::cpu_attention::CausalRow;
use crate::error::{ModelError, Result};
use crate::files::ModelDir;
use crate::ops::{self, Linear};

/// The parts of `config.json` the forward needs. Read at load time; nothing is hard-coded per model size.
#[derive(Debug, Clone, PartialEq)]
pub struct Qwen3Config {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub max_position_embeddings: usize,
    pub tie_word_embeddings: bool,
    pub attention_bias: bool,
}

impl Qwen3Config {
    pub fn from_dir(md: &ModelDir) -> Result<Qwen3Config> {
        let hidden_size = md.usize("hidden_size")?;
        let num_attention_heads = md.usize("num_attention_heads")?;
        let num_key_value_heads = md.opt_usize("num_key_value_heads")?.unwrap_or(num_attention_heads);
        if num_attention_heads == 0 || num_key_value_heads == 0 || num_attention_heads % num_key_value_heads != 0 {
            return Err(md.bad(
                "num_key_value_heads",
                &format!("a divisor of num_attention_heads ({num_attention_heads})"),
                num_key_value_heads,
            ));
        }
        let head_dim = md.opt_usize("head_dim")?.unwrap_or(hidden_size / num_attention_heads);
        if head_dim == 0 || head_dim % 2 != 0 {
            return Err(md.bad("head_dim", "a positive even number", head_dim));
        }
        // transformers 5 moves rope_theta into rope_parameters.
        let rope_theta = match md.opt_f64("rope_theta")? {
            Some(t) => t,
            None => md
                .config
                .get("rope_parameters")
                .and_then(|p| p.get("rope_theta"))
                .and_then(|t| t.as_f64())
                .unwrap_or(1_000_000.0),
        };
        Ok(Qwen3Config {
            vocab_size: md.usize("vocab_size")?,
            hidden_size,
            intermediate_size: md.usize("intermediate_size")?,
            num_hidden_layers: md.usize("num_hidden_layers")?,
            num_attention_heads,
            num_key_value_heads,
            head_dim,
            rms_norm_eps: md.opt_f64("rms_norm_eps")?.unwrap_or(1e-6),
            rope_theta,
            max_position_embeddings: md.opt_usize("max_position_embeddings")?.unwrap_or(32768),
            tie_word_embeddings: md.opt_bool("tie_word_embeddings")?.unwrap_or(true),
            attention_bias: md.opt_bool("attention_bias")?.unwrap_or(false),
        })
    }

    /// Parameters outside the embedding table (the ones that cost FLOPs per token).
    pub fn non_embedding_params(&self) -> usize {
        let (h, q, kv, i) = (
            self.hidden_size,
            self.num_attention_heads * self.head_dim,
            self.num_key_value_heads * self.head_dim,
            self.intermediate_size,
        );
        self.num_hidden_layers * (h * q * 2 + h * kv * 2 + 3 * h * i + 2 * h + 2 * self.head_dim) + h
    }
}

struct Layer {
    input_norm: Tensor,
    /// q, k and v projections fused into one `[hidden, q+2kv]` GEMM.
    qkv: Linear,
    q_norm: Tensor,
    k_norm: Tensor,
    /// `[q_norm; k_norm]` as `[2, head_dim]`, for the fused CUDA kernel.
    qk_norm: Tensor,
    o: Linear,
    post_norm: Tensor,
    /// gate and up projections fused into one GEMM.
    gate_up: Linear,
    down: Linear,
}

/// Keys and values of a shared prefix, per layer, RoPE applied; their form depends on the attention path
/// (see `LayerKv`).
#[derive(Debug, Clone)]
pub struct PrefixKv {
    pub len: usize,
    layers: Vec<LayerKv>,
}

/// One layer's keys and values of a prefix, in the form the attention path that made them reads.
#[derive(Debug, Clone)]
enum LayerKv {
    /// f32 on the CPU: the layer's whole q|k|v block, `[len, (hq + 2·hkv)·head_dim]`, q/k normed and rotated
    /// in place; the causal kernel reads keys and values from it where they lie, so no copy is kept.
    Qkv(Tensor),
    /// Elsewhere: k and v, `[len, kv_heads, head_dim]` each, and on CUDA (when the fused q/k/v kernel ran) the
    /// contiguous k|v block they are views of, which the fused attention kernels read.
    Split {
        k: Tensor,
        v: Tensor,
        #[cfg(feature = "cuda")]
        kv_block: Option<Tensor>,
    },
}

impl LayerKv {
    /// The q|k|v block the CPU kernel reads, if these were made by the CPU path.
    fn qkv(&self) -> Option<&Tensor> {
        match self {
            LayerKv::Qkv(t) => Some(t),
            LayerKv::Split { .. } => None,
        }
    }

    /// The k|v block the fused CUDA kernels read, if there is one.
    #[cfg(feature = "cuda")]
    fn kv_block(&self) -> Option<&Tensor> {
        match self {
            LayerKv::Split { kv_block, .. } => kv_block.as_ref(),
            LayerKv::Qkv(_) => None,
        }
    }

    /// Keys and values as `[len, kv_heads, head_dim]` tensors, for the batched-GEMM plans. A CPU block is
    /// copied out: one model's forwards take the CPU path whenever its prefixes did, so this only keeps a mix
    /// of paths correct.
    fn k_v(&self, (hq, hkv, hd): (usize, usize, usize)) -> Result<(Tensor, Tensor)> {
        match self {
            LayerKv::Split { k, v, .. } => Ok((k.clone(), v.clone())),
            LayerKv::Qkv(block) => Ok((heads_of(block, hq, hkv, hd)?, heads_of(block, hq + hkv, hkv, hd)?)),
        }
    }
}

/// Heads `first..first + n` of a q|k|v block `[tokens, (hq + 2·hkv)·hd]`, copied out as `[tokens, n, hd]`.
fn heads_of(block: &Tensor, first: usize, n: usize, hd: usize) -> Result<Tensor> {
    Ok(block.narrow(1, first * hd, n * hd)?.contiguous()?.reshape((block.dim(0)?, n, hd))?)
}

/// The fused-attention layouts of one forward (see `Qwen3::flash_plans`).
#[derive(Debug)]
struct FlashPlans {
    #[cfg(feature = "cuda")]
    full: crate::cuda::FlashMeta,
    #[cfg(feature = "cuda")]
    last: Option<crate::cuda::FlashMeta>,
}

/// One row of a packed batch: its own tokens, and optionally the prefix it continues.
#[derive(Debug, Clone, Copy)]
pub struct Row<'a> {
    pub ids: &'a [u32],
    pub prefix: Option<&'a PrefixKv>,
}

/// A Qwen3 decoder loaded for scoring/pooling.
pub struct Qwen3 {
    pub config: Qwen3Config,
    embed: Tensor,
    layers: Vec<Layer>,
    norm: Tensor,
    cos: Tensor,
    sin: Tensor,
    device: Device,
    dtype: DType,
}

impl std::fmt::Debug for Qwen3 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Qwen3").field("config", &self.config).field("dtype", &self.dtype).finish()
    }
}

impl Qwen3 {
    /// Loads the decoder from `md`; `prefix` is the weight-name prefix (`"model."` for reranker checkpoints,
    /// `""` for embedding checkpoints).
    pub fn load(md: &ModelDir, prefix: &str, device: &Device, dtype: DType) -> Result<Qwen3> {
        let c = Qwen3Config::from_dir(md)?;
        let (h, hd) = (c.hidden_size, c.head_dim);
        let (qd, kvd) = (c.num_attention_heads * hd, c.num_key_value_heads * hd);
        let t = |name: &str, shape: &[usize]| md.tensor(&format!("{prefix}{name}"), shape, dtype, device);
        let bias = |name: &str, n: usize| -> Result<Option<Tensor>> {
            if c.attention_bias {
                Ok(Some(t(name, &[n])?))
            } else {
                Ok(None)
            }
        };
        let embed = t("embed_tokens.weight", &[c.vocab_size, h])?;
        let mut layers = Vec::with_capacity(c.num_hidden_layers);
        for i in 0..c.num_hidden_layers {
            let p = format!("layers.{i}.");
            let wq = t(&format!("{p}self_attn.q_proj.weight"), &[qd, h])?;
            let wk = t(&format!("{p}self_attn.k_proj.weight"), &[kvd, h])?;
            let wv = t(&format!("{p}self_attn.v_proj.weight"), &[kvd, h])?;
            let bq = bias(&format!("{p}self_attn.q_proj.bias"), qd)?;
            let bk = bias(&format!("{p}self_attn.k_proj.bias"), kvd)?;
            let bv = bias(&format!("{p}self_attn.v_proj.bias"), kvd)?;
            let qkv_b = match (bq, bk, bv) {
                (Some(q), Some(k), Some(v)) => Some(Tensor::cat(&[q, k, v], 0)?),
                _ => None,
            };
            let gate = t(&format!("{p}mlp.gate_proj.weight"), &[c.intermediate_size, h])?;
            let up = t(&format!("{p}mlp.up_proj.weight"), &[c.intermediate_size, h])?;
            let q_norm = t(&format!("{p}self_attn.q_norm.weight"), &[hd])?;
            let k_norm = t(&format!("{p}self_attn.k_norm.weight"), &[hd])?;
            layers.push(Layer {
                input_norm: t(&format!("{p}input_layernorm.weight"), &[h])?,
                qkv: Linear::new(Tensor::cat(&[wq, wk, wv], 0)?, qkv_b)?,
                qk_norm: Tensor::stack(&[&q_norm, &k_norm], 0)?,
                q_norm,
                k_norm,
                o: Linear::new(t(&format!("{p}self_attn.o_proj.weight"), &[h, qd])?, None)?,
                post_norm: t(&format!("{p}post_attention_layernorm.weight"), &[h])?,
                gate_up: Linear::new(Tensor::cat(&[gate, up], 0)?, None)?,
                down: Linear::new(t(&format!("{p}mlp.down_proj.weight"), &[h, c.intermediate_size])?, None)?,
            });
        }
        let norm = t("norm.weight", &[h])?;
        let (cos, sin) = ops::rope_tables(c.max_position_embeddings, hd, c.rope_theta, device, dtype)?;
        Ok(Qwen3 { config: c, embed, layers, norm, cos, sin, device: device.clone(), dtype })
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The embedding table (`[vocab, hidden]`), i.e. the tied output head.
    pub fn embed_tokens(&self) -> &Tensor {
        &self.embed
    }

    /// Runs `ids` as a prefix and keeps each layer's keys and values.
    pub fn prefix(&self, ids: &[u32]) -> Result<PrefixKv> {
        let rows = [Row { ids, prefix: None }];
        let mut kv = Vec::with_capacity(self.layers.len());
        self.run(&rows, Some(&mut kv), false)?;
        Ok(PrefixKv { len: ids.len(), layers: kv })
    }

    /// The final hidden state (after the last norm) at the last position of every row: `[rows, hidden]`.
    pub fn last_hidden(&self, rows: &[Row<'_>]) -> Result<Tensor> {
        self.run(rows, None, true)
    }

    /// The fused-attention layouts for this batch (all layers, and the last-only final layer), when a fused CUDA
    /// kernel is asked for (`SIEVE_ATTN=fused`: WMMA; `SIEVE_ATTN=fa2`: FlashAttention-2 style, not yet measured
    /// on a GPU) and applies: bf16/f16 on CUDA, head_dim 128, at most one distinct prefix. The default is the
    /// batched-GEMM attention (`attention::AttnPlan`), which measured faster than the WMMA kernel on an H100 at
    /// 32–512-token documents (BENCHMARKS.md); the fused kernels' memory stays linear in the length.
    #[cfg(feature = "cuda")]
    fn flash_plans(
        &self,
        seqlens: &[usize],
        k_lens: &[usize],
        prefixes: &[&PrefixKv],
        key_map: Option<&[u32]>,
        last_only: bool,
    ) -> Result<Option<FlashPlans>> {
        let c = &self.config;
        let usable = self.device.is_cuda()
            && matches!(self.dtype, DType::BF16 | DType::F16)
            && c.head_dim == crate::cuda::FLASH_HEAD_DIM
            && prefixes.len() <= 1
            && prefixes.iter().all(|p| p.layers.iter().all(|l| l.kv_block().is_some()));
        let Some(kernel) = crate::cuda::FlashKernel::from_env().filter(|_| usable) else {
            return Ok(None);
        };
        let n_a = prefixes.first().map_or(0, |p| p.len);
        let (mut q0, mut k0) = (0u32, 0u32);
        let mut full = Vec::with_capacity(seqlens.len());
        let mut last = Vec::with_capacity(seqlens.len());
        for (r, (&nq, &nk)) in seqlens.iter().zip(k_lens).enumerate() {
            full.push([q0, nq as u32, k0, nk as u32, q0]);
            last.push([q0 + nq as u32 - 1, 1, k0, nk as u32, r as u32]);
            q0 += nq as u32;
            k0 += nk as u32;
        }
        let meta = |rows: &[[u32; 5]]| crate::cuda::FlashMeta::new(kernel, rows, key_map, n_a, &self.device);
        Ok(Some(FlashPlans { full: meta(&full)?, last: if last_only { Some(meta(&last)?) } else { None } }))
    }

    #[cfg(not(feature = "cuda"))]
    fn flash_plans(
        &self,
        _: &[usize],
        _: &[usize],
        _: &[&PrefixKv],
        _: Option<&[u32]>,
        _: bool,
    ) -> Result<Option<FlashPlans>> {
        Ok(None)
    }

    #[cfg(feature = "cuda")]
    fn flash_attend(
        &self,
        f: &FlashPlans,
        only_last: bool,
        all: &Tensor,
        total: usize,
        prefixes: &[&PrefixKv],
        li: usize,
    ) -> Result<Tensor> {
        let c = &self.config;
        let m = match (&f.last, only_last) {
            (Some(l), true) => l,
            _ => &f.full,
        };
        let pre = prefixes.first().and_then(|p| p.layers[li].kv_block()).unwrap_or(all);
        crate::cuda::flash_attn(all, total, pre, m, (c.num_attention_heads, c.num_key_value_heads))
    }

    fn run(&self, rows: &[Row<'_>], mut keep_kv: Option<&mut Vec<LayerKv>>, last_only: bool) -> Result<Tensor> {
        let c = &self.config;
        if rows.is_empty() {
            return Ok(Tensor::zeros((0, c.hidden_size), self.dtype, &self.device)?);
        }
        let mut ids = Vec::new();
        let mut positions = Vec::new();
        let mut seqlens = Vec::with_capacity(rows.len());
        for (i, r) in rows.iter().enumerate() {
            if r.ids.is_empty() {
                return Err(ModelError::input("rows", "at least one token per row", format!("row {i} is empty")));
            }
            let start = r.prefix.map_or(0, |p| p.len);
            if start + r.ids.len() > c.max_position_embeddings {
                return Err(ModelError::input(
                    "tokens",
                    format!("at most max_position_embeddings = {} tokens per row", c.max_position_embeddings),
                    format!("{} in row {i}", start + r.ids.len()),
                ));
            }
            if let Some(&bad) = r.ids.iter().find(|&&t| t as usize >= c.vocab_size) {
                return Err(ModelError::input("token id", format!("< vocab_size {}", c.vocab_size), bad));
            }
            ids.extend_from_slice(r.ids);
            positions.extend((start..start + r.ids.len()).map(|p| p as u32));
            seqlens.push(r.ids.len());
        }
        let total = ids.len();
        let ids = Tensor::from_vec(ids, total, &self.device)?;
        crate::profile::start(&self.device);
        let fw = self.plan_forward(rows, &seqlens, &positions, last_only)?;

        let mut x = self.embed.index_select(&ids, 0)?;
        let n_layers = self.layers.len();
        // Each block's input norm is fused with the residual add that ends the block before it.
        let mut attn_in = ops::rms_norm(&x, &self.layers[0].input_norm, c.rms_norm_eps)?;
        let mut out = x.clone();
        crate::profile::mark(&self.device, "embed + plan");
        for (li, layer) in self.layers.iter().enumerate() {
            crate::profile::mark(&self.device, "previous layer's frees");
            let only_last = last_only && li + 1 == n_layers;
            let qkv = layer.qkv.forward(&attn_in)?;
            crate::profile::mark(&self.device, "qkv gemm");
            let attn = self.attention(&fw, layer, li, qkv, only_last, keep_kv.as_deref_mut())?;
            let residual = if only_last { x.index_select(&fw.last, 0)? } else { x.clone() };
            let attn = attn.reshape((attn.dim(0)?, c.num_attention_heads * c.head_dim))?;
            crate::profile::mark(&self.device, "attention");
            let o = layer.o.forward(&attn)?;
            crate::profile::mark(&self.device, "o gemm");
            let (h, mlp_in) = ops::add_rms_norm(&o, &residual, &layer.post_norm, c.rms_norm_eps)?;
            crate::profile::mark(&self.device, "add + norm");
            let gu = layer.gate_up.forward(&mlp_in)?;
            crate::profile::mark(&self.device, "gate/up gemm");
            let act = ops::swiglu(&gu, c.intermediate_size)?;
            crate::profile::mark(&self.device, "swiglu");
            let next_norm = self.layers.get(li + 1).map_or(&self.norm, |l| &l.input_norm);
            let down = layer.down.forward(&act)?;
            crate::profile::mark(&self.device, "down gemm");
            let (sum, normed) = ops::add_rms_norm(&down, &h, next_norm, c.rms_norm_eps)?;
            crate::profile::mark(&self.device, "add + norm");
            x = sum;
            attn_in = normed.clone();
            out = normed;
        }
        if keep_kv.is_some() {
            return Ok(x);
        }
        // `out` is the final norm of the last block's output: every row's last position, or all positions.
        if last_only {
            Ok(out)
        } else {
            Ok(out.index_select(&fw.last, 0)?)
        }
    }

    /// What every layer of one forward shares: RoPE rows, the rows' last positions, the distinct prefixes, and
    /// the attention layout of whichever path runs (the CPU kernel's rows, or the batched-GEMM plans and the
    /// fused CUDA kernels' layouts).
    fn plan_forward<'p>(
        &self,
        rows: &[Row<'p>],
        seqlens: &[usize],
        positions: &[u32],
        last_only: bool,
    ) -> Result<Forward<'p>> {
        let c = &self.config;
        let total = positions.len();
        let pos = Tensor::from_slice(positions, total, &self.device)?;
        let cos = self.cos.index_select(&pos, 0)?;
        let sin = self.sin.index_select(&pos, 0)?;
        // Index of each row's last token in the packed batch.
        let last: Vec<u32> =
            seqlens.iter().scan(0u32, |acc, &n| Some(std::mem::replace(acc, *acc + n as u32) + n as u32 - 1)).collect();
        let last = Tensor::from_vec(last, rows.len(), &self.device)?;
        let mut prefixes: Vec<&'p PrefixKv> = Vec::new();
        for p in rows.iter().filter_map(|r| r.prefix) {
            if !prefixes.iter().any(|q| std::ptr::eq(*q, p)) {
                prefixes.push(p);
            }
        }
        let prefix_index = |r: &Row<'_>| r.prefix.and_then(|p| prefixes.iter().position(|q| std::ptr::eq(*q, p)));
        let k_lens: Vec<usize> = rows.iter().zip(seqlens).map(|(r, &n)| n + r.prefix.map_or(0, |p| p.len)).collect();

        // The CPU kernel: rows read the prefix blocks and the layer's own q|k|v block in place.
        let cpu_kernel = crate::cpu_attention::applies(&self.device, self.dtype, c.head_dim)
            && prefixes.iter().all(|p| p.layers.iter().all(|l| l.qkv().is_some()));
        if cpu_kernel {
            let mut all = Vec::with_capacity(rows.len());
            let mut t0 = 0;
            for (r, &len) in rows.iter().zip(seqlens) {
                all.push(CausalRow { t0, len, prefix: prefix_index(r), queries: len });
                t0 += len;
            }
            let last_rows = all.iter().map(|r| CausalRow { queries: 1, ..*r }).collect();
            let cos_sin = Tensor::cat(&[&cos, &sin], 1)?.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
            let attn = Attn::Cpu { cos_sin, all, last: last_rows };
            return Ok(Forward {
                #[cfg(feature = "cuda")]
                total,
                cos,
                sin,
                last,
                prefixes,
                attn,
            });
        }

        // Rows that continue a prefix read its keys/values in place: each layer's keys are the distinct
        // prefixes' then this batch's own, concatenated, and the plans gather from that through `key_map`.
        let key_map = (!prefixes.is_empty()).then(|| {
            let starts: Vec<usize> =
                prefixes.iter().scan(0, |acc, p| Some(std::mem::replace(acc, *acc + p.len))).collect();
            let mut own = prefixes.iter().map(|p| p.len).sum::<usize>();
            let mut map = Vec::with_capacity(k_lens.iter().sum());
            for (r, &n) in rows.iter().zip(seqlens) {
                if let Some(i) = prefix_index(r) {
                    map.extend((starts[i]..starts[i] + prefixes[i].len).map(|x| x as u32));
                }
                map.extend((own..own + n).map(|x| x as u32));
                own += n;
            }
            map
        });
        let hq = c.num_attention_heads;
        let make_plan = |q_lens: &[usize]| match &key_map {
            Some(m) => AttnPlan::with_key_map(q_lens, &k_lens, true, hq, &self.device, m),
            None => AttnPlan::new(q_lens, &k_lens, true, hq, &self.device),
        };
        let plan = make_plan(seqlens)?;
        let last_plan = if last_only { Some(make_plan(&vec![1; rows.len()])?) } else { None };
        let flash = self.flash_plans(seqlens, &k_lens, &prefixes, key_map.as_deref(), last_only)?;
        // The fused CUDA q/k/v kernel takes cos and sin side by side.
        let cos_sin = if ops::on_cuda(&cos) { Some(Tensor::cat(&[&cos, &sin], 1)?) } else { None };
        let attn = Attn::Plans { plan, last_plan, flash, cos_sin };
        Ok(Forward {
            #[cfg(feature = "cuda")]
            total,
            cos,
            sin,
            last,
            prefixes,
            attn,
        })
    }

    /// One layer's attention from its fresh q|k|v projection: q/k norms and RoPE, then attention over the
    /// prefixes' and the batch's own keys; `[queries, hq, d]` or `[queries, hq·d]` (all positions, or each row's
    /// last when `only_last`). With `keep_kv`, this layer's keys and values are kept for later rows.
    fn attention(
        &self,
        fw: &Forward<'_>,
        layer: &Layer,
        li: usize,
        qkv: Tensor,
        only_last: bool,
        keep_kv: Option<&mut Vec<LayerKv>>,
    ) -> Result<Tensor> {
        let c = &self.config;
        let (hq, hkv, hd) = (c.num_attention_heads, c.num_key_value_heads, c.head_dim);
        let (plan, last_plan, flash, cos_sin) = match &fw.attn {
            Attn::Cpu { cos_sin, all, last } => {
                ops::qk_norm_rope_in_place(&qkv, &layer.qk_norm, cos_sin, (hq, hkv, hd), c.rms_norm_eps)?;
                crate::profile::mark(&self.device, "q/k/v norm + rope");
                if let Some(kv) = keep_kv {
                    kv.push(LayerKv::Qkv(qkv.clone()));
                }
                let blocks: Vec<&Tensor> = fw.prefixes.iter().filter_map(|p| p.layers[li].qkv()).collect();
                let rows = if only_last { last } else { all };
                return crate::cpu_attention::packed_causal_attention(&qkv, &blocks, rows, (hq, hkv, hd));
            }
            Attn::Plans { plan, last_plan, flash, cos_sin } => (plan, last_plan, flash, cos_sin),
        };
        let fused = match cos_sin {
            Some(cs) => ops::fused_qkv(&qkv, &layer.qk_norm, cs, (hq, hkv, hd), c.rms_norm_eps)?,
            None => None,
        };
        let own_block = fused.as_ref().map(|f| f.0.clone());
        let (q, k, v) = match fused {
            // The fused attention reads q from the q|k|v block itself (the last-only plan picks the rows).
            Some((_, q, k, v)) if flash.is_some() => (q, k, v),
            Some((_, q, k, v)) => (if only_last { q.index_select(&fw.last, 0)? } else { q }, k, v),
            None => {
                let (cos, sin) = (&fw.cos, &fw.sin);
                let k = heads_of(&qkv, hq, hkv, hd)?;
                let v = heads_of(&qkv, hq + hkv, hkv, hd)?;
                let k = ops::rms_norm(&k, &layer.k_norm, c.rms_norm_eps)?;
                let k = ops::rope(&k, cos, sin)?;
                let q = if only_last {
                    let q = heads_of(&qkv.index_select(&fw.last, 0)?, 0, hq, hd)?;
                    let q = ops::rms_norm(&q, &layer.q_norm, c.rms_norm_eps)?;
                    ops::rope(&q, &cos.index_select(&fw.last, 0)?, &sin.index_select(&fw.last, 0)?)?
                } else {
                    let q = heads_of(&qkv, 0, hq, hd)?;
                    let q = ops::rms_norm(&q, &layer.q_norm, c.rms_norm_eps)?;
                    ops::rope(&q, cos, sin)?
                };
                (q, k, v)
            }
        };
        let plan = if only_last { last_plan.as_ref().unwrap_or(plan) } else { plan };
        crate::profile::mark(&self.device, "q/k/v norm + rope");
        if let Some(kv) = keep_kv {
            kv.push(LayerKv::Split {
                k: k.clone(),
                v: v.clone(),
                #[cfg(feature = "cuda")]
                kv_block: match &own_block {
                    Some(all) => Some(crate::cuda::prefix_kv_block(all, fw.total, (hq, hkv, hd))?),
                    None => None,
                },
            });
        }
        // Keys/values the plans gather from: the distinct prefixes', then this batch's own.
        match (flash, &own_block) {
            #[cfg(feature = "cuda")]
            (Some(f), Some(all)) => self.flash_attend(f, only_last, all, fw.total, &fw.prefixes, li),
            _ => {
                let (mut k_parts, mut v_parts): (Vec<Tensor>, Vec<Tensor>) = fw
                    .prefixes
                    .iter()
                    .map(|p| p.layers[li].k_v((hq, hkv, hd)))
                    .collect::<Result<Vec<_>>>()?
                    .into_iter()
                    .unzip();
                k_parts.push(k);
                v_parts.push(v);
                plan.attend_parts(&q, &k_parts, &v_parts)
            }
        }
    }
}

/// The per-forward state [`Qwen3::attention`] reads in every layer (see [`Qwen3::plan_forward`]).
struct Forward<'p> {
    /// Packed tokens of the batch: the fused CUDA kernels' flat q|k|v buffer is laid out by it.
    #[cfg(feature = "cuda")]
    total: usize,
    /// RoPE rows of each packed position, `[total, head_dim/2]`.
    cos: Tensor,
    sin: Tensor,
    /// Index of each row's last token in the packed batch.
    last: Tensor,
    /// The distinct prefixes the rows continue, in first-seen order.
    prefixes: Vec<&'p PrefixKv>,
    attn: Attn,
}

/// Which attention path a forward runs, with its layouts.
enum Attn {
    /// f32 on the CPU: [`crate::cpu_attention::packed_causal_attention`] over the q|k|v blocks, after
    /// [`ops::qk_norm_rope_in_place`] (`cos_sin`: each position's `[cos; sin]`, host rows).
    Cpu { cos_sin: Vec<f32>, all: Vec<CausalRow>, last: Vec<CausalRow> },
    /// Elsewhere: the batched-GEMM plans (all positions; each row's last), the fused CUDA kernels' layouts when
    /// one is asked for, and cos|sin side by side for the fused CUDA q/k/v kernel.
    Plans { plan: AttnPlan, last_plan: Option<AttnPlan>, flash: Option<FlashPlans>, cos_sin: Option<Tensor> },
}

/// `h · w` per row, in f32: `[rows, hidden] x [hidden] -> [rows]`.
pub fn row_dot(h: &Tensor, w: &Tensor) -> Result<Vec<f32>> {
    let h = h.to_dtype(DType::F32)?;
    let w = w.to_dtype(DType::F32)?;
    Ok(h.broadcast_mul(&w.unsqueeze(0)?)?.sum(D::Minus1)?.to_vec1::<f32>()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A prefix kept by the CPU path holds only its q|k|v block; the batched-GEMM plans' keys and values are
    /// the k and v column ranges of it, token by token.
    #[test]
    fn a_cpu_prefix_block_yields_its_keys_and_values() -> Result<()> {
        let (len, hq, hkv, hd) = (5, 4, 2, 8);
        let width = (hq + 2 * hkv) * hd;
        let block = Tensor::arange(0f32, (len * width) as f32, &Device::Cpu)?.reshape((len, width))?;
        let (k, v) = LayerKv::Qkv(block).k_v((hq, hkv, hd))?;
        assert_eq!(k.dims(), [len, hkv, hd]);
        assert_eq!(v.dims(), [len, hkv, hd]);
        let (k, v) = (k.to_vec3::<f32>()?, v.to_vec3::<f32>()?);
        for t in 0..len {
            for h in 0..hkv {
                for d in 0..hd {
                    let at = |col: usize| (t * width + col) as f32;
                    assert_eq!(k[t][h][d], at((hq + h) * hd + d), "k at token {t}, head {h}, dim {d}");
                    assert_eq!(v[t][h][d], at((hq + hkv + h) * hd + d), "v at token {t}, head {h}, dim {d}");
                }
            }
        }
        Ok(())
    }
}
