// Sieve's fused CUDA kernels for the Qwen3 forward (built to PTX by build.rs under the `cuda` feature).
//
// Each kernel replaces a chain of stock candle ops that would each make a pass over device memory. The
// arithmetic follows Hugging Face transformers' Qwen3 op by op, including where a bf16/f16 model rounds an
// intermediate to the storage type (`rnd<T>`), so that Sieve's half-precision scores drift from the f32
// reference no more than transformers' own do. Accumulation is always in f32.

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <mma.h>
#include <stdint.h>

__device__ __forceinline__ float to_f(float x) { return x; }
__device__ __forceinline__ float to_f(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float to_f(__half x) { return __half2float(x); }

template <typename T> __device__ __forceinline__ T from_f(float x);
template <> __device__ __forceinline__ float from_f<float>(float x) { return x; }
template <> __device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float x) { return __float2bfloat16(x); }
template <> __device__ __forceinline__ __half from_f<__half>(float x) { return __float2half(x); }

// The value a T-typed PyTorch op would have stored.
template <typename T> __device__ __forceinline__ float rnd(float x) { return to_f(from_f<T>(x)); }

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the total.
__device__ float block_sum(float v) {
  __shared__ float part[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  v = warp_sum(v);
  __syncthreads();
  if (lane == 0) part[warp] = v;
  __syncthreads();
  v = lane < (int)(blockDim.x >> 5) ? part[lane] : 0.f;
  return warp_sum(v);
}

// sum = y + r (a T-typed add); out = w * T(sum * rsqrt(mean(sum²) + eps)) — Qwen3RMSNorm of the residual sum.
// With `r`, the kernel's `out2` holds the sum then the norm (2n values). Without `r` (HAS_R false): out = RMSNorm(y) and `sum_out` is not written. One block per row.
template <typename T, bool HAS_R>
__device__ void add_rms_norm(const T *y, const T *r, const T *w, T *sum_out, T *out, int cols, float eps) {
  const size_t base = (size_t)blockIdx.x * cols;
  float ss = 0.f;
  for (int c = threadIdx.x; c < cols; c += blockDim.x) {
    float s = to_f(y[base + c]);
    if (HAS_R) s = rnd<T>(s + to_f(r[base + c]));
    ss += s * s;
  }
  const float inv = rsqrtf(block_sum(ss) / cols + eps);
  for (int c = threadIdx.x; c < cols; c += blockDim.x) {
    float s = to_f(y[base + c]);
    if (HAS_R) {
      s = rnd<T>(s + to_f(r[base + c]));
      sum_out[base + c] = from_f<T>(s);
    }
    out[base + c] = from_f<T>(to_f(w[c]) * rnd<T>(s * inv));
  }
}

// 16-byte-vector forms of add_rms_norm and swiglu for 2-byte types (`SIEVE_CUDA_VEC=1`; the caller checks that
// the row length is a multiple of 8 and every base is 16-byte aligned): the same arithmetic per element, each
// thread moving 8 values per load and store, and add_rms_norm keeping its row slice in registers between the sum
// of squares and the normalisation instead of reading it twice. add_rms_norm_v: blockDim 128, rows of at most
// V_MAX · 8 · 128 = 4096 values (Qwen3's hidden sizes: 1024, 2560, 4096).
#define V_MAX 4

template <typename T, bool HAS_R>
__device__ void add_rms_norm_v(const T *y, const T *r, const T *w, T *sum_out, T *out, int cols, float eps) {
  const int nv = cols / 8;
  const size_t base = (size_t)blockIdx.x * cols;
  float s[V_MAX][8];
  float ss = 0.f;
#pragma unroll
  for (int u = 0; u < V_MAX; u++) {
    const int c = threadIdx.x + u * blockDim.x;
    if (c < nv) {
      const uint4 yv = reinterpret_cast<const uint4 *>(y + base)[c];
      const uint4 rv = HAS_R ? reinterpret_cast<const uint4 *>(r + base)[c] : make_uint4(0, 0, 0, 0);
      const T *ye = reinterpret_cast<const T *>(&yv);
      const T *re = reinterpret_cast<const T *>(&rv);
#pragma unroll
      for (int e = 0; e < 8; e++) {
        float x = to_f(ye[e]);
        if (HAS_R) x = rnd<T>(x + to_f(re[e]));
        s[u][e] = x;
        ss += x * x;
      }
    }
  }
  const float inv = rsqrtf(block_sum(ss) / cols + eps);
#pragma unroll
  for (int u = 0; u < V_MAX; u++) {
    const int c = threadIdx.x + u * blockDim.x;
    if (c < nv) {
      const uint4 wv = reinterpret_cast<const uint4 *>(w)[c];
      const T *we = reinterpret_cast<const T *>(&wv);
      uint4 ov, sv;
      T *oe = reinterpret_cast<T *>(&ov);
      T *se = reinterpret_cast<T *>(&sv);
#pragma unroll
      for (int e = 0; e < 8; e++) {
        se[e] = from_f<T>(s[u][e]);
        oe[e] = from_f<T>(to_f(we[e]) * rnd<T>(s[u][e] * inv));
      }
      if (HAS_R) reinterpret_cast<uint4 *>(sum_out + base)[c] = sv;
      reinterpret_cast<uint4 *>(out + base)[c] = ov;
    }
  }
}

template <typename T>
__device__ void swiglu_v(const T *gu, T *out, size_t rows, int inter) {
  const int iv = inter / 8;
  const size_t n = rows * iv;
  for (size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x; idx < n; idx += (size_t)gridDim.x * blockDim.x) {
    const size_t r = idx / iv;
    const int c = (int)(idx - r * iv);
    const uint4 gv = reinterpret_cast<const uint4 *>(gu + r * 2 * inter)[c];
    const uint4 uv = reinterpret_cast<const uint4 *>(gu + r * 2 * inter + inter)[c];
    const T *ge = reinterpret_cast<const T *>(&gv);
    const T *ue = reinterpret_cast<const T *>(&uv);
    uint4 ov;
    T *oe = reinterpret_cast<T *>(&ov);
#pragma unroll
    for (int e = 0; e < 8; e++) {
      const float g = to_f(ge[e]), u = to_f(ue[e]);
      oe[e] = from_f<T>(rnd<T>(g / (1.f + __expf(-g))) * u);
    }
    reinterpret_cast<uint4 *>(out + r * inter)[c] = ov;
  }
}

// The fused q/k/v projection's output `qkv` [tokens, (hq + 2·hkv)·d] split into q [tokens, hq, d],
// k [tokens, hkv, d] and v [tokens, hkv, d], written back to back in `out`; q and k get their per-head
// RMSNorm (norms [2, d]: q_norm then k_norm) and rotate-half RoPE (cs [tokens, d]: cos | sin, d/2 each):
// x·cos + rotate_half(x)·sin as transformers computes it. One warp per (token, head slot); lane l owns the
// pairs (i, i + d/2) for i = l, l + 32, ...
template <typename T>
__device__ void qkv_prep(const T *qkv, const T *norms, const T *cs, T *out, int tokens, int hq, int hkv, int d,
                         float eps) {
  const int heads = hq + 2 * hkv;
  const size_t item = (size_t)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
  if (item >= (size_t)tokens * heads) return;  // whole warps leave together
  const int lane = threadIdx.x & 31, half = d / 2;
  const int t = (int)(item / heads), h = (int)(item % heads);
  const T *src = qkv + item * d;
  if (h >= hq + hkv) {  // v: a copy
    T *dst = out + (size_t)tokens * (hq + hkv) * d + ((size_t)t * hkv + (h - hq - hkv)) * d;
    for (int i = lane; i < d; i += 32) dst[i] = src[i];
    return;
  }
  const bool is_q = h < hq;
  T *dst = is_q ? out + ((size_t)t * hq + h) * d : out + (size_t)tokens * hq * d + ((size_t)t * hkv + (h - hq)) * d;
  const T *w = norms + (is_q ? 0 : d);
  float ss = 0.f;
  for (int i = lane; i < d; i += 32) {
    const float x = to_f(src[i]);
    ss += x * x;
  }
  const float inv = rsqrtf(warp_sum(ss) / d + eps);
  for (int i = lane; i < half; i += 32) {
    const float a = to_f(src[i]), b = to_f(src[i + half]);
    const float na = rnd<T>(to_f(w[i]) * rnd<T>(a * inv));
    const float nb = rnd<T>(to_f(w[i + half]) * rnd<T>(b * inv));
    const float c = to_f(cs[(size_t)t * d + i]), s = to_f(cs[(size_t)t * d + half + i]);
    dst[i] = from_f<T>(rnd<T>(na * c) + rnd<T>(-nb * s));
    dst[i + half] = from_f<T>(rnd<T>(nb * c) + rnd<T>(na * s));
  }
}

// silu(gate) · up over a fused [rows, 2·inter] gate/up output → [rows, inter] (two T-typed ops, as in HF).
template <typename T>
__device__ void swiglu(const T *gu, T *out, size_t rows, int inter) {
  const size_t n = rows * inter;
  for (size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x; idx < n; idx += (size_t)gridDim.x * blockDim.x) {
    const size_t r = idx / inter;
    const int c = (int)(idx - r * inter);
    const float g = to_f(gu[r * 2 * inter + c]), u = to_f(gu[r * 2 * inter + inter + c]);
    out[idx] = from_f<T>(rnd<T>(g / (1.f + __expf(-g))) * u);
  }
}

// Softmax of each score row over the keys its query may see, scaled by `scale`; zero elsewhere and for padding
// queries. scores: [members, groups, lq, lk] (groups = kv heads × queries per kv head), right-aligned: member m
// has nq = rows[2m] real queries (the last nq of lq slots) and nk = rows[2m + 1] real keys (the last nk of lk);
// causally, query j (0-based among the real ones) sees the first nk - nq + j + 1 real keys. One warp per row.
template <typename T>
__device__ void masked_softmax(const T *s, T *out, const uint32_t *rows, size_t n_rows, int groups, int lq, int lk,
                               float scale, int causal) {
  const size_t row = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
  const int lane = threadIdx.x & 31;
  if (row >= n_rows) return;
  const size_t m = row / ((size_t)groups * lq);
  const int i = (int)(row % lq);
  const int nq = (int)rows[2 * m], nk = (int)rows[2 * m + 1];
  const T *x = s + row * lk;
  T *y = out + row * lk;
  const int qpad = lq - nq;
  if (i < qpad) {
    for (int j = lane; j < lk; j += 32) y[j] = from_f<T>(0.f);
    return;
  }
  const int lo = lk - nk;
  const int hi = causal ? lo + (i - qpad) + (nk - nq) + 1 : lk;
  float mx = -INFINITY;
  for (int j = lo + lane; j < hi; j += 32) mx = fmaxf(mx, to_f(x[j]));
  mx = warp_max(mx);
  float sum = 0.f;
  for (int j = lo + lane; j < hi; j += 32) sum += __expf((to_f(x[j]) - mx) * scale);
  const float inv = 1.f / warp_sum(sum);
  for (int j = lane; j < lk; j += 32) {
    const float p = (j >= lo && j < hi) ? __expf((to_f(x[j]) - mx) * scale) * inv : 0.f;
    y[j] = from_f<T>(p);
  }
}

// Attention operand layout. `pack` gathers packed rows into a bucket's batched layout and `unpack` returns
// the attention output to packed order; both copy whole head rows of d values, 16 bytes per thread (the caller
// checks that d·sizeof(T) and every base offset are multiples of 16).
//
// pack: dst [nb, hkv, rep, l, d] row ((bb·hkv + g)·rep + r)·l + i  <-  source token j = idx[bb·l + i] (or bb·l + i
// without idx), head g·rep + r, of a [tokens, hkv·rep, d] source that is two tensors back to back: rows j < n_a
// are a's, the rest b's (a shared prefix's keys and the batch's own).
extern "C" __global__ void attn_pack(const uint4 *a, const uint4 *b, int n_a, const uint32_t *idx, int has_idx, uint4 *dst,
                          int nb, int l, int hkv, int rep, int chunks) {
  const size_t n = (size_t)nb * hkv * rep * l * chunks;
  for (size_t t = (size_t)blockIdx.x * blockDim.x + threadIdx.x; t < n; t += (size_t)gridDim.x * blockDim.x) {
    const int c = (int)(t % chunks);
    size_t row = t / chunks;
    const int i = (int)(row % l);
    size_t q = row / l;
    const int r = (int)(q % rep);
    q /= rep;
    const int g = (int)(q % hkv);
    const size_t bb = q / hkv;
    const size_t slot = bb * l + i;
    const size_t j = has_idx ? idx[slot] : slot;
    const size_t head_row = (size_t)g * rep + r;
    const size_t heads = (size_t)hkv * rep;
    const uint4 *src = j < (size_t)n_a ? a + (j * heads + head_row) * chunks : b + ((j - n_a) * heads + head_row) * chunks;
    dst[t] = src[c];
  }
}

// unpack: dst [nb·l, hkv·rep, d] row s·hq + h  <-  src [nb, hkv, rep, l, d] row ((s/l·hkv + h/rep)·rep + h%rep)·l + s%l.
extern "C" __global__ void attn_unpack(const uint4 *src, uint4 *dst, int nb, int l, int hkv, int rep, int chunks) {
  const int hq = hkv * rep;
  const size_t n = (size_t)nb * l * hq * chunks;
  for (size_t t = (size_t)blockIdx.x * blockDim.x + threadIdx.x; t < n; t += (size_t)gridDim.x * blockDim.x) {
    const int c = (int)(t % chunks);
    const size_t row = t / chunks;
    const int h = (int)(row % hq);
    const size_t s = row / hq;
    const size_t bb = s / l;
    const int i = (int)(s % l);
    const size_t src_row = ((bb * hkv + h / rep) * rep + h % rep) * l + i;
    dst[t] = src[src_row * chunks + c];
  }
}

// Fused causal attention over packed variable-length rows (flash-attention style: scores never leave shared
// memory; online softmax), on the tensor cores through WMMA, for bf16/f16 and head_dim FA_D.
//
// own:  the batch's fused q|k|v buffer: q [Tq, hq, D] at element 0, k [Tk, hkv, D] at k_off, v at v_off.
// pre:  a shared prefix's k|v buffer: k [n_a, hkv, D] at 0, v at n_a·hkv·D (unused when n_a = 0).
// meta: u32 — rows (5 per row: q0, nq, k0, nk, o0) at 0; tiles (2 per block: row, first query) at tiles_off;
//       the key map (source row per packed key slot; rows < n_a are the prefix's) at kmap_off if has_kmap.
// Row r's queries are own rows q0..q0+nq (its last nq positions) and write out rows o0..o0+nq; its keys are
// packed slots k0..k0+nk; causally query i sees keys 0..nk-nq+i. Grid (tiles, hq), FA_THREADS threads:
// each block computes FA_BQ queries of one head, in key tiles of FA_BK.
#define FA_D 128
#define FA_BQ 32
#define FA_BK 32
#define FA_THREADS 64

template <typename T>
__device__ __forceinline__ const T *fa_key_row(const T *own, const T *pre, int n_a, size_t own_off, size_t pre_off,
                                               uint32_t j, int hkv, int g) {
  return j < (uint32_t)n_a ? pre + pre_off + ((size_t)j * hkv + g) * FA_D
                           : own + own_off + ((size_t)(j - n_a) * hkv + g) * FA_D;
}

template <typename T>
__device__ void flash_attn(const T *own, const T *pre, const uint32_t *meta, T *out, int hq, int hkv, size_t k_off,
                           size_t v_off, int n_a, int tiles_off, int kmap_off, int has_kmap, float scale) {
  using namespace nvcuda;
  __shared__ __align__(128) T sQ[FA_BQ][FA_D];
  __shared__ __align__(128) T sK[FA_BK][FA_D];
  __shared__ __align__(128) T sV[FA_BK][FA_D];
  __shared__ __align__(128) float sS[FA_BQ][FA_BK];
  __shared__ __align__(128) T sP[FA_BQ][FA_BK];
  __shared__ __align__(128) float sO[FA_BQ][FA_D];
  __shared__ float sM[FA_BQ], sL[FA_BQ], sA[FA_BQ];

  const int tid = threadIdx.x, warp = tid >> 5;
  const int h = blockIdx.y, g = h / (hq / hkv);
  const uint32_t row = meta[tiles_off + 2 * blockIdx.x], qs = meta[tiles_off + 2 * blockIdx.x + 1];
  const uint32_t q0 = meta[5 * row], nq = meta[5 * row + 1], k0 = meta[5 * row + 2], nk = meta[5 * row + 3],
                 o0 = meta[5 * row + 4];
  const int nqt = min(FA_BQ, (int)(nq - qs));
  const int vec = FA_D * (int)sizeof(T) / 16;  // 16-byte chunks per head row
  const size_t pre_v = (size_t)n_a * hkv * FA_D;

  for (int i = tid; i < FA_BQ * vec; i += FA_THREADS) {
    const int r = i / vec, c = i % vec;
    uint4 x = make_uint4(0, 0, 0, 0);
    if (r < nqt) x = reinterpret_cast<const uint4 *>(own + ((size_t)(q0 + qs + r) * hq + h) * FA_D)[c];
    reinterpret_cast<uint4 *>(&sQ[r][0])[c] = x;
  }
  for (int i = tid; i < FA_BQ * FA_D; i += FA_THREADS) (&sO[0][0])[i] = 0.f;
  if (tid < FA_BQ) {
    sM[tid] = -INFINITY;
    sL[tid] = 0.f;
  }
  // Keys visible to this tile's last query.
  const int kend = (int)(nk - nq + qs) + nqt;
  for (int kt = 0; kt < kend; kt += FA_BK) {
    const int nkt = min(FA_BK, kend - kt);
    __syncthreads();  // the previous tile's P·V is done with sK/sV/sP
    for (int i = tid; i < FA_BK * vec; i += FA_THREADS) {
      const int r = i / vec, c = i % vec;
      uint4 kx = make_uint4(0, 0, 0, 0), vx = make_uint4(0, 0, 0, 0);
      if (r < nkt) {
        const uint32_t slot = k0 + kt + r;
        const uint32_t j = has_kmap ? meta[kmap_off + slot] : slot;
        kx = reinterpret_cast<const uint4 *>(fa_key_row(own, pre, n_a, k_off, 0, j, hkv, g))[c];
        vx = reinterpret_cast<const uint4 *>(fa_key_row(own, pre, n_a, v_off, pre_v, j, hkv, g))[c];
      }
      reinterpret_cast<uint4 *>(&sK[r][0])[c] = kx;
      reinterpret_cast<uint4 *>(&sV[r][0])[c] = vx;
    }
    __syncthreads();
    // S = Q·Kᵀ: warp w owns query rows 16w..16w+15.
    for (int nf = 0; nf < FA_BK / 16; nf++) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
      wmma::fill_fragment(acc, 0.f);
      for (int kk = 0; kk < FA_D / 16; kk++) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> a;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> b;
        wmma::load_matrix_sync(a, &sQ[16 * warp][16 * kk], FA_D);
        wmma::load_matrix_sync(b, &sK[16 * nf][16 * kk], FA_D);
        wmma::mma_sync(acc, a, b, acc);
      }
      wmma::store_matrix_sync(&sS[16 * warp][16 * nf], acc, FA_BK, wmma::mem_row_major);
    }
    __syncthreads();
    // Online softmax: two threads per query row, FA_BK/2 keys each.
    {
      const int r = tid >> 1, half = tid & 1;
      const int qi = (int)qs + r;
      const int last_key = (int)(nk - nq) + qi;  // causal limit (packed key index within the row)
      float s[FA_BK / 2];
      float mx = -INFINITY;
      for (int c = 0; c < FA_BK / 2; c++) {
        const int col = half * (FA_BK / 2) + c, key = kt + col;
        const bool ok = r < nqt && col < nkt && key <= last_key;
        s[c] = ok ? sS[r][col] * scale : -INFINITY;
        mx = fmaxf(mx, s[c]);
      }
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      const float m_old = sM[r];
      const float m_new = fmaxf(m_old, mx);
      float sum = 0.f;
      for (int c = 0; c < FA_BK / 2; c++) {
        const float p = s[c] == -INFINITY ? 0.f : __expf(s[c] - m_new);
        const T pt = from_f<T>(p);
        sP[r][half * (FA_BK / 2) + c] = pt;
        sum += to_f(pt);
      }
      sum += __shfl_xor_sync(0xffffffffu, sum, 1);
      const float alpha = m_old == -INFINITY ? (m_new == -INFINITY ? 1.f : 0.f) : __expf(m_old - m_new);
      __syncwarp();
      if (half == 0) {
        sM[r] = m_new;
        sL[r] = sL[r] * alpha + sum;
        sA[r] = alpha;
      }
    }
    __syncthreads();
    for (int i = tid; i < FA_BQ * FA_D; i += FA_THREADS) (&sO[0][0])[i] *= sA[i / FA_D];
    __syncthreads();
    // O += P·V: warp w owns rows 16w..16w+15 of the accumulator.
    for (int nf = 0; nf < FA_D / 16; nf++) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
      wmma::load_matrix_sync(acc, &sO[16 * warp][16 * nf], FA_D, wmma::mem_row_major);
      for (int kk = 0; kk < FA_BK / 16; kk++) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> a;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> b;
        wmma::load_matrix_sync(a, &sP[16 * warp][16 * kk], FA_BK);
        wmma::load_matrix_sync(b, &sV[16 * kk][16 * nf], FA_D);
        wmma::mma_sync(acc, a, b, acc);
      }
      wmma::store_matrix_sync(&sO[16 * warp][16 * nf], acc, FA_D, wmma::mem_row_major);
    }
  }
  __syncthreads();
  for (int i = tid; i < nqt * FA_D; i += FA_THREADS) {
    const int r = i / FA_D, c = i % FA_D;
    out[((size_t)(o0 + qs + r) * hq + h) * FA_D + c] = from_f<T>(sO[r][c] / sL[r]);
  }
}

