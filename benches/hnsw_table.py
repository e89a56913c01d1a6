#!/usr/bin/env python3
"""Markdown table of benches/hnsw.sh's output: Sieve and the peers, per ef, side by side."""
import json
import sys
from pathlib import Path

out = Path(sys.argv[1])
rows = []
for line in (out / "sieve.jsonl").read_text().splitlines():
    r = json.loads(line)
    rows.append((r["lib"], r["ef"], r.get("build_s"), r["recall_at_10"], r["qps_1t_per_query"], r["lat_p50_us"], r["lat_p99_us"]))
for line in (out / "peers.jsonl").read_text().splitlines():
    r = json.loads(line)
    lib = r.get("lib") or r.get("library")
    rows.append((lib, r.get("ef"), r.get("build_s"), r.get("recall_at_k"), r.get("qps_1t_per_query"), r.get("lat_p50_us"), r.get("lat_p99_us")))
hnswlib = {r[1]: r[4] for r in rows if r[0] and "hnswlib" in r[0]}
print("| lib | ef | build s | recall@10 | QPS (1 thread, per query) | vs hnswlib | p50 µs | p99 µs |")
print("|---|---|---|---|---|---|---|---|")
for lib, ef, build, rec, qps, p50, p99 in rows:
    ratio = f"{qps / hnswlib[ef]:.2f}x" if ef in hnswlib and qps else "–"
    fmt = lambda v, f: (f.format(v) if v is not None else "–")
    print(f"| {lib} | {ef if ef is not None else '–'} | {fmt(build, '{:.2f}')} | {fmt(rec, '{:.4f}')} | {fmt(qps, '{:,.0f}')} | {ratio} | {fmt(p50, '{:.0f}')} | {fmt(p99, '{:.0f}')} |")
