"""Invariant Mining (Lou et al., USENIX ATC'10): linear relations among event counts that (almost)
every session obeys, e.g. count(open) == count(close); a session that breaks one is anomalous.

An invariant is an integer vector theta over a group of up to three events with
``X[:, group] @ theta == 0`` in at least ``support`` (0.98, the paper's and loglizer's value) of
the sessions.  The search follows the paper: estimate the invariant space's dimension r by SVD,
try groups of 1, 2, then 3 events, take theta as the smallest eigenvector of the group's Gram
matrix scaled to small integers, keep an invariant only if it is linearly independent of those
already kept, and stop once they span r dimensions.  loglizer's released search compares lists
with tuples in its membership tests and never reaches three events; this one does.

What is pruned, and why (none of it looks at labels):
- An event absent from at least ``support`` of the sessions satisfies the one-event invariant
  count == 0 (a rare event is itself a violation); groups holding it are not searched, as the
  paper skips supersets of an invariant.  On BGL's MLog windows that is 853 of 876 events.
- Groups containing a two-event invariant are not searched either (same rule).
- Every coefficient of theta is non-zero, so a session where some but not all of a group's
  events occur can only satisfy it by cancellation, and one where exactly one occurs never does.
  A pair is skipped when the sessions holding exactly one of its events already exceed the
  allowed violations; a triple when, for one of its events, the sessions holding it without the
  other two (bounded from below by pairwise co-occurrence counts) do.  These are exact: a
  skipped group cannot hold an invariant.
- ``max_candidates`` caps the groups whose theta is estimated and tested; ``report`` says how
  many were tested, how many the counts ruled out and whether the cap stopped the search.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from fusionlog.detectors.base import Detector

VIOLATION = 1e-6  # |X_g @ theta| above this breaks the invariant (loglizer); counts are integers
INDEPENDENT = 1e-9  # relative residual below which a new theta lies in the span of the kept ones


@dataclass(frozen=True)
class Invariant:
    """sum_i theta_i * count(columns_i) == 0 in (almost) every session."""

    columns: tuple[int, ...]
    theta: tuple[int, ...]


@dataclass
class SearchReport:
    """What the search did, for logs and results tables."""

    invariant_space_dim: int = 0  # r, the paper's SVD estimate
    rare_events: int = 0  # events absent from >= support of the sessions: one-event invariants
    searched: int = 0  # groups of 2-3 events whose theta was estimated and tested
    ruled_out: int = 0  # groups the co-occurrence counts alone proved to hold no invariant
    dependent: int = 0  # invariants found but dropped as linear combinations of kept ones
    capped: bool = False  # max_candidates stopped the search
    reached_r: bool = False  # the kept invariants span r dimensions (the paper's stop)


class InvariantMining(Detector):
    """score = invariants violated + how badly, squashed into [0, 1); decide: any invariant violated."""

    def __init__(self, support: float = 0.98, max_size: int = 3, max_candidates: int = 200_000,
                 scales: tuple[int, ...] = (1, 2, 3), epsilon: float = 0.5):
        if max_size not in (1, 2, 3):
            raise ValueError(f"InvariantMining: max_size={max_size}; allowed: 1, 2 or 3 events per invariant")
        if not 0.5 < support <= 1.0:
            raise ValueError(f"InvariantMining: support={support}; must be in (0.5, 1]")
        self.support, self.max_size, self.max_candidates = support, max_size, max_candidates
        self.scales = scales  # loglizer's: theta's smallest entry is tried as 1, 2 and 3
        self.epsilon = epsilon  # |X v| < epsilon counts a session as satisfying v in the estimate of r
        self.invariants: list[Invariant] = []
        self.report = SearchReport()
        self._theta = sp.csc_matrix((0, 0))

    def _fit(self, x: sp.csr_matrix) -> None:
        n, d = x.shape
        self.cutoff = 0.0
        report = self.report = SearchReport()
        slack = math.floor((1.0 - self.support) * n + 1e-9)  # violations an invariant may have
        present = (x > 0).astype(np.float64).tocsc()
        df = np.asarray(present.sum(0)).ravel()
        gram = (x.T @ x).toarray()
        report.invariant_space_dim = invariant_space_dim(x, gram, self.support, self.epsilon)
        r = report.invariant_space_dim
        rare, frequent = np.flatnonzero(df <= slack), np.flatnonzero(df > slack)
        self.invariants = [Invariant((int(j),), (1,)) for j in rare]  # distinct unit vectors: independent
        report.rare_events = len(rare)
        basis = _Basis(len(frequent))  # the groups below only touch frequent columns
        co = (present[:, frequent].T @ present[:, frequent]).toarray()
        xc = x.tocsc()
        for candidates in (_pair_candidates, _triple_candidates)[: self.max_size - 1]:
            if len(self.invariants) >= r or report.capped:
                break
            invariant_pairs = {inv.columns for inv in self.invariants if len(inv.columns) == 2}
            groups, ruled_out = candidates(df[frequent], co, slack)
            report.ruled_out += ruled_out
            for local in groups:
                group = tuple(int(frequent[i]) for i in local)
                if len(self.invariants) >= r:
                    break
                if any(pair in invariant_pairs for pair in itertools.combinations(group, 2)):
                    continue
                if report.searched >= self.max_candidates:
                    report.capped = True
                    break
                report.searched += 1
                theta = fit_theta(xc[:, list(group)], gram[np.ix_(group, group)], slack, self.scales)
                if theta is not None and basis.add(list(local), theta):
                    self.invariants.append(Invariant(group, tuple(int(t) for t in theta)))
                elif theta is not None:
                    report.dependent += 1
        report.reached_r = len(self.invariants) >= r
        self._theta = _theta_matrix(self.invariants, d)

    def _score(self, x: sp.csr_matrix) -> np.ndarray:
        residual = abs(x @ self._theta)
        violated = np.asarray((residual > VIOLATION).sum(1), dtype=np.float64).ravel()
        size = np.asarray(residual.sum(1)).ravel()
        return violated + size / (1.0 + size)  # 0 exactly when no invariant is broken


def invariant_space_dim(x: sp.csr_matrix, gram: np.ndarray, support: float, epsilon: float) -> int:
    """r: how many of the Gram matrix's eigenvectors, smallest first, nearly every session satisfies.

    Lou et al. §4.2 (loglizer's ``_estimate_invarant_space``): v counts when |X v| < epsilon in at
    least ``support`` of the sessions.
    """
    _, vectors = np.linalg.eigh(gram)  # ascending eigenvalues
    r = 0
    for i in range(vectors.shape[1]):
        if np.mean(np.abs(x @ vectors[:, i]) < epsilon) < support:
            break
        r += 1
    return r


def fit_theta(sub: sp.csc_matrix, gram: np.ndarray, slack: int, scales: tuple[int, ...]) -> np.ndarray | None:
    """The group's integer invariant, or None: the Gram matrix's smallest eigenvector, scaled so its
    smallest entry is 1, 2 or 3 and rounded; valid if at most ``slack`` sessions break it."""
    v = np.linalg.eigh(gram)[1][:, 0]
    if np.any(np.abs(v) < 1e-6):  # an event with no part in the relation: a smaller group holds it
        return None
    smallest = int(np.argmin(np.abs(v)))
    for scale in scales:
        theta = np.round(v * scale / v[smallest])
        if np.any(theta == 0):
            continue
        if np.count_nonzero(np.abs(sub @ theta) > VIOLATION) <= slack:
            theta = theta / math.gcd(*(int(t) for t in theta))
            return theta if theta[0] > 0 else -theta
    return None


def _pair_candidates(df: np.ndarray, co: np.ndarray, slack: int) -> tuple[list[tuple[int, int]], int]:
    """Pairs not ruled out: sessions holding exactly one of the two, df_a + df_b - 2 co_ab, within slack."""
    i, j = np.triu_indices(len(df), k=1)
    ok = df[i] + df[j] - 2 * co[i, j] <= slack
    return list(zip(i[ok].tolist(), j[ok].tolist())), int((~ok).sum())


def _triple_candidates(df: np.ndarray, co: np.ndarray, slack: int) -> tuple[list[tuple[int, int, int]], int]:
    """Triples not ruled out: for each member a, df_a - co_ab - co_ac (a lower bound on the sessions
    holding a without b and c) within slack."""
    m = len(df)
    alone = df[:, None] - co  # alone[a, b]: sessions with a but not b
    out, ruled_out = [], 0
    for a in range(m - 2):
        b, c = np.triu_indices(m - a - 1, k=1)
        b, c = b + a + 1, c + a + 1
        ok = ((alone[a, b] - co[a, c] <= slack) & (alone[b, a] - co[b, c] <= slack)
              & (alone[c, a] - co[c, b] <= slack))
        out.extend((a, int(p), int(q)) for p, q in zip(b[ok], c[ok]))
        ruled_out += int((~ok).sum())
    return out, ruled_out


def _theta_matrix(invariants: list[Invariant], d: int) -> sp.csc_matrix:
    """(d, n_invariants): column k is invariant k's theta, so X @ it gives every residual at once."""
    rows = [c for inv in invariants for c in inv.columns]
    cols = [k for k, inv in enumerate(invariants) for _ in inv.columns]
    vals = [t for inv in invariants for t in inv.theta]
    return sp.csc_matrix((np.asarray(vals, dtype=np.float64), (rows, cols)), shape=(d, len(invariants)))


class _Basis:
    """Orthonormal basis of the kept thetas, to tell a new invariant from a combination of old ones."""

    def __init__(self, d: int):
        self.vectors = np.zeros((d, d))  # rank <= d; preallocated, rows [:rank] in use
        self.rank = 0

    def add(self, columns: list[int], theta: np.ndarray) -> bool:
        v = np.zeros(self.vectors.shape[1])
        v[columns] = theta / np.linalg.norm(theta)
        used = self.vectors[: self.rank]
        residual = v - used.T @ (used @ v)
        norm = np.linalg.norm(residual)
        if norm < INDEPENDENT:
            return False
        self.vectors[self.rank] = residual / norm
        self.rank += 1
        return True
