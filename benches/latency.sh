#!/usr/bin/env bash
# End-to-end search latency without reranking, query embedding included: p50/p99 per mode (bm25, dense,
# hybrid) on qbqtc-zh and the Debian set, all-MiniLM-L6-v2 on the CPU, k = 10 from 100 candidates per leg,
# each query run 5 times (median kept), one request at a time.
#
#   benches/latency.sh [INDEX_ROOT] [OUT_DIR]
#
# INDEX_ROOT keeps the embedded indexes between runs (embedding 50k documents takes ~15 minutes here).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=${1:-data/indexes/latency}
OUT=${2:-benches/out/latency}
cargo build --release --quiet
target/release/sieve eval -d ../shared/data/qbqtc-zh -d ../shared/peers/data/apt \
  --modes bm25,dense,hybrid --embedder minilm --device cpu --depth 10 --recall-k 100 --repeat 5 \
  --keep-index "$ROOT" --out "$OUT"
