"""A committee of teachers, combined without target labels (``teacher.combine``).

``vote`` (ours, the default): each member decides by its own rule, and the decisions are
aggregated as noisy annotators are (Dawid & Skene, 1979): every member m has a sensitivity a_m and
a specificity b_m, the system an anomaly rate pi, and EM over the members' decisions on the
unlabelled population being labelled estimates all three; a sequence's score is its posterior
P(anomalous | decisions), decided at 0.5. So the committee's positive rate comes from the target
itself, never from a threshold set on another system. Where source labels are available
(calibration), each member's a_m and b_m measured on the source start the EM.

``mean``: the mean of the members' p(anomalous), thresholded like any teacher (and calibrated
on source labels when ``teacher.calibrate``).
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from fusionlog.teachers.base import LabelRequest, Teacher

CLIP = (0.02, 0.98)  # ours: a member is never taken as infallible, so one decision never settles a sequence
PSEUDO = 1.0  # ours: Laplace pseudo-counts in the M-step


def dawid_skene(decisions: np.ndarray, init: Optional[tuple[np.ndarray, np.ndarray, float]] = None,
                iterations: int = 100, tol: float = 1e-6) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """EM for binary annotators. ``decisions`` (n, m) in {0, 1}, NaN = no answer.

    Returns (posterior per row, sensitivity per member, specificity per member, anomaly rate).
    Without ``init`` it starts from the majority vote. The class called anomalous is the one most
    members flag more often than the other (mean a_m + b_m > 1), which fixes EM's label switching.
    """
    d = np.asarray(decisions, dtype=np.float64)
    seen = np.isfinite(d)
    flag = np.where(seen, d, 0.0)
    if init is None:
        with np.errstate(invalid="ignore"):
            post = np.nan_to_num(flag.sum(1) / seen.sum(1), nan=0.5)
        sens, spec, prior = _m_step(flag, seen, post)
    else:
        sens, spec, prior = (np.asarray(init[0], float), np.asarray(init[1], float), float(init[2]))
    post = _e_step(flag, seen, sens, spec, prior)
    for _ in range(iterations):
        sens, spec, prior = _m_step(flag, seen, post)
        new = _e_step(flag, seen, sens, spec, prior)
        done = np.max(np.abs(new - post)) < tol if len(new) else True
        post = new
        if done:
            break
    if np.mean(sens + spec) < 1.0:  # EM settled on the mirror image: swap the classes
        post, sens, spec, prior = 1.0 - post, 1.0 - spec, 1.0 - sens, 1.0 - prior
    return post, sens, spec, prior


def _m_step(flag: np.ndarray, seen: np.ndarray, post: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    w1, w0 = post[:, None] * seen, (1.0 - post)[:, None] * seen
    sens = (np.sum(w1 * flag, 0) + PSEUDO) / (w1.sum(0) + 2 * PSEUDO)
    spec = (np.sum(w0 * (1.0 - flag), 0) + PSEUDO) / (w0.sum(0) + 2 * PSEUDO)
    prior = (post.sum() + PSEUDO) / (len(post) + 2 * PSEUDO)
    return np.clip(sens, *CLIP), np.clip(spec, *CLIP), float(np.clip(prior, *CLIP))


def _e_step(flag: np.ndarray, seen: np.ndarray, sens: np.ndarray, spec: np.ndarray, prior: float) -> np.ndarray:
    """Posterior P(anomalous | decisions) under conditionally independent members."""
    yes = np.log(sens / (1.0 - spec))  # log-likelihood ratio of a flag
    no = np.log((1.0 - sens) / spec)  # ... of a pass
    logit = np.log(prior / (1.0 - prior)) + np.sum(seen * np.where(flag > 0, yes, no), 1)
    return 1.0 / (1.0 + np.exp(-np.clip(logit, -500, 500)))


class Committee(Teacher):
    """Members fitted and asked together; combined by ``vote`` (Dawid–Skene) or ``mean``."""

    def __init__(self, members: Sequence[Teacher], names: Sequence[str], combine: str = "vote",
                 threshold: float = 0.5):
        super().__init__(threshold)
        self.members, self.names, self.combine = list(members), list(names), combine
        self.deterministic = all(m.deterministic for m in self.members)
        self.calibratable = True  # vote: member reliabilities; mean: a threshold
        self.source_rates: Optional[tuple[np.ndarray, np.ndarray, float]] = None  # (a_m, b_m, pi) on the source
        self.rates: Optional[tuple[np.ndarray, np.ndarray, float]] = None  # ... estimated on the population
        self.report: dict = {}

    def decisions(self, requests: Sequence[LabelRequest]) -> np.ndarray:
        """(n, members) of each member's own decision, NaN where it gave none."""
        cols = [m.decide(m.score(requests)).astype(np.float64) for m in self.members]
        out = np.column_stack(cols) if cols else np.zeros((len(requests), 0))
        out[out < 0] = np.nan
        return out

    def fit(self, population: list[list[str]]) -> None:
        for m in self.members:
            m.fit(population)
        if self.combine != "vote":
            return
        requests = [LabelRequest(str(i), "", seq, []) for i, seq in enumerate(population)]
        post, sens, spec, prior = dawid_skene(self.decisions(requests), self.source_rates)
        self.rates = (sens, spec, prior)
        self.report = {"anomaly_rate": prior, "flagged": float(np.mean(post >= 0.5)) if len(post) else 0.0,
                       "members": {n: {"sensitivity": float(a), "specificity": float(b)}
                                   for n, a, b in zip(self.names, sens, spec)}}

    def calibrate(self, requests: Sequence[LabelRequest], labels: np.ndarray) -> dict:
        """``vote``: each member's sensitivity and specificity on labelled SOURCE sequences, where the EM on
        the target starts (the threshold stays 0.5); ``mean``: the best-F1 threshold, as any teacher."""
        if self.combine != "vote":
            return super().calibrate(requests, labels)
        d = self.decisions(requests)
        y = np.asarray(labels) == 1
        seen = np.isfinite(d)
        sens = np.array([(d[y & seen[:, k], k] == 1).mean() if (y & seen[:, k]).any() else 0.5
                         for k in range(d.shape[1])])
        spec = np.array([(d[~y & seen[:, k], k] == 0).mean() if (~y & seen[:, k]).any() else 0.5
                         for k in range(d.shape[1])])
        self.source_rates = (np.clip(sens, *CLIP), np.clip(spec, *CLIP), float(np.clip(y.mean(), *CLIP)))
        return {"calibrated": True, "samples": len(y), "threshold": self.threshold, "source_members": {
            n: {"sensitivity": float(a), "specificity": float(b)} for n, a, b in zip(self.names, sens, spec)}}

    def score(self, requests: Sequence[LabelRequest]) -> np.ndarray:
        if not len(requests):
            return np.zeros(0)
        if self.combine == "vote":
            if self.rates is None:
                raise ValueError("committee: score() before fit(); the vote is estimated on the population")
            d = self.decisions(requests)
            seen = np.isfinite(d)
            post = _e_step(np.where(seen, d, 0.0), seen, *self.rates)
            return np.where(seen.any(1), post, np.nan)
        scores = np.vstack([m.score(requests) for m in self.members])
        answered = np.isfinite(scores)
        total = np.where(answered, scores, 0.0).sum(0)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(answered.any(0), total / answered.sum(0), np.nan)

    def close(self) -> None:
        for m in self.members:
            m.close()
