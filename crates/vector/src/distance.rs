//! The vector math: dot products and normalisation, written so the compiler vectorises them on any x86-64
//! (16 independent lanes, no reliance on FMA or AVX being present), and the distance the graph uses.

use hnsw_rs::anndists::dist::Distance;

/// `a · b`. Sixteen independent partial sums let the compiler keep four SIMD registers busy instead of waiting
/// on one add chain; the result can differ from a sequential sum in the last bits.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
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
