"""Raw log lines -> (fields, Drain template) with drain3, in one process or in one parallel pass on Ray.

Drain is sequential and stateful. The parallel scheme reads and mines every line once:

1. *mine* (one Ray task per shard): a worker reads its own byte range of a file (a gzipped file
   cannot be split, so it is one shard, decompressed as a stream by one worker), splits the
   headers, mines its lines with its own drain3 miner and keeps each line's shard cluster. Only the
   shard's templates with their line counts go back to the driver; the lines stay in the object store.
2. *merge* (driver, O(templates)): the shards' templates, most frequent first, are fed to one fresh
   miner, so near-identical templates of different shards collapse into one; each shard template is
   then mapped to the merged cluster that matches it (learnt by the merged miner if none does).
3. *apply* (one Ray task per shard): the worker maps each line's shard cluster to the event id of
   its merged template and numbers its lines; only these columns go back, and the driver joins them
   to the mined tables it maps from the object store (zero copy), so no shard is stored twice.

Shards are contiguous line ranges concatenated in order, so the output is in (file, line) order
without a sort. Templates are identified by a hash of their final text, never by drain3's cluster id.
Reading and header splitting are columnar (Arrow kernels, one RE2 regex per system): the per-line
Python work left is drain3's own and the grouping regex. Small inputs are better parsed in-process
(``parse_sequential``): Ray's start-up costs more than it saves (``parsing.parallel_min_bytes``).
"""
from __future__ import annotations

import gzip
import hashlib
import logging
import math
import re
import struct
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Iterator, Optional, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fusionlog.config import FusionLogError, ParsingConfig, SystemConfig
from fusionlog.systems import format_regex

log = logging.getLogger(__name__)

DRAIN_STATE = "drain3_state.bin"  # the saved drain3 state, in prepared/<system>/ and in model artifacts
SKIP_REASONS = ("empty_line", "undecodable", "binary", "line_too_long", "format_mismatch")
_CONTROL = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]"
_BLANK = r"^[ \t\n\r\x0b\x0c]*$"  # what bytes.strip() removes
_BLOCK_BYTES = 8 << 20  # read size; a block is split into lines by one Arrow kernel


def event_id(template: str) -> str:
    """Stable id of a template: the hash of its text, the same on every shard and machine."""
    return hashlib.sha1(template.encode("utf-8")).hexdigest()[:16]


# ----------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class Shard:
    """Lines of ``paths[file]`` that start in bytes [start, end); ``end`` None reads to the end."""

    file: int
    path: str
    start: int = 0
    end: Optional[int] = None


def _is_gzip(path: str | Path) -> bool:
    return Path(path).suffix == ".gz"


def _checked(path: str | Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"input file not found: {path}")
    if path.is_dir():
        raise FusionLogError(f"input path is a directory, expected a log file: {path}")
    if path.stat().st_size == 0:
        raise FusionLogError(f"input file is empty: {path}")
    return path


def input_bytes(paths: Sequence[str]) -> int:
    """Text size of the inputs: file sizes, a gzip file's from its trailer (what decides the parse mode)."""
    total = 0
    for p in paths:
        path = _checked(p)
        size = path.stat().st_size
        if _is_gzip(path) and size >= 18:  # ISIZE: uncompressed size mod 2**32 of the last member
            with open(path, "rb") as fh:
                fh.seek(-4, 2)
                size = max(size, struct.unpack("<I", fh.read(4))[0])
        total += size
    return total


def plan_shards(paths: Sequence[str], num_shards: int) -> list[Shard]:
    """Split plain files into about ``num_shards`` equal byte ranges; each gzipped file is one shard."""
    sizes = [_checked(p).stat().st_size for p in paths]
    plain = sum(s for p, s in zip(paths, sizes) if not _is_gzip(p))
    gzipped = sum(_is_gzip(p) for p in paths)
    step_target = max(1, math.ceil(plain / max(1, num_shards - gzipped)))
    shards = []
    for i, (path, size) in enumerate(zip(paths, sizes)):
        if _is_gzip(path):
            shards.append(Shard(i, str(path)))
            continue
        step = math.ceil(size / math.ceil(size / step_target))
        shards += [Shard(i, str(path), s, min(s + step, size)) for s in range(0, size, step)]
    return shards


