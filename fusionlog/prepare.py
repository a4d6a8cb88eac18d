"""The ingestion stage end to end: raw logs or sessions -> events + sequences + vectors on disk.

Outputs, per system, under ``data.output_dir/<SYSTEM>/``:
``events.parquet`` (event_id, template, count, vector), ``sequences.parquet`` (seq_id, event_ids,
label, source_file, line_numbers, source_row), ``drain3_state.bin`` (raw inputs only) and
``manifest.json`` (lines read = parsed + skipped, skips by reason, sequences and anomalies).
The run's ``manifest.json`` and resolved ``config.yaml`` sit at the top. The directory is replaced
as a whole when the run completes (fusionlog/staging.py), never updated in place.
"""
from __future__ import annotations

import json
import logging
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from fusionlog import progress
from fusionlog.config import FusionLogConfig, FusionLogError, ParsingConfig, RayConfig, SystemConfig, to_dict
from fusionlog.embedding import embed_templates
from fusionlog.input_checks import check_format, check_input_files, check_label_field
from fusionlog.parsing import DRAIN_STATE, input_bytes, parse_parallel, parse_sequential, save_miner, skip_counts
from fusionlog.ray_runtime import ensure_ray
from fusionlog.sequences import Sequences, event_counts, group_lines
from fusionlog.sessions import load_sessions
from fusionlog.staging import check_replaceable, staged_dir

log = logging.getLogger(__name__)

PREPARED_MARKERS = ("manifest.json", "config.yaml")  # a directory holding one of these was written by prepare


@dataclass
class SystemManifest:
    """Accounting for one system: every line and every session row is in exactly one bucket."""

    system: str
    raw_files: list[str] = field(default_factory=list)
    session_files: list[str] = field(default_factory=list)
    lines_read: int = 0
    lines_parsed: int = 0
    lines_skipped: dict[str, int] = field(default_factory=dict)
    parse_mode: str = ""
    unmatched_lines_learned: int = 0
    grouping: dict = field(default_factory=dict)
    session_rows_read: int = 0
    session_rows_skipped: dict[str, int] = field(default_factory=dict)
    events: int = 0
    sequences: int = 0
    anomalous: int = 0
    normal: int = 0
    unlabelled: int = 0
    seconds: float = 0.0


@dataclass
class IngestedSystem:
    templates: dict[str, str]
    sequences: Sequences
    manifest: SystemManifest
    miner: object = None  # drain3 TemplateMiner of the raw inputs (None for sessions only)


def ingest_system(system: SystemConfig, parsing: ParsingConfig, ray_cfg: RayConfig, progress: bool) -> IngestedSystem:
    """Parse the raw inputs and read the session inputs of one system; nothing is written here."""
    t0 = time.time()
    man = SystemManifest(system=system.name)
    templates: dict[str, str] = {}
    seqs = Sequences()
    miner = None
    check_input_files({system.name: system}, [system.name])
    raw = [s.path for s in system.inputs if s.shape == "raw"]
    if raw:
        small = input_bytes(raw) < parsing.parallel_min_bytes
        if parsing.parallel and not small:
            ensure_ray(ray_cfg, progress)
            result = parse_parallel(raw, system, parsing, ray_cfg.num_workers)
            man.parse_mode = f"ray x{ray_cfg.num_workers}"
        else:
            result = parse_sequential(raw, system, parsing)
            man.parse_mode = "in-process (below parsing.parallel_min_bytes)" if parsing.parallel else "sequential"
        man.raw_files = raw
        man.lines_read = result.table.num_rows
        man.lines_skipped = skip_counts(result.table)
        man.lines_parsed = man.lines_read - sum(man.lines_skipped.values())
        man.unmatched_lines_learned = result.unmatched_added
        check_format(result.table, raw, system, parsing.max_format_mismatch)
        if man.lines_parsed == 0:
            raise FusionLogError(f"{system.name}: none of the {man.lines_read} lines parsed "
                                 f"(skips: {man.lines_skipped}); check log_format {system.log_format!r}")
        check_label_field(result.table, raw, system)
        raw_seqs, report = group_lines(result.table, system, raw)
        man.grouping = asdict(report)
        templates.update(result.templates)
        seqs.extend(raw_seqs)
        miner = result.miner
    seen: set[str] = set(seqs.seq_ids)
    skipped: Counter = Counter()
    for spec in system.inputs:
        if spec.shape != "sessions":
            continue
        part, report = load_sessions(spec, seen, templates)
        man.session_files.append(spec.path)
        man.session_rows_read += report.rows_read
        skipped.update(report.skipped)
        if report.first_bad_row:
            log.warning("%s: %d session rows skipped as bad_row; the first: %s", system.name,
                        report.skipped["bad_row"], report.first_bad_row)
        seqs.extend(part)
    man.session_rows_skipped = dict(skipped)
    if len(seqs) == 0:
        raise FusionLogError(f"{system.name}: no sequences were formed; see the counts: "
                             f"{json.dumps(asdict(man), default=str)}")
    man.events = len(set(event_counts(seqs)))
    man.sequences = len(seqs)
    stats = seqs.stats()
    man.anomalous, man.normal, man.unlabelled = stats["anomalous"], stats["normal"], stats["unlabelled"]
    man.seconds = round(time.time() - t0, 2)
    return IngestedSystem(templates, seqs, man, miner)


