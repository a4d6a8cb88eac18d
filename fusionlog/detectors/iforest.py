"""Isolation Forest (Liu, Ting & Zhou, ICDM'08) from scikit-learn, over log1p counts.

Why log1p and not TF-IDF: a tree splits a feature uniformly between its min and max, so scaling a
column (all TF-IDF does to a count column) changes nothing; what does matter is that BGL windows
hold one event up to a thousand times, and on raw counts most splits would fall in that tail.  On
log1p counts, absent vs present is as wide a gap as 1 vs 3 occurrences, which is what logs mean.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from sklearn.ensemble import IsolationForest

from fusionlog.detectors.base import Detector

ROUNDING = 1e-9  # s = 0.5 exactly ("no distinct anomaly" in the paper) comes out 1 ulp above 0.5 in sklearn


class IsolationForestDetector(Detector):
    """score = the paper's s(x) in (0, 1); decide: s(x) > 0.5, sklearn's ``contamination='auto'``.

    That is ``IsolationForest.predict``'s rule (offset -0.5), except that exact ties at 0.5 are
    not alarms: the paper reads s close to 0.5 everywhere as a sample with no distinct anomaly.
    """

    def __init__(self, n_estimators: int = 100, random_state: int = 0):
        self.n_estimators, self.random_state = n_estimators, random_state
        self.forest: IsolationForest | None = None

    def _fit(self, x: sp.csr_matrix) -> None:
        self.forest = IsolationForest(n_estimators=self.n_estimators, contamination="auto",
                                      random_state=self.random_state).fit(x.log1p().tocsc())
        self.cutoff = -float(self.forest.offset_) + ROUNDING

    def _score(self, x: sp.csr_matrix) -> np.ndarray:
        return -self.forest.score_samples(x.log1p())
