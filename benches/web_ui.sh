#!/usr/bin/env bash
# The web UI's costs (BENCHMARKS.md, "Web UI"): the search page's server render time beyond the search
# (p50/p99 of its Server-Timing header over 500 requests), the HTML weight of a 10-hit page, and the page's
# requests/s under wrk as a ratio to POST /v1/search with the same query and the same body the page sends,
# measured in the same run (3 alternating rounds, medians).
#
#   benches/web_ui.sh [SIEVE_BINARY]      (default target/release/sieve; needs wrk, curl, python3)
#
# The index is the whole abt-buy catalog, BM25 only, and the mode is bm25: no model time hides the page's own
# cost, so this is the strictest comparison.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-target/release/sieve}
DATA=${SIEVE_SHARED_DATA:-../shared/data}
W=$(mktemp -d)
trap 'kill $SERVER 2>/dev/null || true; rm -rf "$W"' EXIT
"$BIN" ingest --index "$W/products" "$DATA/abt-buy-products/corpus.jsonl" --progress none >/dev/null
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$BIN" serve --index "products=$W/products" --listen "127.0.0.1:$PORT" 2>/dev/null &
SERVER=$!
until curl -sf "http://127.0.0.1:$PORT/health" >/dev/null; do sleep 0.2; done
PAGE="http://127.0.0.1:$PORT/?index=products&q=sony+turntable&mode=bm25"
BODY='{"index":"products","query":"sony turntable","mode":"bm25","rerank":false,"limit":10,"offset":0,"filters":[],"facets":["brand","category","source","price"],"explain":true,"with_documents":true}'
for _ in $(seq 50); do curl -s -o /dev/null "$PAGE"; done
for _ in $(seq 500); do curl -s -D - -o /dev/null "$PAGE" | tr -d '\r' | grep -i '^server-timing:'; done >"$W/timing.txt"
python3 - "$W/timing.txt" <<'PY'
import re, statistics, sys
search, render = [], []
for line in open(sys.argv[1]):
    d = dict(re.findall(r"(\w+);dur=([\d.]+)", line))
    search.append(float(d["search"])); render.append(float(d["render"]))
def q(xs, p):
    xs = sorted(xs); return xs[min(len(xs) - 1, int(p * len(xs)))]
print(f"render beyond the search over {len(render)} requests: p50 {q(render, .5):.3f} ms, p99 {q(render, .99):.3f} ms "
      f"(the search itself: p50 {q(search, .5):.3f} ms, p99 {q(search, .99):.3f} ms)")
PY
HTML=$(curl -s "$PAGE" | wc -c)
GZ=$(curl -s "$PAGE" | gzip -9 | wc -c)
HITS=$(curl -s "$PAGE" | grep -o '<article class="card">' | wc -l)
echo "HTML weight of the $HITS-hit page: $HTML bytes ($GZ gzipped); stylesheet $(wc -c <web/assets/sieve.css) bytes, script $(wc -c <web/assets/sieve.js) bytes, both cached for a year"
printf 'wrk.method = "POST"\nwrk.body = %s\nwrk.headers["Content-Type"] = "application/json"\n' "'$BODY'" >"$W/post.lua"
for round in 1 2 3; do
  P=$(wrk -t2 -c16 -d10s "$PAGE" | awk '/Requests\/sec/ {print $2}')
  A=$(wrk -t2 -c16 -d10s -s "$W/post.lua" "http://127.0.0.1:$PORT/v1/search" | awk '/Requests\/sec/ {print $2}')
  echo "round $round: page $P req/s, /v1/search $A req/s, ratio $(python3 -c "print(f'{$P/$A:.3f}')")"
done | tee "$W/wrk.txt"
python3 - "$W/wrk.txt" <<'PY'
import re, statistics, sys
rows = [re.findall(r"([\d.]+) req/s", l) for l in open(sys.argv[1])]
page = statistics.median(float(r[0]) for r in rows); api = statistics.median(float(r[1]) for r in rows)
ratios = [float(r[0]) / float(r[1]) for r in rows]
print(f"median: page {page:.0f} req/s, /v1/search {api:.0f} req/s; median ratio {statistics.median(ratios):.3f}")
PY
