"""The RAG knowledge base K(r): labelled target sequences, searched for few-shot examples.

A sequence is represented by the mean of its events' unit-length vectors (each occurrence
counts): two sequences made of the same events in similar proportions get cosine ~1, whatever
their length, which is what "a similar sequence" should mean for a few-shot example.  Order is
ignored on purpose: the examples show the LLM which *events* the small model calls anomalous.

Two stores behind one small interface (Drain3's PersistenceHandler shape): Milvus (Lite file by
default, a server by URI, same client code) and an in-memory numpy store for tests and tiny runs.
Milvus Lite allows one process per file: the store is owned by the process that builds it.
"""
from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from fusionlog.config import FusionLogError, RetrievalConfig
from fusionlog.embedding import unit_rows

log = logging.getLogger(__name__)


@dataclass
class Record:
    """One knowledge-base entry: the sequence's content, its label and the small model's confidence."""

    seq_id: str
    content: str  # the sequence's event templates, one per line, capped at max_content_events
    label: int
    confidence: float
    score: float = 0.0  # similarity to the query (search results only)


def sequence_vectors(sequences: Sequence[np.ndarray], event_vectors: np.ndarray) -> np.ndarray:
    """Mean of the unit event vectors of each sequence, itself unit-length (see module docstring)."""
    units = unit_rows(event_vectors)
    out = np.zeros((len(sequences), event_vectors.shape[1]), dtype=np.float32)
    for i, s in enumerate(sequences):
        if len(s):
            out[i] = units[s].mean(axis=0)
    return unit_rows(out).astype(np.float32)


def sequence_content(templates: Sequence[str], max_events: int) -> str:
    """Templates in order, consecutive repeats collapsed ("x (x12)"), capped with a note."""
    lines: list[str] = []
    prev, run = None, 0
    for t in list(templates) + [None]:
        if t == prev:
            run += 1
            continue
        if prev is not None:
            lines.append(prev if run == 1 else f"{prev} (x{run})")
        prev, run = t, 1
    if len(lines) > max_events:
        lines = lines[:max_events] + [f"... ({len(lines) - max_events} more events)"]
    return "\n".join(lines)


class VectorStore(ABC):
    """add + search: all the distillation loop needs of a knowledge base."""

    @abstractmethod
    def add(self, records: Sequence[Record], vectors: np.ndarray) -> None: ...

    @abstractmethod
    def search(self, vectors: np.ndarray, k: int) -> list[list[Record]]: ...

    @abstractmethod
    def count(self) -> int: ...

    @abstractmethod
    def export(self) -> tuple[list[Record], np.ndarray]:
        """Every record with its vector: the knowledge base travels with the fused artifact."""

    def close(self) -> None:
        """Release files and connections."""


class MemoryStore(VectorStore):
    """Exact cosine search in numpy; the reference the Milvus store is tested against."""

    def __init__(self) -> None:
        self.records: list[Record] = []
        self.vectors = np.zeros((0, 0), dtype=np.float32)

    def add(self, records: Sequence[Record], vectors: np.ndarray) -> None:
        _check(records, vectors)
        if not len(records):
            return
        v = unit_rows(vectors).astype(np.float32)
        self.vectors = v if not len(self.records) else np.vstack([self.vectors, v])
        self.records.extend(records)

    def search(self, vectors: np.ndarray, k: int) -> list[list[Record]]:
        if not self.records:
            return [[] for _ in range(len(vectors))]
        sims = unit_rows(vectors) @ self.vectors.T
        out = []
        for row in sims:
            top = np.argsort(-row, kind="stable")[:k]
            out.append([Record(**{**self.records[i].__dict__, "score": float(row[i])}) for i in top])
        return out

    def count(self) -> int:
        return len(self.records)

    def export(self) -> tuple[list[Record], np.ndarray]:
        return list(self.records), self.vectors


