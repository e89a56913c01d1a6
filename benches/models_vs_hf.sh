#!/usr/bin/env bash
# CPU models, Sieve vs the reference implementations, on the same inputs, in one run, ROUNDS rounds alternating
# (peer, Sieve, peer, Sieve, ...), medians reported:
#   reranker: a random-weight Qwen3 (peer_rerank_cpu.py's shape, real tokenizer) on 50 (query, document) pairs of
#             ~128 tokens: HF transformers fp32 (batch 50, left padding, logits_to_keep=1) vs Sieve with and
#             without prefix sharing; pairs/s, and Sieve's scores checked against transformers'.
#   embedder: all-MiniLM-L6-v2 on 256 Debian descriptions, batch 1 and 32: sentence-transformers vs Sieve.
# Both sides use THREADS threads [2]: torch.set_num_threads on the peer, RAYON_NUM_THREADS for Sieve. The script
# fails (exit 1) when a Sieve score differs from transformers' by more than SCORE_TOL [1e-5; the difference seen
# is ~2e-7]. Usage: benches/models_vs_hf.sh [OUT_DIR] [ROUNDS]
# The reranker's inputs can be changed through the environment (defaults in brackets): SHAPE [bench] or qwen3-0.6b
# (the real 0.6B shape), PAIRS [50], PAIR_TOKENS [128] (the official recipe's max_length), DOC_JOIN [1] (Debian
# descriptions per document, for documents longer than one), REPEAT [5] (timed runs per side and round), and
# PARTS [rerank,embed]. For example the real shape on ~512-token documents, reranker only:
#   SHAPE=qwen3-0.6b PAIRS=4 PAIR_TOKENS=560 DOC_JOIN=12 REPEAT=2 PARTS=rerank benches/models_vs_hf.sh OUT 3
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-benches/out/models}
ROUNDS=${2:-3}
SHAPE=${SHAPE:-bench}
PAIRS=${PAIRS:-50}
PAIR_TOKENS=${PAIR_TOKENS:-128}
DOC_JOIN=${DOC_JOIN:-1}
REPEAT=${REPEAT:-5}
PARTS=${PARTS:-rerank,embed}
THREADS=${THREADS:-2}
SCORE_TOL=${SCORE_TOL:-1e-5}
export RAYON_NUM_THREADS=$THREADS
SHARED=${SHARED:-../shared}
mkdir -p "$OUT"
if ! .venv-peers/bin/python -c "import transformers, sentence_transformers" 2>/dev/null; then
  [ -x .venv-peers/bin/python ] || python3 -m venv .venv-peers
  .venv-peers/bin/pip install -q -r "$SHARED/peers/requirements.txt"
fi
P=.venv-peers/bin/python
cargo build --release -q -p sieve
./target/release/sieve models pull >/dev/null
CACHE=${SIEVE_MODEL_CACHE:-$HOME/.cache/sieve/models}
$P benches/models_peer.py setup --out "$OUT" --apt "$SHARED/peers/data/apt" --tokenizer "$CACHE/qwen3-tokenizer" \
  --shape "$SHAPE" --n-pairs "$PAIRS" --pair-tokens "$PAIR_TOKENS" --doc-join "$DOC_JOIN" >/dev/null
cargo bench -q --bench models_cpu --no-run 2>/dev/null
LOG="$OUT/runs.jsonl"
: > "$LOG"
$P benches/models_peer.py gemm --out "$OUT" --threads "$THREADS" >> "$LOG"
for r in $(seq "$ROUNDS"); do
  echo "round $r/$ROUNDS" >&2
  if [[ ,$PARTS, == *,rerank,* ]]; then
    $P benches/models_peer.py rerank --out "$OUT" --repeat "$REPEAT" --threads "$THREADS" 2>/dev/null >> "$LOG"
    cargo bench -q --bench models_cpu -- "$OUT" --only rerank --repeat "$REPEAT" 2>/dev/null | grep '^{' >> "$LOG"
  fi
  if [[ ,$PARTS, == *,embed,* ]]; then
    $P benches/models_peer.py embed --out "$OUT" --minilm "$CACHE/all-MiniLM-L6-v2" --repeat "$REPEAT" --threads "$THREADS" 2>/dev/null >> "$LOG"
    cargo bench -q --bench models_cpu -- "$OUT" --only embed --repeat "$REPEAT" 2>/dev/null | grep '^{' >> "$LOG"
  fi
