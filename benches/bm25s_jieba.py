#!/usr/bin/env python3
"""bm25s with jieba search-mode tokenization: the Chinese BM25 baseline of shared/data/README.md
(bm25s 0.3.16, k1=0.9, b=0.4, jieba.lcut_for_search, punctuation dropped, title + body in one field),
timed like ../shared/peers/peer_bm25.py: index docs/s = docs / (tokenize + index), QPS = queries / best of
`--repeat` batch retrievals at k (query tokenization excluded), plus nDCG@10 on the same qrels.

Usage: bm25s_jieba.py DATASET_DIR OUT.json [--k 10] [--repeat 3]
"""
import argparse
import json
import math
import re
import time

import bm25s
import jieba

PUNCT = re.compile(r"^[\W_]+$", re.UNICODE)


def tok(texts):
    return [[w for w in jieba.lcut_for_search(t) if w.strip() and not PUNCT.match(w)] for t in texts]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dataset")
    ap.add_argument("out")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    jieba.initialize()
    docs = [json.loads(l) for l in open(f"{args.dataset}/corpus.jsonl", encoding="utf-8")]
    ids = [d["id"] for d in docs]
    texts = [((d.get("title") or "") + " " + (d.get("body") or "")).strip() for d in docs]
    qrels = {}
    for line in open(f"{args.dataset}/qrels.tsv"):
        q, d, g = line.rstrip("\n").split("\t")[:3]
        qrels.setdefault(q, {})[d] = int(float(g))
    queries = [json.loads(l) for l in open(f"{args.dataset}/queries.jsonl", encoding="utf-8")]
    queries = [q for q in queries if any(g > 0 for g in qrels.get(q["id"], {}).values())]

    t0 = time.perf_counter()
    ctoks = tok(texts)
    t_tok = time.perf_counter() - t0
    retr = bm25s.BM25(k1=0.9, b=0.4, method="lucene")
    t0 = time.perf_counter()
    retr.index(ctoks, show_progress=False)
    t_idx = time.perf_counter() - t0
    vocab = retr.vocab_dict
    qt = [[w for w in q if w in vocab] or [next(iter(vocab))] for q in tok([q["text"] for q in queries])]
    best = float("inf")
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        res, _ = retr.retrieve(qt, k=args.k, show_progress=False, n_threads=1)
        best = min(best, time.perf_counter() - t0)
    nd = []
    for qi, q in enumerate(queries):
        rel = qrels[q["id"]]
        ranked = [ids[j] for j in res[qi]]
        dcg = sum(rel.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranked[:10]))
        ideal = sorted((g for g in rel.values() if g > 0), reverse=True)
        idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal[:10]))
        nd.append(dcg / idcg if idcg else 0.0)
    out = {"lib": "bm25s+jieba", "n_docs": len(docs), "nq": len(queries), "tokenize_s": round(t_tok, 3),
           "index_s": round(t_idx, 3), "index_docs_per_s": round(len(docs) / (t_tok + t_idx), 1),
           "qps": round(len(queries) / best, 1), "ndcg_at_10": round(sum(nd) / len(nd), 4), "k": args.k}
    json.dump(out, open(args.out, "w"))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
