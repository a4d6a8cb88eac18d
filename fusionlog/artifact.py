"""The model artifact: one self-contained directory that evaluation, distillation and serving load.

    model.pt                weights of the best epoch (chosen on source-val)
    config.json             the resolved FusionLogConfig it was trained with
    events.parquet          the event table it needs: event_id, template, vector, is_source
    summary.json            threshold (and where it was chosen), best epoch, metrics history, run name, data sizes
    drain3_state.bin        the target's drain3 state (parsing.DRAIN_STATE), so raw lines parse with training's templates
    routing.parquet         fused artifacts: each target sequence's s_k, general or not, bottleneck event
    knowledge_base.parquet  fused artifacts: the labelled knowledge base, read-only, for explanations
    pseudo_labels.parquet   fused artifacts: what fine-tuning used (seq_id, label, target, round)

No Ray import: evaluation and serving load an artifact without a cluster.
"""
from __future__ import annotations

import json
import logging
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from fusionlog.config import FusionLogError, ModelConfig
from fusionlog.dataset import EventTable, PreparedSystem
from fusionlog.meta import predict_proba
from fusionlog.model import SmallModel
from fusionlog.staging import staged_dir

log = logging.getLogger(__name__)

MODEL, CONFIG, EVENTS, SUMMARY = "model.pt", "config.json", "events.parquet", "summary.json"
ROUTING = "routing.parquet"
KNOWLEDGE_BASE = "knowledge_base.parquet"
PSEUDO_LABELS = "pseudo_labels.parquet"
REQUIRED = (MODEL, CONFIG, EVENTS, SUMMARY)


@dataclass
class Artifact:
    model: SmallModel
    model_config: ModelConfig
    table: EventTable
    is_source: np.ndarray  # bool per event-table row: the event occurs in a source system
    threshold: float
    config: dict  # the resolved training config, as plain data
    summary: dict

    def reindex(self, system: PreparedSystem) -> tuple[list[np.ndarray], int]:
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
                  source_events: set[str], extras: Optional[Callable[[Path], None]] = None) -> Path:
    """Write the four core files; ``summary`` must hold the ``threshold``.

    ``source_events`` marks the source systems' events (``is_source``), so serving measures a
    sequence's bottleneck against the source events, as the router does. ``extras(dir)`` writes
    further files (routing, knowledge base, drain3 state). All of it goes into a staging directory
    renamed into place at the end, so the artifact appears whole or not at all.
    """
    out = Path(out_dir)
    with staged_dir(out, REQUIRED, "artifact directory") as stage:
        torch.save(weights, stage / MODEL)
        (stage / CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True, default=str))
        pq.write_table(pa.table({
            "event_id": pa.array(table.event_ids, pa.string()),
            "template": pa.array(table.templates, pa.string()),
            "vector": pa.array(list(table.vectors), pa.list_(pa.float32())),
            "is_source": pa.array([e in source_events for e in table.event_ids], pa.bool_()),
        }), stage / EVENTS)
        (stage / SUMMARY).write_text(json.dumps(summary, indent=2, sort_keys=True, default=float))
        if extras is not None:
            extras(stage)
    return out


def load_artifact(path: str | Path) -> Artifact:
    """Rebuild the model (eval mode) with its event table and threshold; a damaged file is named."""
    path = Path(path)
    missing = [f for f in REQUIRED if not (path / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{path} is not a small-model artifact: missing {', '.join(missing)}")
    config, summary = _read_json(path / CONFIG), _read_json(path / SUMMARY)
    try:
        model_cfg = ModelConfig(**config["model"])
        events = pq.read_table(path / EVENTS)
    except (KeyError, TypeError, pa.ArrowException, OSError) as exc:
        raise FusionLogError(f"{path}: damaged artifact ({type(exc).__name__}: {exc}); retrain or copy it again") from None
    if "is_source" not in events.column_names:
        raise ValueError(f"{path / EVENTS}: no is_source column; the artifact is from an older FusionLog, retrain it")
    vectors = np.asarray(events.column("vector").to_pylist(), dtype=np.float32)
    table = EventTable(events.column("event_id").to_pylist(), events.column("template").to_pylist(), vectors)
    model = SmallModel(model_cfg, vectors)
    try:
        model.load_state_dict(torch.load(path / MODEL, map_location="cpu", weights_only=True))
    except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError) as exc:
        raise FusionLogError(f"{path / MODEL}: cannot load the weights ({' '.join(str(exc).split())[:200]}); "
                             "the file is truncated or from another model config: retrain or copy it again") from None
    model.eval()
    is_source = np.asarray(events.column("is_source").to_pylist(), dtype=bool)
    try:
        threshold = float(summary["threshold"])
    except (KeyError, TypeError, ValueError):
        raise FusionLogError(f"{path / SUMMARY}: no numeric threshold; the artifact is damaged, retrain it") from None
    return Artifact(model, model_cfg, table, is_source, threshold, config, summary)


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FusionLogError(f"{path}: not valid JSON ({exc}); the artifact is damaged, retrain or copy it again") \
            from None
    if not isinstance(data, dict):
        raise FusionLogError(f"{path}: expected a JSON object; the artifact is damaged")
    return data
