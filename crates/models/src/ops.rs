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
pub(crate) fn cpu_f32(t: &Tensor) -> bool {
    t.device().is_cpu() && t.dtype() == DType::F32
}

pub(crate) fn host_vec(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?)
}

pub(crate) fn contiguous_f32<'a>(
    s: &'a candle_core::CpuStorage,
    l: &candle_core::Layout,
    what: &str,
) -> candle_core::Result<&'a [f32]> {
    let Some((a, b)) = l.contiguous_offsets() else {
        candle_core::bail!("{what}: input must be contiguous");
    };
    Ok(&s.as_slice::<f32>()?[a..b])
}

pub(crate) fn contiguous_f32_mut<'a>(
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
pub(crate) fn lanes(x: &[f32], init: f32, f: impl Fn(f32, f32) -> f32) -> f32 {
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn rand(shape: &[usize], seed: u64) -> Tensor {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|i| crate::synthetic::uniform(seed, i as u64)).collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    pub(crate) fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
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
