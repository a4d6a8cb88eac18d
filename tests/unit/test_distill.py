import numpy as np
import pytest
import torch

from fusionlog.config import DistillConfig, ModelConfig, RetrievalConfig
from fusionlog.distill import DistillInputs, distill, epsilon_schedule, select_clean, sm_labels
from fusionlog.model import SmallModel
from fusionlog.retrieval import MemoryStore
from fusionlog.teachers.keyword import KeywordTeacher

from tests.unit._synthetic import make_system


def test_epsilon_schedule_paper_and_static():
    assert epsilon_schedule(DistillConfig()) == [0.9, 0.85, 0.8, 0.75, 0.7]
    assert epsilon_schedule(DistillConfig(static_threshold=True, rounds=3)) == [0.9, 0.9, 0.9]
    assert epsilon_schedule(DistillConfig(epsilon0=0.1, epsilon_step=0.1, rounds=3)) == [0.1, 0.0, 0.0]


def test_sm_confidence_is_probability_of_its_own_label_in_the_paper():
    labels, conf = sm_labels(np.array([0.95, 0.2, 0.5]), 0.5, "probability")
    assert labels.tolist() == [1, 0, 1]
    np.testing.assert_allclose(conf, [0.95, 0.8, 0.5])


def test_rank_confidence_is_the_share_of_its_class_it_beats():
    """With a threshold far from 0.5 (0.02 here), p never reaches 0.9 for the anomalous ones; ranks do."""
    probs = np.array([0.030, 0.021, 0.025, 0.001, 0.010, 0.002])
    labels, conf = sm_labels(probs, 0.02, "rank")
    assert labels.tolist() == [1, 1, 1, 0, 0, 0]
    np.testing.assert_allclose(conf, [1.0, 1 / 3, 2 / 3, 1.0, 1 / 3, 2 / 3])
    assert select_clean(labels, labels, conf, 0.6).tolist() == [True, False, True, True, False, True]  # both classes


def test_rate_threshold_flags_that_share():
    from fusionlog.distill import rate_threshold

    s = np.array([0.9, 0.1, 0.5, 0.7, 0.3])
    assert rate_threshold(s, 0.4) == pytest.approx(0.6)  # flags 0.9 and 0.7
    assert (s >= rate_threshold(s, 0.4)).sum() == 2
    assert (s >= rate_threshold(s, 0.0)).sum() == 0 and (s >= rate_threshold(s, 1.0)).sum() == 5
    assert rate_threshold(np.array([0.5, 0.5, 0.2]), 0.34) == 0.5  # ties are flagged together


def test_clean_needs_agreement_confidence_and_an_answer():
    llm = np.array([1, 0, 1, -1, 0])
    sm = np.array([1, 0, 0, 1, 0])
    conf = np.array([0.95, 0.7, 0.99, 0.99, 0.95])
    assert select_clean(llm, sm, conf, 0.9).tolist() == [True, False, False, False, True]
    assert select_clean(llm, sm, conf, 0.9, dual_verification=False).tolist() == [True, True, True, False, True]


def _inputs(seed=0):
    torch.manual_seed(seed)
    system = make_system("T", n_seq=60, seed=seed)
    system.templates[-2] = "T fatal error <*>"  # the anomalous events carry a failure word
    system.templates[-1] = "T kernel panic <*>"
    model = SmallModel(ModelConfig(hidden=16, attention_dim=8, head_hidden=8), system.vectors)
    general = np.zeros(len(system), dtype=bool)
    general[::2] = True
    return system, DistillInputs(model, 0.5, system.vectors, system.templates, system.sequences, system.seq_ids,
                                 general, "T", max_len=64)


def test_loop_pools_shrink_kb_grows_and_leftovers_take_the_teacher_label():
    system, inp = _inputs()
    cfg = DistillConfig(epsilon0=0.5, epsilon_step=0.05, rounds=3, finetune_epochs=1, finetune_min_steps=1,
                        dual_verification=False, holdout=0.0)
    store = MemoryStore()
    res = distill(inp, KeywordTeacher(), store, cfg, RetrievalConfig(backend="memory"), seed=0)
    assert res.kb_initial == 30 and res.pool_initial == 30
    assert res.rounds[0].clean == 30 and res.rounds[0].noisy == 0 and len(res.rounds) == 1  # then the pool is empty
    assert res.kb_final == 60 == store.count()
    pool = np.flatnonzero(~inp.general)
    assert {k: v[0] for k, v in res.pseudo_labels.items()} == {system.seq_ids[i]: int(system.labels[i]) for i in pool}
    assert res.teacher_rate == pytest.approx(system.labels[pool].mean())  # the keyword rule is right here


