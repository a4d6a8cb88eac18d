"""Raw log lines -> (fields, Drain template) with drain3, sequential or in parallel on Ray Data.

Drain is sequential and stateful, so the parallel scheme has three passes:

1. *mine*: each shard of lines is mined by its own drain3 miner (in parallel);
2. *merge*: the shards' templates, most frequent first, are fed as messages to one fresh miner on
   the driver, so near-identical templates from different shards collapse into one;
3. *match*: every line is matched against the merged miner (``TemplateMiner.match`` never changes
   the tree, so this pass is embarrassingly parallel).  The few lines no template matches are
   added to the merged miner on the driver afterwards, so no line is left without a template.

Templates are identified by a hash of their final text, never by drain3's cluster id.
"""
from __future__ import annotations

import gzip
import hashlib
import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional, Sequence

import pyarrow as pa

from fusionlog.config import FusionLogError, ParsingConfig, SystemConfig
from fusionlog.systems import format_regex

log = logging.getLogger(__name__)

DRAIN_STATE = "drain3_state.bin"  # the saved drain3 state, in prepared/<system>/ and in model artifacts
SKIP_REASONS = ("empty_line", "undecodable", "binary", "line_too_long", "format_mismatch")
_CONTROL = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def event_id(template: str) -> str:
    """Stable id of a template: the hash of its text, the same on every shard and machine."""
    return hashlib.sha1(template.encode("utf-8")).hexdigest()[:16]


# ----------------------------------------------------------------------------- reading


def open_lines(path: str | Path) -> Iterator[bytes]:
    """Yield the raw lines of a (possibly gzipped) file, without line terminators."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"input file not found: {path}")
    if path.is_dir():
        raise FusionLogError(f"input path is a directory, expected a log file: {path}")
    if path.stat().st_size == 0:
        raise FusionLogError(f"input file is empty: {path}")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            for raw in fh:
                yield raw.rstrip(b"\r\n")
    except (gzip.BadGzipFile, EOFError, OSError) as exc:
        raise FusionLogError(f"cannot read {path}: {exc}") from exc


def read_chunks(paths: Sequence[str], chunk_lines: int, max_lines: int = 0) -> Iterator[pa.Table]:
    """Raw lines as Arrow tables of ``file`` (index into paths), ``line`` (1-based), ``raw`` bytes."""
    total = 0
    for file_idx, path in enumerate(paths):
        files, lines, raws = [], [], []
        for line_no, raw in enumerate(open_lines(path), start=1):
            if max_lines and total >= max_lines:
                break
            files.append(file_idx)
            lines.append(line_no)
            raws.append(raw)
            total += 1
            if len(raws) == chunk_lines:
                yield raw_table(files, lines, raws)
                files, lines, raws = [], [], []
        if raws:
            yield raw_table(files, lines, raws)
        if max_lines and total >= max_lines:
            return


def raw_table(files: Sequence[int], lines: Sequence[int], raws: Sequence[bytes]) -> pa.Table:
    """The reader's table of raw lines: ``file`` (index into paths), ``line`` (1-based), ``raw`` bytes."""
    return pa.table({"file": pa.array(files, pa.int32()), "line": pa.array(lines, pa.int64()),
                     "raw": pa.array(raws, pa.binary())})


# ----------------------------------------------------------------------------- splitting


