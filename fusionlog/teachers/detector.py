"""A classic count-based detector (fusionlog.detectors) as a teacher: PCA, Invariant Mining, Isolation Forest.

The detector is fitted on the event counts of the system being labelled (``fit``, labels unseen)
and decides by its own published rule, ``raw > cutoff``. Its raw score is mapped onto [0, 1] so
that this rule is ``p >= 0.5``, the teacher's own threshold (source calibration may move it):

    cutoff > 0:   p = r / (1 + r) with r = raw / cutoff   (PCA: SPE / Q_alpha; Isolation Forest: s / 0.5)
    cutoff <= 0:  p = 0 where raw <= cutoff, else 0.5 + 0.5 * d / (1 + d), d = raw - cutoff
                  (Invariant Mining: any broken invariant is an alarm)

A template never seen at fit time has no column: the sequence is unexplained by definition (p = 1).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from fusionlog.config import FusionLogError
from fusionlog.detectors import Detector, count_matrix, fit_vocabulary
from fusionlog.teachers.base import LabelRequest, Teacher


def to_probability(raw: np.ndarray, cutoff: float) -> np.ndarray:
    """Monotone map of a detector's raw score onto [0, 1] with the detector's cutoff at 0.5 (see module doc)."""
    raw = np.asarray(raw, dtype=np.float64)
    if cutoff > 0:
        r = np.clip(raw, 0.0, None) / cutoff
        with np.errstate(invalid="ignore"):
            return np.where(np.isinf(r), 1.0, r / (1.0 + r))
    d = raw - cutoff
    return np.where(d > 0, 0.5 + 0.5 * d / (1.0 + d), 0.0)


class DetectorTeacher(Teacher):
    """Fit on the population's counts; p(anomalous) from the detector's score, 0.5 at its own cutoff."""

    def __init__(self, name: str, detector: Detector, threshold: float = 0.5):
        super().__init__(threshold)
        self.name, self.detector = name, detector
        self.vocab: dict[str, int] = {}

    def fit(self, population: list[list[str]]) -> None:
        if not population:
            raise FusionLogError(f"{self.name} teacher: fit() got no sequences")
        self.vocab = fit_vocabulary(population)
        self.detector.fit(count_matrix(population, self.vocab)[0])

    def score(self, requests: Sequence[LabelRequest]) -> np.ndarray:
        if not self.vocab:
            raise FusionLogError(f"{self.name} teacher: score() before fit(); it models the system it labels")
        if not len(requests):
            return np.zeros(0)
        counts, unseen = count_matrix([r.templates for r in requests], self.vocab)
        p = to_probability(self.detector.score(counts), self.detector.cutoff)
        p[unseen > 0] = 1.0
        return p
