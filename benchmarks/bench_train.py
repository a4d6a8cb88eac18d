"""Small-model benchmark (issue 6): Ray Train sequences/s on 1 and 2 CPU workers, and inference sequences/s.

Run from the repository root, with the project's venv active, after preparing the demo data:

    fusionlog prepare --config configs/demo.yaml data.output_dir=/tmp/bench_prep --quiet
    python benchmarks/bench_train.py --prepared /tmp/bench_prep            # about 5 minutes on 2 loaded cores
    python benchmarks/bench_train.py --prepared /tmp/bench_prep --epochs 2 --steps 2   # a smoke run

What it does:

1. Loads the prepared demo data (HDFS source with labels, BGL target without) and the demo config
   with the model and meta-learning defaults (GRU hidden 128, 4 meta-tasks of 128+128 source and
   128+128 target sequences per step).
2. For each worker count, trains from scratch (a fresh storage dir, so nothing resumes) with
   ``fit_small`` for ``--epochs`` epochs of ``--steps`` steps per worker. A Ray Train callback
   stamps the time of every epoch's report; training sequences/s is the sequences drawn by all
   workers in epochs 2..N over the time between the first and last report, so Ray Train start-up
   is left out (it is printed separately). Each epoch includes rank 0's source-val pass and checkpoint.
3. Inference: the 1-worker artifact scores every prepared sequence (source and target) with
   ``predict_proba`` at batch 256 on CPU; best of ``--repeats`` passes.
4. Prints a table and writes ``benchmarks/results/bench_train.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import ray
import torch
from ray.train import UserCallback

from fusionlog.artifact import load_artifact
from fusionlog.config import load_config
from fusionlog.dataset import TrainData, load_train_data
from fusionlog.meta import predict_proba, sample_task_rows
from fusionlog.train import fit_small

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "bench_train.json"


class ReportClock(UserCallback):
    """Appends the wall time of every ``ray.train.report`` to a file (the callback runs in Train's controller)."""

    def __init__(self, path: Path):
        self.path = str(path)

    def after_report(self, run_context, metrics, checkpoint) -> None:
        with open(self.path, "a") as f:
            f.write(f"{time.time()}\n")


def sequences_per_step(cfg, data: TrainData) -> int:
    """Source + target sequences one worker draws in one meta step (the target side is capped by its size)."""
    rows = sample_task_rows(np.random.default_rng(0), data.source_train_labels, len(data.target), cfg.meta)
    per_task = len(rows.support_source) + len(rows.query_source) + len(rows.support_target) + len(rows.query_target)
    return cfg.meta.tasks_per_step * per_task


def bench_training(cfg, data: TrainData, workers: int, work: Path) -> dict:
    cfg.ray.num_workers = workers
    cfg.run.output_dir = str(work / f"w{workers}")
    clock = work / f"clock_w{workers}.txt"
    t0 = time.time()
    fit = fit_small(cfg, data, callbacks=[ReportClock(clock)])
    wall = time.time() - t0
    stamps = [float(x) for x in clock.read_text().split()]
    per_epoch = sequences_per_step(cfg, data) * cfg.train.steps_per_epoch * workers
    steady = per_epoch * (len(stamps) - 1) / (stamps[-1] - stamps[0])
    return {"workers": workers, "epochs": len(stamps), "sequences_per_epoch": per_epoch,
            "train_seq_per_s": steady, "epoch_s": (stamps[-1] - stamps[0]) / (len(stamps) - 1),
            "startup_s": stamps[0] - t0 - (stamps[-1] - stamps[0]) / (len(stamps) - 1), "wall_s": wall,
            "artifact": str(fit.artifact_dir)}


def bench_inference(artifact: str, data: TrainData, batch: int, repeats: int) -> dict:
    art = load_artifact(artifact)
    seqs = [*data.source_train, *data.source_val, *data.target]
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        predict_proba(art.model, seqs, batch, art.model_config.max_len)
        times.append(time.perf_counter() - t0)
    return {"sequences": len(seqs), "batch": batch, "best_s": min(times), "infer_seq_per_s": len(seqs) / min(times),
            "mean_events_per_sequence": float(np.mean([len(s) for s in seqs])),
            "torch_threads": torch.get_num_threads()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prepared", default="/tmp/bench_prep", help="fusionlog prepare output of configs/demo.yaml")
    ap.add_argument("--epochs", type=int, default=3, help="epochs per run; the first is the warm-up")
    ap.add_argument("--steps", type=int, default=4, help="meta steps per epoch per worker")
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--repeats", type=int, default=3, help="inference passes (best is kept)")
    args = ap.parse_args()
    if args.epochs < 2:
        raise SystemExit(f"--epochs {args.epochs}: need >= 2 (the first epoch's report is the start of the clock)")
    if not (Path(args.prepared) / "manifest.json").is_file():
        raise SystemExit(f"--prepared {args.prepared}: no manifest.json; run `fusionlog prepare --config "
                         f"configs/demo.yaml data.output_dir={args.prepared} --quiet` first")
    cfg = load_config(ROOT / "configs" / "demo.yaml", [f"data.output_dir={args.prepared}", "run.progress=false",
                                                     f"train.epochs={args.epochs}",
                                                     f"train.steps_per_epoch={args.steps}"])
    data = load_train_data(cfg.data.output_dir, cfg.data.sources, cfg.data.target, cfg.train.val_fraction,
                           cfg.run.seed)
    ray.init(include_dashboard=False, log_to_driver=False)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        for w in [int(x) for x in args.workers.split(",")]:
            rows.append(bench_training(cfg, data, w, Path(tmp)))
            print(f"trained on {w} worker(s): {rows[-1]['train_seq_per_s']:.0f} seq/s", flush=True)
        infer = bench_inference(rows[0]["artifact"], data, 256, args.repeats)
    ray.shutdown()

    print(f"\ndata: {args.prepared} ({data.counts}); model hidden {cfg.model.hidden}, {cfg.meta.tasks_per_step} "
          f"tasks/step, {args.steps} steps/epoch/worker, {args.epochs} epochs")
    print("workers  seq/epoch  epoch s  train seq/s  start-up s  wall s")
    for r in rows:
        print(f"{r['workers']:>7}  {r['sequences_per_epoch']:>9}  {r['epoch_s']:>7.1f}  {r['train_seq_per_s']:>11.0f}  "
              f"{r['startup_s']:>10.1f}  {r['wall_s']:>6.1f}")
    print(f"inference (batch {infer['batch']}, {infer['torch_threads']} torch threads): {infer['sequences']} sequences "
          f"in {infer['best_s']:.2f} s = {infer['infer_seq_per_s']:.0f} seq/s")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": sys.version.split()[0],
                    "torch": torch.__version__, "ray": ray.__version__, "load_avg_at_end": os.getloadavg()},
        "data": {"prepared": args.prepared, "counts": data.counts},
        "config": {"model_hidden": cfg.model.hidden, "tasks_per_step": cfg.meta.tasks_per_step,
                   "support_size": cfg.meta.support_size, "query_size": cfg.meta.query_size,
                   "steps_per_epoch": args.steps, "epochs": args.epochs},
        "training": [{k: v for k, v in r.items() if k != "artifact"} for r in rows], "inference": infer,
    }, indent=2))
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