@dataclass
class LineSplitter:
    """Turns raw bytes into header fields; everything a line needs before Drain sees it.

    Output columns: ``content`` (what Drain parses), ``alert`` (1/0 from the first-token label
    rule, -1 otherwise), ``groups`` (ids found by the grouping regex), ``time`` (seconds, for
    time windows and ordering; NaN when absent) and ``skip`` (a reason from SKIP_REASONS or "").
    """

    system: SystemConfig
    max_line_chars: int = 10_000
    _regex: re.Pattern = field(init=False, repr=False)
    _id_regex: Optional[re.Pattern] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._regex, self._headers = format_regex(self.system.log_format)
        g = self.system.grouping
        self._id_regex = re.compile(g.id_regex) if g.kind == "id_regex" else None
        self._time_field = g.time_field if g.time_field in self._headers else ""

    def __call__(self, batch: pa.Table) -> pa.Table:
        contents, alerts, groups, times, skips = [], [], [], [], []
        label = self.system.label
        for raw in batch.column("raw").to_pylist():
            content, alert, ids, t, skip = "", -1, [], float("nan"), self._skip_reason_bytes(raw)
            if not skip:
                text = raw.decode("utf-8").strip()
                # A line whose message is empty ("... RAS KERNEL FATAL") still is an event.
                match = self._regex.match(text) or self._regex.match(text + " ")
                if match is None:
                    skip = "format_mismatch"
                else:
                    content = match.group("Content").strip()
                    if label.kind == "first_token":
                        alert = int(text.split(None, 1)[0] != label.normal_token)
                    if self._id_regex is not None:
                        ids = list(dict.fromkeys(m.group(1) if m.groups() else m.group(0)
                                                 for m in self._id_regex.finditer(content)))
                    if self._time_field:
                        t = parse_time(match.group(self._time_field), self.system.grouping.time_format)
            contents.append(content)
            alerts.append(alert)
            groups.append(ids)
            times.append(t)
            skips.append(skip)
        return pa.table({
            "file": batch.column("file"), "line": batch.column("line"),
            "content": pa.array(contents, pa.string()), "alert": pa.array(alerts, pa.int8()),
            "groups": pa.array(groups, pa.list_(pa.string())), "time": pa.array(times, pa.float64()),
            "skip": pa.array(skips, pa.string()),
        })

    def _skip_reason_bytes(self, raw: bytes) -> str:
        if not raw.strip():
            return "empty_line"
        if b"\x00" in raw or len(_CONTROL.findall(raw)) > max(2, len(raw) // 10):
            return "binary"
        try:
            if not raw.decode("utf-8").strip():  # Unicode spaces only (NBSP, U+3000): no first token, no content
                return "empty_line"
        except UnicodeDecodeError:
            return "undecodable"
        if len(raw) > self.max_line_chars:
            return "line_too_long"
        return ""


def parse_time(value: str, time_format: str) -> float:
    """Seconds since the epoch, or NaN when the value does not parse (counted downstream)."""
    from datetime import datetime

    try:
        if time_format == "epoch":
            return float(value)
        return datetime.strptime(value.strip(), time_format).timestamp()
    except ValueError:
        return float("nan")


# ----------------------------------------------------------------------------- drain3


def make_miner(cfg: ParsingConfig, system: SystemConfig):
    """A drain3 TemplateMiner configured in code (no ini file to go missing)."""
    from drain3 import TemplateMiner
    from drain3.masking import MaskingInstruction
    from drain3.template_miner_config import TemplateMinerConfig

    mc = TemplateMinerConfig()
    mc.drain_sim_th = system.drain_sim_th or cfg.sim_th
    mc.drain_depth = system.drain_depth or cfg.depth
    mc.drain_max_children = cfg.max_children
    mc.masking_instructions = [MaskingInstruction(m.regex, m.mask_with) for m in system.masking]
    mc.profiling_enabled = False
    return TemplateMiner(config=mc)


def mine_templates(contents: Sequence[str], cfg: ParsingConfig, system: SystemConfig) -> Counter:
    """Mine one shard; returns final template text -> number of lines (pass 1 of the scheme)."""
    miner = make_miner(cfg, system)
    ids = [miner.add_log_message(c)["cluster_id"] for c in contents]
    final = {c.cluster_id: c.get_template() for c in miner.drain.clusters}
    return Counter(final[i] for i in ids)


def merge_templates(shard_counts: Sequence[Counter], cfg: ParsingConfig, system: SystemConfig):
    """Pass 2: one miner fed every shard template, most frequent first (deterministic order)."""
    total: Counter = Counter()
    for counts in shard_counts:
        total.update(counts)
    miner = make_miner(cfg, system)
    for template, _ in sorted(total.items(), key=lambda kv: (-kv[1], kv[0])):
        miner.add_log_message(template)
    return miner


def match_contents(miner, contents: Sequence[str]) -> list[int]:
    """Pass 3: cluster id of the merged miner for each line, -1 where nothing matches."""
    out = []
    for content in contents:
        cluster = miner.match(content, full_search_strategy="fallback")
        out.append(cluster.cluster_id if cluster is not None else -1)
    return out


def add_unmatched(miner, contents: Sequence[str], cluster_ids: list[int]) -> int:
    """Give lines no merged template matched a cluster by adding them to the miner, in order."""
    added = 0
    for i, cid in enumerate(cluster_ids):
        if cid == -1:
            cluster_ids[i] = miner.add_log_message(contents[i])["cluster_id"]
            added += 1
    return added


def cluster_templates(miner) -> dict[int, str]:
    return {c.cluster_id: c.get_template() for c in miner.drain.clusters}


def save_miner(miner, path: Path) -> None:
    """Persist the drain3 state (drain3's own snapshot format) so serving parses with the same templates."""
    from drain3.file_persistence import FilePersistence

    miner.persistence_handler = FilePersistence(str(path))
    miner.save_state("fusionlog prepare")
    miner.persistence_handler = None


def load_miner(path: Path, cfg: ParsingConfig, system: SystemConfig):
    """Load a snapshot we wrote (drain3 snapshots are jsonpickle: never load untrusted ones)."""
    from drain3 import TemplateMiner
    from drain3.file_persistence import FilePersistence

    if not Path(path).is_file():
        raise FileNotFoundError(f"drain3 state not found: {path}")
    probe = make_miner(cfg, system)
    miner = TemplateMiner(persistence_handler=FilePersistence(str(path)), config=probe.config)
    miner.persistence_handler = None
    return miner


# ----------------------------------------------------------------------------- metrics


def grouping_accuracy(predicted: Sequence, truth: Sequence) -> float:
    """Loghub's grouping accuracy: share of lines whose predicted group has exactly the lines of
    their true group (Zhu et al., ICSE-SEIP'19)."""
    if len(predicted) != len(truth):
        raise ValueError(f"grouping_accuracy: {len(predicted)} predictions for {len(truth)} lines")
    if not truth:
        return 0.0
    by_pred: dict = {}
    by_true: dict = {}
    for i, (p, t) in enumerate(zip(predicted, truth)):
        by_pred.setdefault(p, set()).add(i)
        by_true.setdefault(t, set()).add(i)
    correct = 0
    for members in by_true.values():
        first = next(iter(members))
        if by_pred[predicted[first]] == members:
            correct += len(members)
    return correct / len(truth)


# ----------------------------------------------------------------------------- drivers


@dataclass
class ParseResult:
    """Every raw line with its fields and event id ("" for skipped lines)."""

    table: pa.Table  # file, line, content, alert, groups, time, skip, event_id
    templates: dict[str, str]  # event id -> template text
    miner: object
    unmatched_added: int = 0  # lines the merged miner had to learn after the match pass


def _attach_events(split: pa.Table, cluster_ids: list[int], miner) -> tuple[pa.Table, dict[str, str]]:
    final = cluster_templates(miner)
    ids_by_cluster = {cid: event_id(t) for cid, t in final.items()}
    templates = {ids_by_cluster[cid]: final[cid] for cid in final}
    parsed_mask = [s == "" for s in split.column("skip").to_pylist()]
    it = iter(cluster_ids)
    events = [ids_by_cluster[next(it)] if ok else "" for ok in parsed_mask]
    used = set(events) - {""}
    return split.append_column("event_id", pa.array(events, pa.string())), {k: v for k, v in templates.items() if k in used}


def parse_sequential(paths: Sequence[str], system: SystemConfig, cfg: ParsingConfig) -> ParseResult:
    """Plain single-process drain3 over the lines in file order: the reference for the parallel scheme."""
    splitter = LineSplitter(system, cfg.max_line_chars)
    tables = [splitter(chunk) for chunk in read_chunks(paths, cfg.chunk_lines, system.max_lines)]
    if not tables:
        raise FusionLogError(f"system {system.name}: no lines in {', '.join(map(str, paths))}")
    split = pa.concat_tables(tables)
    contents = [c for c, s in zip(split.column("content").to_pylist(), split.column("skip").to_pylist()) if not s]
    miner = make_miner(cfg, system)
    cluster_ids = [miner.add_log_message(c)["cluster_id"] for c in contents]
    table, templates = _attach_events(split, cluster_ids, miner)
    return ParseResult(table, templates, miner)


class _Matcher:
    """Ray Data actor holding the merged miner once, matching batch after batch."""

    def __init__(self, miner):
        self.miner = miner

    def __call__(self, batch: pa.Table) -> pa.Table:
        skips = batch.column("skip").to_pylist()
        parsed = [c for c, s in zip(batch.column("content").to_pylist(), skips) if not s]
        matched = iter(match_contents(self.miner, parsed))
        ids = [next(matched) if not s else -2 for s in skips]  # -2 marks a skipped line
        return batch.append_column("cluster", pa.array(ids, pa.int64()))


def _mine_batch(batch: pa.Table, cfg: ParsingConfig, system: SystemConfig) -> pa.Table:
    contents = [c for c, s in zip(batch.column("content").to_pylist(), batch.column("skip").to_pylist()) if not s]
    counts = mine_templates(contents, cfg, system)
    return pa.table({"template": pa.array(list(counts), pa.string()),
                     "count": pa.array(list(counts.values()), pa.int64())})


def parse_parallel(paths: Sequence[str], system: SystemConfig, cfg: ParsingConfig, num_workers: int) -> ParseResult:
    """The three-pass scheme on Ray Data (see module docstring). Ray must already be initialised."""
    import ray
    from ray.data import ActorPoolStrategy, TaskPoolStrategy

    chunks = list(read_chunks(paths, cfg.chunk_lines, system.max_lines))
    if not chunks:
        raise FusionLogError(f"system {system.name}: no lines in {', '.join(map(str, paths))}")
    splitter = LineSplitter(system, cfg.max_line_chars)
    source = ray.data.from_arrow(chunks)
    if len(chunks) < num_workers:
        source = source.repartition(num_workers)  # small inputs: still give every worker a block
    split = source.map_batches(
        splitter, batch_format="pyarrow", batch_size=None, compute=TaskPoolStrategy(size=num_workers)
    ).materialize()
    shards = cfg.num_shards or num_workers
    mined = split.repartition(shards).map_batches(
        _mine_batch, fn_kwargs={"cfg": cfg, "system": system}, batch_format="pyarrow", batch_size=None,
        compute=TaskPoolStrategy(size=num_workers),
    )
    shard_counts = []
    for ref in mined.to_arrow_refs():
        t = ray.get(ref)
        shard_counts.append(Counter(dict(zip(t.column("template").to_pylist(), t.column("count").to_pylist()))))
    miner = merge_templates(shard_counts, cfg, system)
    matched = split.map_batches(
        _Matcher, fn_constructor_args=(miner,), batch_format="pyarrow", batch_size=None,
        compute=ActorPoolStrategy(size=num_workers),
    )
    table = pa.concat_tables(ray.get(matched.to_arrow_refs())).sort_by([("file", "ascending"), ("line", "ascending")])
    clusters = table.column("cluster").to_pylist()
    table = table.drop_columns(["cluster"])
    parsed_clusters = [c for c in clusters if c != -2]
    contents = [c for c, k in zip(table.column("content").to_pylist(), clusters) if k != -2]
    added = add_unmatched(miner, contents, parsed_clusters)
    if added:
        log.info("%s: %d lines matched no merged template and were added to the miner", system.name, added)
    table, templates = _attach_events(table, parsed_clusters, miner)
    return ParseResult(table, templates, miner, unmatched_added=added)


def skip_counts(table: pa.Table) -> dict[str, int]:
    """Skipped lines by reason (only reasons that occurred)."""
    return dict(sorted(Counter(s for s in table.column("skip").to_pylist() if s).items()))
