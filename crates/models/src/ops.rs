//! Building blocks shared by the architectures: linear layers, norms, RoPE, activations and packed
//! (variable-length) attention. Each works on packed `[tokens, ...]` tensors, with no batch padding.

use candle_core::{DType, Device, Tensor, D};

use crate::error::Result;

/// `y = x Wᵀ + b` with `W` stored `[out, in]` as in the checkpoint.
#[derive(Debug, Clone)]
pub struct Linear {
    w: Weight,
    b: Option<Tensor>,
}

#[derive(Debug, Clone)]
enum Weight {
    /// `Wᵀ` contiguous, for candle's matmul (the CPU GEMM's preferred right-hand layout).
    Transposed(Tensor),
    /// `W` as stored, for cuBLASLt (bf16/f16 on CUDA; `SIEVE_NO_CUBLASLT` turns it off). On an H100 it measured
    /// the same as candle's cuBLAS call on the 0.6B reranker's projections (500–620 TFLOP/s, BENCHMARKS.md); it
    /// is what the GPU benchmark ran, and it keeps the weights in the checkpoint's layout (no transposed copy).
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    Lt(Tensor),
}

impl Linear {
    pub fn new(w: Tensor, b: Option<Tensor>) -> Result<Linear> {
        let lt = on_cuda(&w)
            && matches!(w.dtype(), DType::BF16 | DType::F16)
            && std::env::var_os("SIEVE_NO_CUBLASLT").is_none();
        let w = if lt { Weight::Lt(w.contiguous()?) } else { Weight::Transposed(w.t()?.contiguous()?) };
        Ok(Linear { w, b })
    }

    /// `x Wᵀ` without the bias (for callers that fuse the bias into what follows).
    pub fn matmul(&self, x: &Tensor) -> Result<Tensor> {
        match &self.w {
            Weight::Transposed(wt) => Ok(x.matmul(wt)?),
            #[cfg(feature = "cuda")]
            Weight::Lt(w) if x.rank() == 2 => crate::cuda::lt_matmul(x, w),
            #[cfg(feature = "cuda")]
            Weight::Lt(w) => {
                let dims = x.dims().to_vec();
                let flat = x.flatten_to(dims.len() - 2)?;
                let y = crate::cuda::lt_matmul(&flat, w)?;
                let mut out = dims[..dims.len() - 1].to_vec();
                out.push(w.dim(0)?);
                Ok(y.reshape(out)?)
            }
            #[cfg(not(feature = "cuda"))]
            Weight::Lt(w) => Ok(x.broadcast_matmul(&w.t()?)?),
        }
    }

    pub fn bias(&self) -> Option<&Tensor> {
        self.b.as_ref()
    }

    /// `x`: `[tokens, in]` → `[tokens, out]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = self.matmul(x)?;
        Ok(match &self.b {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        })
    }
}

/// True when `t` lives on a CUDA device and the fused kernels (`crate::cuda`) apply.
pub fn on_cuda(t: &Tensor) -> bool {
    cfg!(feature = "cuda") && t.device().is_cuda()
}

/// RMSNorm over the last dimension, computed in f32 whatever the storage dtype (as transformers does).
pub fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    if on_cuda(x) {
        return crate::cuda::rms_norm(x, w, eps);
    }
    let x = x.contiguous()?;
    if x.dtype() == DType::F32 {
        return Ok(candle_nn::ops::rms_norm(&x, w, eps as f32)?);
    }
    let dt = x.dtype();
    let xf = x.to_dtype(DType::F32)?;
    let var = xf.sqr()?.mean_keepdim(D::Minus1)?;
    let xf = xf.broadcast_div(&(var + eps)?.sqrt()?)?;
    Ok(xf.to_dtype(dt)?.broadcast_mul(w)?)
}

/// LayerNorm over the last dimension.
pub fn layer_norm(x: &Tensor, w: &Tensor, b: &Tensor, eps: f64) -> Result<Tensor> {
    let x = x.contiguous()?;
    Ok(candle_nn::ops::layer_norm(&x, w, b, eps as f32)?)
}

/// cos/sin tables `[max_pos, head_dim/2]` for rotate-half RoPE: `inv_freq[i] = theta^(-2i/d)`.
/// Angles are computed in f64 and rounded once, like transformers' f32 computation within an ulp.
pub fn rope_tables(max_pos: usize, head_dim: usize, theta: f64, dev: &Device, dt: DType) -> Result<(Tensor, Tensor)> {
    let half = head_dim / 2;
    // transformers computes inv_freq in f32 and position*inv_freq in f32; match that rounding.
    let inv: Vec<f32> = (0..half).map(|i| (1.0 / theta.powf((2 * i) as f64 / head_dim as f64)) as f32).collect();
    let mut cos = Vec::with_capacity(max_pos * half);
    let mut sin = Vec::with_capacity(max_pos * half);
    for p in 0..max_pos {
        for &f in &inv {
            let a = p as f32 * f;
            cos.push(a.cos());
            sin.push(a.sin());
        }
    }
    let cos = Tensor::from_vec(cos, (max_pos, half), dev)?.to_dtype(dt)?;
    let sin = Tensor::from_vec(sin, (max_pos, half), dev)?.to_dtype(dt)?;
    Ok((cos, sin))
}

/// Rotate-half RoPE on packed `[tokens, heads, head_dim]` with per-token `cos`/`sin` rows `[tokens, head_dim/2]`.
pub fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let x = x.contiguous()?.unsqueeze(0)?;
    Ok(candle_nn::rotary_emb::rope_thd(&x, cos, sin)?.squeeze(0)?)
}

/// On CUDA: the fused q/k/v split with per-head norms (`norms` `[2, d]`: q_norm, k_norm) and RoPE (`cos_sin`
/// `[tokens, d]`) in one kernel, as `(q|k|v buffer, q, k, v)`; `None` elsewhere (callers then use [`rms_norm`]
/// and [`rope`]).
pub fn fused_qkv(
    qkv: &Tensor,
    norms: &Tensor,
    cos_sin: &Tensor,
    heads: (usize, usize, usize),
    eps: f64,
) -> Result<Option<(Tensor, Tensor, Tensor, Tensor)>> {
    #[cfg(feature = "cuda")]
    if on_cuda(qkv) {
        return crate::cuda::qkv_prep(qkv, norms, cos_sin, heads, eps).map(Some);
    }
    let _ = (qkv, norms, cos_sin, heads, eps);
    Ok(None)
}