// The same attention as `flash_attn` (same arguments, same `meta`), written the FlashAttention-2 way: the
// scores, probabilities and output accumulator stay in registers as `mma.sync` fragments, so nothing but the
// operands goes through shared memory. 4 warps per block, each owning 16 of the tile's F2_BQ = 64 queries;
// keys in tiles of F2_BK = 64. Q is loaded once into A fragments; K and V tiles are fetched with `cp.async`
// into XOR-swizzled shared memory (16-byte chunk c of row r lives at chunk c ^ (r & 7): the 8 rows an
// `ldmatrix` reads hit 8 different bank groups), and the next tile's K (V) is in flight while this tile's
// P·V (next S) runs. Online softmax in the log2 domain; P is rounded to T for the P·V product (as
// PyTorch's flash SDPA does), while the row sums use the unrounded f32 probabilities.
#define F2_BQ 64
#define F2_BK 64
#define F2_THREADS 128
#define F2_CH (FA_D / 8)  // 16-byte chunks per head row of a 2-byte type

// Element offset of chunk c (8 elements) of row r in a swizzled [rows][FA_D] tile.
__device__ __forceinline__ int f2_sw(int r, int c) { return r * FA_D + ((c ^ (r & 7)) << 3); }

__device__ __forceinline__ uint32_t f2_smem(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }

