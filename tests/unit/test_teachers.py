import math

import numpy as np
import pytest

from fusionlog.config import FusionLogError, LLMConfig
from fusionlog.llm import LabelRequest, LabelResult, LLMBackend
from fusionlog.teachers import EnsembleTeacher, make_teacher, q_statistic


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


def _population(n_normal=300, seed=0):
    """Normal sequences follow one workflow with optional steps; the last two break it without a failure word."""
    rng = np.random.default_rng(seed)
    normal = []
    for _ in range(n_normal):
        seq = ["open <*>"]
        for _ in range(int(rng.integers(2, 5))):
            seq += ["read <*>"] + (["cache hit <*>"] if rng.random() < 0.5 else [])
        seq += (["checksum ok <*>"] if rng.random() < 0.5 else []) + ["close <*>"]
        normal.append(seq)
    return normal + [["open <*>", "read <*>", "read <*>"],  # a missing step
                     ["open <*>", *["close <*>"] * 6]]  # a step repeated


def test_q_statistic_grows_with_the_residual_variance_and_confidence():
    lam = np.array([0.5, 0.2, 0.1])
    assert 0 < q_statistic(lam, 1.645) < q_statistic(lam, 3.2905) < q_statistic(lam * 2, 3.2905)
    assert q_statistic(np.zeros(3), 3.29) == 0.0
    skewed = np.r_[1.0, np.full(1000, 1e-3)]  # h0 < 0: falls back to the normal approximation, still finite
    assert q_statistic(skewed, 3.29) == pytest.approx(float(skewed.sum() + 3.29 * np.sqrt(2 * (skewed ** 2).sum())))


def test_pca_teacher_flags_what_the_usual_patterns_do_not_explain():
    t = make_teacher(LLMConfig(backend="pca"))
    pop = _population()
    with pytest.raises(FusionLogError, match="before fit"):
        t.label([_req("x", pop[0])])
    t.fit(pop)
    out = t.label([_req(str(i), s) for i, s in enumerate(pop)])
    p = np.array([r.p_anomalous for r in out])
    assert t.calibratable and t.deterministic
    assert p[-1] > p[:-2].max() and out[-1].label == 1  # the repeated step is the least explained of all
    assert p[-2] > np.median(p[:-2])  # the missing step (a common event: low IDF weight) ranks above most
    assert np.mean([r.label for r in out[:-2]]) < 0.05
    unseen = t.label([_req("u", ["open <*>", "never seen before <*>", "close <*>"])])[0]
    assert unseen.label == 1 and "unseen=1" in unseen.raw


def test_ensemble_members_come_from_config_and_are_fitted():
    t = make_teacher(LLMConfig(backend="ensemble", ensemble=["keyword", "pca"]))
    assert [type(m).__name__ for m in t.members] == ["KeywordTeacher", "PCATeacher"]
    pop = _population()
    t.fit(pop)
    out = t.label([_req("a", pop[0]), _req("b", [*pop[0], "fatal error <*>"])])
    assert out[0].p_anomalous < 0.5 <= out[1].p_anomalous
