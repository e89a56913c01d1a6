#!/usr/bin/env bash
# Builds the `models_gpu` bench binary with `--features cuda` (docker/build-cuda.sh: no GPU or CUDA install
# needed) and packs it, stripped, with the real Qwen3 tokenizer into one xz archive for the GPU machine:
#   benches/models_gpu_pack.sh [PACK]      (default .gpu/sieve-gpu.tar.xz; `.gpu/` is ignored by git)
set -euo pipefail
cd "$(dirname "$0")/.."
PACK=${1:-.gpu/sieve-gpu.tar.xz}
EXE=$(docker/build-cuda.sh --release --bench models_gpu --message-format=json-render-diagnostics \
  | python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "models_gpu" and m.get("executable"):
        print(m["executable"])')
[ -n "$EXE" ] || { echo "models_gpu_pack: the build produced no models_gpu executable" >&2; exit 1; }
CACHE=${SIEVE_MODEL_CACHE:-$HOME/.cache/sieve/models}
[ -f "$CACHE/qwen3-tokenizer/tokenizer.json" ] || cargo run -q --release -- models pull qwen3-tokenizer >&2
STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
strip -o "$STAGE/models_gpu" "$EXE"
cp -r "$CACHE/qwen3-tokenizer" "$STAGE/qwen3-tokenizer"
# The commit the binary was built from (`-dirty` when the tree had uncommitted changes), so that a pack kept
# from an earlier session is not measured as the current code by mistake.
echo "$(git describe --always --dirty --abbrev=12) built $(date -u +%FT%TZ)" > "$STAGE/BUILT_FROM"
mkdir -p "$(dirname "$PACK")"
tar -cJf "$PACK" -C "$STAGE" models_gpu qwen3-tokenizer BUILT_FROM
ls -l "$PACK" >&2