/// On the CPU (f32): Qwen3's per-head RMSNorm of q and k (`norms` `[2, d]`: q_norm, k_norm) and rotate-half
/// RoPE, in place on a fresh fused q|k|v projection `[tokens, (hq + 2·hkv)·d]`, one parallel pass over the
/// tokens; v is left as it is. `cos_sin`: each token's `[cos; sin]` row, `d` floats (see [`rope_tables`]).
/// The CPU counterpart of [`fused_qkv`], for [`crate::cpu_attention::packed_causal_attention`].
pub fn qk_norm_rope_in_place(
    qkv: &Tensor,
    norms: &Tensor,
    cos_sin: &[f32],
    heads: (usize, usize, usize),
    eps: f64,
) -> Result<()> {
    let (hq, hkv, d) = heads;
    let (tokens, width) = qkv.dims2()?;
    if !cpu_f32(qkv) || width != (hq + 2 * hkv) * d || cos_sin.len() != tokens * d || d % 2 != 0 {
        return Err(crate::ModelError::input(
            "q|k|v block",
            format!("f32 CPU [tokens, {}] with {d} cos|sin floats per token", (hq + 2 * hkv) * d),
            format!("{:?} {:?} {:?}, {} cos|sin floats", qkv.device(), qkv.dtype(), qkv.dims(), cos_sin.len()),
        ));
    }
    let norms = host_vec(norms)?;
    if norms.len() != 2 * d {
        return Err(crate::ModelError::input("q/k norm weights", format!("2 × {d}"), norms.len()));
    }
    qkv.inplace_op1(&QkPrep { heads, norms: &norms, cos_sin, eps: eps as f32 })?;
    Ok(())
}

struct QkPrep<'a> {
    heads: (usize, usize, usize),
    norms: &'a [f32],
    cos_sin: &'a [f32],
    eps: f32,
}

impl candle_core::InplaceOp1 for QkPrep<'_> {
    fn name(&self) -> &'static str {
        "sieve-qk-norm-rope"
    }

    fn cpu_fwd(&self, storage: &mut candle_core::CpuStorage, layout: &candle_core::Layout) -> candle_core::Result<()> {
        use rayon::prelude::*;
        let data = contiguous_f32_mut(storage, layout, "q/k norm + rope")?;
        let (hq, hkv, d) = self.heads;
        let half = d / 2;
        let (qw, kw) = self.norms.split_at(d);
        data.par_chunks_mut((hq + 2 * hkv) * d).zip(self.cos_sin.par_chunks(d)).for_each(|(tok, cs)| {
            let (cos, sin) = cs.split_at(half);
            let (q, rest) = tok.split_at_mut(hq * d);
            let heads =
                q.chunks_exact_mut(d).map(|h| (h, qw)).chain(rest[..hkv * d].chunks_exact_mut(d).map(|h| (h, kw)));
            for (x, w) in heads {
                let ms = x.iter().map(|v| v * v).sum::<f32>() / d as f32;
                let r = 1.0 / (ms + self.eps).sqrt();
                x.iter_mut().zip(w).for_each(|(v, w)| *v = *v * r * w);
                let (a, b) = x.split_at_mut(half);
                for (((a, b), &c), &s) in a.iter_mut().zip(b.iter_mut()).zip(cos).zip(sin) {
                    let (x1, x2) = (*a, *b);
                    *a = x1 * c - x2 * s;
                    *b = x2 * c + x1 * s;
                }
            }
        });
        Ok(())
    }
}

/// `silu(gate) * up` for a fused `[tokens, 2*inter]` gate/up projection: one parallel pass on the CPU.
pub fn swiglu(gu: &Tensor, inter: usize) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    if on_cuda(gu) {
        return crate::cuda::swiglu(gu, inter);
    }
    if gu.device().is_cpu() && gu.dtype() == DType::F32 {
        return Ok(gu.contiguous()?.apply_op1_no_bwd(&SwiGlu { inter })?);
    }
    let gate = gu.narrow(D::Minus1, 0, inter)?;
    let up = gu.narrow(D::Minus1, inter, inter)?;
    Ok((candle_nn::ops::silu(&gate.contiguous()?)? * up)?)
}

struct SwiGlu {
    inter: usize,
}

impl candle_core::CustomOp1 for SwiGlu {
    fn name(&self) -> &'static str {
        "sieve-swiglu"
    }

    fn cpu_fwd(
        &self,
        storage: &candle_core::CpuStorage,
        layout: &candle_core::Layout,
    ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
        use rayon::prelude::*;
        let (rows, cols) = layout.shape().dims2()?;
        let i = self.inter;
        if cols != 2 * i {
            candle_core::bail!("swiglu: expected [tokens, {}], found [{rows}, {cols}]", 2 * i);
        }
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("swiglu: input must be contiguous");
        };
        let src = &storage.as_slice::<f32>()?[start..end];
        let mut out = vec![0f32; rows * i];
        out.par_chunks_mut(i).zip(src.par_chunks(cols)).for_each(|(o, row)| {
            let (g, u) = row.split_at(i);
            for ((o, &g), &u) in o.iter_mut().zip(g).zip(u) {
                *o = g / (1.0 + exp(-g)) * u;
            }
        });
        Ok((candle_core::CpuStorage::F32(out), candle_core::Shape::from((rows, i))))
    }
}

/// Runs a forward pass on a worker of the global rayon pool. The GEMMs and kernels inside split their work
/// with rayon; started from a worker, each split is a cheap local push, while from an outside thread every one
/// of the many small attention GEMMs is injected into the pool and waited for across threads.
pub fn on_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    rayon::scope(|_| f())
}

/// True when the fused CPU kernels apply (f32 tensors on the CPU).
fn cpu_f32(t: &Tensor) -> bool {
    t.device().is_cpu() && t.dtype() == DType::F32
}

fn host_vec(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?)
}

fn contiguous_f32<'a>(
    s: &'a candle_core::CpuStorage,
    l: &candle_core::Layout,
    what: &str,
) -> candle_core::Result<&'a [f32]> {
    let Some((a, b)) = l.contiguous_offsets() else {
        candle_core::bail!("{what}: input must be contiguous");
    };
    Ok(&s.as_slice::<f32>()?[a..b])
}

fn contiguous_f32_mut<'a>(
    s: &'a mut candle_core::CpuStorage,
    l: &candle_core::Layout,
    what: &str,
) -> candle_core::Result<&'a mut [f32]> {
    let Some((a, b)) = l.contiguous_offsets() else {
        candle_core::bail!("{what}: input must be contiguous");
    };
    let candle_core::CpuStorage::F32(data) = s else {
        candle_core::bail!("{what}: expected f32");
    };
    Ok(&mut data[a..b])
}

/// `y + residual` and `RMSNorm(y + residual)`, one pass: returns `(sum, normed)` (Qwen3's pre-norm blocks).
pub fn add_rms_norm(y: &Tensor, residual: &Tensor, w: &Tensor, eps: f64) -> Result<(Tensor, Tensor)> {
    #[cfg(feature = "cuda")]
    if on_cuda(y) {
        return crate::cuda::add_rms_norm(y, residual, w, eps);
    }
    if cpu_f32(y) && cpu_f32(residual) {
        let op = AddNorm { bias: None, w: host_vec(w)?, b: None, eps: eps as f32, rms: true };
        let both = y.contiguous()?.apply_op2_no_bwd(&residual.contiguous()?, &op)?;
        return Ok((both.get(0)?, both.get(1)?));
    }
    let sum = (y + residual)?;
    let normed = rms_norm(&sum, w, eps)?;
    Ok((sum, normed))
}

