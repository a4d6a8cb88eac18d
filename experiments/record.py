"""What one suite run measured, saved as JSON: the report and the plot read only this."""
from __future__ import annotations

import datetime as dt
import json
import os
import platform
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

RECORD_FILE = "suite_record.json"


@dataclass
class Record:
    settings: dict = field(default_factory=dict)  # the suite's settings as run (command, seeds, pairs, caps, ...)
    systems: dict = field(default_factory=dict)  # system name -> what prepare read (inputs, sequences, grouping)
    rows: list[dict] = field(default_factory=list)  # one per (pair, method, seed[, teacher])
    routes: list[dict] = field(default_factory=list)  # router split and distillation log of every FusionLog run
    subsets: list[dict] = field(default_factory=list)  # small vs fused F1 on general / proprietary / all
    teacher_checks: list[dict] = field(default_factory=list)  # each teacher on each source and the target
    rule_checks: list[dict] = field(default_factory=list)  # the router's split under each rule
    ablation_rows: list[dict] = field(default_factory=list)  # FusionLog with one switch changed (seed 0)
    diagnostics: list[dict] = field(default_factory=list)  # target properties vs the source-only model's score
    prepare_seconds: dict = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)  # optional stages left out for time
    run_info: dict = field(default_factory=dict)  # date and machine
    seconds: float = 0.0
    partial: bool = True

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=1, default=float))
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> "Record":
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: run the suite once before --render-only")
        raw = json.loads(path.read_text())
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})


def merge(parts: dict[str, Record]) -> Record:
    """One record from suite runs done in parts (e.g. one process or machine per pair), keyed by where each came from.

    Each part contributes the stages it completed; a stage measured twice is refused rather than
    averaged, and the report lists the parts (the wall time is the longest part's: they ran side by side).
    """
    from fusionlog.config import FusionLogError

    if len(parts) < 2:
        raise FusionLogError("merging needs at least two saved records")
    first = next(iter(parts.values()))
    out = Record(settings=first.settings, run_info={**first.run_info, "parts": []}, partial=False)
    seen: set = set()
    for name, rec in parts.items():
        for row in rec.rows:
            key = (row["pair"], row["method"], row.get("seed"), row.get("teacher"))
            if key in seen:
                raise FusionLogError(f"{name}: {key} is in more than one part; merge parts that ran different stages")
            seen.add(key)
        for f in fields(Record):
            value = getattr(rec, f.name)
            if f.name not in ("settings", "run_info") and isinstance(value, list):
                getattr(out, f.name).extend(value)
        out.systems.update(rec.systems)
        out.prepare_seconds.update(rec.prepare_seconds)
        out.seconds = max(out.seconds, rec.seconds)
        state = "stopped before its end: its completed stages only" if rec.partial else "finished"
        own = [x for x in rec.settings.get("every_run", []) if x not in first.settings.get("every_run", [])]
        out.run_info["parts"].append(f"{name}: {rec.run_info.get('date')}, {rec.seconds / 60:.1f} min, {state}"
                                     + (f"; its runs used {', '.join(own)} instead" if own else ""))
    return out


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def machine() -> str:
    """One line on where the numbers were measured: host, cores, memory, load, versions."""
    import ray
    import torch

    mem = f", {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB RAM"
    load = f", load average at the end {os.getloadavg()[0]:.1f}"
    gpu = "GPU" if torch.cuda.is_available() else "no GPU"
    return (f"{platform.node()} ({platform.machine()}, {os.cpu_count()} CPU cores{mem}, {gpu}{load}); "
            f"Python {platform.python_version()}, torch {torch.__version__}, ray {ray.__version__}")
