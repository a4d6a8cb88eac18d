"""A real, tiny model artifact for the serving tests: demo prepare (sequential) + a few training steps.

The artifact has what train writes (model.pt, config.json, events.parquet, summary.json) plus the
target's drain3_state.bin, so raw BGL lines are parsed exactly as in training. It is built once per
pytest session (about 15 s on 2 cores) and shared by the unit and e2e serving tests.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from fusionlog.artifact import save_artifact
from fusionlog.config import load_config, to_dict
from fusionlog.dataset import load_train_data
from fusionlog.meta import train_loop
from fusionlog.prepare import prepare

from tests.conftest import ROOT, SAMPLE

TINY = ["model.hidden=16", "model.attention_dim=8", "model.head_hidden=8", "meta.support_size=32",
        "meta.query_size=32", "meta.tasks_per_step=2", "train.epochs=2", "train.steps_per_epoch=3"]


def build_demo_artifact(root: Path) -> Path:
    """``<root>/model``: HDFS -> BGL on the bundled samples; reused if a previous call built it."""
    model_dir = root / "model"
    if (model_dir / "drain3_state.bin").is_file():
        return model_dir
    cfg = load_config(ROOT / "configs" / "demo.yaml",
                      [f"data.output_dir={root / 'prepared'}", f"run.output_dir={root}", "parsing.parallel=false",
                       "run.progress=false", *TINY])
    prepare(cfg)
    data = load_train_data(cfg.data.output_dir, cfg.data.sources, cfg.data.target, cfg.train.val_fraction, cfg.run.seed)
    best = train_loop(cfg, data, lambda metrics, state: None)["best"]
    summary = {"run_name": "serve-test", "threshold": best["metrics"]["threshold"], "best_epoch": best["epoch"],
               "best_metrics": best["metrics"], "data_counts": data.counts, "sources": data.source_names,
               "target": data.target_name}
    tmp = root / "model.tmp"
    save_artifact(tmp, best["model"], to_dict(cfg), data.table, summary, data.source_events())
    shutil.copy(Path(cfg.data.output_dir) / cfg.data.target / "drain3_state.bin", tmp / "drain3_state.bin")
    tmp.rename(model_dir)
    return model_dir


def bgl_lines(n: int = 40, start: int = 0) -> list[str]:
    """Lines of the bundled BGL sample (the target system), as a client would send them."""
    lines = (SAMPLE / "BGL_2k.log").read_text().splitlines()
    return lines[start:start + n]
