//! The vector math: dot products and normalisation, and the distance the graph uses.
//!
//! The dot product is written once, as 16 independent lanes the compiler vectorises, and compiled twice: for
//! the baseline x86-64 (SSE2) and, chosen at run time when the CPU has them, for AVX2 with fused
//! multiply-adds (twice the width, one instruction per lane step) — distance evaluations are most of an HNSW
//! search. The two can differ in the last bits of a result (FMA rounds once).

use hnsw_rs::anndists::dist::Distance;

/// `a · b`. Sixteen independent partial sums let the compiler keep SIMD registers busy instead of waiting on
/// one add chain; the result can differ from a sequential sum in the last bits.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: `dot_avx2_fma` only needs the CPU to support AVX2 and FMA, checked just above.
            #[allow(unsafe_code)]
            return unsafe { dot_avx2_fma(a, b) };
        }
    }
    dot_portable(a, b)
}

/// [`dot`] with AVX2 fused multiply-adds: four independent 8-wide accumulators (32 floats per step).
/// Written with intrinsics: the compiler's own vectorisation of the lane loop only used half-width registers.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(unsafe_code)]
fn dot_avx2_fma(a: &[f32], b: &[f32]) -> f32 {
    use std::arch::x86_64::{
        __m256, _mm256_add_ps, _mm256_fmadd_ps, _mm256_loadu_ps, _mm256_setzero_ps, _mm256_storeu_ps,
    };
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    // SAFETY (every load below): it reads 8 floats starting at `i + offset`, and the loop conditions keep
    // `i + offset + 8 <= n`, inside both slices.
    let load = |p: *const f32, i: usize| -> __m256 { unsafe { _mm256_loadu_ps(p.add(i)) } };
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    while i + 32 <= n {
        for (k, slot) in acc.iter_mut().enumerate() {
            *slot = _mm256_fmadd_ps(load(pa, i + 8 * k), load(pb, i + 8 * k), *slot);
        }
        i += 32;
    }
    while i + 8 <= n {
        acc[0] = _mm256_fmadd_ps(load(pa, i), load(pb, i), acc[0]);
        i += 8;
    }
    let sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let mut lanes = [0.0f32; 8];
    // SAFETY: `lanes` holds exactly 8 floats.
    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), sum) };
    let mut total = ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5])) + ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7]));
    while i < n {
        total = a[i].mul_add(b[i], total);
        i += 1;
    }
    total
}

/// [`dot`] for any x86-64 (and other architectures).
fn dot_portable(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 16;
    let mut acc = [0.0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..LANES {
            acc[i] += x[i] * y[i];
        }
    }
    let mut tail = 0.0f32;
    for (x, y) in ra.iter().zip(rb) {
        tail += x * y;
    }
    // pairwise reduction of the lanes
    let mut width = LANES / 2;
    while width > 0 {
        for i in 0..width {
            acc[i] += acc[i + width];
        }
        width /= 2;
    }
    acc[0] + tail
}

/// The Euclidean norm of `v`.
pub fn norm(v: &[f32]) -> f32 {
    dot(v, v).sqrt()
}

/// Scales `v` to unit length; returns `false` (leaving it unchanged) when its norm is zero or not finite.
pub fn normalize(v: &mut [f32]) -> bool {
    let n = norm(v);
    if !(n.is_finite() && n > 0.0) {
        return false;
    }
    let inv = 1.0 / n;
    v.iter_mut().for_each(|x| *x *= inv);
    true
}

/// The graph's distance between unit vectors: `1 − a·b`, clamped at 0 (rounding can push the dot product of
/// two equal unit vectors a hair above 1, and hnsw_rs requires distances ≥ 0).
#[derive(Debug, Clone, Copy, Default)]
pub struct UnitDot;

impl Distance<f32> for UnitDot {
    fn eval(&self, va: &[f32], vb: &[f32]) -> f32 {
        (1.0 - dot(va, vb)).max(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_matches_a_plain_sum_for_every_length() {
        for len in [0usize, 1, 7, 15, 16, 17, 33, 384, 1024] {
            let a: Vec<f32> = (0..len).map(|i| ((i * 7 % 13) as f32 - 6.0) / 8.0).collect();
            let b: Vec<f32> = (0..len).map(|i| ((i * 5 % 11) as f32 - 5.0) / 4.0).collect();
            let plain: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
            assert!((dot(&a, &b) as f64 - plain).abs() < 1e-4, "len {len}");
        }
    }

    #[test]
    fn both_compilations_agree() {
        let a: Vec<f32> = (0..389).map(|i| ((i * 13 % 17) as f32 - 8.0) / 7.0).collect();
        let b: Vec<f32> = (0..389).map(|i| ((i * 3 % 19) as f32 - 9.0) / 5.0).collect();
        let portable = dot_portable(&a, &b);
        assert!((dot(&a, &b) - portable).abs() <= 1e-4 * portable.abs().max(1.0));
    }

    #[test]
    fn normalize_makes_unit_vectors_and_refuses_zero() {
        let mut v = vec![3.0, 4.0];
        assert!(normalize(&mut v));
        assert_eq!(v, vec![0.6, 0.8]);
        let mut z = vec![0.0; 4];
        assert!(!normalize(&mut z));
        let mut nan = vec![f32::NAN, 1.0];
        assert!(!normalize(&mut nan));
    }

    #[test]
    fn distance_of_equal_unit_vectors_is_zero_never_negative() {
        let mut v: Vec<f32> = (0..384).map(|i| (i as f32).sin()).collect();
        normalize(&mut v);
        let d = UnitDot.eval(&v, &v);
        assert!((0.0..1e-5).contains(&d));
        let w: Vec<f32> = v.iter().map(|x| -x).collect();
        assert!((UnitDot.eval(&v, &w) - 2.0).abs() < 1e-5);
    }
}
