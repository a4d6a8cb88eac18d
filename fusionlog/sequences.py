"""Parsed lines -> sequences (by id or by windows) with labels and provenance.

A sequence is anomalous if any of its lines is.  Lines keep their file order inside a sequence,
re-ordered by time where the system has a time field (our BGL sample is not in time order).
Nothing is dropped silently: every line or id that does not end up in a sequence is counted.
"""
from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence as Seq

import pyarrow as pa

from fusionlog.config import FusionLogError, LabelRule, SystemConfig
from fusionlog.csvrows import header_and_rows, open_text

SEQUENCE_SCHEMA = pa.schema([
    ("seq_id", pa.string()), ("event_ids", pa.list_(pa.string())), ("label", pa.int8()),
    ("source_file", pa.string()), ("line_numbers", pa.list_(pa.int64())), ("source_row", pa.int64()),
])


@dataclass
class Sequences:
    """Column lists of one system's sequences (see SEQUENCE_SCHEMA)."""

    seq_ids: list[str] = field(default_factory=list)
    event_ids: list[list[str]] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    source_file: list[str] = field(default_factory=list)
    line_numbers: list[list[int]] = field(default_factory=list)
    source_row: list[int] = field(default_factory=list)

    def add(self, seq_id: str, events: list[str], label: int, source_file: str,
            line_numbers: list[int] | None = None, source_row: int = -1) -> None:
        self.seq_ids.append(seq_id)
        self.event_ids.append(events)
        self.labels.append(label)
        self.source_file.append(source_file)
        self.line_numbers.append(line_numbers or [])
        self.source_row.append(source_row)

    def extend(self, other: "Sequences") -> None:
        for name in ("seq_ids", "event_ids", "labels", "source_file", "line_numbers", "source_row"):
            getattr(self, name).extend(getattr(other, name))

    def __len__(self) -> int:
        return len(self.seq_ids)

    def to_arrow(self) -> pa.Table:
        return pa.table({
            "seq_id": self.seq_ids, "event_ids": self.event_ids, "label": self.labels,
            "source_file": self.source_file, "line_numbers": self.line_numbers, "source_row": self.source_row,
        }, schema=SEQUENCE_SCHEMA)

    def stats(self) -> dict[str, int]:
        return {"sequences": len(self), "anomalous": sum(1 for x in self.labels if x == 1),
                "normal": sum(1 for x in self.labels if x == 0),
                "unlabelled": sum(1 for x in self.labels if x == -1)}


# ----------------------------------------------------------------------------- labels


def read_label_file(path: str, rule: LabelRule) -> tuple[dict[str, int], int]:
    """CSV of id,label -> ({id: 1 anomalous / 0 normal}, bad rows skipped).

    A row that is not valid CSV, has the wrong number of fields or a label in neither
    ``anomaly_values`` nor ``normal_values`` stops with the file and line (``label.on_bad_rows:
    error``), or is skipped and counted (``skip``): one bad row must never relabel the rest.
    """
    with open_text(path) as fh:
        header, rows = header_and_rows(fh, f"label file {path}")
        missing = [c for c in (rule.id_column, rule.label_column) if c not in header]
        if missing:
            raise FusionLogError(f"label file {path}: missing column(s) {', '.join(missing)}; "
                                 f"has: {', '.join(header)}")
        id_col, label_col = header.index(rule.id_column), header.index(rule.label_column)
        labels: dict[str, int] = {}
        skipped = 0
        for row in rows:
            value = row.fields[label_col].strip() if not row.error else ""
            if not row.error and value not in rule.anomaly_values and value not in rule.normal_values:
                row.error = (f"label {value!r} is in neither label.anomaly_values {rule.anomaly_values} "
                             f"nor label.normal_values {rule.normal_values}")
            if row.error:
                if rule.on_bad_rows != "skip":
                    raise FusionLogError(f"label file {path}:{row.line}: {row.error}; fix the row, or set "
                                         "label.on_bad_rows=skip to skip and count bad rows")
                skipped += 1
                continue
            labels[row.fields[id_col].strip()] = int(value in rule.anomaly_values)
    return labels, skipped


