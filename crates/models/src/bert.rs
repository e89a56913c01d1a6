//! The BERT encoder (all-MiniLM-L6-v2 and its family), packed: rows are concatenated, dense layers run as one
//! GEMM over all tokens and attention runs per row, so no padding is computed. Post-LayerNorm, GELU (erf),
//! absolute position embeddings, token type 0. Mean pooling over each row's tokens.

use candle_core::{DType, Device, Tensor};

use crate::attention::AttnPlan;
use crate::cpu_attention;
use crate::error::{ModelError, Result};
use crate::files::ModelDir;
use crate::ops::{self, Linear};

#[derive(Debug, Clone, PartialEq)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    pub layer_norm_eps: f64,
}

impl BertConfig {
    pub fn from_dir(md: &ModelDir) -> Result<BertConfig> {
        let act = md.opt_str("hidden_act").unwrap_or("gelu");
        if act != "gelu" {
            return Err(md.bad("hidden_act", "\"gelu\"", format!("{act:?}")));
        }
        let c = BertConfig {
            vocab_size: md.usize("vocab_size")?,
            hidden_size: md.usize("hidden_size")?,
            num_hidden_layers: md.usize("num_hidden_layers")?,
            num_attention_heads: md.usize("num_attention_heads")?,
            intermediate_size: md.usize("intermediate_size")?,
            max_position_embeddings: md.opt_usize("max_position_embeddings")?.unwrap_or(512),
            type_vocab_size: md.opt_usize("type_vocab_size")?.unwrap_or(2),
            layer_norm_eps: md.opt_f64("layer_norm_eps")?.unwrap_or(1e-12),
        };
        if c.num_attention_heads == 0 || !c.hidden_size.is_multiple_of(c.num_attention_heads) {
            return Err(md.bad(
                "num_attention_heads",
                &format!("a divisor of hidden_size ({})", c.hidden_size),
                c.num_attention_heads,
            ));
        }
        Ok(c)
    }
}

struct Norm {
    w: Tensor,
    b: Tensor,
}

struct Layer {
    qkv: Linear,
    attn_out: Linear,
    attn_norm: Norm,
    inter: Linear,
    out: Linear,
    out_norm: Norm,
}

pub struct Bert {
    pub config: BertConfig,
    word: Tensor,
    position: Tensor,
    token_type0: Tensor,
    emb_norm: Norm,
    layers: Vec<Layer>,
    device: Device,
}

impl std::fmt::Debug for Bert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bert").field("config", &self.config).finish()
    }
}

impl Bert {
    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn load(md: &ModelDir, device: &Device, dtype: DType) -> Result<Bert> {
        let c = BertConfig::from_dir(md)?;
        // sentence-transformers saves the bare encoder; some checkpoints keep the `bert.` prefix.
        let p = if md.has("bert.embeddings.word_embeddings.weight") { "bert." } else { "" };
        let t = |name: &str, shape: &[usize]| md.tensor(&format!("{p}{name}"), shape, dtype, device);
        let h = c.hidden_size;
        let norm = |name: &str| -> Result<Norm> {
            Ok(Norm { w: t(&format!("{name}.weight"), &[h])?, b: t(&format!("{name}.bias"), &[h])? })
        };
        let lin = |name: &str, out: usize, inp: usize| -> Result<Linear> {
            Linear::new(t(&format!("{name}.weight"), &[out, inp])?, Some(t(&format!("{name}.bias"), &[out])?))
        };
        let mut layers = Vec::with_capacity(c.num_hidden_layers);
        for i in 0..c.num_hidden_layers {
            let l = format!("encoder.layer.{i}.");
            let w = |n: &str| t(&format!("{l}attention.self.{n}.weight"), &[h, h]);
            let b = |n: &str| t(&format!("{l}attention.self.{n}.bias"), &[h]);
            let qkv = Linear::new(
                Tensor::cat(&[w("query")?, w("key")?, w("value")?], 0)?,
                Some(Tensor::cat(&[b("query")?, b("key")?, b("value")?], 0)?),
            )?;
            layers.push(Layer {
                qkv,
                attn_out: lin(&format!("{l}attention.output.dense"), h, h)?,
                attn_norm: norm(&format!("{l}attention.output.LayerNorm"))?,
                inter: lin(&format!("{l}intermediate.dense"), c.intermediate_size, h)?,
                out: lin(&format!("{l}output.dense"), h, c.intermediate_size)?,
                out_norm: norm(&format!("{l}output.LayerNorm"))?,
            });
        }
        let token_type = t("embeddings.token_type_embeddings.weight", &[c.type_vocab_size, h])?;
        Ok(Bert {
            word: t("embeddings.word_embeddings.weight", &[c.vocab_size, h])?,
            position: t("embeddings.position_embeddings.weight", &[c.max_position_embeddings, h])?,
            token_type0: token_type.get(0)?,
            emb_norm: norm("embeddings.LayerNorm")?,
            layers,
            config: c,
            device: device.clone(),
        })
    }

