//! Per-stage timings of a forward, for benchmarks (`benches/models_gpu.rs`). On only when `SIEVE_PROFILE` is
//! set: every mark then waits for the device, so profiled totals run slower than unprofiled ones (a
//! `sync overhead` stage, two marks in a row at each start, measures that cost). Off, a mark is one branch on a
//! cached flag.

use std::cell::Cell;
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use candle_core::Device;

static TABLE: Mutex<Vec<(&'static str, f64)>> = Mutex::new(Vec::new());

thread_local! {
    static LAST: Cell<Option<Instant>> = const { Cell::new(None) };
}

fn on() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("SIEVE_PROFILE").is_some())
}

/// Starts a forward's timeline (after waiting for the device's pending work).
pub fn start(dev: &Device) {
    if on() {
        let _ = dev.synchronize();
        LAST.with(|l| l.set(Some(Instant::now())));
        mark(dev, "sync overhead");
    }
}

/// Adds the time since the previous mark (device work included) to `stage`.
pub fn mark(dev: &Device, stage: &'static str) {
    if !on() {
        return;
    }
    let _ = dev.synchronize();
    let now = Instant::now();
    let Some(prev) = LAST.with(|l| l.replace(Some(now))) else {
        return;
    };
    let dt = now.duration_since(prev).as_secs_f64();
    let mut t = TABLE.lock().unwrap_or_else(|e| e.into_inner());
    match t.iter_mut().find(|(s, _)| *s == stage) {
        Some((_, acc)) => *acc += dt,
        None => t.push((stage, dt)),
    }
}

/// The stage timings (seconds, summed) gathered since the last call, in first-seen order; empty unless
/// `SIEVE_PROFILE` is set.
pub fn take() -> Vec<(&'static str, f64)> {
    std::mem::take(&mut *TABLE.lock().unwrap_or_else(|e| e.into_inner()))
}
