"""Pre-parsed sessions (a templates table + sessions of event ids, or sessions of template text).

Parsing is skipped; templates get the same text-hash ids as parsed ones, so everything
downstream is identical to the raw path.  Sessions repeated across a system's input files
(the shared HDFS files overlap) are kept once, by session id, and counted.
"""
from __future__ import annotations

import ast
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from fusionlog.config import FusionLogError, InputSpec
from fusionlog.csvrows import csv_rows, header_and_rows, open_text
from fusionlog.parsing import event_id
from fusionlog.sequences import Sequences


@dataclass
class SessionReport:
    """Rows read = sessions kept + rows skipped (by reason)."""

    rows_read: int = 0
    # empty_session, unknown_event_id, duplicate_session, bad_row (not valid CSV, wrong field count, bad list)
    skipped: Counter = field(default_factory=Counter)
    first_bad_row: str = ""  # "file:line: why" of the first bad_row, for the message that reports the count


def read_templates(spec: InputSpec) -> dict[str, str]:
    """Event id (as written in the session file, after id_base) -> template text.

    Every row must parse: a templates table with a bad row would silently shift or drop events.
    """
    path = Path(spec.templates_path)
    where = f"templates file {path}"
    with open_text(path) as fh:
        cols, rows = header_and_rows(fh, where)
        needed = [spec.template_text_column] + ([] if spec.template_ids_are_rows else [spec.template_id_column])
        missing = [c for c in needed if c not in cols]
        if missing:
            raise FusionLogError(f"{where}: missing column(s) {', '.join(missing)}; has: {', '.join(cols)}")
        text_col = cols.index(spec.template_text_column)
        id_col = None if spec.template_ids_are_rows else cols.index(spec.template_id_column)
        table = {}
        for row_idx, row in enumerate(rows):
            if row.error:
                raise FusionLogError(f"{where}:{row.line}: {row.error}")
            key = str(row_idx) if id_col is None else row.fields[id_col].strip()
            table[key] = row.fields[text_col]
    return table


def _split_sequence(value: str, fmt: str, kind: str) -> list[str]:
    if fmt == "space":
        return value.split()
    parsed = json.loads(value) if kind == "templates" else ast.literal_eval(value)
    if not isinstance(parsed, list):
        raise ValueError(f"expected a list, got {type(parsed).__name__}")
    return [str(x) for x in parsed]


# What a malformed sequence cell raises: bad JSON/literal syntax, unhashable or absurdly nested literals.
_BAD_SEQUENCE = (ValueError, SyntaxError, TypeError, RecursionError, MemoryError)


def _label(value: str, spec: InputSpec, where: str) -> int:
    """1/0 from the label column; anything outside the two sets is an error, never a silent 0."""
    value = value.strip()
    if value in spec.anomaly_values:
        return 1
    if value in spec.normal_values:
        return 0
    raise FusionLogError(f"{where}: label {value!r} is in neither anomaly_values {spec.anomaly_values} nor "
                         f"normal_values {spec.normal_values}; fix the row or list the value in one of them")


def load_sessions(spec: InputSpec, seen: set[str], templates_out: dict[str, str]) -> tuple[Sequences, SessionReport]:
    """Read one session file; adds template texts to ``templates_out`` and session ids to ``seen``.

    Rows that are not valid CSV (an unclosed quote) or have the wrong field count are counted as
    ``bad_row`` and the next line is read as the next row.
    """
    path = Path(spec.path)
    where = f"session file {path}"
    report = SessionReport()
    seqs = Sequences()
    id_to_text = read_templates(spec) if spec.sequence_kind == "event_ids" else {}
    with open_text(path) as fh:
        if spec.has_header:
            cols, rows = header_and_rows(fh, where)
            needed = [c for c in (spec.sequence_column, spec.id_column, spec.label_column) if c]
            missing = [c for c in needed if c not in cols]
            if missing:
                raise FusionLogError(f"{where}: missing column(s) {', '.join(missing)}; has: {', '.join(cols)}")
            seq_col = cols.index(spec.sequence_column)
            id_col = cols.index(spec.id_column) if spec.id_column else None
            label_col = cols.index(spec.label_column) if spec.label_column else None
        else:
            rows = csv_rows(fh, where)
            seq_col, id_col, label_col = int(spec.sequence_column), None, None
        for row_no, row in enumerate(rows, start=1):
            if spec.max_rows and report.rows_read >= spec.max_rows:
                break
            report.rows_read += 1
            if not row.error and len(row.fields) <= max(seq_col, id_col or 0, label_col or 0):
                row.error = f"has {len(row.fields)} fields, column {seq_col} is needed"
            if row.error:
                _bad_row(report, f"{path}:{row.line}: {row.error}")
                continue
            sid = row.fields[id_col].strip() if id_col is not None else f"{path.name}:{row_no}"
            if sid in seen:
                report.skipped["duplicate_session"] += 1
                continue
            try:
                tokens = _split_sequence(row.fields[seq_col], spec.sequence_format, spec.sequence_kind)
            except _BAD_SEQUENCE as exc:
                _bad_row(report, f"{path}:{row.line}: the sequence does not parse ({type(exc).__name__})")
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
            label = spec.fixed_label if label_col is None else _label(row.fields[label_col], spec, f"{path}:{row.line}")
            events = []
            for text in texts:
                eid = event_id(text)
                templates_out.setdefault(eid, text)
                events.append(eid)
            seen.add(sid)
            seqs.add(sid, events, label, path.name, source_row=row_no)
    if report.rows_read == 0:
        raise FusionLogError(f"{where}: no rows")
    return seqs, report


def _bad_row(report: SessionReport, why: str) -> None:
    report.skipped["bad_row"] += 1
    report.first_bad_row = report.first_bad_row or why


def _shift(token: str, base: int) -> str:
    """Normalise a file's event id to the templates table's key (MLog files differ by one)."""
    return str(int(token) - base) if base else token.strip()