done
$P - "$LOG" "$OUT/qwen3-bench/config.json" "$SCORE_TOL" "$THREADS" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
tol, threads = float(sys.argv[3]), sys.argv[4]
cfg = json.load(open(sys.argv[2]))
gemm = next(r["gflops"] for r in rows if r["phase"] == "gemm")
med = statistics.median
hf = [r for r in rows if r["phase"] == "rerank" and r.get("peer")]
sv = lambda share: [r for r in rows if r["phase"] == "rerank" and r.get("engine") == "sieve" and r["share_prefix"] == share]
ratio = lambda a, b: " / ".join(f"{x / y:.2f}" for x, y in zip(a, b))
if hf:
  pairs, tokens = hf[0]["pairs"], hf[0]["tokens"]
  # Forward FLOPs of the useful tokens (the checkpoint's shape); 2 per MAC.
  h, L, H, KV, D, I = (cfg[k] for k in ("hidden_size", "num_hidden_layers", "num_attention_heads",
                                        "num_key_value_heads", "head_dim", "intermediate_size"))
  dense = 2 * tokens * L * (h * H * D * 2 + h * KV * D * 2 + 3 * h * I)
  diff = max(abs(a - b) for r in sv(False) + sv(True) for a, b in zip(r["scores"], hf[0]["scores"]))
  t_hf = med(r["median_s"] for r in hf)
  print(f"GEMM peak (torch.mm 1024^2, {threads} threads): {gemm:.0f} GFLOP/s; {pairs} pairs, {tokens} tokens; "
        f"max |score - transformers| = {diff:.2e} (tolerance {tol:g})")
  print(f"| reranker ({pairs} x {tokens // pairs} tokens, {h} hidden x {L} layers, {H}/{KV} heads x {D}) | median s | pairs/s | vs transformers | dense GFLOP/s (unshared-equivalent) | of GEMM peak |")
  print("|---|---|---|---|---|---|")
  for name, t in (("HF transformers fp32", t_hf), ("Sieve, no prefix sharing", med(r["median_s"] for r in sv(False))),
                  ("Sieve, prefix sharing", med(r["median_s"] for r in sv(True)))):
      print(f"| {name} | {t:.3f} | {pairs / t:.1f} | {t_hf / t:.2f}x | {dense / t / 1e9:.0f} | {dense / t / 1e9 / gemm:.0%} |")
  print(f"\nper round, transformers time / Sieve time: no sharing {ratio([r['median_s'] for r in hf], [r['median_s'] for r in sv(False)])}; "
        f"sharing {ratio([r['median_s'] for r in hf], [r['median_s'] for r in sv(True)])}")
st = [r for r in rows if r["phase"] == "embed" and r.get("peer")]
se = [r for r in rows if r["phase"] == "embed" and r.get("engine") == "sieve"]
if st:
  ntok = se[0]["tokens"]
  flop_per_tok = 2 * 6 * (4 * 384 * 384 + 2 * 384 * 1536)
  print()
  print("| all-MiniLM-L6-v2 (256 texts) | batch | texts/s | vs sentence-transformers | GFLOP/s | of GEMM peak |")
  print("|---|---|---|---|---|---|")
  for bs in ("1", "32"):
      a = med(r["texts_per_s"][bs] for r in st)
      b = med(r["texts_per_s"][bs] for r in se)
      for name, v in (("sentence-transformers", a), ("Sieve", b)):
          g = v * ntok / se[0]["texts"] * flop_per_tok / 1e9
          print(f"| {name} | {bs} | {v:.1f} | {v / a:.2f}x | {g:.0f} | {g / gemm:.0%} |")
  for bs in ("1", "32"):
      print(f"per round, batch {bs}, Sieve / sentence-transformers texts/s: "
            + ratio([r["texts_per_s"][bs] for r in se], [r["texts_per_s"][bs] for r in st]))
if hf and diff > tol:
  sys.exit(f"FAIL: Sieve's scores differ from transformers' by {diff:.2e}, over the tolerance {tol:g}")
PY