def test_loop_with_dual_verification_is_deterministic():
    cfg = DistillConfig(rounds=2, finetune_epochs=1, finetune_min_steps=2, epsilon0=0.5)
    runs = []
    for _ in range(2):
        _, inp = _inputs(seed=1)
        res = distill(inp, KeywordTeacher(), MemoryStore(), cfg, RetrievalConfig(backend="memory"), seed=0)
        runs.append((res, [p.detach().clone() for p in inp.model.parameters()]))
    (a, wa), (b, wb) = runs
    assert [(r.pool, r.clean) for r in a.rounds] == [(r.pool, r.clean) for r in b.rounds]
    assert a.pseudo_labels == b.pseudo_labels
    assert all(torch.equal(x, y) for x, y in zip(wa, wb))
    pools = [r.pool for r in a.rounds]
    assert pools == sorted(pools, reverse=True) and a.leftovers == a.rounds[-1].noisy


def test_max_pool_caps_and_reports():
    system, inp = _inputs()
    res = distill(inp, KeywordTeacher(), MemoryStore(), DistillConfig(rounds=1, max_pool=10, finetune_epochs=1),
                  RetrievalConfig(backend="memory"))
    assert res.pool_initial == 30 and res.pool_capped == 20 and res.held_out == 2 and res.rounds[0].pool == 8


class _CountingTeacher(KeywordTeacher):
    def __init__(self, deterministic):
        super().__init__()
        self.deterministic = deterministic
        self.calls = 0

    def score(self, requests):
        self.calls += len(requests)
        return super().score(requests)


def test_deterministic_teacher_answers_are_reused_across_rounds():
    cfg = DistillConfig(rounds=3, epsilon0=0.99, epsilon_step=0.0, finetune_epochs=1, finetune_min_steps=1, holdout=0.0)
    for det, expected in ((True, 30), (False, 90)):
        _, inp = _inputs()
        teacher = _CountingTeacher(det)
        res = distill(inp, teacher, MemoryStore(), cfg, RetrievalConfig(backend="memory"))
        assert [r.clean for r in res.rounds] == [0, 0, 0]  # epsilon 0.99: the KB never changes
        assert teacher.calls == expected  # 30 sequences: asked once (deterministic) or every round


class _SeenExamples(KeywordTeacher):
    """The keyword rule, remembering how many sequences it was fitted on and every request it saw."""

    def __init__(self):
        super().__init__()
        self.fitted = 0
        self.requests = []

    def fit(self, population):
        self.fitted = len(population)

    def score(self, requests):
        self.requests.extend(requests)
        return super().score(requests)


def test_scope_all_pools_every_sequence_fits_the_teacher_and_never_retrieves_the_query():
    system, inp = _inputs()
    teacher = _SeenExamples()
    cfg = DistillConfig(rounds=1, scope="all", finetune_epochs=1, finetune_min_steps=1)
    res = distill(inp, teacher, MemoryStore(), cfg, RetrievalConfig(backend="memory", top_k=3))
    assert teacher.fitted == 60 and res.pool_initial == 60 and res.kb_initial == 30
    general_content = {}
    for i in np.flatnonzero(inp.general):
        general_content[system.seq_ids[i]] = [system.templates[e] for e in system.sequences[i]]
    for req in teacher.requests:
        assert len(req.examples) == 3
        if req.seq_id in general_content:  # its own K(0) record never comes back; identical twins may
            own = general_content[req.seq_id]
            assert sum(ex.templates == own for ex in req.examples) <= sum(
                other == own for sid, other in general_content.items() if sid != req.seq_id)


class _HalfNormalThenKeyword(KeywordTeacher):
    """First time a sequence is asked: "normal" for every other one, no answer (-1) for the rest; asked
    again: the keyword rule."""

    def __init__(self):
        super().__init__()
        self.asked = set()

    def score(self, requests):
        out = super().score(requests)
        for k, req in enumerate(requests):
            if req.seq_id not in self.asked:
                out[k] = 0.0 if len(self.asked) % 2 == 0 else float("nan")
                self.asked.add(req.seq_id)
        return out


def test_one_class_clean_sets_do_not_fine_tune_and_replay_keeps_earlier_rounds(monkeypatch):
    import fusionlog.distill as d

    seen = []
    monkeypatch.setattr(d, "finetune", lambda model, seqs, labels, *a: seen.append(np.asarray(labels).copy()) or 0.0)
    _, inp = _inputs()
    cfg = DistillConfig(rounds=2, dual_verification=False, finetune_epochs=1, holdout=0.0)
    res = distill(inp, _HalfNormalThenKeyword(), MemoryStore(), cfg, RetrievalConfig(backend="memory"))
    assert res.rounds[0].clean == 15 and np.isnan(res.rounds[0].finetune_loss)  # all "normal": no fine-tuning
    assert res.rounds[1].clean > 0 and len(seen) >= 1
    assert len(seen[0]) == 15 + res.rounds[1].clean  # round 0's normals replayed beside round 1's clean set
    assert set(seen[0].tolist()) == {0, 1}
