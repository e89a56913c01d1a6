// Sieve's fused CUDA kernels for the Qwen3 forward (built to PTX by build.rs under the `cuda` feature).
//
// Each kernel replaces a chain of stock candle ops that would each make a pass over device memory. The
// arithmetic follows Hugging Face transformers' Qwen3 op by op, including where a bf16/f16 model rounds an
// intermediate to the storage type (`rnd<T>`), so that Sieve's half-precision scores drift from the f32
// reference no more than transformers' own do. Accumulation is always in f32.

#include <cuda_bf16.h>
#include <cuda_fp16.h>
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

// The fused q/k/v projection's output `qkv` [tokens, (hq + 2·hkv)·d] split into q [tokens, hq, d],
// k [tokens, hkv, d] and v [tokens, hkv, d], written back to back in `out`; q and k get their per-head
// RMSNorm (norms [2, d]: q_norm then k_norm) and rotate-half RoPE (cs [tokens, d]: cos | sin, d/2 each):
// x·cos + rotate_half(x)·sin as transformers computes it. Grid (tokens, hq + 2·hkv); each thread owns the
// pair (i, i + d/2); blockDim.x is d/2 rounded up to a multiple of 32.
template <typename T>
__device__ void qkv_prep(const T *qkv, const T *norms, const T *cs, T *out, int tokens, int hq, int hkv, int d,
                         float eps) {
  const int t = blockIdx.x, h = blockIdx.y, i = threadIdx.x, half = d / 2;
  const bool act = i < half;
  const T *src = qkv + (size_t)t * (hq + 2 * hkv) * d + (size_t)h * d;
  if (h >= hq + hkv) {  // v: a copy (block-uniform branch)
    T *dst = out + (size_t)tokens * (hq + hkv) * d + ((size_t)t * hkv + (h - hq - hkv)) * d;
    if (act) {
      dst[i] = src[i];
      dst[i + half] = src[i + half];
    }
    return;
  }
  const bool is_q = h < hq;
  T *dst = is_q ? out + ((size_t)t * hq + h) * d : out + (size_t)tokens * hq * d + ((size_t)t * hkv + (h - hq)) * d;
  const T *w = norms + (is_q ? 0 : d);
  const float a = act ? to_f(src[i]) : 0.f, b = act ? to_f(src[i + half]) : 0.f;
  const float inv = rsqrtf(block_sum(a * a + b * b) / d + eps);
  if (!act) return;
  const float na = rnd<T>(to_f(w[i]) * rnd<T>(a * inv));
  const float nb = rnd<T>(to_f(w[i + half]) * rnd<T>(b * inv));
  const float c = to_f(cs[(size_t)t * d + i]), s = to_f(cs[(size_t)t * d + half + i]);
  dst[i] = from_f<T>(rnd<T>(na * c) + rnd<T>(-nb * s));
  dst[i + half] = from_f<T>(rnd<T>(nb * c) + rnd<T>(na * s));
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
__global__ void attn_pack(const uint4 *a, const uint4 *b, int n_a, const uint32_t *idx, int has_idx, uint4 *dst,
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
__global__ void attn_unpack(const uint4 *src, uint4 *dst, int nb, int l, int hkv, int rep, int chunks) {
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
