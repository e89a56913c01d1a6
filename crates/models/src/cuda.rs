//! The fused CUDA kernels (`kernels/sieve.cu`, compiled to PTX by `build.rs`) as candle custom ops, for f32, bf16
//! and f16 tensors on a CUDA device. `ops` calls these on CUDA and its stock-candle or CPU versions elsewhere.
//!
//! Launching a kernel is `unsafe` (the driver cannot check argument types); each launch below passes exactly the
//! parameters its kernel declares, buffers sized from the checked input shapes.
#![allow(unsafe_code)]

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{CudaSlice, CudaView, LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::{CudaDType, WrapErr};
use candle_core::{CudaStorage, DType, Layout, Shape, Tensor};

use crate::error::Result;

const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/sieve.ptx"));
const MODULE: &str = "sieve_kernels";

type CResult<T> = candle_core::Result<T>;

/// Turns off cudarc's per-buffer event tracking on a fresh CUDA device. candle runs all of a device's work on
/// one stream, where the tracking (two events per allocation; a wait and a record per kernel argument) only adds
/// driver calls: on the H100 benchmark machine they made up most of a forward's time. Call it before any tensor
/// is created on `dev`.
pub fn single_stream(dev: &candle_core::Device) {
    if let candle_core::Device::Cuda(d) = dev {
        // SAFETY: every tensor Sieve creates on this device is used on the device's own (single) stream, and
        // cuBLAS is bound to that same stream by candle, so stream order alone orders every use and free.
        unsafe { d.disable_event_tracking() }
    }
}

fn suffix(dt: DType) -> CResult<&'static str> {
    Ok(match dt {
        DType::F32 => "f32",
        DType::BF16 => "bf16",
        DType::F16 => "f16",
        other => candle_core::bail!("sieve kernels: expected f32, bf16 or f16 tensors, found {other:?}"),
    })
}

fn view<'a, T>(s: &'a CudaSlice<T>, l: &Layout, what: &str) -> CResult<CudaView<'a, T>> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(s.slice(a..b)),
        None => candle_core::bail!("{what}: input must be contiguous"),
    }
}

/// Loads (once per device) the kernel `name` for `dt`.
macro_rules! func {
    ($dev:expr, $name:expr, $dt:expr) => {
        $dev.get_or_load_custom_func(&format!("{}_{}", $name, suffix($dt)?), MODULE, PTX)
    };
}

fn grid(n: usize, block: u32) -> LaunchConfig {
    LaunchConfig { grid_dim: (n.div_ceil(block as usize).max(1) as u32, 1, 1), block_dim: (block, 1, 1), shared_mem_bytes: 0 }
}

/// Threads per row for a row-wise reduction over `cols` values.
fn row_block(cols: usize) -> u32 {
    match cols {
        0..=256 => 64,
        257..=1024 => 128,
        1025..=4096 => 256,
        _ => 512,
    }
}

/// Dispatches `$body` with `$t` bound to the storage's element type.
macro_rules! with_dtype {
    ($dt:expr, $t:ident, $body:block) => {
        match $dt {
            DType::F32 => {
                type $t = f32;
                $body
            }
            DType::BF16 => {
                type $t = half::bf16;
                $body
            }
            DType::F16 => {
                type $t = half::f16;
                $body
            }
            other => candle_core::bail!("sieve kernels: expected f32, bf16 or f16 tensors, found {other:?}"),
        }
    };
}

// ---------------------------------------------------------------------------------------------------------------
// RMSNorm, with and without a residual add

struct RmsNorm {
    eps: f32,
}

impl candle_core::CustomOp2 for RmsNorm {
    fn name(&self) -> &'static str {
        "sieve-rms-norm"
    }

    fn cpu_fwd(
        &self,
        _: &candle_core::CpuStorage,
        _: &Layout,
        _: &candle_core::CpuStorage,
        _: &Layout,
    ) -> CResult<(candle_core::CpuStorage, Shape)> {
        candle_core::bail!("sieve-rms-norm is the CUDA kernel; the CPU uses ops::rms_norm")
    }

    fn cuda_fwd(&self, x: &CudaStorage, xl: &Layout, w: &CudaStorage, wl: &Layout) -> CResult<(CudaStorage, Shape)> {
        let dev = x.device().clone();
        let cols = *xl.dims().last().unwrap_or(&1);
        if wl.shape().elem_count() != cols {
            candle_core::bail!("rms-norm: weight of {} for rows of {cols}", wl.shape().elem_count());
        }
        let n = xl.shape().elem_count();
        let dt = x.dtype();
        let f = func!(dev, "rms_norm", dt)?;
        let block = row_block(cols);
        let cfg = LaunchConfig { grid_dim: ((n / cols.max(1)) as u32, 1, 1), block_dim: (block, 1, 1), shared_mem_bytes: 0 };
        let out = with_dtype!(dt, T, {
            let xs = view(x.as_cuda_slice::<T>()?, xl, "rms-norm")?;
            let ws = view(w.as_cuda_slice::<T>()?, wl, "rms-norm")?;
            // SAFETY: every element is written by the kernel below.
            let mut out = unsafe { dev.alloc::<T>(n)? };
            if n > 0 {
                let (c, e) = (cols as i32, self.eps);
                let mut b = f.builder();
                b.arg(&xs).arg(&ws).arg(&mut out).arg(&c).arg(&e);
                // SAFETY: (const T* y, const T* w, T* out, int cols, float eps), one block per row.
                unsafe { b.launch(cfg) }.w()?;
            }
            T::wrap_cuda_slice(out, dev.clone())
        });
        Ok((out, xl.shape().clone()))
    }
}

