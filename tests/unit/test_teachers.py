import math

import numpy as np
import pytest

from fusionlog.config import FusionLogError, LLMConfig, TeacherConfig
from fusionlog.teachers import LabelRequest, Teacher, make_teacher
from fusionlog.teachers.committee import Committee
from fusionlog.detectors import q_statistic


def _req(sid, templates):
    return LabelRequest(sid, "BGL", templates, [])


def _teacher(kind, **kw):
    return make_teacher(TeacherConfig(kind=kind, **kw), LLMConfig())


def test_keyword_teacher_labels_and_counts():
    t = _teacher("keyword")
    reqs = [_req("a", ["ciod: Error reading message", "ok"]), _req("b", ["generating core.<*>", "instruction cache"])]
    labels, scores = t.label(reqs)
    assert labels.tolist() == [1, 0] and scores.tolist() == [1.0, 0.0] and t.hit(reqs[0].templates) == "Error"
    assert t.stats == {"requests": 2, "labelled": 2, "unanswered": 0} and not t.calibratable


class _Fixed(Teacher):
    def __init__(self, ps):
        super().__init__()
        self.ps = ps

    def score(self, requests):
        return np.array(self.ps[:len(requests)], dtype=np.float64)


def test_decide_is_the_threshold_and_nan_is_no_answer():
    t = _Fixed([0.2, 0.5, math.nan])
    assert t.decide(np.array([0.2, 0.5, math.nan])).tolist() == [0, 1, -1]
    t.threshold = 0.1
    assert t.label([_req("a", [])])[0].tolist() == [1]


def test_committee_means_finite_members_and_thresholds():
    com = Committee([_Fixed([0.2, math.nan, math.nan]), _Fixed([0.6, 0.9, math.nan])], ["a", "b"], "mean",
                    threshold=0.5)
    labels, scores = com.label([_req("a", []), _req("b", []), _req("c", [])])
    assert scores[:2].tolist() == [pytest.approx(0.4), pytest.approx(0.9)] and math.isnan(scores[2])
    assert labels.tolist() == [0, 1, -1] and com.stats["unanswered"] == 1
    com.threshold = 0.3
    assert com.label([_req("a", [])])[0].tolist() == [1]


def test_semantic_teacher_ranks_failures_above_routine_messages():
    pytest.importorskip("sentence_transformers")
    t = _teacher("semantic")
    fail = t.score([_req("f", ["Got exception while serving <*> to <*>"])])[0]
    fine = t.score([_req("n", ["Deleting block <*> file <*>", "[instance: <*>] VM Started (Lifecycle Event)"])])[0]
    assert fail > fine and t.calibratable
    t.threshold = 0.99
    assert t.label([_req("f", ["Got exception while serving <*> to <*>"])])[0].tolist() == [0]


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
    t = _teacher("pca")
    pop = _population()
    with pytest.raises(FusionLogError, match="before fit"):
        t.label([_req("x", pop[0])])
    t.fit(pop)
    labels, p = t.label([_req(str(i), s) for i, s in enumerate(pop)])
    assert t.calibratable and t.deterministic
    assert p[-1] > p[:-2].max() and labels[-1] == 1  # the repeated step is the least explained of all
    assert p[-2] > np.median(p[:-2])  # the missing step (a common event: low IDF weight) ranks above most
    assert labels[:-2].mean() < 0.05
    unseen_label, unseen_p = t.label([_req("u", ["open <*>", "never seen before <*>", "close <*>"])])
    assert unseen_label.tolist() == [1] and unseen_p.tolist() == [1.0]


def test_committee_members_come_from_config_and_are_fitted():
    t = _teacher("committee", members=["keyword", "pca"])
    assert [type(m).__name__ for m in t.members] == ["KeywordTeacher", "DetectorTeacher"]
    pop = _population()
    t.fit(pop)
    p = t.score([_req("a", pop[0]), _req("b", [*pop[0], "fatal error <*>"])])
    assert p[0] < 0.5 <= p[1]


def test_detector_scores_map_to_probabilities_with_the_cutoff_at_one_half():
    from fusionlog.teachers.detector import to_probability

    np.testing.assert_allclose(to_probability(np.array([0.0, 1.0, 2.0, 3.0]), 2.0), [0.0, 1 / 3, 0.5, 0.6])
    np.testing.assert_allclose(to_probability(np.array([0.0, 1.0, 3.0]), 0.0), [0.0, 0.75, 0.875])
    assert to_probability(np.array([np.inf]), 1.0).tolist() == [1.0]


@pytest.mark.parametrize("kind", ["invariants", "isolation_forest"])
def test_count_detectors_as_teachers_decide_by_their_own_rule(kind):
    t = _teacher(kind)
    pop = _population()
    t.fit(pop)
    labels, p = t.label([_req(str(i), s) for i, s in enumerate(pop)])
    from fusionlog.detectors import count_matrix

    assert labels.tolist() == t.detector.decide(count_matrix(pop, t.vocab)[0]).tolist()  # p >= 0.5: its own rule
    assert labels[-1] == 1 and p[-1] > np.median(p[:-2])  # the repeated step


def test_dawid_skene_recovers_reliabilities_and_the_rate_without_labels():
    from fusionlog.teachers.committee import dawid_skene

    rng = np.random.default_rng(0)
    y = rng.random(4000) < 0.3  # the rate to recover
    sens, spec = np.array([0.9, 0.7, 0.8]), np.array([0.95, 0.9, 0.6])
    d = np.column_stack([np.where(y, rng.random(4000) < a, rng.random(4000) > b) for a, b in zip(sens, spec)])
    d = d.astype(float)
    d[::7, 1] = np.nan  # a member that sometimes gives no answer
    post, a, b, prior = dawid_skene(d)
    assert prior == pytest.approx(0.3, abs=0.03)
    np.testing.assert_allclose(a, sens, atol=0.05)
    np.testing.assert_allclose(b, spec, atol=0.05)
    assert ((post >= 0.5) == y).mean() > 0.9
    flipped = dawid_skene(1.0 - d)  # members that flag the other class: mirror image, not a new anomaly class
    assert flipped[3] == pytest.approx(0.7, abs=0.03)


def test_committee_vote_starts_from_source_reliabilities_and_estimates_the_target_rate():
    t = _teacher("committee", members=["keyword", "pca", "invariants"], combine="vote")
    pop = _population()
    reqs = [_req(str(i), s) for i, s in enumerate(pop)]
    t.fit(pop)
    info = t.calibrate(reqs, np.r_[np.zeros(len(pop) - 2), [1, 1]].astype(int))
    assert set(info["source_members"]) == {"keyword", "pca", "invariants"} and t.threshold == 0.5
    t.fit(pop)  # EM on the population, from the source reliabilities
    labels, p = t.label(reqs)
    assert 0 <= t.report["anomaly_rate"] <= 1 and set(t.report["members"]) == {"keyword", "pca", "invariants"}
    assert p[-1] >= 0.5 and labels[:-2].mean() < 0.2
