"""FusionLog end to end (Algorithm 1): prepare -> route -> small model -> distill -> fused artifact.

Reads top to bottom like a recipe. The target system is loaded without its labels; the only place
target labels are read is ``fusionlog.evaluate`` (the evaluator).
"""
from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from fusionlog import progress
from fusionlog.artifact import KNOWLEDGE_BASE, PSEUDO_LABELS, REQUIRED, ROUTING, Artifact, load_artifact, save_artifact
from fusionlog.config import FusionLogConfig, FusionLogError, TeacherConfig, to_dict
from fusionlog.dataset import PreparedSystem, TrainData, build_train_data, load_prepared
from fusionlog.distill import DistillInputs, distill, fused_threshold
from fusionlog.parsing import DRAIN_STATE
from fusionlog.prepare import prepare
from fusionlog.ray_runtime import ensure_ray
from fusionlog.retrieval import knowledge_base_table, make_store
from fusionlog.routing import RoutingResult, route
from fusionlog.staging import check_replaceable, write_text_atomic
from fusionlog.teachers import Example, LabelRequest, Teacher, make_teacher

log = logging.getLogger(__name__)


def route_target(cfg: FusionLogConfig) -> tuple[list[PreparedSystem], PreparedSystem, RoutingResult]:
    """Phase I: load sources (labelled) and target (labels never read) and split the target."""
    prepared = cfg.data.output_dir
    sources = [load_prepared(prepared, name, read_labels=True) for name in cfg.data.sources]
    target = load_prepared(prepared, cfg.data.target, read_labels=False)
    dims = {s.name: s.dim for s in [*sources, target]}
    if len(set(dims.values())) != 1:
        raise FusionLogError(f"embedding dimensions differ between systems: {dims}; prepare them together")
    routing = route(target.sequences, target.vectors, np.vstack([s.vectors for s in sources]), cfg.routing)
    log.info("routing: %s", routing.summary())
    return sources, target, routing


def data_sizes(sources: list[PreparedSystem], target: PreparedSystem) -> dict:
    """Sequences per system, anomalous ones for sources only: a target's count would be one of its labels."""
    return {"sources": {s.name: {"sequences": len(s), "anomalous": int((s.labels == 1).sum())} for s in sources},
            "target": {"name": target.name, "sequences": len(target)}}


def write_routing(out: Path, target: PreparedSystem, routing: RoutingResult) -> None:
    """Per target sequence: s_k, general or not, and its bottleneck event (for results and serving)."""
    pq.write_table(pa.table({
        "seq_id": target.seq_ids, "score": routing.scores, "general": routing.general,
        "bottleneck_event": [target.event_ids[i] if i >= 0 else "" for i in routing.bottleneck],
    }), out / ROUTING)


