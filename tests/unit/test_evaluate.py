"""Metrics on hand-made examples (anomaly = positive class, the paper's definitions)."""
import math

import numpy as np
import pytest

from fusionlog.evaluate import results_row
from fusionlog.metrics import auroc, best_f1_threshold, precision_recall_f1


def test_precision_recall_f1_hand_example():
    # tp = 2 (rows 0, 4), fp = 1 (row 2), fn = 1 (row 1), tn = 1 (row 3)
    m = precision_recall_f1(np.array([1, 1, 0, 0, 1]), np.array([1, 0, 1, 0, 1]))
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (2, 1, 1, 1)
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3)


def test_precision_recall_f1_no_positive_predictions_is_zero_not_nan():
    m = precision_recall_f1(np.array([1, 0, 0]), np.array([0, 0, 0]))
    assert (m["precision"], m["recall"], m["f1"]) == (0.0, 0.0, 0.0)


def test_precision_recall_f1_rejects_unknown_labels():
    with pytest.raises(ValueError, match=r"labels \[-1\]"):
        precision_recall_f1(np.array([1, -1]), np.array([1, 0]))


def test_auroc_hand_example():
    # positives 0.35 and 0.8 against negatives 0.1 and 0.4: 3 of 4 pairs ordered right
    assert auroc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])) == pytest.approx(0.75)


def test_auroc_ties_count_half_and_perfect_is_one():
    assert auroc(np.array([0, 1]), np.array([0.5, 0.5])) == pytest.approx(0.5)
    assert auroc(np.array([0, 0, 1]), np.array([0.5, 0.5, 0.5])) == pytest.approx(0.5)
    assert auroc(np.array([0, 1, 0, 1]), np.array([0.1, 0.9, 0.2, 0.8])) == pytest.approx(1.0)


def test_auroc_needs_both_classes():
    with pytest.raises(ValueError, match="both classes"):
        auroc(np.array([1, 1]), np.array([0.2, 0.3]))


def test_best_f1_threshold_hand_example():
    # descending scores 0.9(+) 0.8(-) 0.7(+) 0.3(-) 0.1(-): F1 at >=0.7 is 0.8, the best;
    # the threshold sits halfway to the next lower score, (0.7 + 0.3) / 2
    y = np.array([1, 0, 1, 0, 0])
    s = np.array([0.9, 0.8, 0.7, 0.3, 0.1])
    assert best_f1_threshold(y, s) == pytest.approx(0.5)


def test_best_f1_threshold_lowest_score_and_ties():
    assert best_f1_threshold(np.array([1, 1]), np.array([0.2, 0.4])) == pytest.approx(0.2)
    # equal scores are one candidate: both rows flip together
    assert best_f1_threshold(np.array([1, 0, 0]), np.array([0.6, 0.6, 0.1])) == pytest.approx(0.35)


def test_results_row_drops_and_counts_unknown_labels():
    row = results_row("HDFS->BGL", "meta", np.array([1, 0, -1, 1]), np.array([0.9, 0.2, 0.99, 0.4]), 0.5,
                      {"source_sequences": 10, "target_sequences": 4})
    assert row["evaluated"] == 3 and row["unlabelled_skipped"] == 1 and row["anomalous"] == 2
    assert (row["tp"], row["fp"], row["fn"]) == (1, 0, 1)
    assert row["f1"] == pytest.approx(2 / 3)
    assert row["auroc"] == pytest.approx(1.0)
    assert row["target_sequences"] == 4


def test_results_row_single_class_auroc_is_nan():
    row = results_row("a->b", "meta", np.array([0, 0]), np.array([0.1, 0.7]), 0.5, {})
    assert math.isnan(row["auroc"]) and row["fp"] == 1


def _hand_target(tmp_path):
    """Four sequences: an error template in s0 (anomalous) and s2 (normal); s1 anomalous without one."""
    from fusionlog.dataset import PreparedSystem
    from tests.unit._synthetic import write_prepared

    templates = ["disk error on <*>", "job <*> started", "job <*> finished"]
    system = PreparedSystem("T", ["e0", "e1", "e2"], templates, np.eye(3, dtype=np.float32),
                            [np.array([1, 0]), np.array([1, 2]), np.array([0]), np.array([2])],
                            np.array([1, 1, 0, 0], np.int8), ["s0", "s1", "s2", "s3"])
    write_prepared(tmp_path, system)
    return tmp_path


def test_baselines_are_scored_without_labels_and_evaluated_by_the_evaluator(tmp_path):
    from fusionlog.dataset import load_prepared
    from fusionlog.evaluate import baseline_rows, baseline_scores

    prepared = _hand_target(tmp_path)
    scores = baseline_scores(load_prepared(prepared, "T", read_labels=False))
    np.testing.assert_array_equal(scores["keyword rule"][0], [1.0, 0.0, 1.0, 0.0])
    np.testing.assert_array_equal(scores["flag everything"][0], [1.0, 1.0, 1.0, 1.0])
    keyword, everything = baseline_rows(prepared, "T", "S->T")
    assert keyword["method"] == "keyword rule" and (keyword["tp"], keyword["fp"], keyword["fn"]) == (1, 1, 1)
    assert keyword["auroc"] == pytest.approx(0.5)
    assert (everything["precision"], everything["recall"], everything["auroc"]) == (0.5, 1.0, 0.5)


def test_evaluator_hands_out_histograms_by_class_not_labels(tmp_path):
    from fusionlog.evaluate import Evaluator

    ev = Evaluator(_hand_target(tmp_path), "T")
    hist = ev.histograms(np.array([0.9, 0.1, 0.6, 0.2]), np.array([0.0, 0.5, 1.0]))
    assert hist["anomalous"].tolist() == [1, 1] and hist["normal"].tolist() == [1, 1]
    with pytest.raises(ValueError, match="3 scores for the 4 sequences"):
        ev.histograms(np.zeros(3), np.array([0.0, 1.0]))
