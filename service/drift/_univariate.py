"""The windowed detectors' two-sample tests, computed as alibi-detect 0.11.4's ``KSDrift`` and
``ChiSquareDrift`` compute them, on scipy alone.

alibi-detect's two detectors are thin wrappers over ``scipy.stats.ks_2samp`` (per feature, the
asymptotic distribution) and ``scipy.stats.chi2_contingency`` (reference counts against window
counts over the categories either one holds), returning float32 p-values and statistics. Importing
them loads all of alibi-detect: numba, llvmlite, scikit-learn, transformers and Pillow, about
125 MiB of a drift worker's memory that these statistics never use (measured: a worker with the
default detectors fitted went from 260 to 102 MiB). tests/drift/test_univariate.py checks that the
results equal alibi-detect's.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

Floats = npt.NDArray[np.float32]


def ks_per_feature(reference: npt.NDArray[Any], window: npt.NDArray[Any]) -> tuple[Floats, Floats]:
    """(p-values, KS distances) of each feature (column) of ``window`` against ``reference``."""
    from scipy.stats import ks_2samp

    reference = reference.reshape(reference.shape[0], -1)
    window = window.reshape(window.shape[0], -1)
    p_values = np.zeros(reference.shape[1], dtype=np.float32)
    distances = np.zeros_like(p_values)
    for feature in range(reference.shape[1]):
        result = ks_2samp(reference[:, feature], window[:, feature], method="asymp")
        distances[feature], p_values[feature] = result.statistic, result.pvalue
    return p_values, distances


def category_counts(values: npt.NDArray[Any]) -> npt.NDArray[np.int64]:
    """Counts of each non-negative integer category (a predicted label's index)."""
    return np.bincount(np.asarray(values, dtype=np.int64).ravel())


def chi_square(
    reference_counts: npt.NDArray[np.int64], window: npt.NDArray[Any]
) -> tuple[float, float]:
    """(p-value, chi-square statistic) of the 2 x k table of reference and window counts over
    the k categories that occur in either (a category absent from both would give a zero
    expected count, which the test refuses)."""
    from scipy.stats import chi2_contingency

    window_counts = category_counts(window)
    size = max(len(reference_counts), len(window_counts))
    table = np.vstack(
        (
            np.pad(reference_counts, (0, size - len(reference_counts))),
            np.pad(window_counts, (0, size - len(window_counts))),
        )
    )
    table = table[:, table.sum(axis=0) > 0]
    statistic, p_value, _, _ = chi2_contingency(table)
    return float(np.float32(p_value)), float(np.float32(statistic))