def calibrate_teacher(teacher: Teacher, cfg: TeacherConfig, templates: list[str], data: TrainData, system: str,
                      seed: int, examples: Optional[Callable[[int], list[Example]]] = None) -> dict:
    """Let the teacher learn from labelled SOURCE-val sequences (never target labels): a graded teacher's
    threshold, a committee vote's member reliabilities (``Teacher.calibrate``).

    ``templates`` is the text of each row of ``data``'s event table. ``system`` is the name the prompts
    will carry in distillation (the target's), and ``examples(i)`` the few-shot examples for source-val
    sequence ``i``, retrieved as distillation retrieves them: an LLM is calibrated on the prompt it is
    used with, not on a bare one.
    """
    if not cfg.calibrate or not teacher.calibratable or not len(data.source_val):
        return {"calibrated": False, "threshold": teacher.threshold}
    labels = data.source_val_labels
    n = cfg.calibration_samples
    if n == 0 or n >= len(labels):  # all of source-val, at its own class balance
        rows = np.arange(len(labels))
    else:  # a sample, half anomalous, so a few dozen LLM requests still see both classes
        rng = np.random.default_rng(seed)
        pos, neg = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
        n_pos = min(len(pos), max(1, n // 2))
        rows = np.concatenate([rng.choice(pos, n_pos, replace=False),
                               rng.choice(neg, min(len(neg), n - n_pos), replace=False)])
    teacher.fit([[templates[e] for e in seq] for seq in [*data.source_train, *data.source_val]])
    requests = [LabelRequest(f"cal-{i}", system, [templates[e] for e in data.source_val[i]],
                             examples(i) if examples else []) for i in rows]
    with progress.stage("calibrate", len(requests), "seq"):  # Teacher.calibrate advances it
        return teacher.calibrate(requests, labels[rows])


def source_examples(art: Artifact, data: TrainData, top_k: int, max_events: int) -> Callable[[int], list[Example]]:
    """Few-shot examples for source-val sequences: their nearest source-train sequences labelled by the small
    model, shown as distillation shows the target's knowledge base (label + within-class rank confidence)."""
    from fusionlog.distill import sm_labels
    from fusionlog.retrieval import MemoryStore, Record, sequence_content, sequence_vectors

    probs, _ = art.score(data.source_train)
    labels, conf = sm_labels(probs, art.threshold)
    store = MemoryStore()
    store.add([Record(f"src-{i}", sequence_content([art.table.templates[e] for e in seq], max_events), int(y), float(c))
               for i, (seq, y, c) in enumerate(zip(data.source_train, labels, conf))],
              sequence_vectors(data.source_train, art.table.vectors))
    queries = sequence_vectors(data.source_val, art.table.vectors)

    def examples(i: int) -> list[Example]:
        return [Example(r.content.split("\n"), r.label, r.confidence) for r in store.search(queries[i:i + 1], top_k)[0]]

    return examples


def write_pseudo_labels(path: Path, pseudo: dict[str, tuple[int, float, int]]) -> None:
    """What the fused model was fine-tuned on: seq_id, label, target (the soft label when used), round
    (-1: leftovers). The evaluator reads it to report each round's precision (evaluation only)."""
    ids = list(pseudo)
    pq.write_table(pa.table({"seq_id": ids, "label": pa.array([pseudo[i][0] for i in ids], pa.int8()),
                             "target": pa.array([pseudo[i][1] for i in ids], pa.float64()),
                             "round": pa.array([pseudo[i][2] for i in ids], pa.int16())}), path)


def export_parsing_state(prepared_dir: str | Path, target: str, artifact_dir: Path) -> None:
    """Copy the target's drain3 state into an artifact, so serving parses raw lines with the same templates."""
    state = Path(prepared_dir) / target / DRAIN_STATE
    if state.is_file():
        shutil.copy(state, Path(artifact_dir) / DRAIN_STATE)
    else:
        log.warning("%s not found (pre-parsed sessions?): the artifact will score template sequences only", state)


def train(cfg: FusionLogConfig, skip_prepare: bool = False, small_model: Optional[str | Path] = None) -> dict:
    """Run FusionLog and write the fused artifact to ``<run.output_dir>/fused``; returns the summary.

    ``small_model``: the artifact of a small model this very config and data already trained (e.g. a
    run that differed only in its distillation settings); checked by run hash, then reused.
    """
    from fusionlog.train import fit_small, run_hash

    t0 = time.monotonic()
    out = Path(cfg.run.output_dir)
    for folder in ("small", "fused"):  # before any work, not after an hour of distillation
        check_replaceable(out / folder, REQUIRED, f"<run.output_dir>/{folder}")
    if not skip_prepare:
        prepare(cfg)
    sources, target, routing = route_target(cfg)
    general = np.flatnonzero(routing.general)
    if not len(general):
        raise FusionLogError("routing left no general target sequences for meta-learning; lower routing.tau")
    data = build_train_data(sources, target, cfg.train.val_fraction, cfg.run.seed, target_rows=general)
    ensure_ray(cfg.ray, cfg.run.progress)
    if small_model is None:
        small_model = fit_small(cfg, data, artifact_dir=out / "small").artifact_dir
    else:
        found, expected = json.loads((Path(small_model) / "summary.json").read_text()).get("run_hash"), run_hash(cfg, data)
        if found != expected:
            raise FusionLogError(f"small model {small_model} is from run {found}; this config and data give run "
                                 f"{expected} (model, meta, train, seed or data differ): train it here instead")
        log.info("reusing the small model %s (run %s)", small_model, found)
    art = load_artifact(small_model)
    best = art.summary.get("best_metrics", {})
    summary = {"run_dir": str(out), "data": data_sizes(sources, target), "small_model": str(small_model),
               "small": {"best_epoch": art.summary.get("best_epoch"), "val_f1": best.get("val_f1"),
                         "val_auroc": best.get("val_auroc"), "threshold": art.threshold,
                         "stopped": art.summary.get("stopped")},
               "routing": routing.summary(), "distill": None}

    kb_table = None
    if cfg.distill.enabled and (routing.proprietary.any() or cfg.distill.scope == "all"):
        sequences, summary["unknown_events_dropped"] = art.reindex(target)
        teacher = make_teacher(cfg.teacher, cfg.llm, cfg.embedding.minilm_path)
        store = make_store(cfg.retrieval, art.table.vectors.shape[1], str(out))
        try:
            examples = (source_examples(art, data, cfg.retrieval.top_k, cfg.retrieval.max_content_events)
                        if teacher.uses_examples and cfg.distill.use_rag else None)
            backend = {"backend": cfg.llm.backend} if cfg.teacher.kind == "llm" else {}
            summary["teacher"] = {"kind": cfg.teacher.kind, **backend, **calibrate_teacher(
                teacher, cfg.teacher, art.table.templates, data, target.name, cfg.run.seed, examples)}
            inputs = DistillInputs(art.model, art.threshold, art.table.vectors, art.table.templates, sequences,
                                   target.seq_ids, routing.general, target.name, cfg.model.max_len)
            result = distill(inputs, teacher, store, cfg.distill, cfg.retrieval, seed=cfg.run.seed)
            summary["distill"] = result.to_dict()
            labels = [v[0] for v in result.pseudo_labels.values()]
            summary["pseudo_labels"] = {"normal": labels.count(0), "anomalous": labels.count(1)}
            summary["threshold"] = fused_threshold(
                art.model, sequences, set(result.pseudo_labels), target.seq_ids, result.teacher_rate, art.threshold,
                cfg.distill.threshold, cfg.train.eval_batch_size, cfg.model.max_len)
            summary["teacher"]["stats"] = dict(teacher.stats)
            summary["teacher"]["report"] = getattr(teacher, "report", {})
            pseudo = result.pseudo_labels
            kb_table = knowledge_base_table(store)
        finally:
            store.close()
            teacher.close()
    elif cfg.distill.enabled:
        log.info("no proprietary target sequences: nothing to distill")
        summary["distill_skipped"] = "the router left no proprietary target sequences"
    else:
        summary["distill_skipped"] = "distill.enabled=false"

    def extras(folder: Path) -> None:
        if kb_table is not None:
            pq.write_table(kb_table, folder / KNOWLEDGE_BASE)
            write_pseudo_labels(folder / PSEUDO_LABELS, pseudo)
        write_routing(folder, target, routing)
        export_parsing_state(cfg.data.output_dir, cfg.data.target, folder)

    fused = out / "fused"
    source_events = {e for s in sources for e in s.event_ids}
    threshold = summary["threshold"] = summary.get("threshold") or {"value": art.threshold, "chosen_on": "source-val"}
    summary["artifact"] = str(fused)
    with progress.stage("write", 1, "steps", note=str(fused)) as bar:
        save_artifact(fused, art.model.state_dict(), to_dict(cfg), art.table,
                      {**art.summary, "threshold": threshold["value"], "threshold_chosen_on": threshold["chosen_on"],
                       "fusion": summary, "method": "fusionlog"}, source_events, extras=extras)
        bar.advance()
    summary["seconds"] = round(time.monotonic() - t0, 1)
    write_text_atomic(out / "train_summary.json", json.dumps(summary, indent=2, default=float) + "\n")
    log.info("fused artifact in %s", fused)
    return summary
