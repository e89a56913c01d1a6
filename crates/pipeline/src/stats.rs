//! Lock-free counters for metrics: a fixed-bucket histogram that any thread can observe into, read out in
//! the Prometheus layout (cumulative buckets, sum, count).

use std::sync::atomic::{AtomicU64, Ordering};

/// A histogram with fixed upper bounds (`le`), plus the implicit `+Inf` bucket.
#[derive(Debug)]
pub struct Histogram {
    bounds: Vec<f64>,
    /// Per-bucket (non-cumulative) counts; the last one is `+Inf`.
    counts: Vec<AtomicU64>,
    /// Sum of observed values, as `f64` bits.
    sum: AtomicU64,
}

/// A histogram's state at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// `(upper bound, cumulative count)`, ending with `(+Inf, count)`.
    pub buckets: Vec<(f64, u64)>,
    pub sum: f64,
    pub count: u64,
}

impl Histogram {
    /// `bounds` must be finite and increasing.
    pub fn new(bounds: &[f64]) -> Histogram {
        debug_assert!(bounds.windows(2).all(|w| w[0] < w[1]), "bounds must increase");
        Histogram {
            bounds: bounds.to_vec(),
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0f64.to_bits()),
        }
    }

    /// Exponential bounds: `start`, `start * factor`, … (`n` of them).
    pub fn exponential(start: f64, factor: f64, n: usize) -> Histogram {
        let bounds: Vec<f64> = (0..n).map(|i| start * factor.powi(i as i32)).collect();
        Histogram::new(&bounds)
    }

    pub fn observe(&self, value: f64) {
        let i = self.bounds.partition_point(|&b| b < value);
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        let mut cur = self.sum.load(Ordering::Relaxed);
        loop {
            let next = (f64::from_bits(cur) + value).to_bits();
            match self.sum.compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => break,
                Err(seen) => cur = seen,
            }
        }
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut total = 0;
        let mut buckets = Vec::with_capacity(self.counts.len());
        for (i, c) in self.counts.iter().enumerate() {
            total += c.load(Ordering::Relaxed);
            buckets.push((self.bounds.get(i).copied().unwrap_or(f64::INFINITY), total));
        }
        HistogramSnapshot { buckets, sum: f64::from_bits(self.sum.load(Ordering::Relaxed)), count: total }
    }
}

impl HistogramSnapshot {
    /// The `q`-quantile (0 ≤ q ≤ 1) estimated from the buckets as Prometheus' `histogram_quantile` does:
    /// find the bucket holding rank `q·count` and interpolate linearly inside it (the first bucket starts at
    /// 0). A rank in the `+Inf` bucket answers the largest finite bound. `None` without observations.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 || !(0.0..=1.0).contains(&q) {
            return None;
        }
        let rank = q * self.count as f64;
        let mut below = (0.0, 0u64); // (lower bound, cumulative count before this bucket)
        for &(bound, cumulative) in &self.buckets {
            if cumulative as f64 >= rank && cumulative > below.1 {
                if bound.is_infinite() {
                    return Some(below.0);
                }
                let inside = (rank - below.1 as f64) / (cumulative - below.1) as f64;
                return Some(below.0 + (bound - below.0) * inside.clamp(0.0, 1.0));
            }
            if bound.is_finite() {
                below = (bound, cumulative);
            }
        }
        Some(below.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_inside_the_bucket_like_prometheus() {
        let h = Histogram::new(&[1.0, 2.0, 4.0]);
        for v in [0.5, 1.5, 1.5, 3.0] {
            h.observe(v);
        }
        let s = h.snapshot();
        // rank 2 of 4 falls half-way into (1, 2], which holds ranks 2..=3
        assert_eq!(s.quantile(0.5), Some(1.5));
        assert_eq!(s.quantile(1.0), Some(4.0));
        assert_eq!(s.quantile(0.25), Some(1.0));
        h.observe(100.0); // in +Inf: the largest finite bound
        assert_eq!(h.snapshot().quantile(1.0), Some(4.0));
        assert_eq!(Histogram::new(&[1.0]).snapshot().quantile(0.5), None);
    }

    #[test]
    fn buckets_are_cumulative_and_bounds_inclusive() {
        let h = Histogram::new(&[1.0, 10.0]);
        for v in [0.5, 1.0, 1.5, 10.0, 11.0, 100.0] {
            h.observe(v);
        }
        let s = h.snapshot();
        assert_eq!(s.buckets, vec![(1.0, 2), (10.0, 4), (f64::INFINITY, 6)]);
        assert_eq!(s.count, 6);
        assert!((s.sum - 124.0).abs() < 1e-9);
    }

    #[test]
    fn concurrent_observations_are_all_counted() {
        let h = std::sync::Arc::new(Histogram::exponential(1.0, 2.0, 4));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let h = h.clone();
                std::thread::spawn(move || (0..1000).for_each(|i| h.observe((i % 20) as f64)))
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        let s = h.snapshot();
        assert_eq!(s.count, 4000);
        assert!((s.sum - 4.0 * 50.0 * 190.0).abs() < 1e-6);
    }
}