/// `LayerNorm(y + bias + residual)`, one pass (BERT's post-norm residual blocks). On the CPU it overwrites
/// `y`'s storage (a fresh GEMM output).
pub fn add_bias_layer_norm(
    y: Tensor,
    bias: Option<&Tensor>,
    residual: &Tensor,
    norm: (&Tensor, &Tensor),
    eps: f64,
) -> Result<Tensor> {
    if cpu_f32(&y) && cpu_f32(residual) {
        let op = AddNorm {
            bias: bias.map(host_vec).transpose()?,
            w: host_vec(norm.0)?,
            b: Some(host_vec(norm.1)?),
            eps: eps as f32,
            rms: false,
        };
        let y = if y.is_contiguous() { y } else { y.contiguous()? };
        y.inplace_op2(&residual.contiguous()?, &op)?;
        return Ok(y);
    }
    let t = match bias {
        Some(b) => y.broadcast_add(b)?,
        None => y,
    };
    layer_norm(&(t + residual)?, norm.0, norm.1, eps)
}

/// `act(y + bias)` with `act` GELU (erf) or the identity, one pass. On the CPU it overwrites `y`'s storage
/// (callers hand over a fresh GEMM output), which saves allocating, zeroing and writing a second buffer.
pub fn bias_act(y: Tensor, bias: Option<&Tensor>, gelu_act: bool) -> Result<Tensor> {
    if cpu_f32(&y) {
        let y = if y.is_contiguous() { y } else { y.contiguous()? };
        y.inplace_op1(&BiasAct { bias: bias.map(host_vec).transpose()?, gelu: gelu_act })?;
        return Ok(y);
    }
    let t = match bias {
        Some(b) => y.broadcast_add(b)?,
        None => y,
    };
    if gelu_act {
        Ok(t.gelu_erf()?)
    } else {
        Ok(t)
    }
}

struct AddNorm {
    bias: Option<Vec<f32>>,
    w: Vec<f32>,
    b: Option<Vec<f32>>,
    eps: f32,
    /// RMSNorm (Qwen3) instead of LayerNorm (BERT).
    rms: bool,
}

// As a `CustomOp2` (Qwen3): returns `[2, rows, dim]`, the sum and its norm. As an `InplaceOp2` (BERT): only the
// norm, written over the first input.

impl candle_core::CustomOp2 for AddNorm {
    fn name(&self) -> &'static str {
        "sieve-add-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &candle_core::CpuStorage,
        l1: &candle_core::Layout,
        s2: &candle_core::CpuStorage,
        l2: &candle_core::Layout,
    ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
        use rayon::prelude::*;
        let (y, r) = (contiguous_f32(s1, l1, "add-norm")?, contiguous_f32(s2, l2, "add-norm")?);
        let dim = *l1.dims().last().unwrap_or(&1);
        if l1.shape() != l2.shape() || dim != self.w.len() {
            candle_core::bail!("add-norm: shapes {:?} {:?}, norm {}", l1.shape(), l2.shape(), self.w.len());
        }
        let n = y.len();
        let mut out = vec![0f32; 2 * n];
        let (first, second) = out.split_at_mut(n);
        let zero = vec![0f32; dim];
        let bias = self.bias.as_deref().unwrap_or(&zero);
        first
            .par_chunks_mut(dim)
            .zip(second.par_chunks_mut(dim))
            .zip(y.par_chunks(dim).zip(r.par_chunks(dim)))
            .for_each(|((t, o), (y, r))| {
                for (((t, &y), &r), &b) in t.iter_mut().zip(y).zip(r).zip(bias) {
                    *t = y + r + b;
                }
                o.copy_from_slice(t);
                self.normalise(o);
            });
        let mut dims = vec![2];
        dims.extend_from_slice(l1.dims());
        Ok((candle_core::CpuStorage::F32(out), candle_core::Shape::from(dims)))
    }
}

impl AddNorm {
    /// Normalises one row in place (LayerNorm, or RMSNorm when `rms`), then applies weight and bias.
    fn normalise(&self, t: &mut [f32]) {
        let inv_n = 1.0 / t.len() as f32;
        let mean = if self.rms { 0.0 } else { lanes(t, 0.0, |a, b| a + b) * inv_n };
        let mut var = [0f32; 8];
        let chunks = t.chunks_exact(8);
        let rest: f32 = chunks.remainder().iter().map(|&x| (x - mean) * (x - mean)).sum();
        for c in chunks {
            for (v, &x) in var.iter_mut().zip(c) {
                *v += (x - mean) * (x - mean);
            }
        }
        let inv = 1.0 / ((var.iter().sum::<f32>() + rest) * inv_n + self.eps).sqrt();
        match &self.b {
            Some(beta) => {
                for ((x, &w), &b) in t.iter_mut().zip(&self.w).zip(beta) {
                    *x = (*x - mean) * inv * w + b;
                }
            }
            None => {
                for (x, &w) in t.iter_mut().zip(&self.w) {
                    *x = (*x - mean) * inv * w;
                }
            }
        }
    }
}

impl candle_core::InplaceOp2 for AddNorm {
    fn name(&self) -> &'static str {
        "sieve-add-norm-inplace"
    }

    fn cpu_fwd(
        &self,
        s1: &mut candle_core::CpuStorage,
        l1: &candle_core::Layout,
        s2: &candle_core::CpuStorage,
        l2: &candle_core::Layout,
    ) -> candle_core::Result<()> {
        use rayon::prelude::*;
        let r = contiguous_f32(s2, l2, "add-norm")?;
        let y = contiguous_f32_mut(s1, l1, "add-norm")?;
        let dim = *l1.dims().last().unwrap_or(&1);
        if l1.shape() != l2.shape() || dim != self.w.len() {
            candle_core::bail!("add-norm: shapes {:?} {:?}, norm {}", l1.shape(), l2.shape(), self.w.len());
        }
        let zero = vec![0f32; dim];
        let bias = self.bias.as_deref().unwrap_or(&zero);
        y.par_chunks_mut(dim).zip(r.par_chunks(dim)).for_each(|(t, r)| {
            for ((t, &r), &b) in t.iter_mut().zip(r).zip(bias) {
                *t += r + b;
            }
            self.normalise(t);
        });
        Ok(())
    }
}

struct BiasAct {
    bias: Option<Vec<f32>>,
    gelu: bool,
}

