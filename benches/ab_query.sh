#!/usr/bin/env bash
# A/B query latency of two `sieve` builds on the same indexes, measured in one run: each round runs
# `sieve eval` with the old binary, then the new, over every judged query (full passes, --repeat 5), and
# the summary gives per dataset and mode the median over rounds of p50/p99 and mean ms per pass, with the
# ratio new/old. Quality must be identical; the script says so if it is not.
#
#   benches/ab_query.sh OLD_SIEVE NEW_SIEVE [MODES] [ROUNDS] [INDEX_ROOT] [OUT_DIR]
#
# MODES: bm25 (default) or e.g. bm25,dense,hybrid (dense modes embed the corpora once, into INDEX_ROOT).
# The datasets: the five of EVALUATION.md for bm25; abt-buy-products and apt when a dense mode is asked.
# Build the old binary first, e.g. `git worktree add /tmp/old HEAD~1 && cargo build --release` there, or copy
# target/release/sieve aside before changing the code.
set -euo pipefail
cd "$(dirname "$0")/.."
OLD=${1:?usage: benches/ab_query.sh OLD_SIEVE NEW_SIEVE [MODES] [ROUNDS] [INDEX_ROOT] [OUT_DIR]}
NEW=${2:?usage: benches/ab_query.sh OLD_SIEVE NEW_SIEVE [MODES] [ROUNDS] [INDEX_ROOT] [OUT_DIR]}
MODES=${3:-bm25}
ROUNDS=${4:-3}
ROOT=${5:-data/indexes/ab}
OUT=${6:-benches/out/ab}
SHARED=../shared
if [ "$MODES" = bm25 ]; then
  SETS=("$SHARED/data/abt-buy-products" "$SHARED/data/qbqtc-zh" "$SHARED/data/lcsts-p3-zh-news" "$SHARED/data/cmrc2018-zh" "$SHARED/peers/data/apt")
else
  SETS=("$SHARED/data/abt-buy-products" "$SHARED/peers/data/apt")
fi
ARGS=()
for s in "${SETS[@]}"; do ARGS+=(-d "$s"); done
ARGS+=(--modes "$MODES" --embedder minilm --device cpu --keep-index "$ROOT")
mkdir -p "$OUT"
echo "== building the indexes once (new binary)" >&2
"$NEW" eval "${ARGS[@]}" --repeat 1 --out "$OUT/warmup" >/dev/null
for r in $(seq 1 "$ROUNDS"); do
  for side in old new; do
    bin=$OLD; [ $side = new ] && bin=$NEW
    echo "== round $r: $side" >&2
    RAYON_NUM_THREADS=1 "$bin" eval "${ARGS[@]}" --repeat 5 --out "$OUT/$side-$r" >/dev/null
  done
done
python3 - "$OUT" "$ROUNDS" <<'PY'
import glob, json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
def load(side):
    runs = {}
    for r in range(1, rounds + 1):
        for path in glob.glob(f"{out}/{side}-{r}/*.json"):
            for rep in json.load(open(path)):
                runs.setdefault((rep["dataset"], rep["settings"]["mode"]), []).append(rep)
    return runs
old, new = load("old"), load("new")
print("| dataset | mode | queries | nDCG@10 old → new | p50 ms old | p50 ms new | p50 new/old | p99 new/old | pass s new/old |")
print("|---|---|---|---|---|---|---|---|---|")
med = lambda xs: statistics.median(xs)
same = True
for key in sorted(old):
    o, n = old[key], new.get(key, [])
    if not n:
        continue
    po, pn = med([r["latency_ms_p50"] for r in o]), med([r["latency_ms_p50"] for r in n])
    qo, qn = med([r["latency_ms_p99"] for r in o]), med([r["latency_ms_p99"] for r in n])
    so, sn = med([min(r["pass_seconds"]) for r in o]), med([min(r["pass_seconds"]) for r in n])
    no, nn = o[0]["ndcg_at_10"], n[0]["ndcg_at_10"]
    same &= all(abs(r["ndcg_at_10"] - no) < 1e-12 for r in o + n) and abs(o[0]["recall_at_100"] - n[0]["recall_at_100"]) < 1e-12
    print(f"| {key[0]} | {key[1]} | {o[0]['queries']} | {no:.4f} → {nn:.4f} | {po:.3f} | {pn:.3f} | {pn/po:.2f}x | {qn/qo:.2f}x | {sn/so:.2f}x |")
print()
print("quality identical" if same else "QUALITY DIFFERS between the builds")
PY
