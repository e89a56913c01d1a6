//! The CUDA attention diagnostic (`models_gpu attn-check`): every attention engine on the device against the
//! batched-GEMM path in f32. It sits beside `cuda.rs` (the kernels) and `ops.rs` (the attention planning),
//! using both, so neither of those two needs the other's diagnostics.

use candle_core::{DType, Tensor};

use crate::attention::AttnPlan;
use crate::cuda::{flash_attn, FlashKernel, FlashMeta, FLASH_HEAD_DIM};
use crate::error::Result;

/// Each fused attention kernel (WMMA, FlashAttention-2 style) and the default batched-GEMM path, in bf16 and
/// f16, against the batched-GEMM path in f32 on the same device, on random q/k/v: rows whose lengths straddle
/// the kernels' 32/64-query and 64-key tiles, rows continuing a shared prefix read through a key map, and the
/// last-position-only plan the final layer uses; and, on the benchmark's shape (50 rows of 133 queries after a
/// 41-token prefix), the time per call. One JSON object per (case, dtype, engine): `max_abs` (largest
/// |difference| from the f32 reference), `ok` (a fused kernel: at most twice the GEMM path's own error in the
/// same dtype, plus 1e-3), `ms` (median of `repeat` synchronised calls).
pub fn attention_check(dev: &candle_core::Device, repeat: usize) -> Result<Vec<serde_json::Value>> {
    let (hq, hkv, d) = (16usize, 8usize, FLASH_HEAD_DIM);
    let cases: [(&str, usize, Vec<usize>, bool); 5] = [
        ("rows 1/31/32/33/63/64/65/130/200", 0, vec![1, 31, 32, 33, 63, 64, 65, 130, 200], false),
        ("rows 1/31/32/33/63/64/65/130/200, last only", 0, vec![1, 31, 32, 33, 63, 64, 65, 130, 200], true),
        ("prefix 37 + rows 1/5/64/70/128", 37, vec![1, 5, 64, 70, 128], false),
        ("prefix 37 + rows 1/5/64/70/128, last only", 37, vec![1, 5, 64, 70, 128], true),
        ("bench: prefix 41 + 50 rows of 133", 41, vec![133; 50], false),
    ];
    let mut out = Vec::new();
    for (name, n_a, lens, last_only) in cases {
        let total: usize = lens.iter().sum();
        let q = Tensor::randn(0f32, 1.0, (total, hq, d), dev)?;
        let k = Tensor::randn(0f32, 1.0, (total, hkv, d), dev)?;
        let v = Tensor::randn(0f32, 1.0, (total, hkv, d), dev)?;
        let kp = Tensor::randn(0f32, 1.0, (n_a.max(1), hkv, d), dev)?.narrow(0, 0, n_a)?;
        let vp = Tensor::randn(0f32, 1.0, (n_a.max(1), hkv, d), dev)?.narrow(0, 0, n_a)?;
        let k_lens: Vec<usize> = lens.iter().map(|n| n + n_a).collect();
        // Keys: the prefix's rows (0..n_a), then the batch's own (n_a..), as Qwen3::run lays them out.
        let key_map: Option<Vec<u32>> = (n_a > 0).then(|| {
            let mut own = n_a;
            let mut m = Vec::new();
            for &n in &lens {
                m.extend(0..n_a as u32);
                m.extend((own..own + n).map(|x| x as u32));
                own += n;
            }
            m
        });
        let (mut rows, mut last_rows, mut last_idx) = (Vec::new(), Vec::new(), Vec::new());
        let (mut q0, mut k0) = (0u32, 0u32);
        for (r, (&nq, &nk)) in lens.iter().zip(&k_lens).enumerate() {
            rows.push([q0, nq as u32, k0, nk as u32, q0]);
            last_rows.push([q0 + nq as u32 - 1, 1, k0, nk as u32, r as u32]);
            last_idx.push(q0 + nq as u32 - 1);
            q0 += nq as u32;
            k0 += nk as u32;
        }
        let q_lens = if last_only { vec![1; lens.len()] } else { lens.clone() };
        let plan = match &key_map {
            Some(m) => AttnPlan::with_key_map(&q_lens, &k_lens, true, hq, dev, m)?,
            None => AttnPlan::new(&q_lens, &k_lens, true, hq, dev)?,
        };
        let n_idx = last_idx.len();
        let last_idx = Tensor::from_vec(last_idx, n_idx, dev)?;
        let pick_q =
            |q: &Tensor| -> Result<Tensor> { Ok(if last_only { q.index_select(&last_idx, 0)? } else { q.clone() }) };
        let gemm = |q: &Tensor, k: &Tensor, v: &Tensor, kp: &Tensor, vp: &Tensor| -> Result<Tensor> {
            let (ks, vs) = if n_a > 0 {
                (vec![kp.clone(), k.clone()], vec![vp.clone(), v.clone()])
            } else {
                (vec![k.clone()], vec![v.clone()])
            };
            plan.attend_parts(&pick_q(q)?, &ks, &vs)
        };
        let reference = gemm(&q, &k, &v, &kp, &vp)?;
        let time = |f: &dyn Fn() -> Result<Tensor>| -> Result<f64> {
            if repeat == 0 {
                return Ok(f64::NAN);
            }
            for _ in 0..3 {
                f()?;
            }
            dev.synchronize()?;
            let mut ts = Vec::with_capacity(repeat);
            for _ in 0..repeat {
                let t = std::time::Instant::now();
                f()?;
                dev.synchronize()?;
                ts.push(t.elapsed().as_secs_f64() * 1e3);
            }
            ts.sort_by(|a, b| a.total_cmp(b));
            Ok(ts[ts.len() / 2])
        };
        let max_abs = |a: &Tensor| -> Result<f64> {
            let diff = (a.to_dtype(DType::F32)? - &reference)?.abs()?.flatten_all()?.max(0)?;
            Ok(diff.to_scalar::<f32>()? as f64)
        };
        for dt in [DType::BF16, DType::F16] {
            let (qt, kt, vt, kpt, vpt) =
                (q.to_dtype(dt)?, k.to_dtype(dt)?, v.to_dtype(dt)?, kp.to_dtype(dt)?, vp.to_dtype(dt)?);
            let gemm_out = gemm(&qt, &kt, &vt, &kpt, &vpt)?;
            let gemm_err = max_abs(&gemm_out)?;
            let ms = time(&|| gemm(&qt, &kt, &vt, &kpt, &vpt))?;
            out.push(serde_json::json!({"case": name, "dtype": format!("{dt:?}"), "engine": "gemm",
                                        "max_abs": gemm_err, "ok": true, "ms": ms}));
            // The fused kernels read q|k|v from one buffer (qkv_prep's layout) and the prefix's k|v from another.
            let own = Tensor::cat(&[qt.flatten_all()?, kt.flatten_all()?, vt.flatten_all()?], 0)?;
            let pre = if n_a > 0 { Tensor::cat(&[kpt.flatten_all()?, vpt.flatten_all()?], 0)? } else { own.clone() };
            for kernel in [FlashKernel::Wmma, FlashKernel::Fa2] {
                let meta =
                    FlashMeta::new(kernel, if last_only { &last_rows } else { &rows }, key_map.as_deref(), n_a, dev)?;
                let run = || flash_attn(&own, total, &pre, &meta, (hq, hkv));
                let err = max_abs(&run()?)?;
                let ms = time(&run)?;
                out.push(serde_json::json!({"case": name, "dtype": format!("{dt:?}"),
                    "engine": format!("{kernel:?}").to_lowercase(), "max_abs": err,
                    "ok": err <= 2.0 * gemm_err + 1e-3, "ms": ms}));
            }
        }
    }
    Ok(out)
}