    /// Mean-pooled final hidden states, one row per input: `[rows, hidden]`.
    pub fn mean_pooled(&self, rows: &[&[u32]]) -> Result<Tensor> {
        let c = &self.config;
        crate::profile::start(&self.device);
        let mut ids = Vec::new();
        let mut pos = Vec::new();
        let mut lens = Vec::with_capacity(rows.len());
        for (i, r) in rows.iter().enumerate() {
            if r.is_empty() || r.len() > c.max_position_embeddings {
                return Err(ModelError::input(
                    "tokens",
                    format!("1 to {} tokens per row", c.max_position_embeddings),
                    format!("{} in row {i}", r.len()),
                ));
            }
            if let Some(&bad) = r.iter().find(|&&t| t as usize >= c.vocab_size) {
                return Err(ModelError::input("token id", format!("< vocab_size {}", c.vocab_size), bad));
            }
            ids.extend_from_slice(r);
            pos.extend(0..r.len() as u32);
            lens.push(r.len());
        }
        let total = ids.len();
        let ids = Tensor::from_vec(ids, total, &self.device)?;
        let pos = Tensor::from_vec(pos, total, &self.device)?;
        let x = (self.word.index_select(&ids, 0)? + self.position.index_select(&pos, 0)?)?;
        let x = x.broadcast_add(&self.token_type0)?;
        let mut x = ops::layer_norm(&x, &self.emb_norm.w, &self.emb_norm.b, c.layer_norm_eps)?;
        let dev = &self.device;
        crate::profile::mark(dev, "bert: embeddings");
        let (nh, h) = (c.num_attention_heads, c.hidden_size);
        let hd = h / nh;
        // The fused CPU kernel where it applies (f32 on the CPU), length-bucketed GEMMs elsewhere.
        let plan = match cpu_attention::applies(&self.device, x.dtype(), hd) {
            true => None,
            false => Some(AttnPlan::new(&lens, &lens, false, nh, &self.device)?),
        };
        for l in &self.layers {
            let qkv = ops::bias_act(l.qkv.matmul(&x)?, l.qkv.bias(), false)?;
            crate::profile::mark(dev, "bert: qkv gemm");
            let a = match &plan {
                None => cpu_attention::packed_self_attention(&qkv, &lens, nh)?,
                Some(plan) => {
                    let q = qkv.narrow(1, 0, h)?.contiguous()?.reshape((total, nh, hd))?;
                    let k = qkv.narrow(1, h, h)?.contiguous()?.reshape((total, nh, hd))?;
                    let v = qkv.narrow(1, 2 * h, h)?.contiguous()?.reshape((total, nh, hd))?;
                    plan.attend(&q, &k, &v)?.reshape((total, h))?
                }
            };
            crate::profile::mark(dev, "bert: attention (rest)");
            let a = ops::add_bias_layer_norm(
                l.attn_out.matmul(&a)?,
                l.attn_out.bias(),
                &x,
                (&l.attn_norm.w, &l.attn_norm.b),
                c.layer_norm_eps,
            )?;
            crate::profile::mark(dev, "bert: attn out + norm");
            let m = l.inter.matmul(&a)?;
            crate::profile::mark(dev, "bert: inter gemm");
            let m = ops::bias_act(m, l.inter.bias(), true)?;
            crate::profile::mark(dev, "bert: gelu");
            x = ops::add_bias_layer_norm(
                l.out.matmul(&m)?,
                l.out.bias(),
                &a,
                (&l.out_norm.w, &l.out_norm.b),
                c.layer_norm_eps,
            )?;
            crate::profile::mark(dev, "bert: out gemm + norm");
        }
        let mut pooled = Vec::with_capacity(rows.len());
        let mut off = 0;
        for &n in &lens {
            pooled.push(x.narrow(0, off, n)?.mean(0)?);
            off += n;
        }
        let out = Tensor::stack(&pooled, 0)?;
        crate::profile::mark(dev, "bert: pool");
        Ok(out)
    }
}
