#!/usr/bin/env python3
"""Markdown tables of benches/hnsw.sh's output: one run (`hnsw_table.py DIR`), or the medians over several
runs (`hnsw_table.py DIR1 DIR2 DIR3`: each QPS ratio is taken within its own run, then the median is quoted)."""
import json
import statistics
import sys
from pathlib import Path


def load(out: Path):
    rows = []
    for name in ("sieve.jsonl", "peers.jsonl"):
        for line in (out / name).read_text().splitlines():
            r = json.loads(line)
            rows.append({
                "lib": r["lib"], "ef": r.get("ef"), "build_s": r.get("build_s"),
                "recall": r.get("recall_at_10", r.get("recall_at_k")), "qps": r.get("qps_1t_per_query"),
                "p50": r.get("lat_p50_us"), "p99": r.get("lat_p99_us"),
            })
    base = {r["ef"]: r["qps"] for r in rows if r["lib"] == "hnswlib"}
    for r in rows:
        r["ratio"] = r["qps"] / base[r["ef"]] if r["ef"] in base and r["qps"] else None
    return rows


def fmt(v, f):
    return f.format(v) if v is not None else "–"


runs = [load(Path(d)) for d in sys.argv[1:]]
keys = [(r["lib"], r["ef"]) for r in runs[0]]
med = lambda xs: statistics.median(xs) if xs and all(x is not None for x in xs) else None
print(f"Medians over {len(runs)} run(s); the QPS ratio is against hnswlib at the same ef, in the same run.\n")
print("| lib | ef | build s | recall@10 | QPS (1 thread, per query) | vs hnswlib | p50 µs | p99 µs |")
print("|---|---|---|---|---|---|---|---|")
for lib, ef in keys:
    same = [next(r for r in run if r["lib"] == lib and r["ef"] == ef) for run in runs]
    m = {k: med([r[k] for r in same]) for k in ("build_s", "recall", "qps", "ratio", "p50", "p99")}
    print(f"| {lib} | {ef if ef is not None else '–'} | {fmt(m['build_s'], '{:.2f}')} | {fmt(m['recall'], '{:.4f}')} | "
          f"{fmt(m['qps'], '{:,.0f}')} | {fmt(m['ratio'], '{:.2f}x')} | {fmt(m['p50'], '{:.0f}')} | {fmt(m['p99'], '{:.0f}')} |")
if len(runs) > 1:
    print("\nPer-run QPS ratios vs hnswlib (sieve / faiss HNSW):")
    for lib, ef in keys:
        if ef is None or lib == "hnswlib":
            continue
        same = [next(r for r in run if r["lib"] == lib and r["ef"] == ef) for run in runs]
        print(f"- {lib}, ef {ef}: " + ", ".join(fmt(r["ratio"], "{:.2f}") for r in same))
