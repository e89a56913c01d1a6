#!/usr/bin/env bash
# HNSW benchmark, Sieve and its peers in one run on the same vectors: the all-MiniLM-L6-v2 embeddings of the
# Debian set (20,000 package descriptions, 500 queries), M=16, ef_construction=200, ef 16..256, k=10.
#
#   benches/hnsw.sh [INDEX_DIR] [OUT_DIR]
#
# INDEX_DIR: an index of ../shared/peers/data/apt ingested with --embedder minilm (built here when missing).
# Needs the peer kit's Python environment (PEERS_PY, default .venv-peers/bin/python; see ../shared/peers/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
IDX=${1:-data/indexes/apt-minilm}
OUT=${2:-benches/out/hnsw}
PY=${PEERS_PY:-.venv-peers/bin/python}
APT=../shared/peers/data/apt
cargo build --release --quiet
if [ ! -f "$IDX/vectors/config.json" ]; then
  target/release/sieve ingest -i "$IDX" "$APT/corpus.jsonl" --rename _id=id --rename text=body --embedder minilm --threads 1
fi
mkdir -p "$OUT"
cargo bench --quiet --bench hnsw -- --index "$IDX" --queries "$APT/queries.jsonl" --out "$OUT"
rm -f "$OUT/peers.jsonl"
"$PY" ../shared/peers/peer_hnsw.py --base "$OUT/base.npy" --queries "$OUT/queries.npy" --metric cosine \
  --tag apt-minilm --build-threads "$(nproc)" --out "$OUT/peers.jsonl"
python3 benches/hnsw_table.py "$OUT"