impl candle_core::InplaceOp1 for BiasAct {
    fn name(&self) -> &'static str {
        "sieve-bias-act"
    }

    fn cpu_fwd(&self, storage: &mut candle_core::CpuStorage, layout: &candle_core::Layout) -> candle_core::Result<()> {
        use rayon::prelude::*;
        let data = contiguous_f32_mut(storage, layout, "bias-act")?;
        let dim = *layout.dims().last().unwrap_or(&1);
        let zero = vec![0f32; dim];
        let bias = self.bias.as_deref().unwrap_or(&zero);
        if bias.len() != dim {
            candle_core::bail!("bias-act: bias of {} for rows of {dim}", bias.len());
        }
        let rows_per_task = (16384 / dim).max(1) * dim;
        data.par_chunks_mut(rows_per_task).for_each(|chunk| {
            if self.gelu {
                bias_gelu(chunk, bias);
            } else {
                for row in chunk.chunks_mut(dim) {
                    for (x, &b) in row.iter_mut().zip(bias) {
                        *x += b;
                    }
                }
            }
        });
        Ok(())
    }
}

/// A reduction over 8 independent lanes (so the compiler can vectorise it), then across them.
#[inline(always)]
fn lanes(x: &[f32], init: f32, f: impl Fn(f32, f32) -> f32) -> f32 {
    let mut acc = [init; 8];
    let chunks = x.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a = f(*a, v);
        }
    }
    let mut r = rest.iter().fold(init, |a, &v| f(a, v));
    for a in acc {
        r = f(r, a);
    }
    r
}

/// `e^x` in f32 (Cephes' `expf` scheme: range reduction by `ln 2`, degree-6 polynomial, exponent bits), within
/// 2 ulp of `f32::exp` on `[-87, 88]`, written so that the compiler vectorises it (no libm call, no branches).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    exp_with::<false>(x)
}

/// `a·b + c`: fused (one rounding) when `FMA`, for code compiled with the `fma` target feature (without it a
/// fused multiply-add is a slow library call); a plain multiply and add otherwise.
#[inline(always)]
pub fn madd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// True when the CPU has AVX2 and FMA, for the kernels that are also compiled with those features (chosen at
/// run time: the portable build targets baseline x86-64).
#[cfg(target_arch = "x86_64")]
pub(crate) fn avx2_fma() -> bool {
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
}

/// [`exp`], with its multiply-adds fused when `FMA` (see [`madd`]).
#[inline(always)]
pub fn exp_with<const FMA: bool>(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const ROUND: f32 = 12_582_912.0; // 1.5 * 2^23: adding and subtracting it rounds to the nearest integer
    const P: [f32; 6] = [1.987_569_1e-4, 1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 1.666_666_5e-1, 0.5];
    let m = madd::<FMA>;
    let x = x.clamp(-87.0, 88.0);
    let kr = m(x, LOG2E, ROUND);
    let k = kr - ROUND;
    let r = m(-k, LN2_LO, m(-k, LN2_HI, x));
    let p = P[1..].iter().fold(P[0], |p, &c| m(p, r, c));
    let y = m(p, r * r, r) + 1.0;
    // `kr`'s low mantissa bits hold k (offset by 0x4B40_0000); rebias to an exponent with integer ops only (a
    // float-to-int cast would saturate and keep the loop from vectorising).
    y * f32::from_bits(kr.to_bits().wrapping_sub(0x4B40_0000).wrapping_add(127) << 23)
}

/// `erf(x)` in f32, absolute error below 2e-7 (Abramowitz & Stegun 7.1.26 with the fast [`exp`]); branch-free
/// so that it vectorises.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    erf_with::<false>(x)
}

/// [`erf`], with its multiply-adds fused when `FMA` (see [`madd`]).
#[inline(always)]
pub fn erf_with<const FMA: bool>(x: f32) -> f32 {
    const P: [f32; 5] = [1.061_405_4, -1.453_152_1, 1.421_413_8, -0.284_496_74, 0.254_829_6];
    let m = madd::<FMA>;
    let a = x.abs();
    let t = 1.0 / m(0.327_591_1, a, 1.0);
    let poly = P[1..].iter().fold(P[0], |p, &c| m(p, t, c)) * t;
    let y = 1.0 - poly * exp_with::<FMA>(-a * a);
    y.copysign(x)
}

/// `GELU(x + bias)` (erf form) in place over rows of `bias.len()`.
#[inline(always)]
fn bias_gelu_rows<const FMA: bool>(rows: &mut [f32], bias: &[f32]) {
    for row in rows.chunks_mut(bias.len()) {
        for (x, &b) in row.iter_mut().zip(bias) {
            let v = *x + b;
            *x = 0.5 * v * (1.0 + erf_with::<FMA>(v * std::f32::consts::FRAC_1_SQRT_2));
        }
    }
}

/// [`bias_gelu_rows`] compiled for AVX2 with fused multiply-adds.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn bias_gelu_rows_avx2_fma(rows: &mut [f32], bias: &[f32]) {
    bias_gelu_rows::<true>(rows, bias)
}

fn bias_gelu(rows: &mut [f32], bias: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if avx2_fma() {
        // SAFETY: the function only needs AVX2 and FMA, checked just above.
        #[allow(unsafe_code)]
        return unsafe { bias_gelu_rows_avx2_fma(rows, bias) };
    }
    bias_gelu_rows::<false>(rows, bias)
}

/// Causal attention over packed rows. Row `i` has `q_lens[i]` queries and `k_lens[i]` keys; queries are the
/// row's LAST positions (bottom-right alignment), so a row that continues a shared prefix, or that asks only for
/// its final position, needs no mask beyond causality. GQA: `q` has a multiple of `k`'s heads.
///
/// `q`: `[Σq, Hq, d]`, `k`/`v`: `[Σk, Hkv, d]` → `[Σq, Hq, d]`.
pub fn varlen_causal_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    q_lens: &[usize],
    k_lens: &[usize],
) -> Result<Tensor> {
    AttnPlan::new(q_lens, k_lens, true, q.dim(1)?, q.device())?.attend(q, k, v)
}

/// Bidirectional attention over packed rows (BERT): every query of a row sees every key of that row only.
pub fn varlen_full_attention(q: &Tensor, k: &Tensor, v: &Tensor, lens: &[usize]) -> Result<Tensor> {
    AttnPlan::new(lens, lens, false, q.dim(1)?, q.device())?.attend(q, k, v)
}

/// Score elements (`rows x heads x queries x keys`) one attention GEMM may produce: 32 Mi f32 = 128 MiB on the
/// CPU; 512 Mi (1 GiB in bf16) on a GPU, where fewer, larger launches matter more than memory.
const MAX_SCORE_ELEMS: usize = 32 << 20;

fn score_budget(dev: &Device) -> usize {
    if dev.is_cpu() {
        MAX_SCORE_ELEMS
    } else {
        512 << 20
    }
}

/// Tokens per forward pass that the models batch by default: 16 Ki on the CPU (bounded activations), 64 Ki on a
/// GPU (fewer passes; a 0.6B model's activations for 64 Ki tokens take a few GiB).
pub fn default_batch_tokens(dev: &Device) -> usize {
    if dev.is_cpu() {
        16_384
    } else {
        65_536
    }
}

