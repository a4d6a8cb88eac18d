"""Event-count vectors, the input every classic log detector shares (Xu et al., SOSP'09; He et al., ISSRE'16).

A vocabulary is fitted on the population being modelled and a sequence becomes a row of counts
over it.  An event the vocabulary never saw has no column, so it is counted per sequence instead:
a never-seen event is itself a strong anomaly signal, and the caller decides what to do with it.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import scipy.sparse as sp


def fit_vocabulary(sequences: Iterable[Sequence[str]]) -> dict[str, int]:
    """Event key -> column, in sorted key order so the same population always gives the same columns."""
    return {key: j for j, key in enumerate(sorted({key for seq in sequences for key in seq}))}


def count_matrix(sequences: Sequence[Sequence[str]], vocabulary: dict[str, int]) -> tuple[sp.csr_matrix, np.ndarray]:
    """(n_sequences, n_events) counts over ``vocabulary``, and per sequence how many events it lacks.

    Sparse because a sequence touches a few dozen of up to ~2,000 events.
    """
    indptr, indices, unseen = [0], [], np.zeros(len(sequences), dtype=np.int64)
    for i, seq in enumerate(sequences):
        for key in seq:
            j = vocabulary.get(key)
            if j is None:
                unseen[i] += 1
            else:
                indices.append(j)
        indptr.append(len(indices))
    data = np.ones(len(indices), dtype=np.float64)
    counts = sp.csr_matrix((data, np.asarray(indices, dtype=np.int64), np.asarray(indptr, dtype=np.int64)),
                           shape=(len(sequences), len(vocabulary)))
    counts.sum_duplicates()
    return counts, unseen


def idf_weights(counts: sp.spmatrix) -> np.ndarray:
    """loglizer's IDF, log(n / df): events in every sequence weigh 0; df is floored at 1 (absent columns)."""
    df = np.asarray((counts > 0).sum(axis=0)).ravel()
    return np.log(counts.shape[0] / np.maximum(df, 1))