// 16 bytes global -> shared, asynchronously; zero-filled when !ok (src is then not read, but stays valid).
__device__ __forceinline__ void f2_cp16(uint32_t dst, const void *src, bool ok) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(ok ? 16 : 0));
}
__device__ __forceinline__ void f2_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N> __device__ __forceinline__ void f2_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

__device__ __forceinline__ void f2_ldsm(uint32_t a, uint32_t &r0, uint32_t &r1, uint32_t &r2, uint32_t &r3) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
               : "r"(a));
}
__device__ __forceinline__ void f2_ldsm_t(uint32_t a, uint32_t &r0, uint32_t &r1, uint32_t &r2, uint32_t &r3) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
               : "r"(a));
}

// c (16x8 f32) += a (16x16, row) · b (16x8, col).
template <typename T> __device__ __forceinline__ void f2_mma(float *c, const uint32_t *a, uint32_t b0, uint32_t b1);
#define F2_MMA(T, PT)                                                                                              \
  template <> __device__ __forceinline__ void f2_mma<T>(float *c, const uint32_t *a, uint32_t b0, uint32_t b1) {   \
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32." PT "." PT ".f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, " \
                 "{%0,%1,%2,%3};\n"                                                                               \
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])                                                  \
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));                                 \
  }
F2_MMA(__nv_bfloat16, "bf16")
F2_MMA(__half, "f16")

// Two floats as one 32-bit register of two T (the lower column in the low half).
template <typename T> __device__ __forceinline__ uint32_t f2_pack(float lo, float hi);
template <> __device__ __forceinline__ uint32_t f2_pack<__nv_bfloat16>(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<uint32_t *>(&v);
}
template <> __device__ __forceinline__ uint32_t f2_pack<__half>(float lo, float hi) {
  __half2 v = __floats2half2_rn(lo, hi);
  return *reinterpret_cast<uint32_t *>(&v);
}

// Rows [0, n) of a key (off, pre_off: K or V) tile starting at packed key slot k0 + kt, into dst; rows past n
// are zero-filled.
template <typename T>
__device__ __forceinline__ void f2_load_kv(T *dst, const T *own, const T *pre, const uint32_t *meta, int n_a,
                                           size_t off, size_t pre_off, uint32_t first, int n, int kmap_off,
                                           int has_kmap, int hkv, int g) {
  for (int i = threadIdx.x; i < F2_BK * F2_CH; i += F2_THREADS) {
    const int r = i / F2_CH, c = i % F2_CH;
    const bool ok = r < n;
    const uint32_t slot = first + (ok ? r : 0);
    const uint32_t j = has_kmap ? meta[kmap_off + slot] : slot;
    f2_cp16(f2_smem(dst + f2_sw(r, c)), fa_key_row(own, pre, n_a, off, pre_off, j, hkv, g) + c * 8, ok);
  }
}

template <typename T>
__device__ void flash_attn2(const T *own, const T *pre, const uint32_t *meta, T *out, int hq, int hkv, size_t k_off,
                            size_t v_off, int n_a, int tiles_off, int kmap_off, int has_kmap, float scale) {
  __shared__ __align__(128) T sQ[F2_BQ * FA_D];  // 16 KiB each: 48 KiB, the static limit
  __shared__ __align__(128) T sK[F2_BK * FA_D];
  __shared__ __align__(128) T sV[F2_BK * FA_D];

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int h = blockIdx.y, g = h / (hq / hkv);
  const uint32_t row = meta[tiles_off + 2 * blockIdx.x], qs = meta[tiles_off + 2 * blockIdx.x + 1];
  const uint32_t q0 = meta[5 * row], nq = meta[5 * row + 1], k0 = meta[5 * row + 2], nk = meta[5 * row + 3],
                 o0 = meta[5 * row + 4];
  const int nqt = min(F2_BQ, (int)(nq - qs));
  const size_t pre_v = (size_t)n_a * hkv * FA_D;
  // Keys visible to the tile's last query; every query sees key 0, so no row's maximum stays -inf.
  const int kend = (int)(nk - nq + qs) + nqt;
  const int ntiles = (kend + F2_BK - 1) / F2_BK;

  for (int i = tid; i < F2_BQ * F2_CH; i += F2_THREADS) {
    const int r = i / F2_CH, c = i % F2_CH;
    const bool ok = r < nqt;
    f2_cp16(f2_smem(sQ + f2_sw(r, c)), own + ((size_t)(q0 + qs + (ok ? r : 0)) * hq + h) * FA_D + c * 8, ok);
  }
  f2_commit();
  f2_load_kv(sK, own, pre, meta, n_a, k_off, 0, k0, min(F2_BK, kend), kmap_off, has_kmap, hkv, g);
  f2_commit();
  f2_load_kv(sV, own, pre, meta, n_a, v_off, pre_v, k0, min(F2_BK, kend), kmap_off, has_kmap, hkv, g);
  f2_commit();

  // This thread's two query rows of the warp's 16: a = 16·warp + lane/4 and b = a + 8 (the accumulator rows of
  // an m16n8 fragment); the 4 threads of a quad share them. Padding rows (past nqt) borrow the last real row's
  // causal limit so that their numbers stay finite; they are never stored.
  const int ra = 16 * warp + (lane >> 2), rb = ra + 8;
  const int lim_a = (int)(nk - nq + qs) + min(ra, nqt - 1), lim_b = (int)(nk - nq + qs) + min(rb, nqt - 1);
  const int t2 = 2 * (lane & 3);

  f2_wait<2>();  // Q has landed
  __syncthreads();
  uint32_t qf[FA_D / 16][4];
#pragma unroll
  for (int kk = 0; kk < FA_D / 16; kk++) {
    const int r = 16 * warp + (lane & 7) + (((lane >> 3) & 1) << 3);
    f2_ldsm(f2_smem(sQ + f2_sw(r, 2 * kk + (lane >> 4))), qf[kk][0], qf[kk][1], qf[kk][2], qf[kk][3]);
  }

  float o[FA_D / 8][4];
#pragma unroll
  for (int n = 0; n < FA_D / 8; n++) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.f;
  float m_a = -INFINITY, m_b = -INFINITY, l_a = 0.f, l_b = 0.f;
  const float sl2 = scale * 1.4426950408889634f;

  for (int t = 0; t < ntiles; t++) {
    const int kt = t * F2_BK, nkt = min(F2_BK, kend - kt);
    f2_wait<1>();  // this tile's K has landed (its V may still be in flight)
    __syncthreads();
    float s[F2_BK / 8][4];
#pragma unroll
    for (int j = 0; j < F2_BK / 8; j++) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.f;
#pragma unroll
    for (int kk = 0; kk < FA_D / 16; kk++) {
#pragma unroll
      for (int jj = 0; jj < F2_BK / 16; jj++) {
        // Matrices: keys 16jj+0..7 | d 16kk+0..7, +8..15; keys 16jj+8..15 | the same: b0, b1 of n-tiles 2jj, 2jj+1.
        uint32_t b0, b1, b2, b3;
        const int key = 16 * jj + (lane & 7) + ((lane >> 4) << 3);
        f2_ldsm(f2_smem(sK + f2_sw(key, 2 * kk + ((lane >> 3) & 1))), b0, b1, b2, b3);
        f2_mma<T>(s[2 * jj], qf[kk], b0, b1);
        f2_mma<T>(s[2 * jj + 1], qf[kk], b2, b3);
      }
    }
    __syncthreads();  // every warp is done with sK: fetch the next tile's keys behind this tile's softmax and P·V
    if (t + 1 < ntiles)
      f2_load_kv(sK, own, pre, meta, n_a, k_off, 0, k0 + kt + F2_BK, min(F2_BK, kend - kt - F2_BK), kmap_off,
                 has_kmap, hkv, g);
    f2_commit();

    float mx_a = -INFINITY, mx_b = -INFINITY;
#pragma unroll
    for (int j = 0; j < F2_BK / 8; j++) {
#pragma unroll
      for (int e = 0; e < 2; e++) {
        const int col = 8 * j + t2 + e, key = kt + col;
        s[j][e] = (col < nkt && key <= lim_a) ? s[j][e] * sl2 : -INFINITY;
        s[j][2 + e] = (col < nkt && key <= lim_b) ? s[j][2 + e] * sl2 : -INFINITY;
        mx_a = fmaxf(mx_a, s[j][e]);
        mx_b = fmaxf(mx_b, s[j][2 + e]);
      }
    }
    mx_a = fmaxf(mx_a, __shfl_xor_sync(0xffffffffu, mx_a, 1));
    mx_a = fmaxf(mx_a, __shfl_xor_sync(0xffffffffu, mx_a, 2));
    mx_b = fmaxf(mx_b, __shfl_xor_sync(0xffffffffu, mx_b, 1));
    mx_b = fmaxf(mx_b, __shfl_xor_sync(0xffffffffu, mx_b, 2));
    const float mn_a = fmaxf(m_a, mx_a), mn_b = fmaxf(m_b, mx_b);
    // (mn is finite: key 0, in tile 0, is visible to every row.)
    const float al_a = exp2f(m_a - mn_a), al_b = exp2f(m_b - mn_b);
    m_a = mn_a;
    m_b = mn_b;
    float sum_a = 0.f, sum_b = 0.f;
#pragma unroll
    for (int j = 0; j < F2_BK / 8; j++) {
      s[j][0] = exp2f(s[j][0] - mn_a);
      s[j][1] = exp2f(s[j][1] - mn_a);
      s[j][2] = exp2f(s[j][2] - mn_b);
      s[j][3] = exp2f(s[j][3] - mn_b);
      sum_a += s[j][0] + s[j][1];
      sum_b += s[j][2] + s[j][3];
    }
    l_a = l_a * al_a + sum_a;  // this thread's columns only; the quad's partial sums are added at the end
    l_b = l_b * al_b + sum_b;
#pragma unroll
    for (int n = 0; n < FA_D / 8; n++) {
      o[n][0] *= al_a;
      o[n][1] *= al_a;
      o[n][2] *= al_b;
      o[n][3] *= al_b;
    }

    f2_wait<1>();  // this tile's V has landed (the next K may still be in flight)
    __syncthreads();
#pragma unroll
    for (int kc = 0; kc < F2_BK / 16; kc++) {
      // P's A fragment for keys 16kc..16kc+15 is the S accumulators of n-tiles 2kc and 2kc+1, rounded to T.
      const uint32_t pa[4] = {f2_pack<T>(s[2 * kc][0], s[2 * kc][1]), f2_pack<T>(s[2 * kc][2], s[2 * kc][3]),
                              f2_pack<T>(s[2 * kc + 1][0], s[2 * kc + 1][1]),
                              f2_pack<T>(s[2 * kc + 1][2], s[2 * kc + 1][3])};
#pragma unroll
      for (int nn = 0; nn < FA_D / 16; nn++) {
        // Transposed matrices: keys 16kc+0..7, +8..15 | d 16nn+0..7; the same | d 16nn+8..15: b0, b1 of
        // n-tiles 2nn, 2nn+1.
        uint32_t b0, b1, b2, b3;
        const int key = 16 * kc + (lane & 7) + (((lane >> 3) & 1) << 3);
        f2_ldsm_t(f2_smem(sV + f2_sw(key, 2 * nn + (lane >> 4))), b0, b1, b2, b3);
        f2_mma<T>(o[2 * nn], pa, b0, b1);
        f2_mma<T>(o[2 * nn + 1], pa, b2, b3);
      }
    }
    __syncthreads();  // every warp is done with sV: fetch the next tile's values behind the next S
    if (t + 1 < ntiles)
      f2_load_kv(sV, own, pre, meta, n_a, v_off, pre_v, k0 + kt + F2_BK, min(F2_BK, kend - kt - F2_BK), kmap_off,
                 has_kmap, hkv, g);
    f2_commit();
  }
  f2_wait<0>();

  l_a += __shfl_xor_sync(0xffffffffu, l_a, 1);
  l_a += __shfl_xor_sync(0xffffffffu, l_a, 2);
  l_b += __shfl_xor_sync(0xffffffffu, l_b, 1);
  l_b += __shfl_xor_sync(0xffffffffu, l_b, 2);
  const float inv_a = 1.f / l_a, inv_b = 1.f / l_b;
  if (ra < nqt) {
    uint32_t *dst = reinterpret_cast<uint32_t *>(out + ((size_t)(o0 + qs + ra) * hq + h) * FA_D + t2);
#pragma unroll
    for (int n = 0; n < FA_D / 8; n++) dst[4 * n] = f2_pack<T>(o[n][0] * inv_a, o[n][1] * inv_a);
  }
  if (rb < nqt) {
    uint32_t *dst = reinterpret_cast<uint32_t *>(out + ((size_t)(o0 + qs + rb) * hq + h) * FA_D + t2);
#pragma unroll
    for (int n = 0; n < FA_D / 8; n++) dst[4 * n] = f2_pack<T>(o[n][2] * inv_b, o[n][3] * inv_b);
  }
}

// The attention kernels' entry points: NAME_bf16 and NAME_f16, one argument list for both kernels.
#define SIEVE_FLASH(NAME, THREADS, T, SUF)                                                                         \
  extern "C" __global__ void __launch_bounds__(THREADS)                                                            \
      NAME##_##SUF(const T *own, const T *pre, const uint32_t *meta, T *out, int hq, int hkv, size_t k_off,        \
                   size_t v_off, int n_a, int tiles_off, int kmap_off, int has_kmap, float scale) {                \
    NAME<T>(own, pre, meta, out, hq, hkv, k_off, v_off, n_a, tiles_off, kmap_off, has_kmap, scale);                \
  }
