"""Classic label-free log anomaly detectors over event-count matrices (issue 15: the teachers' members).

Each is fitted on the unlabelled sequences of the system it judges and decides by its own
published rule, never by a threshold set on labels:

- ``PCADetector``: SPE above the Q-statistic at alpha = 0.001 (Xu et al., SOSP'09);
- ``InvariantMining``: a mined linear invariant broken (Lou et al., USENIX ATC'10);
- ``IsolationForestDetector``: isolation score above 0.5 (Liu et al., ICDM'08; scikit-learn).

``fit_vocabulary`` and ``count_matrix`` turn sequences of event keys into their input.
"""
from fusionlog.detectors.base import Detector, check_counts
from fusionlog.detectors.counts import count_matrix, fit_vocabulary, idf_weights
from fusionlog.detectors.iforest import IsolationForestDetector
from fusionlog.detectors.invariants import Invariant, InvariantMining, SearchReport
from fusionlog.detectors.pca import PCADetector, q_statistic

__all__ = ["Detector", "Invariant", "InvariantMining", "IsolationForestDetector", "PCADetector", "SearchReport",
           "check_counts", "count_matrix", "fit_vocabulary", "idf_weights", "q_statistic"]
