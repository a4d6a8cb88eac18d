"""What the suite reads off a finished run beside its scores (all evaluation only): when and why a small
model stopped, how right each distillation round's pseudo-labels were, and which label-free property of
the target's sequences a source-only model follows."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from fusionlog.config import RoutingConfig


def training_info(artifact_dir: Path) -> dict:
    """When and why a small model's training stopped (from its artifact summary)."""
    s = json.loads((Path(artifact_dir) / "summary.json").read_text())
    return {"best_epoch": s.get("best_epoch"), "epochs_run": s.get("epochs_run"), "stopped": s.get("stopped")}


def round_precision(evaluator, artifact_dir: Path) -> list[dict]:
    """Per distillation round (-1: leftovers): pseudo-labels given per class and how many are right."""
    import pyarrow.parquet as pq

    from fusionlog.artifact import PSEUDO_LABELS

    path = Path(artifact_dir) / PSEUDO_LABELS
    if not path.is_file():
        return []
    t = pq.read_table(path).to_pydict()
    out = []
    for r in sorted(set(t["round"])):
        rows = [i for i, x in enumerate(t["round"]) if x == r]
        prec = evaluator.pseudo_label_precision([t["seq_id"][i] for i in rows], np.array([t["label"][i] for i in rows]))
        out.append({"round": r, **{f"{k}_right": v[0] for k, v in prec.items()},
                    **{f"{k}_given": v[1] for k, v in prec.items()}})
    return out


def diagnose(prepared: Path, sources: list[str], target: str, model_dir: Path, routing: RoutingConfig) -> dict:
    """Label-free properties of each target sequence: each one's AUROC as an anomaly score (below 0.5:
    anomalies score lower) and its Spearman correlation with the source-only model's score. A model
    that follows a property that is inverted on the target inherits the inversion."""
    from scipy.stats import spearmanr

    from fusionlog.artifact import load_artifact
    from fusionlog.dataset import load_prepared
    from fusionlog.evaluate import Evaluator
    from fusionlog.routing import route
    from fusionlog.scoring import Scorer
    from fusionlog.teachers.keyword import KeywordTeacher

    tgt = load_prepared(prepared, target, read_labels=False)
    scores = Scorer(load_artifact(model_dir), Path(model_dir)).score_system(tgt)[0]
    srcs = [load_prepared(prepared, n, read_labels=False) for n in sources]
    known = {e for s in srcs for e in s.event_ids}
    split = route(tgt.sequences, tgt.vectors, np.vstack([s.vectors for s in srcs]), routing)
    rule = KeywordTeacher()
    props = {
        "length (events)": np.array([len(s) for s in tgt.sequences], dtype=float),
        "distinct events": np.array([len(set(s.tolist())) for s in tgt.sequences], dtype=float),
        "share of events unseen in the source": np.array(
            [np.mean([tgt.event_ids[e] not in known for e in s]) if len(s) else 0.0 for s in tgt.sequences]),
        "s_k (router)": split.scores,
        "events with a failure word": np.array(
            [sum(bool(rule.hit([tgt.templates[e]])) for e in s) for s in tgt.sequences], dtype=float),
    }
    aurocs = Evaluator(prepared, target).property_aurocs({"source-only model score": scores, **props})
    rho = {k: (float(spearmanr(scores, v).statistic) if np.ptp(v) > 0 else float("nan")) for k, v in props.items()}
    return {"aurocs": aurocs, "spearman": rho}