SIEVE_FLASH(flash_attn, FA_THREADS, __nv_bfloat16, bf16)
SIEVE_FLASH(flash_attn, FA_THREADS, __half, f16)
SIEVE_FLASH(flash_attn2, F2_THREADS, __nv_bfloat16, bf16)
SIEVE_FLASH(flash_attn2, F2_THREADS, __half, f16)

#define SIEVE_KERNELS(T, SUF)                                                                                      \
  extern "C" __global__ void add_rms_norm_##SUF(const T *y, const T *r, const T *w, T *out2, size_t n, int cols,  \
                                                float eps) {                                                       \
    add_rms_norm<T, true>(y, r, w, out2, out2 + n, cols, eps);                                                     \
  }                                                                                                                \
  extern "C" __global__ void rms_norm_##SUF(const T *y, const T *w, T *out, int cols, float eps) {                 \
    add_rms_norm<T, false>(y, nullptr, w, nullptr, out, cols, eps);                                                \
  }                                                                                                                \
  extern "C" __global__ void qkv_prep_##SUF(const T *qkv, const T *norms, const T *cs, T *out, int tokens, int hq, \
                                            int hkv, int d, float eps) {                                           \
    qkv_prep<T>(qkv, norms, cs, out, tokens, hq, hkv, d, eps);                                                     \
  }                                                                                                                \
  extern "C" __global__ void swiglu_##SUF(const T *gu, T *out, size_t rows, int inter) {                           \
    swiglu<T>(gu, out, rows, inter);                                                                               \
  }                                                                                                                \
  extern "C" __global__ void masked_softmax_##SUF(const T *s, T *out, const uint32_t *rows, size_t n_rows,         \
                                                  int groups, int lq, int lk, float scale, int causal) {           \
    masked_softmax<T>(s, out, rows, n_rows, groups, lq, lk, scale, causal);                                        \
  }

SIEVE_KERNELS(float, f32)
SIEVE_KERNELS(__nv_bfloat16, bf16)
SIEVE_KERNELS(__half, f16)

#define SIEVE_VEC_KERNELS(T, SUF)                                                                                  \
  extern "C" __global__ void __launch_bounds__(128)                                                                \
      add_rms_norm_v_##SUF(const T *y, const T *r, const T *w, T *out2, size_t n, int cols, float eps) {           \
    add_rms_norm_v<T, true>(y, r, w, out2, out2 + n, cols, eps);                                                   \
  }                                                                                                                \
  extern "C" __global__ void __launch_bounds__(128) rms_norm_v_##SUF(const T *y, const T *w, T *out, int cols,     \
                                                                     float eps) {                                  \
    add_rms_norm_v<T, false>(y, nullptr, w, nullptr, out, cols, eps);                                              \
  }                                                                                                                \
  extern "C" __global__ void swiglu_v_##SUF(const T *gu, T *out, size_t rows, int inter) {                         \
    swiglu_v<T>(gu, out, rows, inter);                                                                             \
  }

SIEVE_VEC_KERNELS(__nv_bfloat16, bf16)
SIEVE_VEC_KERNELS(__half, f16)
