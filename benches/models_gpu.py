#!/usr/bin/env python3
"""Sieve's CUDA reranker and embedder against HF transformers on one GPU, in one run (see models_gpu.sh).

1. Builds random-weight checkpoints with the real Qwen3-0.6B shape (28 layers, hidden 1024, 16/8 heads,
   MLP 3072, the real 151,669-token vocabulary and tokenizer) with Sieve's deterministic generator: a reranker
   (`model.` prefix, tied head) and an embedding model.
2. Correctness: reranker scores of Sieve (bf16 on each of its GPU paths, see ENGINES; and f32) against
   transformers (fp32 and bf16) on mixed cases (English, Chinese, mixed, empty and truncated documents, uneven
   lengths) and on the timed batch. Tolerance: Sieve-bf16's largest score deviation from transformers-fp32 must
   be at most twice transformers-bf16's own plus 0.01; Sieve-f32 within 1e-3 of transformers-fp32. Attention
   alone: `models_gpu attn-check` runs each fused attention kernel against the f32 batched-GEMM path (at most
   twice the bf16 GEMM path's own error plus 1e-3) on rows straddling the kernels' tiles, with a shared prefix
   and the last-position-only layout, and times them.
3. Timing: a top-50 rerank (one query, 50 documents of exactly 32, 128 and 512 tokens) end to end, text in,
   scores out: transformers bf16 (SDPA, batch of 50, the official template, left padding, logits_to_keep=1),
   with and without prefix sharing (the shared part run once, its KV cache repeated for the batch), and each of
   Sieve's GPU paths with and without prefix sharing. Medians of --repeat runs after warm-up.
4. Embedding: one short query's latency and bulk docs/s (1,000 documents of 128 tokens), Sieve vs transformers
   (bf16, SDPA, last-token pooling, batch 128). Vectors: Sieve's (bf16 and f32, whole batch and each input
   alone, full size and Matryoshka 32) against transformers' (fp32 and bf16; the Qwen3-Embedding recipe: query
   instruction format, <|endoftext|> appended once after truncation, left padding, last token, L2 norm).
   Tolerance, on 1 - cosine per input: Sieve-bf16 at most twice transformers-bf16's own plus 1e-3;
   Sieve-f32 at most 1e-4 (the CPU parity tests' cosine >= 0.9999). Token counts must be equal.
5. A bf16 matrix-product peak measured in the same run (8192^3 through torch), for the fraction of peak:
   FLOPs = 2 x non-embedding parameters x tokens processed (the shared prefix counted once).
Prints a table last and writes everything to OUT/models_gpu.json, rewritten after every phase, so a run cut
short (the device tool's per-command limit) keeps what it measured; `--deadline S` starts no new phase or engine
after S seconds. A path that fails (a crashing kernel) is recorded under "errors" and the run goes on with the
others. `--report A.json B.json ...` merges partial runs (later files win per phase) and prints their table.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "crates/models/fixtures"))
import make_fixtures as mf  # noqa: E402  (the reranker template, shared with the CPU fixtures)

import torch  # noqa: E402

LENGTHS = (32, 128, 512)
DEV = "cuda"  # --device cpu runs the whole script here, on the bench shape, as a dry run of its logic
QUERY = "which laptop has the longest battery life for travel"
# Sieve's GPU paths, each a process environment: the default (attention as batched GEMMs + masked softmax), the
# WMMA fused attention, the FlashAttention-2 style kernel, the 16-byte-vector norm/SwiGLU kernels, and both.
# Ordered by what a run cut short by --deadline should have measured first (the WMMA kernel was measured before).
ENGINES = {
    "sieve": {},
    "sieve-fa2-vec": {"SIEVE_ATTN": "fa2", "SIEVE_CUDA_VEC": "1"},
    "sieve-fa2": {"SIEVE_ATTN": "fa2"},
    "sieve-vec": {"SIEVE_CUDA_VEC": "1"},
    "sieve-fused": {"SIEVE_ATTN": "fused"},
}


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def run(cmd, env=None):
    log("$", " ".join(map(str, cmd)))
    p = subprocess.run(list(map(str, cmd)), capture_output=True, text=True, env={**os.environ, **(env or {})})
    if p.returncode != 0:
        raise RuntimeError(f"{cmd[0]} {cmd[1]} failed ({p.returncode}):\n{p.stderr[-4000:]}")
    if p.stderr.strip():
        log(p.stderr.strip()[-2000:])
    return p.stdout


def try_run(res, what, cmd, env=None):
    """run(), except that a failure is recorded in res["errors"] and None returned: one broken path must not
    cost the other paths' measurements."""
    try:
        return run(cmd, env)
    except RuntimeError as e:
        res.setdefault("errors", []).append({"what": what, "error": str(e)[-3000:]})
        log("FAILED:", what, str(e)[-3000:])
        return None


