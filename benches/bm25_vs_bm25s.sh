#!/usr/bin/env bash
# BM25 speed, Sieve vs bm25s (the peer in ../shared/peers/peer_bm25.py), on the same corpus and queries, in
# one run, both single-threaded and pinned to the same core (taskset -c $CORE, default 1), both at k=10:
#   indexing docs/s (bm25s: tokenize + index; Sieve: `sieve eval` ingest through the real JSONL path, 1 thread)
#   query throughput, both as full passes over all the queries, best of 3 passes on each side (bm25s: a batch
#   retrieval, query tokenization excluded; Sieve: the queries one after another, analysis included), and Sieve's
#   p50/p99 (each query's median over the 3 passes).
# For qbqtc-zh a second peer, bm25s with jieba search-mode tokens (the published Chinese baseline), does the
# same segmentation work as Sieve; peer_bm25.py's default tokenizer keeps each Han run as one token.
# Usage: benches/bm25_vs_bm25s.sh [OUT_DIR]   (needs python3; creates .venv-peers with bm25s on first use)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-benches/out/bm25}
SHARED=${SHARED:-../shared}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
SHARED=$(cd "$SHARED" && pwd)
if [ ! -x .venv-peers/bin/python ]; then
  python3 -m venv .venv-peers
  .venv-peers/bin/pip install -q bm25s==0.3.16 numpy==2.4.6 PyStemmer==3.1.0 jieba==0.42.1
fi
P=$PWD/.venv-peers/bin/python
cargo build --release -q -p sieve
SIEVE=$PWD/target/release/sieve
CORE=${CORE:-1}
PIN="taskset -c $CORE"

# qbqtc-zh in BEIR layout for the peer (ids/body renamed; same rows, same queries, same judgments).
BEIR_QBQTC="$OUT/beir-qbqtc-zh"
if [ ! -f "$BEIR_QBQTC/qrels/test.tsv" ]; then
  mkdir -p "$BEIR_QBQTC/qrels"
  "$P" - "$SHARED/data/qbqtc-zh" "$BEIR_QBQTC" <<'PY'
import json, sys, os
src, dst = sys.argv[1], sys.argv[2]
with open(f"{src}/corpus.jsonl") as f, open(f"{dst}/corpus.jsonl", "w") as g:
    for line in f:
        d = json.loads(line)
        g.write(json.dumps({"_id": d["id"], "title": d.get("title") or "", "text": d.get("body") or ""}, ensure_ascii=False) + "\n")
with open(f"{src}/queries.jsonl") as f, open(f"{dst}/queries.jsonl", "w") as g:
    for line in f:
        q = json.loads(line)
        g.write(json.dumps({"_id": q["id"], "text": q["text"]}, ensure_ascii=False) + "\n")
with open(f"{src}/qrels.tsv") as f, open(f"{dst}/qrels/test.tsv", "w") as g:
    g.write("query-id\tcorpus-id\tscore\n")
    for line in f:
        g.write(line)
PY
fi

run() {  # name beir_dir sieve_dataset_dir
  local name=$1 beir=$2 ds=$3
  echo "== $name" >&2
  (cd "$SHARED/peers" && $PIN "$P" peer_bm25.py --beir "$beir" --k 10 --repeat 3 --tag "$name" --out "$OUT/peer-$name.jsonl") >&2
  $PIN "$SIEVE" eval --dataset "$ds" --depth 10 --repeat 3 --threads 1 --out "$OUT/sieve-$name" >/dev/null
}
rm -f "$OUT"/peer-*.jsonl
run qbqtc-zh "$BEIR_QBQTC" "$SHARED/data/qbqtc-zh"
echo "== qbqtc-zh, bm25s + jieba" >&2
$PIN "$P" benches/bm25s_jieba.py "$SHARED/data/qbqtc-zh" "$OUT/peer-jieba-qbqtc-zh.json" >&2
run apt "$SHARED/peers/data/apt" "$SHARED/peers/data/apt"

"$P" - "$OUT" <<'PY'
import json, sys, glob, os
out = sys.argv[1]
rows = []
for name in ["qbqtc-zh", "apt"]:
    peer = [json.loads(l) for l in open(f"{out}/peer-{name}.jsonl")][-1]
    # `sieve eval` writes a list of reports (one per mode); the BM25 one is the only one here
    sieve = [r for p in glob.glob(f"{out}/sieve-{name}/{name}.json") for r in json.load(open(p))][0]
    # Sieve QPS: queries / the best full pass, as bm25s's best batch pass
    qps = sieve["queries"] / min(sieve["pass_seconds"])
    rows.append((name, peer, sieve, qps))
jieba = json.load(open(f"{out}/peer-jieba-qbqtc-zh.json"))
q = [r for r in rows if r[0] == "qbqtc-zh"][0]
rows.append(("qbqtc-zh (peer: bm25s+jieba)", jieba, q[2], q[3]))
print("| corpus | docs | bm25s index docs/s | Sieve index docs/s | ratio | bm25s QPS | Sieve QPS | ratio | Sieve p50 ms | Sieve p99 ms |")
print("|---|---|---|---|---|---|---|---|---|---|")
for name, peer, sieve, qps in rows:
    print(f"| {name} (peer nDCG@10 {peer['ndcg_at_10']:.3f}, Sieve {sieve['ndcg_at_10']:.3f}) | {sieve['docs']} | {peer['index_docs_per_s']:.0f} | {sieve['index_docs_per_s']:.0f} | {sieve['index_docs_per_s']/peer['index_docs_per_s']:.2f}x "
          f"| {peer['qps']:.0f} | {qps:.0f} | {qps/peer['qps']:.2f}x | {sieve['latency_ms_p50']:.3f} | {sieve['latency_ms_p99']:.3f} |")
PY
