"""The teacher interface: who pseudo-labels target sequences (FusionLog §III-D, Algorithm 1 line 26).

Every teacher works in the same three steps, so distillation never asks which kind it holds:

``fit``     see every sequence of the system it is about to label, labels unseen (a statistical
            detector models what is usual on *that* system; an LLM judges each sequence alone);
``score``   p(anomalous) per request in [0, 1], NaN where the teacher has no answer;
``decide``  its own decision rule on those scores: ``score >= threshold``, -1 where there is no score.

A request carries the sequence's templates and the few-shot examples retrieved for it (only LLMs
read them). The threshold starts at the teacher's own rule and may be calibrated on labelled
*source* sequences (``fusionlog.pipeline.calibrate_teacher``); target labels never set it.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass
class Example:
    """A retrieved, small-model-labelled sequence shown to an LLM as a few-shot example."""

    templates: list[str]
    label: int  # 1 anomalous, 0 normal (small-model label)
    confidence: float


@dataclass
class LabelRequest:
    seq_id: str
    system: str  # the target system's name, for an LLM prompt's context (e.g. "BGL")
    templates: list[str]  # the sequence's event templates in order
    examples: list[Example]  # retrieved few-shot examples


class Teacher(ABC):
    """fit -> score -> decide; ``label`` runs score and decide and keeps the counts in ``stats``."""

    deterministic = True  # the same request always gets the same score, so callers may reuse answers
    calibratable = True  # the scores are graded, so a threshold set on source labels means something
    uses_examples = False  # reads the retrieved few-shot examples of a request (LLMs do)

    def __init__(self, threshold: float = 0.5):
        self.threshold = float(threshold)
        self.stats = {"requests": 0, "labelled": 0, "unanswered": 0}

    def fit(self, population: list[list[str]]) -> None:
        """See the unlabelled sequences (as templates) of the system about to be labelled; default: nothing."""

    @abstractmethod
    def score(self, requests: Sequence[LabelRequest]) -> np.ndarray:
        """p(anomalous) per request, float64 in [0, 1]; NaN where the teacher has no answer."""

    def decide(self, scores: np.ndarray) -> np.ndarray:
        """The teacher's decision rule: 1 where score >= threshold, 0 below, -1 where there is no score."""
        scores = np.asarray(scores, dtype=np.float64)
        out = (scores >= self.threshold).astype(np.int8)
        out[np.isnan(scores)] = -1
        return out

    def label(self, requests: Sequence[LabelRequest]) -> tuple[np.ndarray, np.ndarray]:
        """(labels, scores) for the requests, counted in ``stats``."""
        scores = self.score(requests)
        labels = self.decide(scores)
        self.stats["requests"] += len(labels)
        self.stats["labelled"] += int((labels >= 0).sum())
        self.stats["unanswered"] += int((labels < 0).sum())
        return labels, scores

    def calibrate(self, requests: Sequence[LabelRequest], labels: np.ndarray) -> dict:
        """Learn from labelled SOURCE sequences (never target labels): by default the best-F1 threshold.

        A teacher whose scores are not graded (``calibratable`` false) keeps its own rule.
        """
        from fusionlog import progress
        from fusionlog.metrics import best_f1_threshold, precision_recall_f1

        if not self.calibratable:
            return {"calibrated": False, "threshold": self.threshold}
        parts = [np.zeros(0)]
        for start in range(0, len(requests), 8):  # in chunks, with progress: a CPU LLM takes seconds a request
            parts.append(self.label(requests[start:start + 8])[1])
            progress.advance(len(parts[-1]))
        p = np.concatenate(parts)
        ok = np.isfinite(p)
        labels = np.asarray(labels)[ok]
        self.threshold = best_f1_threshold(labels, p[ok])
        own = precision_recall_f1(labels, (p[ok] >= self.threshold).astype(np.int64))
        return {"calibrated": True, "samples": int(ok.sum()), "threshold": self.threshold,
                "source_precision": own["precision"], "source_recall": own["recall"]}

    def close(self) -> None:
        """Release a model or connections; most teachers hold none."""
