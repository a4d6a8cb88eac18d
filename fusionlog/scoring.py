"""One scoring path from raw lines or event templates to scored, explained sequences.

    raw lines --(LineSplitter, the saved drain3 state's match)--> templates --(time order)-->
    event-table rows --(the small model)--> p(anomalous) --(threshold)--> label --> explanation

The evaluator scores prepared systems with ``Scorer.score_system`` and serving scores requests with
``Scorer.lines``/``lines_batch``/``events`` + ``Scorer.score``; both reach the model through the artifact's
``reindex``/``score``, and raw lines are split, ordered and matched with the same functions prepare
used (``parsing.LineSplitter``, ``sequences.time_order``, ``sequences.group_lines``), so training
and serving see the same event ids. ``TemplateMiner.match`` never changes the drain3 tree.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import pyarrow as pa

from fusionlog.artifact import KNOWLEDGE_BASE, Artifact, load_artifact
from fusionlog.config import ConfigError, FusionLogError, ParsingConfig, SystemConfig, build_typed
from fusionlog.dataset import PreparedSystem
from fusionlog.parsing import DRAIN_STATE, LineSplitter, event_id, load_miner, match_templates, raw_table
from fusionlog.retrieval import MemoryStore, read_knowledge_base, sequence_vectors
from fusionlog.routing import event_similarity
from fusionlog.sequences import group_lines, time_order

log = logging.getLogger(__name__)


@dataclass
class ParsedSequence:
    """A sequence as the model sees it, and what it could not see."""

    rows: np.ndarray  # event-table rows of the known events, in sequence order
    positions: list[int]  # each known event's position in the caller's list
    unknown: list[dict] = field(default_factory=list)  # {"line", "text", "template", "reason"}
    skipped: list[dict] = field(default_factory=list)  # {"line", "reason"}: lines that are not log lines


@dataclass
class Scored:
    parsed: ParsedSequence
    probability: float  # NaN: nothing known to score (the model would see only padding)
    anomalous: bool
    bottleneck: Optional[dict] = None  # flagged only: the event least like the source events (s_k's argmin)
    nearest: Optional[list[dict]] = None  # flagged only: nearest labelled sequences of the knowledge base


def _short(text: str, n: int = 200) -> str:
    return text if len(text) <= n else text[:n] + "..."


class Scorer:
    """An artifact plus what it needs to read raw lines (drain3 state, the system's rules) and explain."""

    def __init__(self, artifact: Artifact, path: Path, threshold: Optional[float] = None, kb_top_k: int = 3):
        self.artifact, self.path, self.kb_top_k = artifact, path, kb_top_k
        self.threshold = artifact.threshold if threshold is None else float(threshold)
        self.index = artifact.table.index()
        self.notes: list[str] = []
        target = artifact.summary.get("target") or artifact.config["data"]["target"]
        spec = artifact.config.get("data", {}).get("systems", {}).get(target)
        problems: list[str] = []
        self.system: Optional[SystemConfig] = None
        self.miner: Any = None
        self.splitter: Optional[LineSplitter] = None
        if spec is None:
            self.notes.append(f"config.json describes no system {target!r}: raw lines cannot be parsed, only "
                              "'events' are accepted")
        else:
            self.system = build_typed(SystemConfig, spec, f"config.data.systems.{target}", problems)
            parsing = build_typed(ParsingConfig, artifact.config["parsing"], "config.parsing", problems)
            if problems:
                raise ConfigError([f"{path / 'config.json'}: {p}" for p in problems])
            self.splitter = LineSplitter(self.system, max_line_chars=parsing.max_line_chars)
            if (path / DRAIN_STATE).is_file():
                self.miner = load_miner(path / DRAIN_STATE, parsing, self.system)
            else:
                self.notes.append(f"no {DRAIN_STATE} in the artifact: raw lines cannot be parsed, only 'events' "
                                  "are accepted")
        vectors = artifact.table.vectors
        source = vectors[artifact.is_source]
        self.similarity = (event_similarity(vectors, source) if len(source)
                           else np.zeros(len(vectors)))  # each event's max cosine to a source event
        if not len(source):
            self.notes.append("no source events in events.parquet: bottleneck similarities are 0")
        self.kb: Optional[MemoryStore] = None
        if (path / KNOWLEDGE_BASE).is_file():
            self.kb = read_knowledge_base(path / KNOWLEDGE_BASE)
            if self.kb.count() and self.kb.vectors.shape[1] != vectors.shape[1]:
                self.notes.append(f"{KNOWLEDGE_BASE}: vectors have d={self.kb.vectors.shape[1]}, the event "
                                  f"table d={vectors.shape[1]}; ignored")
                self.kb = None
        else:
            self.notes.append(f"no {KNOWLEDGE_BASE} in the artifact: flagged sequences come without nearest "
                              "labelled sequences")

    @classmethod
    def load(cls, artifact_dir: str | Path, threshold: Optional[float] = None, kb_top_k: int = 3) -> "Scorer":
        """Raises with a message naming what is missing or wrong."""
        path = Path(artifact_dir).resolve()
        if not path.is_dir():
            raise FileNotFoundError(f"artifact_dir not found: {path} (relative paths resolve against {Path.cwd()})")
        scorer = cls(load_artifact(path), path, threshold, kb_top_k)
        for note in scorer.notes:
            log.warning("%s: %s", path, note)
        return scorer

    # --- raw lines and templates -> parsed sequences

    def _require_miner(self) -> None:
        if self.miner is None:
            raise FusionLogError(self.notes[0])

    def split(self, lines: Sequence[str]) -> pa.Table:
        """The raw lines through the system's LineSplitter (content, time, ids, skip reason), as prepare splits them."""
        raws = [x.encode("utf-8", "surrogatepass") for x in lines]
        return self.splitter(raw_table([0] * len(raws), range(1, len(raws) + 1), raws))

    def group(self, lines: Sequence[str]) -> tuple[list[tuple[str, list[int]]], list[dict]]:
        """Ungrouped raw lines -> (sequence id, line positions) by the system's grouping rule, as prepare
        groups them, plus the lines that joined no sequence with the reason. Labels are off: a BGL line's
        first token is its alert tag, which must never reach the model."""
        self._require_miner()
        split = self.split(lines)
        table = split.append_column("event_id", pa.array([str(i) for i in range(len(lines))], pa.string()))
        system = replace(self.system, label=replace(self.system.label, kind="none"))
        seqs, _ = group_lines(table, system, ["request"])
        groups = [(sid, [int(m) for m in members]) for sid, members in zip(seqs.seq_ids, seqs.event_ids)]
        used = {p for _, positions in groups for p in positions}
        skips = split.column("skip").to_pylist()
        reason = {"id_regex": "no_group_id", "time_window": "no_time"}.get(self.system.grouping.kind, "not_grouped")
        return groups, [{"line": i, "reason": skips[i] or reason} for i in range(len(lines)) if i not in used]

    def lines(self, items: Sequence[str], positions: Sequence[int]) -> ParsedSequence:
        """Raw log lines of one sequence: split, ordered by time as prepare orders a window, matched."""
        return self.lines_batch([(items, positions)])[0]

    def lines_batch(self, sequences: Sequence[tuple[Sequence[str], Sequence[int]]]) -> list[ParsedSequence]:
        """``lines`` for many sequences with one LineSplitter call: its Arrow kernels cost mostly a fixed
        time a call (0.4 ms for 20 lines, 1.5 ms for 320: docs/benchmarks.md), so a serving batch pays it
        once. Lines are split independently, so each sequence gets what ``lines`` gives it alone."""
        self._require_miner()
        split = self.split([line for items, _ in sequences for line in items])
        contents, skips = split.column("content").to_pylist(), split.column("skip").to_pylist()
        times = split.column("time").to_pylist()
        out, start = [], 0
        for items, positions in sequences:
            end = start + len(items)
            out.append(self._match(contents[start:end], skips[start:end], times[start:end], positions))
            start = end
        return out

    def _match(self, contents: list[str], skips: list[str], times: list[float],
               positions: Sequence[int]) -> ParsedSequence:
        """One sequence's split lines: kept lines in time order, matched to templates, looked up in the table."""
        kept = [i for i in range(len(contents)) if not skips[i]]
        kept = [kept[k] for k in time_order([times[i] for i in kept])]
        out = ParsedSequence(np.zeros(0, np.int64), [],
                             skipped=[{"line": positions[i], "reason": skips[i]} for i in range(len(contents)) if skips[i]])
        rows = []
        for i, template in zip(kept, match_templates(self.miner, [contents[i] for i in kept])):
            row = self.index.get(event_id(template)) if template is not None else None
            if row is None:
                out.unknown.append({"line": positions[i], "text": _short(contents[i]), "template": template,
                                    "reason": "no_matching_template" if template is None else "template_not_in_model"})
            else:
                rows.append(row)
                out.positions.append(positions[i])
        out.rows = np.asarray(rows, dtype=np.int64)
        return out

    def events(self, items: Sequence[str], positions: Sequence[int]) -> ParsedSequence:
        """Event templates of one sequence: exact template text, else the drain3 match of the text."""
        out = ParsedSequence(np.zeros(0, np.int64), [])
        rows = []
        for pos, text in zip(positions, items):
            template, row = text, self.index.get(event_id(text))
            if row is None and self.miner is not None:
                template = match_templates(self.miner, [text])[0]
                row = self.index.get(event_id(template)) if template is not None else None
            if row is None:
                out.unknown.append({"line": pos, "text": _short(text), "template": template,
                                    "reason": "template_not_in_model"})
            else:
                rows.append(row)
                out.positions.append(pos)
        out.rows = np.asarray(rows, dtype=np.int64)
        return out

    # --- scoring and explanation

    def score_system(self, system: PreparedSystem, batch_size: int = 256) -> tuple[np.ndarray, dict]:
        """p(anomalous) of every sequence of a prepared system, and what was dropped or cut on the way."""
        rows, unknown = self.artifact.reindex(system)
        probs, truncated = self.artifact.score(rows, batch_size)
        return probs, {"unknown_events_dropped": unknown, "truncated": truncated}

    def score(self, parsed: Sequence[ParsedSequence]) -> list[Scored]:
        """One forward pass for the batch; explanations only for the sequences flagged anomalous."""
        scorable = [i for i, p in enumerate(parsed) if len(p.rows)]
        probs = np.full(len(parsed), np.nan)
        if scorable:
            probs[scorable], _ = self.artifact.score([parsed[i].rows for i in scorable])
        out = []
        for p, prob in zip(parsed, probs):
            flagged = not math.isnan(prob) and prob >= self.threshold
            out.append(Scored(p, float(prob), flagged, self.bottleneck(p) if flagged else None,
                              self.nearest(p) if flagged else None))
        return out

    def bottleneck(self, parsed: ParsedSequence) -> Optional[dict]:
        """The sequence's event least like the source events: the argmin of the router's s_k."""
        if not len(parsed.rows):
            return None
        k = int(np.argmin(self.similarity[parsed.rows]))
        row = int(parsed.rows[k])
        return {"line": parsed.positions[k], "event_id": self.artifact.table.event_ids[row],
                "template": self.artifact.table.templates[row], "similarity": round(float(self.similarity[row]), 6)}

    def nearest(self, parsed: ParsedSequence) -> Optional[list[dict]]:
        """The knowledge base's nearest labelled sequences (retrieval's sequence vectors and search)."""
        if self.kb is None or not len(parsed.rows):
            return None
        query = sequence_vectors([parsed.rows], self.artifact.table.vectors)
        return [{"seq_id": r.seq_id, "label": r.label, "confidence": round(r.confidence, 6), "content": r.content,
                 "similarity": round(r.score, 6)} for r in self.kb.search(query, self.kb_top_k)[0]]
