#!/usr/bin/env bash
# What one write costs the dense index as it grows, Sieve and its peers in one run on the same vectors: the
# peer kit's random unit vectors (384 dimensions: MiniLM's), an index of N - WRITES built first, then WRITES
# writes of BATCH vectors each (a server's write tasks), then a save of the whole index.
#
#   benches/hnsw_updates.sh [N] [OUT_DIR]          (env: WRITES=50 BATCH=1 THREADS=nproc)
#
# Writes use THREADS threads on every side: Sieve's rayon pool (RAYON_NUM_THREADS; it inserts batches of 64 or
# more in parallel) and the peers' write calls (hnswlib num_threads, faiss OpenMP).
#
# Needs the peer kit's Python environment (PEERS_PY, default .venv-peers/bin/python; see ../shared/peers/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-100000}
OUT=${2:-benches/out/hnsw_updates-$N}
WRITES=${WRITES:-50}
BATCH=${BATCH:-1}
THREADS=${THREADS:-$(nproc)}
PY=${PEERS_PY:-.venv-peers/bin/python}
VEC=benches/out/vec_random_$N
if [ ! -f "$VEC/base.npy" ]; then
  "$PY" ../shared/peers/make_vectors.py random --n "$N" --nq 200 --dim 384 --out "$VEC"
fi
mkdir -p "$OUT"
RAYON_NUM_THREADS=$THREADS cargo bench --quiet --bench hnsw_updates -- --base "$VEC/base.npy" --queries "$VEC/queries.npy" --out "$OUT" \
  --writes "$WRITES" --batch "$BATCH"
"$PY" benches/hnsw_updates_peers.py --base "$VEC/base.npy" --queries "$VEC/queries.npy" --writes "$WRITES" \
  --batch "$BATCH" --write-threads "$THREADS" --out "$OUT/peers.jsonl"
python3 - "$OUT" <<'PY'
import json, sys
rows = [json.loads(l) for f in ("sieve.jsonl", "peers.jsonl") for l in open(f"{sys.argv[1]}/{f}")]
sieve = {}
for r in rows:
    if r["lib"] == "sieve":
        sieve.update(r)
print(f"| library | vectors before | write of {sieve['batch']} (ms, p50) | recall@10 (ef 64) | save (ms, p50) |")
print("|---|---|---|---|---|")
print(f"| Sieve | {sieve['n']:,} | {sieve['write_ms_p50']:.3f} | {sieve['recall_at_10_ef64']:.4f} | {sieve['save_ms_p50']:.0f} |")
print(f"| Sieve before (copy rebuilt per write) | {sieve['n']:,} | {sieve['before_write_ms_p50']:.1f} | "
      f"{sieve['recall_at_10_ef64_rebuilt_copy']:.4f} | {sieve['save_ms_p50']:.0f} |")
for r in rows:
    if r["lib"] != "sieve":
        print(f"| {r['lib']} | {r['n']:,} | {r['write_ms_p50']:.3f} | {r['recall_at_10_ef64']:.4f} | {r['save_ms_p50']:.0f} |")
PY
