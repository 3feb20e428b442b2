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
Doubles = npt.NDArray[np.float64]


def ks_per_feature(reference: npt.NDArray[Any], window: npt.NDArray[Any]) -> tuple[Floats, Floats]:
    """(p-values, KS distances) of each feature (column) of ``window`` against ``reference``:
    ``scipy.stats.ks_2samp(method="asymp")`` per feature, as alibi-detect's ``KSDrift`` calls it."""
    distances = ks_distances(np.sort(_columns(reference), axis=0), window)
    p_values = ks_p_values(distances, len(reference), len(window))
    return p_values, distances.astype(np.float32)


def ks_distances(sorted_reference: npt.NDArray[Any], window: npt.NDArray[Any]) -> Doubles:
    """Each feature's two-sided KS distance, as ``ks_2samp`` computes it, over all features at
    once (the reference sorted per column, once, when the detector is fitted)."""
    window = np.sort(_columns(window), axis=0)
    n1, n2 = sorted_reference.shape[0], window.shape[0]
    both = np.concatenate((sorted_reference, window))
    distances = np.empty(sorted_reference.shape[1], dtype=np.float64)
    for feature in range(sorted_reference.shape[1]):
        values = both[:, feature]
        below_reference = np.searchsorted(sorted_reference[:, feature], values, side="right") / n1
        below_window = np.searchsorted(window[:, feature], values, side="right") / n2
        gaps = below_reference - below_window
        distances[feature] = max(float(np.clip(-gaps.min(), 0, 1)), float(gaps.max()))
    return distances


def ks_p_values(distances: npt.NDArray[Any], n1: int, n2: int) -> Floats:
    """``ks_2samp``'s asymptotic two-sided p-values of KS distances between samples of ``n1`` and
    ``n2``. Each costs about half a millisecond (scipy's exact Kolmogorov distribution, in
    Python), so a Bonferroni test asks only for its largest distance's: the p-value falls as the
    distance grows, so that is the smallest p-value."""
    from scipy.stats import kstwo

    m, n = sorted((float(n1), float(n2)), reverse=True)
    p_values = np.clip(kstwo.sf(np.asarray(distances), np.round(m * n / (m + n))), 0, 1)
    return np.asarray(p_values, dtype=np.float32).reshape(-1)


def _columns(values: npt.NDArray[Any]) -> npt.NDArray[Any]:
    return values.reshape(values.shape[0], -1)


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