def _whole_lines(fh: IO[bytes], limit: Optional[int]) -> Iterator[bytes]:
    """Blocks of whole lines (each ending in a newline, except maybe the file's last).

    With ``limit`` it reads that many bytes, then finishes the line begun inside them.
    """
    left, tail = limit, []
    while left is None or left > 0:
        block = fh.read(_BLOCK_BYTES if left is None else min(_BLOCK_BYTES, left))
        if not block:
            break
        if left is not None:
            left -= len(block)
        cut = block.rfind(b"\n") + 1
        if cut:
            yield b"".join([*tail, memoryview(block)[:cut]])
            tail = [block[cut:]] if cut < len(block) else []
        else:
            tail.append(block)  # a line longer than a block
    if tail and left == 0:
        tail.append(fh.readline())
    if tail:
        yield b"".join(tail)


def _split_lines(data: bytes) -> pa.Array:
    """One block -> its lines as a binary array, without terminators (like ``rstrip(b"\\r\\n")``).

    Vectorised: the newline positions give the offsets and the other bytes are the values.
    """
    buf = np.frombuffer(data, np.uint8)
    newline = buf == 10
    ends = np.flatnonzero(newline)
    if not data.endswith(b"\n"):
        ends = np.append(ends, len(buf))  # the file's last line has no terminator
    offsets = np.zeros(len(ends) + 1, np.int32)
    np.cumsum(np.diff(ends, prepend=-1) - 1, out=offsets[1:])
    lines = pa.Array.from_buffers(pa.binary(), len(ends), [None, pa.py_buffer(offsets), pa.py_buffer(buf[~newline])])
    if b"\r" in data:
        lines = pc.replace_substring_regex(lines, r"\r+$", "")
    return lines


def _line_arrays(shard: Shard) -> Iterator[pa.Array]:
    """The raw lines of one shard, block by block; a line belongs to the shard its first byte is in."""
    path = _checked(shard.path)
    try:
        with (gzip.open(path, "rb") if _is_gzip(path) else open(path, "rb")) as fh:
            if shard.start:
                fh.seek(shard.start - 1)
                if fh.read(1) != b"\n":
                    fh.readline()  # the line begun before start belongs to the previous shard
            limit = None if shard.end is None else max(0, shard.end - fh.tell())
            for data in _whole_lines(fh, limit):
                yield _split_lines(data)
    except (gzip.BadGzipFile, EOFError, OSError) as exc:
        raise FusionLogError(f"cannot read {path}: {exc}") from exc


def read_shard(shard: Shard, chunk_lines: int, limit: int = 0) -> Iterator[pa.Table]:
    """Raw lines of a shard as tables of ``file``, ``line`` (1-based within the shard), ``raw`` bytes.

    ``limit`` > 0 stops after that many lines.
    """
    done = 0
    for lines in _line_arrays(shard):
        if limit:
            lines = lines.slice(0, limit - done)
        for start in range(0, len(lines), chunk_lines):
            part = lines.slice(start, chunk_lines)
            numbers = np.arange(done + 1, done + len(part) + 1, dtype=np.int64)
            done += len(part)
            yield raw_table(np.full(len(part), shard.file, np.int32), numbers, part)
        if limit and done >= limit:
            return


def raw_table(files: Sequence[int], lines: Sequence[int], raws: Sequence[bytes] | pa.Array) -> pa.Table:
    """The reader's table of raw lines: ``file`` (index into paths), ``line`` (1-based), ``raw`` bytes."""
    return pa.table({"file": pa.array(files, pa.int32()), "line": pa.array(lines, pa.int64()),
                     "raw": raws if isinstance(raws, pa.Array) else pa.array(raws, pa.binary())})


def read_chunks(paths: Sequence[str], chunk_lines: int, max_lines: int = 0) -> Iterator[pa.Table]:
    """Raw lines as Arrow tables of ``file`` (index into paths), ``line`` (1-based), ``raw`` bytes."""
    total = 0
    for i, path in enumerate(paths):
        for chunk in read_shard(Shard(i, str(path)), chunk_lines, max_lines - total if max_lines else 0):
            total += chunk.num_rows
            yield chunk
        if max_lines and total >= max_lines:
            return


def open_lines(path: str | Path) -> Iterator[bytes]:
    """Yield the raw lines of a (possibly gzipped) file, without line terminators."""
    for lines in _line_arrays(Shard(0, str(path))):
        yield from lines.to_pylist()