def single_token_words(tok, n=4000, seed=5):
    """Lower-case words whose ' word' is exactly one token: documents of N of them are exactly N tokens."""
    vocab = tok.get_vocab()
    cand = sorted(t[1:] for t in vocab if t.startswith("\u0120") and t[1:].isascii() and t[1:].isalpha()
                  and t[1:].islower() and 3 <= len(t) - 1 <= 9)
    random.Random(seed).shuffle(cand)
    out = []
    for w in cand:
        if len(tok.encode(" " + w, add_special_tokens=False)) == 1:
            out.append(w)
            if len(out) == n:
                break
    return out


def docs_of(words, n_docs, length, seed):
    r = random.Random(seed)
    return [" ".join(r.choice(words) for _ in range(length)) for _ in range(n_docs)]


class HF:
    """The official Qwen3-Reranker recipe on transformers."""

    def __init__(self, path, dtype):
        from transformers import AutoModelForCausalLM, AutoTokenizer
        self.tok = AutoTokenizer.from_pretrained(path, padding_side="left")
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, attn_implementation="sdpa").to(DEV).eval()
        self.yes = self.tok.convert_tokens_to_ids("yes")
        self.no = self.tok.convert_tokens_to_ids("no")
        self.pre = self.tok.encode(mf.PREFIX, add_special_tokens=False)
        self.suf = self.tok.encode(mf.SUFFIX, add_special_tokens=False)

    def ids(self, query, docs, instruction=None, max_length=8192):
        instruction = instruction or mf.DEFAULT_INSTR
        pairs = [f"<Instruct>: {instruction}\n<Query>: {query}\n<Document>: {d}" for d in docs]
        enc = self.tok(pairs, padding=False, truncation="longest_first", return_attention_mask=False,
                       max_length=max_length - len(self.pre) - len(self.suf))
        return [self.pre + e + self.suf for e in enc["input_ids"]]

    def _scores(self, logits):
        lg = logits.float()
        return torch.sigmoid(lg[:, self.yes] - lg[:, self.no]), lg[:, self.yes] - lg[:, self.no]

    @torch.inference_mode()
    def score(self, query, docs, instruction=None, max_length=8192):
        ids = self.ids(query, docs, instruction, max_length)
        batch = self.tok.pad({"input_ids": ids}, padding=True, return_tensors="pt").to(DEV)
        s, raw = self._scores(self.model(**batch, logits_to_keep=1).logits[:, -1, :])
        return s.tolist(), raw.tolist(), ids

    @torch.inference_mode()
    def score_shared(self, query, docs, instruction=None, max_length=8192):
        """The common token prefix run once; its KV cache repeated for the batch; the rest left-padded after it."""
        ids = self.ids(query, docs, instruction, max_length)
        p = shared_prefix(ids)
        prefix = torch.tensor([ids[0][:p]], device=DEV)
        cache = self.model(input_ids=prefix, use_cache=True, logits_to_keep=1).past_key_values
        cache.batch_repeat_interleave(len(ids))
        rest = [x[p:] for x in ids]
        n = max(map(len, rest))
        pad = self.tok.pad_token_id if self.tok.pad_token_id is not None else 0
        inp = torch.tensor([[pad] * (n - len(r)) + r for r in rest], device=DEV)
        mask = torch.tensor([[1] * p + [0] * (n - len(r)) + [1] * len(r) for r in rest], device=DEV)
        pos = torch.tensor([[p] * (n - len(r)) + list(range(p, p + len(r))) for r in rest], device=DEV)
        out = self.model(input_ids=inp, attention_mask=mask, position_ids=pos, past_key_values=cache, logits_to_keep=1)
        s, raw = self._scores(out.logits[:, -1, :])
        return s.tolist(), raw.tolist(), p


def sync():
    if DEV == "cuda":
        torch.cuda.synchronize()


