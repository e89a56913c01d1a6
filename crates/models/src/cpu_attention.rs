//! The CPU kernels for packed attention, read straight from the fused q/k/v projection: bidirectional
//! self-attention (the BERT family's, [`packed_self_attention`]) and causal grouped-query attention over rows
//! that may continue a shared prefix (Qwen3's, [`packed_causal_attention`]).
//!
//! [`attention::AttnPlan`](crate::ops::AttnPlan) runs attention as candle batched GEMMs over length buckets. For
//! BERT's many narrow heads (all-MiniLM-L6-v2: 12 heads of 32) that costs more than the work: candle's batched
//! matmul is a sequential loop of tiny GEMMs, and the split, gathers and permutes around them copy q/k/v four
//! times. Here each (row, head) pair is one task on the rayon pool, computed whole in a thread-local scratch:
//! `S = (q·scale)·kᵀ` in register tiles, the softmax's exponentials in place, `O = S·v` in register tiles,
//! normalised as it is stored in a head-major buffer that one parallel pass puts back in token order. Rows
//! never see each other's keys, so a row's output does not depend on its batch.
//!
//! The causal kernel has the same shape, with a task per (row, key/value head, chunk of queries): the keys
//! and values the chunk can see are copied once (from the prefix's block, then the row's own) and serve all
//! the group's query heads; the `q·kᵀ` tiles stop at each tile's last visible key and the `p·v` tiles' inner
//! loop too, so the half of the scores the mask zeroes is mostly not computed. Long rows are split into
//! query chunks so the scores of one task stay small (256 KiB up to ~1,000 keys).
//!
//! The tile code is written once in plain Rust (fixed-size lane arrays the compiler vectorises) and compiled
//! twice: for the baseline target and, chosen at run time when the CPU has them, with AVX2 and fused
//! multiply-adds (8-wide registers; the baseline build only has 4-wide SSE2). The two can differ in the last
//! bits of a result.

use candle_core::{CpuStorage, DType, Device, Layout, Shape, Tensor};
use rayon::prelude::*;

use crate::error::{ModelError, Result};
use crate::ops::{avx2_fma, exp_with, madd};

/// Lanes of one vector register (AVX2, f32).
const W: usize = 8;
/// Columns per register tile (two registers), in both products.
const CB: usize = 2 * W;
/// Rows (queries) per register tile: 6 × 2 accumulators, the shape of the GEMM crate's AVX2 kernel.
const RB: usize = 6;

/// True when [`packed_self_attention`] and [`packed_causal_attention`] apply: f32 on the CPU, a head size
/// they tile (a multiple of 8).
pub fn applies(dev: &Device, dtype: DType, head_dim: usize) -> bool {
    dev.is_cpu() && dtype == DType::F32 && head_dim > 0 && head_dim.is_multiple_of(W)
}

/// Bidirectional attention within each packed row. `qkv`: `[Σlens, 3·heads·d]`, the q, k and v blocks side by
/// side (biases added); `lens`: each row's token count. Returns `[Σlens, heads·d]`, scale `d^-0.5`.
/// See [`applies`] for what it takes.
pub fn packed_self_attention(qkv: &Tensor, lens: &[usize], heads: usize) -> Result<Tensor> {
    let (total, three_h) = qkv.dims2()?;
    let fits = heads > 0 && three_h % (3 * heads) == 0 && applies(qkv.device(), qkv.dtype(), three_h / (3 * heads));
    if !fits {
        return Err(ModelError::input(
            "packed attention",
            "f32 CPU [tokens, 3·heads·d] with d a multiple of 8",
            format!("{:?} {:?} [{total}, {three_h}], {heads} heads", qkv.device(), qkv.dtype()),
        ));
    }
    if lens.iter().sum::<usize>() != total || lens.contains(&0) {
        return Err(ModelError::input(
            "packed attention rows",
            format!("non-empty lengths summing to {total}"),
            format!("{lens:?}"),
        ));
    }
    let op = SelfAttention { lens: lens.to_vec(), heads };
    Ok(qkv.contiguous()?.apply_op1_no_bwd(&op)?)
}

struct SelfAttention {
    lens: Vec<usize>,
    heads: usize,
}

impl candle_core::CustomOp1 for SelfAttention {
    fn name(&self) -> &'static str {
        "sieve-packed-self-attention"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let Some((a, b)) = layout.contiguous_offsets() else {
            candle_core::bail!("packed attention: qkv must be contiguous");
        };
        let qkv = &storage.as_slice::<f32>()?[a..b];
        let (total, three_h) = layout.shape().dims2()?;
        #[cfg(target_arch = "x86_64")]
        if let Some(isa) = Avx2Fma::detect() {
            let out = attend_all(isa, qkv, three_h, &self.lens, self.heads);
            return Ok((CpuStorage::F32(out), Shape::from((total, three_h / 3))));
        }
        let out = attend_all(Baseline, qkv, three_h, &self.lens, self.heads);
        Ok((CpuStorage::F32(out), Shape::from((total, three_h / 3))))
    }
}