def write_system(out_dir: Path, data: IngestedSystem, vectors: dict[str, list[float]]) -> None:
    counts = event_counts(data.sequences)
    ids = sorted(counts)
    events = pa.table({
        "event_id": ids, "template": [data.templates[i] for i in ids],
        "count": pa.array([counts[i] for i in ids], pa.int64()),
        "vector": pa.array([vectors[i] for i in ids], pa.list_(pa.float32())),
    })
    out_dir.mkdir(parents=True, exist_ok=True)
    pq.write_table(events, out_dir / "events.parquet")
    pq.write_table(data.sequences.to_arrow(), out_dir / "sequences.parquet")
    if data.miner is not None:
        save_miner(data.miner, out_dir / DRAIN_STATE)
    (out_dir / "manifest.json").write_text(json.dumps(asdict(data.manifest), indent=2) + "\n")


def prepare(cfg: FusionLogConfig) -> dict:
    """Run ingestion for every source and the target; returns the run manifest.

    Every input file is checked before any work, and the outputs are written into a staging
    directory that replaces ``data.output_dir`` only when complete: a failed run leaves the
    previous prepared data untouched.
    """
    names = [*cfg.data.sources, cfg.data.target]
    out = Path(cfg.data.output_dir)
    check_replaceable(out, PREPARED_MARKERS, "data.output_dir")
    check_input_files(cfg.data.systems, names)
    loaded: dict[str, IngestedSystem] = {}
    with progress.stage("prepare", len(names) + 1, "steps") as bar:  # a step per system, then the embedding
        for name in names:
            log.info("preparing %s", name)
            bar.update(note=f"parsing {name}")
            loaded[name] = ingest_system(cfg.data.systems[name], cfg.parsing, cfg.ray, cfg.run.progress)
            m = loaded[name].manifest
            log.info("%s: %d lines read, %d parsed, skipped %s; %d sessions rows; %d sequences (%d anomalous), "
                     "%d events", name, m.lines_read, m.lines_parsed, m.lines_skipped or "none",
                     m.session_rows_read, m.sequences, m.anomalous, m.events)
            if m.grouping.get("label_rows_skipped"):
                log.warning("%s: %d label-file rows skipped (label.on_bad_rows=skip)", name,
                            m.grouping["label_rows_skipped"])
            bar.advance()
        # One embedding call over the events of all systems: the IDF is shared (FusionLog §III-B).
        all_ids = sorted({i for d in loaded.values() for i in event_counts(d.sequences)})
        bar.update(note=f"embedding {len(all_ids)} events")
        text = {i: t for d in loaded.values() for i, t in d.templates.items()}
        vectors, report = embed_templates([text[i] for i in all_ids], cfg.embedding)
        by_id = {i: vectors[k].tolist() for k, i in enumerate(all_ids)}
        bar.advance(note=", ".join(f"{n} {d.manifest.sequences} seq" for n, d in loaded.items()))
    manifest = {"systems": {n: asdict(d.manifest) for n, d in loaded.items()}, "embedding": report.to_dict(),
                "sources": cfg.data.sources, "target": cfg.data.target}
    with staged_dir(out, PREPARED_MARKERS, "data.output_dir") as stage:
        (stage / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
        for name, data in loaded.items():
            write_system(stage / name, data, by_id)
        (stage / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest
