"""Training-free semantic routing (FusionLog §III-B, Algorithm 1 lines 3-6): pure numpy.

sim_i = max_j cos(v_i, u_j) over the source events u_j; s_k = min over the events of sequence k.
A sequence is *general* if s_k >= tau (tau = mean of all s_k by default), else *proprietary*; "reaches"
is compared with a tolerance (``TIE_TOLERANCE``): when every s_k is equal, their mean differs from
them by float rounding only, and the paper's rule must send them all the same way (general).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from fusionlog.config import RoutingConfig
from fusionlog.embedding import unit_rows

TIE_TOLERANCE = 1e-9  # ours: s_k within this of tau counts as reaching it; tau = mean of equal s_k must not split them by float rounding
TIEBREAK_SPAN = 1e-3  # ours: the tie-breaker moves a score by at most this, so s_k stays a similarity


def event_similarity(target_vectors: np.ndarray, source_vectors: np.ndarray) -> np.ndarray:
    """sim_i for every target event: one matrix product, max over the source events."""
    if target_vectors.shape[1] != source_vectors.shape[1]:
        raise ValueError(f"embedding dims differ: target {target_vectors.shape[1]}, source {source_vectors.shape[1]}")
    if len(source_vectors) == 0:
        raise ValueError("routing needs at least one source event")
    return (unit_rows(target_vectors) @ unit_rows(source_vectors).T).max(axis=1)


def sequence_scores(sequences: Sequence[np.ndarray], event_sim: np.ndarray) -> np.ndarray:
    """s_k = min over the sequence's events of sim_i (an empty sequence scores 0: nothing is known of it)."""
    return np.array([event_sim[s].min() if len(s) else 0.0 for s in sequences], dtype=np.float64)


def bottleneck_events(sequences: Sequence[np.ndarray], event_sim: np.ndarray) -> np.ndarray:
    """The event of each sequence least similar to the source (-1 for an empty sequence): why it routed."""
    return np.array([s[np.argmin(event_sim[s])] if len(s) else -1 for s in sequences], dtype=np.int64)


def tie_broken_scores(sequences: Sequence[np.ndarray], event_sim: np.ndarray) -> np.ndarray:
    """s_k, with ties among equal minima broken by the mean similarity (ours, issue 9).

    When every sequence shares its least-similar event (HDFS as a target: each block holds the
    same allocate/receive events), the paper's s_k is one number for all and tau = mean splits
    nothing. Adding a small multiple (at most TIEBREAK_SPAN) of the normalised mean similarity
    keeps the paper's order wherever minima differ, and orders the tied ones.
    """
    base = sequence_scores(sequences, event_sim)
    means = np.array([event_sim[s].mean() if len(s) else 0.0 for s in sequences], dtype=np.float64)
    gaps = np.diff(np.unique(base))
    scale = min(gaps.min() / 2, TIEBREAK_SPAN) if len(gaps) else TIEBREAK_SPAN
    return base + scale * (means - means.min()) / max(np.ptp(means), 1e-12)


def threshold(scores: np.ndarray, cfg: RoutingConfig) -> float:
    """tau: the mean of all s_k (paper), a fixed value, or 0 (routing off: everything is general)."""
    if not cfg.enabled:
        return -np.inf
    if cfg.tau >= 0:
        return float(cfg.tau)
    return float(np.mean(scores)) if len(scores) else 0.0


@dataclass
class RoutingResult:
    scores: np.ndarray  # s_k (with the tie-breaker when cfg.rule == "tiebreak")
    tau: float
    general: np.ndarray  # bool per target sequence
    bottleneck: np.ndarray  # event index per sequence

    @property
    def proprietary(self) -> np.ndarray:
        return ~self.general

    def summary(self) -> dict:
        return {"tau": self.tau, "general": int(self.general.sum()), "proprietary": int((~self.general).sum()),
                "score_min": float(self.scores.min()) if len(self.scores) else None,
                "score_max": float(self.scores.max()) if len(self.scores) else None,
                "distinct_scores": int(len(np.unique(np.round(self.scores, 9))))}


def route(target_sequences: Sequence[np.ndarray], target_vectors: np.ndarray, source_vectors: np.ndarray,
          cfg: RoutingConfig) -> RoutingResult:
    """Split target sequences (indices into ``target_vectors``) into general and proprietary."""
    sim = event_similarity(target_vectors, source_vectors)
    scores = tie_broken_scores(target_sequences, sim) if cfg.rule == "tiebreak" else sequence_scores(target_sequences, sim)
    tau = threshold(scores, cfg)
    return RoutingResult(scores, tau, scores >= tau - TIE_TOLERANCE, bottleneck_events(target_sequences, sim))
