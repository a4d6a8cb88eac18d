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
from typing import Optional

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from fusionlog import progress
from fusionlog.artifact import KNOWLEDGE_BASE, REQUIRED, ROUTING, Artifact, load_artifact, save_artifact
from fusionlog.config import FusionLogConfig, FusionLogError, TeacherConfig, to_dict
from fusionlog.dataset import PreparedSystem, TrainData, build_train_data, load_prepared
from fusionlog.distill import DistillInputs, distill
from fusionlog.metrics import best_f1_threshold, precision_recall_f1
from fusionlog.parsing import DRAIN_STATE
from fusionlog.prepare import prepare
from fusionlog.ray_runtime import ensure_ray
from fusionlog.retrieval import knowledge_base_table, make_store
from fusionlog.routing import RoutingResult, route
from fusionlog.staging import check_replaceable, write_text_atomic
from fusionlog.teachers import LabelRequest, Teacher, make_teacher

log = logging.getLogger(__name__)


def route_target(cfg: FusionLogConfig) -> tuple[list[PreparedSystem], PreparedSystem, RoutingResult]:
    """Phase I: load sources (labelled) and target (labels never read) and split the target."""
    prepared = cfg.data.output_dir
    sources = [load_prepared(prepared, name, read_labels=True) for name in cfg.data.sources]
    target = load_prepared(prepared, cfg.data.target, read_labels=False)
    dims = {s.name: s.dim for s in [*sources, target]}
    if len(set(dims.values())) != 1:
        raise FusionLogError(f"embedding dimensions differ between systems: {dims}; prepare them together")
    with progress.stage("route", len(target), "seq") as bar:
        routing = route(target.sequences, target.vectors, np.vstack([s.vectors for s in sources]), cfg.routing)
        bar.update(done=len(target), note=f"{int(routing.general.sum())} general, "
                                          f"{int((~routing.general).sum())} proprietary")
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
                      seed: int) -> dict:
    """Set the teacher's threshold on labelled SOURCE-val sequences (never target labels).

    ``templates`` is the text of each row of ``data``'s event table; ``system`` names the source(s).
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
    requests = [LabelRequest(f"cal-{i}", system, [templates[e] for e in data.source_val[i]], []) for i in rows]
    parts = [np.zeros(0)]
    with progress.stage("calibrate", len(requests), "seq") as bar:  # in chunks: a CPU LLM takes seconds a request
        for start in range(0, len(requests), 8):
            parts.append(teacher.label(requests[start:start + 8])[1])
            bar.advance(len(parts[-1]))
    p = np.concatenate(parts)
    ok = np.isfinite(p)
    teacher.threshold = best_f1_threshold(labels[rows][ok], p[ok])
    own = precision_recall_f1(labels[rows][ok], (p[ok] >= teacher.threshold).astype(np.int64))
    return {"calibrated": True, "samples": int(ok.sum()), "threshold": teacher.threshold,
            "source_precision": own["precision"], "source_recall": own["recall"]}


def export_parsing_state(prepared_dir: str | Path, target: str, artifact_dir: Path) -> None:
    """Copy the target's drain3 state into an artifact, so serving parses raw lines with the same templates."""
    state = Path(prepared_dir) / target / DRAIN_STATE
    if state.is_file():
        shutil.copy(state, Path(artifact_dir) / DRAIN_STATE)
    else:
        log.warning("%s not found (pre-parsed sessions?): the artifact will score template sequences only", state)


def fused_threshold(art: Artifact, sequences: list[np.ndarray], seq_ids: list[str], pseudo_labels: dict,
                    rule: str, batch_size: int) -> dict:
    """The fused model's decision threshold (``distill.threshold``).

    The small model's threshold was chosen on source-val before distillation; fine-tuning on the
    target's pseudo-labels moves its scores, so by default (``pseudo``) the threshold is chosen again,
    as the best F1 against those pseudo-labels. No target label is read.
    """
    keep = {"value": art.threshold, "chosen_on": "source-val"}
    if rule == "source" or not pseudo_labels:
        return keep
    rows = [i for i, s in enumerate(seq_ids) if s in pseudo_labels]
    y = np.array([pseudo_labels[seq_ids[i]] for i in rows], dtype=np.int64)
    if y.min() == y.max():
        log.info("pseudo-labels hold one class only: keeping the source-val threshold")
        return keep
    probs, _ = art.score([sequences[i] for i in rows], batch_size)
    return {"value": best_f1_threshold(y, probs), "chosen_on": f"{len(rows)} pseudo-labelled target sequences"}


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
                         "val_auroc": best.get("val_auroc"), "threshold": art.threshold},
               "routing": routing.summary(), "distill": None}

    kb_table = None
    if cfg.distill.enabled and (routing.proprietary.any() or cfg.distill.scope == "all"):
        sequences, summary["unknown_events_dropped"] = art.reindex(target)
        teacher = make_teacher(cfg.teacher, cfg.llm, cfg.embedding.minilm_path)
        store = make_store(cfg.retrieval, art.table.vectors.shape[1], str(out))
        try:
            backend = {"backend": cfg.llm.backend} if cfg.teacher.kind == "llm" else {}
            summary["teacher"] = {"kind": cfg.teacher.kind, **backend, **calibrate_teacher(
                teacher, cfg.teacher, art.table.templates, data, "+".join(cfg.data.sources), cfg.run.seed)}
            inputs = DistillInputs(art.model, art.threshold, art.table.vectors, art.table.templates, sequences,
                                   target.seq_ids, routing.general, target.name, cfg.model.max_len)
            result = distill(inputs, teacher, store, cfg.distill, cfg.retrieval, seed=cfg.run.seed)
            summary["distill"] = result.to_dict()
            labels = list(result.pseudo_labels.values())
            summary["pseudo_labels"] = {"normal": labels.count(0), "anomalous": labels.count(1)}
            summary["threshold"] = fused_threshold(art, sequences, target.seq_ids, result.pseudo_labels,
                                                   cfg.distill.threshold, cfg.train.eval_batch_size)
            summary["teacher"]["stats"] = dict(teacher.stats)
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
