#!/usr/bin/env bash
# The web UI's costs (BENCHMARKS.md, "Web UI"): the search page's server render time beyond the search
# (p50/p99 of its Server-Timing header over 500 requests), the HTML weight of a 10-hit page, and the page's
# requests/s under wrk as a ratio to POST /v1/search with the same query and the same body the page sends,
# measured in the same run (3 alternating rounds, medians).
#
#   benches/web_ui.sh [SIEVE_BINARY]      (default target/release/sieve; needs wrk, curl, python3; part 2 MiniLM)
#
# The index is the whole abt-buy catalog, BM25 only, and the mode is bm25: no model time hides the page's own
# cost, so this is the strictest comparison.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-target/release/sieve}
DATA=${SIEVE_SHARED_DATA:-../shared/data}
W=$(mktemp -d)
SERVER= SERVER2=
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
# wrk_rounds LABEL PAGE_URL BODY API_URL: 3 alternating 10 s rounds of the page and of POST API_URL with BODY,
# each round's ratio, then the medians
wrk_rounds() {
  local label=$1 page=$2 body=$3 api=$4
  printf 'wrk.method = "POST"\nwrk.body = %s\nwrk.headers["Content-Type"] = "application/json"\n' "'$body'" >"$W/post-$label.lua"
  for round in 1 2 3; do
    P=$(wrk -t2 -c16 -d10s "$page" | awk '/Requests\/sec/ {print $2}')
    A=$(wrk -t2 -c16 -d10s -s "$W/post-$label.lua" "$api" | awk '/Requests\/sec/ {print $2}')
    echo "$label round $round: page $P req/s, /v1/search $A req/s, ratio $(python3 -c "print(f'{$P/$A:.3f}')")"
  done | tee "$W/wrk-$label.txt"
  python3 - "$W/wrk-$label.txt" "$label" <<'PY'
import re, statistics, sys
rows = [re.findall(r"([\d.]+) req/s", l) for l in open(sys.argv[1])]
page = statistics.median(float(r[0]) for r in rows); api = statistics.median(float(r[1]) for r in rows)
ratios = [float(r[0]) / float(r[1]) for r in rows]
print(f"{sys.argv[2]} median: page {page:.0f} req/s, /v1/search {api:.0f} req/s; median ratio {statistics.median(ratios):.3f}")
PY
}
wrk_rounds bm25 "$PAGE" "$BODY" "http://127.0.0.1:$PORT/v1/search"

# Part 2 (BENCHMARKS.md, "Closest-sentence snippets"): an index with MiniLM vectors (the first 2,000 products),
# served with MiniLM. For the first 40 labelled queries, in `dense` mode (every hit found by the dense leg
# alone: the worst case, the whole budget of sentences) and in `hybrid` mode (the page's default without a
# reranker): the snippets' own time from Server-Timing and how many cards got a closest sentence. Then wrk
# in hybrid mode, page against /v1/search. Skipped when MiniLM is not in the model cache.
if ! "$BIN" models list 2>/dev/null | grep -qi minilm; then
  echo "part 2 skipped: MiniLM is not in the model cache (sieve models pull minilm)"
  exit 0
fi
head -n 2000 "$DATA/abt-buy-products/corpus.jsonl" >"$W/sub.jsonl"
"$BIN" ingest --index "$W/dense" "$W/sub.jsonl" --embedder minilm --device cpu --progress none >/dev/null
PORT2=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$BIN" serve --index "products=$W/dense" --listen "127.0.0.1:$PORT2" --embedder minilm --device cpu 2>/dev/null &
SERVER2=$!
trap 'kill $SERVER $SERVER2 2>/dev/null || true; rm -rf "$W"' EXIT
until curl -sf "http://127.0.0.1:$PORT2/health" >/dev/null; do sleep 0.2; done
python3 - "$DATA/abt-buy-products/queries.jsonl" "$PORT2" <<'PY'
import json, re, statistics, sys, urllib.parse, urllib.request
queries = [json.loads(l)["text"] for l in open(sys.argv[1])][:40]
port = sys.argv[2]
def q(xs, p):
    xs = sorted(xs); return xs[min(len(xs) - 1, int(p * len(xs)))]
for mode in ["dense", "hybrid"]:
    snip, search, render, cards = [], [], [], []
    for rnd in range(2):  # the first round warms the model and the caches; the second is measured
        for text in queries:
            url = f"http://127.0.0.1:{port}/?index=products&mode={mode}&q=" + urllib.parse.quote_plus(text)
            with urllib.request.urlopen(url) as r:
                timing = dict(re.findall(r"(\w+);dur=([\d.]+)", r.headers["Server-Timing"]))
                body = r.read().decode()
            if rnd == 1:
                snip.append(float(timing["snippets"])); search.append(float(timing["search"]))
                render.append(float(timing["render"])); cards.append(body.count('class="snippet closest"'))
    print(f"{mode}: closest-sentence snippets p50 {q(snip, .5):.2f} ms, p99 {q(snip, .99):.2f} ms, "
          f"cards with one per page: median {statistics.median(cards)}, max {max(cards)}, pages with any {sum(c > 0 for c in cards)}/{len(cards)}; "
          f"search p50 {q(search, .5):.2f} ms, render p50 {q(render, .5):.3f} ms")
PY
PAGE2="http://127.0.0.1:$PORT2/?index=products&q=sony+turntable&mode=hybrid"
BODY2=${BODY/\"mode\":\"bm25\"/\"mode\":\"hybrid\"}
echo "hybrid page, closest sentences on it: $(curl -s "$PAGE2" | grep -o 'class="snippet closest"' | wc -l)"
wrk_rounds hybrid "$PAGE2" "$BODY2" "http://127.0.0.1:$PORT2/v1/search"
