//! Under the `cuda` feature, compiles `kernels/sieve.cu` to PTX with nvcc (found through `CUDA_HOME`/`CUDA_PATH`
//! or on `PATH`) for `compute_$CUDA_COMPUTE_CAP` (default 80: bf16 needs it, and PTX is JIT-compiled forward to
//! newer GPUs), then checks the PTX with ptxas for `sm_$CUDA_COMPUTE_CAP` when ptxas sits beside nvcc. Without
//! the feature it does nothing, so CPU builds need no CUDA toolkit.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=kernels/sieve.cu");
    println!("cargo:rerun-if-env-changed=CUDA_COMPUTE_CAP");
    println!("cargo:rerun-if-env-changed=CUDA_HOME");
    if std::env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("sieve.ptx");
    let home = ["CUDA_HOME", "CUDA_PATH", "CUDA_ROOT"].iter().find_map(std::env::var_os).map(PathBuf::from);
    let nvcc = home.as_ref().map(|h| h.join("bin").join("nvcc")).filter(|p| p.exists()).unwrap_or("nvcc".into());
    let cap = std::env::var("CUDA_COMPUTE_CAP").unwrap_or_else(|_| "80".into());
    let cap = cap.trim().replace('.', "");
    let mut cmd = Command::new(&nvcc);
    cmd.args(["--ptx", "-O3", "-std=c++17"]).arg(format!("-arch=compute_{cap}"));
    if let Some(h) = &home {
        cmd.arg("-I").arg(h.join("include"));
    }
    cmd.arg("kernels/sieve.cu").arg("-o").arg(&out);
    let status = cmd.status().unwrap_or_else(|e| {
        panic!(
            "the `cuda` feature needs nvcc: could not run {} ({e}); set CUDA_HOME or see docker/build-cuda.sh",
            nvcc.display()
        )
    });
    if !status.success() {
        panic!("nvcc failed to compile kernels/sieve.cu ({status})");
    }
    // `--ptx` stops before the assembler, so the inline PTX (mma.sync, ldmatrix, cp.async) would otherwise
    // first be checked by the driver's JIT on a GPU machine. Assemble it here for sm_$cap when ptxas is there.
    let ptxas = nvcc.with_file_name("ptxas");
    if ptxas.exists() {
        let cubin = out.with_extension("cubin");
        let status = Command::new(&ptxas)
            .arg(format!("-arch=sm_{cap}"))
            .arg(&out)
            .arg("-o")
            .arg(&cubin)
            .status()
            .unwrap_or_else(|e| panic!("could not run {}: {e}", ptxas.display()));
        if !status.success() {
            panic!("ptxas rejected the PTX of kernels/sieve.cu for sm_{cap} ({status})");
        }
    }
}