/// The whole operation over `qkv` `[Σlens, three_h]` with the tiles built for `isa`: `[Σlens, three_h / 3]`.
fn attend_all<I: Isa>(isa: I, qkv: &[f32], three_h: usize, lens: &[usize], heads: usize) -> Vec<f32> {
    let total = qkv.len() / three_h;
    let h = three_h / 3;
    let d = h / heads;
    let geo = Geometry { stride: three_h, d, scale: 1.0 / (d as f32).sqrt() };

    // Head-major output: head `j`'s rows are one contiguous `[total, d]` block, so every (row, head) task owns a
    // contiguous slice.
    let mut by_head = vec![0f32; total * h];
    let mut tasks = Vec::with_capacity(heads * lens.len());
    for (j, block) in by_head.chunks_mut(total * d).enumerate() {
        let (mut rest, mut t0) = (block, 0);
        for &len in lens {
            let (mine, next) = rest.split_at_mut(len * d);
            tasks.push(Task { t0, len, head: j, out: mine });
            rest = next;
            t0 += len;
        }
    }
    // Longest rows first, so the last tasks to start are the short ones.
    tasks.sort_by_key(|t| std::cmp::Reverse(t.len));
    crate::profile::mark(&Device::Cpu, "attn: setup");
    tasks.into_par_iter().for_each_init(Scratch::default, |s, t| attend(isa, qkv, &geo, h, t, s));
    crate::profile::mark(&Device::Cpu, "attn: kernel");

    let mut out = vec![0f32; total * h];
    out.par_chunks_mut(h).enumerate().for_each(|(t, row)| {
        for (j, dst) in row.chunks_exact_mut(d).enumerate() {
            dst.copy_from_slice(&by_head[(j * total + t) * d..][..d]);
        }
    });
    crate::profile::mark(&Device::Cpu, "attn: token order");
    out
}

/// The fused projection's layout: floats per token, head size, score scale.
struct Geometry {
    stride: usize,
    d: usize,
    scale: f32,
}

/// One (row, head) pair: the row's first token and length, the head, and where its `[len, d]` output goes.
struct Task<'a> {
    t0: usize,
    len: usize,
    head: usize,
    out: &'a mut [f32],
}

/// Per-thread buffers, reused across tasks: scaled queries `[len, d]`, keys transposed `[d, lp]`, values
/// `[len, d]`, scores `[len, lp]` (`lp` = len rounded up to a multiple of [`CB`]), each score row's softmax
/// normaliser. q, k and v are copied out of the projection so that the tiles read them from L1.
#[derive(Default)]
struct Scratch {
    q: Vec<f32>,
    kt: Vec<f32>,
    v: Vec<f32>,
    s: Vec<f32>,
    inv: Vec<f32>,
}

fn resized(buf: &mut Vec<f32>, n: usize) -> &mut [f32] {
    buf.clear();
    buf.resize(n, 0.0);
    buf
}

/// One (row, head) task.
fn attend<I: Isa>(isa: I, qkv: &[f32], geo: &Geometry, h: usize, task: Task<'_>, scratch: &mut Scratch) {
    let Task { t0, len, head, out } = task;
    let (d, stride) = (geo.d, geo.stride);
    let lp = len.next_multiple_of(CB);
    let (qo, ko, vo) = (head * d, h + head * d, 2 * h + head * d);
    let q = resized(&mut scratch.q, len * d);
    let kt = resized(&mut scratch.kt, d * lp);
    let v = resized(&mut scratch.v, len * d);
    let s = resized(&mut scratch.s, len * lp);
    let inv = resized(&mut scratch.inv, len);
    for (i, tok) in qkv[t0 * stride..(t0 + len) * stride].chunks_exact(stride).enumerate() {
        for (dst, &x) in q[i * d..][..d].iter_mut().zip(&tok[qo..qo + d]) {
            *dst = x * geo.scale;
        }
        for (c, &x) in tok[ko..ko + d].iter().enumerate() {
            kt[c * lp + i] = x;
        }
        v[i * d..][..d].copy_from_slice(&tok[vo..vo + d]);
    }
    // Scores: s = q·kᵀ. Padding keys (zero) score 0; the softmax gives them weight 0.
    isa.product(Product { a: q, lda: d, b: kt, ldb: lp, c: s, ldc: lp, cols: lp, scale: None, limit: Limit::None });
    isa.softmax_rows(s, lp, len, inv);
    // Output: out = softmax(s)·v over the real keys, normalised as it is stored.
    let pv = Product { a: s, lda: lp, b: v, ldb: d, c: out, ldc: d, cols: d, scale: Some(inv), limit: Limit::None };
    isa.product(pv);
}

