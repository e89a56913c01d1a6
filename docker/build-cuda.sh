#!/usr/bin/env bash
# Builds Sieve with `--features cuda` on a machine with no GPU and no CUDA installed, from PyPI packages only.
#
#   docker/build-cuda.sh [cargo build arguments...]     (default: --release --bin sieve)
#   CARGO_SUBCOMMAND=clippy docker/build-cuda.sh --all-targets -- -D warnings     (any cargo subcommand)
#
# 1. A CUDA 13.0 toolkit is assembled from NVIDIA's PyPI wheels (nvcc, runtime, cccl, crt, nvvm, cublas, curand,
#    nvrtc) into $SIEVE_CUDA_TOOLKIT (default target/cuda-toolkit): the wheels unpack to `nvidia/cu13/{bin,include,
#    lib,nvvm}`, which is a toolkit tree once the linker's unversioned names exist.
# 2. candle (through cudarc) links the driver library `libcuda.so`, which only an NVIDIA driver installs. To link
#    without one, a stub `libcuda.so` (soname `libcuda.so.1`) is built that defines every driver entry point the
#    CUDA headers declare; each returns CUDA_ERROR_NOT_SUPPORTED. It is only ever on the *link* path: at run time
#    the dynamic loader finds the real driver's `libcuda.so.1`. Never ship or install the stub.
# 3. `cargo build --features cuda` runs with CUDA_HOME/CUDA_PATH/CUDA_ROOT set, `CUDA_COMPUTE_CAP` (default 90:
#    H100/H200; nothing to query without a GPU) and a separate target dir ($CARGO_TARGET_DIR, default
#    target/cuda) so the CPU build's cache is untouched. candle-kernels' nvcc step takes ~10 min on 2 cores.
#
# At run time the binary needs libcuda.so.1 (the driver), libcublas.so.13, libcublasLt.so.13, libcudart.so.13
# and libcurand.so.10: PyTorch's CUDA 13 wheels carry the last four (`nvidia/cu13/lib` in its site-packages);
# `benches/models_gpu.sh` shows how the GPU benchmark points LD_LIBRARY_PATH at them.
set -euo pipefail
cd "$(dirname "$0")/.."
TK=${SIEVE_CUDA_TOOLKIT:-$PWD/target/cuda-toolkit}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target/cuda}
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
PY=${PYTHON:-python3}

CU=$TK/nvidia/cu13
if [ ! -x "$CU/bin/nvcc" ]; then
  echo "build-cuda: assembling a CUDA 13.0 toolkit from PyPI wheels in $TK" >&2
  mkdir -p "$TK/wheels"
  "$PY" -m pip download -q --no-deps -d "$TK/wheels" \
    "nvidia-cuda-nvcc==13.0.*" "nvidia-cuda-runtime==13.0.*" "nvidia-cuda-cccl==13.0.*" "nvidia-cuda-crt==13.0.*" \
    "nvidia-nvvm==13.0.*" "nvidia-cublas==13.0.*" "nvidia-curand==10.4.0.*" "nvidia-cuda-nvrtc==13.0.*"
  for w in "$TK"/wheels/*.whl; do "$PY" -m zipfile -e "$w" "$TK"; done
  chmod +x "$CU"/bin/* "$CU"/nvvm/bin/* 2>/dev/null || true
  rm -rf "$TK/wheels"
fi
[ -x "$CU/bin/nvcc" ] || { echo "build-cuda: expected nvcc at $CU/bin/nvcc after unpacking the wheels" >&2; exit 1; }

# Unversioned names for the linker.
for l in cublas cublasLt cudart nvrtc; do
  [ -e "$CU/lib/lib$l.so" ] || ln -sf "lib$l.so.13" "$CU/lib/lib$l.so"
done
[ -e "$CU/lib/libcurand.so" ] || ln -sf libcurand.so.10 "$CU/lib/libcurand.so"

# The link-time driver stub, in its own folder so nothing else picks it up.
STUB=$TK/driver-stub
if [ ! -e "$STUB/libcuda.so" ]; then
  mkdir -p "$STUB"
  # Every `CUresult cuXxx(` the headers declare, after the versioning macros (cuCtxCreate -> cuCtxCreate_v2...).
  echo '#include <cuda.h>' | cc -E -I "$CU/include" - \
    | grep -oE '\bcu[A-Z][A-Za-z0-9_]*[[:space:]]*\(' | sed 's/[[:space:](]//g' | sort -u > "$STUB/symbols.txt"
  { echo "/* Link-time stub of the CUDA driver API: never loaded at run time (soname libcuda.so.1). */"
    while read -r s; do echo "int $s(void) { return 801; /* CUDA_ERROR_NOT_SUPPORTED */ }"; done < "$STUB/symbols.txt"
  } > "$STUB/stub.c"
  cc -shared -fPIC -o "$STUB/libcuda.so" -Wl,-soname,libcuda.so.1 "$STUB/stub.c"
  echo "build-cuda: driver stub with $(wc -l < "$STUB/symbols.txt") entry points" >&2
fi

export CUDA_HOME=$CU CUDA_PATH=$CU CUDA_ROOT=$CU
export PATH=$CU/bin:$PATH
export RUSTFLAGS="${RUSTFLAGS:-} -L $CU/lib -L $STUB"
[ $# -gt 0 ] || set -- --release --bin sieve
exec cargo "${CARGO_SUBCOMMAND:-build}" --features cuda "$@"
