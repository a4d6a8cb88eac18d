"""Prepared Parquet outputs -> in-memory systems, merged event tables and source/target training sets.

Zero-label discipline (issue 6): a target system is loaded with ``read_labels=False``, which never
reads the label column, and ``TrainData`` has no field that could hold target labels at all.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

log = logging.getLogger(__name__)


@dataclass
class PreparedSystem:
    """One system's event table and sequences; ``sequences`` index into ``event_ids``/``vectors``."""

    name: str
    event_ids: list[str]
    templates: list[str]
    vectors: np.ndarray  # (E, d) float32
    sequences: list[np.ndarray]  # int64 rows of the event table, in log order
    labels: np.ndarray  # int8: 1 anomalous, 0 normal, -1 unknown
    seq_ids: list[str]

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def __len__(self) -> int:
        return len(self.sequences)

    def subset(self, rows: np.ndarray) -> "PreparedSystem":
        """The same system restricted to ``rows`` (e.g. the general target sequences from routing)."""
        rows = np.asarray(rows, dtype=np.int64)
        return PreparedSystem(self.name, self.event_ids, self.templates, self.vectors,
                          [self.sequences[i] for i in rows], self.labels[rows], [self.seq_ids[i] for i in rows])


@dataclass
class EventTable:
    """The event vocabulary a model was trained with; saved inside the model artifact."""

    event_ids: list[str]
    templates: list[str]
    vectors: np.ndarray  # (E, d) float32

    def index(self) -> dict[str, int]:
        return {e: i for i, e in enumerate(self.event_ids)}


@dataclass
class TrainData:
    """What training sees: labelled source train/val sequences and *unlabelled* target sequences."""

    table: EventTable
    source_train: list[np.ndarray]
    source_train_labels: np.ndarray  # int8, 0/1 only
    source_val: list[np.ndarray]
    source_val_labels: np.ndarray  # int8, 0/1 only
    target: list[np.ndarray]  # no labels, by construction
    source_names: list[str]
    target_name: str
    counts: dict[str, int] = field(default_factory=dict)

    def source_events(self) -> set[str]:
        """Ids of the events that occur in a source sequence (the router's and serving's reference)."""
        rows = np.unique(np.concatenate([*self.source_train, *self.source_val, np.zeros(0, np.int64)]))
        return {self.table.event_ids[i] for i in rows.astype(np.int64)}

    def fingerprint(self) -> str:
        """Hash of everything training reads; part of the run name, so other data never resumes a run."""
        h = hashlib.sha256()
        h.update(np.ascontiguousarray(self.table.vectors).tobytes())
        h.update("\n".join(self.table.event_ids).encode())
        for part in (self.source_train, self.source_val, self.target):
            h.update(np.asarray([len(s) for s in part], dtype=np.int64).tobytes())
            if part:
                h.update(np.concatenate(part).astype(np.int64).tobytes())
        h.update(self.source_train_labels.tobytes())
        h.update(self.source_val_labels.tobytes())
        return h.hexdigest()[:12]


# ----------------------------------------------------------------------------- loading


def load_prepared(prepared_dir: str | Path, name: str, read_labels: bool) -> PreparedSystem:
    """Read ``<prepared_dir>/<name>/{events,sequences}.parquet``.

    With ``read_labels=False`` the label column is not read and every label is -1: that is how a
    target system is loaded for training (its labels belong to the evaluator only).
    """
    folder = Path(prepared_dir) / name
    for file in ("events.parquet", "sequences.parquet"):
        if not (folder / file).is_file():
            raise FileNotFoundError(f"{folder / file} not found; run `fusionlog prepare` for system {name!r} first")
    events = pq.read_table(folder / "events.parquet", columns=["event_id", "template", "vector"])
    if events.num_rows == 0:
        raise ValueError(f"{folder / 'events.parquet'}: no events")
    event_ids = events.column("event_id").to_pylist()
    if len(set(event_ids)) != len(event_ids):
        raise ValueError(f"{folder / 'events.parquet'}: event_id is not unique")
    vector_col = events.column("vector").combine_chunks()
    lengths = pc.list_value_length(vector_col).to_numpy(zero_copy_only=False)
    if len(set(lengths.tolist())) != 1:
        raise ValueError(f"{folder / 'events.parquet'}: vectors have differing lengths {sorted(set(lengths.tolist()))}")
    vectors = vector_col.flatten().to_numpy(zero_copy_only=False).astype(np.float32).reshape(len(event_ids), -1)

    columns = ["seq_id", "event_ids"] + (["label"] if read_labels else [])
    missing = [c for c in columns if c not in pq.read_schema(folder / "sequences.parquet").names]
    if missing:
        raise ValueError(f"{folder / 'sequences.parquet'}: missing column(s) {', '.join(missing)}")
    seqs = pq.read_table(folder / "sequences.parquet", columns=columns)
    seq_col = seqs.column("event_ids").combine_chunks()
    flat = pc.index_in(seq_col.flatten(), value_set=events.column("event_id").combine_chunks())
    if flat.null_count:
        missing = pc.filter(seq_col.flatten(), pc.is_null(flat))[0].as_py()
        raise ValueError(f"{folder / 'sequences.parquet'}: {flat.null_count} event references are not in "
                         f"events.parquet (first: {missing!r}); the prepared outputs are inconsistent, re-run prepare")
    flat_idx = flat.to_numpy(zero_copy_only=False).astype(np.int64)
    offsets = seq_col.offsets.to_numpy()
    offsets = offsets - offsets[0]
    sequences = [flat_idx[offsets[i]:offsets[i + 1]] for i in range(len(seq_col))]
    if read_labels:
        labels = seqs.column("label").to_numpy(zero_copy_only=False).astype(np.int8)
        bad = set(np.unique(labels).tolist()) - {-1, 0, 1}
        if bad:
            raise ValueError(f"{folder / 'sequences.parquet'}: labels {sorted(bad)}; allowed: 1, 0, -1")
    else:
        labels = np.full(len(sequences), -1, dtype=np.int8)
    log.info("loaded %s: %d events (d=%d), %d sequences, labels %s", name, len(event_ids), vectors.shape[1],
             len(sequences), "read" if read_labels else "not read")
    return PreparedSystem(name, event_ids, events.column("template").to_pylist(), vectors, sequences, labels,
                      seqs.column("seq_id").to_pylist())


