"""Ray Serve scoring API for a model artifact (Ray's ``app_builder`` shape: ``ServeArgs`` + ``build_app``).

    serve run serve_config.yaml                                   # or: serve deploy serve_config.yaml
    serve run fusionlog.serve:build_app artifact_dir=outputs/demo/model

A request holds raw log lines (grouped by the client, or ungrouped and grouped here with the
artifact's system rule) or pre-grouped event templates. Raw lines are split with the system's log
format and matched against the drain3 state saved at training time (``TemplateMiner.match`` never
changes the tree), so serving sees exactly the templates training saw. Lines that match no template
the model knows are reported per sequence, never dropped silently.

Only ``Scorer`` touches Ray: it decodes the body (``decode_request``), expands it into sequences
(``expand_request``), batches sequences of concurrent callers with ``@serve.batch`` into one
``score_sequences`` call and encodes the reply. Everything else is plain Python, tested without Serve.

No ``from __future__ import annotations`` here: Serve's ingress re-signs the route methods, and FastAPI
would then see ``request: "Request"`` as a string and treat it as a query parameter.
"""
import asyncio
import json
import logging
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationError, model_validator
from ray import serve
from ray.serve import Application

from fusionlog.artifact import Artifact, load_artifact
from fusionlog.config import ConfigError, FusionLogError, ParsingConfig, SystemConfig, build_typed
from fusionlog.parsing import LineSplitter, event_id, load_miner
from fusionlog.sequences import group_lines

log = logging.getLogger(__name__)

DRAIN_STATE = "drain3_state.bin"  # copied from prepared/<target>/ into the artifact by train
KNOWLEDGE_BASE = "knowledge_base.parquet"  # optional read-only export of the labelled knowledge base (issue 7)


# ----------------------------------------------------------------------------- arguments


class ServeLimits(BaseModel):
    """Request limits; a request over any of them gets a 413 naming the limit, never a crash."""

    model_config = ConfigDict(extra="forbid")
    max_body_bytes: int = Field(1_048_576, gt=0)  # ours: 1 MiB, a few thousand BGL lines
    max_lines_per_request: int = Field(10_000, gt=0)  # raw lines plus events, over all sequences
    max_line_chars: int = Field(10_000, gt=0)  # the same bound prepare applies (parsing.max_line_chars)
    max_sequences_per_request: int = Field(1_000, gt=0)


class BatchingArgs(BaseModel):
    """``@serve.batch`` settings: sequences of concurrent requests are scored in one forward pass."""

    model_config = ConfigDict(extra="forbid")
    max_batch_size: int = Field(16, gt=0)  # requests per batch; keep max_ongoing_requests >= this
    batch_wait_timeout_s: float = Field(0.005, ge=0)  # ours: 5 ms of extra latency at most to fill a batch


class ServeArgs(BaseModel):
    """Arguments of ``build_app`` (the ``args:`` block of serve_config.yaml)."""

    model_config = ConfigDict(extra="forbid")
    artifact_dir: str  # a model artifact (fusionlog/artifact.py) plus drain3_state.bin
    threshold: Optional[float] = Field(None, ge=0, le=1)  # None: the artifact's source-val threshold
    kb_top_k: int = Field(3, gt=0)  # nearest labelled sequences per flagged sequence (FusionLog: top-3)
    limits: ServeLimits = Field(default_factory=ServeLimits)
    batching: BatchingArgs = Field(default_factory=BatchingArgs)


# ----------------------------------------------------------------------------- request schema


class SequenceIn(BaseModel):
    """One sequence: raw log lines in log order, or event templates (pre-parsed)."""

    model_config = ConfigDict(extra="forbid")
    id: Optional[StrictStr] = None  # echoed back; defaults to the sequence's position
    lines: Optional[list[StrictStr]] = None
    events: Optional[list[StrictStr]] = None

    @model_validator(mode="after")
    def _one_kind(self) -> "SequenceIn":
        if (self.lines is None) == (self.events is None):
            raise ValueError("give exactly one of 'lines' (raw log lines) or 'events' (templates)")
        if not (self.lines or self.events):
            raise ValueError(f"'{'lines' if self.lines is not None else 'events'}' is empty")
        return self