/// How a packed batch's attention is computed as a few batched GEMMs: rows of similar length are grouped
/// into buckets, each padded to its longest row (queries and keys right-aligned), and a masked softmax keeps
/// every row to its own keys. Rows too long for the score budget are split into query chunks (each chunk sees
/// the keys up to its last query). Built once per forward and reused by every layer.
#[derive(Debug)]
pub struct AttnPlan {
    buckets: Vec<Bucket>,
    /// Packed query index → slot in the concatenated bucket outputs; `None` when that is the identity.
    gather: Option<Tensor>,
    causal: bool,
}

#[derive(Debug)]
struct Bucket {
    /// (queries, keys) of each (virtual) row.
    rows: Vec<(usize, usize)>,
    lq: usize,
    lk: usize,
    /// Packed query/key index of each slot; `None` when the bucket is every query/key in order (no gather).
    q_idx: Option<Tensor>,
    k_idx: Option<Tensor>,
    /// `rows` as `[members, 2]` u32 on the device, for the CUDA softmax kernel.
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    rows_dev: Option<Tensor>,
}

/// Concatenation along the first dimension; a single part is returned as is.
fn cat0(parts: &[Tensor]) -> Result<Tensor> {
    match parts {
        [one] => Ok(one.clone()),
        _ => Ok(Tensor::cat(parts, 0)?),
    }
}

/// A gather index as a device tensor, or `None` when it is `0..total` (nothing to gather).
fn index(idx: Vec<u32>, total: usize, dev: &Device) -> Result<Option<Tensor>> {
    if idx.len() == total && idx.iter().enumerate().all(|(i, &x)| x as usize == i) {
        return Ok(None);
    }
    let n = idx.len();
    Ok(Some(Tensor::from_vec(idx, n, dev)?))
}

/// A row, or a query chunk of one: its first query and key in the packed tensors, and their counts.
#[derive(Debug, Clone, Copy)]
struct Span {
    q0: usize,
    nq: usize,
    k0: usize,
    nk: usize,
}

impl AttnPlan {
    pub fn new(q_lens: &[usize], k_lens: &[usize], causal: bool, heads: usize, dev: &Device) -> Result<AttnPlan> {
        Self::with_budget(q_lens, k_lens, causal, heads, dev, score_budget(dev), None)
    }

    /// Like [`AttnPlan::new`], with the keys read through `key_map`: packed key `j` (in the order `k_lens`
    /// describes) is row `key_map[j]` of the `k`/`v` that [`AttnPlan::attend`] is given. This lets rows that
    /// continue a shared prefix read its keys where they are, in one gather, instead of copying them per row.
    pub fn with_key_map(
        q_lens: &[usize],
        k_lens: &[usize],
        causal: bool,
        heads: usize,
        dev: &Device,
        key_map: &[u32],
    ) -> Result<AttnPlan> {
        Self::with_budget(q_lens, k_lens, causal, heads, dev, score_budget(dev), Some(key_map))
    }

    fn with_budget(
        q_lens: &[usize],
        k_lens: &[usize],
        causal: bool,
        heads: usize,
        dev: &Device,
        budget: usize,
        key_map: Option<&[u32]>,
    ) -> Result<AttnPlan> {
        if let Some(m) = key_map {
            let total: usize = k_lens.iter().sum();
            if m.len() != total {
                return Err(crate::ModelError::input("key map", format!("{total} entries"), m.len()));
            }
        }
        let mut spans = Vec::with_capacity(q_lens.len());
        let (mut q0, mut k0) = (0, 0);
        for (&nq, &nk) in q_lens.iter().zip(k_lens) {
            let per_query = heads * nk;
            let chunk = (budget / per_query.max(1)).clamp(1, nq.max(1));
            let mut a = 0;
            while a < nq {
                let c = chunk.min(nq - a);
                // Keys visible to the chunk's last query (all keys when not causal).
                let keys = if causal { a + c + (nk - nq) } else { nk };
                spans.push(Span { q0: q0 + a, nq: c, k0, nk: keys });
                a += c;
            }
            q0 += nq;
            k0 += nk;
        }
        let mut order: Vec<usize> = (0..spans.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(spans[i].nk));
        let mut buckets = Vec::new();
        let mut slot_of = vec![0u32; q0];
        let mut slot_base = 0usize;
        let mut i = 0;
        while i < order.len() {
            let first = spans[order[i]];
            let (lk, mut lq) = (first.nk, first.nq);
            let mut members = vec![first];
            i += 1;
            while i < order.len() {
                let s = spans[order[i]];
                let lq2 = lq.max(s.nq);
                if s.nk * 5 < lk * 4 || (members.len() + 1) * heads * lq2 * lk > budget {
                    break;
                }
                lq = lq2;
                members.push(s);
                i += 1;
            }
            let mut q_idx = Vec::with_capacity(members.len() * lq);
            let mut k_idx = Vec::with_capacity(members.len() * lk);
            for (b, s) in members.iter().enumerate() {
                let (qpad, kpad) = (lq - s.nq, lk - s.nk);
                // Padding slots point at row 0 of the batch: finite values that the mask gives zero weight.
                q_idx.extend(std::iter::repeat_n(0u32, qpad));
                q_idx.extend((s.q0..s.q0 + s.nq).map(|x| x as u32));
                k_idx.extend(std::iter::repeat_n(0u32, kpad));
                match key_map {
                    Some(m) => k_idx.extend_from_slice(&m[s.k0..s.k0 + s.nk]),
                    None => k_idx.extend((s.k0..s.k0 + s.nk).map(|x| x as u32)),
                }
                for t in 0..s.nq {
                    slot_of[s.q0 + t] = (slot_base + b * lq + qpad + t) as u32;
                }
            }
            slot_base += members.len() * lq;
            let rows: Vec<(usize, usize)> = members.iter().map(|s| (s.nq, s.nk)).collect();
            let rows_dev = if dev.is_cuda() {
                let flat: Vec<u32> = rows.iter().flat_map(|&(q, k)| [q as u32, k as u32]).collect();
                Some(Tensor::from_vec(flat, (rows.len(), 2), dev)?)
            } else {
                None
            };
            // Through a key map the gather is never the identity (the map's targets are not 0..k).
            let k_total = if key_map.is_some() { usize::MAX } else { k0 };
            buckets.push(Bucket {
                rows,
                lq,
                lk,
                q_idx: index(q_idx, q0, dev)?,
                k_idx: index(k_idx, k_total, dev)?,
                rows_dev,
            });
        }
        Ok(AttnPlan { buckets, gather: index(slot_of, q0, dev)?, causal })
    }