def merge_systems(systems: list[PreparedSystem]) -> tuple[EventTable, list[PreparedSystem]]:
    """One event table for sources + target, and the systems re-indexed into it.

    Event ids are hashes of the template text, so a template shared by two systems is one row.
    Its vector is taken from the first system (the IDF corpus is source+target, so they agree).
    """
    if not systems:
        raise ValueError("merge_systems: no systems given")
    first = systems[0]
    for other in systems[1:]:
        if other.dim != first.dim:
            raise ValueError(f"embedding dimensions differ: {first.name} has d={first.dim}, {other.name} has "
                             f"d={other.dim}; prepare all systems with the same embedding settings")
    index: dict[str, int] = {}
    ids: list[str] = []
    templates: list[str] = []
    rows: list[np.ndarray] = []
    merged = []
    for system in systems:
        remap = np.empty(len(system.event_ids), dtype=np.int64)
        for i, (event_id, template) in enumerate(zip(system.event_ids, system.templates)):
            if event_id not in index:
                index[event_id] = len(ids)
                ids.append(event_id)
                templates.append(template)
                rows.append(system.vectors[i])
            remap[i] = index[event_id]
        merged.append(PreparedSystem(system.name, ids, templates, system.vectors, [remap[s] for s in system.sequences],
                                 system.labels, system.seq_ids))
    vectors = np.stack(rows).astype(np.float32)
    for system in merged:
        system.vectors = vectors
    return EventTable(ids, templates, vectors), merged


# ----------------------------------------------------------------------------- training sets


