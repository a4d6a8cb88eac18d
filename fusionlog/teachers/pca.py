"""The textbook unsupervised log detector as a teacher (Xu et al., SOSP 2009; He et al., ISSRE 2016).

TF-IDF-weighted event-count vectors of *the system being labelled*, PCA keeping 95% of the variance,
and the squared prediction error (SPE) against the Q-statistic at alpha = 0.001. It sees every
sequence first (``fit``, labels unseen) and flags those the usual patterns do not explain, including
anomalies with no failure word (a missing step, a rare event).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from fusionlog.config import FusionLogError
from fusionlog.teachers.base import LabelRequest, Teacher


def q_statistic(residual_eigenvalues: np.ndarray, c_alpha: float) -> float:
    """Jackson & Mudholkar's threshold on the squared prediction error, from the discarded eigenvalues."""
    phi = [float(np.sum(residual_eigenvalues ** i)) for i in (1, 2, 3)]
    if phi[0] <= 0 or phi[1] <= 0:
        return 0.0
    h0 = 1.0 - 2.0 * phi[0] * phi[2] / (3.0 * phi[1] ** 2)
    base = c_alpha * math.sqrt(2.0 * phi[1] * h0 ** 2) / phi[0] + 1.0 + phi[1] * h0 * (h0 - 1.0) / phi[0] ** 2
    if h0 <= 0 or base <= 0:  # a spectrum too skewed for the power transform: the plain normal approximation
        return phi[0] + c_alpha * math.sqrt(2.0 * phi[1])
    return phi[0] * base ** (1.0 / h0)


class PCATeacher(Teacher):
    """p(anomalous) = r / (1 + r) with r = SPE / Q_alpha, so p = 0.5 is the classical Q-statistic decision.

    The ratio to Q_alpha, not the raw error, is what carries from one system to another. A template
    never seen at fit time is unexplained by definition (p = 1). Known blind spot (as in the
    original): an event so rare and so IDF-heavy that it carries its own principal component is
    "explained"; other members of a committee cover such events.
    """

    def __init__(self, variance: float = 0.95, c_alpha: float = 3.2905, threshold: float = 0.5):
        super().__init__(threshold)
        self.variance, self.c_alpha = variance, c_alpha
        self.vocab: dict[str, int] = {}
        self.idf = self.mean = self.components = np.zeros(0)
        self.q_alpha = 0.0

    def _counts(self, population: Sequence[Sequence[str]]) -> np.ndarray:
        x = np.zeros((len(population), len(self.vocab)), dtype=np.float64)
        for i, templates in enumerate(population):
            for t in templates:
                j = self.vocab.get(t)
                if j is not None:
                    x[i, j] += 1
        return x

    def fit(self, population: list[list[str]]) -> None:
        if not population:
            raise FusionLogError("pca teacher: fit() got no sequences")
        self.vocab = {t: j for j, t in enumerate(sorted({t for seq in population for t in seq}))}
        x = self._counts(population)
        self.idf = np.log(len(x) / np.maximum((x > 0).sum(0), 1))
        x = x * self.idf
        self.mean = x.mean(0)
        x = x - self.mean
        _, s, vt = np.linalg.svd(x, full_matrices=False)
        lam = s ** 2 / len(x)
        total = lam.sum()
        k = int(np.searchsorted(np.cumsum(lam) / total, self.variance) + 1) if total > 0 else 0
        self.components = vt[:k]
        self.q_alpha = q_statistic(lam[k:], self.c_alpha)

    def spe(self, population: Sequence[Sequence[str]]) -> np.ndarray:
        """Squared prediction error: what the principal (normal) subspace leaves unexplained."""
        if not self.vocab:
            raise FusionLogError("pca teacher: score() before fit(); it models the system it labels")
        x = self._counts(population) * self.idf - self.mean
        residual = x - (x @ self.components.T) @ self.components
        return (residual ** 2).sum(1)

    def score(self, requests: Sequence[LabelRequest]) -> np.ndarray:
        spe = self.spe([r.templates for r in requests])
        unseen = np.array([any(t not in self.vocab for t in r.templates) for r in requests], dtype=bool)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = spe / self.q_alpha if self.q_alpha > 0 else np.where(spe > 1e-12, np.inf, 0.0)
        p = np.where(np.isinf(ratio), 1.0, ratio / (1.0 + ratio))
        p[unseen] = 1.0
        return p.astype(np.float64)
