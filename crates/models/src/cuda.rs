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

/// The `cpu_fwd` of a CUDA-only op (`ops` dispatches on the device before applying one): an error naming it.
macro_rules! cuda_only {
    (1) => {
        fn cpu_fwd(&self, _: &candle_core::CpuStorage, _: &Layout) -> CResult<(candle_core::CpuStorage, Shape)> {
            candle_core::bail!("{} runs on CUDA only", self.name())
        }
    };
    (2) => {
        fn cpu_fwd(
            &self,
            _: &candle_core::CpuStorage,
            _: &Layout,
            _: &candle_core::CpuStorage,
            _: &Layout,
        ) -> CResult<(candle_core::CpuStorage, Shape)> {
            candle_core::bail!("{} runs on CUDA only", self.name())
        }
    };
    (3) => {
        fn cpu_fwd(
            &self,
            _: &candle_core::CpuStorage,
            _: &Layout,
            _: &candle_core::CpuStorage,
            _: &Layout,
            _: &candle_core::CpuStorage,
            _: &Layout,
        ) -> CResult<(candle_core::CpuStorage, Shape)> {
            candle_core::bail!("{} runs on CUDA only", self.name())
        }
    };
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

/// Prepares a fresh CUDA device for many short-lived activations; call it before any tensor is created on it.
/// - cudarc's per-buffer event tracking is turned off: candle runs all of a device's work on one stream, where
///   the tracking (two events per allocation; a wait and a record per kernel argument) only adds driver calls.
/// - The device's memory pool keeps freed memory (release threshold: unlimited) instead of handing it back to
///   the driver at every synchronisation, so the next forward's allocations are served from the pool.
pub fn tune_device(dev: &candle_core::Device) {
    use candle_core::cuda_backend::cudarc::driver::sys;
    if let candle_core::Device::Cuda(d) = dev {
        // SAFETY: every tensor Sieve creates on this device is used on the device's own (single) stream, and
        // cuBLAS is bound to that same stream by candle, so stream order alone orders every use and free.
        unsafe { d.disable_event_tracking() }
        let cu_dev = d.cuda_stream().context().cu_device();
        let mut pool: sys::CUmemoryPool = std::ptr::null_mut();
        let mut threshold: u64 = u64::MAX;
        // SAFETY: plain driver calls on a valid device handle; `threshold` outlives the call that reads it.
        let status = unsafe {
            match sys::cuDeviceGetDefaultMemPool(&mut pool, cu_dev) {
                sys::CUresult::CUDA_SUCCESS => sys::cuMemPoolSetAttribute(
                    pool,
                    sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD,
                    (&mut threshold as *mut u64).cast(),
                ),
                other => other,
            }
        };
        if status != sys::CUresult::CUDA_SUCCESS {
            tracing::debug!("could not set the CUDA memory pool's release threshold ({status:?})");
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// GEMM through cuBLASLt

/// One cuBLASLt handle (and its 32 MiB workspace) per device stream.
fn blas_lt(
    dev: &candle_core::CudaDevice,
) -> CResult<std::sync::Arc<candle_core::cuda_backend::cudarc::cublaslt::CudaBlasLT>> {
    use candle_core::cuda_backend::cudarc::cublaslt::CudaBlasLT;
    use std::sync::{Arc, Mutex, OnceLock};
    type Handles = Mutex<Vec<(usize, Arc<CudaBlasLT>)>>;
    static HANDLES: OnceLock<Handles> = OnceLock::new();
    let key = Arc::as_ptr(&dev.cuda_stream()) as usize;
    let mut hs = HANDLES.get_or_init(|| Mutex::new(Vec::new())).lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, h)) = hs.iter().find(|(k, _)| *k == key) {
        return Ok(h.clone());
    }
    let h = Arc::new(CudaBlasLT::new(dev.cuda_stream()).map_err(|e| candle_core::Error::Cuda(Box::new(e)))?);
    hs.push((key, h.clone()));
    Ok(h)
}

struct LtMatmul;

impl candle_core::CustomOp2 for LtMatmul {
    fn name(&self) -> &'static str {
        "sieve-cublaslt-matmul"
    }

    cuda_only!(2);

    fn cuda_fwd(&self, x: &CudaStorage, xl: &Layout, w: &CudaStorage, wl: &Layout) -> CResult<(CudaStorage, Shape)> {
        use candle_core::cuda_backend::cudarc::cublaslt::MatmulConfig;
        let dev = x.device().clone();
        let (m, k) = xl.shape().dims2()?;
        let (n, k2) = wl.shape().dims2()?;
        if k != k2 {
            candle_core::bail!("matmul: x [{m}, {k}] against W [{n}, {k2}]");
        }
        let lt = blas_lt(&dev)?;
        // Row-major Y[m,n] = X[m,k]·W[n,k]ᵀ is column-major Yᵀ = op(W)·Xᵀ with W's buffer read transposed.
        let cfg = MatmulConfig {
            transa: true,
            transb: false,
            transc: false,
            m: n as u64,
            n: m as u64,
            k: k as u64,
            alpha: 1.0,
            lda: k as i64,
            ldb: k as i64,
            beta: 0.0,
            ldc: n as i64,
            stride_a: None,
            stride_b: None,
            stride_c: None,
            stride_bias: None,
            batch_size: None,
        };
        let len = m * n;
        let out = match x.dtype() {
            DType::BF16 => lt_run::<half::bf16>(&lt, &dev, cfg, (x, xl), (w, wl), len)?,
            DType::F16 => lt_run::<half::f16>(&lt, &dev, cfg, (x, xl), (w, wl), len)?,
            other => candle_core::bail!("cuBLASLt matmul: bf16 or f16, found {other:?}"),
        };
        Ok((out, Shape::from((m, n))))
    }
}

/// One cuBLASLt product into a fresh `len`-element buffer (`cfg` describes `x`'s and `w`'s layouts).
fn lt_run<T>(
    lt: &candle_core::cuda_backend::cudarc::cublaslt::CudaBlasLT,
    dev: &candle_core::CudaDevice,
    cfg: candle_core::cuda_backend::cudarc::cublaslt::MatmulConfig,
    (x, xl): (&CudaStorage, &Layout),
    (w, wl): (&CudaStorage, &Layout),
    len: usize,
) -> CResult<CudaStorage>
where
    T: CudaDType + candle_core::cuda_backend::cudarc::driver::DeviceRepr,
    candle_core::cuda_backend::cudarc::cublaslt::CudaBlasLT: candle_core::cuda_backend::cudarc::cublaslt::Matmul<T>,
{
    use candle_core::cuda_backend::cudarc::cublaslt::Matmul;
    let (xs, ws) = (view(x.as_cuda_slice::<T>()?, xl, "matmul")?, view(w.as_cuda_slice::<T>()?, wl, "matmul")?);
    // SAFETY: cuBLASLt writes all `len` outputs.
    let mut out = unsafe { dev.alloc::<T>(len)? };
    if len > 0 {
        // SAFETY: `cfg` describes exactly these buffers' shapes and leading dimensions.
        unsafe { lt.matmul(cfg, &ws, &xs, &mut out, None, None) }.map_err(|e| candle_core::Error::Cuda(Box::new(e)))?;
    }
    Ok(T::wrap_cuda_slice(out, dev.clone()))
}

/// `x Wᵀ` through cuBLASLt (bf16/f16 only): `x` `[m, k]`, `w` `[n, k]` as stored in the checkpoint.
pub fn lt_matmul(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    Ok(x.contiguous()?.apply_op2_no_bwd(w, &LtMatmul)?)
}

// ---------------------------------------------------------------------------------------------------------------
// Attention operand layout

/// Whether the 16-byte copy kernels apply: head rows and every base offset a multiple of 16 bytes.
pub fn packable(d: usize, dt: DType, tensors: &[&Tensor]) -> bool {
    let sz = dt.size_in_bytes();
    (d * sz).is_multiple_of(16)
        && tensors
            .iter()
            .all(|t| t.dtype() == dt && t.is_contiguous() && (t.layout().start_offset() * sz).is_multiple_of(16))
}

struct AttnPack {
    n_a: usize,
    has_idx: bool,
    nb: usize,
    l: usize,
    hkv: usize,
    rep: usize,
    d: usize,
}

impl candle_core::CustomOp3 for AttnPack {
    fn name(&self) -> &'static str {
        "sieve-attn-pack"
    }

    cuda_only!(3);

    fn cuda_fwd(
        &self,
        a: &CudaStorage,
        al: &Layout,
        b: &CudaStorage,
        bl: &Layout,
        idx: &CudaStorage,
        il: &Layout,
    ) -> CResult<(CudaStorage, Shape)> {
        let dev = a.device().clone();
        let dt = a.dtype();
        let chunks = self.d * dt.size_in_bytes() / 16;
        let heads = self.hkv * self.rep;
        let rows_a = al.shape().elem_count() / (heads * self.d);
        let rows_b = bl.shape().elem_count() / (heads * self.d);
        if self.n_a > rows_a {
            candle_core::bail!("attn-pack: {} prefix rows of {rows_a}", self.n_a);
        }
        let _ = rows_b;
        let n = self.nb * self.l * heads * self.d;
        let f = dev.get_or_load_custom_func("attn_pack", MODULE, PTX)?;
        let ids = view(idx.as_cuda_slice::<u32>()?, il, "attn-pack")?;
        let total = self.nb * self.l * heads * chunks;
        let cfg = grid(total.min(132 * 2048 * 8), 256);
        let out = with_dtype!(dt, T, {
            let (av, bv) =
                (view(a.as_cuda_slice::<T>()?, al, "attn-pack")?, view(b.as_cuda_slice::<T>()?, bl, "attn-pack")?);
            // SAFETY: the grid-stride loop writes every 16-byte chunk of the output.
            let mut out = unsafe { dev.alloc::<T>(n)? };
            if n > 0 {
                let (na, hi) = (self.n_a as i32, self.has_idx as i32);
                let (nb, l, hkv, rep, c) =
                    (self.nb as i32, self.l as i32, self.hkv as i32, self.rep as i32, chunks as i32);
                let mut bld = f.builder();
                bld.arg(&av).arg(&bv).arg(&na).arg(&ids).arg(&hi).arg(&mut out);
                bld.arg(&nb).arg(&l).arg(&hkv).arg(&rep).arg(&c);
                // SAFETY: (const uint4* a, const uint4* b, int n_a, const uint32_t* idx, int has_idx, uint4* dst,
                // int nb, int l, int hkv, int rep, int chunks); `packable` checked the 16-byte alignment, and
                // every index in `idx` is below the two sources' row count (the plan built it).
                unsafe { bld.launch(cfg) }.w()?;
            }
            T::wrap_cuda_slice(out, dev.clone())
        });
        Ok((out, Shape::from((self.nb, self.hkv, self.rep * self.l, self.d))))
    }
}