/// One row of a packed causal batch (see [`packed_causal_attention`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CausalRow {
    /// The row's first token in the batch's own q|k|v block, and its token count there.
    pub t0: usize,
    pub len: usize,
    /// The prefix block (an index into the prefixes given) whose keys come before the row's own, if any.
    pub prefix: Option<usize>,
    /// How many of the row's last positions are queries: `len` for all of them, 1 for the final one only.
    pub queries: usize,
}

/// Causal grouped-query attention over packed rows, read in place from the fused q|k|v projection (norms and
/// RoPE already applied, see [`crate::ops::fused_qkv`]): `own` `[tokens, (hq + 2·hkv)·d]` for this batch, and
/// `prefixes`, blocks of the same layout whose keys and values a row may continue (a shared prefix run once).
/// A row's queries are its last positions; query `i` of a row with `nk` keys in all sees keys
/// `0..nk - queries + i + 1`. Returns `[Σ queries, hq·d]` in row order, scale `d^-0.5`.
pub fn packed_causal_attention(
    own: &Tensor,
    prefixes: &[&Tensor],
    rows: &[CausalRow],
    heads: (usize, usize, usize),
) -> Result<Tensor> {
    let (hq, hkv, d) = heads;
    let stride = (hq + 2 * hkv) * d;
    let bad = |what: &str, expected: String, found: String| Err(ModelError::input(what, expected, found));
    if hkv == 0 || hq % hkv != 0 || !applies(own.device(), own.dtype(), d) {
        return bad(
            "causal attention",
            "f32 on the CPU, query heads a multiple of key/value heads, head size a multiple of 8".into(),
            format!("{:?} {:?}, {hq}/{hkv} heads of {d}", own.device(), own.dtype()),
        );
    }
    let blocks: Vec<&Tensor> = std::iter::once(own).chain(prefixes.iter().copied()).collect();
    for b in &blocks {
        if b.dims().len() != 2 || b.dim(1)? != stride || !applies(b.device(), b.dtype(), d) {
            return bad(
                "q|k|v block",
                format!("f32 CPU [tokens, {stride}]"),
                format!("{:?} {:?}", b.dtype(), b.dims()),
            );
        }
    }
    let total = own.dim(0)?;
    let prefix_lens: Vec<usize> = prefixes.iter().map(|p| p.dim(0)).collect::<candle_core::Result<_>>()?;
    for (i, r) in rows.iter().enumerate() {
        let prefix_ok = r.prefix.is_none_or(|p| p < prefixes.len());
        if r.t0 + r.len > total || r.queries == 0 || r.queries > r.len || !prefix_ok {
            return bad(
                "causal attention row",
                format!("tokens within the {total} of the block, 1..=len queries, a prefix of {}", prefixes.len()),
                format!("row {i}: {r:?}"),
            );
        }
    }
    let blocks: Vec<Tensor> = blocks.iter().map(|b| b.contiguous()).collect::<candle_core::Result<_>>()?;
    let guards: Vec<_> = blocks.iter().map(|b| b.storage_and_layout()).collect();
    let mut slices = Vec::with_capacity(guards.len());
    for (storage, layout) in &guards {
        let candle_core::Storage::Cpu(cpu) = &**storage else {
            return bad("q|k|v block", "CPU storage".into(), "another device".into());
        };
        let Some((a, b)) = layout.contiguous_offsets() else {
            return bad("q|k|v block", "contiguous".into(), "strided".into());
        };
        slices.push(&cpu.as_slice::<f32>()?[a..b]);
    }
    let batch = CausalBatch { own: slices[0], prefixes: &slices[1..], prefix_lens: &prefix_lens, rows, heads };
    let n_q: usize = rows.iter().map(|r| r.queries).sum();
    #[cfg(target_arch = "x86_64")]
    if let Some(isa) = Avx2Fma::detect() {
        return Ok(Tensor::from_vec(causal_all(isa, &batch), (n_q, hq * d), &Device::Cpu)?);
    }
    Ok(Tensor::from_vec(causal_all(Baseline, &batch), (n_q, hq * d), &Device::Cpu)?)
}

/// What [`packed_causal_attention`] reads, checked.
struct CausalBatch<'a> {
    own: &'a [f32],
    prefixes: &'a [&'a [f32]],
    prefix_lens: &'a [usize],
    rows: &'a [CausalRow],
    heads: (usize, usize, usize),
}

impl CausalBatch<'_> {
    fn stride(&self) -> usize {
        (self.heads.0 + 2 * self.heads.1) * self.heads.2
    }

    /// Key `j` of `row` (prefix keys first, then the row's own): its token's whole q|k|v slice.
    fn key_token(&self, row: &CausalRow, j: usize) -> &[f32] {
        let stride = self.stride();
        match row.prefix {
            Some(p) if j < self.prefix_lens[p] => &self.prefixes[p][j * stride..][..stride],
            _ => {
                let t = row.t0 + j - row.prefix.map_or(0, |p| self.prefix_lens[p]);
                &self.own[t * stride..][..stride]
            }
        }
    }

    fn keys(&self, row: &CausalRow) -> usize {
        row.len + row.prefix.map_or(0, |p| self.prefix_lens[p])
    }
}