def read_id_list(path: str, id_regex: str) -> set[str]:
    """Anomalous ids, one per line; lines that hold no id (a header sentence) are ignored."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"id list not found: {path}")
    pattern = re.compile(id_regex) if id_regex else None
    ids = set()
    for line in p.read_text(encoding="utf-8").splitlines():
        token = line.strip()
        if not token or " " in token:
            continue
        if pattern is not None and not pattern.search(token) and not pattern.search(f"[instance: {token}]"):
            continue
        ids.add(token)
    if not ids:
        raise FusionLogError(f"id list {path}: no ids found")
    return ids


# ----------------------------------------------------------------------------- grouping


@dataclass
class SequenceReport:
    """What happened to every parsed line and every label id (the manifest's sequence part)."""

    lines_in_sequences: int = 0
    lines_without_group: int = 0  # parsed lines whose text holds no id of the grouping regex
    lines_without_time: int = 0
    partial_windows: int = 0  # a last window shorter than window_size (kept when grouping.keep_partial)
    lines_in_dropped_tail: int = 0  # lines after the last full window when keep_partial is false
    label_rows_skipped: int = 0  # label-file rows that did not parse, skipped under label.on_bad_rows=skip
    unlabelled_sequences: int = 0  # ids the label file does not know
    label_ids_not_in_log: int = 0  # ids of the label file no sequence has (a sample of a larger log)


def group_lines(table: pa.Table, system: SystemConfig, paths: Seq[str]) -> tuple[Sequences, SequenceReport]:
    """Parsed-line table (from parsing) -> labelled sequences of event ids."""
    rows = [r for r in table.select(["file", "line", "event_id", "alert", "groups", "time", "skip"]).to_pylist()
            if not r["skip"]]
    report = SequenceReport()
    g = system.grouping
    if g.kind == "id_regex":
        seqs = _group_by_id(rows, paths, report)
    elif g.kind == "count_window":
        seqs = _group_by_count(rows, system, paths, report)
    else:
        seqs = _group_by_time(rows, system, paths, report)
    _apply_labels(seqs, system, paths, report)
    return seqs, report


def time_order(times: Seq[float]) -> list[int]:
    """Positions of a sequence's lines in the order they join it: by time where every line has one
    (stable, so ties keep file order), else file order. Prepare and serving both order with this."""
    order = list(range(len(times)))
    if times and all(not math.isnan(t) for t in times):
        order.sort(key=lambda i: times[i])
    return order


def _emit(seqs: Sequences, seq_id: str, members: list[dict], paths: Seq[str]) -> None:
    members = [members[i] for i in time_order([m["time"] for m in members])]
    files = list(dict.fromkeys(Path(paths[m["file"]]).name for m in members))
    alert = max(m["alert"] for m in members)
    seqs.add(seq_id, [m["event_id"] for m in members], alert, ";".join(files), [m["line"] for m in members])


def _group_by_id(rows: list[dict], paths: Seq[str], report: SequenceReport) -> Sequences:
    groups: dict[str, list[dict]] = {}
    for r in rows:
        if not r["groups"]:
            report.lines_without_group += 1
            continue
        report.lines_in_sequences += 1
        for gid in r["groups"]:
            groups.setdefault(gid, []).append(r)
    seqs = Sequences()
    for gid, members in groups.items():
        _emit(seqs, gid, members, paths)
    return seqs


def _group_by_count(rows: list[dict], system: SystemConfig, paths: Seq[str], report: SequenceReport) -> Sequences:
    g = system.grouping
    if len(rows) < g.window_size and not g.keep_partial:
        raise FusionLogError(f"{system.name}: grouping.window_size={g.window_size} is larger than the "
                             f"{len(rows)} parsed lines; lower it or set grouping.keep_partial=true")
    seqs = Sequences()
    by_file: dict[int, list[dict]] = {}
    for r in rows:
        by_file.setdefault(r["file"], []).append(r)
    for file_idx, members in by_file.items():
        name = Path(paths[file_idx]).name
        start, k, covered = 0, 0, 0
        while covered < len(members):
            window = members[start:start + g.window_size]
            if len(window) < g.window_size:
                if not g.keep_partial:
                    report.lines_in_dropped_tail += len(members) - covered
                    break
                report.partial_windows += 1
            _emit(seqs, f"{name}#w{k}", window, paths)
            report.lines_in_sequences += start + len(window) - max(covered, start)
            covered = start + len(window)
            start, k = start + g.window_step, k + 1
    return seqs


def _group_by_time(rows: list[dict], system: SystemConfig, paths: Seq[str], report: SequenceReport) -> Sequences:
    g = system.grouping
    seqs = Sequences()
    by_key: dict[tuple[int, int], list[dict]] = {}
    for r in rows:
        if math.isnan(r["time"]):
            report.lines_without_time += 1
            continue
        by_key.setdefault((r["file"], int(r["time"] // g.window_seconds)), []).append(r)
    for (file_idx, slot), members in sorted(by_key.items()):
        _emit(seqs, f"{Path(paths[file_idx]).name}#t{slot}", members, paths)
        report.lines_in_sequences += len(members)
    return seqs


def _apply_labels(seqs: Sequences, system: SystemConfig, paths: Seq[str], report: SequenceReport) -> None:
    """Turn the per-line alert flags or an id->label file into sequence labels."""
    rule = system.label
    if rule.kind == "first_token":
        return  # _emit already took the max of the line alerts
    if rule.kind == "none":
        seqs.labels = [-1] * len(seqs)
        return
    if system.grouping.kind != "id_regex":
        raise FusionLogError(f"{system.name}: label.kind={rule.kind} needs grouping.kind=id_regex "
                             "(labels are per id)")
    label_paths = [s.label_file for s in system.inputs if s.label_file] or [rule.path]
    if not any(label_paths):
        raise FusionLogError(f"{system.name}: label.kind={rule.kind} needs label.path (or inputs[].label_file)")
    if rule.kind == "label_file":
        table: dict[str, int] = {}
        for p in label_paths:
            part, skipped = read_label_file(p, rule)
            table.update(part)
            report.label_rows_skipped += skipped
        seqs.labels = [table.get(sid, -1) for sid in seqs.seq_ids]
        report.unlabelled_sequences = sum(1 for x in seqs.labels if x == -1)
        report.label_ids_not_in_log = len(set(table) - set(seqs.seq_ids))
    else:
        anomalous: set[str] = set()
        for p in label_paths:
            anomalous |= read_id_list(p, system.grouping.id_regex)
        seqs.labels = [int(sid in anomalous) for sid in seqs.seq_ids]
        report.label_ids_not_in_log = len(anomalous - set(seqs.seq_ids))


def event_counts(seqs: Sequences) -> Counter:
    """How often each event occurs in the system's sequences."""
    counts: Counter = Counter()
    for events in seqs.event_ids:
        counts.update(events)
    return counts