# ----------------------------------------------------------------------------- splitting


def _fields_pattern(pattern: str, keep: set[str]) -> str:
    """The format regex for RE2, capturing only the fields we read (fewer groups extract faster).

    A trailing lazy ``<Content>`` becomes greedy: before ``$`` both take the whole rest of the line,
    and RE2 extracts the greedy form faster.
    """
    pattern = re.sub(r"\(\?P<(\w+)>", lambda m: m.group(0) if m.group(1) in keep else "(?:", pattern)
    if pattern.endswith("(?P<Content>.*?)$"):
        pattern = pattern[: -len("(?P<Content>.*?)$")] + "(?P<Content>.*)$"
    try:
        pc.extract_regex(pa.array([""]), pattern)
    except pa.ArrowInvalid as exc:
        raise FusionLogError(f"log_format: its regex {pattern!r} is not valid RE2: {exc}") from None
    return pattern


@dataclass
class LineSplitter:
    """Turns raw bytes into header fields; everything a line needs before Drain sees it.

    Output columns: ``file``, ``line``, ``content`` (what Drain parses; masking is left to drain3),
    ``alert`` (1/0 from the first-token label rule, -1 otherwise), ``groups`` (ids found by the
    grouping regex), ``time`` (seconds, for time windows and ordering; NaN when absent) and
    ``skip`` (a reason from SKIP_REASONS or ""). Columnar: Arrow kernels over the whole batch
    (the header by the format's regex, run by RE2, whose ``\\s`` is ASCII whitespace); only the
    grouping ids are found line by line.
    """

    system: SystemConfig
    max_line_chars: int = 10_000

    def __post_init__(self) -> None:
        regex, headers = format_regex(self.system.log_format)
        g = self.system.grouping
        self._time_field = g.time_field if g.time_field in headers else ""
        self._fields = _fields_pattern(regex.pattern, {"Content", self._time_field})
        self._id_regex = re.compile(g.id_regex) if g.kind == "id_regex" else None
        self._id_arrow = arrow_id_pattern(self._id_regex) if self._id_regex is not None else None
        label = self.system.label
        self._normal = "^" + re.escape(label.normal_token) + r"(\s|$)" if label.kind == "first_token" else ""

    def __call__(self, batch: pa.Table) -> pa.Table:
        raw = batch.column("raw").combine_chunks()
        codes, text = self._skips(raw)
        text = pc.utf8_trim_whitespace(text)
        content, when = self._extract(text, codes)
        codes[(codes == 0) & np.asarray(pc.is_null(content))] = SKIP_REASONS.index("format_mismatch") + 1
        ok = codes == 0
        content = pc.utf8_trim_whitespace(content if ok.all() else pc.if_else(pa.array(ok), content, ""))
        alert = np.full(len(raw), -1, np.int8)
        if self._normal:
            alert[ok] = ~np.asarray(pc.match_substring_regex(text, self._normal))[ok]
        times = self._times(when, ok) if self._time_field else pa.array(np.full(len(raw), np.nan))
        reasons = pa.DictionaryArray.from_arrays(pa.array(codes), pa.array(("",) + SKIP_REASONS))
        return pa.table({
            "file": batch.column("file"), "line": batch.column("line"), "content": content,
            "alert": pa.array(alert), "groups": self._groups(content), "time": times,
            "skip": reasons.cast(pa.string()),
        })

    def _skips(self, raw: pa.Array) -> tuple[np.ndarray, pa.Array]:
        """Skip codes (0 = keep, else 1 + index in SKIP_REASONS) and the lines as text ("" where skipped)."""
        codes = np.zeros(len(raw), np.int8)
        lengths = np.asarray(pc.binary_length(raw))
        codes[lengths > self.max_line_chars] = SKIP_REASONS.index("line_too_long") + 1
        try:
            text = raw.cast(pa.string())
        except pa.ArrowInvalid:  # a batch holding invalid UTF-8: find the lines one by one
            valid = np.array([_utf8(b) for b in raw.to_pylist()], bool)
            codes[~valid] = SKIP_REASONS.index("undecodable") + 1
            text = pc.if_else(pa.array(valid), raw, b"").cast(pa.string())
        suspect = np.flatnonzero(np.asarray(pc.match_substring_regex(raw, _CONTROL)))
        if suspect.size:  # few lines hold control bytes: count them there only
            some = pc.take(raw, suspect)
            controls = np.asarray(pc.count_substring_regex(some, _CONTROL))
            nul = np.asarray(pc.match_substring(some, b"\x00"))
            codes[suspect[nul | (controls > np.maximum(2, lengths[suspect] // 10))]] = SKIP_REASONS.index("binary") + 1
        codes[np.asarray(pc.match_substring_regex(raw, _BLANK))] = SKIP_REASONS.index("empty_line") + 1
        if codes.any():
            text = pc.if_else(pa.array(codes == 0), text, "")
        return codes, text

    def _extract(self, text: pa.Array, codes: np.ndarray) -> tuple[pa.Array, Optional[pa.Array]]:
        """Content and time fields by the format regex; a line whose message is empty
        ("... RAS KERNEL FATAL") matches once a space is appended, and still is an event."""
        names = ["Content"] + ([self._time_field] if self._time_field else [])
        found = pc.extract_regex(text, self._fields)
        columns = [pc.struct_field(found, [found.type.get_field_index(n)]) for n in names]
        retry = np.flatnonzero(np.asarray(pc.is_null(found)) & (codes == 0))
        if retry.size:
            again = pc.extract_regex(pc.binary_join_element_wise(pc.take(text, retry), "", " "), self._fields)
            mask = pa.array(np.isin(np.arange(len(text)), retry))
            columns = [pc.replace_with_mask(col, mask, pc.struct_field(again, [again.type.get_field_index(n)]))
                       for col, n in zip(columns, names)]
        return columns[0], columns[1] if self._time_field else None

    def _groups(self, content: pa.Array) -> pa.Array:
        """Ids of the grouping regex in each content: group 1 of each match (the whole match if the
        regex has no group), first occurrence order, no repeats. Arrow's RE2 finds each line's first
        id (``arrow_id_pattern``); only lines with several matches, or with non-ASCII text, go through
        Python's ``re``."""
        rx = self._id_regex
        if rx is None:
            return pa.ListArray.from_arrays(pa.array(np.zeros(len(content) + 1, np.int32)), pa.array([], pa.string()))
        if self._id_arrow is None:
            return pa.array([_ids(rx, c) for c in content.to_pylist()], pa.list_(pa.string()))
        matches = np.asarray(pc.count_substring_regex(content, self._id_arrow))
        ascii_ = np.asarray(pc.string_is_ascii(content))
        single = np.flatnonzero((matches == 1) & ascii_)
        many = np.flatnonzero((matches > 1) | ~ascii_)  # Python's answer: several ids, or RE2's ASCII classes may differ
        extra = [_ids(rx, c) for c in pc.take(content, many).to_pylist()]
        sizes = np.zeros(len(content), np.int64)
        sizes[single] = 1
        sizes[many] = [len(ids) for ids in extra]
        offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int32)
        first = pc.struct_field(pc.extract_regex(pc.take(content, single), self._id_arrow), [0])
        source = pa.concat_arrays([first.cast(pa.string()), pa.array([i for ids in extra for i in ids], pa.string())])
        where = np.empty(int(offsets[-1]), np.int64)  # position in ``source`` of each output id, in row order
        where[offsets[single]] = np.arange(len(single))
        if len(many):
            k = sizes[many]
            within = np.arange(k.sum()) - np.repeat(np.cumsum(k) - k, k)
            where[np.repeat(offsets[many], k) + within] = len(single) + np.arange(k.sum())
        return pa.ListArray.from_arrays(pa.array(offsets), pc.take(source, pa.array(where)))

    def _times(self, values: pa.Array, ok: np.ndarray) -> pa.Array:
        fmt = self.system.grouping.time_format
        values = pc.if_else(pa.array(ok), values, pa.scalar(None, pa.string()))
        if fmt == "epoch":
            try:
                return values.cast(pa.float64()).fill_null(np.nan)
            except pa.ArrowInvalid:
                pass  # some value is not a plain number: parse one by one, NaN where it fails
        return pa.array([parse_time(v, fmt) if v is not None else np.nan for v in values.to_pylist()], pa.float64())


def _ids(rx: re.Pattern, content: str) -> list[str]:
    """Python's answer for one line: group 1 (or the whole match) of each match, first occurrence order, no repeats."""
    found = [m.group(1) if rx.groups else m.group(0) for m in rx.finditer(content)]
    return found if len(found) < 2 else list(dict.fromkeys(found))


_ONE_GROUP = re.compile(r"(?P<pre>(?:[^()\\]|\\.)*)\((?!\?)(?P<inner>(?:[^()\\]|\\.)*)\)(?P<post>(?:[^()\\]|\\.)*)")


def arrow_id_pattern(rx: re.Pattern) -> Optional[str]:
    """The grouping regex with its id as a named group for Arrow's RE2 kernels, or None to stay in Python.

    Only where the translation is plain: no group (the whole match is the id), or one plain group
    with no other parentheses; a regex that cannot match the empty string (RE2 and Python count
    empty matches differently) and has no ``\\s``/``\\S`` (RE2's omits \\v); and one RE2 compiles.
    RE2's ``\\d`` and ``\\w`` are ASCII, Python's Unicode: ``_groups`` leaves non-ASCII lines to Python.
    """
    if rx.search("") is not None or "\\s" in rx.pattern or "\\S" in rx.pattern:
        return None
    if rx.groups == 0:
        named = f"(?P<id>{rx.pattern})"
    else:
        parts = _ONE_GROUP.fullmatch(rx.pattern) if rx.groups == 1 else None
        if parts is None:
            return None
        named = f"{parts['pre']}(?P<id>{parts['inner']}){parts['post']}"
    try:
        pc.extract_regex(pa.array([""], pa.string()), named)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    return named


def _utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


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


def mine_batch(miner, split: pa.Table) -> pa.Array:
    """Feed a split batch's parsed lines to the miner, in order; the cluster id of each line (0 if skipped).

    This is ``TemplateMiner.add_log_message`` without the per-line result dict and template string
    it builds: mask once, then Drain.
    """
    parsed = np.asarray(pc.equal(split.column("skip"), ""))
    contents = split.column("content").filter(pa.array(parsed)).to_pylist()
    mask, add = miner.masker.mask, miner.drain.add_log_message
    clusters = np.zeros(split.num_rows, np.int32)
    clusters[parsed] = [add(mask(c))[0].cluster_id for c in contents]
    return pa.array(clusters)


def cluster_templates(miner) -> dict[int, str]:
    """Cluster id -> its current (final, once mining is done) template text."""
    return {c.cluster_id: c.get_template() for c in miner.drain.clusters}


def event_ids_by_cluster(templates: dict[int, str]) -> pa.Array:
    """Event id at each cluster id's position ("" at 0 and unused ids), for ``pc.take`` over a cluster column."""
    ids = [""] * (max(templates, default=0) + 1)
    for cid, template in templates.items():
        ids[cid] = event_id(template)
    return pa.array(ids, pa.string())


@dataclass
class ShardTemplates:
    """What a mined shard sends the driver: its line count and its clusters' final templates and sizes."""

    lines: int
    templates: dict[int, str]  # shard cluster id -> template
    counts: dict[int, int]  # shard cluster id -> lines
    seconds: float = 0.0  # wall time of the task, so per-worker rates can be measured
    cpu_seconds: float = 0.0  # CPU time of the task: the per-core rate on a shared machine


def merge_shards(shards: Sequence[ShardTemplates], cfg: ParsingConfig,
                 system: SystemConfig) -> tuple[object, list[dict[int, str]], int]:
    """One miner over every shard template, most frequent first (deterministic order); then each
    shard template is mapped to the merged cluster that matches it, as serving will match lines.

    Returns the merged miner, per shard a map shard cluster id -> merged template, and the number
    of lines whose shard template matched no merged cluster (the merged miner learnt it afterwards).
    """
    total: Counter = Counter()
    for s in shards:
        for cid, template in s.templates.items():
            total[template] += s.counts[cid]
    order = sorted(total, key=lambda t: (-total[t], t))
    miner = make_miner(cfg, system)
    for template in order:
        miner.add_log_message(template)
    by_template, unmatched = {}, 0
    for template in order:
        cluster = miner.match(template, full_search_strategy="fallback")
        if cluster is None:
            cluster = miner.drain.id_to_cluster[miner.add_log_message(template)["cluster_id"]]
            unmatched += total[template]
        by_template[template] = cluster.cluster_id
    final = cluster_templates(miner)  # templates learnt late may have widened a cluster: read them last
    maps = [{cid: final[by_template[t]] for cid, t in s.templates.items()} for s in shards]
    return miner, maps, unmatched


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
    pairs = Counter(zip(predicted, truth))
    preds_per_truth = Counter(t for _, t in pairs)
    truths_per_pred = Counter(p for p, _ in pairs)
    correct = sum(n for (p, t), n in pairs.items() if preds_per_truth[t] == 1 and truths_per_pred[p] == 1)
    return correct / len(truth)


def serving_disagreements(result: "ParseResult") -> list[int]:
    """Rows whose template at serving time differs from the one training gave them.

    Serving matches a raw line's content against the saved miner
    (``match(content, full_search_strategy="fallback")``); training gave the line the final
    template of its cluster. Compared by event id (template text).
    """
    t = result.table
    rows = [r for r, skip in enumerate(t.column("skip").to_pylist()) if not skip]
    contents, eids = t.column("content").to_pylist(), t.column("event_id").to_pylist()
    served = match_templates(result.miner, [contents[r] for r in rows])
    return [r for r, template in zip(rows, served) if template is None or event_id(template) != eids[r]]


def match_templates(miner, contents: Sequence[str]) -> list[Optional[str]]:
    """The saved miner's template for each content, None where nothing matches; the tree is not changed.

    This is how serving reads a raw line (``fusionlog.scoring``): ``match`` with the fallback search.
    """
    out = []
    for content in contents:
        cluster = miner.match(content, full_search_strategy="fallback")
        out.append(None if cluster is None else cluster.get_template())
    return out


# ----------------------------------------------------------------------------- drivers


@dataclass
class ParseResult:
    """Every raw line with its fields and event id ("" for skipped lines)."""

    table: pa.Table  # file, line, content, alert, groups, time, skip, event_id
    templates: dict[str, str]  # event id -> template text
    miner: object
    unmatched_added: int = 0  # lines whose shard template no merged template matched (learnt afterwards)
    seconds: dict[str, float] = field(default_factory=dict)  # wall time of each phase (parallel: mine, merge, apply)
    shards: list[ShardTemplates] = field(default_factory=list)  # parallel: what each shard reported


def _no_lines(system: SystemConfig, paths: Sequence[str]) -> FusionLogError:
    return FusionLogError(f"system {system.name}: no lines in {', '.join(map(str, paths))}")


def parse_sequential(paths: Sequence[str], system: SystemConfig, cfg: ParsingConfig) -> ParseResult:
    """Plain single-process drain3 over the lines in file order: the reference for the parallel scheme."""
    splitter, miner = LineSplitter(system, cfg.max_line_chars), make_miner(cfg, system)
    parts = []
    for chunk in read_chunks(paths, cfg.chunk_lines, system.max_lines):
        split = splitter(chunk)
        parts.append(split.append_column("cluster", mine_batch(miner, split)))
    if not parts:
        raise _no_lines(system, paths)
    templates = cluster_templates(miner)
    table = pa.concat_tables(parts)
    table = with_event_ids(table, *event_columns(table, event_ids_by_cluster(templates)))
    return ParseResult(table, {event_id(t): t for t in templates.values()}, miner)  # every cluster has a line


def event_columns(part: pa.Table, ids_by_cluster: pa.Array,
                  line_offset: int = 0) -> tuple[pa.ChunkedArray, Optional[pa.ChunkedArray]]:
    """Pass 3 (a Ray task): a shard's event ids, and its line numbers as in the whole file (None if unchanged).

    Only these columns travel back: the rest of the shard's table stays in the object store where
    pass 1 left it, so no shard's lines are copied a second time (measured at 11.2M lines: this pass
    took 4.3 s before and 0.3 s after, and the whole run's peak memory fell from 6.4 to 4.5 GiB).
    """
    events = pc.take(ids_by_cluster, part.column("cluster"))
    return events, (pc.add(part.column("line"), line_offset) if line_offset else None)


def with_event_ids(part: pa.Table, events: pa.ChunkedArray | pa.Array,
                   lines: Optional[pa.ChunkedArray] = None) -> pa.Table:
    """The shard's table with its cluster column swapped for event ids (and its line numbers replaced)."""
    part = part.drop_columns(["cluster"]).append_column("event_id", events)
    return part if lines is None else part.set_column(part.schema.get_field_index("line"), "line", lines)


class _Clock:
    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name], self._last = round(now - self._last, 3), now


def mine_shard(shard: Shard, system: SystemConfig, cfg: ParsingConfig,
               limit: int = 0) -> tuple[ShardTemplates, pa.Table]:
    """Pass 1 (a Ray task): read, split and mine one shard with its own miner.

    Returns the shard's templates for the driver and its lines with their shard cluster ids, which
    stay in the object store until the merge is known. ``limit`` > 0 keeps the first lines only.
    """
    wall, cpu = time.perf_counter(), time.process_time()
    splitter, miner = LineSplitter(system, cfg.max_line_chars), make_miner(cfg, system)
    parts = []
    for chunk in read_shard(shard, cfg.chunk_lines, limit):
        split = splitter(chunk)
        parts.append(split.append_column("cluster", mine_batch(miner, split)))
    table = pa.concat_tables(parts) if parts else _empty_part(splitter)
    sizes = np.bincount(np.asarray(table.column("cluster")), minlength=1)
    templates = cluster_templates(miner)
    counts = {c: int(sizes[c]) for c in templates}
    seconds = time.perf_counter() - wall, time.process_time() - cpu
    return ShardTemplates(table.num_rows, templates, counts, *seconds), table


def _empty_part(splitter: LineSplitter) -> pa.Table:
    """A shard that owns no line (a byte range inside one long line) still has the table's columns."""
    empty = pa.table({"file": pa.array([], pa.int32()), "line": pa.array([], pa.int64()),
                      "raw": pa.array([], pa.binary())})
    return splitter(empty).append_column("cluster", pa.array([], pa.int32()))


def _count_lines(shard: Shard) -> int:
    return sum(len(lines) for lines in _line_arrays(shard))


def _limits(counts: Sequence[int], max_lines: int) -> list[int]:
    """Lines each shard may keep so that the first ``max_lines`` lines, in order, are parsed."""
    out, left = [], max_lines
    for n in counts:
        out.append(min(n, left))
        left -= out[-1]
    return out


def parse_parallel(paths: Sequence[str], system: SystemConfig, cfg: ParsingConfig, num_workers: int) -> ParseResult:
    """The one-pass scheme on Ray tasks (see module docstring). Ray must already be initialised.

    Ray tasks rather than Ray Data: a shard's lines must stay where they were mined until the
    driver's merge is known, which one task returning two objects (templates, lines) expresses directly.
    """
    import ray

    shards = plan_shards(paths, cfg.num_shards or num_workers)
    limits = [0] * len(shards)  # 0: every line of the shard
    if system.max_lines:  # the first max_lines lines: count each shard's lines first
        limits = _limits(ray.get([ray.remote(_count_lines).remote(s) for s in shards]), system.max_lines)
        shards, limits = [s for s, n in zip(shards, limits) if n], [n for n in limits if n]
    clock = _Clock()
    mine = ray.remote(mine_shard).options(num_returns=2)
    mined = [mine.remote(s, system, cfg, n) for s, n in zip(shards, limits)]
    summaries = ray.get([m[0] for m in mined])
    clock.lap("mine")
    if sum(s.lines for s in summaries) == 0:
        raise _no_lines(system, paths)
    miner, maps, unmatched = merge_shards(summaries, cfg, system)
    clock.lap("merge")
    if unmatched:
        log.info("%s: %d lines had a shard template no merged template matched; the merged miner learnt it",
                 system.name, unmatched)
    apply = ray.remote(event_columns)
    offsets, seen = [], Counter()
    for shard, summary in zip(shards, summaries):
        offsets.append(seen[shard.file])
        seen[shard.file] += summary.lines
    columns = [apply.remote(part, event_ids_by_cluster(m), off) for (_, part), m, off in zip(mined, maps, offsets)]
    parts = [with_event_ids(part, events, lines)  # the mined tables are mapped from the object store, not copied
             for part, (events, lines) in zip(ray.get([part for _, part in mined]), ray.get(columns))]
    clock.lap("apply")
    used = {event_id(t): t for m in maps for t in m.values()}
    return ParseResult(pa.concat_tables(parts), used, miner, unmatched, clock.laps, summaries)


def skip_counts(table: pa.Table) -> dict[str, int]:
    """Skipped lines by reason (only reasons that occurred)."""
    counts = pc.value_counts(table.column("skip")).to_pylist()
    return dict(sorted((c["values"], c["counts"]) for c in counts if c["values"]))
