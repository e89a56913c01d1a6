#!/usr/bin/env python3
"""The peers of Sieve's CPU models, run on the same inputs as `cargo bench --bench models_cpu`.

  setup   builds the random-weight Qwen3 checkpoint (--shape bench: peer_rerank_cpu.py's shape, hidden 256,
          4 layers, 4/2 heads, head_dim 64, MLP 768; --shape qwen3-0.6b: the real 0.6B shape; both with the real
          vocabulary and tokenizer) with Sieve's deterministic generator, and writes the (query, document) pairs
          (query 0 of the Debian set x its first --n-pairs documents, each the concatenation of --doc-join
          consecutive descriptions, truncated to --pair-tokens by the official recipe) and the MiniLM texts.
  rerank  HF transformers, fp32, SDPA, the official recipe: left padding, batch of 50, logits_to_keep=1.
  embed   sentence-transformers all-MiniLM-L6-v2 at batch 1 (one call per text) and batch 32.
  gemm    torch.mm 1024^2 fp32 GFLOP/s (this CPU's practical peak).
Each phase prints one JSON line.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "crates/models/fixtures"))
import make_fixtures as mf  # noqa: E402  (the shared weight generator and template)

BENCH_SPEC = dict(vocab_size=151669, hidden_size=256, intermediate_size=768, num_hidden_layers=4,
                  num_attention_heads=4, num_key_value_heads=2, head_dim=64, max_position_embeddings=4096)
QWEN3_06B_SPEC = dict(vocab_size=151669, hidden_size=1024, intermediate_size=3072, num_hidden_layers=28,
                      num_attention_heads=16, num_key_value_heads=8, head_dim=128, max_position_embeddings=40960)


def read_jsonl(p):
    with open(p) as f:
        return [json.loads(l) for l in f if l.strip()]


def doc_text(d):
    t, x = d.get("title") or "", d.get("text") or ""
    return (t + " " + x).strip() if t else x


def timed(fn, repeat):
    fn()
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def setup(a):
    out = Path(a.out)
    spec = {"bench": BENCH_SPEC, "qwen3-0.6b": QWEN3_06B_SPEC}[a.shape]
    mf.write_qwen3(out / "qwen3-bench", spec, "reranker_tied", 21, Path(a.tokenizer))
    corpus = read_jsonl(Path(a.apt) / "corpus.jsonl")
    queries = read_jsonl(Path(a.apt) / "queries.jsonl")
    k = a.doc_join
    docs = [" ".join(doc_text(d) for d in corpus[i * k: (i + 1) * k]) for i in range(a.n_pairs)]
    pairs = {"query": queries[0]["text"], "instruction": mf.DEFAULT_INSTR, "max_length": a.pair_tokens,
             "documents": docs, "shape": a.shape}
    (out / "pairs.json").write_text(json.dumps(pairs))
    (out / "texts.json").write_text(json.dumps([doc_text(d) for d in corpus[1000: 1000 + a.n_texts]]))
    print(json.dumps({"phase": "setup", "out": str(out)}))


def rerank(a):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    torch.set_num_threads(a.threads)
    out = Path(a.out)
    p = json.loads((out / "pairs.json").read_text())
    tok = AutoTokenizer.from_pretrained(str(out / "qwen3-bench"), padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(str(out / "qwen3-bench"), dtype=torch.float32).eval()
    g = {"query": p["query"], "instruction": p["instruction"], "max_length": p["max_length"], "documents": p["documents"]}
    yes, no = tok.convert_tokens_to_ids("yes"), tok.convert_tokens_to_ids("no")
    pre = tok.encode(mf.PREFIX, add_special_tokens=False)
    suf = tok.encode(mf.SUFFIX, add_special_tokens=False)
    pairs = [f"<Instruct>: {g['instruction']}\n<Query>: {g['query']}\n<Document>: {d}" for d in g["documents"]]
    enc = tok(pairs, padding=False, truncation="longest_first", return_attention_mask=False,
              max_length=g["max_length"] - len(pre) - len(suf))
    ids = [pre + e + suf for e in enc["input_ids"]]
    batch = tok.pad({"input_ids": ids}, padding=True, return_tensors="pt")

    def run():
        with torch.inference_mode():
            return model(**batch, logits_to_keep=1).logits[:, -1, :]

    med = timed(run, a.repeat)
    lg = run()
    scores = torch.sigmoid(lg[:, yes] - lg[:, no]).tolist()
    print(json.dumps({"phase": "rerank", "peer": "transformers", "median_s": med, "pairs": len(ids),
                      "tokens": sum(map(len, ids)), "padded": list(batch["input_ids"].shape), "scores": scores,
                      "threads": a.threads}))


def embed(a):
    import torch
    from sentence_transformers import SentenceTransformer
    torch.set_num_threads(a.threads)
    texts = json.loads((Path(a.out) / "texts.json").read_text())
    st = SentenceTransformer(a.minilm, device="cpu")
    res = {}
    for bs in (1, 32):
        if bs == 1:
            med = timed(lambda: [st.encode([t], batch_size=1) for t in texts], max(1, a.repeat // 2))
        else:
            med = timed(lambda: st.encode(texts, batch_size=bs), max(1, a.repeat // 2))
        res[str(bs)] = len(texts) / med
    print(json.dumps({"phase": "embed", "peer": "sentence-transformers", "texts": len(texts), "texts_per_s": res}))


def gemm(a):
    import torch
    torch.set_num_threads(a.threads)
    n = 1024
    x, y = torch.randn(n, n), torch.randn(n, n)
    best = min(timed(lambda: torch.mm(x, y), 1) for _ in range(5))
    print(json.dumps({"phase": "gemm", "gflops": 2 * n ** 3 / best / 1e9}))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("phase", choices=["setup", "rerank", "embed", "gemm"])
    ap.add_argument("--out", required=True)
    ap.add_argument("--apt", default=str(HERE.parent.parent / "shared/peers/data/apt"))
    ap.add_argument("--tokenizer")
    ap.add_argument("--minilm")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--n-pairs", type=int, default=50)
    ap.add_argument("--pair-tokens", type=int, default=128)
    ap.add_argument("--n-texts", type=int, default=256)
    ap.add_argument("--shape", choices=["bench", "qwen3-0.6b"], default="bench")
    ap.add_argument("--doc-join", type=int, default=1, help="consecutive descriptions per document")
    a = ap.parse_args()
    {"setup": setup, "rerank": rerank, "embed": embed, "gemm": gemm}[a.phase](a)


if __name__ == "__main__":
    main()