    /// `q`: `[Σq, Hq, d]`, `k`/`v`: `[Σk, Hkv, d]` → `[Σq, Hq, d]`, scale `d^-0.5`.
    pub fn attend(&self, q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Tensor> {
        self.attend_parts(q, std::slice::from_ref(k), std::slice::from_ref(v))
    }

    /// [`AttnPlan::attend`] with the keys and values given in parts that are read as if concatenated (a shared
    /// prefix's, then the batch's own): on CUDA the gather reads them where they are.
    pub fn attend_parts(&self, q: &Tensor, k: &[Tensor], v: &[Tensor]) -> Result<Tensor> {
        #[cfg(feature = "cuda")]
        if on_cuda(q) {
            if let Some(out) = self.attend_cuda(q, k, v)? {
                return Ok(out);
            }
        }
        let (k, v) = (cat0(k)?, cat0(v)?);
        let (k, v) = (&k, &v);
        let (_, hq, d) = q.dims3()?;
        let hkv = k.dim(1)?;
        let rep = hq / hkv;
        let pick = |t: &Tensor, idx: &Option<Tensor>| -> Result<Tensor> {
            Ok(match idx {
                Some(i) => t.index_select(i, 0)?,
                None => t.clone(),
            })
        };
        let dev = q.device();
        let mut outs = Vec::with_capacity(self.buckets.len());
        for bk in &self.buckets {
            let b = bk.rows.len();
            let qb = pick(q, &bk.q_idx)?;
            crate::profile::mark(dev, "attn: q gather");
            let qb = qb.reshape((b, bk.lq, hkv, rep, d))?;
            let qb = qb.permute((0, 2, 3, 1, 4))?.contiguous()?.reshape((b, hkv, rep * bk.lq, d))?;
            crate::profile::mark(dev, "attn: q permute");
            let (kb, vb) = (pick(k, &bk.k_idx)?, pick(v, &bk.k_idx)?);
            crate::profile::mark(dev, "attn: k/v gather");
            let kb = kb.reshape((b, bk.lk, hkv, d))?.permute((0, 2, 1, 3))?.contiguous()?;
            let vb = vb.reshape((b, bk.lk, hkv, d))?.permute((0, 2, 1, 3))?.contiguous()?;
            crate::profile::mark(dev, "attn: k/v permute");
            let o = self.attend_bucket(bk, &qb, &kb, &vb)?;
            let o = o.reshape((b, hkv, rep, bk.lq, d))?.permute((0, 3, 1, 2, 4))?.contiguous()?;
            crate::profile::mark(dev, "attn: out permute");
            outs.push(o.reshape((b * bk.lq, hq, d))?);
        }
        self.gather(outs)
    }

    /// The CUDA path: each bucket's operands gathered and laid out by one copy kernel each, the output put back
    /// by another. `None` when the tensors are not aligned for those kernels (the generic path then runs).
    #[cfg(feature = "cuda")]
    fn attend_cuda(&self, q: &Tensor, k: &[Tensor], v: &[Tensor]) -> Result<Option<Tensor>> {
        let (_, hq, d) = q.dims3()?;
        let (kp, vp) = match (k, v) {
            ([ko], [vo]) => ((ko.clone(), 0, ko.clone()), (vo.clone(), 0, vo.clone())),
            ([.., ko], [.., vo]) => {
                let (kpre, vpre) = (cat0(&k[..k.len() - 1])?, cat0(&v[..v.len() - 1])?);
                let n = kpre.dim(0)?;
                ((kpre, n, ko.clone()), (vpre, n, vo.clone()))
            }
            _ => return Ok(None),
        };
        let hkv = kp.2.dim(1)?;
        let rep = hq / hkv;
        let (Some(first), true) =
            (self.buckets.first(), crate::cuda::packable(d, q.dtype(), &[q, &kp.0, &kp.2, &vp.0, &vp.2]))
        else {
            return Ok(None);
        };
        let Some(dummy) = first.rows_dev.as_ref() else { return Ok(None) };
        let dev = q.device();
        let mut outs = Vec::with_capacity(self.buckets.len());
        for bk in &self.buckets {
            let b = bk.rows.len();
            let qb = crate::cuda::attn_pack(q, 0, q, bk.q_idx.as_ref(), dummy, (b, bk.lq, hkv, rep, d))?;
            let kb = crate::cuda::attn_pack(&kp.0, kp.1, &kp.2, bk.k_idx.as_ref(), dummy, (b, bk.lk, hkv, 1, d))?;
            let vb = crate::cuda::attn_pack(&vp.0, vp.1, &vp.2, bk.k_idx.as_ref(), dummy, (b, bk.lk, hkv, 1, d))?;
            crate::profile::mark(dev, "attn: pack q/k/v");
            let o = self.attend_bucket(bk, &qb, &kb, &vb)?;
            outs.push(crate::cuda::attn_unpack(&o, (b, bk.lq, hkv, rep, d))?);
            crate::profile::mark(dev, "attn: unpack");
        }
        self.gather(outs).map(Some)
    }

    /// One bucket: `qb` `[b, hkv, rep·lq, d]`, `kb`/`vb` `[b, hkv, lk, d]` → `[b, hkv, rep·lq, d]`.
    fn attend_bucket(&self, bk: &Bucket, qb: &Tensor, kb: &Tensor, vb: &Tensor) -> Result<Tensor> {
        let d = qb.dim(3)?;
        let dev = qb.device();
        let scores = qb.matmul(&kb.t()?)?; // [b, hkv, rep*lq, lk]
        crate::profile::mark(dev, "attn: qk gemm");
        let probs = self.masked_softmax(&scores, bk, 1.0 / (d as f64).sqrt())?;
        crate::profile::mark(dev, "attn: softmax");
        let o = probs.matmul(vb)?;
        crate::profile::mark(dev, "attn: pv gemm");
        Ok(o)
    }

    /// Bucket outputs back into packed query order.
    fn gather(&self, mut outs: Vec<Tensor>) -> Result<Tensor> {
        let all = if outs.len() == 1 { outs.pop().unwrap_or_else(|| unreachable!()) } else { Tensor::cat(&outs, 0)? };
        match &self.gather {
            Some(g) => Ok(all.index_select(g, 0)?),
            None => Ok(all),
        }
    }

    fn masked_softmax(&self, scores: &Tensor, bk: &Bucket, scale: f64) -> Result<Tensor> {
        let op =
            MaskedSoftmax { rows: bk.rows.clone(), lq: bk.lq, lk: bk.lk, scale: scale as f32, causal: self.causal };
        if scores.device().is_cpu() && scores.dtype() == DType::F32 && scores.is_contiguous() {
            // The scores are this plan's own fresh GEMM output: normalise them where they are.
            scores.inplace_op1(&op)?;
            return Ok(scores.clone());
        }
        #[cfg(feature = "cuda")]
        if let (true, Some(rows)) = (on_cuda(scores), &bk.rows_dev) {
            return crate::cuda::masked_softmax(scores, rows, bk.lq, bk.lk, scale, self.causal);
        }
        // Other devices: an additive mask and the stock softmax, in f32.
        let (b, hkv, rows, lk) = scores.dims4()?;
        let groups = hkv * rows / bk.lq;
        let mask = Tensor::from_vec(op.additive_mask(), (b, 1, bk.lq, lk), scores.device())?;
        let s = (scores.to_dtype(DType::F32)? * scale)?.reshape((b, groups, bk.lq, lk))?.broadcast_add(&mask)?;
        Ok(candle_nn::ops::softmax_last_dim(&s)?.reshape((b, hkv, rows, lk))?.to_dtype(scores.dtype())?)
    }
}

/// Softmax over each score row restricted to the keys its query may see (its own row's keys; causally, those
/// up to its position), scaled by `scale`; zero weight elsewhere and for padding queries. Fused, one pass.
struct MaskedSoftmax {
    rows: Vec<(usize, usize)>,
    lq: usize,
    lk: usize,
    scale: f32,
    causal: bool,
}

impl MaskedSoftmax {
    /// Visible key slots `[lo, hi)` for query slot `i` of row `(nq, nk)`; `None` for a padding slot.
    #[inline]
    fn visible(&self, nq: usize, nk: usize, i: usize) -> Option<(usize, usize)> {
        let qpad = self.lq - nq;
        if i < qpad {
            return None;
        }
        let lo = self.lk - nk;
        let hi = if self.causal { lo + (i - qpad) + (nk - nq) + 1 } else { self.lk };
        Some((lo, hi))
    }