/// Score floats one task's chunk of queries may hold (`queries × keys`); a longer row's queries are split into
/// chunks, each seeing the keys up to its last query. A chunk keeps at least [`MIN_CHUNK`] queries, so that
/// copying its keys stays small beside the products (at 32 Ki keys its scores then take 8 MiB).
const CHUNK_SCORES: usize = 1 << 16;
const MIN_CHUNK: usize = 64;

/// One causal task: a chunk of one row's queries (`c0..c0 + cn` of them), for one key/value head `group` and
/// its `rep` query heads; `out` is its `[cn, rep·d]` block of the group-major output.
struct CausalTask<'a> {
    row: usize,
    group: usize,
    c0: usize,
    cn: usize,
    out: &'a mut [f32],
}

fn causal_all<I: Isa>(isa: I, batch: &CausalBatch<'_>) -> Vec<f32> {
    let (hq, hkv, d) = batch.heads;
    let gw = hq / hkv * d;
    let n_q: usize = batch.rows.iter().map(|r| r.queries).sum();
    // Group-major output: key/value head `g`'s query heads are one `[n_q, rep·d]` block, so every task owns a
    // contiguous slice.
    let mut by_group = vec![0f32; hkv * n_q * gw];
    let mut tasks = Vec::new();
    for (group, block) in by_group.chunks_mut(n_q * gw).enumerate() {
        let mut rest = block;
        for (ri, r) in batch.rows.iter().enumerate() {
            let chunk = (CHUNK_SCORES / batch.keys(r).next_multiple_of(CB)).max(MIN_CHUNK);
            let (mut mine, next) = rest.split_at_mut(r.queries * gw);
            rest = next;
            let mut c0 = 0;
            while c0 < r.queries {
                let cn = chunk.min(r.queries - c0);
                let (out, more) = mine.split_at_mut(cn * gw);
                tasks.push(CausalTask { row: ri, group, c0, cn, out });
                mine = more;
                c0 += cn;
            }
        }
    }
    // The costliest first (queries × keys seen), so the last tasks to start are short ones.
    let cost = |t: &CausalTask| {
        let r = &batch.rows[t.row];
        t.cn * (batch.keys(r) - r.queries + t.c0 + t.cn)
    };
    tasks.sort_by_key(|t| std::cmp::Reverse(cost(t)));
    crate::profile::mark(&Device::Cpu, "attn: setup");
    tasks.into_par_iter().for_each_init(Scratch::default, |s, t| attend_causal(isa, batch, t, s));
    crate::profile::mark(&Device::Cpu, "attn: kernel");

    let mut out = vec![0f32; n_q * hq * d];
    out.par_chunks_mut(hq * d).enumerate().for_each(|(t, row)| {
        for (g, dst) in row.chunks_exact_mut(gw).enumerate() {
            dst.copy_from_slice(&by_group[(g * n_q + t) * gw..][..gw]);
        }
    });
    crate::profile::mark(&Device::Cpu, "attn: token order");
    out
}

/// One causal task: the group's keys (transposed) and values the chunk sees are copied once, then for each of
/// the group's query heads `S = (q·scale)·kᵀ` up to each tile's last visible key, the causal softmax, and
/// `O = S·v`, normalised as it is stored.
fn attend_causal<I: Isa>(isa: I, batch: &CausalBatch<'_>, task: CausalTask<'_>, scratch: &mut Scratch) {
    let CausalTask { row, group, c0, cn, out } = task;
    let r = &batch.rows[row];
    let (hq, hkv, d) = batch.heads;
    let rep = hq / hkv;
    let stride = batch.stride();
    // Query `c` of the chunk sees keys `0..off + c + 1`.
    let off = batch.keys(r) - r.queries + c0;
    let seen = off + cn;
    let lp = seen.next_multiple_of(CB);
    let (ko, vo) = ((hq + group) * d, (hq + hkv + group) * d);
    let kt = resized(&mut scratch.kt, d * lp);
    let v = resized(&mut scratch.v, lp * d);
    for j in 0..seen {
        let tok = batch.key_token(r, j);
        for (c, &x) in tok[ko..ko + d].iter().enumerate() {
            kt[c * lp + j] = x;
        }
        v[j * d..][..d].copy_from_slice(&tok[vo..vo + d]);
    }
    let q = resized(&mut scratch.q, cn * d);
    let s = resized(&mut scratch.s, cn * lp);
    let inv = resized(&mut scratch.inv, cn);
    let scale = 1.0 / (d as f32).sqrt();
    let first = r.t0 + r.len - r.queries + c0;
    for h in 0..rep {
        let qo = (group * rep + h) * d;
        for (c, tok) in batch.own[first * stride..(first + cn) * stride].chunks_exact(stride).enumerate() {
            for (dst, &x) in q[c * d..][..d].iter_mut().zip(&tok[qo..qo + d]) {
                *dst = x * scale;
            }
        }
        let qk =
            Product { a: q, lda: d, b: kt, ldb: lp, c: s, ldc: lp, cols: lp, scale: None, limit: Limit::Columns(off) };
        isa.product(qk);
        isa.softmax_causal(s, lp, off, inv);
        let gw = rep * d;
        let pv = Product {
            a: s,
            lda: lp,
            b: v,
            ldb: d,
            c: &mut out[h * d..],
            ldc: gw,
            cols: d,
            scale: Some(inv),
            limit: Limit::Inner(off),
        };
        isa.product(pv);
    }
}

