"""The small-model artifact: one self-contained directory that evaluation, distillation and serving load.

    model.pt        weights of the best epoch (chosen on source-val)
    config.json     the resolved FusionLogConfig it was trained with
    events.parquet  the event table it needs: event_id, template, vector
    summary.json    threshold (chosen on source-val), best epoch, metrics history, run name, data sizes

No Ray import: evaluation and serving load an artifact without a cluster.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from fusionlog.config import ModelConfig
from fusionlog.dataset import EventTable, SystemData, load_system
from fusionlog.evaluate import results_row
from fusionlog.meta import predict_proba
from fusionlog.model import SmallModel

log = logging.getLogger(__name__)

FILES = ("model.pt", "config.json", "events.parquet", "summary.json")


@dataclass
class Artifact:
    model: SmallModel
    model_config: ModelConfig
    table: EventTable
    threshold: float
    config: dict  # the resolved training config, as plain data
    summary: dict

    def reindex(self, system: SystemData) -> tuple[list[np.ndarray], int]:
        """A system's sequences as rows of this artifact's event table; unknown events are dropped and counted."""
        index = self.table.index()
        remap = np.array([index.get(e, -1) for e in system.event_ids], dtype=np.int64)
        out, unknown = [], 0
        for seq in system.sequences:
            rows = remap[seq]
            unknown += int((rows < 0).sum())
            out.append(rows[rows >= 0])
        if unknown:
            log.warning("%s: %d event occurrences are not in the model's event table and were dropped",
                        system.name, unknown)
        return out, unknown

    def score(self, sequences: list[np.ndarray], batch_size: int = 256) -> tuple[np.ndarray, int]:
        """Anomaly probabilities for table-row sequences, and the count truncated to max_len."""
        return predict_proba(self.model, sequences, batch_size, self.model_config.max_len)


def save_artifact(out_dir: str | Path, weights: dict, config: dict, table: EventTable, summary: dict,
                  source_events: Optional[set[str]] = None) -> Path:
    """Write the four artifact files; ``summary`` must hold the source-val ``threshold``.

    ``source_events`` marks the source systems' events (``is_source``), so serving can measure a
    sequence's bottleneck against the source events, as the router does.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.save(weights, out / "model.pt")
    (out / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True, default=str))
    columns = {
        "event_id": pa.array(table.event_ids, pa.string()),
        "template": pa.array(table.templates, pa.string()),
        "vector": pa.array(list(table.vectors), pa.list_(pa.float32())),
    }
    if source_events is not None:
        columns["is_source"] = pa.array([e in source_events for e in table.event_ids], pa.bool_())
    pq.write_table(pa.table(columns), out / "events.parquet")
    (out / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True, default=float))
    return out


def load_artifact(path: str | Path) -> Artifact:
    """Rebuild the model (eval mode) with its event table and source-val threshold."""
    path = Path(path)
    missing = [f for f in FILES if not (path / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{path} is not a small-model artifact: missing {', '.join(missing)}")
    config = json.loads((path / "config.json").read_text())
    model_cfg = ModelConfig(**config["model"])
    events = pq.read_table(path / "events.parquet")
    vectors = np.asarray(events.column("vector").to_pylist(), dtype=np.float32)
    table = EventTable(events.column("event_id").to_pylist(), events.column("template").to_pylist(), vectors)
    model = SmallModel(model_cfg, vectors)
    model.load_state_dict(torch.load(path / "model.pt", map_location="cpu", weights_only=True))
    model.eval()
    summary = json.loads((path / "summary.json").read_text())
    return Artifact(model, model_cfg, table, float(summary["threshold"]), config, summary)


def evaluate_artifact(path: str | Path, prepared_dir: str | Path, target: Optional[str] = None,
                      batch_size: int = 256) -> dict:
    """The evaluator: the one place target labels are read. A per-pair results row (evaluate.results_row)."""
    art = load_artifact(path)
    target = target or art.summary["target"]
    system = load_system(prepared_dir, target, read_labels=True)
    seqs, unknown = art.reindex(system)
    probs, truncated = art.score(seqs, batch_size)
    sizes = {**{f"train_{k}": v for k, v in art.summary["data_counts"].items()}, "target_sequences": len(system),
             "unknown_events_dropped": unknown, "truncated": truncated}
    pair = f"{'+'.join(art.summary['sources'])}->{target}"
    method = art.summary.get("method") or art.config["meta"]["method"]
    return results_row(pair, method, system.labels, probs, art.threshold, sizes)
