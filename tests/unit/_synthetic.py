"""Tiny synthetic systems for the small-model tests: anomalies contain an "error-like" event.

Source and target have different event ids and vectors shifted by a domain offset, so a model has
something to transfer. ``write_prepared`` writes the Parquet schema of ``fusionlog prepare``.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from fusionlog.dataset import PreparedSystem


def make_system(name: str, n_seq: int = 120, n_events: int = 12, dim: int = 8, anomaly_rate: float = 0.1,
                shift: float = 0.0, seed: int = 0, min_len: int = 3, max_len: int = 9) -> PreparedSystem:
    """Normal events 0..n-3, anomalous events n-2 and n-1 (a shared "anomaly direction")."""
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(n_events, dim)).astype(np.float32) * 0.5
    vectors[-2:, 0] += 3.0  # the anomaly direction
    vectors += shift
    event_ids = [hashlib.sha1(f"{name}-{i}".encode()).hexdigest()[:16] for i in range(n_events)]
    templates = [f"{name} template {i} <*>" for i in range(n_events)]
    labels = (rng.random(n_seq) < anomaly_rate).astype(np.int8)
    labels[:2] = 1  # at least two of each class
    labels[2:4] = 0
    sequences = []
    for label in labels:
        seq = rng.integers(0, n_events - 2, size=int(rng.integers(min_len, max_len + 1)))
        if label:
            seq[rng.integers(0, len(seq))] = n_events - 2 + int(rng.integers(0, 2))
        sequences.append(seq.astype(np.int64))
    return PreparedSystem(name, event_ids, templates, vectors, sequences, labels, [f"{name}-s{i}" for i in range(n_seq)])


def write_prepared(root: Path, system: PreparedSystem) -> Path:
    """``<root>/<name>/{events,sequences}.parquet`` in the prepare stage's schema."""
    folder = Path(root) / system.name
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({
        "event_id": pa.array(system.event_ids, pa.string()),
        "template": pa.array(system.templates, pa.string()),
        "count": pa.array([1] * len(system.event_ids), pa.int64()),
        "vector": pa.array([v.tolist() for v in system.vectors], pa.list_(pa.float32())),
    }), folder / "events.parquet")
    pq.write_table(pa.table({
        "seq_id": pa.array(system.seq_ids, pa.string()),
        "event_ids": pa.array([[system.event_ids[i] for i in s] for s in system.sequences], pa.list_(pa.string())),
        "label": pa.array(system.labels, pa.int8()),
        "source_file": pa.array(["synthetic.log"] * len(system), pa.string()),
        "line_numbers": pa.array([[] for _ in range(len(system))], pa.list_(pa.int64())),
        "source_row": pa.array(list(range(len(system))), pa.int64()),
    }), folder / "sequences.parquet")
    return folder