    fn additive_mask(&self) -> Vec<f32> {
        let mut m = Vec::with_capacity(self.rows.len() * self.lq * self.lk);
        for &(nq, nk) in &self.rows {
            for i in 0..self.lq {
                let (lo, hi) = self.visible(nq, nk, i).unwrap_or((self.lk - 1, self.lk));
                m.extend((0..self.lk).map(|j| if (lo..hi).contains(&j) { 0.0 } else { f32::NEG_INFINITY }));
            }
        }
        m
    }
}

impl candle_core::InplaceOp1 for MaskedSoftmax {
    fn name(&self) -> &'static str {
        "sieve-masked-softmax"
    }

    fn cpu_fwd(&self, storage: &mut candle_core::CpuStorage, layout: &candle_core::Layout) -> candle_core::Result<()> {
        use rayon::prelude::*;
        let data = contiguous_f32_mut(storage, layout, "masked softmax")?;
        let (b, _, rows, lk) = layout.shape().dims4()?;
        if b != self.rows.len() || lk != self.lk || rows % self.lq != 0 {
            candle_core::bail!("masked softmax: scores {:?} do not match the plan", layout.shape());
        }
        let per_b = data.len() / b;
        data.par_chunks_mut(lk).enumerate().for_each(|(r, row)| {
            let (nq, nk) = self.rows[r * lk / per_b];
            let Some((lo, hi)) = self.visible(nq, nk, r % self.lq) else {
                row.fill(0.0);
                return;
            };
            row[..lo].fill(0.0);
            row[hi..].fill(0.0);
            let s = &mut row[lo..hi];
            let max = lanes(s, f32::NEG_INFINITY, f32::max);
            let scale = self.scale;
            for x in s.iter_mut() {
                *x = exp((*x - max) * scale);
            }
            let inv = 1.0 / lanes(s, 0.0, |a, b| a + b);
            s.iter_mut().for_each(|x| *x *= inv);
        });
        Ok(())
    }
}

