//! Building blocks shared by the architectures: linear layers, norms, RoPE, activations and packed
//! (variable-length) attention. Each works on packed `[tokens, ...]` tensors, with no batch padding.

use candle_core::{DType, Device, Tensor, D};

use crate::error::Result;

/// `y = x Wᵀ + b` with `W` stored `[out, in]` as in the checkpoint.
#[derive(Debug, Clone)]
pub struct Linear {
    wt: Tensor,
    b: Option<Tensor>,
}

impl Linear {
    pub fn new(w: Tensor, b: Option<Tensor>) -> Result<Linear> {
        Ok(Linear { wt: w.t()?, b })
    }

    /// `x`: `[tokens, in]` → `[tokens, out]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = x.matmul(&self.wt)?;
        Ok(match &self.b {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        })
    }
}

/// RMSNorm over the last dimension, computed in f32 whatever the storage dtype (as transformers does).
pub fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
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

/// `silu(gate) * up` for a fused `[tokens, 2*inter]` gate/up projection.
pub fn swiglu(gu: &Tensor, inter: usize) -> Result<Tensor> {
    let gate = gu.narrow(D::Minus1, 0, inter)?;
    let up = gu.narrow(D::Minus1, inter, inter)?;
    Ok((candle_nn::ops::silu(&gate.contiguous()?)? * up)?)
}

/// Exact (erf) GELU, as BERT uses.
pub fn gelu(x: &Tensor) -> Result<Tensor> {
    Ok(x.gelu_erf()?)
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
    varlen_attention(q, k, v, q_lens, k_lens, true)
}

/// Bidirectional attention over packed rows (BERT): every query of a row sees every key of that row only.
pub fn varlen_full_attention(q: &Tensor, k: &Tensor, v: &Tensor, lens: &[usize]) -> Result<Tensor> {
    varlen_attention(q, k, v, lens, lens, false)
}

fn varlen_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    q_lens: &[usize],
    k_lens: &[usize],
    causal: bool,
) -> Result<Tensor> {
    let d = q.dim(D::Minus1)?;
    let scale = 1.0 / (d as f64).sqrt();
    if q.device().is_cpu() && q.dtype() == DType::F32 {
        let dev = q.device();
        let ql = Tensor::from_vec(q_lens.iter().map(|&n| n as u32).collect::<Vec<_>>(), q_lens.len(), dev)?;
        let kl = Tensor::from_vec(k_lens.iter().map(|&n| n as u32).collect::<Vec<_>>(), k_lens.len(), dev)?;
        let mq = q_lens.iter().copied().max().unwrap_or(0);
        let mk = k_lens.iter().copied().max().unwrap_or(0);
        return Ok(candle_nn::attention::cpu_flash::varlen::flash_attn_varlen_cpu(
            q,
            k,
            v,
            None,
            &ql,
            &kl,
            mq,
            mk,
            scale as f32,
            causal,
            None,
            None,
        )?);
    }
    reference_attention(q, k, v, q_lens, k_lens, causal, scale)
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