def timed(fn, repeat):
    for _ in range(3):
        fn()
    sync()
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        sync()
        ts.append(time.perf_counter() - t)
    ts.sort()
    return {"median_ms": statistics.median(ts) * 1e3, "p10_ms": ts[len(ts) // 10] * 1e3,
            "p90_ms": ts[(len(ts) * 9) // 10] * 1e3, "n": len(ts)}


def gemm_peak():
    if DEV != "cuda":
        a = torch.randn(1024, 1024)
        return 2 * 1024 ** 3 / (timed(lambda: a @ a, 5)["median_ms"] / 1e3) / 1e12
    a = torch.randn(8192, 8192, device=DEV, dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device=DEV, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    ts = []
    for _ in range(10):
        start.record()
        a @ b
        end.record()
        end.synchronize()
        ts.append(start.elapsed_time(end) / 1e3)
    return 2 * 8192 ** 3 / statistics.median(ts) / 1e12


def shared_prefix(ids):
    """Length of the token prefix every row shares, leaving each row at least one token (as Sieve does)."""
    p = min(len(x) for x in ids) - 1
    for x in ids[1:]:
        p = min(p, next((i for i, (a, b) in enumerate(zip(ids[0], x)) if a != b), p))
    return p


def max_abs(a, b):
    return max(abs(x - y) for x, y in zip(a, b)) if a else 0.0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", help="the models_gpu bench binary built with --features cuda")
    ap.add_argument("--tokenizer", help="folder with the real Qwen3 tokenizer.json")
    ap.add_argument("--work", default="/tmp/sieve-gpu")
    ap.add_argument("--out", default=".")
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--device", default="cuda", help="cpu: a dry run of the script's logic on --shape bench")
    ap.add_argument("--shape", default="qwen3-0.6b", help="checkpoint shape (qwen3-0.6b, bench, tiny)")
    ap.add_argument("--skip", default="", help="comma list of phases to skip: correctness,attention,vectors,timing,profile,embed,gemm")
    ap.add_argument("--only", default="", help="comma list of the only phases to run")
    ap.add_argument("--deadline", type=float, default=0,
                    help="seconds after which no new phase or engine starts (0: none); the results so far are kept")
    ap.add_argument("--report", nargs="+", metavar="JSON", help="print the table of these (partial) runs and exit")
    a = ap.parse_args()
    if a.report:
        merged = merge_runs([json.loads(Path(f).read_text()) for f in a.report])
        report(merged)
        sys.exit(verdict(merged))
    if not (a.bin and a.tokenizer):
        ap.error("--bin and --tokenizer are required (except with --report)")
    t_start = time.monotonic()

    def late(what):
        if a.deadline and time.monotonic() - t_start > a.deadline:
            log(f"deadline ({a.deadline:.0f} s) passed: skipping {what}")
            res.setdefault("skipped", []).append(what)
            return True
        return False

    def save():
        (out / "models_gpu.json").write_text(json.dumps(res, indent=1))
    global DEV
    DEV = a.device
    # The fp32 reference must be IEEE fp32, not TF32.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    skip = set(filter(None, a.skip.split(",")))
    if a.only:
        skip |= {"correctness", "attention", "vectors", "timing", "profile", "embed", "gemm"} - set(a.only.split(","))
    work, out = Path(a.work), Path(a.out)
    work.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    res = {"gpu": torch.cuda.get_device_name(0) if DEV == "cuda" else "cpu (dry run)", "torch": torch.__version__,
           "shape": a.shape}
    import transformers
    res["transformers"] = transformers.__version__
    stamp = Path(a.bin).parent / "BUILT_FROM"  # written by models_gpu_pack.sh beside the binary
    res["built_from"] = stamp.read_text().strip() if stamp.exists() else "unknown (no BUILT_FROM beside --bin)"
    log("gpu:", res["gpu"], "torch", res["torch"], "transformers", res["transformers"])

    rr_dir, em_dir = work / f"{a.shape}-reranker", work / f"{a.shape}-embedding"
    for d, layout in ((rr_dir, "reranker"), (em_dir, "embedding")):
        if not (d / "model.safetensors").exists():
            run([a.bin, "synth", d, "--layout", layout, "--shape", a.shape, "--tokenizer",
                 Path(a.tokenizer) / "tokenizer.json"])
        shutil.copy(Path(a.tokenizer) / "tokenizer_config.json", d / "tokenizer_config.json")

    res["peak_tflops"] = gemm_peak()
    log(f"bf16 GEMM peak: {res['peak_tflops']:.0f} TFLOP/s")
    hf = HF(str(rr_dir), torch.bfloat16)
    n_params = sum(p.numel() for n, p in hf.model.named_parameters() if "embed_tokens" not in n and "lm_head" not in n)
    res["non_embedding_params"] = n_params
    words = single_token_words(hf.tok)
    runs = [{"label": f"{n} tokens", "doc_tokens": n, "query": QUERY, "instruction": mf.DEFAULT_INSTR,
             "documents": docs_of(words, 50, n, 100 + n)} for n in LENGTHS]
    (work / "runs.json").write_text(json.dumps(runs))

    save()
    if "correctness" not in skip and not late("correctness"):
        cases = [
            {"query": "how do I install a python package offline", "max_length": 8192, "documents": [
                "pip can install wheels from a local folder with --no-index and --find-links.",
                "离线安装 Python 包可以使用 pip download 预先下载 wheel 文件。",
                "Use pip download on a connected machine, 然后在离线机器上 pip install --no-index.",
                "",
                "Bananas are rich in potassium.",
                " ".join(["a very long document about package managers"] * 60)]},
            {"query": "离线安装", "instruction": "Judge relevance for a Chinese search", "max_length": 96,
             "documents": ["pip download", " ".join(["长文档"] * 200), "短"]},
            {"query": QUERY, "max_length": 8192, "documents": runs[1]["documents"]},
        ]
        (work / "cases.json").write_text(json.dumps(cases))
        hf32 = HF(str(rr_dir), torch.float32)
        ref = [hf32.score(c["query"], c["documents"], c.get("instruction"), c["max_length"]) for c in cases]
        del hf32
        torch.cuda.empty_cache()
        b16 = [hf.score(c["query"], c["documents"], c.get("instruction"), c["max_length"]) for c in cases]
        sv = {}
        for name, env in [(f"{e}_bf16", env) for e, env in ENGINES.items()] + [("sieve_f32", {"SIEVE_CUDA_DTYPE": "f32"})]:
            got = None if late(f"correctness {name}") else \
                try_run(res, f"score {name}", [a.bin, "score", rr_dir, work / "cases.json", "--device", DEV], env)
            if got is not None:
                sv[name] = json.loads(got)
        corr = []
        for i, c in enumerate(cases):
            row = {"case": i, "docs": len(c["documents"]), "hf_bf16_vs_fp32": max_abs(b16[i][0], ref[i][0])}
            try:
                s, raw, p = hf.score_shared(c["query"], c["documents"], c.get("instruction"), c["max_length"])
                row["hf_bf16_shared_vs_fp32"] = max_abs(s, ref[i][0])
            except Exception as e:  # noqa: BLE001 — report, do not abort the run
                row["hf_bf16_shared_error"] = repr(e)[:300]
            for name, scored in sv.items():
                for r in scored["results"][2 * i: 2 * i + 2]:
                    key = f"{name}{'_shared' if r['share_prefix'] else ''}_vs_fp32"
                    row[key] = max_abs(r["scores"], ref[i][0])
                    if r["tokens"] != [len(x) for x in ref[i][2]]:
                        row[f"{name}_token_mismatch"] = [r["tokens"], [len(x) for x in ref[i][2]]]
            bound = 2 * row["hf_bf16_vs_fp32"] + 0.01
            for name in sv:
                tol = 1e-3 if name == "sieve_f32" else bound
                row[f"{name}_ok"] = max(row[f"{name}_vs_fp32"], row[f"{name}_shared_vs_fp32"]) <= tol and \
                    f"{name}_token_mismatch" not in row
            row["ref_scores_sample"] = ref[i][0][:4]
            corr.append(row)
            log("correctness", json.dumps(row))
        res["correctness"] = corr
        save()

    # The fused kernels exist only in a CUDA build.
    if "attention" not in skip and DEV == "cuda" and not late("attention"):
        lines = try_run(res, "attn-check", [a.bin, "attn-check", "--device", "cuda", "--repeat", a.repeat])
        if lines is not None:
            res["attention"] = [json.loads(x) for x in lines.splitlines()]
        save()

    if "timing" not in skip and not late("timing"):
        tim = []
        for r in runs:
            ids = hf.ids(r["query"], r["documents"])
            tokens = sum(map(len, ids))
            r["prefix"], r["tokens"] = shared_prefix(ids), tokens
            t = timed(lambda: hf.score(r["query"], r["documents"]), a.repeat)
            tim.append({"engine": "transformers", "label": r["label"], "doc_tokens": r["doc_tokens"],
                        "share_prefix": False, "tokens_processed": tokens, "time": t})
            try:
                t = timed(lambda: hf.score_shared(r["query"], r["documents"]), a.repeat)
                tim.append({"engine": "transformers", "label": r["label"], "doc_tokens": r["doc_tokens"],
                            "share_prefix": True, "tokens_processed": tokens - (len(ids) - 1) * r["prefix"],
                            "time": t})
            except Exception as e:  # noqa: BLE001 — report, do not abort the run
                tim.append({"engine": "transformers", "label": r["label"], "share_prefix": True, "error": repr(e)[:300]})
            log("timing", json.dumps(tim[-2:]))
        res["timing"] = tim
        save()
        lines = []
        for engine, env in ENGINES.items():
            got = None if late(f"timing {engine}") else try_run(
                res, f"rerank-time {engine}",
                [a.bin, "rerank-time", rr_dir, work / "runs.json", "--device", DEV, "--repeat", a.repeat], env)
            lines += [(x, engine) for x in (got or "").splitlines()]
        for line, engine in lines:
            s = json.loads(line)
            s["engine"] = engine
            r = next(x for x in runs if x["label"] == s["label"])
            s["doc_tokens"] = r["doc_tokens"]
            s["tokens_processed"] = s["tokens"] - (len(r["documents"]) - 1) * r["prefix"] if s["share_prefix"] \
                else s["tokens"]
            tim.append(s)
            log("timing", json.dumps(s))
        save()

    if "vectors" not in skip and not late("vectors"):
        res["vectors"] = embed_vectors(a, em_dir, work, res)
        save()

    if "profile" not in skip and not late("profile"):
        (work / "runs_profile.json").write_text(json.dumps([runs[1], runs[2]]))
        res["profile"] = []
        for engine in ("sieve", "sieve-fa2-vec"):
            lines = None if late(f"profile {engine}") else try_run(
                res, f"profile {engine}",
                [a.bin, "rerank-time", rr_dir, work / "runs_profile.json", "--device", DEV, "--repeat", 3],
                {"SIEVE_PROFILE": "1", **ENGINES[engine]})
            res["profile"] += [{**json.loads(x), "engine": engine} for x in (lines or "").splitlines()]
        save()

    if "gemm" not in skip and not late("gemm"):
        lines = try_run(res, "gemm-time", [a.bin, "gemm-time", "--device", DEV, "--tokens", 6922, "--repeat", a.repeat])
        g = [json.loads(x) for x in (lines or "").splitlines()]
        for k, n in [(1024, 4096), (1024, 6144), (3072, 1024), (2048, 1024)]:
            x = torch.randn(6922, k, device=DEV, dtype=torch.bfloat16)
            w = torch.randn(n, k, device=DEV, dtype=torch.bfloat16) * 0.02
            t = timed(lambda: x @ w.t(), a.repeat)
            g.append({"engine": "torch", "m": 6922, "k": k, "n": n, "layout": "w.t()", "time": t,
                      "tflops": 2 * 6922 * k * n / (t["median_ms"] / 1e3) / 1e12})
        res["gemm"] = g
        save()

    if "embed" not in skip and not late("embed"):
        edocs = {"query": "capital of france", "documents": docs_of(words, 1000, 128, 7)}
        (work / "embed.json").write_text(json.dumps(edocs))
        got = try_run(res, "embed-time", [a.bin, "embed-time", em_dir, work / "embed.json", "--device", DEV,
                                          "--repeat", a.repeat])
        if got is not None:
            res["embed_sieve"] = json.loads(got)
            res["embed_hf"] = hf_embed(str(em_dir), edocs, a.repeat)
        save()

    res["wall_s"] = time.monotonic() - t_start
    save()
    report(res)
    sys.exit(verdict(res))


def failed_checks(res):
    """Every correctness flag that is false, and every recorded error: what makes the run fail."""
    bad = [f"error: {e['what']}" for e in res.get("errors", [])]
    for r in res.get("correctness", []):
        bad += [f"scores case {r['case']}: {k[:-3]}" for k in r if k.endswith("_ok") and not r[k]]
        bad += [f"scores case {r['case']}: {k}" for k in r if k.endswith("mismatch")]
    for r in res.get("attention", []):
        if not r.get("ok", True):
            bad.append(f"attention {r['case']} {r['dtype']} {r['engine']}")
    for r in res.get("vectors", {}).get("cases", []):
        bad += [f"vectors case {r['case']}: {k[:-3]}" for k in r if k.endswith("_ok") and not r[k]]
    return bad


def verdict(res):
    """The exit status: 1 when a correctness check failed (printed), else 0. Timing alone never fails a run."""
    bad = failed_checks(res)
    if bad:
        print("\nFAILED correctness checks:\n  " + "\n  ".join(bad))
        return 1
    return 0


def merge_runs(parts):
    """Partial runs' results as one: later parts win per phase; errors are kept from all, and a phase skipped
    at a deadline only while no later part measured it."""
    res = {}
    for i, p in enumerate(parts):
        later = {k for q in parts[i + 1:] for k in q}
        for k, v in p.items():
            if k == "errors":
                res.setdefault(k, []).extend(v)
            elif k == "skipped":
                res.setdefault(k, []).extend(x for x in v if not {x.split()[0], x.split()[0] + "_sieve"} & later)
            elif k == "wall_s":
                res[k] = res.get(k, 0) + v
            elif k == "built_from" and res.get(k, v) != v:
                res[k] = f"{res[k]} + {v} (parts from DIFFERENT binaries)"
            else:
                res[k] = v
    return res


EMBED_CASES = [
    {"max_length": 8192, "inputs": [
        {"kind": "query", "text": "how do I install a python package offline"},
        {"kind": "query", "text": "离线安装 Python 包", "instruction": "Given a Chinese question, find answers"},
        {"kind": "document", "text": "pip can install wheels from a local folder with --no-index and --find-links."},
        {"kind": "document", "text": "离线安装 Python 包可以使用 pip download 预先下载 wheel 文件。"},
        {"kind": "document", "text": "Use pip download on a connected machine, 然后在离线机器上 pip install."},
        {"kind": "document", "text": ""},
        {"kind": "document", "text": " ".join(["a long document about package managers and wheels"] * 40)}]},
    {"max_length": 48, "dimensions": 32, "inputs": [
        {"kind": "query", "text": "capital of france"},
        {"kind": "document", "text": " ".join(["Paris is the capital and largest city of France."] * 20)},
        {"kind": "document", "text": "短文"}]},
]


def one_minus_cos(a, b):
    """Per row 1 - cosine of two [n, d] sets of unit vectors (floored at 0)."""
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    return (1 - (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1))).clamp(min=0).tolist()


def embed_vectors(a, em_dir, work, res):
    from transformers import AutoModel, AutoTokenizer
    (work / "embed_cases.json").write_text(json.dumps(EMBED_CASES))
    tok = AutoTokenizer.from_pretrained(str(em_dir), padding_side="left")
    eos_id = tok.convert_tokens_to_ids("<|endoftext|>")
    ref = {}
    for name, dt in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        model = AutoModel.from_pretrained(str(em_dir), dtype=dt, attn_implementation="sdpa").to(DEV).eval()
        ref[name] = []
        for c in EMBED_CASES:
            r = mf.embed_reference(tok, model, eos_id, c["inputs"], c["max_length"], DEV)
            vecs = r[{None: "embeddings", 32: "embeddings_dim32"}[c.get("dimensions")]]  # what the recipe keeps
            ref[name].append((vecs, [len(x) for x in r["ids"]]))
        del model
        if DEV == "cuda":
            torch.cuda.empty_cache()
    sv = {}
    for name, env in (("bf16", {}), ("fa2_vec_bf16", ENGINES["sieve-fa2-vec"]), ("f32", {"SIEVE_CUDA_DTYPE": "f32"})):
        got = try_run(res, f"embed-vectors {name}", [a.bin, "embed-vectors", em_dir, work / "embed_cases.json",
                                                      "--device", DEV], env)
        if got is not None:
            sv[name] = json.loads(got)
    rows = []
    for i, c in enumerate(EMBED_CASES):
        want, want_tokens = ref["fp32"][i]
        row = {"case": i, "inputs": len(c["inputs"]), "max_length": c["max_length"], "dimensions": c.get("dimensions"),
               "hf_bf16": max(one_minus_cos(ref["bf16"][i][0], want))}
        for name in sv:
            got = sv[name]["cases"][i]
            row[f"sieve_{name}"] = max(one_minus_cos(got["vectors"], want))
            row[f"sieve_{name}_alone"] = max(one_minus_cos(got["alone"], want))
            row[f"sieve_{name}_alone_vs_batch"] = max(one_minus_cos(got["alone"], got["vectors"]))
            if got["tokens"] != want_tokens:
                row[f"sieve_{name}_token_mismatch"] = [got["tokens"], want_tokens]
        for name in sv:
            tol = 1e-4 if name == "f32" else 2 * row["hf_bf16"] + 1e-3
            row[f"sieve_{name}_ok"] = max(row[f"sieve_{name}"], row[f"sieve_{name}_alone"]) <= tol
        row["tokens_ok"] = not any(k.endswith("token_mismatch") for k in row)
        rows.append(row)
        log("vectors", json.dumps(row))
    return {"sieve_info": next((v["info"] for v in sv.values()), None), "cases": rows}


@torch.inference_mode()
def hf_embed(path, edocs, repeat):
    from transformers import AutoModel, AutoTokenizer
    tok = AutoTokenizer.from_pretrained(path, padding_side="left")
    model = AutoModel.from_pretrained(path, dtype=torch.bfloat16, attn_implementation="sdpa").to(DEV).eval()
    eos = "<|endoftext|>"

    def embed(texts):
        batch = tok([t + eos for t in texts], padding=True, return_tensors="pt").to(DEV)
        h = model(**batch).last_hidden_state[:, -1]
        return torch.nn.functional.normalize(h.float(), dim=-1).cpu()

    q = "Instruct: Given a web search query, retrieve relevant passages that answer the query\nQuery:" + edocs["query"]
    single = timed(lambda: embed([q]), repeat)
    docs = edocs["documents"]
    bulk = timed(lambda: [embed(docs[i:i + 128]) for i in range(0, len(docs), 128)], max(3, repeat // 4))
    return {"engine": "transformers", "query": single, "bulk": bulk, "docs": len(docs),
            "docs_per_s": len(docs) / (bulk["median_ms"] / 1e3)}


def report(res):
    peak, n = res.get("peak_tflops"), res.get("non_embedding_params")
    if not {"timing", "profile", "gemm", "correctness", "attention", "vectors", "embed_sieve", "errors"} & set(res):
        return
    print(f"\nGPU: {res['gpu']} | torch {res['torch']} | transformers {res['transformers']} | "
          f"bf16 GEMM peak measured {peak:.0f} TFLOP/s | non-embedding params {n / 1e6:.0f}M"
          + (f" | {res['wall_s']:.0f} s" if "wall_s" in res else "")
          + (f" | binary: {res['built_from']}" if "built_from" in res else ""))
    for e in res.get("errors", []):
        print(f"\nFAILED: {e['what']}: {e['error'][-600:]}")
    if res.get("skipped"):
        print("\nSkipped (deadline): " + ", ".join(res["skipped"]))
    if "correctness" in res:
        print("\nScores, largest |delta| against transformers fp32 (per case):")
        for r in res["correctness"]:
            keys = [k for k in r if k.endswith("_vs_fp32")]
            print(f"  case {r['case']} ({r['docs']} docs): " + ", ".join(f"{k[:-8]} {r[k]:.2e}" for k in keys)
                  + " | ok: " + ", ".join(f"{k[:-3]} {r[k]}" for k in r if k.endswith("_ok"))
                  + "".join(f" | {k}" for k in r if k.endswith("mismatch") or k.endswith("error")))
    if "attention" in res:
        print("\nAttention alone (models_gpu attn-check): largest |delta| against the batched-GEMM path in f32; ok: "
              "<= 2 x the GEMM path's own + 1e-3; ms: median per call, synchronised")
        for r in res["attention"]:
            print(f"  {r['case'][:44]:<44} {r['dtype']:>4} {r['engine']:>4}: {r['max_abs']:.2e} ok {r['ok']!s:<5} "
                  f"{r['ms']:.3f} ms")
    if "vectors" in res:
        print("\nEmbedding vectors, largest 1 - cosine against transformers fp32 (per case; ok: Sieve-bf16 <= "
              "2 x transformers-bf16 + 1e-3, Sieve-f32 <= 1e-4, equal token counts):")
        for r in res["vectors"]["cases"]:
            names = [k[6:-3] for k in r if k.startswith("sieve_") and k.endswith("_ok")]
            print(f"  case {r['case']} ({r['inputs']} inputs, max_length {r['max_length']}, dimensions "
                  f"{r['dimensions'] or 'all'}): transformers bf16 {r['hf_bf16']:.2e} | "
                  + " | ".join(f"Sieve {m} batch {r[f'sieve_{m}']:.2e} alone {r[f'sieve_{m}_alone']:.2e} "
                               f"ok {r[f'sieve_{m}_ok']}" for m in names)
                  + f" | tokens ok: {r['tokens_ok']}")
    if "timing" in res:
        print("\nTop-50 rerank, one query, end to end (text in, scores out), medians:")
        print(f"  {'doc tokens':>10} {'engine':>13} {'prefix':>7} {'ms/query':>9} {'p90':>7} {'pairs/s':>8} "
              f"{'tok/s':>9} {'tokens':>7} {'% peak':>7} {'x floor':>8}")
        base = {}
        for t in res["timing"]:
            if "error" in t:
                print(f"  {t['label']:>10} {t['engine']:>13} shared  error: {t['error'][:80]}")
                continue
            ms = t["time"]["median_ms"]
            flops = 2 * n * t["tokens_processed"]
            floor_ms = 2 * n * 50 * t["doc_tokens"] / (peak * 1e12) * 1e3
            print(f"  {t['doc_tokens']:>10} {t['engine']:>13} {'shared' if t['share_prefix'] else 'no':>7} "
                  f"{ms:>9.2f} {t['time']['p90_ms']:>7.2f} {50 / ms * 1e3:>8.0f} "
                  f"{t['tokens_processed'] / ms * 1e3:>9.0f} {t['tokens_processed']:>7} "
                  f"{100 * flops / (ms / 1e3) / (peak * 1e12):>6.1f}% {ms / floor_ms:>8.2f}")
            base.setdefault((t["doc_tokens"], t["engine"]), []).append(ms)
        print("  (engines: " + "; ".join(f"{e}: {' '.join(f'{k}={v}' for k, v in env.items()) or 'the default'}"
                                      for e, env in ENGINES.items()) + ")")
        print("  (% peak: 2 x params x tokens processed per second over the measured peak; x floor: time over the "
              "floor 2 x params x 50 x doc tokens / peak)")
        for L in LENGTHS:
            hf = base.get((L, "transformers"))
            for engine in ENGINES:
                sv = base.get((L, engine))
                if hf and sv:
                    print(f"  {L:>4} tokens: {engine} best {min(sv):.2f} ms vs transformers best {min(hf):.2f} ms: "
                          f"{min(hf) / min(sv):.2f}x")
    if "profile" in res:
        for p in res["profile"]:
            if p.get("profile"):
                tot = sum(p["profile"].values())
                print(f"\n{p['engine']} per-stage ({p['label']}, prefix {'shared' if p['share_prefix'] else 'not shared'}, "
                      f"synchronised after every stage, ms per query, total {tot:.2f}):")
                print("  " + ", ".join(f"{k} {v:.2f}" for k, v in p["profile"].items()))
    if "gemm" in res:
        print("\nbf16 GEMM [m, k] x [k, n], TFLOP/s (medians):")
        for g in res["gemm"]:
            print(f"  {g['engine']:>13} m={g['m']} k={g['k']} n={g['n']} {g['layout']:>6}: {g['tflops']:.0f} "
                  f"({g['time']['median_ms'] * 1e3:.0f} us)")
    if "embed_sieve" in res:
        s, h = res["embed_sieve"], res["embed_hf"]
        print(f"\nQwen3-Embedding-0.6B shape: one short query {s['query']['median_ms']:.2f} ms (transformers "
              f"{h['query']['median_ms']:.2f} ms); bulk {s['docs']} docs x 128 tokens: {s['docs_per_s']:.0f} docs/s "
              f"(transformers batch 128: {h['docs_per_s']:.0f} docs/s)")


if __name__ == "__main__":
    main()
