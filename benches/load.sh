#!/usr/bin/env bash
# Load benchmark of `sieve serve` with wrk (Debian's package), on this machine's loopback only:
#   /v1/search, hybrid recall without rerank, on the abt-buy product set (5,670 products, all-MiniLM-L6-v2
#     vectors), the dataset's queries in turn, at 16 and 64 connections for DURATION each;
#   /v1/rerank with the random-weight Qwen3 reranker of benches/models_vs_hf.sh (bench shape, real tokenizer) and
#     its 50 (query, document) pairs of ~128 tokens per request, at 8 connections: pairs/s and the batch sizes the
#     reranker worker reached (from /metrics), against HF transformers scoring the same 50 pairs in-process, in the
#     same run (no HTTP rerank server is in the peer kit; transformers is what TEI/vLLM-style servers run).
#     The rerank body sends `"cache": false`, so every request reaches the model as transformers' does; the script
#     fails unless /metrics shows a reranker job per request served and no cache hit.
# wrk runs on the same 2 cores as the server, so the numbers are a floor. Usage: benches/load.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-benches/out/load}
DURATION=${DURATION:-30s}
SHARED=${SHARED:-../shared}
PORT=${PORT:-7791}
mkdir -p "$OUT"
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
cargo build --release -q -p sieve
S=./target/release/sieve
IDX=${IDX:-data/indexes/products}
if [ ! -f "$IDX/vectors/config.json" ]; then
  $S ingest -i "$IDX" --embedder minilm --progress log "$SHARED/data/abt-buy-products/corpus.jsonl"
fi
# the reranker checkpoint and the 50 pairs (as benches/models_vs_hf.sh makes them)
if ! .venv-peers/bin/python -c "import transformers" 2>/dev/null; then
  [ -x .venv-peers/bin/python ] || python3 -m venv .venv-peers
  .venv-peers/bin/pip install -q -r "$SHARED/peers/requirements.txt"
fi
P=.venv-peers/bin/python
$S models pull >/dev/null
CACHE=${SIEVE_MODEL_CACHE:-$HOME/.cache/sieve/models}
$P benches/models_peer.py setup --out "$OUT" --apt "$SHARED/peers/data/apt" --tokenizer "$CACHE/qwen3-tokenizer" >/dev/null

$S serve --index "products=$IDX" --reranker "$OUT/qwen3-bench" --listen "127.0.0.1:$PORT" --max-queue 1024 \
  > "$OUT/server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 120); do curl -sf "127.0.0.1:$PORT/ready" >/dev/null && break; sleep 0.5; done
URL="http://127.0.0.1:$PORT"
LOG="$OUT/runs.jsonl"
: > "$LOG"
# warm-up, then the measured runs
wrk -t2 -c16 -d5s -s benches/load.lua "$URL" -- search "$SHARED/data/abt-buy-products/queries.jsonl" >/dev/null
for c in 16 64; do
  echo "search, $c connections, $DURATION" >&2
  wrk -t2 -c$c -d"$DURATION" --timeout 10s -s benches/load.lua "$URL" -- search "$SHARED/data/abt-buy-products/queries.jsonl" \
    | tail -1 | sed "s/^{/{\"route\": \"search\", \"connections\": $c, /" >> "$LOG"
done
$P -c "import json; p = json.load(open('$OUT/pairs.json')); json.dump({'query': p['query'], 'documents': p['documents'], 'instruction': p['instruction'], 'max_length': p['max_length'], 'cache': False}, open('$OUT/rerank_body.json', 'w'))"
curl -s "$URL/metrics" > "$OUT/metrics_before.txt"
echo "rerank, 8 connections, $DURATION" >&2
wrk -t2 -c8 -d"$DURATION" --timeout 60s -s benches/load.lua "$URL" -- rerank "$OUT/rerank_body.json" \
  | tail -1 | sed 's/^{/{"route": "rerank", "connections": 8, /' >> "$LOG"
curl -s "$URL/metrics" > "$OUT/metrics_after.txt"
kill $SERVER; wait $SERVER 2>/dev/null || true
trap - EXIT
echo "transformers on the same 50 pairs" >&2
$P benches/models_peer.py rerank --out "$OUT" 2>/dev/null >> "$LOG"
$P - "$OUT" <<'PY'
import json, re, sys
out = sys.argv[1]
rows = [json.loads(l) for l in open(f"{out}/runs.jsonl")]
def metric(path, name):
    vals = {}
    for line in open(path):
        m = re.match(rf'{name}\{{worker="reranker"(?:,le="([^"]+)")?\}} (\S+)', line)
        if m:
            vals[m.group(1) or "_"] = float(m.group(2))
    return vals
def hist(name):
    a, b = metric(f"{out}/metrics_after.txt", name), metric(f"{out}/metrics_before.txt", name)
    return {k: a.get(k, 0) - b.get(k, 0) for k in a}
print("| route | connections | requests/s | p50 ms | p99 ms | non-2xx | socket errors |")
print("|---|---|---|---|---|---|---|")
for r in rows:
    if "route" in r:
        sock = r["connect_errors"] + r["read_errors"] + r["write_errors"] + r["timeouts"]
        print(f"| /v1/{r['route']} | {r['connections']} | {r['rps']:.1f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['non_2xx']} | {sock} |")
docs = len(json.load(open(f"{out}/rerank_body.json"))["documents"])
rr = next(r for r in rows if r.get("route") == "rerank")
hf = next(r for r in rows if r.get("peer") == "transformers")
pairs_s = rr["rps"] * docs
calls = {k: v for k, v in hist("sieve_worker_batch_size_bucket").items()}
n_calls = hist("sieve_worker_batch_size_count").get("_", 0)
jobs = hist("sieve_worker_batch_size_sum").get("_", 0)
tokens = hist("sieve_worker_batch_tokens_sum").get("_", 0)
prev, dist = 0, []
for le in sorted((k for k in calls if k != "+Inf"), key=float):
    dist.append(f"<= {float(le):g}: {calls[le] - prev:.0f}")
    prev = calls[le]
print(f"\nrerank over HTTP: {pairs_s:.1f} pairs/s ({docs} pairs per request); HF transformers in-process, same pairs: "
      f"{hf['pairs'] / hf['median_s']:.1f} pairs/s -> {pairs_s / (hf['pairs'] / hf['median_s']):.2f}x")
# Every request must have been computed by the model, none served from the score cache.
def plain(path, name):
    for line in open(path):
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0
served = rr["requests"] - rr["non_2xx"]
model_jobs = hist("sieve_worker_jobs_total").get("_", 0)
cache_hits = plain(f"{out}/metrics_after.txt", "sieve_rerank_cache_hits_total") - plain(f"{out}/metrics_before.txt", "sieve_rerank_cache_hits_total")
print(f"reranker jobs during the run: {model_jobs:.0f} for {served} requests served; cache hits: {cache_hits:.0f}")
if model_jobs < served or cache_hits > 0:
    sys.exit(f"FAIL: the rerank run was not all model work ({model_jobs:.0f} jobs, {served} requests, {cache_hits:.0f} cache hits)")
if n_calls:
    print(f"reranker calls: {n_calls:.0f}, requests per call: mean {jobs / n_calls:.2f}, max bucket reached: "
          f"{', '.join(dist)}; ~{tokens / n_calls:.0f} approx. tokens per call")
PY
