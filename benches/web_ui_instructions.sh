#!/usr/bin/env bash
# The search page's cost against POST /v1/search in instructions, not seconds (BENCHMARKS.md, "The web UI's
# search page"): wrk's req/s on this shared 2-vCPU machine swing by ±15% from round to round, while
# callgrind's instruction counts repeat to the last digit for the same binary and requests. The server runs
# under valgrind three times over the whole abt-buy catalog (BM25 only): once answering nothing but warm-up,
# once N more API requests, once N more page requests (the same query and body as benches/web_ui.sh). Each
# count minus the warm-up-only count, over N, is that request's instructions.
#
#   benches/web_ui_instructions.sh [SIEVE_BINARY ...]   (default target/release/sieve; needs valgrind, curl)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${SIEVE_SHARED_DATA:-../shared/data}
N=${N:-100}
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
BODY='{"index":"products","query":"sony turntable","mode":"bm25","rerank":false,"limit":10,"offset":0,"filters":[],"facets":["brand","category","source","price"],"explain":true,"with_documents":true}'
first=${1:-target/release/sieve}
"$first" ingest --index "$W/products" "$DATA/abt-buy-products/corpus.jsonl" --progress none >/dev/null
# instructions BIN WHAT: the server's total instructions after warm-up and N requests of WHAT (none|api|page)
instructions() {
  local bin=$1 what=$2 port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  local page="http://127.0.0.1:$port/?index=products&q=sony+turntable&mode=bm25" api="http://127.0.0.1:$port/v1/search"
  valgrind --tool=callgrind --callgrind-out-file="$W/cg.out" "$bin" serve --index "products=$W/products" \
    --listen "127.0.0.1:$port" >/dev/null 2>"$W/valgrind.log" &
  local server=$!
  until curl -sf "http://127.0.0.1:$port/health" >/dev/null; do sleep 0.5; done
  for _ in $(seq 5); do
    curl -s -o /dev/null "$page"
    curl -s -o /dev/null -X POST -H 'content-type: application/json' -d "$BODY" "$api"
  done
  case $what in
    page) for _ in $(seq "$N"); do curl -s -o /dev/null "$page"; done ;;
    api) for _ in $(seq "$N"); do curl -s -o /dev/null -X POST -H 'content-type: application/json' -d "$BODY" "$api"; done ;;
  esac
  kill -INT "$server"
  wait "$server" 2>/dev/null || true
  awk '/^(summary|totals):/ {print $2; exit}' "$W/cg.out"
  rm -f "$W"/cg.out*
}
for bin in "${@:-$first}"; do
  zero=$(instructions "$bin" none)
  api=$(instructions "$bin" api)
  page=$(instructions "$bin" page)
  python3 -c "
z, a, p, n = $zero, $api, $page, $N
a, p = (a - z) / n, (p - z) / n
print(f'$bin: instructions per request: /v1/search {a / 1e3:.0f}k, page {p / 1e3:.0f}k (the page beyond the API: {(p - a) / 1e3:.0f}k); API/page {a / p:.3f}')"
done
