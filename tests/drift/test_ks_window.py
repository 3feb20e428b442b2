"""The windowed KS detectors compute, in one pass over all features, what a call of
``scipy.stats.ks_2samp`` per feature gives: the same distances, p-values and Bonferroni result.

Both are compared to a relative 1e-5: scipy releases compute them along slightly different paths
(1.11 and 1.18 differ in the last float32 bits)."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from scipy.stats import ks_2samp

from service.drift import Observations
from service.drift._detectors import ConfidenceDetector, EmbeddingKSDetector
from service.drift._univariate import ks_distances, ks_p_values, ks_per_feature

Array = npt.NDArray[Any]
RTOL = 1e-5


def per_feature(reference: Array, window: Array) -> tuple[Array, Array]:
    results = [
        ks_2samp(reference[:, f], window[:, f], method="asymp") for f in range(reference.shape[1])
    ]
    return (
        np.array([r.pvalue for r in results], dtype=np.float32),
        np.array([r.statistic for r in results], dtype=np.float32),
    )


@pytest.mark.parametrize("shift", [0.0, 0.3, 2.0])
@pytest.mark.parametrize(("features", "size"), [(24, 50), (1, 200), (3, 7)])
def test_all_features_at_once_equal_one_call_per_feature(
    shift: float, features: int, size: int
) -> None:
    rng = np.random.default_rng(features + size)
    reference = rng.normal(size=(1000, features)).astype(np.float32)
    window = (rng.normal(size=(size, features)) + shift).astype(np.float32)
    p_values, distances = ks_per_feature(reference, window)
    expected_p, expected_d = per_feature(reference, window)
    np.testing.assert_allclose(p_values, expected_p, rtol=RTOL)
    np.testing.assert_allclose(distances, expected_d, rtol=RTOL)


def test_tied_values_give_the_same_distances() -> None:
    rng = np.random.default_rng(1)
    reference = rng.integers(0, 5, size=(1000, 3)).astype(np.float32)
    window = rng.integers(0, 5, size=(50, 3)).astype(np.float32)
    expected_p, expected_d = per_feature(reference, window)
    distances = ks_distances(np.sort(reference, axis=0), window)
    np.testing.assert_allclose(distances.astype(np.float32), expected_d, rtol=RTOL)
    np.testing.assert_allclose(ks_p_values(distances, 1000, 50), expected_p, rtol=RTOL)


def observations(rng: np.random.Generator, n: int, shift: float = 0.0) -> Observations:
    probabilities = rng.dirichlet(np.ones(12), size=n).astype(np.float32)
    embeddings = (rng.normal(size=(n, 64)) + shift).astype(np.float32)
    return Observations(embeddings, probabilities)


@pytest.mark.parametrize("shift", [0.0, 0.2, 1.0])
def test_a_window_test_is_the_bonferroni_of_the_per_feature_tests(shift: float) -> None:
    """Only the largest distance's p-value is computed: it is the smallest p-value."""
    rng = np.random.default_rng(2)
    reference = observations(rng, 1000)
    detectors = [(EmbeddingKSDetector(dims=24, window_size=50), 50), (ConfidenceDetector(200), 200)]
    for detector, size in detectors:
        detector.fit(reference)
        window = observations(rng, size, shift)
        detector.update(window)
        (test,) = detector.tests
        p_values, distances = per_feature(detector._values(reference), detector._values(window))
        assert test.p_value == pytest.approx(
            min(1.0, float(p_values.min()) * len(p_values)), rel=RTOL
        )
        assert test.effect == pytest.approx(float(distances.max()), rel=RTOL)
