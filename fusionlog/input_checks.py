"""Inputs that look wrong say so: every file before any work, and a log against its declared system.

Before work starts, every file a system reads must exist, be a regular file, be non-empty and be
readable, so a missing target file is reported at once rather than a minute into parsing. After
parsing, a log whose lines mostly fail the declared ``log_format``, or whose first-token labels
are mostly "anomalous" (an HDFS log declared as BGL: every first token is a date), was declared
as the wrong system; both are errors naming the first bad line.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pyarrow as pa
import pyarrow.compute as pc

from fusionlog.config import FusionLogError, SystemConfig
from fusionlog.parsing import open_lines


def system_files(system: SystemConfig, where: str) -> tuple[list[tuple[str, str]], list[str]]:
    """(config key, path) of every file ``system`` reads, and problems of a label rule that names none."""
    files, problems = [], []
    for i, spec in enumerate(system.inputs):
        files.append((f"{where}.inputs[{i}].path", spec.path))
        if spec.shape == "raw" and spec.label_file:
            files.append((f"{where}.inputs[{i}].label_file", spec.label_file))
        if spec.shape == "sessions" and spec.sequence_kind == "event_ids":
            files.append((f"{where}.inputs[{i}].templates_path", spec.templates_path))
    raw = [s for s in system.inputs if s.shape == "raw"]
    if raw and system.label.kind in ("label_file", "id_list") and not any(s.label_file for s in raw):
        if system.label.path:
            files.append((f"{where}.label.path", system.label.path))
        else:
            problems.append(f"{where}.label.path: label.kind={system.label.kind} needs label.path or "
                            "inputs[].label_file (or label.kind=none for a log without labels)")
    return files, problems


def file_problem(path: str | Path) -> str:
    """Why ``path`` cannot be read as an input file, or "" when it can."""
    p = Path(path)
    if not p.exists():
        return f"input file not found: {p}"
    if p.is_dir():
        return f"input path is a directory, expected a file: {p}"
    if not p.is_file():
        return f"input path is not a regular file: {p}"
    if p.stat().st_size == 0:
        return f"input file is empty: {p}"
    try:
        with open(p, "rb") as fh:
            fh.read(1)
    except OSError as exc:
        return f"input file cannot be read ({exc.strerror}): {p}"
    return ""


def check_input_files(systems: dict[str, SystemConfig], names: Sequence[str]) -> None:
    """Every file of the named systems, before any work; all problems are reported together."""
    problems = []
    for name in names:
        files, missing_rules = system_files(systems[name], f"data.systems.{name}")
        problems.extend(missing_rules)
        problems.extend(f"{key}: {why}" for key, path in files if (why := file_problem(path)))
    if len(problems) == 1:
        raise FusionLogError(problems[0])
    if problems:
        raise FusionLogError("inputs are not usable:\n  - " + "\n  - ".join(problems))


def line_text(path: str, line_no: int, limit: int = 160) -> str:
    """Line ``line_no`` (1-based) of a log, decoded leniently and cut to ``limit`` characters, for messages."""
    for number, raw in enumerate(open_lines(path), start=1):
        if number == line_no:
            text = raw.decode("utf-8", "replace")
            return text if len(text) <= limit else text[:limit] + "..."
    return ""


def _first(table: pa.Table, mask: pa.ChunkedArray, paths: Sequence[str]) -> tuple[str, int]:
    """File and line of the first row where ``mask`` holds."""
    i = pc.index(mask, True).as_py()
    return str(paths[table.column("file")[i].as_py()]), table.column("line")[i].as_py()


def check_format(table: pa.Table, paths: Sequence[str], system: SystemConfig, max_mismatch: float) -> None:
    """More than ``max_mismatch`` of the non-empty lines failing ``log_format`` means the wrong format."""
    skip = table.column("skip")
    non_empty = len(skip) - pc.sum(pc.equal(skip, "empty_line")).as_py() if len(skip) else 0
    bad = pc.equal(skip, "format_mismatch")
    mismatched = pc.sum(bad).as_py() or 0
    if not non_empty or mismatched <= max_mismatch * non_empty:
        return
    path, line = _first(table, bad, paths)
    raise FusionLogError(
        f"{system.name}: {mismatched} of {non_empty} non-empty lines do not match log_format "
        f"{system.log_format!r} (parsing.max_format_mismatch={max_mismatch}); first at {path}:{line}: "
        f"{line_text(path, line)!r}. Is this log really {system.name}? Fix data.systems.{system.name}.log_format "
        "or the input path")


def check_label_field(table: pa.Table, paths: Sequence[str], system: SystemConfig) -> None:
    """First-token labels: anomalies are rare, so a log whose first field mostly isn't the normal token
    has another first field (an HDFS log declared as BGL starts every line with a date)."""
    rule = system.label
    if rule.kind != "first_token":
        return
    parsed = pc.equal(table.column("skip"), "")
    alert = pc.and_(parsed, pc.equal(table.column("alert"), 1))
    n_parsed, n_alert = pc.sum(parsed).as_py() or 0, pc.sum(alert).as_py() or 0
    if not n_parsed or n_alert <= rule.max_alert_share * n_parsed:
        return
    path, line = _first(table, alert, paths)
    token = (line_text(path, line).split(None, 1) or [""])[0]
    raise FusionLogError(
        f"{system.name}: {n_alert} of {n_parsed} parsed lines are labelled anomalous by label.kind=first_token "
        f"(first token not {rule.normal_token!r}), more than label.max_alert_share={rule.max_alert_share}; "
        f"first at {path}:{line}, first token {token!r}. The first field is not {system.name}'s label field: "
        "is this log really " + system.name + "? (or set its label.kind=none)")