class ScoreRequest(BaseModel):
    """``{"sequences": [...]}`` grouped by the client, or ``{"lines": [...]}`` grouped by the server."""

    model_config = ConfigDict(extra="forbid")
    sequences: Optional[list[SequenceIn]] = None
    lines: Optional[list[StrictStr]] = None

    @model_validator(mode="after")
    def _one_kind(self) -> "ScoreRequest":
        if (self.sequences is None) == (self.lines is None):
            raise ValueError("give exactly one of 'sequences' or 'lines'")
        if not (self.sequences or self.lines):
            raise ValueError(f"'{'sequences' if self.sequences is not None else 'lines'}' is empty")
        return self


class RequestRejected(FusionLogError):
    """A request the API refuses, with the HTTP status to answer."""

    def __init__(self, status: int, message: str):
        self.status = status
        super().__init__(message)


def _validation_message(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False):
        where = ".".join(str(p) for p in err["loc"]) or "body"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


def decode_request(body: bytes, limits: ServeLimits) -> ScoreRequest:
    """Body bytes -> a checked request, or RequestRejected (400 bad JSON, 422 bad shape, 413 over a limit)."""
    if len(body) > limits.max_body_bytes:
        raise RequestRejected(413, f"request body is {len(body)} bytes; limits.max_body_bytes is {limits.max_body_bytes}")
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RequestRejected(400, f"request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise RequestRejected(422, f"request body must be a JSON object, got {type(data).__name__}")
    try:
        req = ScoreRequest.model_validate(data)
    except ValidationError as exc:
        raise RequestRejected(422, _validation_message(exc)) from None
    check_limits(req, limits)
    return req


def check_limits(req: ScoreRequest, limits: ServeLimits) -> None:
    """Count sequences, lines and line lengths against the limits (413 naming the first offender)."""
    if req.sequences is not None and len(req.sequences) > limits.max_sequences_per_request:
        raise RequestRejected(413, f"{len(req.sequences)} sequences; limits.max_sequences_per_request is "
                                   f"{limits.max_sequences_per_request}")
    groups = [("lines", req.lines)] if req.lines is not None else [
        (f"sequences[{i}].{'lines' if s.lines is not None else 'events'}", s.lines if s.lines is not None else s.events)
        for i, s in enumerate(req.sequences)]
    total = sum(len(items) for _, items in groups)
    if total > limits.max_lines_per_request:
        raise RequestRejected(413, f"{total} lines/events in the request; limits.max_lines_per_request is "
                                   f"{limits.max_lines_per_request}")
    for where, items in groups:
        for j, text in enumerate(items):
            if len(text) > limits.max_line_chars:
                raise RequestRejected(413, f"{where}[{j}] has {len(text)} characters; limits.max_line_chars is "
                                           f"{limits.max_line_chars}")


# ----------------------------------------------------------------------------- the scoring model


@dataclass
class KnowledgeBase:
    """Labelled sequences (read-only, brute-force cosine): the explanation for a flagged sequence.

    File: ``knowledge_base.parquet`` in the artifact, a column ``vector`` (list<float>) plus any
    scalar columns (``seq_id``, ``label``, ``confidence``, ``content``...) returned as they are. The
    schema metadata key ``fusionlog.vector`` says what a row's vector is: ``mean_event`` (default:
    the mean of the sequence's unit event vectors) or ``features`` (the model's f_e representation).
    Serving reads a Parquet export rather than the Milvus Lite file, which allows one process only.
    """

    vectors: np.ndarray  # (N, k) unit rows
    rows: list[dict]
    kind: str

    def search(self, query: np.ndarray, k: int) -> list[dict]:
        q = query / (np.linalg.norm(query) or 1.0)
        sims = self.vectors @ q
        top = np.argsort(-sims, kind="stable")[:k]
        return [{**self.rows[i], "similarity": round(float(sims[i]), 6)} for i in top]


def load_knowledge_base(path: Path) -> KnowledgeBase:
    table = pq.read_table(path)
    if "vector" not in table.column_names:
        raise ValueError(f"{path}: no 'vector' column; has {', '.join(table.column_names)}")
    meta = table.schema.metadata or {}
    kind = meta.get(b"fusionlog.vector", b"mean_event").decode()
    if kind not in ("mean_event", "features"):
        raise ValueError(f"{path}: fusionlog.vector={kind!r}; allowed: mean_event, features")
    vectors = np.asarray(table.column("vector").to_pylist(), dtype=np.float32)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    rows = table.drop_columns(["vector"]).to_pylist()
    return KnowledgeBase(vectors, rows, kind)


@dataclass
class ScoringModel:
    """Everything a replica needs to score: artifact, parser, reference similarities, knowledge base."""

    artifact: Artifact
    path: Path
    system: SystemConfig  # the target system (log format, masking, grouping) the model was trained for
    miner: Any  # drain3 TemplateMiner, or None when the artifact has no drain3 state (events-only)
    splitter: LineSplitter
    index: dict[str, int]  # event id -> row of the artifact's event table
    unit: np.ndarray  # (E, d) unit event vectors
    similarity: np.ndarray  # (E,) max cosine of each event to the reference events (bottleneck score)
    reference: str  # "source" | "all_events_leave_one_out"
    threshold: float
    kb: Optional[KnowledgeBase] = None
    kb_top_k: int = 3
    notes: list[str] = field(default_factory=list)


def _unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def max_similarity(unit: np.ndarray, reference: np.ndarray, exclude_self: bool, chunk: int = 2048) -> np.ndarray:
    """Max cosine of each event to the reference events (FusionLog §III-B's inner max), in chunks.

    ``exclude_self`` (reference = all events) skips each event's own row, else every known event scores 1.
    """
    out = np.empty(len(unit), dtype=np.float32)
    ref = unit[reference]
    for start in range(0, len(unit), chunk):
        sims = unit[start:start + chunk] @ ref.T
        if exclude_self:
            rows = np.arange(start, min(start + chunk, len(unit)))
            pos = np.searchsorted(reference, rows)
            hit = (pos < len(reference)) & (reference[np.minimum(pos, len(reference) - 1)] == rows)
            sims[np.flatnonzero(hit), pos[hit]] = -np.inf
        out[start:start + chunk] = sims.max(axis=1, initial=-1.0)
    return out


def load_scoring_model(artifact_dir: str | Path, threshold: Optional[float] = None, kb_top_k: int = 3) -> ScoringModel:
    """Load an artifact directory for serving; raises with a message naming what is missing or wrong."""
    path = Path(artifact_dir).resolve()
    if not path.is_dir():
        raise FileNotFoundError(f"artifact_dir not found: {path} (relative paths resolve against {Path.cwd()})")
    art = load_artifact(path)
    target = art.summary.get("target") or art.config["data"]["target"]
    problems: list[str] = []
    system = build_typed(SystemConfig, art.config["data"]["systems"][target], f"config.data.systems.{target}", problems)
    parsing = build_typed(ParsingConfig, art.config["parsing"], "config.parsing", problems)
    if problems:
        raise ConfigError([f"{path / 'config.json'}: {p}" for p in problems])
    notes = []
    miner = None
    if (path / DRAIN_STATE).is_file():
        miner = load_miner(path / DRAIN_STATE, parsing, system)
    else:
        notes.append(f"no {DRAIN_STATE} in the artifact: raw lines cannot be parsed, only 'events' are accepted")
    unit = _unit(art.table.vectors.astype(np.float32))
    events = pq.read_table(path / "events.parquet")
    flag = next((c for c in ("is_source", "source") if c in events.column_names), None)
    if flag is not None:
        reference = np.flatnonzero(np.asarray(events.column(flag).to_pylist(), dtype=bool))
        mode = "source"
    if flag is None or len(reference) == 0:
        reference, mode = np.arange(len(unit)), "all_events_leave_one_out"
        notes.append("events.parquet has no source flag: the bottleneck event is scored against all other events "
                     "of the artifact, not the source events only")
    kb = None
    if (path / KNOWLEDGE_BASE).is_file():
        kb = load_knowledge_base(path / KNOWLEDGE_BASE)
        want = art.model_config.hidden if kb.kind == "features" else unit.shape[1]
        if kb.vectors.shape[1] != want:
            notes.append(f"{KNOWLEDGE_BASE}: vectors have d={kb.vectors.shape[1]}, {kb.kind} needs d={want}; ignored")
            kb = None
    else:
        notes.append(f"no {KNOWLEDGE_BASE} in the artifact: flagged sequences come without nearest labelled sequences")
    for note in notes:
        log.warning("%s: %s", path, note)
    return ScoringModel(
        artifact=art, path=path, system=system, miner=miner,
        splitter=LineSplitter(system, max_line_chars=parsing.max_line_chars), index=art.table.index(),
        unit=unit, similarity=max_similarity(unit, reference, exclude_self=mode != "source"), reference=mode,
        threshold=art.threshold if threshold is None else float(threshold), kb=kb, kb_top_k=kb_top_k, notes=notes)


def model_info(model: ScoringModel) -> dict:
    """``GET /v1/model``: what the artifact is, what it was trained on, and how it is served."""
    art, s = model.artifact, model.artifact.summary
    return {
        "artifact_dir": str(model.path), "run_name": s.get("run_name"), "method": art.config["meta"]["method"],
        "sources": s.get("sources"), "target": s.get("target"),
        "threshold": model.threshold, "artifact_threshold": art.threshold,
        "best_epoch": s.get("best_epoch"), "best_metrics": s.get("best_metrics"), "data_counts": s.get("data_counts"),
        "events": len(art.table.event_ids), "embedding_dim": int(art.table.vectors.shape[1]),
        "model": art.config["model"],
        "system": {"name": model.system.name or s.get("target"), "log_format": model.system.log_format,
                   "grouping": art.config["data"]["systems"][s.get("target") or art.config["data"]["target"]]["grouping"]},
        "raw_lines": model.miner is not None,
        "drain_templates": len(model.miner.drain.clusters) if model.miner is not None else 0,
        "bottleneck_reference": model.reference,
        "knowledge_base": None if model.kb is None else {"rows": len(model.kb.rows), "vector": model.kb.kind},
        "notes": model.notes,
    }


# ----------------------------------------------------------------------------- requests -> sequences


@dataclass
class SequenceInput:
    """A sequence to score. ``positions`` are what the reply calls a line: the index in the client's list."""

    id: str
    kind: str  # "lines" | "events"
    items: list[str]
    positions: list[int]


@dataclass
class Expanded:
    sequences: list[SequenceInput]
    ungrouped: list[dict]  # server-side grouping: lines that joined no sequence, with the reason


def expand_request(model: ScoringModel, req: ScoreRequest) -> Expanded:
    """Client-grouped sequences as they are; ungrouped raw lines grouped by the system's rule.

    Grouping reuses ``sequences.group_lines`` (what prepare ran), with labels off: a BGL line's
    first token is its alert tag, which must never reach the model.
    """
    if req.sequences is not None:
        return Expanded([SequenceInput(s.id if s.id is not None else str(i), "lines" if s.lines is not None else "events",
                                       s.lines if s.lines is not None else s.events,
                                       list(range(len(s.lines if s.lines is not None else s.events))))
                         for i, s in enumerate(req.sequences)], [])
    if model.miner is None:
        raise RequestRejected(422, model.notes[0])
    lines = req.lines
    split = model.splitter(_raw_table(lines))
    # event_id carries the line's position, so the grouped sequences point back at the request's lines
    table = split.append_column("event_id", pa.array([str(i) for i in range(len(lines))], pa.string()))
    system = replace(model.system, label=replace(model.system.label, kind="none"))
    try:
        seqs, _ = group_lines(table, system, ["request"])
    except FusionLogError as exc:
        raise RequestRejected(422, f"cannot group the lines with the {system.name} rule: {exc}") from None
    out, used = [], set()
    for seq_id, members in zip(seqs.seq_ids, seqs.event_ids):
        positions = [int(m) for m in members]
        used.update(positions)
        out.append(SequenceInput(seq_id, "lines", [lines[p] for p in positions], positions))
    skips = split.column("skip").to_pylist()
    kind = model.system.grouping.kind
    reason = {"id_regex": "no_group_id", "time_window": "no_time"}.get(kind, "not_grouped")
    ungrouped = [{"line": i, "reason": skips[i] or reason} for i in range(len(lines)) if i not in used]
    return Expanded(out, ungrouped)


def _raw_table(lines: list[str]) -> pa.Table:
    n = len(lines)
    return pa.table({"file": pa.array([0] * n, pa.int32()), "line": pa.array(range(1, n + 1), pa.int64()),
                     "raw": pa.array([x.encode("utf-8", "surrogatepass") for x in lines], pa.binary())})


# ----------------------------------------------------------------------------- scoring


@dataclass
class _Parsed:
    rows: np.ndarray  # artifact table rows of the known events, in sequence order
    row_pos: list[int]  # the position of each known event
    unknown: list[dict]
    skipped: list[dict]


def _short(text: str, n: int = 200) -> str:
    return text if len(text) <= n else text[:n] + "..."


def _match(model: ScoringModel, content: str) -> tuple[Optional[int], Optional[str]]:
    """(row in the event table or None, drain template or None) for one message."""
    cluster = model.miner.match(content, full_search_strategy="fallback") if model.miner is not None else None
    if cluster is None:
        return None, None
    template = cluster.get_template()
    return model.index.get(event_id(template)), template


def parse_sequence(model: ScoringModel, seq: SequenceInput) -> _Parsed:
    """Raw lines -> known event rows + unknown/skipped lines; templates -> rows (exact text, else drain match)."""
    rows, row_pos, unknown, skipped = [], [], [], []
    if seq.kind == "events":
        for pos, text in zip(seq.positions, seq.items):
            row = model.index.get(event_id(text))
            template = text
            if row is None:
                row, template = _match(model, text)
            if row is None:
                unknown.append({"line": pos, "text": _short(text), "template": template,
                                "reason": "template_not_in_model"})
            else:
                rows.append(row)
                row_pos.append(pos)
        return _Parsed(np.asarray(rows, dtype=np.int64), row_pos, unknown, skipped)
    if model.miner is None:
        raise RequestRejected(422, model.notes[0])
    split = model.splitter(_raw_table(seq.items))
    contents = split.column("content").to_pylist()
    skips = split.column("skip").to_pylist()
    times = split.column("time").to_pylist()
    order = list(range(len(seq.items)))
    kept = [i for i in order if not skips[i]]
    if kept and all(not math.isnan(times[i]) for i in kept):  # prepare orders a window's lines by time too
        kept = sorted(kept, key=lambda i: times[i])
    for i in order:
        if skips[i]:
            skipped.append({"line": seq.positions[i], "reason": skips[i]})
    for i in kept:
        row, template = _match(model, contents[i])
        if row is None:
            unknown.append({"line": seq.positions[i], "text": _short(contents[i]), "template": template,
                            "reason": "no_matching_template" if template is None else "template_not_in_model"})
        else:
            rows.append(row)
            row_pos.append(seq.positions[i])
    return _Parsed(np.asarray(rows, dtype=np.int64), row_pos, unknown, skipped)


def bottleneck(model: ScoringModel, parsed: _Parsed) -> Optional[dict]:
    """The sequence's event least like the reference events: argmin over events of max cosine (s_k's argmin)."""
    if len(parsed.rows) == 0:
        return None
    k = int(np.argmin(model.similarity[parsed.rows]))
    row = int(parsed.rows[k])
    return {"line": parsed.row_pos[k], "event_id": model.artifact.table.event_ids[row],
            "template": model.artifact.table.templates[row], "similarity": round(float(model.similarity[row]), 6),
            "reference": model.reference}


def _kb_query(model: ScoringModel, rows: np.ndarray, features: Optional[np.ndarray]) -> np.ndarray:
    if model.kb.kind == "features":
        return features
    return model.unit[rows].mean(axis=0)


def score_sequences(model: ScoringModel, batch: list[SequenceInput]) -> list[dict]:
    """Score a batch of sequences in one forward pass; one reply dict per sequence, in order.

    A sequence with no known event is not scored (``label: "unscored"``): the model would see only
    padding. Its lines are all listed under ``unknown_events`` or ``skipped_lines``.
    """
    parsed = [parse_sequence(model, s) for s in batch]
    scorable = [i for i, p in enumerate(parsed) if len(p.rows)]
    probs = np.full(len(batch), np.nan)
    if scorable:
        probs[scorable], _ = model.artifact.score([parsed[i].rows for i in scorable])
    features = None
    flagged = [i for i in scorable if probs[i] >= model.threshold]
    if model.kb is not None and model.kb.kind == "features" and flagged:
        features = _features(model, [parsed[i].rows for i in flagged])
    max_len = model.artifact.model_config.max_len
    out = []
    for i, (seq, p) in enumerate(zip(batch, parsed)):
        anomalous = i in flagged
        result = {
            "id": seq.id,
            "probability": None if math.isnan(probs[i]) else round(float(probs[i]), 6),
            "label": "unscored" if math.isnan(probs[i]) else ("anomalous" if anomalous else "normal"),
            "threshold": model.threshold,
            "lines": len(seq.items), "known_events": len(p.rows), "truncated": len(p.rows) > max_len,
            "unknown_events": p.unknown, "skipped_lines": p.skipped,
            "bottleneck": bottleneck(model, p) if anomalous else None,
            "nearest_sequences": None,
        }
        if anomalous and model.kb is not None:
            f = features[flagged.index(i)] if features is not None else None
            result["nearest_sequences"] = model.kb.search(_kb_query(model, p.rows, f), model.kb_top_k)
        out.append(result)
    return out


def _features(model: ScoringModel, sequences: list[np.ndarray]) -> np.ndarray:
    """f_e representations, for a knowledge base indexed by them."""
    import torch

    from fusionlog.dataset import pad_batch

    net = model.artifact.model
    idx, lengths, _ = pad_batch(sequences, net.pad_index, model.artifact.model_config.max_len)
    with torch.no_grad():
        return net.features(torch.from_numpy(idx), torch.from_numpy(lengths)).numpy()


# ----------------------------------------------------------------------------- Serve deployment


app = FastAPI(title="FusionLog scoring API", version="1",
              description="Anomaly scores for log sequences of the system a FusionLog model was trained for.")


def _openapi() -> dict:
    """FastAPI's schema plus the request body (decoded by hand so size limits apply before parsing)."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    body = ScoreRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.update(body.pop("$defs", {}))
    components["ScoreRequest"] = body
    schema["paths"]["/v1/score"]["post"]["requestBody"] = {
        "required": True, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ScoreRequest"}}}}
    app.openapi_schema = schema
    return schema


app.openapi = _openapi


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


@serve.deployment(max_ongoing_requests=64, ray_actor_options={"num_cpus": 1})
@serve.ingress(app)
class Scorer:
    """Decodes, batches across callers, calls ``score_sequences``, encodes. A failed load keeps the
    replica up and answers 503 with the reason (health included), so the failure is visible."""

    def __init__(self, args: ServeArgs):
        self.args = args
        self.model: Optional[ScoringModel] = None
        self.load_error = ""
        try:
            self.model = load_scoring_model(args.artifact_dir, args.threshold, args.kb_top_k)
        except Exception as exc:  # any load failure is reported by /v1/health, never a crash loop
            self.load_error = f"{type(exc).__name__}: {exc}"
            log.error("model load failed: %s", self.load_error)
        self.score_batch.set_max_batch_size(args.batching.max_batch_size)
        self.score_batch.set_batch_wait_timeout_s(args.batching.batch_wait_timeout_s)

    @app.get("/v1/health")
    def health(self) -> Any:
        if self.model is None:
            return JSONResponse({"status": "unavailable", "reason": self.load_error}, status_code=503)
        return {"status": "ok", "raw_lines": self.model.miner is not None, "notes": self.model.notes}

    @app.get("/v1/model")
    def model_metadata(self) -> Any:
        if self.model is None:
            return _error(503, f"model not loaded: {self.load_error}")
        info = model_info(self.model)
        info.update(limits=self.args.limits.model_dump(), batching=self.args.batching.model_dump())
        return info

    @app.post("/v1/score")
    async def score(self, request: Request) -> JSONResponse:
        if self.model is None:
            return _error(503, f"model not loaded: {self.load_error}")
        limit = self.args.limits.max_body_bytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            return _error(413, f"request body is {declared} bytes; limits.max_body_bytes is {limit}")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                return _error(413, f"request body is over limits.max_body_bytes={limit}")
        try:
            req = decode_request(bytes(body), self.args.limits)
            expanded = await asyncio.to_thread(expand_request, self.model, req)
        except RequestRejected as exc:
            return _error(exc.status, str(exc))
        except Exception as exc:
            log.exception("could not read request")
            return _error(500, f"could not read request: {type(exc).__name__}: {exc}")
        results = await self.score_batch(expanded.sequences)
        if isinstance(results, RequestRejected):
            return _error(results.status, str(results))
        if isinstance(results, Exception):
            return _error(500, f"scoring failed: {type(results).__name__}: {results}")
        reply = {"threshold": self.model.threshold, "sequences": results}
        if req.lines is not None:
            reply["ungrouped_lines"] = expanded.ungrouped
        return JSONResponse(reply)

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.005)
    async def score_batch(self, requests: list[list[SequenceInput]]) -> list[Any]:
        """One ``score_sequences`` call for the sequences of every request in the batch.

        If the joint call fails, each request is scored alone, so an error reaches only its own caller.
        """
        flat = [s for r in requests for s in r]
        try:
            scored = await asyncio.to_thread(score_sequences, self.model, flat)
        except Exception:
            return [await self._score_one(r) for r in requests]
        out, start = [], 0
        for r in requests:
            out.append(scored[start:start + len(r)])
            start += len(r)
        return out

    async def _score_one(self, sequences: list[SequenceInput]) -> Any:
        try:
            return await asyncio.to_thread(score_sequences, self.model, sequences)
        except Exception as exc:  # returned, not raised: the replica and the other callers carry on
            log.exception("scoring failed")
            return exc


def build_app(args: ServeArgs) -> Application:
    """Serve's application builder: ``import_path: fusionlog.serve:build_app`` with ``args:`` a ServeArgs."""
    return Scorer.bind(args)
