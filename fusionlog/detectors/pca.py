"""PCA residual detector (Xu et al., SOSP'09), with loglizer's defaults.

TF-IDF-weighted counts, zero-mean, the principal components that keep 95% of the variance are
the "normal" subspace; a sequence whose squared prediction error (SPE, the part of it the normal
subspace does not explain) exceeds Jackson & Mudholkar's Q_alpha is anomalous.  Q_alpha comes from
the discarded eigenvalues alone, so the decision needs no labels.
"""
from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
from sklearn.decomposition import PCA

from fusionlog.detectors.base import Detector
from fusionlog.detectors.counts import idf_weights

C_ALPHA = 3.2905  # the normal quantile for alpha = 0.001 (Xu et al.; loglizer's default)
SPE_TOLERANCE = 1e-12  # with no residual variance at all, any error beyond float noise is unexplained
TIE = 1e-9  # relative gap below which two eigenvalues are one (OpenStack's counts have a triple one at the cut)
CHUNK = 4096  # rows per residual block: the dense residual of BGL's 18k x 1.8k matrix would be 270 MB


class PCADetector(Detector):
    """score = SPE; decide: SPE > Q_alpha (alpha = 0.001).

    The normal subspace keeps the fewest components that explain ``variance`` of it, extended to
    the end of a group of equal eigenvalues: their eigenspace has no preferred basis, so cutting
    through it would make the decision depend on the LAPACK routine.

    Known blind spot (as in the original): an event so rare and so IDF-heavy that it carries its
    own principal component is "explained".
    """

    def __init__(self, variance: float = 0.95, c_alpha: float = C_ALPHA):
        self.variance, self.c_alpha = variance, c_alpha
        self.idf = self.mean = self.components = np.zeros(0)
        self.q_alpha = 0.0

    def _fit(self, x: sp.csr_matrix) -> None:
        self.idf = idf_weights(x)
        weighted = x @ sp.diags(self.idf)
        n = weighted.shape[0]
        if (weighted.max(axis=0) - weighted.min(axis=0)).count_nonzero() == 0:  # one pattern: nothing to explain
            self.mean, self.components, lam = weighted.toarray()[0], np.zeros((0, x.shape[1])), np.zeros(0)
        else:  # covariance_eigh takes sparse input and gives every eigenvalue, which Q_alpha needs
            pca = PCA(svd_solver="covariance_eigh").fit(weighted)
            self.mean = pca.mean_
            lam = np.clip(pca.explained_variance_ * (n - 1) / n, 0.0, None)  # Xu et al. divide by n
            total = lam.sum()
            k = int(np.searchsorted(np.cumsum(lam) / total, self.variance) + 1) if total > 0 else 0
            if k:  # a cut inside equal eigenvalues would keep an arbitrary part of their eigenspace
                k = int(np.sum(lam >= lam[k - 1] * (1.0 - TIE)))
            self.components, lam = pca.components_[:k], lam[k:]
        self.q_alpha = q_statistic(lam, self.c_alpha)
        self.cutoff = max(self.q_alpha, SPE_TOLERANCE)

    def _score(self, x: sp.csr_matrix) -> np.ndarray:
        """Squared prediction error: what the principal (normal) subspace leaves unexplained."""
        weighted = x @ sp.diags(self.idf)
        spe = np.empty(x.shape[0])
        for start in range(0, x.shape[0], CHUNK):
            centred = weighted[start:start + CHUNK].toarray() - self.mean
            residual = centred - (centred @ self.components.T) @ self.components
            spe[start:start + CHUNK] = (residual ** 2).sum(1)
        return spe


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
