import inspect

import numpy as np
import pytest
import scipy.sparse as sp

from fusionlog.detectors import (Invariant, InvariantMining, IsolationForestDetector, PCADetector, count_matrix,
                                 fit_vocabulary, idf_weights)

DETECTORS = (PCADetector, InvariantMining, IsolationForestDetector)


def _repeat(row, n=50):
    return np.tile(np.asarray(row, dtype=np.float64), (n, 1))


# ----------------------------------------------------------------------------- counts


def test_count_matrix_counts_known_events_and_the_unseen_ones_per_sequence():
    vocab = fit_vocabulary([["open", "read", "read"], ["close"]])
    assert vocab == {"close": 0, "open": 1, "read": 2}
    counts, unseen = count_matrix([["read", "open", "read", "boom"], [], ["boom", "bang"]], vocab)
    assert sp.issparse(counts) and counts.toarray().tolist() == [[0, 1, 2], [0, 0, 0], [0, 0, 0]]
    assert unseen.tolist() == [1, 0, 2]


def test_idf_is_loglizers_log_n_over_df():
    counts = sp.csr_matrix(np.array([[1, 3, 0], [1, 0, 0], [2, 0, 0], [1, 1, 0]], dtype=float))
    assert idf_weights(counts) == pytest.approx([0.0, np.log(2.0), np.log(4.0)])


# ----------------------------------------------------------------------------- the interface


@pytest.mark.parametrize("cls", DETECTORS)
def test_no_label_can_enter_fit_score_or_decide(cls):
    for method in ("fit", "score", "decide"):
        assert list(inspect.signature(getattr(cls, method)).parameters) == ["self", "counts"]


@pytest.mark.parametrize("cls", DETECTORS)
@pytest.mark.parametrize("bad, message", [
    (np.zeros((0, 3)), "empty, shape \\(0, 3\\)"),
    (np.zeros((4, 0)), "empty, shape \\(4, 0\\)"),
    (np.zeros(3), "2-D"),
    (np.array([[1.0, np.nan]]), "NaN"),
    (sp.csr_matrix(np.array([[1.0, -2.0]])), "negative"),
])
def test_bad_counts_are_refused_with_the_problem_named(cls, bad, message):
    with pytest.raises(ValueError, match=message):
        cls().fit(bad)


@pytest.mark.parametrize("cls", DETECTORS)
def test_score_needs_fit_and_the_same_columns(cls):
    with pytest.raises(ValueError, match="fit\\(\\) first"):
        cls().score(np.ones((2, 3)))
    detector = cls().fit(np.arange(12, dtype=float).reshape(4, 3))
    with pytest.raises(ValueError, match="2 event columns, fit\\(\\) saw 3"):
        detector.score(np.ones((2, 2)))


@pytest.mark.parametrize("cls", DETECTORS)
def test_one_repeated_row_raises_no_alarm(cls):
    counts = _repeat([2, 2, 1, 0])
    detector = cls().fit(counts)
    assert detector.decide(counts).dtype == np.int8
    assert detector.decide(counts).sum() == 0


# ----------------------------------------------------------------------------- PCA


def test_pca_flags_the_sequence_off_the_principal_subspace():
    line = np.array([[t, t, 2 * t] for t in range(5)] * 40, dtype=float)  # normal: one direction
    counts = np.vstack([line, [[1, 3, 2]]])  # B without its A
    detector = PCADetector().fit(counts)
    assert len(detector.components) == 1
    assert detector.decide(counts).tolist() == [0] * len(line) + [1]
    assert np.argmax(detector.score(counts)) == len(line)


def test_pca_keeps_a_group_of_equal_eigenvalues_whole():
    one_hot = np.vstack([np.eye(3)] * 10)  # three equally common exclusive events: two equal eigenvalues
    assert len(PCADetector(variance=0.4).fit(one_hot).components) == 2


# ----------------------------------------------------------------------------- Invariant Mining


def test_invariant_a_equals_b_is_found_and_a_without_b_violates_it():
    rng = np.random.default_rng(0)
    a = rng.integers(1, 4, size=100)
    c = np.arange(100) % 4  # unrelated to A and B, absent from a quarter of the sessions
    counts = np.vstack([np.c_[a, a, c], [[1, 0, 2]]]).astype(float)
    detector = InvariantMining().fit(counts)
    assert detector.invariants == [Invariant((0, 1), (1, -1))]
    assert detector.decide(counts).tolist() == [0] * 100 + [1]


def test_a_three_event_invariant_is_found():
    paths = np.array([[1, 0, 1], [0, 1, 1]] * 50, dtype=float)  # A or B, and C after either
    counts = np.vstack([paths * np.repeat(np.arange(1, 4), 34)[:100, None], [[1, 0, 0]]])
    detector = InvariantMining().fit(counts)
    assert detector.invariants == [Invariant((0, 1, 2), (1, 1, -1))]
    assert detector.report.searched == 1 and detector.report.ruled_out == 3  # the three pairs, by co-occurrence
    assert detector.decide(counts).tolist() == [0] * 100 + [1]
    capped = InvariantMining(max_candidates=0).fit(counts)
    assert capped.invariants == [] and capped.report.capped and capped.report.searched == 0


def test_an_event_absent_from_nearly_every_session_is_a_one_event_invariant():
    counts = np.vstack([_repeat([1, 1, 0], 99), [[1, 1, 4]]])
    detector = InvariantMining().fit(counts)
    assert Invariant((2,), (1,)) in detector.invariants and detector.report.rare_events == 1
    assert detector.decide(counts).tolist() == [0] * 99 + [1]


def test_invariant_mining_rejects_sizes_it_does_not_search():
    with pytest.raises(ValueError, match="max_size=4"):
        InvariantMining(max_size=4)


# ----------------------------------------------------------------------------- Isolation Forest


def test_isolation_forest_decides_as_sklearn_predict_and_is_seeded():
    rng = np.random.default_rng(0)
    counts = np.vstack([rng.poisson(3.0, size=(300, 5)), [[40, 0, 0, 40, 0]]]).astype(float)
    detector = IsolationForestDetector().fit(counts)
    decision = detector.decide(counts)
    predicted = detector.forest.predict(sp.csr_matrix(counts).log1p())
    assert decision.tolist() == (predicted == -1).astype(int).tolist()
    assert decision[-1] == 1 and np.argmax(detector.score(counts)) == 300
    assert np.array_equal(IsolationForestDetector().fit(counts).score(counts), detector.score(counts))
