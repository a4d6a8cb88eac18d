"""Teachers (``teacher.kind``): the LLM of the paper, or label-free ones that run anywhere.

- ``keyword``: generic failure words (fusionlog/teachers/keyword.py);
- ``semantic``: all-MiniLM-L6-v2 against generic failure/health descriptions (semantic.py);
- ``pca``, ``invariants``, ``isolation_forest``: classic detectors over the labelled system's own
  event counts (fusionlog/detectors/), each with its own decision rule (detector.py);
- ``committee``: ``teacher.members`` combined by a Dawid-Skene vote of their own decisions, or the
  mean of their p(anomalous) (committee.py);
- ``llm``: an LLM back-end chosen by ``llm.backend`` (fusionlog/llm/).

Every teacher has the interface of fusionlog/teachers/base.py: fit, score, decide.
"""
from __future__ import annotations

from fusionlog.config import LLMConfig, TeacherConfig
from fusionlog.teachers.base import Example, LabelRequest, Teacher

__all__ = ["Example", "LabelRequest", "Teacher", "make_teacher"]

DETECTORS = ("pca", "invariants", "isolation_forest")


def make_teacher(cfg: TeacherConfig, llm: LLMConfig, minilm_path: str = "") -> Teacher:
    """The teacher named by ``teacher.kind`` (a committee builds each member the same way)."""
    kind = cfg.kind
    if kind == "keyword":
        from fusionlog.teachers.keyword import KeywordTeacher

        return KeywordTeacher()
    if kind == "semantic":
        from fusionlog.teachers.semantic import SemanticTeacher

        return SemanticTeacher(minilm_path, cfg.threshold)
    if kind in DETECTORS:
        from fusionlog.detectors import InvariantMining, IsolationForestDetector, PCADetector
        from fusionlog.teachers.detector import DetectorTeacher

        detector = {"pca": PCADetector, "invariants": InvariantMining, "isolation_forest": IsolationForestDetector}[kind]
        return DetectorTeacher(kind, detector(), cfg.threshold)
    if kind == "committee":
        from dataclasses import replace

        from fusionlog.teachers.committee import Committee

        members = [make_teacher(replace(cfg, kind=m, threshold=0.5), llm, minilm_path) for m in cfg.members]
        return Committee(members, cfg.members, cfg.combine, cfg.threshold)
    if kind == "llm":
        from fusionlog.llm import make_llm

        return make_llm(llm, cfg.threshold)
    raise ValueError(f"unknown teacher.kind {kind!r}")