/// RMSNorm over the last dimension (Qwen3RMSNorm's rounding for half types).
pub fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
    let x = x.contiguous()?;
    Ok(x.apply_op2_no_bwd(&w.contiguous()?, &RmsNorm { eps: eps as f32 })?)
}

struct AddRmsNorm {
    eps: f32,
}

impl candle_core::CustomOp3 for AddRmsNorm {
    fn name(&self) -> &'static str {
        "sieve-add-rms-norm"
    }

    fn cpu_fwd(
        &self,
        _: &candle_core::CpuStorage,
        _: &Layout,
        _: &candle_core::CpuStorage,
        _: &Layout,
        _: &candle_core::CpuStorage,
        _: &Layout,
    ) -> CResult<(candle_core::CpuStorage, Shape)> {
        candle_core::bail!("sieve-add-rms-norm is the CUDA kernel; the CPU uses ops::add_rms_norm")
    }

    fn cuda_fwd(
        &self,
        y: &CudaStorage,
        yl: &Layout,
        r: &CudaStorage,
        rl: &Layout,
        w: &CudaStorage,
        wl: &Layout,
    ) -> CResult<(CudaStorage, Shape)> {
        let dev = y.device().clone();
        let cols = *yl.dims().last().unwrap_or(&1);
        if yl.shape() != rl.shape() || wl.shape().elem_count() != cols {
            candle_core::bail!("add-rms-norm: shapes {:?} {:?}, norm {:?}", yl.shape(), rl.shape(), wl.shape());
        }
        let n = yl.shape().elem_count();
        let dt = y.dtype();
        let f = func!(dev, "add_rms_norm", dt)?;
        let cfg = LaunchConfig {
            grid_dim: ((n / cols.max(1)) as u32, 1, 1),
            block_dim: (row_block(cols), 1, 1),
            shared_mem_bytes: 0,
        };
        let out = with_dtype!(dt, T, {
            let ys = view(y.as_cuda_slice::<T>()?, yl, "add-rms-norm")?;
            let rs = view(r.as_cuda_slice::<T>()?, rl, "add-rms-norm")?;
            let ws = view(w.as_cuda_slice::<T>()?, wl, "add-rms-norm")?;
            // SAFETY: both halves (sum, then norm) are written by the kernel below.
            let mut out = unsafe { dev.alloc::<T>(2 * n)? };
            if n > 0 {
                let (c, e) = (cols as i32, self.eps);
                let mut b = f.builder();
                b.arg(&ys).arg(&rs).arg(&ws).arg(&mut out).arg(&n).arg(&c).arg(&e);
                // SAFETY: (const T* y, const T* r, const T* w, T* out2, size_t n, int cols, float eps), a block
                // per row; out2 holds 2n elements.
                unsafe { b.launch(cfg) }.w()?;
            }
            T::wrap_cuda_slice(out, dev.clone())
        });
        let mut dims = vec![2];
        dims.extend_from_slice(yl.dims());
        Ok((out, Shape::from(dims)))
    }
}

/// `(y + residual, RMSNorm(y + residual))` in one pass.
pub fn add_rms_norm(y: &Tensor, residual: &Tensor, w: &Tensor, eps: f64) -> Result<(Tensor, Tensor)> {
    let op = AddRmsNorm { eps: eps as f32 };
    let both = y.contiguous()?.apply_op3_no_bwd(&residual.contiguous()?, &w.contiguous()?, &op)?;
    Ok((both.get(0)?, both.get(1)?))
}

// ---------------------------------------------------------------------------------------------------------------
// q/k/v split, per-head norm and RoPE

struct QkvPrep {
    hq: usize,
    hkv: usize,
    d: usize,
    eps: f32,
}