class MilvusStore(VectorStore):
    """Milvus through pymilvus: ``uri`` is a Milvus Lite file path or a server URL."""

    def __init__(self, uri: str, collection: str, dim: int, token: str = "", fresh: bool = True):
        try:
            from pymilvus import MilvusClient
        except ImportError as exc:
            raise FusionLogError("retrieval.backend=milvus needs pymilvus[milvus-lite]") from exc
        self.uri, self.collection, self.dim = uri, collection, dim
        if "://" not in uri:
            Path(uri).parent.mkdir(parents=True, exist_ok=True)
            # Milvus Lite's in-process gRPC server lacks AllocTimestamp; pymilvus falls back on its own,
            # but grpc logs a traceback for every call that would alarm users for nothing.
            logging.getLogger("grpc._server").setLevel(logging.CRITICAL)
        try:
            self.client = MilvusClient(uri=uri, token=token) if token else MilvusClient(uri)
        except Exception as exc:  # pymilvus raises a broad family (lock held, corrupt file, refused)
            raise FusionLogError(f"cannot open Milvus at {uri!r}: {exc}. A Milvus Lite file can be open in "
                                 "one process only; point retrieval.milvus_uri elsewhere or at a server") from exc
        if fresh and self.client.has_collection(collection):
            self.client.drop_collection(collection)
        if not self.client.has_collection(collection):
            self.client.create_collection(collection, dimension=dim, metric_type="COSINE", auto_id=True)

    def add(self, records: Sequence[Record], vectors: np.ndarray) -> None:
        _check(records, vectors)
        if not len(records):
            return
        rows = [{"vector": v.tolist(), "seq_id": r.seq_id, "content": r.content, "label": int(r.label),
                 "confidence": float(r.confidence)} for r, v in zip(records, unit_rows(vectors))]
        for start in range(0, len(rows), 1000):
            self.client.insert(self.collection, rows[start:start + 1000])

    def search(self, vectors: np.ndarray, k: int) -> list[list[Record]]:
        if len(vectors) == 0:
            return []
        hits = self.client.search(self.collection, data=[v.tolist() for v in unit_rows(vectors)], limit=k,
                                  output_fields=["seq_id", "content", "label", "confidence"])
        return [[Record(h["entity"]["seq_id"], h["entity"]["content"], int(h["entity"]["label"]),
                        float(h["entity"]["confidence"]), float(h["distance"])) for h in row] for row in hits]

    def count(self) -> int:
        return int(self.client.get_collection_stats(self.collection)["row_count"])

    def export(self) -> tuple[list[Record], np.ndarray]:
        rows = self.client.query(self.collection, filter="id >= 0", limit=max(1, self.count()),
                                 output_fields=["seq_id", "content", "label", "confidence", "vector"])
        records = [Record(r["seq_id"], r["content"], int(r["label"]), float(r["confidence"])) for r in rows]
        vectors = np.asarray([r["vector"] for r in rows], dtype=np.float32).reshape(len(rows), self.dim)
        return records, vectors

    def close(self) -> None:
        self.client.close()


def _check(records: Sequence[Record], vectors: np.ndarray) -> None:
    if len(records) != len(vectors):
        raise ValueError(f"{len(records)} records but {len(vectors)} vectors")


def make_store(cfg: RetrievalConfig, dim: int, output_dir: str) -> VectorStore:
    """The configured store; a fresh collection, since K(0) is rebuilt from the general logs."""
    if cfg.backend == "memory":
        return MemoryStore()
    uri = cfg.milvus_uri or str(Path(output_dir) / "kb.db")
    return MilvusStore(uri, cfg.collection, dim, cfg.milvus_token)


def knowledge_base_table(store: VectorStore):
    """The store as an Arrow table (seq_id, content, label, confidence, vector), for read-only use by serving."""
    import pyarrow as pa

    records, vectors = store.export()
    return pa.table({"seq_id": [r.seq_id for r in records], "content": [r.content for r in records],
                     "label": pa.array([r.label for r in records], pa.int8()),
                     "confidence": [r.confidence for r in records],
                     "vector": pa.array([v.tolist() for v in vectors], pa.list_(pa.float32()))})


def read_knowledge_base(path: Path) -> MemoryStore:
    """The Parquet export as an in-memory store (serving reads it; a Milvus Lite file allows one process only)."""
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    missing = [c for c in ("seq_id", "content", "label", "confidence", "vector") if c not in table.column_names]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)}; has {', '.join(table.column_names)}")
    store = MemoryStore()
    if table.num_rows == 0:
        return store
    records = [Record(r["seq_id"], r["content"], int(r["label"]), float(r["confidence"]))
               for r in table.drop_columns(["vector"]).to_pylist()]
    store.add(records, np.asarray(table.column("vector").to_pylist(), dtype=np.float32).reshape(len(records), -1))
    return store
