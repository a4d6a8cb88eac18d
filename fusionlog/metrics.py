"""Metrics with anomaly as the positive class (the paper's definitions), AUROC, and the one threshold picker.

Pure numpy functions: no torch, no Ray. Labels are 1 anomalous, 0 normal; -1 (unknown) is refused.
"""
from __future__ import annotations

import numpy as np


def _check(y_true: np.ndarray, other: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    y_true = np.asarray(y_true).astype(np.int64)
    other = np.asarray(other)
    if y_true.shape != other.shape or y_true.ndim != 1:
        raise ValueError(f"labels and {what} must be 1-D of the same length, got {y_true.shape} and {other.shape}")
    bad = set(np.unique(y_true).tolist()) - {0, 1}
    if bad:
        raise ValueError(f"labels {sorted(bad)}; allowed: 0 (normal), 1 (anomalous)")
    return y_true, other


def precision_recall_f1(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """P = TP/(TP+FP), R = TP/(TP+FN), F1 = 2PR/(P+R) over sequences (FusionLog §IV-A); 0 when undefined."""
    y_true, y_pred = _check(y_true, y_pred, "predictions")
    y_pred = y_pred.astype(np.int64)
    tp = int(((y_pred == 1) & (y_true == 1)).sum())
    fp = int(((y_pred == 1) & (y_true == 0)).sum())
    fn = int(((y_pred == 0) & (y_true == 1)).sum())
    tn = int(((y_pred == 0) & (y_true == 0)).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "tp": tp, "fp": fp, "fn": fn, "tn": tn}


def auroc(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve via the Mann-Whitney U statistic, ties counted half."""
    y_true, scores = _check(y_true, scores, "scores")
    n_pos = int(y_true.sum())
    n_neg = len(y_true) - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"AUROC needs both classes; got {n_pos} anomalous and {n_neg} normal")
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    ranks = np.empty(len(scores), dtype=np.float64)
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    average = first + (counts + 1) / 2.0  # 1-based average rank of each tie group
    ranks[order] = np.repeat(average, counts)
    u = ranks[y_true == 1].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def best_f1_threshold(y_true: np.ndarray, scores: np.ndarray) -> float:
    """The threshold (label = score >= t) with the best F1 on labelled SOURCE data, never on target labels.

    Used for the small model's threshold on source-val and for a teacher's calibration. Candidates
    are the distinct scores; the chosen one is moved halfway to the next lower score, so unseen data
    slightly below the last caught positive still counts. Ties in F1 go to the highest threshold
    (fewer alarms). NaN scores (a teacher with no answer) are left out.
    """
    y_true, scores = _check(y_true, np.asarray(scores, dtype=np.float64), "scores")
    keep = ~np.isnan(scores)
    y_true, scores = y_true[keep], scores[keep]
    if y_true.sum() == 0:
        raise ValueError("best_f1_threshold: no anomalous sequences among the scored labels")
    order = np.argsort(-scores, kind="mergesort")
    s, y = scores[order], y_true[order]
    tp = np.cumsum(y)
    fp = np.cumsum(1 - y)
    last = np.r_[s[1:] != s[:-1], True]  # last position of each distinct score
    tp, fp, cand = tp[last], fp[last], s[last]
    f1 = 2 * tp / (2 * tp + fp + (y.sum() - tp))
    best = int(np.argmax(f1))
    if best + 1 < len(cand):
        return float((cand[best] + cand[best + 1]) / 2.0)
    return float(cand[best])
