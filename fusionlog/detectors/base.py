"""The interface every label-free detector follows, and the checks on its input.

A detector is fitted on the unlabelled count matrix of the very system it judges, and decides
with its own published rule (a statistic's quantile, a violated invariant, the isolation paper's
0.5): ``decide(X) = score(X) > cutoff``, with ``cutoff`` fixed by ``fit`` from the counts alone.
No method here accepts labels, so none can be tuned on them.
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import scipy.sparse as sp

CountsLike = np.ndarray | sp.spmatrix


def check_counts(counts: CountsLike, where: str) -> sp.csr_matrix:
    """A non-empty 2-D matrix of finite, non-negative counts, as CSR float64; ValueError naming what is wrong."""
    x = sp.csr_matrix(counts, dtype=np.float64) if sp.issparse(counts) else np.asarray(counts, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"{where}: counts must be a 2-D (sequences x events) matrix, got {x.ndim}-D")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{where}: counts matrix is empty, shape {x.shape}; need at least one sequence and one event")
    values = x.data if sp.issparse(x) else x
    if not np.isfinite(values).all():
        raise ValueError(f"{where}: counts hold NaN or infinite values; counts must be finite")
    if (values < 0).any():
        raise ValueError(f"{where}: counts hold negative values (min {values.min():g}); counts must be >= 0")
    return sp.csr_matrix(x)


class Detector(ABC):
    """fit(X) on unlabelled counts -> score(X), higher = more anomalous -> decide(X) = score > cutoff."""

    cutoff: float = float("nan")  # set by fit, from the counts alone
    n_events: int = 0

    def fit(self, counts: CountsLike) -> Detector:
        """Model the system's own unlabelled sequences and fix ``cutoff``; returns self."""
        x = check_counts(counts, f"{type(self).__name__}.fit")
        self.n_events = x.shape[1]
        self._fit(x)
        return self

    def score(self, counts: CountsLike) -> np.ndarray:
        """Anomaly score per sequence (float, higher = more anomalous), over fit()'s columns."""
        where = f"{type(self).__name__}.score"
        if not self.n_events:
            raise ValueError(f"{where}: call fit() first, on the system's own unlabelled counts")
        x = check_counts(counts, where)
        if x.shape[1] != self.n_events:
            raise ValueError(f"{where}: counts have {x.shape[1]} event columns, fit() saw {self.n_events}; "
                             "build both with the same vocabulary")
        return np.asarray(self._score(x), dtype=np.float64)

    def decide(self, counts: CountsLike) -> np.ndarray:
        """0/1 per sequence by the method's own rule (see each detector's docstring)."""
        return (self.score(counts) > self.cutoff).astype(np.int8)

    @abstractmethod
    def _fit(self, x: sp.csr_matrix) -> None:
        """Learn the model and set ``self.cutoff``."""

    @abstractmethod
    def _score(self, x: sp.csr_matrix) -> np.ndarray:
        """Anomaly score per row."""
