//! The CPU kernel for packed bidirectional self-attention (the BERT family's), read straight from the fused
//! q/k/v projection.
//!
//! [`ops::AttnPlan`](crate::ops::AttnPlan) runs attention as candle batched GEMMs over length buckets. For
//! BERT's many narrow heads (all-MiniLM-L6-v2: 12 heads of 32) that costs more than the work: candle's batched
//! matmul is a sequential loop of tiny GEMMs, and the split, gathers and permutes around them copy q/k/v four
//! times. Here each (row, head) pair is one task on the rayon pool, computed whole in a thread-local scratch:
//! `S = (q·scale)·kᵀ` in register tiles, the softmax's exponentials in place, `O = S·v` in register tiles,
//! normalised as it is stored in a head-major buffer that one parallel pass puts back in token order. Rows
//! never see each other's keys, so a row's output does not depend on its batch.
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

/// True when [`packed_self_attention`] applies: f32 on the CPU, a head size it tiles (a multiple of 8).
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
    isa.product(Product { a: q, lda: d, b: kt, ldb: lp, c: s, ldc: lp, cols: lp, scale: None });
    isa.softmax_rows(s, lp, len, inv);
    // Output: out = softmax(s)·v over the real keys, normalised as it is stored.
    isa.product(Product { a: s, lda: lp, b: v, ldb: d, c: out, ldc: d, cols: d, scale: Some(inv) });
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
}

/// The instruction set the tiles are compiled for.
trait Isa: Copy + Send + Sync {
    fn product(self, p: Product<'_>);
    /// Unnormalised softmax of each `[.., len]` row of `s` (row stride `lp`), zero in the padding columns;
    /// `inv` gets each row's normaliser.
    fn softmax_rows(self, s: &mut [f32], lp: usize, len: usize, inv: &mut [f32]);
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
}

/// [`Product`] in register tiles: [`RB`] rows × [`CB`] columns (an 8-wide last column tile when `cols` is not
/// a multiple of 16), the remaining rows as one smaller tile.
#[inline(always)]
fn product<const FMA: bool>(mut p: Product<'_>) {
    let rows = p.a.len().div_ceil(p.lda);
    let wide = p.cols - p.cols % CB;
    let mut i = 0;
    while i < rows {
        let r = RB.min(rows - i);
        match r {
            RB => tile_rows::<FMA, RB>(&mut p, i, wide),
            5 => tile_rows::<FMA, 5>(&mut p, i, wide),
            4 => tile_rows::<FMA, 4>(&mut p, i, wide),
            3 => tile_rows::<FMA, 3>(&mut p, i, wide),
            2 => tile_rows::<FMA, 2>(&mut p, i, wide),
            _ => tile_rows::<FMA, 1>(&mut p, i, wide),
        }
        i += r;
    }
}

/// Rows `i..i+R` of the product: [`CB`]-column tiles up to `wide`, then a [`W`]-column tile if one is left.
#[inline(always)]
fn tile_rows<const FMA: bool, const R: usize>(p: &mut Product<'_>, i: usize, wide: usize) {
    let mut j = 0;
    while j < wide {
        tile::<FMA, R, CB>(p, i, j);
        j += CB;
    }
    if wide < p.cols {
        tile::<FMA, R, W>(p, i, wide);
    }
}

/// `c[i..i+R, j..j+C] = a[i..i+R, :] · b[:, j..j+C]`, the R × C accumulators held in registers over the whole
/// inner dimension.
#[inline(always)]
fn tile<const FMA: bool, const R: usize, const C: usize>(p: &mut Product<'_>, i: usize, j: usize) {
    let inner = p.b.len() / p.ldb;
    let rows: [&[f32]; R] = std::array::from_fn(|r| &p.a[(i + r) * p.lda..][..inner]);
    let mut acc = [[0f32; C]; R];
    for (k, brow) in p.b.chunks_exact(p.ldb).enumerate() {
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
        let want =
            crate::ops::reference_attention(&part(0), &part(1), &part(2), lens, lens, false, 1.0 / (d as f64).sqrt())
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