impl candle_core::CustomOp3 for QkvPrep {
    fn name(&self) -> &'static str {
        "sieve-qkv-prep"
    }

    fn cpu_fwd(
        &self,
        _: &candle_core::CpuStorage,
        _: &Layout,
        _: &candle_core::CpuStorage,
        _: &Layout,
        _: &candle_core::CpuStorage,
        _: &Layout,
    ) -> CResult<(candle_core::CpuStorage, Shape)> {
        candle_core::bail!("sieve-qkv-prep is the CUDA kernel; the CPU uses the stock ops")
    }

    fn cuda_fwd(
        &self,
        qkv: &CudaStorage,
        ql: &Layout,
        norms: &CudaStorage,
        nl: &Layout,
        cs: &CudaStorage,
        cl: &Layout,
    ) -> CResult<(CudaStorage, Shape)> {
        let dev = qkv.device().clone();
        let (tokens, width) = ql.shape().dims2()?;
        let (hq, hkv, d) = (self.hq, self.hkv, self.d);
        if width != (hq + 2 * hkv) * d || nl.shape().dims() != [2, d] || cl.shape().dims() != [tokens, d] {
            candle_core::bail!(
                "qkv-prep: expected qkv [{tokens}, {}], norms [2, {d}], cos|sin [{tokens}, {d}]; found {:?} {:?} {:?}",
                (hq + 2 * hkv) * d,
                ql.shape(),
                nl.shape(),
                cl.shape()
            );
        }
        let n = tokens * width;
        let dt = qkv.dtype();
        let f = func!(dev, "qkv_prep", dt)?;
        let block = (d / 2).div_ceil(32) * 32;
        let cfg =
            LaunchConfig { grid_dim: (tokens as u32, (hq + 2 * hkv) as u32, 1), block_dim: (block as u32, 1, 1), shared_mem_bytes: 0 };
        let out = with_dtype!(dt, T, {
            let qs = view(qkv.as_cuda_slice::<T>()?, ql, "qkv-prep")?;
            let ns = view(norms.as_cuda_slice::<T>()?, nl, "qkv-prep")?;
            let css = view(cs.as_cuda_slice::<T>()?, cl, "qkv-prep")?;
            // SAFETY: every element is written by the kernel below (q, k and v blocks of the grid).
            let mut out = unsafe { dev.alloc::<T>(n)? };
            if n > 0 {
                let (t, a, k, dd, e) = (tokens as i32, hq as i32, hkv as i32, d as i32, self.eps);
                let mut b = f.builder();
                b.arg(&qs).arg(&ns).arg(&css).arg(&mut out).arg(&t).arg(&a).arg(&k).arg(&dd).arg(&e);
                // SAFETY: (const T* qkv, const T* norms, const T* cs, T* out, int tokens, int hq, int hkv, int d,
                // float eps); grid (tokens, hq + 2hkv), d/2 threads rounded up to a warp.
                unsafe { b.launch(cfg) }.w()?;
            }
            T::wrap_cuda_slice(out, dev.clone())
        });
        Ok((out, Shape::from(n)))
    }
}

/// Splits the fused projection `qkv` `[tokens, (hq+2hkv)·d]` into q `[tokens, hq, d]`, k and v
/// `[tokens, hkv, d]`, with q_norm/k_norm (`norms` `[2, d]`) and RoPE (`cos_sin` `[tokens, d]`) applied.
pub fn qkv_prep(
    qkv: &Tensor,
    norms: &Tensor,
    cos_sin: &Tensor,
    (hq, hkv, d): (usize, usize, usize),
    eps: f64,
) -> Result<(Tensor, Tensor, Tensor)> {
    let tokens = qkv.dim(0)?;
    let op = QkvPrep { hq, hkv, d, eps: eps as f32 };
    let all = qkv.contiguous()?.apply_op3_no_bwd(&norms.contiguous()?, &cos_sin.contiguous()?, &op)?;
    let (nq, nkv) = (tokens * hq * d, tokens * hkv * d);
    let q = all.narrow(0, 0, nq)?.reshape((tokens, hq, d))?;
    let k = all.narrow(0, nq, nkv)?.reshape((tokens, hkv, d))?;
    let v = all.narrow(0, nq + nkv, nkv)?.reshape((tokens, hkv, d))?;
    Ok((q, k, v))
}

// ---------------------------------------------------------------------------------------------------------------
// SwiGLU

struct SwiGlu {
    inter: usize,
}

