"""Pre-parsed sessions (a templates table + sessions of event ids, or sessions of template text).

Parsing is skipped; templates get the same text-hash ids as parsed ones, so everything
downstream is identical to the raw path.  Sessions repeated across a system's input files
(the shared HDFS files overlap) are kept once, by session id, and counted.
"""
from __future__ import annotations

import ast
import csv
import gzip
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from fusionlog.config import FusionLogError, InputSpec
from fusionlog.parsing import event_id
from fusionlog.sequences import Sequences

csv.field_size_limit(1 << 26)  # some session rows hold thousands of ids


@dataclass
class SessionReport:
    """Rows read = sessions kept + rows skipped (by reason)."""

    rows_read: int = 0
    skipped: Counter = field(default_factory=Counter)  # empty_session, unknown_event_id, duplicate_session, bad_row


def _open_text(path: Path):
    if not path.is_file():
        raise FileNotFoundError(f"input file not found: {path}")
    if path.stat().st_size == 0:
        raise FusionLogError(f"input file is empty: {path}")
    opener = gzip.open if path.suffix == ".gz" else open
    return opener(path, "rt", newline="", encoding="utf-8")


def read_templates(spec: InputSpec) -> dict[str, str]:
    """Event id (as written in the session file, after id_base) -> template text."""
    path = Path(spec.templates_path)
    with _open_text(path) as fh:
        reader = csv.DictReader(fh)
        cols = reader.fieldnames or []
        needed = [spec.template_text_column] + ([] if spec.template_ids_are_rows else [spec.template_id_column])
        missing = [c for c in needed if c not in cols]
        if missing:
            raise FusionLogError(f"templates file {path}: missing column(s) {', '.join(missing)}; has: {', '.join(cols)}")
        table = {}
        for row_idx, row in enumerate(reader):
            key = str(row_idx) if spec.template_ids_are_rows else row[spec.template_id_column].strip()
            table[key] = row[spec.template_text_column]
    return table


def _split_sequence(value: str, fmt: str, kind: str) -> list[str]:
    if fmt == "space":
        return value.split()
    parsed = json.loads(value) if kind == "templates" else ast.literal_eval(value)
    if not isinstance(parsed, list):
        raise ValueError(f"expected a list, got {type(parsed).__name__}")
    return [str(x) for x in parsed]


def load_sessions(spec: InputSpec, seen: set[str], templates_out: dict[str, str]) -> tuple[Sequences, SessionReport]:
    """Read one session file; adds template texts to ``templates_out`` and session ids to ``seen``."""
    path = Path(spec.path)
    report = SessionReport()
    seqs = Sequences()
    id_to_text = read_templates(spec) if spec.sequence_kind == "event_ids" else {}
    with _open_text(path) as fh:
        if spec.has_header:
            reader = csv.DictReader(fh)
            cols = reader.fieldnames or []
            needed = [c for c in (spec.sequence_column, spec.id_column, spec.label_column) if c]
            missing = [c for c in needed if c not in cols]
            if missing:
                raise FusionLogError(f"session file {path}: missing column(s) {', '.join(missing)}; "
                                     f"has: {', '.join(cols)}")
            rows = ((i, row) for i, row in enumerate(reader, start=1))
        else:
            col = int(spec.sequence_column) if spec.sequence_column.isdigit() else 0
            rows = ((i, {"__seq": r[col] if len(r) > col else ""}) for i, r in enumerate(csv.reader(fh), start=1))
        seq_col = spec.sequence_column if spec.has_header else "__seq"
        for row_no, row in rows:
            if spec.max_rows and report.rows_read >= spec.max_rows:
                break
            report.rows_read += 1
            sid = row[spec.id_column].strip() if spec.id_column else f"{path.name}:{row_no}"
            if sid in seen:
                report.skipped["duplicate_session"] += 1
                continue
            try:
                tokens = _split_sequence(row[seq_col] or "", spec.sequence_format, spec.sequence_kind)
            except (ValueError, SyntaxError):
                report.skipped["bad_row"] += 1
                continue
            if not tokens:
                report.skipped["empty_session"] += 1
                continue
            if spec.sequence_kind == "event_ids":
                try:
                    texts = [id_to_text[_shift(t, spec.id_base)] for t in tokens]
                except (KeyError, ValueError):
                    report.skipped["unknown_event_id"] += 1
                    continue
            else:
                texts = tokens
            events = []
            for text in texts:
                eid = event_id(text)
                templates_out.setdefault(eid, text)
                events.append(eid)
            label = spec.fixed_label if not spec.label_column else int(row[spec.label_column].strip() in spec.anomaly_values)
            seen.add(sid)
            seqs.add(sid, events, label, path.name, source_row=row_no)
    if report.rows_read == 0:
        raise FusionLogError(f"session file {path}: no rows")
    return seqs, report


def _shift(token: str, base: int) -> str:
    """Normalise a file's event id to the templates table's key (MLog files differ by one)."""
    return str(int(token) - base) if base else token.strip()
