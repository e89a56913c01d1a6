//! Attention over packed rows, planned as a few batched GEMMs: rows of similar length are bucketed, over-long
//! rows split into query chunks within a score budget, a fused masked softmax between the two GEMMs, keys read
//! through a key map when rows share a prefix ([`AttnPlan`]). The CPU's own kernels are `cpu_attention.rs`;
//! the element-wise kernels are `ops.rs`; on CUDA the packing and the softmax are `cuda.rs`'s kernels.

use candle_core::{DType, Device, Tensor};

use crate::error::Result;
#[cfg(feature = "cuda")]
use crate::ops::on_cuda;
use crate::ops::{contiguous_f32_mut, exp, lanes};

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
    use crate::ops::tests::{max_diff, rand};

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
}