/// Gathers rows `idx` (or all, in order) of the source `[a; b]` (`a`'s first `n_a` rows, then `b`'s), each
/// `[heads = hkv·rep, d]`, into `[nb, hkv, rep·l, d]` (the batched attention layout). `idx_or_dummy` is any
/// u32 tensor when `has_idx` is false.
#[allow(clippy::too_many_arguments)]
pub fn attn_pack(
    a: &Tensor,
    n_a: usize,
    b: &Tensor,
    idx: Option<&Tensor>,
    dummy: &Tensor,
    (nb, l, hkv, rep, d): (usize, usize, usize, usize, usize),
) -> Result<Tensor> {
    let op = AttnPack { n_a, has_idx: idx.is_some(), nb, l, hkv, rep, d };
    Ok(a.apply_op3_no_bwd(b, idx.unwrap_or(dummy), &op)?)
}

struct AttnUnpack {
    nb: usize,
    l: usize,
    hkv: usize,
    rep: usize,
    d: usize,
}

impl candle_core::CustomOp1 for AttnUnpack {
    fn name(&self) -> &'static str {
        "sieve-attn-unpack"
    }

    cuda_only!(1);

    fn cuda_fwd(&self, src: &CudaStorage, sl: &Layout) -> CResult<(CudaStorage, Shape)> {
        let dev = src.device().clone();
        let dt = src.dtype();
        let chunks = self.d * dt.size_in_bytes() / 16;
        let hq = self.hkv * self.rep;
        let n = self.nb * self.l * hq * self.d;
        if sl.shape().elem_count() != n {
            candle_core::bail!(
                "attn-unpack: {:?} is not [{}, {}, {}, {}]",
                sl.shape(),
                self.nb,
                self.hkv,
                self.rep * self.l,
                self.d
            );
        }
        let f = dev.get_or_load_custom_func("attn_unpack", MODULE, PTX)?;
        let cfg = grid((n / self.d * chunks).min(132 * 2048 * 8), 256);
        let out = with_dtype!(dt, T, {
            let sv = view(src.as_cuda_slice::<T>()?, sl, "attn-unpack")?;
            // SAFETY: the grid-stride loop writes every 16-byte chunk of the output.
            let mut out = unsafe { dev.alloc::<T>(n)? };
            if n > 0 {
                let (nb, l, hkv, rep, c) =
                    (self.nb as i32, self.l as i32, self.hkv as i32, self.rep as i32, chunks as i32);
                let mut bld = f.builder();
                bld.arg(&sv).arg(&mut out).arg(&nb).arg(&l).arg(&hkv).arg(&rep).arg(&c);
                // SAFETY: (const uint4* src, uint4* dst, int nb, int l, int hkv, int rep, int chunks), alignment
                // checked by `packable`.
                unsafe { bld.launch(cfg) }.w()?;
            }
            T::wrap_cuda_slice(out, dev.clone())
        });
        Ok((out, Shape::from((self.nb * self.l, hq, self.d))))
    }
}

