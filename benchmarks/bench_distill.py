"""Distillation-side throughput (issue 7): knowledge-base retrieval and teacher labelling.

    python benchmarks/bench_distill.py                 # 10,000 records, d=50, real Milvus Lite + in-memory baseline
    python benchmarks/bench_distill.py --llm 8         # also SmolLM2 (llama.cpp, CPU) at batch 1 vs batched

Retrieval: top-3 search queries/s on Milvus Lite against the exact in-memory numpy store, for one
query per call and for batches of 64. Teachers: sequences/s of the keyword, semantic and PCA teachers
and, with --llm N, of the CPU LLM on N real BGL windows, one request per call vs all N in one call.
Prints a table and writes benchmarks/results/bench_distill.json.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from fusionlog.config import LLMConfig, TeacherConfig
from fusionlog.retrieval import MemoryStore, MilvusStore, Record
from fusionlog.teachers import LabelRequest, make_teacher

ROOT = Path(__file__).resolve().parents[1]


def _timed(fn, n_items: int) -> float:
    start = time.perf_counter()
    fn()
    return n_items / (time.perf_counter() - start)


def bench_retrieval(n: int, dim: int, queries: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    vecs = rng.normal(size=(n, dim)).astype(np.float32)
    qs = rng.normal(size=(queries, dim)).astype(np.float32)
    records = [Record(f"s{i}", f"template {i % 97}\ntemplate {i % 13}", i % 2, 0.9) for i in range(n)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        stores = {"memory (exact numpy)": MemoryStore(), "milvus-lite": MilvusStore(f"{tmp}/kb.db", "bench", dim)}
        for name, store in stores.items():
            t0 = time.perf_counter()
            store.add(records, vecs)
            insert = n / (time.perf_counter() - t0)
            single = _timed(lambda: [store.search(q[None, :], 3) for q in qs], len(qs))
            batched = _timed(lambda: [store.search(qs[i:i + 64], 3) for i in range(0, len(qs), 64)], len(qs))
            rows.append({"what": f"retrieval top-3, {name}", "records": n, "dim": dim, "insert_per_s": round(insert),
                         "batch1_per_s": round(single, 1), "batch64_per_s": round(batched, 1)})
            store.close()
    return rows


def bgl_requests(n: int) -> list[LabelRequest]:
    """Real 20-line BGL windows from the bundled sample, as template-like text (numbers kept)."""
    lines = (ROOT / "data" / "sample" / "BGL_2k.log").read_text().splitlines()
    contents = [" ".join(line.split()[9:]) for line in lines]
    return [LabelRequest(f"w{i}", "BGL", contents[20 * i:20 * i + 20], []) for i in range(n)]


def bench_teacher(backend: str, n: int) -> dict:
    teacher = make_teacher(TeacherConfig(kind=backend), LLMConfig())
    reqs = bgl_requests(2 * n + 1)
    t0 = time.perf_counter()
    teacher.fit([r.templates for r in reqs])  # the pca teacher models the population first; others ignore it
    fit_s = time.perf_counter() - t0
    teacher.label(reqs[-1:])  # warm-up: model load
    # Disjoint windows per variant; templates still repeat across windows, as in a real pool.
    one = _timed(lambda: [teacher.label([r]) for r in reqs[:n]], n)
    many = _timed(lambda: teacher.label(reqs[n:2 * n]), n)
    teacher.close()
    return {"what": f"teacher {backend}", "sequences": n, "fit_s": round(fit_s, 4), "batch1_per_s": round(one, 2),
            "batched_per_s": round(many, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=50)
    parser.add_argument("--queries", type=int, default=512)
    parser.add_argument("--llm", type=int, default=0, help="also time the CPU LLM on this many windows")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_distill.json"))
    args = parser.parse_args()
    rows = bench_retrieval(args.records, args.dim, args.queries, args.seed)
    rows.append(bench_teacher("keyword", 45))
    rows.append(bench_teacher("semantic", 45))
    rows.append(bench_teacher("pca", 45))
    if args.llm:
        rows.append(bench_teacher("llm", min(args.llm, 45)))
    for r in rows:
        print(" | ".join(f"{k}={v}" for k, v in r.items()))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"command": "python benchmarks/bench_distill.py "
                                          + (f"--llm {args.llm}" if args.llm else ""), "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
