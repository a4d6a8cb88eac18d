import numpy as np
import pytest

from fusionlog.config import RoutingConfig
from fusionlog.routing import bottleneck_events, event_similarity, route, sequence_scores, tie_broken_scores


SOURCE = np.array([[1.0, 0.0], [0.0, 1.0]])
# target events: e0 = a source event, e1 at 45 degrees, e2 opposite to both, e3 all-zero (no known word)
TARGET = np.array([[2.0, 0.0], [1.0, 1.0], [-1.0, -1.0], [0.0, 0.0]])


def test_event_similarity_is_max_cosine():
    np.testing.assert_allclose(event_similarity(TARGET, SOURCE), [1.0, np.sqrt(0.5), -np.sqrt(0.5), 0.0])
    with pytest.raises(ValueError, match="dims differ"):
        event_similarity(TARGET, np.ones((2, 3)))


def test_sequence_score_is_min_and_bottleneck_is_argmin():
    sim = event_similarity(TARGET, SOURCE)
    seqs = [np.array([0, 0]), np.array([0, 1]), np.array([1, 2, 0]), np.array([], dtype=np.int64)]
    np.testing.assert_allclose(sequence_scores(seqs, sim), [1.0, np.sqrt(0.5), -np.sqrt(0.5), 0.0])
    assert bottleneck_events(seqs, sim).tolist() == [0, 1, 2, -1]


def test_route_tau_mean_fixed_and_off():
    seqs = [np.array([0]), np.array([1]), np.array([2])]
    res = route(seqs, TARGET, SOURCE, RoutingConfig())
    assert res.tau == pytest.approx((1.0 + np.sqrt(0.5) - np.sqrt(0.5)) / 3)
    assert res.general.tolist() == [True, True, False]
    assert route(seqs, TARGET, SOURCE, RoutingConfig(tau=0.9)).general.tolist() == [True, False, False]
    assert route(seqs, TARGET, SOURCE, RoutingConfig(enabled=False)).general.all()


def test_paper_rule_collapses_on_ties_and_tiebreak_splits():
    sim = np.array([0.5, 0.9, 0.6])
    seqs = [np.array([0, 1]), np.array([0, 2]), np.array([0, 1, 2])]  # every min is event 0
    assert len(set(sequence_scores(seqs, sim))) == 1
    tb = tie_broken_scores(seqs, sim)
    assert tb.argmax() == 0 and tb.argmin() == 1  # means 0.7, 0.55, 0.667
    distinct = [np.array([0]), np.array([1])]
    assert tie_broken_scores(distinct, sim).argsort().tolist() == [0, 1]  # the paper's order is kept


def test_equal_scores_are_all_general_whatever_the_float_rounding():
    from fusionlog.config import RoutingConfig
    from fusionlog.routing import route

    vectors = np.array([[0.1, 0.7], [0.3, 0.2]])
    seqs = [np.array([0, 1])] * 7  # every sequence the same: every s_k equal, tau their (rounded) mean
    r = route(seqs, vectors, np.array([[0.37, 0.11]]), RoutingConfig())
    assert r.general.all()