/// Plain matmul/softmax attention, one row at a time; any device and dtype (softmax in f32).
/// Also the reference the fused kernel is tested against.
pub fn reference_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    q_lens: &[usize],
    k_lens: &[usize],
    causal: bool,
    scale: f64,
) -> Result<Tensor> {
    let (hq, hkv) = (q.dim(1)?, k.dim(1)?);
    let rep = hq / hkv;
    let mut outs = Vec::with_capacity(q_lens.len());
    let (mut qo, mut ko) = (0, 0);
    for (&nq, &nk) in q_lens.iter().zip(k_lens) {
        let qi = q.narrow(0, qo, nq)?.transpose(0, 1)?.contiguous()?; // [Hq, nq, d]
        let expand = |t: &Tensor| -> Result<Tensor> {
            let t = t.narrow(0, ko, nk)?.transpose(0, 1)?; // [Hkv, nk, d]
            let (_, n, d) = t.dims3()?;
            Ok(t.unsqueeze(1)?.broadcast_as((hkv, rep, n, d))?.reshape((hq, n, d))?.contiguous()?)
        };
        let (ki, vi) = (expand(k)?, expand(v)?);
        let mut s = (qi.matmul(&ki.t()?)?.to_dtype(DType::F32)? * scale)?; // [Hq, nq, nk]
        if causal {
            let off = nk - nq;
            let mask: Vec<f32> = (0..nq)
                .flat_map(|i| (0..nk).map(move |j| if j <= i + off { 0.0 } else { f32::NEG_INFINITY }))
                .collect();
            let mask = Tensor::from_vec(mask, (nq, nk), q.device())?;
            s = s.broadcast_add(&mask)?;
        }
        let p = candle_nn::ops::softmax_last_dim(&s)?.to_dtype(vi.dtype())?;
        outs.push(p.matmul(&vi)?.transpose(0, 1)?); // [nq, Hq, d]
        qo += nq;
        ko += nk;
    }
    Ok(Tensor::cat(&outs, 0)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rand(shape: &[usize], seed: u64) -> Tensor {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|i| crate::synthetic::uniform(seed, i as u64)).collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
    }

    #[test]
    fn fused_attention_equals_reference_with_prefix_offsets_and_gqa() {
        // Three rows: a plain causal row, a row continuing a 4-token prefix, a last-position-only row.
        let (q_lens, k_lens) = (vec![5, 3, 1], vec![5, 7, 6]);
        let q = rand(&[9, 4, 8], 1);
        let k = rand(&[18, 2, 8], 2);
        let v = rand(&[18, 2, 8], 3);
        let fused = varlen_causal_attention(&q, &k, &v, &q_lens, &k_lens).unwrap();
        let slow = reference_attention(&q, &k, &v, &q_lens, &k_lens, true, 1.0 / 8f64.sqrt()).unwrap();
        assert!(max_diff(&fused, &slow) < 1e-5);
        // A tiny score budget: long rows split into query chunks, one row per bucket.
        let chunked = AttnPlan::with_budget(&q_lens, &k_lens, true, 4, &Device::Cpu, 40, None).unwrap();
        assert!(chunked.buckets.len() > 3);
        assert!(max_diff(&chunked.attend(&q, &k, &v).unwrap(), &slow) < 1e-5);
        // Lengths far apart land in different buckets.
        let spread = AttnPlan::new(&[1, 1, 1], &[2, 12, 4], true, 4, &Device::Cpu).unwrap();
        assert_eq!(spread.buckets.len(), 3);
        let full = varlen_full_attention(&q, &k.narrow(0, 0, 9).unwrap(), &v.narrow(0, 0, 9).unwrap(), &[5, 3, 1]);
        let full_ref = reference_attention(
            &q,
            &k.narrow(0, 0, 9).unwrap(),
            &v.narrow(0, 0, 9).unwrap(),
            &[5, 3, 1],
            &[5, 3, 1],
            false,
            1.0 / 8f64.sqrt(),
        );
        assert!(max_diff(&full.unwrap(), &full_ref.unwrap()) < 1e-5);
    }

    #[test]
    fn keys_read_through_a_key_map_equal_per_row_copies() {
        // Two rows continue a shared 3-token prefix (stored once), one row has none; keys are read from
        // [prefix; own] through the map instead of being copied per row.
        let (q_lens, k_lens) = (vec![4, 2, 3], vec![7, 5, 3]);
        let pre_k = rand(&[3, 2, 8], 21);
        let pre_v = rand(&[3, 2, 8], 22);
        let own_k = rand(&[9, 2, 8], 23);
        let own_v = rand(&[9, 2, 8], 24);
        let q = rand(&[9, 4, 8], 25);
        let map: Vec<u32> = [0, 1, 2, 3, 4, 5, 6, 0, 1, 2, 7, 8, 9, 10, 11].to_vec();
        let plan = AttnPlan::with_key_map(&q_lens, &k_lens, true, 4, &Device::Cpu, &map).unwrap();
        let got = plan.attend_parts(&q, &[pre_k.clone(), own_k.clone()], &[pre_v.clone(), own_v.clone()]).unwrap();
        // The same keys copied out per row, in packed order.
        let row_keys = |pre: &Tensor, own: &Tensor| {
            Tensor::cat(&[pre, &own.narrow(0, 0, 4).unwrap(), pre, &own.narrow(0, 4, 5).unwrap()], 0).unwrap()
        };
        let (k, v) = (row_keys(&pre_k, &own_k), row_keys(&pre_v, &own_v));
        let want = reference_attention(&q, &k, &v, &q_lens, &k_lens, true, 1.0 / 8f64.sqrt()).unwrap();
        assert!(max_diff(&got, &want) < 1e-5);
        // A map of the wrong length is refused.
        assert!(AttnPlan::with_key_map(&q_lens, &k_lens, true, 4, &Device::Cpu, &map[1..]).is_err());
    }

    #[test]
    fn fast_exp_is_within_a_few_ulp() {
        let mut worst = 0f32;
        for i in -87_000..88_000 {
            let x = i as f32 * 1e-3 + 1.234e-4;
            for fast in [exp(x), exp_with::<true>(x)] {
                worst = worst.max(((fast - x.exp()) / x.exp()).abs());
            }
        }
        assert!(worst < 4.0 * f32::EPSILON, "{worst}");
        let gu = Tensor::new(&[[1f32, -2., 0.5, 3.], [0., 40., -1., 2.]], &Device::Cpu).unwrap();
        let fused: Vec<Vec<f32>> = swiglu(&gu, 2).unwrap().to_vec2().unwrap();
        let silu = |g: f32| g / (1.0 + (-g).exp());
        let want = [[silu(1.) * 0.5, silu(-2.) * 3.], [-silu(0.), silu(40.) * 2.]];
        for (a, b) in fused.iter().flatten().zip(want.iter().flatten()) {
            assert!((a - b).abs() < 1e-6, "{fused:?} vs {want:?}");
        }
    }

    #[test]
    fn gelu_matches_erf_gelu() {
        let xs: Vec<f32> = (-800..800).map(|i| i as f32 * 0.01).collect();
        let x = Tensor::new(xs.as_slice(), &Device::Cpu).unwrap();
        let exact: Vec<f32> = x.gelu_erf().unwrap().to_vec1().unwrap();
        // The kernel as dispatched (AVX2 + FMA where the CPU has them), and both builds of the row loop.
        let dispatched: Vec<f32> = bias_act(x.copy().unwrap(), None, true).unwrap().to_vec1().unwrap();
        let (mut plain, mut fused) = (xs.clone(), xs.clone());
        bias_gelu_rows::<false>(&mut plain, &[0.0; 16]);
        bias_gelu_rows::<true>(&mut fused, &[0.0; 16]);
        for fast in [dispatched, plain, fused] {
            for (a, b) in fast.iter().zip(&exact) {
                assert!((a - b).abs() < 1e-6, "{a} vs {b}");
            }
        }
    }

    #[test]
    fn fused_norms_equal_the_unfused_ops() {
        let y = rand(&[5, 16], 11);
        let r = rand(&[5, 16], 12);
        let w = (rand(&[16], 13) + 1.0).unwrap();
        let b = rand(&[16], 14);
        let bias = rand(&[16], 15);
        let (sum, normed) = add_rms_norm(&y, &r, &w, 1e-6).unwrap();
        assert!(max_diff(&sum, &(&y + &r).unwrap()) < 1e-6);
        assert!(max_diff(&normed, &candle_nn::ops::rms_norm_slow(&(&y + &r).unwrap(), &w, 1e-6).unwrap()) < 1e-5);
        let ln = add_bias_layer_norm(y.copy().unwrap(), Some(&bias), &r, (&w, &b), 1e-12).unwrap();
        let t = (y.broadcast_add(&bias).unwrap() + &r).unwrap();
        assert!(max_diff(&ln, &candle_nn::ops::layer_norm_slow(&t, &w, &b, 1e-12).unwrap()) < 1e-5);
        let g = bias_act(y.copy().unwrap(), Some(&bias), true).unwrap();
        assert!(max_diff(&g, &y.broadcast_add(&bias).unwrap().gelu_erf().unwrap()) < 1e-6);
        assert!(
            max_diff(&bias_act(y.copy().unwrap(), Some(&bias), false).unwrap(), &y.broadcast_add(&bias).unwrap())
                < 1e-7
        );
    }

    #[test]
    fn rope_rotates_pairs_half_apart() {
        let (cos, sin) = rope_tables(4, 4, 10_000.0, &Device::Cpu, DType::F32).unwrap();
        let x = Tensor::new(&[[[1f32, 2., 3., 4.]]], &Device::Cpu).unwrap(); // [1 token, 1 head, 4]
        let pos = Tensor::new(&[3u32], &Device::Cpu).unwrap();
        let y = rope(&x, &cos.index_select(&pos, 0).unwrap(), &sin.index_select(&pos, 0).unwrap()).unwrap();
        let y: Vec<f32> = y.flatten_all().unwrap().to_vec1().unwrap();
        // rotate-half: (x0, x2) rotate by 3*1, (x1, x3) by 3*0.01
        let (a, b) = (3f32, 3f32 * 0.01);
        let want = [
            1. * a.cos() - 3. * a.sin(),
            2. * b.cos() - 4. * b.sin(),
            3. * a.cos() + 1. * a.sin(),
            4. * b.cos() + 2. * b.sin(),
        ];
        for (g, w) in y.iter().zip(want) {
            assert!((g - w).abs() < 1e-5, "{y:?} vs {want:?}");
        }
    }
}
