"""The evaluator: the one place in the library that reads a target system's labels.

Training, routing, distillation and every threshold read none (a target is loaded with
``read_labels=False``, and ``TrainData`` has no field for its labels); experiments, the CLI's
``evaluate`` and the zero-label tests come here after a model or teacher has decided. Rows carry the
paper's metrics (anomaly = positive class), AUROC, and the data sizes beside them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from fusionlog.dataset import PreparedSystem, load_prepared
from fusionlog.metrics import auroc, precision_recall_f1
from fusionlog.teachers.base import LabelRequest
from fusionlog.teachers.keyword import KeywordTeacher


def load_labelled(prepared_dir: str | Path, name: str) -> PreparedSystem:
    """A prepared system WITH its labels: for evaluation, and for references that say they are not zero-label."""
    return load_prepared(prepared_dir, name, read_labels=True)


def results_row(pair: str, method: str, y_true: np.ndarray, scores: np.ndarray, threshold: float,
                sizes: Optional[dict] = None) -> dict:
    """One row of the per-pair table: the paper's metrics + AUROC; unlabelled sequences dropped and counted."""
    y_true = np.asarray(y_true).astype(np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    known = y_true >= 0
    y, p = y_true[known], scores[known]
    row = {"pair": pair, "method": method, "threshold": float(threshold), **(sizes or {}),
           "evaluated": int(known.sum()), "unlabelled_skipped": int((~known).sum()),
           "anomalous": int(y.sum())}
    row.update(precision_recall_f1(y, (p >= threshold).astype(np.int64)))
    row["auroc"] = auroc(y, p) if 0 < y.sum() < len(y) else float("nan")
    return row


class Evaluator:
    """A target's labels, loaded once and only ever compared with scores here (never handed out)."""

    def __init__(self, prepared_dir: str | Path, target: str):
        self.target = target
        system = load_labelled(prepared_dir, target)
        self._labels = system.labels
        self._row = {sid: i for i, sid in enumerate(system.seq_ids)}

    def row(self, scores: np.ndarray, threshold: float, pair: str, method: str, sizes: Optional[dict] = None,
            rows: Optional[np.ndarray] = None) -> dict:
        """Scores per target sequence (in prepared order) against the labels; ``rows`` picks a subset."""
        scores = np.asarray(scores, dtype=np.float64)
        if len(scores) != len(self._labels):
            raise ValueError(f"{len(scores)} scores for the {len(self._labels)} sequences of {self.target}")
        labels = self._labels
        if rows is not None:
            labels, scores = labels[rows], scores[rows]
        return results_row(pair, method, labels, scores, threshold,
                           {"target_sequences": len(self._labels), **(sizes or {})})


    def pseudo_label_precision(self, seq_ids: list[str], labels: np.ndarray) -> dict:
        """How many pseudo-labels (e.g. one distillation round's clean set) are right, per class:
        {"anomalous": (right, given), "normal": (right, given)} (evaluation only)."""
        truth = self._labels[[self._row[s] for s in seq_ids]] if len(seq_ids) else np.zeros(0, np.int8)
        labels = np.asarray(labels)
        return {name: (int(((labels == v) & (truth == v)).sum()), int((labels == v).sum()))
                for name, v in (("anomalous", 1), ("normal", 0))}

    def property_aurocs(self, properties: dict[str, np.ndarray]) -> dict[str, float]:
        """AUROC of each label-free sequence property as an anomaly score (evaluation only): which
        property separates the classes, and in which direction (below 0.5: inverted)."""
        known = self._labels >= 0
        y = self._labels[known]
        if not 0 < y.sum() < len(y):
            return {k: float("nan") for k in properties}
        return {k: auroc(y, np.asarray(v, dtype=np.float64)[known]) for k, v in properties.items()}

    def histograms(self, scores: np.ndarray, bins: np.ndarray) -> dict[str, np.ndarray]:
        """Counts of ``scores`` per bin, for normal and anomalous sequences apart (unlabelled ones left out):
        the picture by class for a report, without handing the labels out."""
        scores = np.asarray(scores, dtype=np.float64)
        if len(scores) != len(self._labels):
            raise ValueError(f"{len(scores)} scores for the {len(self._labels)} sequences of {self.target}")
        return {name: np.histogram(scores[self._labels == value], bins)[0]
                for name, value in (("normal", 0), ("anomalous", 1))}


def baseline_scores(target: PreparedSystem) -> dict[str, tuple[np.ndarray, float]]:
    """The label-free baselines' (scores, threshold) on a target, computed without its labels: the keyword
    rule (a generic failure word in some template) and flagging every sequence."""
    requests = [LabelRequest(sid, target.name, [target.templates[e] for e in seq], [])
                for sid, seq in zip(target.seq_ids, target.sequences)]
    return {"keyword rule": (KeywordTeacher().score(requests), 0.5),
            "flag everything": (np.ones(len(target)), 0.5)}


def baseline_rows(prepared_dir: str | Path, target: str, pair: str) -> list[dict]:
    """Results rows of the label-free baselines on the same target, so a model's numbers have a reference."""
    system = load_prepared(prepared_dir, target, read_labels=False)
    evaluator = Evaluator(prepared_dir, target)
    return [evaluator.row(scores, threshold, pair, method)
            for method, (scores, threshold) in baseline_scores(system).items()]


def evaluate_scores(prepared_dir: str | Path, target: str, scores: np.ndarray, threshold: float, pair: str,
                    method: str, sizes: Optional[dict] = None, rows: Optional[np.ndarray] = None) -> dict:
    """One results row for scores of a prepared target (see ``Evaluator.row``)."""
    return Evaluator(prepared_dir, target).row(scores, threshold, pair, method, sizes, rows)


def evaluate_artifact(path: str | Path, prepared_dir: str | Path, target: Optional[str] = None,
                      batch_size: int = 256) -> dict:
    """A model artifact's results row on a prepared target (the CLI's ``fusionlog evaluate``)."""
    from fusionlog.artifact import load_artifact
    from fusionlog.scoring import Scorer

    path = Path(path)
    scorer = Scorer(load_artifact(path), path)
    art = scorer.artifact
    target = target or art.summary["target"]
    probs, dropped = scorer.score_system(load_prepared(prepared_dir, target, read_labels=False), batch_size)
    sizes = {**{f"train_{k}": v for k, v in art.summary["data_counts"].items()}, **dropped,
             "threshold_chosen_on": art.summary.get("threshold_chosen_on", "source-val")}
    pair = f"{'+'.join(art.summary['sources'])}->{target}"
    method = art.summary.get("method") or art.config["meta"]["method"]
    return evaluate_scores(prepared_dir, target, probs, art.threshold, pair, method, sizes)
