"""Ray Serve scoring API for a model artifact (Ray's ``app_builder`` shape: ``ServeArgs`` + ``build_app``).

    serve run serve_config.yaml                                   # or: serve deploy serve_config.yaml
    serve run fusionlog.serve:build_app artifact_dir=outputs/demo/fused

Request handling only: a body is decoded and checked against the limits (``decode_request``),
expanded into sequences (``expand_request``), scored by ``fusionlog.scoring.Scorer`` - the path the
evaluator uses too - with ``@serve.batch`` joining the sequences of concurrent callers into one
LineSplitter pass and one forward pass, and encoded (``reply``). Lines that match no template the model knows are reported
per sequence, never dropped silently.

No ``from __future__ import annotations`` here: Serve's ingress re-signs the route methods, and FastAPI
would then see ``request: "Request"`` as a string and treat it as a query parameter.
"""
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationError, model_validator
from ray import serve
from ray.serve import Application

from fusionlog.config import FusionLogError
from fusionlog.scoring import ParsedSequence, Scored, Scorer

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- arguments


class ServeLimits(BaseModel):
    """Request limits; a request over any of them gets a 413 naming the limit, never a crash."""

    model_config = ConfigDict(extra="forbid")
    # ours: must carry max_lines_per_request real lines. In JSON a line costs its length + 4 bytes (quotes, comma,
    # space): 160.6 bytes per BGL_2k line (mean 156.6 chars, p99 294), 145.9 for HDFS_2k, 300.6 for OpenStack_2k.
    # 10,000 BGL lines are 1,605,771 bytes, over the old 1 MiB; 4 MiB admits 10,000 lines of up to ~415 bytes each.
    max_body_bytes: int = Field(4 * 1_048_576, gt=0)
    max_lines_per_request: int = Field(10_000, gt=0)  # raw lines plus events, over all sequences
    max_line_chars: int = Field(10_000, gt=0)  # the same bound prepare applies (parsing.max_line_chars)
    max_sequences_per_request: int = Field(1_000, gt=0)
    max_json_depth: int = Field(32, gt=0)  # ours: a valid body nests 4 deep; deeper ones get 400, never a RecursionError


class BatchingArgs(BaseModel):
    """``@serve.batch`` settings: sequences of concurrent requests are scored in one forward pass."""

    model_config = ConfigDict(extra="forbid")
    max_batch_size: int = Field(16, gt=0)  # requests per batch; keep max_ongoing_requests >= this
    # ours, measured (docs/benchmarks.md): 0 = no waiting; a batch is what queued while the last one ran.
    # A 5 ms wait added 5 ms to every request's p50 at moderate rates and saved little CPU at high ones.
    batch_wait_timeout_s: float = Field(0.0, ge=0)


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


def too_deep(value: Any, limit: int) -> bool:
    """Whether ``value`` nests arrays/objects more than ``limit`` deep; iterative, so no recursion to exhaust."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, (dict, list)):
            if depth > limit:
                return True
            stack.extend((child, depth + 1) for child in (node.values() if isinstance(node, dict) else node))
    return False


def decode_request(body: bytes, limits: ServeLimits) -> ScoreRequest:
    """Body bytes -> a checked request, or RequestRejected (400 bad or too deep JSON, 422 bad shape, 413 over a limit)."""
    if len(body) > limits.max_body_bytes:
        raise RequestRejected(413, f"request body is {len(body)} bytes; limits.max_body_bytes is {limits.max_body_bytes}")
    deep = f"request body nests arrays/objects more than limits.max_json_depth={limits.max_json_depth} deep"
    try:
        data = json.loads(body)
    except RecursionError:
        raise RequestRejected(400, deep) from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, integers past Python's 4,300-digit limit
        raise RequestRejected(400, f"request body is not valid JSON: {exc}") from None
    if too_deep(data, limits.max_json_depth):
        raise RequestRejected(400, deep)
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


def model_info(scorer: Scorer) -> dict:
    """``GET /v1/model``: what the artifact is, what it was trained on, and how it is served."""
    art, s = scorer.artifact, scorer.artifact.summary
    return {
        "artifact_dir": str(scorer.path), "run_name": s.get("run_name"), "method": art.config["meta"]["method"],
        "sources": s.get("sources"), "target": s.get("target"),
        "threshold": scorer.threshold, "artifact_threshold": art.threshold,
        "best_epoch": s.get("best_epoch"), "best_metrics": s.get("best_metrics"), "data_counts": s.get("data_counts"),
        "events": len(art.table.event_ids), "embedding_dim": int(art.table.vectors.shape[1]),
        "model": art.config["model"],
        "system": None if scorer.system is None else {
            "name": scorer.system.name or s.get("target"), "log_format": scorer.system.log_format,
            "grouping": art.config["data"]["systems"][s.get("target") or art.config["data"]["target"]]["grouping"]},
        "raw_lines": scorer.miner is not None,
        "drain_templates": len(scorer.miner.drain.clusters) if scorer.miner is not None else 0,
        "source_events": int(art.is_source.sum()),
        "knowledge_base": None if scorer.kb is None else {"rows": scorer.kb.count()},
        "notes": scorer.notes,
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


def expand_request(scorer: Scorer, req: ScoreRequest) -> Expanded:
    """Client-grouped sequences as they are; ungrouped raw lines grouped by the system's rule (as prepare does)."""
    if req.sequences is not None:
        return Expanded([SequenceInput(s.id if s.id is not None else str(i), "lines" if s.lines is not None else "events",
                                       s.lines if s.lines is not None else s.events,
                                       list(range(len(s.lines if s.lines is not None else s.events))))
                         for i, s in enumerate(req.sequences)], [])
    try:
        groups, ungrouped = scorer.group(req.lines)
    except FusionLogError as exc:
        raise RequestRejected(422, str(exc)) from None
    return Expanded([SequenceInput(sid, "lines", [req.lines[p] for p in positions], positions)
                     for sid, positions in groups], ungrouped)


