#!/usr/bin/env python3
"""The peers of benches/hnsw_updates.rs: hnswlib and faiss IndexHNSWFlat built from the same base rows with the
same parameters (M=16, ef_construction=200, inner product on unit vectors), then given the same writes, `batch`
vectors at a time, on --write-threads threads (as many as Sieve's rayon pool, which inserts batches of 64 or more
in parallel); recall@10 at ef 64 afterwards against the exact answer; and a save of the whole
index (median of 3). One JSON line per library, to stdout and --out.

  python benches/hnsw_updates_peers.py --base BASE.npy --queries Q.npy --writes 50 --batch 1 --out peers.jsonl
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

import numpy as np


def exact_top10(base: np.ndarray, queries: np.ndarray) -> np.ndarray:
    sims = queries @ base.T
    return np.argpartition(-sims, 10, axis=1)[:, :10]


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth)]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--queries", required=True)
    ap.add_argument("--writes", type=int, default=50)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--out", required=True)
    ap.add_argument("--build-threads", type=int, default=os.cpu_count() or 1)
    # Sieve inserts a batch of 64 or more on all of rayon's threads: the peers get as many for their writes
    ap.add_argument("--write-threads", type=int, default=os.cpu_count() or 1)
    a = ap.parse_args()
    import faiss
    import hnswlib

    base = np.ascontiguousarray(np.load(a.base), dtype=np.float32)
    queries = np.ascontiguousarray(np.load(a.queries), dtype=np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    n, dim = base.shape
    initial = n - a.writes * a.batch
    truth = exact_top10(base, queries)
    lines = []

    def emit(line: dict) -> None:
        print(json.dumps(line), flush=True)
        lines.append(line)

    def writes(add) -> list[float]:
        ms = []
        for w in range(a.writes):
            lo = initial + w * a.batch
            t = time.perf_counter()
            add(lo, base[lo:lo + a.batch])
            ms.append((time.perf_counter() - t) * 1e3)
        return ms

    def saves(save) -> float:
        ms = []
        for _ in range(3):
            with tempfile.TemporaryDirectory(dir=os.path.dirname(a.out) or ".") as d:
                t = time.perf_counter()
                save(os.path.join(d, "index"))
                ms.append((time.perf_counter() - t) * 1e3)
        return statistics.median(ms)

    # hnswlib
    h = hnswlib.Index(space="ip", dim=dim)
    h.init_index(max_elements=n, M=16, ef_construction=200)
    t = time.perf_counter()
    h.add_items(base[:initial], np.arange(initial), num_threads=a.build_threads)
    build_s = time.perf_counter() - t
    ms = writes(lambda lo, rows: h.add_items(rows, np.arange(lo, lo + len(rows)), num_threads=a.write_threads))
    h.set_ef(64)
    found, _ = h.knn_query(queries, k=10, num_threads=1)
    emit({"lib": "hnswlib", "n": initial, "dim": dim, "batch": a.batch, "writes": a.writes, "build_s": build_s,
          "write_ms_p50": statistics.median(ms), "recall_at_10_ef64": recall(found, truth),
          "save_ms_p50": saves(lambda p: h.save_index(p))})

    # faiss
    faiss.omp_set_num_threads(a.build_threads)
    f = faiss.IndexHNSWFlat(dim, 16, faiss.METRIC_INNER_PRODUCT)
    f.hnsw.efConstruction = 200
    t = time.perf_counter()
    f.add(base[:initial])
    build_s = time.perf_counter() - t
    faiss.omp_set_num_threads(a.write_threads)
    ms = writes(lambda lo, rows: f.add(rows))
    f.hnsw.efSearch = 64
    _, found = f.search(queries, 10)
    emit({"lib": "faiss", "n": initial, "dim": dim, "batch": a.batch, "writes": a.writes, "build_s": build_s,
          "write_ms_p50": statistics.median(ms), "recall_at_10_ef64": recall(found, truth),
          "save_ms_p50": saves(lambda p: faiss.write_index(f, p))})

    with open(a.out, "w") as out:
        out.writelines(json.dumps(l) + "\n" for l in lines)


if __name__ == "__main__":
    main()
