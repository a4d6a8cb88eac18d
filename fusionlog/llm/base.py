"""What every LLM back-end shares: answers with their raw text, retries and counts, behind the Teacher interface.

``answer`` returns one :class:`LabelResult` per request, in order, and never raises for one bad
request (a too-long prompt, an unparseable reply): that request gets label -1, NaN and the reason,
and is counted in ``stats``. ``score`` (the Teacher interface) is the p(anomalous) of those answers.
"""
from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from fusionlog.config import FusionLogError, LLMConfig
from fusionlog.teachers.base import LabelRequest, Teacher


class LLMBackendError(FusionLogError):
    """The LLM back-end cannot serve at all (unreachable, model missing, out of memory)."""


@dataclass
class LabelResult:
    seq_id: str
    label: int  # 1/0, or -1 when no parseable answer came after the retries (counted in stats)
    p_anomalous: float  # likelihood-based in loglik mode, else 1.0/0.0; nan when label == -1
    raw: str  # the raw answer text (or the scores of both answers in loglik mode)
    error: str = ""  # non-empty when the request failed


class LLMTeacher(Teacher):
    """An LLM as a teacher: ``answer`` asks it; ``score`` is p(anomalous) of the answers."""

    uses_examples = True

    def __init__(self, cfg: LLMConfig, threshold: float = 0.5):
        super().__init__(threshold)
        self.cfg = cfg
        self.stats.update(unparseable=0, retries=0, errors=0)

    @abstractmethod
    def answer(self, requests: Sequence[LabelRequest]) -> list[LabelResult]: ...

    def score(self, requests: Sequence[LabelRequest]) -> np.ndarray:
        return np.array([r.p_anomalous for r in self.answer(requests)], dtype=np.float64)

    def _count(self, results: list[LabelResult]) -> None:
        for r in results:
            if r.error:
                self.stats["errors"] += 1
            elif r.label == -1:
                self.stats["unparseable"] += 1