def stratified_split(labels: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (train, val), each class split separately so rare anomalies land in both parts."""
    rng = np.random.default_rng(seed)
    train, val = [], []
    for cls in (0, 1):
        rows = np.flatnonzero(labels == cls)
        rows = rows[rng.permutation(len(rows))]
        n_val = int(round(len(rows) * val_fraction))
        if len(rows) >= 2:  # both parts keep at least one of each class
            n_val = min(max(n_val, 1), len(rows) - 1)
        val.append(rows[:n_val])
        train.append(rows[n_val:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


def build_train_data(sources: list[PreparedSystem], target: PreparedSystem, val_fraction: float, seed: int,
                     target_rows: Optional[np.ndarray] = None) -> TrainData:
    """Labelled source train/val + unlabelled target, on one merged event table.

    ``target_rows`` restricts the target side to the *general* sequences when routing ran
    (REFERENCE.md: all target sequences when routing is off). Target labels are dropped here.
    Bad input is refused before any training: no source sequences, a single class in source
    train or val, no target sequences, differing embedding dimensions.
    """
    if not sources:
        raise ValueError("build_train_data: at least one source system is needed")
    if target_rows is not None:
        target = target.subset(target_rows)
    table, merged = merge_systems([*sources, target])
    merged_sources, merged_target = merged[:-1], merged[-1]
    seqs = [s for system in merged_sources for s in system.sequences]
    labels = np.concatenate([system.labels for system in merged_sources]).astype(np.int8)
    known = labels >= 0
    counts = {"source_unlabelled_skipped": int((~known).sum())}
    if counts["source_unlabelled_skipped"]:
        log.warning("%d source sequences have no label and are left out of training",
                    counts["source_unlabelled_skipped"])
    seqs = [s for s, k in zip(seqs, known) if k]
    labels = labels[known]
    names = ", ".join(s.name for s in sources)
    if len(seqs) == 0:
        raise ValueError(f"source data ({names}) has no labelled sequences; training needs labelled source logs")
    n_pos = int(labels.sum())
    n_neg = len(labels) - n_pos
    if n_pos < 2 or n_neg < 2:
        raise ValueError(f"source data ({names}) has {n_pos} anomalous and {n_neg} normal labelled sequences; "
                         "both classes need at least 2 (one for training, one for source-validation)")
    if len(merged_target) == 0:
        raise ValueError(f"target data ({target.name}) has no sequences")
    train_rows, val_rows = stratified_split(labels, val_fraction, seed)
    counts.update(source_train=len(train_rows), source_val=len(val_rows), target=len(merged_target),
                  source_anomalous=n_pos, events=len(table.event_ids))
    return TrainData(table=table,
                     source_train=[seqs[i] for i in train_rows], source_train_labels=labels[train_rows],
                     source_val=[seqs[i] for i in val_rows], source_val_labels=labels[val_rows],
                     target=list(merged_target.sequences), source_names=[s.name for s in sources],
                     target_name=target.name, counts=counts)


def load_train_data(prepared_dir: str | Path, sources: list[str], target: str, val_fraction: float, seed: int,
                    target_rows: Optional[np.ndarray] = None) -> TrainData:
    """Sources with labels, the target WITHOUT labels (never read), then ``build_train_data``."""
    return build_train_data([load_prepared(prepared_dir, name, read_labels=True) for name in sources],
                            load_prepared(prepared_dir, target, read_labels=False), val_fraction, seed, target_rows)


def pad_batch(sequences: list[np.ndarray], pad_index: int, max_len: int,
              rng: Optional[np.random.Generator] = None) -> tuple[np.ndarray, np.ndarray, int]:
    """Padded (B, T) int64 indices, lengths, and how many sequences were longer than ``max_len``.

    A longer sequence keeps a window of ``max_len`` events: the first one, or (training, ``rng``
    given) one at a random start, so every part of a long sequence is seen over the epochs.
    An empty sequence becomes one padding step (a zero vector), so every length is >= 1.
    """
    sizes = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=len(sequences))
    truncated = int((sizes > max_len).sum())
    starts = np.zeros(len(sequences), dtype=np.int64)
    if rng is not None:
        for i in np.flatnonzero(sizes > max_len):
            starts[i] = rng.integers(0, sizes[i] - max_len + 1)
    kept = np.minimum(sizes, max_len)
    lengths = np.maximum(kept, 1)
    out = np.full((len(sequences), int(lengths.max(initial=1))), pad_index, dtype=np.int64)
    if kept.sum():  # one scatter for the whole batch: row i, columns 0..kept_i-1
        flat = np.concatenate([s[a:a + max_len] for s, a in zip(sequences, starts.tolist())])
        rows = np.repeat(np.arange(len(sequences)), kept)
        out[rows, np.arange(len(flat)) - np.repeat(np.cumsum(kept) - kept, kept)] = flat
    return out, lengths, truncated


def count_features(sequences: list[np.ndarray], n_events: int) -> np.ndarray:
    """(B, n_events) float32 log1p counts of each event in each whole sequence (the count branch's input)."""
    flat = np.concatenate([np.asarray(s, dtype=np.int64) for s in sequences] + [np.zeros(0, np.int64)])
    rows = np.repeat(np.arange(len(sequences)), [len(s) for s in sequences])
    cells, counts = np.unique(rows * n_events + flat, return_counts=True)
    out = np.zeros((len(sequences), n_events), dtype=np.float32)  # mostly zeros: log1p only where an event occurs
    out.reshape(-1)[cells] = np.log1p(counts)
    return out


def unique_sequences(sequences: list[np.ndarray]) -> tuple[list[np.ndarray], np.ndarray]:
    """The distinct sequences (in order of first appearance) and, for each input, its index among them."""
    first: dict[tuple[str, bytes], int] = {}
    kept: list[np.ndarray] = []
    inverse = np.empty(len(sequences), dtype=np.int64)
    for i, s in enumerate(sequences):
        a = np.asarray(s)
        j = first.setdefault((a.dtype.str, a.tobytes()), len(kept))
        if j == len(kept):
            kept.append(s)
        inverse[i] = j
    return kept, inverse


def windows(sequences: list[np.ndarray], max_len: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Sequences cut into windows of ``max_len`` with half overlap (a shorter sequence is one window),
    and the index of the sequence each window came from: long sequences are scored whole."""
    out, owner, step = [], [], max(1, max_len // 2)
    for i, s in enumerate(sequences):
        starts = range(0, max(1, len(s) - max_len + step), step) if len(s) > max_len else [0]
        for start in starts:
            out.append(s[start:start + max_len])
            owner.append(i)
    return out, np.asarray(owner, dtype=np.int64)