/// `c[:, ..cols] = a · b[:, ..cols]`, each row times `scale[row]` when given. All row-major: `a` is `[rows, k]`
/// (row stride `lda`; `k` is `b`'s row count), `b` is `[k, ≥cols]` (stride `ldb`), `c` is `[rows, ≥cols]`
/// (stride `ldc`); `cols` is a multiple of [`W`].
struct Product<'a> {
    a: &'a [f32],
    lda: usize,
    b: &'a [f32],
    ldb: usize,
    c: &'a mut [f32],
    ldc: usize,
    cols: usize,
    /// Each output row multiplied by this, if given.
    scale: Option<&'a [f32]>,
    /// What a causal mask lets the product skip.
    limit: Limit,
}

/// The part of a product a causal mask makes zero, by `off`: row `i` of the product sees keys `0..off + i + 1`.
#[derive(Clone, Copy)]
enum Limit {
    /// Nothing: every column and the whole inner dimension.
    None,
    /// `q·kᵀ`: the columns (keys) past a tile's last visible key are not computed.
    Columns(usize),
    /// `p·v`: the inner dimension (keys) stops at a tile's last visible key (the weights past it are zero).
    Inner(usize),
}

/// The instruction set the tiles are compiled for.
trait Isa: Copy + Send + Sync {
    fn product(self, p: Product<'_>);
    /// Unnormalised softmax of each `[.., len]` row of `s` (row stride `lp`), zero in the padding columns;
    /// `inv` gets each row's normaliser.
    fn softmax_rows(self, s: &mut [f32], lp: usize, len: usize, inv: &mut [f32]);
    /// Unnormalised softmax of row `i` of `s` (row stride `lp`) over its first `off + i + 1` columns, zero in
    /// the others; `inv` gets each row's normaliser.
    fn softmax_causal(self, s: &mut [f32], lp: usize, off: usize, inv: &mut [f32]);
}

/// The build's baseline target (SSE2 on x86-64).
#[derive(Clone, Copy)]
struct Baseline;

impl Isa for Baseline {
    fn product(self, p: Product<'_>) {
        product::<false>(p)
    }
    fn softmax_rows(self, s: &mut [f32], lp: usize, len: usize, inv: &mut [f32]) {
        softmax_rows::<false>(s, lp, len, inv)
    }
    fn softmax_causal(self, s: &mut [f32], lp: usize, off: usize, inv: &mut [f32]) {
        softmax_causal::<false>(s, lp, off, inv)
    }
}

/// AVX2 with fused multiply-adds. Only [`Avx2Fma::detect`] makes one, after checking the CPU.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
struct Avx2Fma(());

#[cfg(target_arch = "x86_64")]
impl Avx2Fma {
    fn detect() -> Option<Avx2Fma> {
        avx2_fma().then_some(Avx2Fma(()))
    }
}

#[cfg(target_arch = "x86_64")]
impl Isa for Avx2Fma {
    fn product(self, p: Product<'_>) {
        // SAFETY: these functions only need AVX2 and FMA, which `detect` checked before making `self`.
        #[allow(unsafe_code)]
        unsafe {
            avx2::product(p)
        }
    }
    fn softmax_rows(self, s: &mut [f32], lp: usize, len: usize, inv: &mut [f32]) {
        // SAFETY: as above.
        #[allow(unsafe_code)]
        unsafe {
            avx2::softmax_rows(s, lp, len, inv)
        }
    }
    fn softmax_causal(self, s: &mut [f32], lp: usize, off: usize, inv: &mut [f32]) {
        // SAFETY: as above.
        #[allow(unsafe_code)]
        unsafe {
            avx2::softmax_causal(s, lp, off, inv)
        }
    }
}

/// The kernels compiled with AVX2 and FMA enabled (twice the register width of the baseline, one instruction
/// per multiply-add). Each is its own function, so that the compiler allocates its registers alone.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::Product;

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn product(p: Product<'_>) {
        super::product::<true>(p)
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn softmax_rows(s: &mut [f32], lp: usize, len: usize, inv: &mut [f32]) {
        super::softmax_rows::<true>(s, lp, len, inv)
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn softmax_causal(s: &mut [f32], lp: usize, off: usize, inv: &mut [f32]) {
        super::softmax_causal::<true>(s, lp, off, inv)
    }
}

/// [`Product`] in register tiles: [`RB`] rows × [`CB`] columns (an 8-wide last column tile when `cols` is not
/// a multiple of 16), the remaining rows as one smaller tile.
#[inline(always)]
fn product<const FMA: bool>(mut p: Product<'_>) {
    let rows = p.a.len().div_ceil(p.lda);
    let inner = p.b.len() / p.ldb;
    let mut i = 0;
    while i < rows {
        let r = RB.min(rows - i);
        // Keys the tile's last row sees, for a causal limit.
        let seen = |off: usize| off + i + r;
        let (cols, inner) = match p.limit {
            Limit::None => (p.cols, inner),
            Limit::Columns(off) => (p.cols.min(seen(off).next_multiple_of(W)), inner),
            Limit::Inner(off) => (p.cols, inner.min(seen(off))),
        };
        match r {
            RB => tile_rows::<FMA, RB>(&mut p, i, cols, inner),
            5 => tile_rows::<FMA, 5>(&mut p, i, cols, inner),
            4 => tile_rows::<FMA, 4>(&mut p, i, cols, inner),
            3 => tile_rows::<FMA, 3>(&mut p, i, cols, inner),
            2 => tile_rows::<FMA, 2>(&mut p, i, cols, inner),
            _ => tile_rows::<FMA, 1>(&mut p, i, cols, inner),
        }
        i += r;
    }
}

/// Rows `i..i+R` of the product over its first `inner` inner indices: [`CB`]-column tiles, then a [`W`]-column
/// tile if one is left of the first `cols` columns.
#[inline(always)]
fn tile_rows<const FMA: bool, const R: usize>(p: &mut Product<'_>, i: usize, cols: usize, inner: usize) {
    let wide = cols - cols % CB;
    let mut j = 0;
    while j < wide {
        tile::<FMA, R, CB>(p, i, j, inner);
        j += CB;
    }
    if wide < cols {
        tile::<FMA, R, W>(p, i, wide, inner);
    }
}

/// `c[i..i+R, j..j+C] = a[i..i+R, ..inner] · b[..inner, j..j+C]`, the R × C accumulators held in registers
/// over the inner dimension.
#[inline(always)]
fn tile<const FMA: bool, const R: usize, const C: usize>(p: &mut Product<'_>, i: usize, j: usize, inner: usize) {
    let rows: [&[f32]; R] = std::array::from_fn(|r| &p.a[(i + r) * p.lda..][..inner]);
    let mut acc = [[0f32; C]; R];
    for (k, brow) in p.b.chunks_exact(p.ldb).take(inner).enumerate() {
        let bk: &[f32; C] = brow[j..j + C].try_into().unwrap_or_else(|_| unreachable!());
        for (acc_r, row) in acc.iter_mut().zip(&rows) {
            let x = row[k];
            for l in 0..C {
                acc_r[l] = madd::<FMA>(x, bk[l], acc_r[l]);
            }
        }
    }
    for (r, acc_r) in acc.iter_mut().enumerate() {
        if let Some(scale) = p.scale {
            acc_r.iter_mut().for_each(|x| *x *= scale[i + r]);
        }
        p.c[(i + r) * p.ldc + j..][..C].copy_from_slice(acc_r);
    }
}

#[inline(always)]
fn softmax_rows<const FMA: bool>(s: &mut [f32], lp: usize, len: usize, inv: &mut [f32]) {
    for (row, inv) in s.chunks_exact_mut(lp).zip(inv) {
        // Over the whole padded row (whole registers), the padding masked with -inf and zeroed after.
        row[len..].fill(f32::NEG_INFINITY);
        *inv = softmax::<FMA>(row);
        row[len..].fill(0.0);
    }
}

#[inline(always)]
fn softmax_causal<const FMA: bool>(s: &mut [f32], lp: usize, off: usize, inv: &mut [f32]) {
    for (i, (row, inv)) in s.chunks_exact_mut(lp).zip(inv).enumerate() {
        // Over whole registers up to the last visible key (`lp` is a multiple of CB past every row's keys).
        let seen = off + i + 1;
        let end = seen.next_multiple_of(CB);
        row[seen..end].fill(f32::NEG_INFINITY);
        *inv = softmax::<FMA>(&mut row[..end]);
        row[seen..].fill(0.0);
    }
}

/// `exp(x - max(x))` in place, `x.len()` a multiple of [`CB`], and returns `1 / Σ`: the normalisation is left
/// to the caller (the output tiles scale by it), which saves a pass. Two registers of lanes per pass, so
/// that the compiler vectorises them and the reductions are not one long dependency chain. A `-inf` entry
/// gets a weight below 1e-37 (the fast `exp` clamps its argument), which the caller zeroes.
#[inline(always)]
fn softmax<const FMA: bool>(x: &mut [f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; CB];
    for c in x.chunks_exact(CB) {
        for (m, &v) in lanes.iter_mut().zip(c) {
            *m = if v > *m { v } else { *m };
        }
    }
    let max = lanes.iter().fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m });
    let mut sums = [0f32; CB];
    for c in x.chunks_exact_mut(CB) {
        let c: &mut [f32; CB] = c.try_into().unwrap_or_else(|_| unreachable!());
        for l in 0..CB {
            c[l] = exp_with::<FMA>(c[l] - max);
            sums[l] += c[l];
        }
    }
    1.0 / sums.iter().sum::<f32>()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic pseudo-random values in [-2, 2).
    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 40) as f32 / (1u64 << 24) as f32 * 4.0 - 2.0
            })
            .collect()
    }

    /// The kernel as dispatched, and each build of the tiles, against the plain matmul/softmax reference.
    fn check(lens: &[usize], heads: usize, d: usize) {
        let dev = Device::Cpu;
        let total: usize = lens.iter().sum();
        let h = heads * d;
        let data = values(total * 3 * h, (total * 31 + d) as u64);
        let qkv = Tensor::from_vec(data.clone(), (total, 3 * h), &dev).unwrap();
        let part =
            |k: usize| qkv.narrow(1, k * h, h).unwrap().contiguous().unwrap().reshape((total, heads, d)).unwrap();
        let want = crate::attention::reference_attention(
            &part(0),
            &part(1),
            &part(2),
            lens,
            lens,
            false,
            1.0 / (d as f64).sqrt(),
        )
        .unwrap();
        let want: Vec<f32> = want.flatten_all().unwrap().to_vec1().unwrap();
        let dispatched: Vec<f32> =
            packed_self_attention(&qkv, lens, heads).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let mut runs = vec![("dispatched", dispatched), ("baseline", attend_all(Baseline, &data, 3 * h, lens, heads))];
        #[cfg(target_arch = "x86_64")]
        if let Some(isa) = Avx2Fma::detect() {
            runs.push(("avx2+fma", attend_all(isa, &data, 3 * h, lens, heads)));
        }
        for (name, got) in runs {
            let diff = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
            assert!(diff < 2e-5, "{name}, lens {lens:?}, {heads}×{d}: max |Δ| = {diff}");
        }
    }

    #[test]
    fn matches_the_reference_on_every_tile_remainder() {
        // Lengths around the tiles (6 query rows, 16 key columns): 1–5 leftover rows, a key count one past a
        // tile. Heads of 8 (one 8-wide output tile), 32 (MiniLM), 40 (16-wide tiles and an 8-wide tail), 64.
        check(&[1], 2, 8);
        check(&[3, 16, 17, 5, 1, 33], 12, 32);
        check(&[7, 64, 2, 10], 3, 40);
        check(&[130, 9, 4], 4, 64);
    }

    /// `rows` as (own length, prefix index, queries); heads `(hq, hkv, d)`. The kernel as dispatched and each
    /// build of the tiles, against the reference on the same keys copied out per row.
    fn check_causal(prefix_lens: &[usize], rows: &[(usize, Option<usize>, usize)], heads: (usize, usize, usize)) {
        let (hq, hkv, d) = heads;
        let stride = (hq + 2 * hkv) * d;
        let dev = Device::Cpu;
        let total: usize = rows.iter().map(|r| r.0).sum();
        let block = |n: usize, seed: u64| Tensor::from_vec(values(n * stride, seed), (n, stride), &dev).unwrap();
        let own = block(total, 7 + total as u64);
        let prefixes: Vec<Tensor> = prefix_lens.iter().enumerate().map(|(i, &n)| block(n, 100 + i as u64)).collect();
        let mut causal_rows = Vec::new();
        let (mut q_parts, mut k_parts, mut v_parts) = (vec![], vec![], vec![]);
        let (mut q_lens, mut k_lens) = (vec![], vec![]);
        let mut t0 = 0;
        let part = |t: &Tensor, at: usize, n: usize, rows: (usize, usize)| {
            t.narrow(0, rows.0, rows.1).unwrap().narrow(1, at * d, n * d).unwrap().reshape((rows.1, n, d)).unwrap()
        };
        for &(len, prefix, queries) in rows {
            causal_rows.push(CausalRow { t0, len, prefix, queries });
            if let Some(p) = prefix {
                k_parts.push(part(&prefixes[p], hq, hkv, (0, prefix_lens[p])));
                v_parts.push(part(&prefixes[p], hq + hkv, hkv, (0, prefix_lens[p])));
            }
            k_parts.push(part(&own, hq, hkv, (t0, len)));
            v_parts.push(part(&own, hq + hkv, hkv, (t0, len)));
            q_parts.push(part(&own, 0, hq, (t0 + len - queries, queries)));
            q_lens.push(queries);
            k_lens.push(len + prefix.map_or(0, |p| prefix_lens[p]));
            t0 += len;
        }
        let cat = |v: &[Tensor]| Tensor::cat(v, 0).unwrap();
        let (q, k, v) = (cat(&q_parts), cat(&k_parts), cat(&v_parts));
        let want = crate::attention::reference_attention(&q, &k, &v, &q_lens, &k_lens, true, 1.0 / (d as f64).sqrt())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let pre: Vec<&Tensor> = prefixes.iter().collect();
        let got = packed_causal_attention(&own, &pre, &causal_rows, heads).unwrap();
        let dispatched: Vec<f32> = got.flatten_all().unwrap().to_vec1().unwrap();
        let own_data = values(total * stride, 7 + total as u64);
        let pre_data: Vec<Vec<f32>> =
            prefix_lens.iter().enumerate().map(|(i, &n)| values(n * stride, 100 + i as u64)).collect();
        let pre_slices: Vec<&[f32]> = pre_data.iter().map(Vec::as_slice).collect();
        let batch = CausalBatch { own: &own_data, prefixes: &pre_slices, prefix_lens, rows: &causal_rows, heads };
        let mut runs = vec![("dispatched", dispatched), ("baseline", causal_all(Baseline, &batch))];
        #[cfg(target_arch = "x86_64")]
        if let Some(isa) = Avx2Fma::detect() {
            runs.push(("avx2+fma", causal_all(isa, &batch)));
        }
        for (name, got) in runs {
            assert_eq!(got.len(), want.len());
            let diff = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
            assert!(diff < 2e-5, "{name}, rows {rows:?}, prefixes {prefix_lens:?}, {heads:?}: max |Δ| = {diff}");
        }
    }

    #[test]
    fn causal_attention_matches_the_reference_with_prefixes_gqa_and_last_positions() {
        // Plain rows of every tile remainder, all positions; Qwen3-0.6B's heads (16/8 × 128).
        check_causal(&[], &[(1, None, 1), (7, None, 7), (17, None, 17), (40, None, 40)], (16, 8, 128));
        // Rows continuing two different prefixes (one 45 tokens, like the reranker's template and query), a
        // row without one, and last-position-only rows; 4/2 heads of 16 (the parity checkpoints'), 3/1 of 40.
        let rows = [(20, Some(0), 20), (9, Some(1), 9), (5, None, 5), (33, Some(0), 1), (3, Some(1), 1), (6, None, 1)];
        check_causal(&[45, 3], &rows, (4, 2, 16));
        check_causal(&[45, 3], &rows, (3, 1, 40));
        // A row long enough to be split into query chunks (2 × CHUNK_SCORES / keys), after a prefix.
        let long = CHUNK_SCORES / 256 * 2 + 5;
        check_causal(&[50], &[(long, Some(0), long), (4, None, 4)], (2, 1, 8));
    }

    #[test]
    fn causal_attention_refuses_rows_outside_the_block() {
        let own = Tensor::zeros((6, 4 * 8), DType::F32, &Device::Cpu).unwrap();
        let row = |t0, len, prefix, queries| CausalRow { t0, len, prefix, queries };
        assert!(packed_causal_attention(&own, &[], &[row(0, 6, None, 6)], (2, 1, 8)).is_ok());
        for bad in [row(2, 5, None, 5), row(0, 6, None, 0), row(0, 3, None, 4), row(0, 6, Some(0), 6)] {
            let err = packed_causal_attention(&own, &[], &[bad], (2, 1, 8)).unwrap_err().to_string();
            assert!(err.contains("row 0"), "{err}");
        }
        assert!(packed_causal_attention(&own, &[], &[row(0, 6, None, 6)], (3, 1, 8)).is_err());
        let bf16 = own.to_dtype(DType::BF16).unwrap();
        assert!(packed_causal_attention(&bf16, &[], &[row(0, 6, None, 6)], (2, 1, 8)).is_err());
    }

    #[test]
    fn refuses_what_it_cannot_tile() {
        assert!(!applies(&Device::Cpu, DType::F32, 6));
        assert!(!applies(&Device::Cpu, DType::BF16, 32));
        let qkv = Tensor::zeros((4, 3 * 2 * 6), DType::F32, &Device::Cpu).unwrap();
        assert!(packed_self_attention(&qkv, &[4], 2).is_err());
        let qkv = Tensor::zeros((4, 3 * 16), DType::F32, &Device::Cpu).unwrap();
        assert!(packed_self_attention(&qkv, &[3], 2).is_err());
        assert!(packed_self_attention(&qkv, &[4, 0], 2).is_err());
    }
}