def parse(scorer: Scorer, batch: list[SequenceInput]) -> list[ParsedSequence]:
    """Every raw-line sequence of the batch through one ``Scorer.lines_batch`` call (one LineSplitter
    pass for the whole batch), template sequences one by one; output in batch order."""
    try:
        raw = iter(scorer.lines_batch([(s.items, s.positions) for s in batch if s.kind == "lines"])
                   if any(s.kind == "lines" for s in batch) else ())
        return [next(raw) if s.kind == "lines" else scorer.events(s.items, s.positions) for s in batch]
    except FusionLogError as exc:
        raise RequestRejected(422, str(exc)) from None


def reply(seq: SequenceInput, scored: Scored, scorer: Scorer) -> dict:
    """One sequence's part of the reply. A sequence with no known event is ``unscored``."""
    p = scored.parsed
    unscored = math.isnan(scored.probability)
    return {
        "id": seq.id,
        "probability": None if unscored else round(scored.probability, 6),
        "label": "unscored" if unscored else ("anomalous" if scored.anomalous else "normal"),
        "threshold": scorer.threshold,
        "lines": len(seq.items), "known_events": len(p.rows),
        "truncated": len(p.rows) > scorer.artifact.model_config.max_len,
        "event_ids": [scorer.artifact.table.event_ids[r] for r in p.rows],
        "unknown_events": p.unknown, "skipped_lines": p.skipped,
        "bottleneck": scored.bottleneck, "nearest_sequences": scored.nearest,
    }


def score_sequences(scorer: Scorer, batch: list[SequenceInput]) -> list[dict]:
    """Parse, score in one forward pass, and encode a batch of sequences; one reply dict per sequence."""
    scored = scorer.score(parse(scorer, batch))
    return [reply(seq, sc, scorer) for seq, sc in zip(batch, scored)]


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
        self.model: Optional[Scorer] = None
        self.load_error = ""
        try:
            self.model = Scorer.load(args.artifact_dir, args.threshold, args.kb_top_k)
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
            expanded = expand_request(self.model, req)
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

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.0)
    async def score_batch(self, requests: list[list[SequenceInput]]) -> list[Any]:
        """One ``score_sequences`` call for the sequences of every request in the batch.

        It runs on the replica's user-code event loop, not in a worker thread: a batch takes a few
        milliseconds, requests that arrive meanwhile form the next batch, and on a one-CPU replica a
        thread hop bought no concurrency (it measured no faster). If the joint call fails, each request
        is scored alone, so an error reaches only its own caller.
        """
        flat = [s for r in requests for s in r]
        try:
            scored = score_sequences(self.model, flat)
        except Exception:
            return [self._score_one(r) for r in requests]
        out, start = [], 0
        for r in requests:
            out.append(scored[start:start + len(r)])
            start += len(r)
        return out

    def _score_one(self, sequences: list[SequenceInput]) -> Any:
        try:
            return score_sequences(self.model, sequences)
        except Exception as exc:  # returned, not raised: the replica and the other callers carry on
            log.exception("scoring failed")
            return exc


def build_app(args: ServeArgs) -> Application:
    """Serve's application builder: ``import_path: fusionlog.serve:build_app`` with ``args:`` a ServeArgs.

    A relative ``artifact_dir`` is resolved here, where the app is built (``serve run``'s directory, or a
    driver's), not in each replica, whose working directory is Ray's (a job's working_dir copy on a cluster).
    """
    return Scorer.bind(resolved(args))


def resolved(args: ServeArgs) -> ServeArgs:
    """``args`` with ``artifact_dir`` made absolute against this process's working directory."""
    return args.model_copy(update={"artifact_dir": str(Path(args.artifact_dir).resolve())})
