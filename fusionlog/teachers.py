"""Label-free teachers beside the LLM, behind the same ``LLMBackend`` interface.

``keyword``: a sequence is anomalous if one of its templates holds a generic failure word
(error, fail, exception, fatal, ...).  It is the label-free baseline of the results table and a
fast, deterministic teacher for the distillation loop on machines where the LLM is too slow.
"""
from __future__ import annotations

import re
from typing import Sequence

from fusionlog.config import LLMConfig
from fusionlog.llm import LabelRequest, LabelResult, LLMBackend, make_backend

DEFAULT_KEYWORDS = ("error", "fail", "failed", "failure", "exception", "fatal", "panic", "abort", "aborted",
                    "refused", "timeout", "timed out", "corrupt", "denied", "unreachable", "not found",
                    "cannot", "can't", "unable", "invalid", "interrupt", "severe", "critical")


class KeywordTeacher(LLMBackend):
    """Anomalous iff some template matches a failure keyword (whole words, case-insensitive)."""

    def __init__(self, keywords: Sequence[str] = DEFAULT_KEYWORDS):
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
        return out

    def close(self) -> None:
        """Nothing to release."""


def make_teacher(cfg: LLMConfig) -> LLMBackend:
    """``llm.backend=keyword`` gives the keyword teacher; every other backend is an LLM."""
    if cfg.backend == "keyword":
        return KeywordTeacher()
    return make_backend(cfg)
