#!/usr/bin/env bash
# Typo-tolerant and as-you-type BM25 search against exact search on the same queries, in one run: the
# abt-buy-products dev queries rewritten by `sieve eval --queries typo|prefix` (crates/eval/src/variants.rs),
# each searched with the index's tolerance on (typos + prefixes, the default) and off (`--typo-one 0 --prefix
# false`: the words as typed). k = 10 from 100; each query run ROUNDS times (median kept), one at a time, on
# one core (taskset), the variants interleaved so that drift hits both sides alike. Prints nDCG@10 and p50/p99
# per row and the on/off latency ratios.
#
#   benches/typo_prefix.sh [ROUNDS] [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-5}
OUT=${2:-benches/out/typo_prefix}
DATA=../shared/data/abt-buy-products
CORE=${CORE:-1}
cargo build --release --quiet -p sieve
rm -rf "$OUT" && mkdir -p "$OUT"
run() {  # name variant [settings...]
  local name=$1 variant=$2
  shift 2
  taskset -c "$CORE" target/release/sieve eval -d "$DATA" --queries "$variant" --depth 10 --recall-k 100 \
    --repeat "$ROUNDS" --out "$OUT/$name" "$@" 2>/dev/null >/dev/null
}
for v in clean typo prefix; do
  run "$v-on" "$v"
  run "$v-off" "$v" --typo-one 0 --prefix false
done
python3 - "$OUT" <<'PY'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
def report(name):
    f = next((out / name).glob("*.json"))
    return json.loads(f.read_text())[0]
print("| queries | tolerance | nDCG@10 | MRR@10 | p50 ms | p99 ms |")
print("|---|---|---|---|---|---|")
rows = {}
for v in ["clean", "typo", "prefix"]:
    for side in ["on", "off"]:
        r = report(f"{v}-{side}")
        rows[(v, side)] = r
        label = "typos + prefixes" if side == "on" else "none (exact words)"
        print(f"| {v} | {label} | {r['ndcg_at_10']:.4} | {r['mrr_at_10']:.4} | {r['latency_ms_p50']:.3f} | {r['latency_ms_p99']:.3f} |")
print()
for v in ["clean", "typo", "prefix"]:
    on, off = rows[(v, "on")], rows[(v, "off")]
    print(f"{v}: p50 {on['latency_ms_p50'] / off['latency_ms_p50']:.2f}x, p99 {on['latency_ms_p99'] / off['latency_ms_p99']:.2f}x exact search")
PY
