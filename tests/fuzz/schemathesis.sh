#!/usr/bin/env bash
# Property-based fuzzing of `sieve serve` against its own OpenAPI document (/openapi.json) with schemathesis
# (PyPI): every operation, generated valid and invalid inputs, looking for any 5xx answer or a dead server.
# The server runs on loopback with real models: all-MiniLM-L6-v2 and a random-weight Qwen3 reranker (tiny
# shape), and small limits so that generated inputs cannot ask for minutes of CPU (a 504 would be a 5xx).
#   tests/fuzz/schemathesis.sh [OUT_DIR]     (EXAMPLES=N per operation, default 300)
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-target/fuzz}
EXAMPLES=${EXAMPLES:-300}
PORT=${PORT:-7792}
rm -rf "$OUT" && mkdir -p "$OUT"
[ -x .venv-fuzz/bin/schemathesis ] || { python3 -m venv .venv-fuzz && .venv-fuzz/bin/pip install -q schemathesis; }
cargo build --release -q -p sieve
S=./target/release/sieve
$S models synth --out "$OUT/reranker" --shape tiny >/dev/null
$S serve --index "fuzz=$OUT/index" --embedder minilm --reranker "$OUT/reranker" --listen "127.0.0.1:$PORT" \
  --max-rerank-documents 32 --max-embed-inputs 32 --max-document-chars 4000 --max-body-bytes 1048576 \
  > "$OUT/server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 120); do curl -sf "127.0.0.1:$PORT/ready" >/dev/null && break; sleep 0.5; done
set +e
.venv-fuzz/bin/schemathesis run "http://127.0.0.1:$PORT/openapi.json" --checks not_a_server_error \
  --max-examples "$EXAMPLES" --workers 2 --request-timeout 120 --no-color 2>&1 | tee "$OUT/schemathesis.txt"
status=${PIPESTATUS[0]}
set -e
curl -sf "127.0.0.1:$PORT/health" >/dev/null || { echo "the server died during the run" >&2; status=1; }
curl -s "127.0.0.1:$PORT/metrics" | awk '/^sieve_http_requests_total/ {n += $2; if ($0 ~ /status="5/) e += $2}
  END {print "requests served:", n, "- answered 5xx:", e + 0; exit (e > 0)}' || status=1
echo "schemathesis.sh: exit $status" >&2
exit $status
