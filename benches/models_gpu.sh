#!/usr/bin/env bash
# The GPU benchmark, run ON the GPU machine (benches/models_gpu.py says what it measures):
#   benches/models_gpu.sh PACK.tar.xz [OUT_DIR] [models_gpu.py options...]
# PACK is what benches/models_gpu_pack.sh builds here: the `models_gpu` bench binary compiled with
# `--features cuda` (docker/build-cuda.sh) and the real Qwen3 tokenizer. The machine needs an NVIDIA driver
# (libcuda.so.1), Python with torch + transformers, and PyTorch's CUDA 13 wheels, whose libcublas, libcudart
# and libcurand the binary uses.
# Through the device tool (10 minutes a command): pass `--deadline 480` so that no phase starts after 8 minutes;
# OUT/models_gpu.json is rewritten after every phase, lists what was skipped, and a second call on the still-warm
# machine (`--only` those phases; the checkpoints in SIEVE_GPU_WORK are reused) measures the rest. Here,
# `python3 benches/models_gpu.py --report A.json B.json` merges the parts and prints the table.
set -euo pipefail
cd "$(dirname "$0")/.."
PACK=${1:?usage: benches/models_gpu.sh PACK.tar.xz [OUT_DIR] [options]}
OUT=${2:-benches/out/gpu}
shift $(( $# < 2 ? $# : 2 ))
W=${SIEVE_GPU_WORK:-/tmp/sieve-gpu}
mkdir -p "$W" "$OUT"
rm -f "$W/BUILT_FROM"
tar -xJf "$PACK" -C "$W"
echo "pack: $(cat "$W/BUILT_FROM" 2>/dev/null || echo 'no BUILT_FROM (packed before the stamp existed)')" >&2
cp "$W/BUILT_FROM" "$OUT/" 2>/dev/null || true
# The CUDA 13 runtime libraries that PyTorch's nvidia-* wheels installed.
LIBS=$(python3 - <<'PY'
import glob, os
import nvidia
dirs = {d for base in nvidia.__path__ for d in glob.glob(os.path.join(base, "*", "lib")) if os.path.isdir(d)}
print(":".join(sorted(dirs)))
PY
)
export LD_LIBRARY_PATH=$LIBS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader >&2
if ldd "$W/models_gpu" | grep 'not found' >&2; then
  echo "models_gpu.sh: libraries missing (looked in $LIBS)" >&2
  exit 1
fi
PYTHONUNBUFFERED=1 python3 benches/models_gpu.py --bin "$W/models_gpu" --tokenizer "$W/qwen3-tokenizer" --work "$W" \
  --out "$OUT" "$@"