/// `[nb, hkv, rep·l, d]` attention output back to packed `[nb·l, hkv·rep, d]`.
pub fn attn_unpack(o: &Tensor, (nb, l, hkv, rep, d): (usize, usize, usize, usize, usize)) -> Result<Tensor> {
    Ok(o.apply_op1_no_bwd(&AttnUnpack { nb, l, hkv, rep, d })?)
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
    LaunchConfig {
        grid_dim: (n.div_ceil(block as usize).max(1) as u32, 1, 1),
        block_dim: (block, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// Rows of at most this many values for the vector norm kernels (`V_MAX` · 8 · 128 in `kernels/sieve.cu`).
const VEC_NORM_MAX_COLS: usize = 4 * 8 * 128;

/// Whether the 16-byte-vector kernels (`add_rms_norm_v`, `rms_norm_v`, `swiglu_v`) are asked for
/// (`SIEVE_CUDA_VEC=1`; not yet measured on a GPU, so off by default) and apply: a 2-byte type, rows of a
/// multiple of 8 values up to `max_cols`, every operand's base 16-byte aligned.
fn vec_kernels(dt: DType, cols: usize, max_cols: usize, layouts: &[&Layout]) -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("SIEVE_CUDA_VEC").is_ok_and(|v| v == "1"))
        && matches!(dt, DType::BF16 | DType::F16)
        && cols.is_multiple_of(8)
        && cols <= max_cols
        && layouts.iter().all(|l| (l.start_offset() * 2).is_multiple_of(16))
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

// ---------------------------------------------------------------------------------------------------------------
// RMSNorm, with and without a residual add

struct RmsNorm {
    eps: f32,
}

impl candle_core::CustomOp2 for RmsNorm {
    fn name(&self) -> &'static str {
        "sieve-rms-norm"
    }

    cuda_only!(2);

    fn cuda_fwd(&self, x: &CudaStorage, xl: &Layout, w: &CudaStorage, wl: &Layout) -> CResult<(CudaStorage, Shape)> {
        let dev = x.device().clone();
        let cols = *xl.dims().last().unwrap_or(&1);
        if wl.shape().elem_count() != cols {
            candle_core::bail!("rms-norm: weight of {} for rows of {cols}", wl.shape().elem_count());
        }
        let n = xl.shape().elem_count();
        let dt = x.dtype();
        let vec = vec_kernels(dt, cols, VEC_NORM_MAX_COLS, &[xl, wl]);
        let f = func!(dev, if vec { "rms_norm_v" } else { "rms_norm" }, dt)?;
        let block = if vec { 128 } else { row_block(cols) };
        let cfg =
            LaunchConfig { grid_dim: ((n / cols.max(1)) as u32, 1, 1), block_dim: (block, 1, 1), shared_mem_bytes: 0 };
        let out = with_dtype!(dt, T, {
            let xs = view(x.as_cuda_slice::<T>()?, xl, "rms-norm")?;
            let ws = view(w.as_cuda_slice::<T>()?, wl, "rms-norm")?;
            // SAFETY: every element is written by the kernel below.
            let mut out = unsafe { dev.alloc::<T>(n)? };
            if n > 0 {
                let (c, e) = (cols as i32, self.eps);
                let mut b = f.builder();
                b.arg(&xs).arg(&ws).arg(&mut out).arg(&c).arg(&e);
                // SAFETY: (const T* y, const T* w, T* out, int cols, float eps), one block per row (the vector
                // kernel: 128 threads, cols a multiple of 8 up to VEC_NORM_MAX_COLS, bases 16-byte aligned).
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

    cuda_only!(3);

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
        let vec = vec_kernels(dt, cols, VEC_NORM_MAX_COLS, &[yl, rl, wl]);
        let f = func!(dev, if vec { "add_rms_norm_v" } else { "add_rms_norm" }, dt)?;
        let cfg = LaunchConfig {
            grid_dim: ((n / cols.max(1)) as u32, 1, 1),
            block_dim: (if vec { 128 } else { row_block(cols) }, 1, 1),
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
                // per row; out2 holds 2n elements (the vector kernel: 128 threads, cols a multiple of 8 up to
                // VEC_NORM_MAX_COLS, so out2 + n stays 16-byte aligned, bases 16-byte aligned).
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

    cuda_only!(3);

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
        // One warp per (token, head slot), eight per block.
        let cfg = grid(tokens * (hq + 2 * hkv) * 32, 256);
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
                // float eps); a warp per (token, head slot).
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
) -> Result<(Tensor, Tensor, Tensor, Tensor)> {
    let tokens = qkv.dim(0)?;
    let op = QkvPrep { hq, hkv, d, eps: eps as f32 };
    let all = qkv.contiguous()?.apply_op3_no_bwd(&norms.contiguous()?, &cos_sin.contiguous()?, &op)?;
    let (nq, nkv) = (tokens * hq * d, tokens * hkv * d);
    let q = all.narrow(0, 0, nq)?.reshape((tokens, hq, d))?;
    let k = all.narrow(0, nq, nkv)?.reshape((tokens, hkv, d))?;
    let v = all.narrow(0, nq + nkv, nkv)?.reshape((tokens, hkv, d))?;
    Ok((all, q, k, v))
}

// ---------------------------------------------------------------------------------------------------------------
// Fused attention

/// Head size the fused attention kernels are built for (every Qwen3 size uses 128).
pub const FLASH_HEAD_DIM: usize = 128;

/// Which fused attention kernel runs (`kernels/sieve.cu`); both take the same arguments and metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlashKernel {
    /// `flash_attn`: WMMA, 2 warps, 32 queries per block, the output accumulator in shared memory
    /// (`SIEVE_ATTN=fused`; measured slower than the batched-GEMM path on an H100).
    Wmma,
    /// `flash_attn2`: FlashAttention-2 style, `mma.sync` with register-resident accumulators, 4 warps, 64
    /// queries per block, `cp.async` K/V tiles (`SIEVE_ATTN=fa2`).
    Fa2,
}

impl FlashKernel {
    /// The kernel `SIEVE_ATTN` asks for: `fused` or `fa2`; `None` for the batched-GEMM default.
    pub fn from_env() -> Option<FlashKernel> {
        match std::env::var("SIEVE_ATTN").ok()?.as_str() {
            "fused" => Some(FlashKernel::Wmma),
            "fa2" => Some(FlashKernel::Fa2),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            FlashKernel::Wmma => "flash_attn",
            FlashKernel::Fa2 => "flash_attn2",
        }
    }

    /// Queries per block (a row's queries are split into tiles of this many).
    fn block_queries(self) -> usize {
        match self {
            FlashKernel::Wmma => 32,
            FlashKernel::Fa2 => 64,
        }
    }

    fn threads(self) -> u32 {
        match self {
            FlashKernel::Wmma => 64,
            FlashKernel::Fa2 => 128,
        }
    }
}

/// Host-side layout of one fused-attention call, uploaded once per forward and reused by every layer
/// (`kernels/sieve.cu`, `flash_attn`, documents the fields).
#[derive(Debug)]
pub struct FlashMeta {
    meta: Tensor,
    kernel: FlashKernel,
    tiles: usize,
    tiles_off: usize,
    kmap_off: usize,
    has_kmap: bool,
    n_out: usize,
    /// Packed key slots in total, and the prefix rows the key map may point to.
    n_a: usize,
}

impl FlashMeta {
    /// `rows`: `(q0, nq, k0, nk, o0)` per row; `key_map`: source row per packed key slot (prefix rows first),
    /// or `None` when the keys are the batch's own rows in packed order.
    pub fn new(
        kernel: FlashKernel,
        rows: &[[u32; 5]],
        key_map: Option<&[u32]>,
        n_a: usize,
        dev: &candle_core::Device,
    ) -> Result<FlashMeta> {
        let mut meta: Vec<u32> = rows.iter().flatten().copied().collect();
        let tiles_off = meta.len();
        let mut tiles = 0;
        for (r, row) in rows.iter().enumerate() {
            for qs in (0..row[1]).step_by(kernel.block_queries()) {
                meta.extend([r as u32, qs]);
                tiles += 1;
            }
        }
        let kmap_off = meta.len();
        if let Some(m) = key_map {
            meta.extend_from_slice(m);
        }
        let n_out = rows.iter().map(|r| r[1] as usize).sum();
        let len = meta.len();
        Ok(FlashMeta {
            meta: Tensor::from_vec(meta, len, dev)?,
            kernel,
            tiles,
            tiles_off,
            kmap_off,
            has_kmap: key_map.is_some(),
            n_out,
            n_a,
        })
    }
}

struct FlashAttn<'a> {
    m: &'a FlashMeta,
    hq: usize,
    hkv: usize,
    k_off: usize,
    v_off: usize,
}

impl candle_core::CustomOp3 for FlashAttn<'_> {
    fn name(&self) -> &'static str {
        "sieve-flash-attn"
    }

    cuda_only!(3);

    fn cuda_fwd(
        &self,
        own: &CudaStorage,
        ol: &Layout,
        pre: &CudaStorage,
        pl: &Layout,
        meta: &CudaStorage,
        ml: &Layout,
    ) -> CResult<(CudaStorage, Shape)> {
        let dev = own.device().clone();
        let dt = own.dtype();
        let d = FLASH_HEAD_DIM;
        if !matches!(dt, DType::BF16 | DType::F16) || pre.dtype() != dt {
            candle_core::bail!("flash attention: bf16 or f16, found {dt:?}");
        }
        let kv_rows_pre = pl.shape().elem_count() / (2 * self.hkv * d);
        if self.m.n_a > kv_rows_pre && self.m.n_a > 0 {
            candle_core::bail!("flash attention: {} prefix rows, the prefix holds {kv_rows_pre}", self.m.n_a);
        }
        let n = self.m.n_out * self.hq * d;
        let f = func!(dev, self.m.kernel.name(), dt)?;
        let cfg = LaunchConfig {
            grid_dim: (self.m.tiles as u32, self.hq as u32, 1),
            block_dim: (self.m.kernel.threads(), 1, 1),
            shared_mem_bytes: 0,
        };
        let ms = view(meta.as_cuda_slice::<u32>()?, ml, "flash attention")?;
        let out = with_dtype!(dt, T, {
            let (os, ps) = (
                view(own.as_cuda_slice::<T>()?, ol, "flash attention")?,
                view(pre.as_cuda_slice::<T>()?, pl, "flash attention")?,
            );
            // SAFETY: every output row belongs to exactly one row's queries, and each is written by its tile.
            let mut out = unsafe { dev.alloc::<T>(n)? };
            if n > 0 && self.m.tiles > 0 {
                let (hq, hkv) = (self.hq as i32, self.hkv as i32);
                let (ko, vo) = (self.k_off, self.v_off);
                let (na, to, kmo, hk) =
                    (self.m.n_a as i32, self.m.tiles_off as i32, self.m.kmap_off as i32, self.m.has_kmap as i32);
                let scale = 1.0f32 / (d as f32).sqrt();
                let mut b = f.builder();
                b.arg(&os).arg(&ps).arg(&ms).arg(&mut out).arg(&hq).arg(&hkv).arg(&ko).arg(&vo);
                b.arg(&na).arg(&to).arg(&kmo).arg(&hk).arg(&scale);
                // SAFETY: (const T* own, const T* pre, const uint32_t* meta, T* out, int hq, int hkv, size_t k_off,
                // size_t v_off, int n_a, int tiles_off, int kmap_off, int has_kmap, float scale); the metadata was
                // built by `FlashMeta::new` for these buffers, whose bases are 16-byte aligned (`packable`); both
                // kernels take this list, and the block size is the one the kernel was compiled for.
                unsafe { b.launch(cfg) }.w()?;
            }
            T::wrap_cuda_slice(out, dev.clone())
        });
        Ok((out, Shape::from((self.m.n_out, self.hq, d))))
    }
}

/// Fused causal attention: `own` is the batch's `qkv_prep` output (q|k|v, `tokens` rows), `pre` a prefix's
/// k|v block (`prefix_kv_block`) or `own` again when there is none. Returns `[n_out, hq, 128]`.
pub fn flash_attn(
    own: &Tensor,
    tokens: usize,
    pre: &Tensor,
    m: &FlashMeta,
    (hq, hkv): (usize, usize),
) -> Result<Tensor> {
    let d = FLASH_HEAD_DIM;
    let op = FlashAttn { m, hq, hkv, k_off: tokens * hq * d, v_off: tokens * (hq + hkv) * d };
    Ok(own.apply_op3_no_bwd(pre, &m.meta, &op)?)
}

/// The k|v part of a `qkv_prep` output (`tokens` rows): what a prefix keeps for [`flash_attn`].
pub fn prefix_kv_block(all: &Tensor, tokens: usize, (hq, hkv, d): (usize, usize, usize)) -> Result<Tensor> {
    Ok(all.narrow(0, tokens * hq * d, 2 * tokens * hkv * d)?)
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

    cuda_only!(1);

    fn cuda_fwd(&self, gu: &CudaStorage, l: &Layout) -> CResult<(CudaStorage, Shape)> {
        let dev = gu.device().clone();
        let (rows, cols) = l.shape().dims2()?;
        if cols != 2 * self.inter {
            candle_core::bail!("swiglu: expected [tokens, {}], found [{rows}, {cols}]", 2 * self.inter);
        }
        let n = rows * self.inter;
        let dt = gu.dtype();
        let vec = vec_kernels(dt, self.inter, usize::MAX, &[l]);
        let f = func!(dev, if vec { "swiglu_v" } else { "swiglu" }, dt)?;
        let items = if vec { n / 8 } else { n };
        let cfg = grid(items.min(132 * 2048 * 8), 256);
        let out = with_dtype!(dt, T, {
            let src = view(gu.as_cuda_slice::<T>()?, l, "swiglu")?;
            // SAFETY: the grid-stride loop below writes every element.
            let mut out = unsafe { dev.alloc::<T>(n)? };
            if n > 0 {
                let (r, i) = (rows, self.inter as i32);
                let mut b = f.builder();
                b.arg(&src).arg(&mut out).arg(&r).arg(&i);
                // SAFETY: (const T* gu, T* out, size_t rows, int inter), a grid-stride loop (the vector kernel:
                // inter a multiple of 8, the base 16-byte aligned).
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

    cuda_only!(2);

    fn cuda_fwd(&self, s: &CudaStorage, sl: &Layout, rows: &CudaStorage, rl: &Layout) -> CResult<(CudaStorage, Shape)> {
        let dev = s.device().clone();
        let (members, hkv, r, lk) = sl.shape().dims4()?;
        if lk != self.lk || r % self.lq != 0 || rl.shape().elem_count() != 2 * members {
            candle_core::bail!(
                "masked softmax: scores {:?} and rows {:?} do not match the plan",
                sl.shape(),
                rl.shape()
            );
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
/// `(nq, nk)` on the device (see `attention::AttnPlan`).
pub fn masked_softmax(
    scores: &Tensor,
    rows: &Tensor,
    lq: usize,
    lk: usize,
    scale: f64,
    causal: bool,
) -> Result<Tensor> {
    let op = MaskedSoftmax { lq, lk, scale: scale as f32, causal };
    Ok(scores.contiguous()?.apply_op2_no_bwd(rows, &op)?)
}