impl candle_core::CustomOp1 for SwiGlu {
    fn name(&self) -> &'static str {
        "sieve-swiglu-cuda"
    }

    fn cpu_fwd(&self, _: &candle_core::CpuStorage, _: &Layout) -> CResult<(candle_core::CpuStorage, Shape)> {
        candle_core::bail!("sieve-swiglu-cuda is the CUDA kernel; the CPU uses ops::swiglu")
    }

    fn cuda_fwd(&self, gu: &CudaStorage, l: &Layout) -> CResult<(CudaStorage, Shape)> {
        let dev = gu.device().clone();
        let (rows, cols) = l.shape().dims2()?;
        if cols != 2 * self.inter {
            candle_core::bail!("swiglu: expected [tokens, {}], found [{rows}, {cols}]", 2 * self.inter);
        }
        let n = rows * self.inter;
        let dt = gu.dtype();
        let f = func!(dev, "swiglu", dt)?;
        let cfg = grid(n.min(132 * 2048 * 8), 256);
        let out = with_dtype!(dt, T, {
            let src = view(gu.as_cuda_slice::<T>()?, l, "swiglu")?;
            // SAFETY: the grid-stride loop below writes every element.
            let mut out = unsafe { dev.alloc::<T>(n)? };
            if n > 0 {
                let (r, i) = (rows, self.inter as i32);
                let mut b = f.builder();
                b.arg(&src).arg(&mut out).arg(&r).arg(&i);
                // SAFETY: (const T* gu, T* out, size_t rows, int inter).
                unsafe { b.launch(cfg) }.w()?;
            }
            T::wrap_cuda_slice(out, dev.clone())
        });
        Ok((out, Shape::from((rows, self.inter))))
    }
}

/// `silu(gate) * up` for a fused `[tokens, 2*inter]` gate/up output.
pub fn swiglu(gu: &Tensor, inter: usize) -> Result<Tensor> {
    Ok(gu.contiguous()?.apply_op1_no_bwd(&SwiGlu { inter })?)
}

// ---------------------------------------------------------------------------------------------------------------
// Masked softmax over attention scores

struct MaskedSoftmax {
    lq: usize,
    lk: usize,
    scale: f32,
    causal: bool,
}

impl candle_core::CustomOp2 for MaskedSoftmax {
    fn name(&self) -> &'static str {
        "sieve-masked-softmax-cuda"
    }

    fn cpu_fwd(
        &self,
        _: &candle_core::CpuStorage,
        _: &Layout,
        _: &candle_core::CpuStorage,
        _: &Layout,
    ) -> CResult<(candle_core::CpuStorage, Shape)> {
        candle_core::bail!("sieve-masked-softmax-cuda is the CUDA kernel; the CPU has its own")
    }

    fn cuda_fwd(&self, s: &CudaStorage, sl: &Layout, rows: &CudaStorage, rl: &Layout) -> CResult<(CudaStorage, Shape)> {
        let dev = s.device().clone();
        let (members, hkv, r, lk) = sl.shape().dims4()?;
        if lk != self.lk || r % self.lq != 0 || rl.shape().elem_count() != 2 * members {
            candle_core::bail!("masked softmax: scores {:?} and rows {:?} do not match the plan", sl.shape(), rl.shape());
        }
        let groups = hkv * r / self.lq;
        let n = sl.shape().elem_count();
        let n_rows = n / lk.max(1);
        let dt = s.dtype();
        let f = func!(dev, "masked_softmax", dt)?;
        let cfg = grid(n_rows * 32, 256);
        let meta = view(rows.as_cuda_slice::<u32>()?, rl, "masked softmax")?;
        let out = with_dtype!(dt, T, {
            let src = view(s.as_cuda_slice::<T>()?, sl, "masked softmax")?;
            // SAFETY: one warp per row writes every element of its row.
            let mut out = unsafe { dev.alloc::<T>(n)? };
            if n > 0 {
                let (g, q, k) = (groups as i32, self.lq as i32, lk as i32);
                let (sc, c) = (self.scale, self.causal as i32);
                let mut b = f.builder();
                b.arg(&src).arg(&mut out).arg(&meta).arg(&n_rows).arg(&g).arg(&q).arg(&k).arg(&sc).arg(&c);
                // SAFETY: (const T* s, T* out, const uint32_t* rows, size_t n_rows, int groups, int lq, int lk,
                // float scale, int causal).
                unsafe { b.launch(cfg) }.w()?;
            }
            T::wrap_cuda_slice(out, dev.clone())
        });
        Ok((out, sl.shape().clone()))
    }
}

/// Scaled, masked softmax of a bucket's scores `[members, hkv, rep·lq, lk]`; `rows` is `[members, 2]` u32
/// `(nq, nk)` on the device (see `ops::AttnPlan`).
pub fn masked_softmax(scores: &Tensor, rows: &Tensor, lq: usize, lk: usize, scale: f64, causal: bool) -> Result<Tensor> {
    let op = MaskedSoftmax { lq, lk, scale: scale as f32, causal };
    Ok(scores.contiguous()?.apply_op2_no_bwd(rows, &op)?)
}
