import math

import pytest

from fusionlog.config import LLMConfig
from fusionlog.llm import LabelRequest, LabelResult, LLMBackend
from fusionlog.teachers import EnsembleTeacher, KeywordTeacher, make_teacher


def _req(sid, templates):
    return LabelRequest(sid, "BGL", templates, [])


def test_keyword_teacher_labels_and_counts():
    t = make_teacher(LLMConfig(backend="keyword"))
    out = t.label([_req("a", ["ciod: Error reading message", "ok"]),
                   _req("b", ["generating core.<*>", "instruction cache parity corrected"])])
    assert [(r.label, r.p_anomalous, r.raw) for r in out] == [(1, 1.0, "Error"), (0, 0.0, "none")]
    assert t.stats["requests"] == 2 and t.stats["labelled"] == 2 and not t.calibratable


class _Fixed(LLMBackend):
    def __init__(self, ps):
        super().__init__()
        self.ps = ps

    def label(self, requests):
        return [LabelResult(r.seq_id, -1 if math.isnan(p) else int(p >= 0.5), p, "") for r, p in zip(requests, self.ps)]


def test_ensemble_means_finite_members_and_thresholds():
    ens = EnsembleTeacher([_Fixed([0.2, math.nan, math.nan]), _Fixed([0.6, 0.9, math.nan])], threshold=0.5)
    out = ens.label([_req("a", []), _req("b", []), _req("c", [])])
    assert [r.p_anomalous for r in out[:2]] == [pytest.approx(0.4), pytest.approx(0.9)]
    assert [r.label for r in out] == [0, 1, -1] and out[2].error == "no member answered"
    ens.set_threshold(0.3)
    assert ens.label([_req("a", [])])[0].label == 1


def test_semantic_teacher_ranks_failures_above_routine_messages():
    pytest.importorskip("sentence_transformers")
    t = make_teacher(LLMConfig(backend="semantic"))
    fail = t.label([_req("f", ["Got exception while serving <*> to <*>"])])[0].p_anomalous
    fine = t.label([_req("n", ["Deleting block <*> file <*>", "[instance: <*>] VM Started (Lifecycle Event)"])])[0]
    assert fail > fine.p_anomalous and t.calibratable
    t.set_threshold(0.99)
    assert t.label([_req("f", ["Got exception while serving <*> to <*>"])])[0].label == 0
