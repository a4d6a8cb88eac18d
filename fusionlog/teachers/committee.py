"""A committee of teachers: the mean of the members' p(anomalous), thresholded like any teacher."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from fusionlog.teachers.base import LabelRequest, Teacher


class Committee(Teacher):
    """Mean of the members' finite scores per request (NaN when no member answered)."""

    def __init__(self, members: Sequence[Teacher], threshold: float = 0.5):
        super().__init__(threshold)
        self.members = list(members)
        self.deterministic = all(m.deterministic for m in self.members)

    def fit(self, population: list[list[str]]) -> None:
        for m in self.members:
            m.fit(population)

    def score(self, requests: Sequence[LabelRequest]) -> np.ndarray:
        if not len(requests):
            return np.zeros(0)
        scores = np.vstack([m.score(requests) for m in self.members])
        answered = np.isfinite(scores)
        total = np.where(answered, scores, 0.0).sum(0)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(answered.any(0), total / answered.sum(0), np.nan)

    def close(self) -> None:
        for m in self.members:
            m.close()
