#!/usr/bin/env bash
# Property-based fuzzing of `sieve serve` against its own OpenAPI document (/openapi.json) with schemathesis
# (PyPI): every operation, generated valid and invalid inputs, with all of schemathesis' checks (`--checks all`:
# no 5xx, status codes, content types, headers and bodies as documented, schema-valid requests accepted,
# schema-violating ones refused, authentication enforced as declared). A dead server or any 5xx fails too.
#
# Two passes, each against a fresh server on loopback:
#   models:    all-MiniLM-L6-v2 and a random-weight Qwen3 reranker (tiny shape), with an API key;
#   no-models: BM25 only, no API key (the served document then declares no security). Here the model routes
#              answer their documented 501 `model_not_loaded` by design, so schemathesis' own 5xx check is
#              off; every other check runs, and the server's metrics must show no 5xx but those 501s.
# Small limits keep generated inputs from asking for minutes of CPU (a 504 would be a 5xx).
#   tests/fuzz/schemathesis.sh [OUT_DIR]     (EXAMPLES=N per operation, default 300; CHECKS=… default all;
#                                             PASSES="models no-models")
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-target/fuzz}
EXAMPLES=${EXAMPLES:-300}
PORT=${PORT:-7792}
KEY=fuzz-key
rm -rf "$OUT" && mkdir -p "$OUT"
[ -x .venv-fuzz/bin/schemathesis ] || { python3 -m venv .venv-fuzz && .venv-fuzz/bin/pip install -q schemathesis; }
cargo build --release -q -p sieve
S=./target/release/sieve
$S models synth --out "$OUT/reranker" --shape tiny >/dev/null

status=0
fuzz() {  # pass-name allowed-5xx-regex [serve arguments...]
  local name=$1 allowed=$2 auth=() checks=()
  shift 2
  mkdir -p "$OUT/$name"
  $S serve --index "fuzz=$OUT/$name/index" --listen "127.0.0.1:$PORT" \
    --max-rerank-documents 32 --max-embed-inputs 32 --max-document-chars 4000 --max-body-bytes 1048576 "$@" \
    > "$OUT/$name/server.log" 2>&1 &
  local server=$!
  for _ in $(seq 120); do curl -sf "127.0.0.1:$PORT/ready" >/dev/null && break; sleep 0.5; done
  [[ " $* " == *" --api-key "* ]] && auth=(-H "Authorization: Bearer $KEY")
  [ -n "$allowed" ] && checks=(--exclude-checks not_a_server_error)
  set +e
  .venv-fuzz/bin/schemathesis --config-file tests/fuzz/schemathesis.toml run "http://127.0.0.1:$PORT/openapi.json" --checks "${CHECKS:-all}" "${checks[@]}" "${auth[@]}" \
    --max-examples "$EXAMPLES" --workers "${WORKERS:-1}" --request-timeout 120 --no-color 2>&1 | tee "$OUT/$name/schemathesis.txt"
  local rc=${PIPESTATUS[0]}
  set -e
  curl -sf "127.0.0.1:$PORT/health" >/dev/null || { echo "$name: the server died during the run" >&2; rc=1; }
  curl -s "${auth[@]}" "127.0.0.1:$PORT/metrics" | awk -v pass="$name" -v allowed="${allowed:-none}" \
    '/^sieve_http_requests_total/ {n += $2; if ($0 ~ /status="5/) { if ($0 ~ "status=\"" allowed "\"") a += $2; else e += $2 } }
     END {print pass ": requests served:", n, "- answered 5xx:", e + 0, "- documented", allowed ":", a + 0; exit (e > 0)}' || rc=1
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  echo "schemathesis.sh: pass $name: exit $rc" >&2
  [ "$rc" = 0 ] || status=1
}
for pass in ${PASSES:-models no-models}; do
  case $pass in
    models) fuzz models "" --embedder minilm --reranker "$OUT/reranker" --api-key "$KEY" ;;
    no-models) fuzz no-models 501 ;;
    *) echo "unknown pass $pass (models, no-models)" >&2; exit 2 ;;
  esac
done
echo "schemathesis.sh: exit $status" >&2
exit $status
