"""The keyword rule: anomalous iff a template holds a generic failure word (error, fail, exception, ...).

The label-free baseline of the results and a fast, deterministic teacher. The words are written
once for logs in general, never for a particular target system.
"""
from __future__ import annotations

import re
from typing import Sequence

import numpy as np

from fusionlog.teachers.base import LabelRequest, Teacher

DEFAULT_KEYWORDS = ("error", "fail", "failed", "failure", "exception", "fatal", "panic", "abort", "aborted",
                    "refused", "timeout", "timed out", "corrupt", "denied", "unreachable", "not found",
                    "cannot", "can't", "unable", "invalid", "interrupt", "severe", "critical")


class KeywordTeacher(Teacher):
    """Score 1 when some template matches a failure keyword (whole words, case-insensitive), else 0."""

    calibratable = False  # a 0/1 score has nothing to calibrate

    def __init__(self, keywords: Sequence[str] = DEFAULT_KEYWORDS):
        super().__init__(threshold=0.5)
        self.pattern = re.compile(r"\b(" + "|".join(re.escape(k) for k in keywords) + r")\b", re.IGNORECASE)

    def hit(self, templates: Sequence[str]) -> str:
        """The first matching word, or "" (the rule's explanation)."""
        for t in templates:
            m = self.pattern.search(t)
            if m:
                return m.group(1)
        return ""

    def score(self, requests: Sequence[LabelRequest]) -> np.ndarray:
        return np.array([1.0 if self.hit(r.templates) else 0.0 for r in requests], dtype=np.float64)
