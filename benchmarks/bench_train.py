"""Small-model benchmark (issue 14): training steps/s and sequences/s, launcher start-up, inference per core.

    python benchmarks/bench_train.py                 # about 5 minutes on 2 cores
    python benchmarks/bench_train.py --steps 3 --infer-repeats 1 --no-ray   # a smoke run

Data: the shared corpora, prepared once into benchmarks/.cache/ (configs/shared.yaml): HDFS (KRONE
block sessions, mean 19 events) as the labelled source and BGL (MLog windows, mean 57 events, up to
1,196) as the target, so lengths are realistic. Every row is measured in the same run:

1. training, in this process, for each variant: the count branch on or off, the GloVe+MiniLM width
   of 434 instead of 50, GRU hidden 64 (the suite's) or 128 (the config default), and how batches
   are cut into length-sorted chunks: never (the baseline before issue 14: ``model.BUCKET`` set past
   the batch size), always (before issue 16) or where the cost model says
   they save GRU steps (the default): source-only steps (batch 256) and meta steps
   (``meta.tasks_per_step`` tasks of support+query source and target); steps/s and sequences/s after
   one warm-up step;
2. start-up: seconds until the first epoch's report with Ray Train (1 worker, a fresh Ray session
   started here) and with the in-process launcher (``train.launcher=local``), for a 1-step epoch;
3. inference with 1 torch thread (per core), batch 256, on the HDFS sessions (the 20k-sequences/s
   goal) and on the BGL windows, best of ``--infer-repeats``: sequences/s through the shipped path
   (``predict_proba``: each distinct sequence scored once) and with every sequence through the
   model (``predict_distinct``: what a corpus with no repeats would get).

Prints a table and writes benchmarks/results/bench_train.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from fusionlog import meta, model as model_module
from fusionlog.config import load_config
from fusionlog.dataset import TrainData, load_train_data, unique_sequences
from fusionlog.model import SmallModel

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "bench_train.json"
CACHE = ROOT / "benchmarks" / ".cache" / "bench_train_prepared"

VARIANTS = {  # name -> (count branch, embedding width or None for the prepared one, chunking, GRU hidden)
    "baseline: GRU only, one padded batch (before issue 14)": (False, None, "never", 64),
    "GRU only, length-bucketed": (False, None, "by cost", 64),
    "GRU + count branch, chunks always (before issue 16)": (True, None, "always", 64),
    "GRU + count branch (default)": (True, None, "by cost", 64),
    "GRU + count branch, GloVe+MiniLM width 434": (True, 434, "by cost", 64),
    "GRU + count branch, hidden 128 (the config default)": (True, None, "by cost", 128),
    "GRU + count branch, hidden 128, chunks always (before issue 16)": (True, None, "always", 128),
}
# -> (model.BUCKET, model.STEP_MACS); a negative step cost makes chunks always look cheaper (the code before issue 16)
CHUNKING = {"never": (10**9, model_module.STEP_MACS), "always": (64, -10**12), "by cost": (64, model_module.STEP_MACS)}


def prepared_data(cfg) -> TrainData:
    from fusionlog.prepare import prepare

    if not (CACHE / "manifest.json").is_file():
        prepare(cfg)
    return load_train_data(cfg.data.output_dir, cfg.data.sources, cfg.data.target, cfg.train.val_fraction, 0)


def with_width(data: TrainData, width: int | None) -> TrainData:
    """The same data with event vectors of another width (random, fixed seed): speed depends on the width only."""
    if width is None:
        return data
    vectors = np.random.default_rng(0).standard_normal((len(data.table.event_ids), width)).astype(np.float32)
    return replace(data, table=replace(data.table, vectors=vectors))


def timed_steps(step, n: int) -> float:
    step()  # warm-up
    t0 = time.perf_counter()
    for _ in range(n):
        step()
    return (time.perf_counter() - t0) / n


def bench_training(cfg, data: TrainData, steps: int) -> dict:
    torch.manual_seed(0)
    model = SmallModel(cfg.model, data.table.vectors)
    opts = meta.make_optimizers(model, cfg.meta)
    rng = np.random.default_rng(0)

    def source_only() -> None:
        rows, _ = meta.sample_source_rows(rng, data.source_train_labels, cfg.meta.batch_size, 0)
        batch, _ = meta.make_task_set(model, [data.source_train[i] for i in rows], data.source_train_labels[rows], [],
                                      cfg.model.max_len, "cpu", rng)
        meta.source_only_step(model, opts, batch, 1.0)

    def meta_step() -> None:
        tasks = [meta.make_task(model, meta.sample_task_rows(rng, data.source_train_labels, len(data.target), cfg.meta),
                                data, cfg.model.max_len, "cpu", rng)[0] for _ in range(cfg.meta.tasks_per_step)]
        meta.meta_step(model, opts, tasks, cfg.meta, 1.0)

    per_meta = cfg.meta.tasks_per_step * 2 * (cfg.meta.support_size + cfg.meta.query_size)
    so, me = timed_steps(source_only, steps), timed_steps(meta_step, steps)
    return {"source_only_steps_per_s": 1 / so, "source_only_seq_per_s": cfg.meta.batch_size / so,
            "meta_steps_per_s": 1 / me, "meta_seq_per_s": per_meta / me}


def bench_inference(cfg, data: TrainData, repeats: int) -> dict:
    torch.manual_seed(0)
    model = SmallModel(cfg.model, data.table.vectors)
    out = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for name, seqs in (("hdfs", [*data.source_train, *data.source_val]), ("bgl", data.target)):
            for path, fn in (("", meta.predict_proba), ("model_", meta.predict_distinct)):
                best = min(_time(lambda: fn(model, seqs, 256, cfg.model.max_len)) for _ in range(repeats))
                out[f"{name}_{path}seq_per_s_per_core"] = len(seqs) / best
            out[f"{name}_mean_events"] = float(np.mean([len(s) for s in seqs]))
            out[f"{name}_distinct"] = len(unique_sequences(seqs)[0])
    finally:
        torch.set_num_threads(threads)
    return out


def _time(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def bench_startup(cfg, data: TrainData, ray_too: bool) -> dict:
    """Seconds from calling fit_small to the end of a 1-epoch, 1-step run, minus that step's own time."""
    from fusionlog.train import fit_small

    one = replace(cfg, train=replace(cfg.train, epochs=1, steps_per_epoch=1))
    out = {}
    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        for launcher in (["local", "ray"] if ray_too else ["local"]):
            run = replace(one, train=replace(one.train, launcher=launcher), run=replace(one.run, output_dir=f"{tmp}/{launcher}"))
            if launcher == "ray":
                import ray

                ray.init(address="local", include_dashboard=False, log_to_driver=False)
            t0 = time.perf_counter()
            fit_small(run, data)
            out[f"{launcher}_fit_s"] = time.perf_counter() - t0
            if launcher == "ray":
                ray.shutdown()
    if "ray_fit_s" in out:
        out["ray_startup_over_local_s"] = out["ray_fit_s"] - out["local_fit_s"]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=10, help="timed training steps per variant (after one warm-up)")
    ap.add_argument("--infer-repeats", type=int, default=3, help="inference passes (best is kept)")
    ap.add_argument("--no-ray", action="store_true", help="skip the Ray Train start-up measurement")
    args = ap.parse_args()
    cfg = load_config(ROOT / "configs" / "shared.yaml", [f"data.output_dir={CACHE}", "run.progress=false",
                                                       "parsing.parallel=false"])
    data = prepared_data(cfg)
    rows = []
    for name, (counts, width, chunking, hidden) in VARIANTS.items():
        vcfg = replace(cfg, model=replace(cfg.model, count_branch=counts, hidden=hidden))
        vdata = with_width(data, width)
        model_module.BUCKET, model_module.STEP_MACS = CHUNKING[chunking]
        row = {"variant": name, "hidden": hidden,
               **bench_training(vcfg, vdata, args.steps), **bench_inference(vcfg, vdata, args.infer_repeats)}
        rows.append(row)
        print(f"{name}: {json.dumps({k: round(v, 1) for k, v in row.items() if k != 'variant'})}", flush=True)
    model_module.BUCKET, model_module.STEP_MACS = CHUNKING["by cost"]
    startup = bench_startup(cfg, data, not args.no_ray)
    print(f"\ndata: {data.counts}; {torch.get_num_threads()} torch threads for training")
    print("| variant | source-only steps/s | seq/s | meta steps/s | seq/s | inference HDFS seq/s/core: shipped "
          "| every sequence through the model | BGL: shipped | every sequence |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['variant']} | {r['source_only_steps_per_s']:.2f} | {r['source_only_seq_per_s']:.0f} | "
              f"{r['meta_steps_per_s']:.2f} | {r['meta_seq_per_s']:.0f} | {r['hdfs_seq_per_s_per_core']:.0f} | "
              f"{r['hdfs_model_seq_per_s_per_core']:.0f} | {r['bgl_seq_per_s_per_core']:.0f} | "
              f"{r['bgl_model_seq_per_s_per_core']:.0f} |")
    print("start-up:", json.dumps({k: round(v, 1) for k, v in startup.items()}))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": sys.version.split()[0],
                    "torch": torch.__version__, "load_avg_at_end": os.getloadavg()},
        "data": data.counts, "meta": {
            "tasks_per_step": cfg.meta.tasks_per_step, "support_size": cfg.meta.support_size,
            "query_size": cfg.meta.query_size, "batch_size": cfg.meta.batch_size},
        "variants": rows, "startup": startup}, indent=2))
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
